"""The engine: one loaded model with the parts that serve it, called from the worker's threads.

It holds the parts together — the model's tokenizer (runtime/llama/model.py), its chat template
(runtime/chat/), the decoder that owns the KV cache (runtime/llama/decoder.py), the embedder
(runtime/llama/embedder.py) and a knowledge bundle's documents (runtime/knowledge/: a chat turn
retrieves and cites them) — and turns a `GenerationRequest` into their calls. It satisfies
`runtime.generation.Model`, the interface the web layer sees. Several threads call it at once
(one per request being served): generations meet in the decoder's own thread, the tokenizer
only reads, and the embedder's context takes one caller at a time.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import Any

from runtime.artifact.manifest import Manifest, locate
from runtime.chat import agent_loop
from runtime.chat.fallbacks import stop_strings
from runtime.chat.template import ChatTemplate
from runtime.chat.tool_parse import Content, ToolStream
from runtime.chat.tool_prompt import render_chat
from runtime.chat.tools import MARKERS, tool_family
from runtime.errors import NoKnowledgeError, RequestError
from runtime.generation import (
    CallStart,
    Embedding,
    Event,
    Finish,
    GenerationRequest,
)
from runtime.knowledge import retrieve
from runtime.knowledge.index import open_knowledge
from runtime.knowledge.passage import DocumentInfo, Hit, Knowledge, Passage
from runtime.llama import cpu
from runtime.llama.bindings import llama_cpp
from runtime.llama.decoder import Decoder
from runtime.llama.embedder import Embedder
from runtime.llama.grammar import schema_grammar
from runtime.llama.infill import infill_prompt
from runtime.llama.model import N_BATCH, Tokenizer, load_model, new_context, physical_cores
from runtime.llama.tool_grammar import ToolGrammar, tool_grammar
from runtime.settings import Settings


class Engine:
    """One loaded model."""

    def __init__(self, model: Any, ctx: Any, manifest: Manifest, threads: int,
                 cpu_backend: cpu.CpuBackend, n_seq: int = 1,
                 knowledge: Knowledge | None = None):
        self.model = model
        self.threads = threads
        self.cpu = cpu_backend
        self.tokenizer = Tokenizer(model)
        self.n_ctx: int = llama_cpp.llama_n_ctx(ctx)
        self.extra_stops = tuple(stop_strings(manifest.chat_template_source))
        self.template = ChatTemplate(manifest.chat_template, self.tokenizer.bos_text,
                                     self.tokenizer.eos_text)
        self.decoder = Decoder(ctx, self.tokenizer.vocab, self.n_ctx, N_BATCH, n_seq)
        self.family = tool_family(manifest.chat_template)
        self.markers = self._marker_tokens(MARKERS.get(self.family, ()))
        self.embedder: Embedder | None = None
        self._embedding = threading.Lock()
        # What the server hangs on every generation (its /metrics); nothing for -p.
        self.observe: Callable[[Iterator[Event]], Iterator[Event]] = lambda events: events
        self.knowledge = knowledge
        # Described once, at load: /props reads it from the event loop.
        self._knowledge_info = knowledge.describe() if knowledge else None

    @classmethod
    def load(cls, artifact: str, manifest: Manifest, settings: Settings) -> Engine:
        weights = manifest.section("weights")
        trained = manifest.context_length or settings.ctx_size or 4096
        threads = settings.threads or physical_cores()
        cpu_backend = cpu.load()  # first: llama_backend_init would search on its own
        llama_cpp.llama_backend_init()
        model = load_model(*locate(artifact, weights))
        ctx = new_context(model, min(settings.ctx_size or trained, trained), threads,
                          settings.parallel)
        knowledge = open_knowledge(artifact, manifest, threads)  # None: built without it
        return cls(model, ctx, manifest, threads, cpu_backend, settings.parallel, knowledge)

    def hardware(self) -> dict[str, Any]:
        return self.cpu.as_dict()

    def generate(self, request: GenerationRequest) -> Iterator[Event]:
        if self.knowledge is not None and request.knowledge and request.messages is not None:
            def count(asked: GenerationRequest) -> int:  # as the prompt will be, tools too
                return len(self.prompt(asked))

            return retrieve.answer(self.knowledge, request, count, self.n_ctx, self._guarded)
        return self._guarded(request)

    def _guarded(self, request: GenerationRequest) -> Iterator[Event]:
        return agent_loop.guard(request, self._generate)

    def _generate(self, request: GenerationRequest) -> Iterator[Event]:
        with self.decoder.arriving():  # requests sent together have their prompts read together
            prompt, grammar = self.prompt(request), self.grammar(request)
        parse = request.calls_tools or request.text_only
        events = self.observe(self.decoder.generate(
            prompt, request.sampling, request.max_tokens, request.stop + self.extra_stops,
            grammar, self.markers if parse else frozenset(), request.logprobs,
            request.cancel, request.words_first))
        if not parse:
            return events
        return _with_calls(events, ToolStream(self.family, request.tools), request.text_only)

    def grammar(self, request: GenerationRequest) -> str | ToolGrammar | None:
        """The request's constraint: a forced tool call, a lazy one for tool_choice auto, or
        its response_format schema."""
        schema = None if request.json_schema is None else schema_grammar(request.json_schema)
        if not request.calls_tools:
            return schema
        if schema is not None:
            if request.tool_choice != "auto":
                raise RequestError("response_format cannot be combined with a forced "
                                   "tool_choice: the answer is either a call or the schema's "
                                   "JSON", param="response_format")
            return schema  # the structured answer asked for; calls only if the model makes one
        return tool_grammar(request.tools, self.family, request.tool_choice,
                            request.parallel_tool_calls)

    @property
    def fills_in_middle(self) -> bool:
        return self.tokenizer.fim is not None

    def prompt_tokens(self, request: GenerationRequest) -> int:
        return len(self.prompt(request))

    def prompt(self, request: GenerationRequest) -> list[int]:
        if request.infill is not None:
            # room for the answer: its max_tokens, or a quarter of the context without one
            answer = request.max_tokens if request.max_tokens > 0 else self.n_ctx // 4
            return infill_prompt(request.infill, self.tokenizer.fim,
                                 lambda text: self.tokenizer.tokenize(text, False, False),
                                 self.tokenizer.bos, max(1, self.n_ctx - answer))
        if request.messages is not None:
            # The template writes the BOS itself (as text, parsed back as the special token).
            return self._chat_tokens(render_chat(self.template, self.family, request),
                                     request.passages)
        if isinstance(request.prompt, str):
            return self.tokenizer.tokenize(request.prompt)
        return self.tokenizer.checked(request.prompt or (), "prompt")

    def _chat_tokens(self, text: str, passages: Sequence[str]) -> list[int]:
        """The rendered chat's tokens: the template's text with its control tokens parsed
        (special), the document passages it quotes as plain text."""
        quoted = sorted({p for p in passages if p}, key=len, reverse=True)
        if not quoted:
            return self.tokenizer.tokenize(text, add_bos=False, special=True)
        tokens: list[int] = []
        at = 0
        for match in re.finditer("|".join(map(re.escape, quoted)), text):
            tokens += self.tokenizer.tokenize(text[at:match.start()], add_bos=False,
                                              special=True)
            tokens += self.tokenizer.tokenize(match.group(), add_bos=False, special=False)
            at = match.end()
        return tokens + self.tokenizer.tokenize(text[at:], add_bos=False, special=True)

    def _marker_tokens(self, markers: Sequence[str]) -> frozenset[int]:
        """The ids of markers that are single tokens: a control token's text is hidden unless
        asked for, and the parser must see it."""
        ids = [self.tokenizer.tokenize(m, add_bos=False, special=True) for m in markers]
        return frozenset(t[0] for t in ids if len(t) == 1)

    def embed(self, item: str | Sequence[int], truncate: bool = False) -> Embedding:
        if self.knowledge is not None:
            return self._embed_with(self.knowledge, item, truncate)
        with self._embedding:
            return self._embed(item, truncate)

    def _embed_with(self, knowledge: Knowledge, item: str | Sequence[int],
                    truncate: bool) -> Embedding:
        """The bundled embedder's vector: the one the documents were indexed with, multilingual,
        unlike the chat model's. Token ids are read as the chat model's (as llama.cpp's server
        does) and embedded as their text."""
        text = item if isinstance(item, str) else self.detokenize(self.tokenizer.checked(
            item, "input"))
        vector = knowledge.embed([retrieve.embedding_text(text, self._knowledge_info)],
                                 truncate)[0]
        return Embedding(vector, len(self.tokenizer.tokenize(text, add_bos=False)))

    def knowledge_info(self) -> dict[str, Any] | None:
        return self._knowledge_info

    def search(self, query: str, top_k: int) -> list[Hit]:
        return retrieve.find(self._library(), query, top_k)  # what a chat turn's prompt gets

    def documents(self) -> list[DocumentInfo]:
        return self._library().documents()

    def document(self, number: int) -> list[Passage]:
        return self._library().document(number)

    def _library(self) -> Knowledge:
        if self.knowledge is None:
            raise NoKnowledgeError("this bundle has no documents (it was built without "
                                   "--knowledge)")
        return self.knowledge

    def _embed(self, item: str | Sequence[int], truncate: bool) -> Embedding:
        if self.embedder is None:
            self.embedder = Embedder(self.model, self.threads)
        if isinstance(item, str):
            tokens = self.tokenizer.tokenize(item) if item else []
        else:
            tokens = self.tokenizer.checked(item, "input")
        if truncate:
            tokens = tokens[:self.embedder.n_batch]
        return Embedding(self.embedder.embed(tokens), len(tokens))

    def tokenize(self, text: str, add_special: bool = True) -> list[int]:
        return self.tokenizer.tokenize(text, add_bos=add_special)

    def detokenize(self, tokens: Sequence[int]) -> str:
        return self.tokenizer.detokenize(tokens)

    def kv_cache(self) -> tuple[int, int]:
        return self.decoder.cached_tokens, self.n_ctx

def _with_calls(events: Iterator[Event], parser: ToolStream,
                text_only: bool = False) -> Iterator[Event]:
    """The decoder's text parsed into content and tool calls; the markup never shows. An answer
    that ends in calls ends with reason "tool_calls"; text_only drops the calls."""
    called = False
    for event in events:
        if isinstance(event, str):
            parsed = parser.feed(event)
        elif isinstance(event, Finish):
            parsed = parser.finish()
        else:  # the decoder yields only text and its Finish
            continue
        for item in parsed:
            if text_only and not isinstance(item, Content):
                continue
            called = called or isinstance(item, CallStart)
            yield item.text if isinstance(item, Content) else item
        if isinstance(event, Finish):
            yield replace(event, reason="tool_calls") if called and event.reason == "stop" \
                else event
            return
