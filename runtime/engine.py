"""The model: loaded straight from the artifact, called only from the worker thread.

llama.cpp's C API through llama-cpp-python's ctypes bindings (runtime/bindings.py): loading,
the context, tokenizing; generation runs in runtime/decode.py. The weights are read in place:
`llama_model_load_from_file_ptr` reads a GGUF from a FILE*'s current position, which we put at
the weights' offset inside the artifact, and mmaps it there; nothing is copied to disk.
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import json
import os
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

from runtime import cpu
from runtime.bindings import JSON_GBNF, json_schema_to_gbnf, llama_cpp
from runtime.chat_templates import stop_strings
from runtime.decode import Decoder, Finish, Sampling
from runtime.embed import Embedder
from runtime.errors import ArtifactError, RequestError
from runtime.manifest import Manifest

N_BATCH = 512  # n_ubatch == n_batch: llama.cpp aborts on bigger non-causal batches otherwise

_libc = ctypes.CDLL("libc.so.6", use_errno=True)
_libc.fopen.restype = ctypes.c_void_p
_libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
_libc.fseeko.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int]
_libc.fclose.argtypes = [ctypes.c_void_p]


def _load_model(path: str, offset: int) -> Any:
    """The GGUF at `offset` inside `path`. The FILE* is needed only while loading."""
    params = llama_cpp.llama_model_default_params()
    params.n_gpu_layers = 0
    fp = _libc.fopen(path.encode(), b"rb")
    if not fp:
        raise ArtifactError(f"{path}: cannot open ({os.strerror(ctypes.get_errno())})")
    try:
        if _libc.fseeko(fp, offset, os.SEEK_SET) != 0:
            raise ArtifactError(f"{path}: cannot seek to the weights")
        model = llama_cpp.llama_model_load_from_file_ptr(fp, params)
    finally:
        _libc.fclose(fp)
    if not model:
        raise ArtifactError(f"{path}: llama.cpp could not load the weights; "
                            "the artifact may be corrupted (try --verify)")
    return model


def _new_context(model: Any, n_ctx: int, threads: int) -> Any:
    params = llama_cpp.llama_context_default_params()
    params.n_ctx = n_ctx
    params.n_batch = params.n_ubatch = N_BATCH
    params.n_threads = params.n_threads_batch = threads
    params.swa_full = True  # a full sliding-window cache keeps chat prefixes reusable
    params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED  # llama-server's "auto"
    params.no_perf = True
    ctx = llama_cpp.llama_init_from_model(model, params)
    if not ctx:
        raise ArtifactError(f"llama.cpp could not make a {n_ctx}-token context (out of memory? "
                            "try a smaller --ctx-size)")
    return ctx


def physical_cores() -> int:
    siblings = set()
    for path in glob.glob("/sys/devices/system/cpu/cpu[0-9]*/topology/thread_siblings_list"):
        with contextlib.suppress(OSError), open(path) as f:
            siblings.add(f.read().strip())
    usable = len(os.sched_getaffinity(0))
    return max(1, min(len(siblings) or usable, usable))


class Engine:
    """One loaded model. Not thread-safe: the Worker calls it from a single thread."""

    def __init__(self, model: Any, ctx: Any, manifest: Manifest, settings: Any,
                 threads: int, cpu_backend: cpu.CpuBackend):
        self.model = model
        self.vocab = llama_cpp.llama_model_get_vocab(model)
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(self.vocab)
        self.manifest = manifest
        self.settings = settings
        self.threads = threads
        self.cpu = cpu_backend
        self.n_ctx = llama_cpp.llama_n_ctx(ctx)
        self.extra_stops = stop_strings(manifest.chat_template_source)
        self.template = _chat_template(manifest.chat_template)
        self.bos_text = self._token_text(llama_cpp.llama_vocab_bos(self.vocab))
        self.eos_text = self._token_text(llama_cpp.llama_vocab_eos(self.vocab))
        self.decoder = Decoder(ctx, self.vocab, self.n_ctx, N_BATCH)
        self.embedder: Embedder | None = None

    @classmethod
    def load(cls, artifact: str, manifest: Manifest, settings: Any) -> Engine:
        weights = manifest.section("weights")
        trained = manifest.context_length or settings.ctx_size or 4096
        threads = settings.threads or physical_cores()
        cpu_backend = cpu.load()  # first: llama_backend_init would search on its own
        llama_cpp.llama_backend_init()
        model = _load_model(artifact, weights.offset)
        ctx = _new_context(model, min(settings.ctx_size or trained, trained), threads)
        return cls(model, ctx, manifest, settings, threads, cpu_backend)

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
            rendered = self.template.render(messages=messages, add_generation_prompt=True,
                                            bos_token=self.bos_text, eos_token=self.eos_text)
        except jinja2.TemplateError as e:  # e.g. a template's "roles must alternate"
            raise RequestError(f"the chat template rejected these messages: {e}",
                               param="messages") from None
        # The template writes the BOS itself (as text, parsed back as the special token).
        return self.tokenize(rendered, add_bos=False, special=True)

    def _token_text(self, token: int) -> str:
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

    def detokenize(self, tokens: list[int]) -> str:
        tokens = self.checked(tokens)
        ids = (llama_cpp.llama_token * len(tokens))(*tokens)
        room = 16 * len(tokens) + 16
        while True:
            text = ctypes.create_string_buffer(room)
            n = llama_cpp.llama_detokenize(self.vocab, ids, len(tokens), text, room, False, False)
            if n >= 0:
                return text.raw[:n].decode("utf-8", errors="replace")
            room = -n

    def piece(self, token: int) -> str:
        return self.detokenize([token])

    def checked(self, tokens: list[int], param: str = "tokens") -> list[int]:
        """Token ids from a caller, range-checked: llama.cpp aborts on an unknown id."""
        bad = next((t for t in tokens if not 0 <= t < self.n_vocab), None)
        if bad is not None:
            raise RequestError(f"token id {bad} is not in the vocabulary "
                               f"(0..{self.n_vocab - 1})", param=param)
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
            self.embedder = Embedder(self.model, self.threads)
        tokens = self.prompt_tokens(item) if item != "" else []
        return self.embedder.embed(tokens), len(tokens)


def _chat_template(source: str) -> jinja2.Template:
    """A chat template as Hugging Face's transformers renders them: sandboxed, trimmed blocks,
    loop controls, `raise_exception` and `strftime_now`, non-ASCII-preserving `tojson`."""
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[jinja2.ext.loopcontrols, _GenerationTag])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_template_error
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env.from_string(source)


class _GenerationTag(jinja2.ext.Extension):
    """`{% generation %}...{% endgeneration %}`, which marks the assistant's text for training
    in some templates: rendered as its contents."""

    tags = {"generation"}

    def parse(self, parser: Any) -> Any:
        parser.stream.skip(1)
        return parser.parse_statements(("name:endgeneration",), drop_needle=True)


def _tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None,
            separators: tuple[str, str] | None = None, sort_keys: bool = False) -> str:
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)


def _raise_template_error(message: str) -> None:
    raise jinja2.TemplateError(message)


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
