"""Embeddings: one pooled, L2-normalised vector per input, from a second llama.cpp context.

The chat context keeps its KV cache for prefix reuse; embeddings get their own context, made on
first use, with n_ubatch == n_batch == n_ctx: llama.cpp aborts the process when a non-causal
batch holds more than n_ubatch tokens, so inputs are bounded before they reach it.

A chat model's embeddings are mean-pooled (it has no pooling of its own); a dedicated embedding
model (the knowledge bundle's) keeps the pooling its GGUF declares. `embed_many` packs several
sequences into one batch, each with its own sequence id, as llama.cpp's batched embedding does:
a knowledge build embeds thousands of chunks, and one decode per chunk would leave the CPU idle
between small matrix products.
"""

from __future__ import annotations

import ctypes
import math
from collections.abc import Sequence
from typing import Any

from runtime.errors import LoadError, RequestError
from runtime.llama.bindings import llama_cpp
from runtime.llama.decoder import DecodeError

N_EMBED_CTX = 512


def load_embedding_model(path: str) -> Any:
    """A GGUF embedding model from its own file (the build's; an artifact maps its embedder
    section with runtime.llama.model.load_model)."""
    params = llama_cpp.llama_model_default_params()
    params.n_gpu_layers = 0
    model = llama_cpp.llama_model_load_from_file(path.encode(), params)
    if not model:
        raise LoadError(f"{path}: llama.cpp could not load it as a GGUF embedding model")
    return model


def model_meta(model: Any, key: str) -> str | None:
    """A GGUF metadata value as text (e.g. general.name), or None when the model has none."""
    buffer = ctypes.create_string_buffer(256)
    n = llama_cpp.llama_model_meta_val_str(model, key.encode(), buffer, len(buffer))
    return buffer.value.decode(errors="replace") if n >= 0 else None


class Embedder:
    def __init__(self, model: llama_cpp.llama_model_p, threads: int, n_batch: int = N_EMBED_CTX,
                 n_seq_max: int = 1, own_pooling: bool = False):
        self.n_batch, self.n_seq_max = n_batch, n_seq_max
        self.ctx = self._context(model, threads, own_pooling)
        if own_pooling and llama_cpp.llama_pooling_type(self.ctx) in (
                llama_cpp.LLAMA_POOLING_TYPE_NONE, llama_cpp.LLAMA_POOLING_TYPE_RANK):
            # The GGUF declares no pooling to one vector per input: mean-pool it, as for chat
            # models.
            llama_cpp.llama_free(self.ctx)
            self.ctx = self._context(model, threads, own_pooling=False)
        self.memory = llama_cpp.llama_get_memory(self.ctx)
        self.n_embd = llama_cpp.llama_model_n_embd(model)
        self.batch = llama_cpp.llama_batch_init(n_batch, 0, 1)

    def _context(self, model: llama_cpp.llama_model_p, threads: int, own_pooling: bool) -> object:
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = params.n_batch = params.n_ubatch = self.n_batch
        params.n_seq_max = self.n_seq_max
        params.embeddings = True
        params.pooling_type = (llama_cpp.LLAMA_POOLING_TYPE_UNSPECIFIED if own_pooling
                               else llama_cpp.LLAMA_POOLING_TYPE_MEAN)
        params.n_threads = params.n_threads_batch = threads
        params.no_perf = True
        ctx = llama_cpp.llama_init_from_model(model, params)
        if not ctx:
            raise DecodeError("could not create the embedding context")
        return ctx

    def use_threads(self, n: int) -> None:
        """The threads the next decodes run on (llama.cpp's pool for this context)."""
        llama_cpp.llama_set_n_threads(self.ctx, n, n)

    def embed(self, tokens: list[int]) -> list[float]:
        if not tokens:
            raise RequestError("cannot embed an empty input", param="input")
        if len(tokens) > self.n_batch:
            raise RequestError(f"input has {len(tokens)} tokens; embeddings take at most "
                               f"{self.n_batch}", param="input", code="context_length_exceeded")
        return self._decode([tokens])[0]

    def embed_many(self, sequences: Sequence[list[int]]) -> list[list[float]]:
        """One vector per sequence, in order; as many sequences per decode as fit in n_batch
        tokens and n_seq_max sequences. Each must be non-empty and at most n_batch tokens."""
        out: list[list[float]] = []
        group: list[list[int]] = []
        used = 0
        for tokens in sequences:
            if not tokens or len(tokens) > self.n_batch:
                raise RequestError(f"cannot embed a sequence of {len(tokens)} tokens "
                                   f"(1 to {self.n_batch})", param="input")
            if group and (used + len(tokens) > self.n_batch or len(group) == self.n_seq_max):
                out.extend(self._decode(group))
                group, used = [], 0
            group.append(tokens)
            used += len(tokens)
        if group:
            out.extend(self._decode(group))
        return out

    def _decode(self, group: list[list[int]]) -> list[list[float]]:
        if self.memory:
            llama_cpp.llama_memory_clear(self.memory, True)
        batch = self.batch
        i = 0
        for seq, tokens in enumerate(group):
            for pos, token in enumerate(tokens):
                batch.token[i], batch.pos[i], batch.n_seq_id[i] = token, pos, 1
                batch.seq_id[i][0] = seq
                batch.logits[i] = True  # every token feeds the pooling
                i += 1
        batch.n_tokens = i
        if llama_cpp.llama_decode(self.ctx, batch):
            raise DecodeError("llama_decode failed while embedding")
        vectors = []
        for seq in range(len(group)):
            pooled = llama_cpp.llama_get_embeddings_seq(self.ctx, seq)
            if not pooled:
                raise DecodeError("llama.cpp returned no pooled embedding")
            vectors.append(_normalized(pooled[:self.n_embd]))
        return vectors

    def close(self) -> None:
        if self.ctx:
            llama_cpp.llama_batch_free(self.batch)
            llama_cpp.llama_free(self.ctx)
            self.ctx = None


def _normalized(vector: list[float]) -> list[float]:
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [v / norm for v in vector]
