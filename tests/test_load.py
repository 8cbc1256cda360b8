"""Load: 8 streaming clients plus clients that hang up mid-stream, in rounds; every request is
answered or clearly refused, the server stays healthy and its memory does not grow.

Bounded for `make test` (3 rounds of 12 s); LLAMABUNDLE_LOAD_SECONDS stretches each round."""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from conftest import launch

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("built")]

ROUND_SECONDS = float(os.environ.get("LLAMABUNDLE_LOAD_SECONDS", "12"))
STREAMERS, QUITTERS, ROUNDS = 8, 3, 3
BODY = {"messages": [{"role": "user", "content": "the cat"}], "stream": True,
        "max_tokens": 48}


def rss_kb(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines()
                    if line.startswith("VmRSS:")))


def streamer(url: str, until: float, outcomes: Counter, quit_early: bool) -> None:
    with httpx.Client(timeout=60) as client:
        while time.monotonic() < until:
            try:
                with client.stream("POST", url + "/v1/chat/completions", json=BODY) as r:
                    if r.status_code != 200:
                        outcomes[r.status_code] += 1
                        r.read()
                        continue
                    if quit_early:  # read three lines, then close the connection
                        for i, _ in enumerate(r.iter_lines()):
                            if i >= 3:
                                break
                        outcomes["hung up"] += 1
                        continue
                    lines = [x for x in r.iter_lines() if x.startswith("data: ")]
                    outcomes["done" if lines and lines[-1] == "data: [DONE]"
                             else "incomplete"] += 1
            except httpx.TransportError as e:
                outcomes[type(e).__name__] += 1


def test_streaming_load_with_hang_ups(tiny_artifact):
    server = launch(tiny_artifact, "-c", "512")
    pid = int(Path(f"/proc/{server.proc.pid}/task/{server.proc.pid}/children")
              .read_text().split()[0])
    try:
        memory, totals = [], Counter()  # type: ignore[var-annotated]
        for _ in range(ROUNDS):
            outcomes: Counter = Counter()
            until = time.monotonic() + ROUND_SECONDS
            threads = [threading.Thread(target=streamer,
                                        args=(server.url, until, outcomes, i >= STREAMERS))
                       for i in range(STREAMERS + QUITTERS)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(ROUND_SECONDS + 120)
            assert httpx.get(server.url + "/health", timeout=30).status_code == 200
            memory.append(rss_kb(pid))
            totals += outcomes
        print(f"\nload: {dict(totals)}; server RSS by round (KiB): {memory}")
        assert set(totals) <= {"done", "hung up", 503}, totals
        assert totals["done"] >= ROUNDS * STREAMERS and totals["hung up"] >= ROUNDS
        assert memory[-1] <= memory[0] * 1.10 + 8 * 1024  # not growing run over run
    finally:
        server.stop()
