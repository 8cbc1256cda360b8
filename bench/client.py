"""One chat request, timed the same way for every server, from the client's side.

All three servers speak OpenAI's `/v1/chat/completions`; only the fields every one of them
honours are sent. Times are `time.perf_counter()` stamps taken as each SSE line arrives.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import httpx

REQUEST_TIMEOUT_S = 300.0

# Greedy decoding, no repetition penalty (llama-cpp-python's server defaults to 1.1, ours to
# 1.1, llama-server to 1.0): every server must pick the same tokens at the same cost.
SAMPLING: dict[str, Any] = {"temperature": 0.0, "top_p": 1.0, "repeat_penalty": 1.0, "seed": 42}


@dataclass
class Streamed:
    sent: float  # perf_counter() when the request left
    first: float | None = None  # first chunk carrying text
    last: float | None = None  # last chunk carrying text
    text_chunks: int = 0
    text: str = ""
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None
    timings: dict[str, Any] | None = None  # llama-server's own numbers, kept for reference

    def completion_tokens(self, max_tokens: int) -> tuple[int, str]:
        """The number of generated tokens, and how it was found.

        llama-cpp-python's server sends no usage when streaming; an answer cut by max_tokens
        still has an exact count, and failing both the text chunks are one per token there.
        """
        if self.usage and self.usage.get("completion_tokens"):
            return int(self.usage["completion_tokens"]), "usage"
        if self.finish_reason == "length":
            return max_tokens, "max_tokens"
        return self.text_chunks, "chunks"

    def ttft(self) -> float:
        if self.first is None:
            raise RuntimeError("the server streamed no text")
        return self.first - self.sent


def body(messages: list[dict[str, str]], max_tokens: int, stream: bool) -> dict[str, Any]:
    request: dict[str, Any] = {"messages": messages, "max_tokens": max_tokens, **SAMPLING}
    if stream:
        request |= {"stream": True, "stream_options": {"include_usage": True}}
    return request


def stream_chat(client: httpx.Client, url: str, messages: list[dict[str, str]],
                max_tokens: int) -> Streamed:
    result = Streamed(sent=time.perf_counter())
    with client.stream("POST", url + "/v1/chat/completions", timeout=REQUEST_TIMEOUT_S,
                       json=body(messages, max_tokens, stream=True)) as response:
        _check(response)
        for line in response.iter_lines():
            now = time.perf_counter()
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                break
            _take(result, json.loads(data), now)
    return result


def _take(result: Streamed, chunk: dict[str, Any], now: float) -> None:
    if chunk.get("usage"):
        result.usage = chunk["usage"]
    if chunk.get("timings"):
        result.timings = chunk["timings"]
    for choice in chunk.get("choices") or []:
        text = (choice.get("delta") or {}).get("content") or ""
        if text:
            result.first = result.first if result.first is not None else now
            result.last = now
            result.text_chunks += 1
            result.text += text
        if choice.get("finish_reason"):
            result.finish_reason = choice["finish_reason"]


def chat(client: httpx.Client, url: str, messages: list[dict[str, str]],
         max_tokens: int) -> tuple[float, dict[str, Any]]:
    """A non-streamed chat request: (seconds from send to the full reply, the reply)."""
    sent = time.perf_counter()
    response = client.post(url + "/v1/chat/completions", timeout=REQUEST_TIMEOUT_S,
                           json=body(messages, max_tokens, stream=False))
    elapsed = time.perf_counter() - sent
    _check(response)
    return elapsed, response.json()


def _check(response: httpx.Response) -> None:
    if response.status_code != 200:
        response.read()
        raise RuntimeError(f"HTTP {response.status_code}: {response.text[:300]}")
