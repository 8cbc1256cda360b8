"""Example questions for a knowledge bundle's chat page when the builder gave no --starter.

A first-time user should see questions the documents answer. Their section headings say what
they cover ("Installing on Linux", "保修条款"), so each starter asks about one heading, in the
heading's language, taking headings from different documents in turn so the few shown cover
more than the first file. A heading that is already a question is asked as it is.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from pathlib import PurePosixPath

from bundler.knowledge.document import Document
from runtime.knowledge.retrieve import chinese
from runtime.knowledge.terms import script

MAX_STARTERS = 4
MIN_STARTERS = 3  # fewer, and the build asks the model for more (bundler/knowledge/questions.py)
MAX_LENGTH = 60  # longer is a sentence, not a topic
_NOT_A_TOPIC = re.compile(r"^[\d\W_]+$|^(contents|table of contents|index|目录|索引)$",
                          re.IGNORECASE)


def suggest_starters(documents: Sequence[Document], limit: int = MAX_STARTERS) -> list[str]:
    """Up to `limit` questions, one per heading, documents taken in turn."""
    queues = [list(_topics(doc)) for doc in documents]
    seen: set[str] = set()
    starters: list[str] = []
    while len(starters) < limit and any(queues):
        for queue in queues:
            while queue:
                topic = queue.pop(0)
                if topic.casefold() not in seen:
                    seen.add(topic.casefold())
                    starters.append(question_about(topic))
                    break
            if len(starters) == limit:
                break
    return starters


def title_questions(documents: Sequence[Document]) -> list[str]:
    """One question per document about its title (a file name read as words: "user_guide.txt"
    asks about "user guide"), in the language of the document's text: the last resort."""
    out = []
    for doc in documents:
        topic = doc.title
        if topic == PurePosixPath(doc.relpath).name:
            topic = " ".join(re.sub(r"[_\-.]+", " ", PurePosixPath(topic).stem).split())
        if _usable(topic):
            text = " ".join(block.text for block in doc.blocks[:5])
            out.append(question_about(topic, chinese(topic) or script(text) == "cjk"))
    return out


def question_about(topic: str, cjk: bool | None = None) -> str:
    if topic.endswith(("?", "？")):
        return topic
    if chinese(topic) if cjk is None else cjk:
        return f"文档中关于“{topic}”是怎么说的？"
    return f"What do the documents say about “{topic}”?"


def _topics(doc: Document) -> Iterator[str]:
    """The document's section headings (the most specific of each path) in reading order,
    or its title when it has none."""
    given: set[str] = set()
    for block in doc.blocks:
        topic = " ".join(block.headings[-1].split()) if block.headings else ""
        if topic not in given and _usable(topic) and topic != doc.title:
            given.add(topic)
            yield topic
    if not given and _usable(doc.title) and "." not in doc.title:  # not a bare file name
        yield doc.title


def _usable(topic: str) -> bool:
    """Two Chinese characters make a topic (保修); shorter Latin text is noise ("A", "1.")."""
    shortest = 2 if chinese(topic) else 3
    return shortest <= len(topic) <= MAX_LENGTH and not _NOT_A_TOPIC.match(topic)

