"""A new chat's first token while another client is answering, both with the same long system
prompt (an agent's tools, a knowledge bundle's instruction).

    python -m bench.shared_prefix [ARTIFACT [--source] [--peer MODEL]] [--reps 5]
                                  [--out FILE.json]

Without ARTIFACT (as `make bench` runs it): Qwen2.5-Coder-0.5B-Instruct (tests/instruct_model.py)
is built into build/shared-prefix.llamabundle and compared with llama-server on the same GGUF.

Per rep, on a server just started: client A starts a new chat (system prompt + its question)
and streams a long answer; once A's first token is in, client B starts another new chat with
the same system prompt. The slot holding the system prompt is A's, busy: B takes another one,
and before the decoder shared the cells of a prefix between slots (runtime/llama/decoder.py:
_donor), B read the whole system prompt again while A's answer was being decoded. (A slot
that once held the prompt keeps it for later chats, unless a long conversation has since
grown there; a server just started shows what every slot's first such chat costs.) Reported:
B's time to first token and the prompt tokens it reused (median, min-max), and A's longest
wait between two tokens while B's prompt was read.

`--source` serves ARTIFACT with this checkout's runtime (python -m runtime), so an A/B of a
runtime change needs no rebuild: run it once per version, in turn. `--peer MODEL` runs the
same reps against llama-server (bench/peer.py's build, `-np 4`, its default layout, the GGUF's
own template), in turn with ours.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from bench.knowledge_cite import serve
from bench.knowledge_ttft import _wait_healthy
from bench.multiturn import free_port

REPO = Path(__file__).resolve().parent.parent

TOOLS = [{"type": "function", "function": {
    "name": f"{verb}_{thing}",
    "description": f"{verb.capitalize()} a {thing} in the user's workspace. Use it when the user "
                   f"asks to {verb} a {thing}; say what was done afterwards, in one sentence.",
    "parameters": {"type": "object", "required": ["name"], "properties": {
        "name": {"type": "string", "description": f"the {thing}'s name, as the user wrote it"},
        "folder": {"type": "string", "description": "where it is, relative to the workspace"},
        "force": {"type": "boolean", "description": "go on even if it would overwrite"}}}}}
    for verb in ("create", "delete", "rename", "open") for thing in ("file", "folder", "note")]
SYSTEM = ("You are the workspace assistant. You help the user organise files, folders and notes. "
          "Answer briefly. These are the tools you may call, as JSON schemas:\n"
          + json.dumps(TOOLS))
LONG = "Write a long story about a lighthouse keeper and a storm, at least {n} words. ({i})"
SHORT = "In one sentence: what can you do for me? ({i})"


def stream(url: str, messages: list[dict[str, str]], max_tokens: int,
           marks: dict[str, Any]) -> None:
    started = time.perf_counter()
    body = {"messages": messages, "max_tokens": max_tokens, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}}
    with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=600) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if not line.startswith("data: {"):
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                marks["usage"] = chunk["usage"]
            if chunk.get("timings"):  # llama-server's own count of the prompt it reused
                marks["timings"] = chunk["timings"]
            if chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                now = time.perf_counter()
                marks.setdefault("first", now - started)
                marks.setdefault("pieces", []).append(now)


def rep(url: str, i: int) -> dict[str, Any]:
    a: dict[str, Any] = {}
    b: dict[str, Any] = {}
    system = {"role": "system", "content": SYSTEM}
    long = threading.Thread(target=stream, args=(
        url, [system, {"role": "user", "content": LONG.format(n=300, i=i)}], 200, a))
    long.start()
    while "first" not in a and long.is_alive():
        time.sleep(0.005)
    b_started = time.perf_counter()
    stream(url, [system, {"role": "user", "content": SHORT.format(i=i)}], 16, b)
    b_first = b_started + b["first"]
    long.join()
    during = [t for t in a.get("pieces", []) if b_started <= t <= b_first]
    gaps = [y - x for x, y in zip(during, during[1:], strict=False)]
    return {"b_ttft_s": b["first"],
            "b_prompt_tokens": b["usage"]["prompt_tokens"],
            "b_reused": (b["usage"].get("prompt_tokens_details") or {}).get(
                "cached_tokens", b.get("timings", {}).get("cache_n", -1)),
            "a_longest_gap_s": max([*gaps, b_first - during[-1] if during else b["first"]])}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.shared_prefix",
                                description=__doc__.splitlines()[0])
    p.add_argument("artifact", type=Path, nargs="?")
    p.add_argument("--source", action="store_true",
                   help="serve with this checkout's runtime (python -m runtime ARTIFACT)")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--peer", type=Path, metavar="MODEL",
                   help="also llama-server with this GGUF (the artifact's model)")
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    if args.artifact is None:
        sys.path.insert(0, str(REPO / "tests"))
        from instruct_model import instruct_model

        args.peer = instruct_model(Path(os.environ.get("XDG_CACHE_HOME",
                                                       Path.home() / ".cache")))
        args.artifact = REPO / "build" / "shared-prefix.llamabundle"
        subprocess.run([str(REPO / ".venv" / "bin" / "llamabundle"), "build", str(args.peer),
                        "-o", str(args.artifact), "--force"], check=True,
                       stdout=subprocess.DEVNULL)
    servers = {"ours": lambda port: serve(args.artifact.absolute(), port, args.source)}
    if args.peer:
        from bench.peer import ensure_llama_server

        binary = ensure_llama_server()
        servers["llama-server"] = lambda port: subprocess.Popen(
            [str(binary), "-m", str(args.peer), "--host", "127.0.0.1", "--port", str(port),
             "-t", "2", "-np", "4", "-c", "16384", "--jinja"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in servers}
    for i in range(args.reps):
        for name, start in servers.items():  # in turn, each rep on a server just started
            port = free_port()
            proc = start(port)
            url = f"http://127.0.0.1:{port}"
            try:
                _wait_healthy(url, proc)
                stream(url, [{"role": "user", "content": "warm up"}], 4, {})
                rows[name].append(rep(url, i))
            finally:
                proc.terminate()
                proc.wait()

    def spread(name: str, key: str) -> dict[str, float]:
        values = [r[key] for r in rows[name]]
        return {"median": round(statistics.median(values), 3), "min": round(min(values), 3),
                "max": round(max(values), 3)}

    out: dict[str, Any] = {"artifact": str(args.artifact), "source": args.source,
                           "load_average": os.getloadavg()}
    for name in servers:
        out[name] = {key: spread(name, key) for key in (
            "b_ttft_s", "b_reused", "b_prompt_tokens", "a_longest_gap_s")} | {"reps": rows[name]}
        print(name, json.dumps({k: v for k, v in out[name].items() if k != "reps"}),
              file=sys.stderr)
    if args.out:
        args.out.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
