"""The prompts: the same messages for every server, different for every repetition.

Each repetition's prompts differ from their first words on, so no server can reuse a KV-cache
prefix from an earlier request (a fresh launch per repetition makes that doubly sure).
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# A base model in a chat turn repeats this request back forever under greedy decoding, so the
# answer runs to max_tokens on every server (checked per run through the token counts).
DECODE_PROMPT = "Tell me a long story about a dragon."
SHORT_PROMPT = "What is the capital of France?"
PREFILL_QUESTION = "Which of the words above is the most common?"
PREFILL_TOKENS = 512  # the whole chat prompt, template included, as the servers count it
TEMPLATE_ALLOWANCE = 9  # BOS and Gemma's turn markers around one user message

WORDS = (
    "river mountain window garden yellow quiet market engine paper silver winter morning "
    "candle harbor forest copper thunder basket ladder orange pocket marble valley meadow "
    "lantern feather island compass bridge shadow whisper velvet granite cotton station "
    "planet rocket saddle violin puzzle kettle orchard pillow canyon glacier falcon tunnel "
    "ribbon anchor blanket cactus dolphin emerald fountain harvest jungle kingdom lemon "
    "mirror needle oyster parrot quartz rabbit sunset tiger umbrella village walnut zebra "
    "after before during under above beside always seldom often slowly quickly gently "
    "build carry listen travel wonder gather follow borrow answer promise remember"
).split()

Messages = list[dict[str, str]]


def user(text: str) -> Messages:
    return [{"role": "user", "content": text}]


@dataclass(frozen=True)
class Prompts:
    """Token counts come from the model's own tokenizer, loaded vocabulary-only."""

    model: Path
    prefill_tokens: int = PREFILL_TOKENS

    def short(self, rep: int, k: int) -> Messages:
        # Fixed width: Gemma splits digits one by one, so every variant has the same length.
        return user(f"[{rep:03d}.{k:02d}] {SHORT_PROMPT}")

    def decode(self) -> Messages:
        return user(DECODE_PROMPT)

    def prefill(self, rep: int, warmup: bool = False) -> Messages:
        rng = random.Random(f"{rep}-{warmup}")
        words = [rng.choice(WORDS) for _ in range(self.prefill_tokens * 2)]
        target = self.prefill_tokens - TEMPLATE_ALLOWANCE - self._count(PREFILL_QUESTION) - 1
        lo, hi = 1, len(words)
        while lo < hi:  # the most words whose text stays within the target
            mid = (lo + hi + 1) // 2
            if self._count(" ".join(words[:mid])) <= target:
                lo = mid
            else:
                hi = mid - 1
        return user(" ".join(words[:lo]) + "\n\n" + PREFILL_QUESTION)

    def _count(self, text: str) -> int:
        return len(_tokenizer(str(self.model)).tokenize(text.encode(), add_bos=False,
                                                         special=False))


@functools.lru_cache(maxsize=4)
def _tokenizer(model: str) -> Any:
    import llama_cpp  # only here: nothing else in the bench process needs llama.cpp
    from llama_cpp._utils import suppress_stdout_stderr

    with suppress_stdout_stderr(disable=False):  # llama.cpp warns about n_ctx on stderr
        return llama_cpp.Llama(model, vocab_only=True, verbose=False)
