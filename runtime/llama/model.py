"""A model read straight from the artifact, its context, and its tokenizer.

The weights are read in place: `llama_model_load_from_file_ptr` reads a GGUF from a FILE*'s
current position, which we put at the weights' offset inside the artifact, and mmaps it there;
nothing is copied to disk.
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
from collections.abc import Sequence
from typing import Any

from runtime import system
from runtime.errors import ArtifactError, RequestError
from runtime.llama import cpu
from runtime.llama.bindings import llama_cpp
from runtime.llama.infill import FimTokens

N_BATCH = 512  # n_ubatch == n_batch: llama.cpp aborts on bigger non-causal batches otherwise

def load_model(path: str, offset: int) -> Any:
    """The GGUF at `offset` inside `path`. The FILE* is needed only while loading."""
    params = llama_cpp.llama_model_default_params()
    params.n_gpu_layers = 0
    try:
        with system.c_file_at(path, offset) as fp:
            if fp is None:
                raise ArtifactError(f"{path}: cannot open ({system.c_errno_text()})")
            model = llama_cpp.llama_model_load_from_file_ptr(fp, params)
    except OSError:
        raise ArtifactError(f"{path}: cannot seek to the weights") from None
    if not model:
        raise ArtifactError(f"{path}: llama.cpp could not load the weights; "
                            "the artifact may be corrupted (try --verify)")
    return model


def new_context(model: Any, n_ctx: int, threads: int, n_seq: int = 1) -> Any:
    params = llama_cpp.llama_context_default_params()
    params.n_ctx = n_ctx
    params.n_seq_max = n_seq
    params.kv_unified = True  # every sequence may use the whole context (decoder.py says why)
    params.n_batch = params.n_ubatch = N_BATCH
    params.n_threads = params.n_threads_batch = threads
    params.swa_full = True  # a full sliding-window cache keeps chat prefixes reusable
    params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED  # llama-server's "auto"
    params.no_perf = True
    ctx = llama_cpp.llama_init_from_model(model, params)
    if not ctx:
        raise ArtifactError(f"llama.cpp could not make a {n_ctx}-token context (out of memory? "
                            "try a smaller --ctx-size)")
    pool = cpu.threadpool(threads)  # only this context's thread (the decoder's) may use it
    if pool is not None:
        _attach_threadpool(ctx, pool, None)  # None: the same pool for prompts
    return ctx


# Not in llama-cpp-python's bindings: declared here from llama.h.
_attach_threadpool = llama_cpp._lib.llama_attach_threadpool
_attach_threadpool.argtypes = [llama_cpp.llama_context_p_ctypes, ctypes.c_void_p,
                               ctypes.c_void_p]
_attach_threadpool.restype = None


def physical_cores() -> int:
    siblings = set()
    for path in glob.glob("/sys/devices/system/cpu/cpu[0-9]*/topology/thread_siblings_list"):
        with contextlib.suppress(OSError), open(path) as f:
            siblings.add(f.read().strip())
    usable = system.usable_cpus()
    return max(1, min(len(siblings) or usable, usable))


class Tokenizer:
    """The model's vocabulary: text to token ids and back."""

    def __init__(self, model: Any):
        self.vocab = llama_cpp.llama_model_get_vocab(model)
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(self.vocab)
        self.bos_text = self.token_text(llama_cpp.llama_vocab_bos(self.vocab))
        self.eos_text = self.token_text(llama_cpp.llama_vocab_eos(self.vocab))
        self.fim = FimTokens.of(self.vocab)
        bos = llama_cpp.llama_vocab_bos(self.vocab)
        self.bos = bos if bos >= 0 and llama_cpp.llama_vocab_get_add_bos(self.vocab) else None

    def token_text(self, token: int) -> str:
        if token < 0:
            return ""
        return llama_cpp.llama_vocab_get_text(self.vocab, token).decode(errors="replace")

    def tokenize(self, text: str, add_bos: bool = True, special: bool = True) -> list[int]:
        data = text.encode()
        room = len(data) + 2  # about one token per byte at most, and BOS/EOS
        while True:
            tokens = (llama_cpp.llama_token * room)()
            n = llama_cpp.llama_tokenize(self.vocab, data, len(data), tokens, room, add_bos,
                                         special)
            if n >= 0:
                return tokens[:n]
            room = -n  # llama.cpp says how many it needs

    def detokenize(self, tokens: Sequence[int]) -> str:
        tokens = self.checked(tokens)
        ids = (llama_cpp.llama_token * len(tokens))(*tokens)
        room = 16 * len(tokens) + 16
        while True:
            text = ctypes.create_string_buffer(room)
            n = llama_cpp.llama_detokenize(self.vocab, ids, len(tokens), text, room, False, False)
            if n >= 0:
                return text.raw[:n].decode("utf-8", errors="replace")
            room = -n

    def checked(self, tokens: Sequence[int], param: str = "tokens") -> list[int]:
        """Token ids from a caller, range-checked: llama.cpp aborts on an unknown id."""
        bad = next((t for t in tokens if not 0 <= t < self.n_vocab), None)
        if bad is not None:
            raise RequestError(f"token id {bad} is not in the vocabulary "
                               f"(0..{self.n_vocab - 1})", param=param)
        return list(tokens)
