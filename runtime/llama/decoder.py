"""The generation loop, on llama.cpp's C API through llama-cpp-python's low-level bindings.

Why not `Llama.create_completion`: per token it re-detokenizes the whole answer, scans numpy
score arrays and runs Python stop-sequence bookkeeping (and with stop strings it can overshoot
`max_tokens`). Here each token costs one C sampler call, one decode and one piece lookup;
the rest is a few string operations. The KV cache of sequence 0 is kept between requests and
reused up to the longest common prefix, so turn 8 of a chat only evaluates the new messages.
"""

from __future__ import annotations

import codecs
import ctypes
import logging
import time
from collections.abc import Iterator, Set

from runtime.errors import ContextOverflowError, LlamabundleError, RequestError
from runtime.generation import Event, Finish, Sampling, TokenLogprob
from runtime.llama.bindings import llama_cpp
from runtime.llama.candidates import Candidates, LogprobReader, sample_checked
from runtime.llama.tool_grammar import ToolGrammar
from runtime.stops import StopScanner

log = logging.getLogger(__name__)

LLAMA_DEFAULT_SEED = 0xFFFFFFFF  # llama.cpp: pick a random seed


class DecodeError(LlamabundleError):
    pass


class Decoder:
    """Owns one llama.cpp context and what its KV cache holds (sequence 0)."""

    def __init__(self, ctx: llama_cpp.llama_context_p, vocab: llama_cpp.llama_vocab_p,
                 n_ctx: int, n_batch: int):
        self.ctx = ctx
        self.vocab = vocab
        self.n_ctx = n_ctx
        self.n_batch = n_batch
        self.memory = llama_cpp.llama_get_memory(ctx)
        self.cached: list[int] = []
        self._piece_buf = ctypes.create_string_buffer(256)
        self._tokens = (llama_cpp.llama_token * n_batch)()  # reused: decode runs per token
        self._candidates: Candidates | None = None  # made on first use: 1.8 MB for Qwen2.5

    def candidates(self) -> Candidates:
        if self._candidates is None:
            self._candidates = Candidates(self.ctx, llama_cpp.llama_vocab_n_tokens(self.vocab))
        return self._candidates

    def generate(self, prompt: list[int], sampling: Sampling, max_tokens: int,
                 stops: tuple[str, ...], grammar: str | ToolGrammar | None = None,
                 visible: Set[int] = frozenset(),
                 logprobs: int | None = None) -> Iterator[Event]:
        """Text pieces as they are decoded, then one Finish; closing the iterator stops at once.

        max_tokens: 0 evaluates the prompt and generates nothing (it warms the cache, as
        llama.cpp's n_predict 0 does); -1 generates until the context is full. A prompt that
        cannot fit raises here, before anything is generated. grammar: GBNF text, or a tool
        grammar (lazy ones wait for their trigger). visible: control tokens whose text is
        shown (tool-call markers such as [TOOL_CALLS], which the parser must see). logprobs:
        each token's log-probability, with that many alternatives, in the Finish."""
        if not prompt:
            raise RequestError("the prompt is empty", param="prompt")
        if len(prompt) >= self.n_ctx:
            raise ContextOverflowError(
                f"the prompt has {len(prompt)} tokens but the context holds {self.n_ctx}; "
                "shorten the conversation or start the artifact with a larger -c")
        budget = self.n_ctx - len(prompt)
        if max_tokens >= 0:
            budget = min(budget, max_tokens)
        constraint = self._constraint(grammar) if grammar else None
        chain = self._sampler(sampling, prompt)
        reader = None if logprobs is None else LogprobReader(self.candidates(), logprobs,
                                                             self._piece)
        return self._run(prompt, chain, constraint, budget, stops, visible, reader)

    def _run(self, prompt: list[int], chain: llama_cpp.llama_sampler_p,
             constraint: llama_cpp.llama_sampler_p | None, budget: int,
             stops: tuple[str, ...], visible: Set[int],
             reader: LogprobReader | None) -> Iterator[Event]:
        utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        scanner = StopScanner(stops)
        produced, reason = 0, "length"
        logprobs: list[TokenLogprob] = []
        try:
            started = time.perf_counter_ns()
            reused = self._prefill(prompt)
            prefilled = time.perf_counter_ns()
            while produced < budget:
                token = llama_cpp.llama_sampler_sample(chain, self.ctx, -1) \
                    if constraint is None else sample_checked(chain, constraint,
                                                              self.candidates())
                if llama_cpp.llama_vocab_is_eog(self.vocab, token):
                    reason = "stop"
                    break
                produced += 1
                if reader is not None:
                    logprobs.append(reader.read(token))
                text, hit = scanner.feed(utf8.decode(self._piece(token, token in visible)))
                if text:
                    yield text
                if hit:
                    reason = "stop"
                    break
                if produced < budget:  # the last token's KV entry would never be used
                    self._decode([token])
            tail = scanner.flush() + utf8.decode(b"", final=True)
            if tail:
                yield tail
            yield Finish(reason, len(prompt), produced, reused, prefilled - started,
                         time.perf_counter_ns() - prefilled,
                         None if reader is None else tuple(logprobs))
        finally:
            llama_cpp.llama_sampler_free(chain)
            if constraint is not None:
                llama_cpp.llama_sampler_free(constraint)
            if reader is not None:
                reader.close()

    def _prefill(self, prompt: list[int]) -> int:
        """Evaluates the prompt, reusing the cached prefix; returns how many tokens were reused."""
        keep = 0
        for a, b in zip(self.cached, prompt, strict=False):
            if a != b:
                break
            keep += 1
        keep = min(keep, len(prompt) - 1)  # the last prompt token must be evaluated for logits
        if not llama_cpp.llama_memory_seq_rm(self.memory, 0, keep, -1):
            keep = 0  # this cache cannot drop a partial sequence: start over
            llama_cpp.llama_memory_clear(self.memory, True)
        del self.cached[keep:]
        for start in range(keep, len(prompt), self.n_batch):
            self._decode(prompt[start:start + self.n_batch])
        return keep

    def _decode(self, tokens: list[int]) -> None:
        self._tokens[:len(tokens)] = tokens  # type: ignore[assignment]
        code = llama_cpp.llama_decode(self.ctx,
                                      llama_cpp.llama_batch_get_one(self._tokens, len(tokens)))
        if code != 0:
            # The KV cache may hold part of the batch: forget it all rather than trust it.
            llama_cpp.llama_memory_clear(self.memory, True)
            self.cached.clear()
            raise DecodeError(f"llama_decode failed ({code}); the request was dropped")
        self.cached.extend(tokens)

    def _piece(self, token: int, special: bool = False) -> bytes:
        n = llama_cpp.llama_token_to_piece(self.vocab, token, self._piece_buf,
                                           len(self._piece_buf), 0, special)
        if n < 0:
            self._piece_buf = ctypes.create_string_buffer(-n)
            n = llama_cpp.llama_token_to_piece(self.vocab, token, self._piece_buf,
                                               len(self._piece_buf), 0, special)
        return self._piece_buf.raw[:n]

    def _sampler(self, s: Sampling, history: list[int]) -> llama_cpp.llama_sampler_p:
        # The order of llama.cpp's own default chain: penalties, top-k, top-p, min-p, temp, dist.
        chain = llama_cpp.llama_sampler_chain_init(
            llama_cpp.llama_sampler_chain_default_params())

        def add(sampler: llama_cpp.llama_sampler_p) -> None:
            llama_cpp.llama_sampler_chain_add(chain, sampler)

        if s.repeat_penalty != 1.0:
            n_vocab = llama_cpp.llama_vocab_n_tokens(self.vocab)
            add(llama_cpp.llama_sampler_init_penalties(n_vocab, s.repeat_last_n,
                                                       s.repeat_penalty, 0.0, 0.0))
            for token in history[-s.repeat_last_n:]:
                llama_cpp.llama_sampler_accept(chain, token)
        if s.temperature <= 0:
            add(llama_cpp.llama_sampler_init_greedy())
        else:
            if s.top_k > 0:
                add(llama_cpp.llama_sampler_init_top_k(s.top_k))
            add(llama_cpp.llama_sampler_init_top_p(s.top_p, 1))
            add(llama_cpp.llama_sampler_init_min_p(s.min_p, 1))
            add(llama_cpp.llama_sampler_init_temp(s.temperature))
            seed = LLAMA_DEFAULT_SEED if s.seed is None else s.seed & 0xFFFFFFFF
            add(llama_cpp.llama_sampler_init_dist(seed))
        return chain

    def _constraint(self, grammar: str | ToolGrammar) -> llama_cpp.llama_sampler_p:
        """The grammar's sampler, kept out of the chain: sample_checked consults it (it never
        sees the prompt, only the answer)."""
        constraint = self._grammar(grammar)
        if not constraint:
            if isinstance(grammar, ToolGrammar):
                raise RequestError("tools: the tools' schemas could not be compiled",
                                   param="tools")
            raise RequestError("response_format: the schema could not be compiled",
                               param="response_format")
        return constraint

    def _grammar(self, grammar: str | ToolGrammar) -> llama_cpp.llama_sampler_p:
        if isinstance(grammar, str):
            return llama_cpp.llama_sampler_init_grammar(self.vocab, grammar.encode(), b"root")
        if not grammar.lazy:
            return llama_cpp.llama_sampler_init_grammar(self.vocab, grammar.gbnf.encode(),
                                                        b"root")
        # free text until a pattern matches (at the family's marker, or a bare JSON call at
        # the start); from there the call must follow the tools' schemas
        patterns = (ctypes.c_char_p * len(grammar.trigger_patterns))(
            *[p.encode() for p in grammar.trigger_patterns])
        return llama_cpp.llama_sampler_init_grammar_lazy_patterns(
            self.vocab, grammar.gbnf.encode(), b"root", patterns, len(patterns), None, 0)
