"""One launch of one server: every per-launch metric, measured in a fixed order.

launch -> ready -> first chat token (these two time the start-up), then time to first token
on a warm server, prefill and decode throughput, and finally the peak memory of the whole
process tree. A failure is recorded for that launch and the run goes on; a launch that other
processes disturbed (bench/quiet.py) is repeated.
"""

from __future__ import annotations

import logging
import statistics
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.client import chat, stream_chat
from bench.prompts import Prompts
from bench.quiet import Snapshot, foreign_share, wait_for_quiet
from bench.servers import ServerSpec, launched

log = logging.getLogger("bench")

TTFT_REQUESTS = 3  # a warm short request takes tens of ms: take the median of a few
SHORT_MAX_TOKENS = 8


@dataclass(frozen=True)
class Plan:
    prompts: Prompts
    decode_tokens: int
    log_dir: Path
    max_foreign_cpu: float = 0.10  # share of all CPUs others may use during a launch
    retries: int = 2  # extra attempts for a launch that others disturbed


def measure(spec: ServerSpec, plan: Plan, rep: int) -> dict[str, Any]:
    """All metrics of one launch, or {"error": ...} if the server failed."""
    # No connection reuse between servers; within one launch keep-alive like any client.
    with httpx.Client(trust_env=False) as client:
        try:
            return _measure(spec, plan, rep, client)
        except Exception as e:  # a crashed or misbehaving server is a result, not an abort
            log.warning("%s, repetition %d failed: %s", spec.name, rep + 1, e)
            return {"error": f"{type(e).__name__}: {e}",
                    "server_log_tail": "\n".join(getattr(e, "__notes__", [])),
                    "traceback": traceback.format_exc(limit=3)}


def measure_clean(spec: ServerSpec, plan: Plan, rep: int) -> dict[str, Any]:
    """measure(), repeated while other processes used too much CPU during it.

    Every discarded attempt stays in the result, so the JSON shows what was left out and why.
    """
    discarded: list[dict[str, Any]] = []
    while True:
        waited = wait_for_quiet(plan.max_foreign_cpu)
        result = measure(spec, plan, rep)
        result["waited_for_quiet_s"] = round(waited, 1)
        busy = result.get("foreign_cpu_max", 0.0)
        if "error" in result or busy <= plan.max_foreign_cpu or len(discarded) >= plan.retries:
            result["discarded_attempts"] = discarded
            return result
        log.info("%s, repetition %d: other processes used %.0f%% of the CPUs; again",
                 spec.name, rep + 1, busy * 100)
        discarded.append(result)


def warm_up(spec: ServerSpec, plan: Plan) -> None:
    """One untimed launch and chat: binaries, libraries and weights into the page cache."""
    with httpx.Client(trust_env=False) as client:
        try:
            with launched(spec, plan.log_dir) as server:
                server.wait_ready(client)
                stream_chat(client, server.url, plan.prompts.short(999, 0), SHORT_MAX_TOKENS)
        except Exception as e:
            log.warning("%s: warm-up failed: %s", spec.name, e)


def _measure(spec: ServerSpec, plan: Plan, rep: int, client: httpx.Client) -> dict[str, Any]:
    p = plan.prompts
    with launched(spec, plan.log_dir) as server:
        pid = server.process.pid
        marks = [Snapshot.take(pid)]
        ready_s = server.wait_ready(client)
        first = stream_chat(client, server.url, p.short(rep, 0), SHORT_MAX_TOKENS)
        first_token_s = first.ttft() + (first.sent - server.started)
        marks.append(Snapshot.take(pid))

        ttfts = [stream_chat(client, server.url, p.short(rep, k), SHORT_MAX_TOKENS).ttft()
                 for k in range(1, TTFT_REQUESTS + 1)]
        chat(client, server.url, p.prefill(rep, warmup=True), 1)  # first big batch: untimed
        marks.append(Snapshot.take(pid))

        prefill_s, reply = chat(client, server.url, p.prefill(rep), 1)
        prompt_tokens = int(reply["usage"]["prompt_tokens"])
        marks.append(Snapshot.take(pid))

        decode = stream_chat(client, server.url, p.decode(), plan.decode_tokens)
        marks.append(Snapshot.take(pid))
        n_tokens, counted_by = decode.completion_tokens(plan.decode_tokens)
        if decode.first is None or decode.last is None or n_tokens < 2:
            raise RuntimeError(f"decode produced {n_tokens} tokens; cannot time it")
        peak = server.peak_rss_bytes()
    foreign = {phase: round(foreign_share(a, b), 4) for phase, a, b in zip(
        ("launch", "ttft", "prefill", "decode"), marks, marks[1:], strict=False)}
    return {
        "launch_ready_s": ready_s,
        "launch_first_token_s": first_token_s,
        "ttft_s": statistics.median(ttfts),
        "ttft_samples_s": ttfts,
        "prefill_tps": prompt_tokens / prefill_s,
        "prefill_prompt_tokens": prompt_tokens,
        "prefill_s": prefill_s,
        "decode_tps": (n_tokens - 1) / (decode.last - decode.first),
        "decode_tokens": n_tokens,
        "decode_tokens_counted_by": counted_by,
        "decode_finish_reason": decode.finish_reason,
        "decode_text_head": decode.text[:80],
        "decode_server_timings": decode.timings,
        "short_prompt_tokens": (first.usage or {}).get("prompt_tokens"),
        "peak_rss_mb": peak / 1e6,
        "foreign_cpu": foreign,
        "foreign_cpu_max": max(foreign.values()),
    }
