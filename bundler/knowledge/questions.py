"""Starter questions the chat model writes at build time, for documents whose headings give too
few (bundler/knowledge/starters.py asks about headings).

The builder's machine has the model the bundle carries: it is asked for one short question about
each of the corpus's most informative passages, in the passage's language. A question is kept
only if retrieval, as the bundle will run it, answers it from the passage it came from (past the
calibrated threshold and among the first few found): a starter the page offers is one the
documents answer. Greedy decoding, so the same build writes the same questions.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bundler.knowledge.chunk import Chunk
from runtime.errors import BuildError
from runtime.knowledge.retrieve import chinese
from runtime.knowledge.search import Index
from runtime.knowledge.terms import script, terms

log = logging.getLogger(__name__)

MAX_ASKED = 8  # passages asked about: a few seconds each on a small model and two cores
MIN_TERMS = 12  # a passage with fewer distinct terms is a heading or a line of boilerplate
PASSAGE_CHARS = 1200  # what the model reads of a passage (a chunk is ~256 embedder tokens)
MAX_TOKENS = 48
MAX_LENGTH = 90  # characters: a starter is a short question, not a paragraph
FOUND_WITHIN = 3  # the passage must be among the first this many retrieval returns

ASK = {
    "en": ("Here is a passage from a document:\n\n{text}\n\nWrite one short question (at most "
           "15 words) that this passage answers, as a reader of the document would ask it. "
           "Reply with the question only."),
    "zh": ("下面是一份文档中的一段文字：\n\n{text}\n\n请写一个这段文字能够回答的简短问题"
           "（不超过 30 个字），像读者会问的那样。只回复这个问题。"),
}
_LEAD = re.compile(r"^\s*(?:[-*#>\d.、)\s]+|(?:question|q|问题)\s*[:：]\s*)+", re.IGNORECASE)
_QUOTES = "\"'“”‘’「」*`"

Chat = Callable[[list[dict[str, str]], int], str]
EmbedQueries = Callable[[list[str]], list[list[float]]]


@dataclass
class Written:
    questions: list[str]
    asked: int  # passages the model was asked about
    error: str | None = None  # why the model could not be asked (it did not load), if so


def write_questions(chunks: Sequence[Chunk], index: Index, chat: Chat,
                    embed_queries: EmbedQueries, limit: int) -> Written:
    """Up to `limit` questions the model wrote that retrieval answers from their passage."""
    kept: list[str] = []
    asked = 0
    for chunk_id in best_passages(chunks, MAX_ASKED):
        chunk = chunks[chunk_id - 1]
        cjk = script(chunk.text) == "cjk"
        prompt = ASK["zh" if cjk else "en"].format(text=chunk.text[:PASSAGE_CHARS])
        try:
            reply = chat([{"role": "user", "content": prompt}], MAX_TOKENS)
        except BuildError as e:
            return Written(kept, asked, str(e))
        asked += 1
        question = clean(reply, cjk)
        if question is None or question.casefold() in {q.casefold() for q in kept}:
            log.info("starter: passage %d gave no usable question (%r)", chunk_id, reply[:80])
            continue
        if not answered_from(index, embed_queries, question, chunk_id):
            log.info("starter: %r is not answered from its passage %d", question, chunk_id)
            continue
        kept.append(question)
        if len(kept) == limit:
            break
    return Written(kept, asked)


def best_passages(chunks: Sequence[Chunk], limit: int) -> list[int]:
    """Chunk ids (1-based, as the index numbers them) of the passages with the most distinct
    terms, documents taken in turn so that the few asked about cover more than one file."""
    by_document: dict[str, list[tuple[int, int]]] = {}
    for i, chunk in enumerate(chunks, 1):
        count = len(set(terms(chunk.text)))
        if count >= MIN_TERMS:
            by_document.setdefault(chunk.document, []).append((count, i))
    queues = [sorted(found, key=lambda t: (-t[0], t[1])) for found in by_document.values()]
    out: list[int] = []
    while len(out) < limit and any(queues):
        for queue in queues:
            if queue and len(out) < limit:
                out.append(queue.pop(0)[1])
    return out


def clean(reply: str, cjk: bool) -> str | None:
    """The question in a model's reply (its first line that asks one, up to the question
    mark), or None: no question, too long, or not in the passage's language."""
    for line in reply.strip().splitlines():
        line = _LEAD.sub("", line).strip().strip(_QUOTES).strip()
        end = min((i for i in (line.find("?"), line.find("？")) if i >= 0), default=-1)
        if end < 0:
            continue
        question = " ".join(line[:end + 1].split()).strip(_QUOTES)
        shortest = 5 if cjk else 12
        if not shortest <= len(question) <= MAX_LENGTH or chinese(question) != cjk:
            return None
        return question
    return None


def answered_from(index: Index, embed_queries: EmbedQueries, question: str,
                  chunk_id: int) -> bool:
    """Whether the bundle's retrieval answers `question` (some passage past its group's
    threshold) and finds the passage it was written from among the first FOUND_WITHIN."""
    vector = embed_queries([question])[0]
    ranked = index.rank(question, vector, floor=True)
    if not any(s.lift >= index.levels(script(question), s.chunk)[0] for s in ranked):
        return False
    return chunk_id in [s.chunk for s in ranked[:FOUND_WITHIN]]
