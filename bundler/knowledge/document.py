"""What a reader makes of a document: its title and its blocks, each with the headings above it."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Source:
    """A document file to read; `relpath` is how citations will name it."""

    path: Path
    relpath: str


@dataclass(frozen=True)
class Skipped:
    """A file left out, with the one-line reason shown to the builder."""

    path: Path
    reason: str


@dataclass(frozen=True)
class Block:
    """A paragraph, list item or table (rows on lines, cells joined by
    runtime.knowledge.rows.CELL)."""

    text: str
    headings: tuple[str, ...] = ()
    page: int | None = None  # 1-based, PDFs only


@dataclass
class Document:
    relpath: str
    title: str
    blocks: list[Block] = field(default_factory=list)


# Scripts written without spaces: a line wrap between two of their characters is no space at all.
_CJK_CHAR = re.compile(
    "[\u2e80-\u2fff\u3000-\u30ff\u3100-\u31ff\u3400-\u4dbf\u4e00-\u9fff"
    "\uac00-\ud7af\uf900-\ufaff\uff00-\uffef\U00020000-\U0003134f]"
)


def is_cjk(char: str) -> bool:
    return bool(char) and _CJK_CHAR.match(char) is not None


def join_lines(lines: list[str]) -> str:
    """Unwraps hard-wrapped lines: CJK wraps join with nothing, others with one space, and a
    word hyphenated at the line end is made whole again ("config-" + "uration")."""
    text = ""
    for raw in lines:
        line = raw.strip()
        if not line:
            continue
        if not text:
            text = line
        elif text.endswith("\u00ad"):  # a soft hyphen marks exactly such a break
            text = text[:-1] + line
        elif re.search(r"[^\W\d_]-$", text) and line[0].islower():
            text = text[:-1] + line
        elif is_cjk(text[-1]) and is_cjk(line[0]):
            text += line
        else:
            text += " " + line
    return text.replace("\u00ad", "")


def squash(text: str) -> str:
    """Collapses runs of white space (HTML, PDF and DOCX text) to single spaces."""
    return " ".join(text.split())
