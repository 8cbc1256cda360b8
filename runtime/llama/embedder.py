"""Embeddings: one pooled, L2-normalised vector per input, from a second llama.cpp context.

The chat context keeps its KV cache for prefix reuse; embeddings get their own context, made on
first use, with mean pooling and n_ubatch == n_batch == n_ctx: llama.cpp aborts the process when
a non-causal batch holds more than n_ubatch tokens, so inputs are bounded before they reach it.
"""

from __future__ import annotations

import math

from runtime.errors import RequestError
from runtime.llama.bindings import llama_cpp
from runtime.llama.decoder import DecodeError

N_EMBED_CTX = 512


class Embedder:
    def __init__(self, model: llama_cpp.llama_model_p, threads: int):
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = params.n_batch = params.n_ubatch = N_EMBED_CTX
        params.n_seq_max = 1
        params.embeddings = True
        params.pooling_type = llama_cpp.LLAMA_POOLING_TYPE_MEAN
        params.n_threads = params.n_threads_batch = threads
        self.ctx = llama_cpp.llama_init_from_model(model, params)
        if not self.ctx:
            raise DecodeError("could not create the embedding context")
        self.memory = llama_cpp.llama_get_memory(self.ctx)
        self.n_embd = llama_cpp.llama_model_n_embd(model)
        self.batch = llama_cpp.llama_batch_init(N_EMBED_CTX, 0, 1)

    def embed(self, tokens: list[int]) -> list[float]:
        if not tokens:
            raise RequestError("cannot embed an empty input", param="input")
        if len(tokens) > N_EMBED_CTX:
            raise RequestError(f"input has {len(tokens)} tokens; embeddings take at most "
                               f"{N_EMBED_CTX}", param="input", code="context_length_exceeded")
        llama_cpp.llama_memory_clear(self.memory, True)
        batch = self.batch
        batch.n_tokens = len(tokens)
        for i, token in enumerate(tokens):
            batch.token[i], batch.pos[i], batch.n_seq_id[i] = token, i, 1
            batch.seq_id[i][0] = 0
            batch.logits[i] = True  # every token feeds the mean pooling
        if llama_cpp.llama_decode(self.ctx, batch):
            raise DecodeError("llama_decode failed while embedding")
        pooled = llama_cpp.llama_get_embeddings_seq(self.ctx, 0)
        if not pooled:
            raise DecodeError("llama.cpp returned no pooled embedding")
        vector = pooled[:self.n_embd]
        norm = math.sqrt(sum(v * v for v in vector)) or 1.0
        return [v / norm for v in vector]

    def close(self) -> None:
        if self.ctx:
            llama_cpp.llama_batch_free(self.batch)
            llama_cpp.llama_free(self.ctx)
            self.ctx = None
