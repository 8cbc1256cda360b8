"""Word documents with python-docx: paragraphs and tables (tables inside cells too) in body order,
headings from styles, the Title-style paragraph above them all."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import docx
from docx.opc.exceptions import PackageNotFoundError
from docx.table import Table, _Cell
from docx.text.paragraph import Paragraph

from bundler.knowledge.document import Block, squash
from runtime.errors import DocumentError
from runtime.knowledge.rows import CELL

# Built-in heading styles ("Heading 2"), as Word names them in English and Chinese installs.
_HEADING_STYLE = re.compile(r"^(?:heading|标题|標題)\s*([1-9])$", re.IGNORECASE)
# An encrypted .docx (and an old binary .doc) is an OLE compound file, not a zip.
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


def read_docx(path: Path, name: str) -> tuple[str | None, list[Block]]:
    """The document's core-properties title (or None) and its blocks."""
    with path.open("rb") as file:
        if file.read(8) == _OLE_MAGIC:
            raise DocumentError(f"{name}: encrypted (password-protected) or an old binary .doc")
    try:
        document = docx.Document(str(path))
    except (PackageNotFoundError, zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise DocumentError(f"{name}: not a readable .docx file ({exc})") from None
    path_: list[tuple[int, str]] = []
    blocks = []
    for item in document.iter_inner_content():
        headings = tuple(title for _, title in path_)
        if isinstance(item, Table):
            if text := _table_text(item):
                blocks.append(Block(text, headings))
            continue
        text = squash(item.text)
        level = _heading_level(item)
        if level is None:
            if text:
                blocks.append(Block(text, headings))
            continue
        while path_ and path_[-1][0] >= level:
            path_.pop()
        if text:
            path_.append((level, text))
    return (document.core_properties.title or "").strip() or None, blocks


def _heading_level(paragraph: Paragraph) -> int | None:
    style = paragraph.style
    name = (style.name or "") if style is not None else ""
    if name.lower() == "title":
        return 0  # above Heading 1: the document's own title, the root of every heading path
    match = _HEADING_STYLE.match(name.strip())
    return int(match.group(1)) if match else None


def _table_text(table: Table) -> str:
    rows = []
    for row in table.rows:
        cells: list[str] = []
        for cell in row.cells:
            text = _cell_text(cell)
            # A merged cell is repeated once per grid column it spans: keep it once.
            if not cells or text != cells[-1]:
                cells.append(text)
        if any(cells):
            rows.append(CELL.join(cells))
    return "\n".join(rows)


def _cell_text(cell: _Cell) -> str:
    """A cell's paragraphs and the rows of the tables inside it ("a | b; c | d"): python-docx's
    cell.text leaves nested tables out, and with them a handbook's rows of figures."""
    parts = []
    for item in cell.iter_inner_content():
        parts.append(_table_text(item).replace("\n", "; ") if isinstance(item, Table)
                     else squash(item.text))
    return squash(" ".join(part for part in parts if part))
