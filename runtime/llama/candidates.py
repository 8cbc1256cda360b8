"""A position's logits as llama.cpp's candidate array, filled from Python at C speed, and
what it serves: log-probabilities, and sampling that checks a grammar on the pick first.

Filling: the ids and logits are interleaved into the array's entries with strided byte
copies, about a millisecond for Qwen2.5's 151,936 entries, where a Python loop over them costs
about 100 ms (more than decoding the token).

Log-probabilities: the `dist` sampler turns the copy's logits into normalised probabilities
and `top_k` sorts out the likeliest; they act on the copy only, never on the generation's own
sampler chain, so the answer is the same with or without logprobs. The values are the
model's, before temperature and the rest.
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


class Candidates:
    """One reusable candidate array for a context's last decoded position."""

    def __init__(self, ctx: llama_cpp.llama_context_p, n_vocab: int):
        self.ctx = ctx
        self.n = n_vocab
        self.ids = array.array("i", range(n_vocab)).tobytes()
        self.buf = bytearray(_ENTRY * n_vocab)
        self.data = (llama_cpp.llama_token_data * n_vocab).from_buffer(self.buf)
        self.logits = b""

    def fill(self, row: int = -1) -> llama_cpp.llama_token_data_array:
        """Every token with its logit at the batch's `row`, in id order (samplers sort and
        cut the array)."""
        self.logits = ctypes.string_at(llama_cpp.llama_get_logits_ith(self.ctx, row),
                                       4 * self.n)
        for i in range(4):  # the ids and logits, interleaved into the entries byte by byte
            self.buf[i::_ENTRY] = self.ids[i::4]
            self.buf[_LOGIT_AT + i::_ENTRY] = self.logits[i::4]
        return llama_cpp.llama_token_data_array(self.data, self.n, -1, False)

    def logit(self, token: int) -> float:
        """A token's logit at the position last filled."""
        return array.array("f", self.logits[4 * token:4 * token + 4])[0]


def sample_checked(chain: llama_cpp.llama_sampler_p, grammar: llama_cpp.llama_sampler_p,
                   candidates: Candidates, row: int = -1) -> int:
    """A token picked by `chain` under `grammar`, as llama.cpp's common sampler does it:
    the grammar checks the free pick first, and filters the whole vocabulary (tens of ms a
    token for a large one) only when it refuses that pick. Both accept the token."""
    array_ = candidates.fill(row)
    llama_cpp.llama_sampler_apply(chain, ctypes.byref(array_))
    token = int(array_.data[array_.selected].id)
    if not _allows(grammar, token):
        array_ = candidates.fill(row)
        llama_cpp.llama_sampler_apply(grammar, ctypes.byref(array_))
        llama_cpp.llama_sampler_apply(chain, ctypes.byref(array_))
        token = int(array_.data[array_.selected].id)
    llama_cpp.llama_sampler_accept(grammar, token)
    llama_cpp.llama_sampler_accept(chain, token)
    return token


def _allows(grammar: llama_cpp.llama_sampler_p, token: int) -> bool:
    one = llama_cpp.llama_token_data(token, 0.0, 0.0)
    array_ = llama_cpp.llama_token_data_array(ctypes.pointer(one), 1, -1, False)
    llama_cpp.llama_sampler_apply(grammar, ctypes.byref(array_))
    return one.logit != float("-inf")


class LogprobReader:
    def __init__(self, top: int, piece: Callable[[int], bytes]):
        self.top = top
        self.piece = piece
        self.dist = llama_cpp.llama_sampler_init_dist(0)  # its pick is never used
        self.top_k = llama_cpp.llama_sampler_init_top_k(max(top, 1))

    def read(self, candidates: Candidates, row: int, token: int) -> TokenLogprob:
        """The chosen token's logprob and the top alternatives at the batch's `row`."""
        array_ = candidates.fill(row)
        llama_cpp.llama_sampler_apply(self.dist, ctypes.byref(array_))
        llama_cpp.llama_sampler_apply(self.top_k, ctypes.byref(array_))
        best = array_.data[0]
        # dist sets p = exp(logit - max) / sum; for the best token that is 1 / sum
        log_sum = best.logit - math.log(best.p)
        chosen = candidates.logit(token) - log_sum
        top = tuple(self._entry(int(array_.data[i].id), array_.data[i].logit - log_sum)
                    for i in range(min(self.top, array_.size)))
        entry = self._entry(token, chosen)
        return TokenLogprob(entry.token, entry.piece, entry.logprob, top)

    def _entry(self, token: int, logprob: float) -> TopLogprob:
        piece = self.piece(token)
        return TopLogprob(piece.decode("utf-8", errors="replace"), piece, logprob)

    def close(self) -> None:
        llama_cpp.llama_sampler_free(self.dist)
        llama_cpp.llama_sampler_free(self.top_k)
