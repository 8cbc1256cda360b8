"""Log-probabilities of the tokens a generation picks, computed by llama.cpp's own samplers.

A softmax over the vocabulary in Python costs about 100 ms a token for Qwen2.5's 151,936
entries (measured: more than decoding the token); here llama.cpp does the arithmetic. The
position's logits are copied into a candidate array with strided byte copies (C speed), the
`dist` sampler turns them into normalised probabilities, and `top_k` sorts out the likeliest.
Both act on this copy only, never on the generation's own sampler chain, so the answer is the
same with or without logprobs. The values are the model's, before temperature and the rest.
"""

from __future__ import annotations

import array
import ctypes
import math
from collections.abc import Callable

from runtime.generation import TokenLogprob, TopLogprob
from runtime.llama.bindings import llama_cpp

_ENTRY = ctypes.sizeof(llama_cpp.llama_token_data)  # {int32 id; float logit; float p}
_LOGIT_AT = llama_cpp.llama_token_data.logit.offset  # type: ignore[attr-defined]


class LogprobReader:
    def __init__(self, ctx: llama_cpp.llama_context_p, n_vocab: int, top: int,
                 piece: Callable[[int], bytes]):
        self.ctx = ctx
        self.n = n_vocab
        self.top = top
        self.piece = piece
        self.ids = array.array("i", range(n_vocab)).tobytes()
        self.buf = bytearray(_ENTRY * n_vocab)
        self.data = (llama_cpp.llama_token_data * n_vocab).from_buffer(self.buf)
        self.dist = llama_cpp.llama_sampler_init_dist(0)  # its pick is never used
        self.top_k = llama_cpp.llama_sampler_init_top_k(max(top, 1))

    def read(self, token: int) -> TokenLogprob:
        """The chosen token's logprob and the top alternatives at the last decoded position."""
        logits = ctypes.string_at(llama_cpp.llama_get_logits_ith(self.ctx, -1), 4 * self.n)
        for i in range(4):  # the ids and logits, interleaved into the entries byte by byte
            self.buf[i::_ENTRY] = self.ids[i::4]
            self.buf[_LOGIT_AT + i::_ENTRY] = logits[i::4]
        candidates = llama_cpp.llama_token_data_array(self.data, self.n, -1, False)
        llama_cpp.llama_sampler_apply(self.dist, ctypes.byref(candidates))
        llama_cpp.llama_sampler_apply(self.top_k, ctypes.byref(candidates))
        best = self.data[0]
        # dist sets p = exp(logit - max) / sum; for the best token that is 1 / sum
        log_sum = best.logit - math.log(best.p)
        chosen = array.array("f", logits[4 * token:4 * token + 4])[0] - log_sum
        top = tuple(self._entry(int(e.id), e.logit - log_sum)
                    for e in self.data[:min(self.top, candidates.size)])
        entry = self._entry(token, chosen)
        return TokenLogprob(entry.token, entry.piece, entry.logprob, top)

    def _entry(self, token: int, logprob: float) -> TopLogprob:
        piece = self.piece(token)
        return TopLogprob(piece.decode("utf-8", errors="replace"), piece, logprob)

    def close(self) -> None:
        llama_cpp.llama_sampler_free(self.dist)
        llama_cpp.llama_sampler_free(self.top_k)
