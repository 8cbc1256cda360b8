"""The model: loaded straight from the artifact, called only from the worker thread.

llama-cpp-python's `Llama` loads the model, makes the context, tokenizes and renders chat
templates; generation runs in runtime/decode.py. The one thing `Llama` cannot do is read a GGUF
that sits at an offset inside another file. llama.cpp can (`llama_model_load_from_file_ptr`
reads from a FILE*'s current position and mmaps in place), so `_ArtifactModel` below is the
bridge: nothing of the weights is ever copied to disk.
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import json
import logging
import os
import threading
from collections.abc import Iterator
from typing import Any

import jinja2
import llama_cpp
import llama_cpp._internals as internals
from llama_cpp.llama_chat_format import Jinja2ChatFormatter
from llama_cpp.llama_grammar import JSON_GBNF, json_schema_to_gbnf

from runtime.chat_templates import stop_strings
from runtime.decode import Decoder, Finish, Sampling
from runtime.embed import Embedder
from runtime.errors import ArtifactError, RequestError
from runtime.manifest import Manifest

N_BATCH = 512  # n_ubatch == n_batch: llama.cpp aborts on bigger non-causal batches otherwise

_llama_log = logging.getLogger("llama.cpp")
GGML_LOG_LEVEL_ERROR = 4  # ggml.h of the pinned llama.cpp (llama-cpp-python maps 3, WARN)


@llama_cpp.llama_log_callback
def _log_callback(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
    # llama.cpp's chatter (model facts, cache notes, "this is probably a bug in the model") is
    # for developers; an end user sees only its errors. `-v` style debugging: LOGLEVEL=DEBUG.
    _llama_log.log(logging.ERROR if level == GGML_LOG_LEVEL_ERROR else logging.DEBUG,
                   "%s", text.decode("utf-8", errors="replace").rstrip())


llama_cpp.llama_log_set(_log_callback, ctypes.c_void_p(0))

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
        internals.LlamaModel = type("_At", (_ArtifactModel,), {"offset": offset})  # type: ignore
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
        self.formatter = _formatter(llama, manifest.chat_template)
        self.decoder = Decoder(llama._ctx.ctx, llama._model.vocab, self.n_ctx, N_BATCH)
        self.threads = llama.n_threads
        self.embedder: Embedder | None = None

    @classmethod
    def load(cls, artifact: str, manifest: Manifest, settings: Any) -> Engine:
        weights = manifest.section("weights")
        trained = manifest.context_length or settings.ctx_size or 4096
        threads = settings.threads or physical_cores()
        with _models_from_offset(weights.offset):
            llama = llama_cpp.Llama(
                model_path=artifact,
                n_ctx=min(settings.ctx_size or trained, trained),
                n_batch=N_BATCH,
                n_ubatch=N_BATCH,
                n_threads=threads,
                n_threads_batch=threads,
                swa_full=True,  # a full sliding-window cache keeps chat prefixes reusable
                flash_attn=True,  # llama-server's default ("auto" enables it on CPU)
                use_mmap=True,
                verbose=False,
            )
        return cls(llama, manifest, settings)

    def sampling(self, request: dict[str, Any]) -> Sampling:
        """The request's sampling fields, with the bundle's defaults where it left them out."""
        s = self.settings
        schema = request.get("json_schema")
        return Sampling(
            temperature=_default(request.get("temperature"), s.temp),
            top_p=_default(request.get("top_p"), s.top_p),
            top_k=_default(request.get("top_k"), s.top_k),
            repeat_penalty=_default(request.get("repeat_penalty"), s.repeat_penalty),
            seed=request.get("seed"),
            grammar=None if schema is None else _grammar(schema),
        )

    def max_tokens(self, request: dict[str, Any]) -> int:
        value = request.get("max_tokens")
        return self.settings.n_predict if value is None else value

    def stops(self, request: dict[str, Any]) -> list[str]:
        stop = request.get("stop") or []
        return ([stop] if isinstance(stop, str) else list(stop)) + self.extra_stops

    def chat_prompt(self, messages: list[dict[str, Any]]) -> list[int]:
        if self.settings.system_prompt and not any(m["role"] == "system" for m in messages):
            messages = [{"role": "system", "content": self.settings.system_prompt}, *messages]
        try:
            rendered = self.formatter(messages=messages)  # type: ignore[arg-type]
        except jinja2.TemplateError as e:  # e.g. a template's "roles must alternate"
            raise RequestError(f"the chat template rejected these messages: {e}",
                               param="messages") from None
        return self.tokenize(rendered.prompt, add_bos=not rendered.added_special, special=True)

    def tokenize(self, text: str, add_bos: bool = True, special: bool = True) -> list[int]:
        return self.llama.tokenize(text.encode(), add_bos=add_bos, special=special)

    def detokenize(self, tokens: list[int]) -> str:
        return self.llama.detokenize(self.checked(tokens)).decode("utf-8", errors="replace")

    def piece(self, token: int) -> str:
        return self.detokenize([token])

    def checked(self, tokens: list[int], param: str = "tokens") -> list[int]:
        """Token ids from a caller, range-checked: llama.cpp aborts on an unknown id."""
        n_vocab = self.llama.n_vocab()
        bad = next((t for t in tokens if not 0 <= t < n_vocab), None)
        if bad is not None:
            raise RequestError(f"token id {bad} is not in the vocabulary (0..{n_vocab - 1})",
                               param=param)
        return tokens

    def prompt_tokens(self, prompt: str | list[int]) -> list[int]:
        if isinstance(prompt, str):
            return self.tokenize(prompt)
        return self.checked(prompt, "prompt")

    def chat(self, request: dict[str, Any]) -> Iterator[str | Finish]:
        return self.generate(self.chat_prompt(request["messages"]), request)

    def complete(self, request: dict[str, Any]) -> Iterator[str | Finish]:
        return self.generate(self.prompt_tokens(request["prompt"]), request)

    def generate(self, prompt: list[int], request: dict[str, Any]) -> Iterator[str | Finish]:
        return self.decoder.generate(prompt, self.sampling(request), self.max_tokens(request),
                                     self.stops(request))

    def embed(self, item: str | list[int]) -> tuple[list[float], int]:
        """A pooled, normalised vector and the number of tokens it took."""
        if self.embedder is None:
            self.embedder = Embedder(self.llama._model.model, self.threads)
        tokens = self.prompt_tokens(item) if item != "" else []
        return self.embedder.embed(tokens), len(tokens)


def _formatter(llama: llama_cpp.Llama, template: str) -> Jinja2ChatFormatter:
    model = llama._model
    eos, bos = model.token_eos(), model.token_bos()
    return Jinja2ChatFormatter(
        template=template,
        eos_token=model.token_get_text(eos) if eos != -1 else "",
        bos_token=model.token_get_text(bos) if bos != -1 else "",
    )


def _grammar(schema: dict[str, Any]) -> str:
    if not schema:
        return JSON_GBNF  # json_object: any JSON object
    try:
        return json_schema_to_gbnf(json.dumps(schema))
    except Exception as e:  # the converter raises assorted types for schemas it cannot map
        raise RequestError(f"response_format: unsupported JSON schema ({e})",
                           param="response_format") from None


def _default(value: Any, fallback: Any) -> Any:
    return fallback if value is None else value
