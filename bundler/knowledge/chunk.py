"""Chunking: documents into passages of whole sentences, sized in the embedder's own tokens.

A chunk never mixes two heading sections or two PDF pages (a PDF chunk never spans a page break),
so its location ("p. 3", "Install › Linux") is exact when it is cited. Sentences end at Chinese
and Western terminators alike, so Chinese text is never cut mid-word as a character splitter
would; only a sentence longer than a whole chunk is cut, at clauses first."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import groupby
from typing import NamedTuple

from bundler.knowledge.document import Block, Document, is_cjk
from runtime.knowledge.rows import headers

_TERMINATOR = re.compile(r"(?:[。！？；…]+|[!?;]+|\.+)[”’\"'」』）)】》\]]*")
_CLAUSE = re.compile(r"[，、,：:]+")
CHARS_PER_TOKEN = 8  # _slice's first window: English runs ~4 characters a token, Chinese ~1
# Words that end with a period without ending the sentence ("etc." usually does end one).
_ABBREVIATIONS = {
    "e.g", "i.e", "eg", "ie", "vs", "cf", "mr", "mrs", "ms", "dr", "prof", "st", "jr", "sr",
    "no", "nos", "fig", "figs", "approx", "ca", "inc", "ltd", "co", "corp", "dept", "vol",
    "p", "pp", "sec", "ch", "ed", "eds", "al", "jan", "feb", "mar", "apr", "jun", "jul", "aug",
    "sep", "sept", "oct", "nov", "dec", "min", "max", "ref", "u.s", "a.m", "p.m",
}

# Words a number names a part by: "Table 12.5. Shell options" is one caption.
_LABELS = {"table", "figure", "fig", "example", "section", "chapter", "step", "part", "appendix",
           "listing", "equation", "item", "note"}


@dataclass(frozen=True)
class Chunk:
    document: str  # the document's relative path
    title: str
    location: str  # "p. 3", "Install › Linux", or "" for a document without either
    text: str
    headings: tuple[str, ...]
    page: int | None


def split_sentences(text: str) -> list[str]:
    """The sentences of `text`: cut after 。！？!?；;… (closing quotes kept), after ". " that
    does not follow an abbreviation, and at line breaks."""
    return [sentence for sentence, _, _ in _sentences(text)]


def _sentences(text: str) -> Iterator[tuple[str, int, bool]]:
    """Sentences, each with the number of its line (blank lines not counted) and whether it
    starts that line."""
    for number, line in enumerate(line for line in text.split("\n") if line.strip()):
        start = 0
        for match in _TERMINATOR.finditer(line):
            if _ends_sentence(line, match):
                if sentence := line[start : match.end()].strip():
                    yield sentence, number, start == 0
                start = match.end()
        if rest := line[start:].strip():
            yield rest, number, start == 0


def _ends_sentence(line: str, match: re.Match[str]) -> bool:
    mark, after = match.group(), line[match.end() : match.end() + 1]
    if not after or is_cjk(after) or mark[0] in "。！？；…":
        return True
    if not after.isspace():
        return False  # 3.14, e.g, example.com, "?!" inside a word
    if mark[0] != ".":
        return True
    nxt = line[match.end() :].lstrip()[:1]
    word = re.search(r"([\w.]*)$", line[: match.start()])
    before = word.group(1).lower() if word else ""
    if before in _ABBREVIATIONS or (len(before) == 1 and before.isalpha()):
        return False  # "e.g. Linux", "Dr. Smith", "J. Smith"
    if re.fullmatch(r"\d+(?:\.\d+)*", before):  # "1.14. List of…", "Table 12.5. Shells"
        lead = line[: match.start() - len(before)].split()
        if not lead or lead[-1].lower() in _LABELS:
            return False
    return not nxt.islower()  # a lower-case word after ". " continues the sentence


def chunk_document(
    doc: Document,
    count_tokens: Callable[[str], int],
    max_tokens: int = 256,
    overlap: int = 1,
) -> list[Chunk]:
    """Chunks of whole sentences, each at most `max_tokens` by `count_tokens`; consecutive
    chunks of one section share `overlap` sentences. A new section (heading path or PDF page)
    always starts a new chunk."""
    chunks = []
    for (headings, page), section in groupby(doc.blocks, key=lambda b: (b.headings, b.page)):
        location = f"p. {page}" if page is not None else " › ".join(headings)
        units = list(_units(list(section), count_tokens, max_tokens))
        for text in _pack(units, count_tokens, max_tokens, overlap):
            chunks.append(Chunk(doc.relpath, doc.title, location, text, headings, page))
    return chunks


class _Unit(NamedTuple):
    piece: str  # a sentence, or a clause or slice of an over-long one
    separator: str  # "\n" before it, or "" (joined as its script is)
    header: str  # the header of the table it is a row of (runtime/knowledge/rows.py), or ""


def _units(blocks: list[Block], count: Callable[[str], int], limit: int) -> Iterator[_Unit]:
    for index, block in enumerate(blocks):
        lines = [line.strip() for line in block.text.split("\n") if line.strip()]
        heads = headers(lines)
        for sentence, number, first in _sentences(block.text):
            # A new block or a line break stays a line break; other pieces join as the script
            # does (a space, or nothing between CJK characters).
            newline = first and (index > 0 or number > 0)
            head = heads[number]
            for part, piece in enumerate(_fit(sentence, count, limit)):
                yield _Unit(piece, "\n" if newline and part == 0 else "",
                            lines[head] if head is not None else "")


def _fit(sentence: str, count: Callable[[str], int], limit: int) -> Iterator[str]:
    if count(sentence) <= limit:
        yield sentence
        return
    pieces, start = [], 0
    for match in _CLAUSE.finditer(sentence):
        pieces.append(sentence[start : match.end()])
        start = match.end()
    pieces.append(sentence[start:])
    # Clauses are packed back together up to the limit; one still too long is sliced.
    current = ""
    for clause in (piece for piece in pieces if piece.strip()):
        if current and count(current + clause) > limit:
            yield current.strip()
            current = ""
        if count(clause) > limit:
            yield from _slice(clause.strip(), count, limit)
        else:
            current += clause
    if current.strip():
        yield current.strip()


def _slice(text: str, count: Callable[[str], int], limit: int) -> Iterator[str]:
    """The longest prefixes that fit, cut at a space where there is one. The search starts
    from a window of a few characters per token, doubled while it still fits: searching the
    whole rest of a 2 MB line without a full stop tokenized megabytes per step, and the
    build sat in chunking for many minutes."""
    while text:
        high = min(len(text), CHARS_PER_TOKEN * limit)
        while high < len(text) and count(text[:high]) <= limit:
            high = min(len(text), 2 * high)
        low = 1
        while low < high:  # the longest prefix within the limit (at least one character)
            middle = (low + high + 1) // 2
            low, high = (middle, high) if count(text[:middle]) <= limit else (low, middle - 1)
        cut = low
        if cut < len(text) and (space := text.rfind(" ", 0, cut)) > 0:
            cut = space
        yield text[:cut].strip()
        text = text[cut:].strip()


def _join(units: list[_Unit]) -> str:
    text = ""
    for unit in units:
        if not text:
            text = unit.piece
        elif unit.separator == "\n":
            text += "\n" + unit.piece
        elif is_cjk(text[-1]) and is_cjk(unit.piece[0]):
            text += unit.piece
        else:
            text += " " + unit.piece
    return text


def _pack(units: list[_Unit], count: Callable[[str], int], limit: int, overlap: int
          ) -> Iterator[str]:
    current: list[_Unit] = []
    for unit in units:
        if current and count(_join([*current, unit])) > limit:
            yield _join(current)
            # The next chunk repeats the last sentences, as many as fit with the new one, and
            # a table's rows go on under its header.
            kept = current[len(current) - overlap :] if overlap > 0 else []
            head = [_Unit(unit.header, "", "")] if unit.header and all(
                kept_unit.piece != unit.header for kept_unit in kept) else []
            while kept and count(_join([*head, *kept, unit])) > limit:
                kept.pop(0)
            if head and count(_join([*head, unit])) > limit:
                head = []
            current = head + kept
        current.append(unit)
    if current:
        yield _join(current)
