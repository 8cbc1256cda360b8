"""The engine: one loaded model with the parts that serve it, called only from the worker thread.

It holds the parts together — the model's tokenizer (runtime/llama/model.py), its chat template
(runtime/chat/), the decoder that owns the KV cache (runtime/llama/decoder.py), the embedder
(runtime/llama/embedder.py) and a knowledge bundle's documents (runtime/knowledge/: a chat turn
retrieves and cites them) — and turns a `GenerationRequest` into their calls. It satisfies
`runtime.generation.Model`, the interface the web layer sees.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from runtime.artifact.manifest import Manifest
from runtime.chat.fallbacks import stop_strings
from runtime.chat.template import ChatTemplate
from runtime.errors import NoKnowledgeError
from runtime.generation import ChatMessage, Embedding, Event, GenerationRequest
from runtime.knowledge import retrieve
from runtime.knowledge.index import open_knowledge
from runtime.knowledge.passage import Hit, Knowledge
from runtime.llama import cpu
from runtime.llama.bindings import llama_cpp
from runtime.llama.decoder import Decoder
from runtime.llama.embedder import Embedder
from runtime.llama.grammar import schema_grammar
from runtime.llama.model import N_BATCH, Tokenizer, load_model, new_context, physical_cores
from runtime.settings import Settings


class Engine:
    """One loaded model. Not thread-safe: the Worker calls it from a single thread."""

    def __init__(self, model: Any, ctx: Any, manifest: Manifest, threads: int,
                 cpu_backend: cpu.CpuBackend, knowledge: Knowledge | None = None):
        self.model = model
        self.threads = threads
        self.cpu = cpu_backend
        self.tokenizer = Tokenizer(model)
        self.n_ctx: int = llama_cpp.llama_n_ctx(ctx)
        self.extra_stops = tuple(stop_strings(manifest.chat_template_source))
        self.template = ChatTemplate(manifest.chat_template, self.tokenizer.bos_text,
                                     self.tokenizer.eos_text)
        self.decoder = Decoder(ctx, self.tokenizer.vocab, self.n_ctx, N_BATCH)
        self.embedder: Embedder | None = None
        self.knowledge = knowledge
        # Described once, here on the model thread: /props reads it from the event loop.
        self._knowledge_info = knowledge.describe() if knowledge else None

    @classmethod
    def load(cls, artifact: str, manifest: Manifest, settings: Settings) -> Engine:
        weights = manifest.section("weights")
        trained = manifest.context_length or settings.ctx_size or 4096
        threads = settings.threads or physical_cores()
        cpu_backend = cpu.load()  # first: llama_backend_init would search on its own
        llama_cpp.llama_backend_init()
        model = load_model(artifact, weights.offset)
        ctx = new_context(model, min(settings.ctx_size or trained, trained), threads)
        knowledge = open_knowledge(artifact, manifest, threads)  # None: built without it
        return cls(model, ctx, manifest, threads, cpu_backend, knowledge)

    def hardware(self) -> dict[str, Any]:
        return self.cpu.as_dict()

    def generate(self, request: GenerationRequest) -> Iterator[Event]:
        if self.knowledge is not None and request.knowledge and request.messages is not None:
            return retrieve.answer(self.knowledge, request, self._chat_length, self.n_ctx,
                                   self._generate)
        return self._generate(request)

    def _generate(self, request: GenerationRequest) -> Iterator[Event]:
        grammar = None if request.json_schema is None else schema_grammar(request.json_schema)
        return self.decoder.generate(self.prompt(request), request.sampling, request.max_tokens,
                                     request.stop + self.extra_stops, grammar)

    def prompt(self, request: GenerationRequest) -> list[int]:
        if request.messages is not None:
            return self._chat_tokens(request.messages)
        if isinstance(request.prompt, str):
            return self.tokenizer.tokenize(request.prompt)
        return self.tokenizer.checked(request.prompt or (), "prompt")

    def _chat_tokens(self, messages: Sequence[ChatMessage]) -> list[int]:
        # The template writes the BOS itself (as text, parsed back as the special token).
        text = self.template.render(messages)
        return self.tokenizer.tokenize(text, add_bos=False, special=True)

    def _chat_length(self, messages: Sequence[ChatMessage]) -> int:
        return len(self._chat_tokens(messages))

    def embed(self, item: str | Sequence[int]) -> Embedding:
        if self.knowledge is not None:
            return self._embed_with(self.knowledge, item)
        if self.embedder is None:
            self.embedder = Embedder(self.model, self.threads)
        if isinstance(item, str):
            tokens = self.tokenizer.tokenize(item) if item else []
        else:
            tokens = self.tokenizer.checked(item, "input")
        return Embedding(self.embedder.embed(tokens), len(tokens))

    def _embed_with(self, knowledge: Knowledge, item: str | Sequence[int]) -> Embedding:
        """The bundled embedder's vector: the one the documents were indexed with, multilingual,
        unlike the chat model's. Token ids are read as the chat model's (as llama.cpp's server
        does) and embedded as their text."""
        text = item if isinstance(item, str) else self.detokenize(self.tokenizer.checked(
            item, "input"))
        vector = knowledge.embed([retrieve.embedding_text(text, self._knowledge_info)])[0]
        return Embedding(vector, len(self.tokenizer.tokenize(text, add_bos=False)))

    def knowledge_info(self) -> dict[str, Any] | None:
        return self._knowledge_info

    def search(self, query: str, top_k: int) -> list[Hit]:
        if self.knowledge is None:
            raise NoKnowledgeError("this bundle has no documents (it was built without "
                                   "--knowledge)")
        return self.knowledge.search(query, top_k)

    def tokenize(self, text: str, add_special: bool = True) -> list[int]:
        return self.tokenizer.tokenize(text, add_bos=add_special)

    def detokenize(self, tokens: Sequence[int]) -> str:
        return self.tokenizer.detokenize(tokens)
