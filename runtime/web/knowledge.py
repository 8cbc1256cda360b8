"""A knowledge bundle's documents over HTTP: POST /knowledge/search, and the shapes the chat
dialects use for the sources of an answer and what its prompt left out."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import Field, field_validator

from runtime.generation import Finish, Sources
from runtime.knowledge.passage import Hit
from runtime.knowledge.retrieve import TOP_K
from runtime.state import State
from runtime.web.schemas import Request

MAX_TOP_K = 50


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
