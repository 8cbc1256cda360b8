"""The engine: one loaded model with the parts that serve it, called from the worker's threads.

It holds the parts together — the model's tokenizer (runtime/llama/model.py), its chat template
(runtime/chat/), the decoder that owns the KV cache (runtime/llama/decoder.py) and the embedder
(runtime/llama/embedder.py) — and turns a `GenerationRequest` into their calls. It satisfies
`runtime.generation.Model`, the interface the web layer sees. Several threads call it at once
(one per request being served): generations meet in the decoder's own thread, the tokenizer
only reads, and the embedder's context takes one caller at a time.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from runtime.artifact.manifest import Manifest
from runtime.chat.fallbacks import stop_strings
from runtime.chat.template import ChatTemplate
from runtime.generation import Embedding, Event, GenerationRequest
from runtime.llama import cpu
from runtime.llama.bindings import llama_cpp
from runtime.llama.decoder import Decoder
from runtime.llama.embedder import Embedder
from runtime.llama.grammar import schema_grammar
from runtime.llama.model import N_BATCH, Tokenizer, load_model, new_context, physical_cores
from runtime.settings import Settings


class Engine:
    """One loaded model."""

    def __init__(self, model: Any, ctx: Any, manifest: Manifest, threads: int,
                 cpu_backend: cpu.CpuBackend, n_seq: int = 1):
        self.model = model
        self.threads = threads
        self.cpu = cpu_backend
        self.tokenizer = Tokenizer(model)
        self.n_ctx: int = llama_cpp.llama_n_ctx(ctx)
        self.extra_stops = tuple(stop_strings(manifest.chat_template_source))
        self.template = ChatTemplate(manifest.chat_template, self.tokenizer.bos_text,
                                     self.tokenizer.eos_text)
        self.decoder = Decoder(ctx, self.tokenizer.vocab, self.n_ctx, N_BATCH, n_seq)
        self.embedder: Embedder | None = None
        self._embedding = threading.Lock()
        # What the server hangs on every generation (its /metrics); nothing for -p.
        self.observe: Callable[[Iterator[Event]], Iterator[Event]] = lambda events: events

    @classmethod
    def load(cls, artifact: str, manifest: Manifest, settings: Settings) -> Engine:
        weights = manifest.section("weights")
        trained = manifest.context_length or settings.ctx_size or 4096
        threads = settings.threads or physical_cores()
        cpu_backend = cpu.load()  # first: llama_backend_init would search on its own
        llama_cpp.llama_backend_init()
        model = load_model(artifact, weights.offset)
        ctx = new_context(model, min(settings.ctx_size or trained, trained), threads,
                          settings.parallel)
        return cls(model, ctx, manifest, threads, cpu_backend, settings.parallel)

    def hardware(self) -> dict[str, Any]:
        return self.cpu.as_dict()

    def generate(self, request: GenerationRequest) -> Iterator[Event]:
        grammar = None if request.json_schema is None else schema_grammar(request.json_schema)
        return self.observe(self.decoder.generate(
            self.prompt(request), request.sampling, request.max_tokens,
            request.stop + self.extra_stops, grammar))

    def prompt(self, request: GenerationRequest) -> list[int]:
        if request.messages is not None:
            # The template writes the BOS itself (as text, parsed back as the special token).
            text = self.template.render(request.messages)
            return self.tokenizer.tokenize(text, add_bos=False, special=True)
        if isinstance(request.prompt, str):
            return self.tokenizer.tokenize(request.prompt)
        return self.tokenizer.checked(request.prompt or (), "prompt")

    def embed(self, item: str | Sequence[int]) -> Embedding:
        with self._embedding:
            return self._embed(item)

    def _embed(self, item: str | Sequence[int]) -> Embedding:
        if self.embedder is None:
            self.embedder = Embedder(self.model, self.threads)
        if isinstance(item, str):
            tokens = self.tokenizer.tokenize(item) if item else []
        else:
            tokens = self.tokenizer.checked(item, "input")
        return Embedding(self.embedder.embed(tokens), len(tokens))

    def tokenize(self, text: str, add_special: bool = True) -> list[int]:
        return self.tokenizer.tokenize(text, add_bos=add_special)

    def detokenize(self, tokens: Sequence[int]) -> str:
        return self.tokenizer.detokenize(tokens)

    def kv_cache(self) -> tuple[int, int]:
        return self.decoder.cached_tokens, self.n_ctx
