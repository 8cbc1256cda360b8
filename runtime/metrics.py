"""What `GET /metrics` reports, in Prometheus' text format (prometheus-client).

One registry per server (no module globals: a test makes as many servers as it likes). The web
layer counts requests by route and status; the worker reports its queue and busy sequences; a
generation's events are observed as they pass (`observe`), which gives tokens, time to first
token and time per output token for every dialect at once.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE  # noqa: N811
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from runtime.generation import Event, Finish

# Seconds. First tokens range from milliseconds (a cached chat turn) to minutes (a long
# prompt on a small CPU); per-token latency from ~5 ms (a tiny model) to ~1 s.
TTFT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120)
TPOT_BUCKETS = (0.005, 0.01, 0.02, 0.04, 0.08, 0.15, 0.3, 0.6, 1.2)

__all__ = ["CONTENT_TYPE", "Metrics"]


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("llamabundle_requests", "HTTP requests answered, by route "
                                "and status", ["route", "method", "status"], registry=r)
        self.prompt_tokens = Counter(
            "llamabundle_prompt_tokens", "Prompt tokens: 'cached' were reused from the KV "
            "cache, 'evaluated' were computed", ["kind"], registry=r)
        self.generated_tokens = Counter("llamabundle_generated_tokens", "Tokens generated",
                                        registry=r)
        self.generations = Counter("llamabundle_generations", "Generations finished, by "
                                   "finish reason", ["reason"], registry=r)
        self.ttft = Histogram("llamabundle_time_to_first_token_seconds", "From the start of "
                              "a generation (after any queueing) to its first token",
                              buckets=TTFT_BUCKETS, registry=r)
        self.tpot = Histogram("llamabundle_time_per_output_token_seconds", "Mean time "
                              "between output tokens, per generation", buckets=TPOT_BUCKETS,
                              registry=r)
        self.queue_wait = Histogram("llamabundle_queue_wait_seconds", "Time a request "
                                    "waited for the model", buckets=TTFT_BUCKETS, registry=r)
        self.queue_depth = Gauge("llamabundle_queue_depth", "Requests waiting for the model",
                                 registry=r)
        self.busy = Gauge("llamabundle_sequences_busy", "Sequences generating now",
                          registry=r)
        self.kv_used = Gauge("llamabundle_kv_cache_tokens", "Tokens held in the KV cache",
                             registry=r)
        self.kv_size = Gauge("llamabundle_kv_cache_size_tokens", "Tokens the KV cache holds "
                             "at most (the context size)", registry=r)
        for kind in ("cached", "evaluated"):
            self.prompt_tokens.labels(kind)  # present from the start, at 0

    def observe(self, events: Iterator[Event]) -> Iterator[Event]:
        """`events` unchanged, counted and timed as they pass."""
        started = time.perf_counter()
        first = None
        for event in events:
            if isinstance(event, Finish):
                self._finished(event, started, first)
            elif first is None and isinstance(event, str):
                first = time.perf_counter()
                self.ttft.observe(first - started)
            yield event

    def _finished(self, finish: Finish, started: float, first: float | None) -> None:
        self.prompt_tokens.labels("cached").inc(finish.cached_tokens)
        self.prompt_tokens.labels("evaluated").inc(finish.prompt_tokens - finish.cached_tokens)
        self.generated_tokens.inc(finish.completion_tokens)
        self.generations.labels(finish.reason).inc()
        if finish.completion_tokens > 1 and finish.generation_ns:
            self.tpot.observe(finish.generation_ns / 1e9 / (finish.completion_tokens - 1))

    def text(self) -> bytes:
        return generate_latest(self.registry)
