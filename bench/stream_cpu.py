"""The event loop's CPU per streamed token, without a model (issue #25).

    .venv/bin/python -m bench.stream_cpu [--clients 4] [--tokens 200] [--reps 4]
                                         [--variant h11] [--variant httptools,uvloop] ...

The web stack of the runtime (tests/fake.py's FakeServer: the real app, Worker, dialects and
uvicorn, with a fake engine saying a word every --delay seconds) in a child process; N clients
stream a chat answer each, all at once; the figure is the CPU time of the server's event-loop
thread (its schedstat) over the tokens streamed. A thread's CPU time moves little with other
processes' load, so this compares HTTP stacks on a shared machine, which wall times cannot.
A variant is `HTTP[,LOOP]`: uvicorn's http protocol (h11, the runtime's; httptools if
installed) and the loop (asyncio, the runtime's; uvloop if installed). Variants alternate.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys

from bench import machine, servers
from bench.concurrency import clients_at_once
from bench.servers import free_port

CHILD = """
import asyncio, os, sys, time
sys.path[:0] = [{repo!r}, {tests!r}]
import uvicorn
http, loop = {http!r}, {loop!r}
init = uvicorn.Config.__init__
def config(self, *args, **kwargs):
    kwargs["http"] = http
    init(self, *args, **kwargs)
uvicorn.Config.__init__ = config
if loop == "uvloop":
    import uvloop
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
from fake import FakeEngine, FakeServer
with FakeServer(FakeEngine(delay={delay!r}), {port!r}) as server:
    print(os.getpid(), server.thread.native_id, flush=True)
    while True:
        time.sleep(1)
"""


def loop_cpu_ns(pid: int, tid: int) -> int:
    with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
        return int(f.read().split()[0])


def one(variant: str, args: argparse.Namespace, rep: int) -> float:
    http, _, loop = variant.partition(",")
    port = free_port()
    code = CHILD.format(repo=str(servers.REPO), tests=str(servers.REPO / "tests"), http=http,
                        loop=loop or "asyncio", delay=args.delay, port=port)
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        pid, tid = map(int, child.stdout.readline().split())
        url = f"http://127.0.0.1:{port}"
        clients_at_once(url, args.clients, 8, 999)  # warm
        before = loop_cpu_ns(pid, tid)
        result = clients_at_once(url, args.clients, args.tokens, rep)
        return (loop_cpu_ns(pid, tid) - before) / result["tokens"] / 1e3
    finally:
        child.terminate()
        child.wait()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--tokens", type=int, default=200)
    p.add_argument("--delay", type=float, default=0.01, help="seconds per fake token")
    p.add_argument("--reps", type=int, default=4)
    p.add_argument("--variant", action="append", help="HTTP[,LOOP]; default: h11")
    args = p.parse_args()
    variants = args.variant or ["h11"]
    load = machine.load_average()
    results: dict[str, list[float]] = {v: [] for v in variants}
    for rep in range(args.reps):
        for variant in variants if rep % 2 == 0 else variants[::-1]:
            results[variant].append(one(variant, args, rep))
    print("| variant | event-loop CPU µs per streamed token, median (min–max) |\n|---|---|")
    for variant, values in results.items():
        print(f"| {variant} | {statistics.median(values):.0f} ({min(values):.0f}–"
              f"{max(values):.0f}) |")
    print(f"\n{args.clients} streams of {args.tokens} tokens, a token every {args.delay} s "
          f"each, {args.reps} reps alternating; load average {load} at the start, "
          f"{machine.load_average()} at the end.")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
