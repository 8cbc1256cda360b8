"""The model: loaded straight from the artifact, called only from the worker thread.

llama-cpp-python's `Llama` is used for tokenizing, sampling, chat formatting and the KV-cache
prefix reuse between turns; the one thing it cannot do is read a GGUF that sits at an offset
inside another file. llama.cpp can (`llama_model_load_from_file_ptr` reads from a FILE*'s current
position and mmaps in place), so `_ArtifactModel` below is the bridge: nothing of the weights is
ever copied to disk.
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import logging
import os
import threading
from collections.abc import Iterator
from typing import Any

import llama_cpp
import llama_cpp._internals as internals
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from runtime.chat_templates import stop_strings
from runtime.errors import ArtifactError, RequestError
from runtime.manifest import Manifest

log = logging.getLogger(__name__)

N_BATCH = 512  # n_ubatch == n_batch: llama.cpp aborts on bigger non-causal batches otherwise

_libc = ctypes.CDLL("libc.so.6", use_errno=True)
_libc.fopen.restype = ctypes.c_void_p
_libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
_libc.fseeko.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int]
_libc.fclose.argtypes = [ctypes.c_void_p]


class _ArtifactModel(internals.LlamaModel):
    """A LlamaModel whose GGUF starts at `offset` inside `path_model` (the artifact).

    Mirrors LlamaModel.__init__ of the pinned llama-cpp-python, swapping the path-based load
    for the FILE*-based one. The FILE* is only needed while loading: the mmap outlives it.
    """

    offset = 0

    def __init__(self, *, path_model: str, params: Any, verbose: bool = True):
        self.path_model = path_model
        self.params = params
        self.verbose = verbose
        self._exit_stack = contextlib.ExitStack()
        self.sampler = None
        self.custom_samplers = []
        fp = _libc.fopen(path_model.encode(), b"rb")
        if not fp:
            raise ArtifactError(f"{path_model}: cannot open ({os.strerror(ctypes.get_errno())})")
        try:
            if _libc.fseeko(fp, self.offset, os.SEEK_SET) != 0:
                raise ArtifactError(f"{path_model}: cannot seek to the weights")
            model = llama_cpp.llama_model_load_from_file_ptr(fp, params)
        finally:
            _libc.fclose(fp)
        if not model:
            raise ArtifactError(f"{path_model}: llama.cpp could not load the weights; "
                                "the artifact may be corrupted (try --verify)")
        self.model = model
        self.vocab = llama_cpp.llama_model_get_vocab(model)
        self._exit_stack.callback(self._free)

    def _free(self) -> None:
        if self.model is not None:
            llama_cpp.llama_model_free(self.model)
            self.model = None


_swap_lock = threading.Lock()


@contextlib.contextmanager
def _models_from_offset(offset: int) -> Iterator[None]:
    # Llama.__init__ builds its model with `internals.LlamaModel(...)`; swapping that name while
    # one Llama is made is the smallest bridge (the alternative is copying all of __init__).
    with _swap_lock:
        original = internals.LlamaModel
        model_class = type("_At", (_ArtifactModel,), {"offset": offset})
        internals.LlamaModel = model_class  # type: ignore[misc,assignment]
        try:
            yield
        finally:
            internals.LlamaModel = original  # type: ignore[misc]


def physical_cores() -> int:
    siblings = set()
    for path in glob.glob("/sys/devices/system/cpu/cpu[0-9]*/topology/thread_siblings_list"):
        with contextlib.suppress(OSError), open(path) as f:
            siblings.add(f.read().strip())
    usable = len(os.sched_getaffinity(0))
    return max(1, min(len(siblings) or usable, usable))


class Engine:
    """One loaded model. Not thread-safe: the Worker calls it from a single thread."""

    def __init__(self, llama: llama_cpp.Llama, manifest: Manifest, settings: Any):
        self.llama = llama
        self.manifest = manifest
        self.settings = settings
        self.n_ctx = llama.n_ctx()
        self.extra_stops = stop_strings(manifest.chat_template_source)

    @classmethod
    def load(cls, artifact: str, manifest: Manifest, settings: Any) -> Engine:
        weights = manifest.section("weights")
        with _models_from_offset(weights.offset):
            llama = llama_cpp.Llama(
                model_path=artifact,
                n_ctx=settings.ctx_size,
                n_batch=N_BATCH,
                n_ubatch=N_BATCH,
                n_threads=settings.threads or physical_cores(),
                n_threads_batch=settings.threads or physical_cores(),
                use_mmap=True,
                verbose=False,
            )
        llama.chat_handler = cls._chat_handler(llama, manifest)
        return cls(llama, manifest, settings)

    @staticmethod
    def _chat_handler(llama: llama_cpp.Llama, manifest: Manifest) -> Any:
        model = llama._model
        eos, bos = model.token_eos(), model.token_bos()
        formatter = Jinja2ChatFormatter(
            template=manifest.chat_template,
            eos_token=model.token_get_text(eos) if eos != -1 else "",
            bos_token=model.token_get_text(bos) if bos != -1 else "",
            stop_token_ids=[eos] if eos != -1 else None,
        )
        return formatter.to_chat_handler()

    def sampling(self, request: dict[str, Any]) -> dict[str, Any]:
        """Request fields with the bundle's defaults filled in where the request left them out."""
        s = self.settings
        max_tokens = request.get("max_tokens")
        if max_tokens is None:
            max_tokens = s.n_predict if s.n_predict >= 0 else 0  # Llama: <= 0 means "to n_ctx"
        stop = request.get("stop") or []
        stop = [stop] if isinstance(stop, str) else list(stop)
        return {
            "temperature": _default(request.get("temperature"), s.temp),
            "top_p": _default(request.get("top_p"), s.top_p),
            "top_k": _default(request.get("top_k"), s.top_k),
            "repeat_penalty": _default(request.get("repeat_penalty"), s.repeat_penalty),
            "max_tokens": max_tokens,
            "stop": stop + self.extra_stops,
            "seed": request.get("seed"),
        }

    def with_system_prompt(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if self.settings.system_prompt and not any(m["role"] == "system" for m in messages):
            return [{"role": "system", "content": self.settings.system_prompt}, *messages]
        return messages

    def chat(self, request: dict[str, Any], stream: bool) -> Any:
        """A chat completion dict, or with `stream` an iterator of chunk dicts."""
        with caller_errors():
            result = self.llama.create_chat_completion(
                messages=self.with_system_prompt(request["messages"]),  # type: ignore[arg-type]
                model=self.manifest.model_id,
                stream=stream,
                **self.sampling(request),
            )
        return _guarded(result) if stream else result  # type: ignore[arg-type]


def _default(value: Any, fallback: Any) -> Any:
    return fallback if value is None else value


@contextlib.contextmanager
def caller_errors() -> Iterator[None]:
    # Inside Llama's completion path a ValueError is always about the request (a prompt longer
    # than the context, an unusable parameter): turn it into our own 4xx type, by type.
    try:
        yield
    except ValueError as e:
        raise RequestError(str(e)) from None


def _guarded(chunks: Iterator[Any]) -> Iterator[Any]:
    # Llama's streams raise their errors at the first next(), not at the call.
    with caller_errors():
        yield from chunks
