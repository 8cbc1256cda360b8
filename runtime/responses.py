"""OpenAI and llama.cpp response shapes, built from the decoder's pieces and Finish."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

from runtime.decode import Finish


def usage(finish: Finish) -> dict[str, Any]:
    return {"prompt_tokens": finish.prompt_tokens, "completion_tokens": finish.completion_tokens,
            "total_tokens": finish.prompt_tokens + finish.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": finish.cached_tokens}}


def collect(events: Iterable[str | Finish]) -> tuple[str, Finish]:
    parts: list[str] = []
    for event in events:
        if isinstance(event, Finish):
            return "".join(parts), event
        parts.append(event)
    raise RuntimeError("generation ended without a Finish")


def total_usage(results: list[tuple[str, Finish]]) -> dict[str, Any]:
    """Usage of n choices: the prompt counted once, as OpenAI does."""
    first = results[0][1]
    return usage(Finish(first.reason, first.prompt_tokens,
                        sum(f.completion_tokens for _, f in results), first.cached_tokens))


def _envelope(id_prefix: str, kind: str, model: str) -> dict[str, Any]:
    """The fields every OpenAI completion object and chunk starts with."""
    return {"id": f"{id_prefix}-{uuid.uuid4().hex}", "object": kind,
            "created": int(time.time()), "model": model}


def chat_completion(results: list[tuple[str, Finish]], model: str) -> dict[str, Any]:
    """One choice per (text, finish)."""
    return _envelope("chatcmpl", "chat.completion", model) | {
        "choices": [{"index": i, "message": {"role": "assistant", "content": text},
                     "logprobs": None, "finish_reason": f.reason}
                    for i, (text, f) in enumerate(results)],
        "usage": total_usage(results),
    }


def chat_chunks(events: Iterable[str | Finish], model: str,
                include_usage: bool = False) -> Iterator[dict[str, Any]]:
    base = _envelope("chatcmpl", "chat.completion.chunk", model)

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return base | {"choices": [{"index": 0, "delta": delta, "logprobs": None,
                                    "finish_reason": finish}]}

    yield chunk({"role": "assistant", "content": ""})
    for event in events:
        if isinstance(event, Finish):
            yield chunk({}, event.reason)
            if include_usage:
                yield base | {"choices": [], "usage": usage(event)}
            return
        yield chunk({"content": event})


def text_completion(results: list[tuple[str, Finish]], model: str) -> dict[str, Any]:
    return _envelope("cmpl", "text_completion", model) | {
        "choices": [{"index": i, "text": text, "logprobs": None, "finish_reason": f.reason}
                    for i, (text, f) in enumerate(results)],
        "usage": total_usage(results),
    }


def text_chunks(events: Iterable[str | Finish], model: str,
                include_usage: bool = False) -> Iterator[dict[str, Any]]:
    base = _envelope("cmpl", "text_completion", model)
    for event in events:
        finish = event if isinstance(event, Finish) else None
        yield base | {"choices": [{"index": 0, "text": "" if finish else event,
                                   "logprobs": None,
                                   "finish_reason": finish.reason if finish else None}]}
        if finish:
            if include_usage:
                yield base | {"choices": [], "usage": usage(finish)}
            return


def native_result(text: str, finish: Finish, model: str, seconds: float) -> dict[str, Any]:
    """llama.cpp's /completion reply (the fields its clients read)."""
    return {"content": text, "stop": True, "model": model,
            "tokens_predicted": finish.completion_tokens,
            "tokens_evaluated": finish.prompt_tokens,
            "tokens_cached": finish.cached_tokens,
            "stopped_eos": finish.reason == "stop", "stopped_limit": finish.reason == "length",
            "stop_type": "eos" if finish.reason == "stop" else "limit",
            "timings": {"predicted_n": finish.completion_tokens, "total_ms": seconds * 1000}}


def native_chunks(events: Iterable[str | Finish], model: str) -> Iterator[dict[str, Any]]:
    started = time.monotonic()
    for event in events:
        if isinstance(event, Finish):
            yield native_result("", event, model, time.monotonic() - started)
            return
        yield {"content": event, "stop": False}
