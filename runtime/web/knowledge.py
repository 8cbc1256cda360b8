"""A knowledge bundle's documents over HTTP: /knowledge/search, and the shapes the chat
dialects use for the sources of an answer and what its prompt left out."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import FastAPI, Query
from fastapi.concurrency import run_in_threadpool
from pydantic import Field, field_validator

from runtime.errors import NoDocumentError
from runtime.generation import Finish, Sources
from runtime.knowledge.passage import MAX_TOP_K, Hit, Passage
from runtime.knowledge.retrieve import TOP_K
from runtime.state import State
from runtime.web.schemas import Request


class SearchRequest(Request):
    query: str = Field(min_length=1, max_length=4000)
    # What a chat turn puts in its prompt: by default the answer's sources are these results.
    top_k: int = Field(TOP_K, ge=1, le=MAX_TOP_K)

    @field_validator("query")
    @classmethod
    def _words(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("query is blank")
        return value.strip()


def hit_json(hit: Hit) -> dict[str, Any]:
    p = hit.passage
    return {"document": p.document, "title": p.title, "location": p.location, "text": p.text,
            "score": round(hit.score, 6)}


def sources_json(sources: Sources) -> list[dict[str, Any]]:
    """The passages an answer's prompt held, numbered as the model was asked to cite them."""
    return [{"id": i} | hit_json(hit) for i, hit in enumerate(sources.hits, 1)]


def reading_text(passages: list[Passage]) -> list[str]:
    """The passages' texts as a document is read: consecutive passages of one section share
    their boundary sentence (the chunker's overlap, for retrieval), shown once here."""
    out = []
    for before, passage in zip([None, *passages], passages, strict=False):
        text = passage.text
        if before is not None and before.location == passage.location:
            text = text[_overlap(before.text, text):].lstrip()
        out.append(text)
    return out


def _overlap(before: str, text: str) -> int:
    """The length of the longest start of `text` that ends `before` as whole sentences: it
    ends where a sentence of `text` ends, or where its line does (a command, a list's lead-in
    without a full stop), and starts where one of `before`'s starts (0: none)."""
    for k in range(min(len(before), len(text)) - 1, 1, -1):
        start = before[-k - 1]
        ends = text[k - 1] in _SENTENCE_END or (text[k] == "\n" and start == "\n")
        if ends and (start in _SENTENCE_END or start.isspace()) and before.endswith(text[:k]):
            return k
    return 0


_SENTENCE_END = set(".!?;。！？；…\"'”’」）)")


def knowledge_usage(finish: Finish) -> dict[str, Any]:
    """The `usage` fields of a chat that retrieval ran for: the passages in the prompt, the
    tokens they took, and what the context budget left out (never silently)."""
    k = finish.knowledge
    if k is None:
        return {}
    return {"knowledge": {"passages": k.passages, "passages_left_out": k.passages_left_out,
                          "tokens": k.tokens, "messages_left_out": k.turns_left_out,
                          "search_ms": round(k.search_ns / 1e6, 3)}}


def add_routes(app: FastAPI, state: State) -> None:
    @app.post("/knowledge/search")
    async def search(body: SearchRequest) -> dict[str, Any]:
        engine = state.ready_engine()
        hits = await state.worker.call(engine.search, body.query, body.top_k)
        return {"results": [hit_json(hit) for hit in hits]}

    # The same from a browser's address bar or a plain curl: ?query=…&top_k=…
    @app.get("/knowledge/search")
    async def search_query(params: Annotated[SearchRequest, Query()]) -> dict[str, Any]:
        return await search(params)

    # The chat page's first screen lists the documents and opens one's text. Not on the model
    # thread: a listing must not wait behind someone's long answer (the index has its own lock).
    @app.get("/knowledge/documents")
    async def documents() -> dict[str, Any]:
        engine = state.ready_engine()
        found = await run_in_threadpool(engine.documents)
        return {"documents": [{"id": d.number, "document": d.document, "title": d.title,
                               "passages": d.passages} for d in found]}

    @app.get("/knowledge/documents/{number}")
    async def document(number: int) -> dict[str, Any]:
        engine = state.ready_engine()
        passages = await run_in_threadpool(engine.document, number)
        if not passages:
            raise NoDocumentError(f"no document {number} in this bundle (GET "
                                  "/knowledge/documents lists them)")
        first = passages[0]
        return {"id": number, "document": first.document, "title": first.title,
                "passages": [{"location": p.location, "text": text}
                             for p, text in zip(passages, reading_text(passages), strict=True)]}
