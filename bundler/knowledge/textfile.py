"""Plain text and Markdown: paragraphs, list items, tables and code blocks, with the Markdown
heading path above each."""

from __future__ import annotations

import re
import textwrap
from collections.abc import Iterator

from bundler.knowledge.boilerplate import FENCE, closes, strip_adornments, strip_boilerplate
from bundler.knowledge.document import Block, join_lines
from runtime.knowledge.rows import CELL

_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_ITEM = re.compile(r"^ {0,3}(?:[-*+]|\d{1,9}[.)])[ \t]+")
_BULLET = re.compile(r"^[-*+][ \t]+")
_TABLE_RULE = re.compile(r"^\s*\|?\s*:?-{2,}:?\s*(\|\s*:?-{2,}:?\s*)*\|?\s*$")
_FRONT_MATTER = re.compile(r"\A(---|\+\+\+)\n.*?\n\1\n", re.DOTALL)  # YAML's, Hugo's TOML
_HEADING_ID = re.compile(r"\s*\{#[\w.:-]+\}$")  # "## Install {#install}": an anchor's name


def read_plain(text: str) -> list[Block]:
    """A .txt file: blank lines separate paragraphs; list items stay apart; wraps are undone."""
    return [Block(joined) for para in _paragraphs(strip_adornments(strip_boilerplate(text)))
            if (joined := join_lines(para))]


def _paragraphs(text: str) -> Iterator[list[str]]:
    para: list[str] = []
    for line in text.splitlines():
        if not line.strip() or (_ITEM.match(line) and para):
            if para:
                yield para
            para = [line] if line.strip() else []
        else:
            para.append(line)
    if para:
        yield para


def read_markdown(text: str) -> list[Block]:
    """A Markdown file: blocks under their `#` (or underlined) heading path."""
    text = _FRONT_MATTER.sub("", text.replace("\r\n", "\n"))
    return list(_MarkdownReader(strip_boilerplate(text, markdown=True)).blocks())


class _MarkdownReader:
    def __init__(self, text: str):
        self.lines = text.split("\n")
        self.path: list[tuple[int, str]] = []  # (level, heading) from the top down

    def headings(self) -> tuple[str, ...]:
        return tuple(title for _, title in self.path)

    def enter(self, level: int, title: str) -> None:
        while self.path and self.path[-1][0] >= level:
            self.path.pop()
        if title:
            self.path.append((level, title))

    def blocks(self) -> Iterator[Block]:
        para: list[str] = []
        fence: str | None = None
        code: list[str] = []
        for line in self.lines:
            if fence is not None:  # inside a code block nothing is a heading
                if closes(fence, line):
                    yield from self._block(textwrap.dedent("\n".join(code)))
                    fence, code = None, []
                else:
                    code.append(line)
                continue
            if (opened := FENCE.match(line)) is not None:
                yield from self._flush(para)
                fence = opened.group(1)
                continue
            if (atx := _ATX.match(line)) is not None:
                yield from self._flush(para)
                self.enter(len(atx.group(1)), _inline(_HEADING_ID.sub("", atx.group(2) or "")))
            elif (under := _SETEXT.match(line)) and len(para) == 1 and not _ITEM.match(para[0]):
                self.enter(1 if under.group(1)[0] == "=" else 2, _inline(para.pop().strip()))
            elif not line.strip() or (_ITEM.match(line) and para) or _is_row(line) != _rows(para):
                yield from self._flush(para)
                if line.strip():
                    para.append(line)
            else:
                para.append(line)
        yield from self._flush(para)
        yield from self._block(textwrap.dedent("\n".join(code)))

    def _flush(self, para: list[str]) -> Iterator[Block]:
        if para:
            if _rows(para):
                text = "\n".join(_row(line) for line in para if not _TABLE_RULE.match(line))
            else:
                text = _inline(_BULLET.sub("", join_lines(para)))
            yield from self._block(text)
            para.clear()

    def _block(self, text: str) -> Iterator[Block]:
        if any(c.isalnum() for c in text):  # a thematic break (---) or a lone emoji is no text
            yield Block(text.strip(), self.headings())


def _is_row(line: str) -> bool:
    return line.lstrip().startswith("|")


def _rows(para: list[str]) -> bool:
    return bool(para) and _is_row(para[0])


def _row(line: str) -> str:
    cells = line.strip().strip("|").split("|")
    return CELL.join(_inline(cell.strip()) for cell in cells)


def _inline(text: str) -> str:
    """Markdown markup a reader does not see: links and images keep their text, emphasis and
    code marks go."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"(\*\*|__|\*|`)(?=\S)(.+?)(?<=\S)\1", r"\2", text)
    return text.strip()
