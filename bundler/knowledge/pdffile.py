"""PDF text with pdfminer.six (it keeps words whole where pypdf splits them; PyMuPDF is AGPL).

A PDF has no paragraphs or headings, only positioned lines: each of pdfminer's text boxes becomes
a block carrying its page; running headers and footers (the same line on most pages, page numbers
included) and watermarks (the same line in large or rotated type on most pages) are dropped, so
they neither pollute every chunk nor win every search; so are the pages of a table of
contents. A table drawn with ruling lines is one block of rows, as in HTML and Word files."""

from __future__ import annotations

import itertools
import re
import statistics
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import pdfplumber
from pdfminer.converter import PDFPageAggregator
from pdfminer.layout import (
    LAParams,
    LTAnno,
    LTChar,
    LTCurve,
    LTFigure,
    LTItem,
    LTLine,
    LTPage,
    LTRect,
    LTTextBox,
    LTTextLine,
)
from pdfminer.pdfdocument import PDFDocument, PDFPasswordIncorrect
from pdfminer.pdfinterp import PDFPageInterpreter, PDFResourceManager
from pdfminer.pdfpage import PDFPage
from pdfminer.pdfparser import PDFParser
from pdfminer.utils import decode_text

from bundler.knowledge.document import Block, is_cjk, join_lines
from runtime.errors import DocumentError
from runtime.knowledge.rows import CELL

# Some fonts map the fi/fl ligatures to these private-use code points.
_LIGATURES = {"\uf001": "fi", "\uf002": "fl"} | {
    chr(c): unicodedata.normalize("NFKC", chr(c)) for c in range(0xFB00, 0xFB07)
}
_LIGATURE = re.compile("[" + "".join(_LIGATURES) + "]")
# How many lines at the top and the bottom of a page may be a running header or footer, and
# within what share of the page's height from its edge (the margin, not the body).
_EDGE_LINES = 2
_MARGIN = 0.12
# A table of contents: entries ending in a dot leader ("3.1 网络 . . . . . 12", "Intro....4").
# A page where at least _CONTENTS_SHARE of the lines with words are such entries (and at least
# _CONTENTS_LINES of them) is left out: its page numbers and headings win searches for the
# chapters they list, and the chapter itself answers. Its prose is kept: a paragraph of at least
# _PROSE characters holding a full sentence, no entry among its lines (a FAQ's first page says
# how many questions it holds above its contents).
_LEADER = re.compile(r"(?:\.\s?){4,}\s*(?:\d+|[ivxlc]+)?\s*$", re.IGNORECASE)
_CONTENTS_SHARE = 0.3
_CONTENTS_LINES = 5
_PROSE = 40
_SENTENCE_END = re.compile(r"[。！？]|[.!?](?:\s|$)")
# A line that is only a dot leader's dots: the rest of an entry of a table of contents that
# shares its page with text (pdfminer puts the leader in a box of its own).
_ONLY_LEADER = re.compile(r"^(?!\.\.\.$)(?:[.·…]\s?)+$")  # not "...": code left out
# pdfminer groups lines into a box while the gap between them is under half a line's height;
# Chinese is set with more leading than that (1.5-2 lines), so each of its lines was a box of
# its own and every paragraph was cut at each line ("…再用 \input 命令插入。复" | "杂的图、表…";
# lshort-zh-cn: 1,013 of 5,790 blocks ended inside a sentence). A box that starts right under a
# line that ran to its column's right edge (it wrapped) continues that line's paragraph: no
# lower than this many characters' size under it, at its left edge or left of it (an indented
# first line starts a new paragraph), in the same size of type, and only when the line ends
# inside a sentence (_ENDED).
_WRAP_GAP = 1.0
_COLUMN_LINES = 5
# A line ending a sentence is left to end its box: joined or not, nothing is cut in two.
_ENDED = re.compile(r"[。！？：；.!?:;]\W*$")
# A list's item starts a box of its own too; the lines it wraps onto start up to _HANGING
# characters right of its marker.
_HANGING = 3.0
_ITEM = re.compile(r"^(?:[•·▪‣◦∙*–-]|\d{1,2}[.)、]|[(（]\d{1,2}[)）]|[a-zA-Z][.)]\s)")
# A watermark's type: at least this many times the page's usual character size, or rotated.
_MARK_SIZE = 2.0
# Justified Chinese stretches the gaps between characters, and pdfminer writes a space for any
# gap past a tenth of a character ("对 应 宏 定 义 中 的 一 个 参 数", a TeX book: 1,339 times):
# such text matches no CJK bigram in search and reads as noise to the model. A space between
# two CJK characters (not Hangul: Korean spaces its words) set less than this share of the
# character's size apart is dropped. Measured on five Chinese LaTeX manuals (texlive-lang-
# chinese): stretched gaps are 0.1-0.4 of a character, deliberate ones ("第 1 节 介绍", a
# table's columns) 0.5 and more.
_CJK_GAP = 0.45
# Numbers set in type under this share of their line's size that mark rather than count: a
# footnote's mark raised at least _RAISED of the line's size after CJK text or punctuation
# ("同类软件8." for "同类软件." with footnote 8), a footnote's own number, a listing's line numbers
# ("1 wget http://…"), both at the start of the line (_marks). They split words and numbers
# that search matches, and the 0.5B model copied them.
_MARKER = 0.8
_RAISED = 0.25
_MARKED = ".,;:!?。，、；：！？"
# Glyphs a PDF gives no Unicode for. pdfminer writes them "(cid:12)", which then reads as words
# ("(cid:12)nd" for "find"). Most are TeX's Computer Modern fonts, whose old encodings
# (OT1, math italic, math symbols) map no code to Unicode in the PDF; no library we use knows
# those encodings, so the few codes that carry text are written out here (Knuth's font tables):
# ligatures, Greek and the symbols that stand for words. Any other such glyph is left out.
_GREEK_CAPS = dict(enumerate("ΓΔΘΛΞΠΣΥΦΨΩ"))
_TEX_TEXT = _GREEK_CAPS | {11: "ff", 12: "fi", 13: "fl", 14: "ffi", 15: "ffl", 16: "ı",
                           17: "ȷ", 25: "ß", 26: "æ", 27: "œ", 28: "ø", 29: "Æ", 30: "Œ",
                           31: "Ø"}
_TEX_MATH_ITALIC = _GREEK_CAPS | dict(enumerate("αβγδϵζηθικλμνξπρστυϕχψω", start=11))
_TEX_SYMBOLS = {0: "−", 1: "·", 2: "×", 3: "∗", 15: "•", 17: "≡", 20: "≤", 21: "≥",
                24: "∼", 25: "≈", 32: "←", 33: "→"}
_TEX_FONT = re.compile(r"^(?:[A-Z]{6}\+)?(CM[A-Z]*?)\d*$")
# Tables. pdfminer reads a table's lines in its own order: a column's cells in one box, a row's
# neighbouring cells glued into one line ("Premium $30"), so which price is whose is lost. A
# table drawn with ruling lines (Word's and most reports' grids) has its cells found by
# pdfplumber from those lines and becomes one block: rows on lines, cells joined by CELL.
# pdfplumber reads the page again, so only pages whose lines could make a grid (a line across
# meeting upright ones in at least _GRID_EDGES places) are given to it. A grid counts as a
# table with at least two rows of two cells holding text, and text in at least _FILLED of its
# cells: a chart's gridlines or a drawing make grids of empty cells.
_GRID_EDGES = 3
# Tables ruled only across (the three-line table of Chinese papers, LaTeX's booktabs: a rule
# above, one under the header, one below) have no lines to find columns by. Between rules of
# the same width, the columns are where no character is set from top to bottom, in gaps at
# least _COLUMN_GAP characters wide (a cell's word spaces are under half that; prose, whose
# words never line up, leaves no such gap), and the rows are the lines of text set on one
# baseline. Text set side by side between two rules (a TeX manual's example beside its output,
# formulas beside their numbers) makes columns too, so a table needs its header, at most
# _HEADER_ROWS rows, ruled off from its body, and at least _FULL_ROWS of its rows with two
# cells or more.
_COLUMN_GAP = 0.8
_HEADER_ROWS = 2
_FULL_ROWS = 0.6
_SNAP = 3.0  # points; pdfplumber's own snap tolerance
_FILLED = 0.5


class _Frame(NamedTuple):
    """Where a line is on its page, and its type's size."""

    x0: float
    x1: float
    y0: float
    y1: float
    size: float
    table: bool = False  # the "line" is a whole table (see _GRID_EDGES), never joined to text


class _Grid(NamedTuple):
    """A table's cells on its page (pdfminer's coordinates), row by row, left to right; a cell
    another one spans over is left out."""

    x0: float
    y0: float
    x1: float
    y1: float
    rows: list[list[tuple[float, float, float, float]]]
    full_rows: float = 0.0  # the share of rows that must have text in two cells or more

    def holds(self, item: LTItem, margin: float = 0.0) -> bool:
        """Whether the item's middle is inside the table (or `margin` points outside it)."""
        x, y = (item.x0 + item.x1) / 2, (item.y0 + item.y1) / 2  # type: ignore[attr-defined]
        return (self.x0 - margin <= x <= self.x1 + margin
                and self.y0 - margin <= y <= self.y1 + margin)


@dataclass
class _Page:
    boxes: list[list[str]]  # text boxes in reading order, each a list of lines
    frames: list[list[_Frame]]  # each line's
    # (box, line) indexes of the topmost and bottommost lines, where running headers and footers
    # sit, and of lines in a watermark's type. Only these are ever dropped, so body text that
    # repeats is kept.
    edges: set[tuple[int, int]]

    def edge_lines(self) -> set[str]:
        return {_shape(self.boxes[box][line]) for box, line in self.edges}


def read_pdf(path: Path, name: str) -> tuple[str | None, list[Block]]:
    """The PDF's metadata title (or None) and its blocks, each with its 1-based page."""
    with path.open("rb") as file:
        document = _open(file, name)
        title = _title(document)
        layouts = _layouts(document, name)
    grids = _grids(path, [n for n, layout in enumerate(layouts) if _ruled(layout)])
    pages = []
    for n, layout in enumerate(layouts):
        lines, ruled = _text_lines(layout), grids.get(n, [])
        tables = [(grid, text) for grid in ruled if (text := _table_text(grid, lines))]
        pages.append(_page_text(layout, tables + _rule_tables(layout, lines, ruled)))
    if not pages:
        raise DocumentError(f"{name}: the PDF has no pages")
    if not any(page.boxes for page in pages):
        raise DocumentError(f"{name}: no text layer (a scanned PDF?); run OCR on it first")
    repeated = _running_lines(pages)
    blocks = []
    for number, page in enumerate(pages, start=1):
        contents = _is_contents(page)
        boxes = [[(line, frame) for i, (line, frame) in enumerate(zip(box, frames, strict=True))
                  if (b, i) not in page.edges or _shape(line) not in repeated]
                 for b, (box, frames) in enumerate(zip(page.boxes, page.frames, strict=True))]
        for paragraph in _paragraphs([box for box in boxes if box]):
            if (text := join_lines(paragraph)) and (not contents or _prose(paragraph, text)):
                blocks.append(Block(text, (), number))
    return title, blocks


def _paragraphs(boxes: list[list[tuple[str, _Frame]]]) -> list[list[str]]:
    """A page's boxes of lines, each joined to the one before when it continues its paragraph
    (_WRAP_GAP), as lists of lines."""
    frames = [frame for box in boxes for _, frame in box if not frame.table]
    out: list[list[str]] = []
    for b, box in enumerate(boxes):
        if (out and not box[0][1].table and not boxes[b - 1][-1][1].table
                and not _ENDED.search(out[-1][-1]) and not _ITEM.match(box[0][0])
                and _continues(boxes[b - 1][-1][1], box[0][1], frames,
                               hanging=_ITEM.match(out[-1][-1]) is not None)):
            out[-1] += [line for line, _ in box]
        else:
            out.append([line for line, _ in box])
    return out


def _continues(last: _Frame, first: _Frame, frames: list[_Frame], hanging: bool = False) -> bool:
    """Whether the line at `first` goes on from the line at `last` (see _WRAP_GAP); the
    column's right edge is the rightmost of the lines above or under `last` (at most
    _COLUMN_LINES lines away: a quotation or a chapter's opening is set narrower). `hanging`:
    `last` opens a list item, whose next line starts under the item's text, not its bullet."""
    size = max(last.size, first.size)
    indent = _HANGING if hanging else 0.5
    right = max(f.x1 for f in frames if f.x0 < last.x1 and f.x1 > last.x0
                and abs(f.y0 - last.y0) <= _COLUMN_LINES * size)
    return (abs(last.size - first.size) <= 0.1 * size
            and last.x1 >= right - 2 * size
            and 0 <= last.y0 - first.y1 <= _WRAP_GAP * size
            and last.x0 - 3 * size <= first.x0 <= last.x0 + indent * size)


def _open(file, name: str) -> PDFDocument:  # type: ignore[no-untyped-def]
    try:
        return PDFDocument(PDFParser(file))
    except PDFPasswordIncorrect:
        raise DocumentError(f"{name}: the PDF is encrypted (needs a password)") from None
    except Exception as exc:  # pdfminer raises many types on broken files; all mean the same
        raise DocumentError(f"{name}: not a readable PDF ({_describe(exc)})") from None


class _Aggregator(PDFPageAggregator):
    def handle_undefined_char(self, font, cid: int) -> str:  # type: ignore[no-untyped-def]
        return undefined_glyph(getattr(font, "fontname", ""), cid)


def undefined_glyph(font: str, code: int) -> str:
    """What a glyph without Unicode in the PDF stands for: its text in TeX's Computer Modern
    fonts where that is known (see _TEX_TEXT), else nothing."""
    match = _TEX_FONT.match(font or "")
    if match is None:
        return ""
    family = match.group(1)
    if family.startswith(("CMMI", "CMBMI")):
        return _TEX_MATH_ITALIC.get(code, "")
    if family.startswith(("CMSY", "CMBSY")):
        return _TEX_SYMBOLS.get(code, "")
    if family.startswith(("CMEX", "CMTT", "CMITT", "CMSLTT", "CMTCSC")):
        return ""  # big delimiters; the typewriter fonts have no ligatures
    return _TEX_TEXT.get(code, "")


def _layouts(document: PDFDocument, name: str) -> list[LTPage]:
    manager = PDFResourceManager(caching=True)
    device = _Aggregator(manager, laparams=LAParams())
    interpreter = PDFPageInterpreter(manager, device)
    layouts = []
    try:
        for page in PDFPage.create_pages(document):
            interpreter.process_page(page)
            layouts.append(device.get_result())
    except DocumentError:
        raise
    except Exception as exc:
        raise DocumentError(f"{name}: PDF page {len(layouts) + 1} is unreadable "
                            f"({_describe(exc)})") from None
    return layouts


def _text_lines(layout: LTPage) -> list[LTTextLine]:
    return [line for element in layout if isinstance(element, LTTextBox)
            for line in element if isinstance(line, LTTextLine)]


def _page_text(layout: LTPage, tables: list[tuple[_Grid, str]]) -> _Page:
    """The page's boxes of lines; each of `tables` (a grid and its text) becomes one box."""
    shown: set[int] = set()
    boxes: list[list[str]] = []
    frames: list[list[_Frame]] = []
    placed: list[tuple[float, int, int]] = []  # (height on the page, box, line)
    types: dict[tuple[int, int], tuple[float, bool]] = {}  # (size, turned) of each line
    sizes: list[float] = []  # every character's
    for element in layout:
        if not isinstance(element, LTTextBox):
            continue
        box: list[str] = []
        where: list[_Frame] = []
        for line in element:
            if not isinstance(line, LTTextLine):
                continue
            if (table := next((t for t, (grid, _) in enumerate(tables) if grid.holds(line)),
                              None)) is not None:
                if table not in shown:  # the table stands where its first line was read
                    shown.add(table)
                    if box:
                        boxes.append(box)
                        frames.append(where)
                        box, where = [], []
                    grid, text = tables[table]
                    boxes.append([text])
                    frames.append([_Frame(grid.x0, grid.x1, grid.y0, grid.y1, 0.0, table=True)])
                continue
            chars = [c for c in line if isinstance(c, LTChar)]
            size = statistics.median(c.size for c in chars) if chars else line.height
            if (text := _clean(_line_text(list(line), size))) and not _ONLY_LEADER.match(text):
                sizes += [c.size for c in chars]
                types[len(boxes), len(box)] = (
                    max((c.size for c in chars), default=0.0),
                    any(abs(c.matrix[1]) > 0.05 for c in chars))  # rotated, not slanted
                placed.append((line.y0, len(boxes), len(box)))
                box.append(text)
                where.append(_Frame(line.x0, line.x1, line.y0, line.y1, size))
        if box:
            boxes.append(box)
            frames.append(where)
    placed.sort(key=lambda item: -item[0])
    top = [(b, i) for y, b, i in placed[:_EDGE_LINES] if y > layout.y1 - _MARGIN * layout.height]
    low = [(b, i) for y, b, i in placed[-_EDGE_LINES:] if y < layout.y0 + _MARGIN * layout.height]
    usual = statistics.median(sizes) if sizes else 0.0
    marks = [at for at, (size, turned) in types.items()
             if turned or size >= _MARK_SIZE * usual > 0]
    return _Page(boxes, frames, set(top + low + marks))


def _line_text(items: Sequence[LTItem], usual: float) -> str:
    """The text of a line's `items` (all of it or a table cell's part), less pdfminer's spaces
    inside stretched CJK text (_CJK_GAP) and the numbers set small that mark a footnote or
    number a listing's lines (_MARKER); `usual` is the line's median character size."""
    chars = [c for c in items if isinstance(c, LTChar)]
    base = statistics.median(c.y0 for c in chars if c.size >= _MARKER * usual) if chars else 0.0
    out: list[str] = []
    for i, item in enumerate(items):
        text = item.get_text()  # type: ignore[attr-defined]
        if isinstance(item, LTAnno):
            if not (text == " " and 0 < i < len(items) - 1
                    and _stretched(items[i - 1], items[i + 1])):
                out.append(text)
        elif not (text.isdigit() and isinstance(item, LTChar) and item.size < _MARKER * usual
                  and _marks(out, item.y0 - base >= _RAISED * usual)):
            out.append(text)
    return "".join(out)


def _ruled(layout: LTPage) -> bool:
    """Whether a line drawn across the page meets upright lines in at least _GRID_EDGES places
    (a grid's top, bottom or a rule between its rows; rectangles count as their four sides).
    Frames side by side (a manual's examples beside their code) meet two each."""
    across: list[tuple[float, float, float]] = []  # (y, x0, x1)
    down: list[tuple[float, float, float]] = []  # (x, y0, y1)
    for item in _drawn(layout):
        wide, high = item.x1 - item.x0, item.y1 - item.y0
        if wide > _SNAP and high > _SNAP:
            across += [(item.y0, item.x0, item.x1), (item.y1, item.x0, item.x1)]
            down += [(item.x0, item.y0, item.y1), (item.x1, item.y0, item.y1)]
        elif wide > _SNAP:
            across.append((item.y0, item.x0, item.x1))
        elif high > _SNAP:
            down.append((item.x0, item.y0, item.y1))
    return any(_places([x for x, low, high in down if x0 - _SNAP <= x <= x1 + _SNAP
                        and low - _SNAP <= y <= high + _SNAP]) >= _GRID_EDGES
               for y, x0, x1 in _merged(across))


def _merged(segments: list[tuple[float, float, float]]) -> list[tuple[float, float, float]]:
    """Segments (y, x0, x1) on one line that touch, as one: Word draws a table's border cell
    by cell."""
    out: list[tuple[float, float, float]] = []
    for y, x0, x1 in sorted(segments, key=lambda s: (round(s[0] / _SNAP), s[1])):
        if out and abs(out[-1][0] - y) <= _SNAP and x0 <= out[-1][2] + _SNAP:
            out[-1] = (out[-1][0], out[-1][1], max(out[-1][2], x1))
        else:
            out.append((y, x0, x1))
    return out


def _places(positions: list[float]) -> int:
    """How many places `positions` make, those under _SNAP apart counting as one (a code
    listing's frame drawn as a double line is two sides, not four)."""
    places = 0
    last = None
    for position in sorted(positions):
        if last is None or position - last > _SNAP:
            places += 1
        last = position
    return places


def _drawn(items: LTPage | LTFigure) -> list[LTLine | LTRect | LTCurve]:
    out: list[LTLine | LTRect | LTCurve] = []
    for item in items:
        if isinstance(item, LTFigure):
            out += _drawn(item)
        elif isinstance(item, (LTLine, LTRect, LTCurve)):
            out.append(item)
    return out


def _grids(path: Path, numbers: list[int]) -> dict[int, list[_Grid]]:
    """The tables pdfplumber finds from ruling lines on the pages `numbers` (0-based), by page."""
    out: dict[int, list[_Grid]] = {}
    if not numbers:
        return out
    with pdfplumber.open(path) as pdf:
        for number in numbers:
            page = pdf.pages[number]
            try:
                found = page.find_tables()
            except Exception:  # noqa: BLE001
                # pdfminer read the page's text already; a drawing pdfplumber cannot follow
                # leaves the page read as text, with nothing lost that was there before.
                continue
            out[number] = [grid for table in found if len((grid := _grid(page, table)).rows) > 1]
    return out


def _grid(page: pdfplumber.page.Page, table: pdfplumber.table.Table) -> _Grid:
    """pdfplumber's table in pdfminer's coordinates (y up from the page's foot, both relative
    to the MediaBox)."""
    left, top = page.mediabox[0], page.mediabox[1]

    def place(x0: float, y0: float, x1: float, y1: float) -> tuple[float, float, float, float]:
        return x0 - left, page.height + top - y1, x1 - left, page.height + top - y0

    rows = [[place(*cell) for cell in row.cells if cell is not None] for row in table.rows]
    return _Grid(*place(*table.bbox), rows=[row for row in rows if row])


def _rule_tables(layout: LTPage, lines: list[LTTextLine],
                 grids: list[_Grid]) -> list[tuple[_Grid, str]]:
    """Tables ruled only across (see _COLUMN_GAP) on the page, but none inside `grids`: each
    grid with its text."""
    drawn = _drawn(layout)
    sides = [item for item in drawn if item.y1 - item.y0 > _SNAP]  # upright lines, frames
    # A rule that meets an upright line at its end is a side of a box (a framed example), not
    # a table's rule.
    rules = sorted((item for item in drawn if item.y1 - item.y0 <= _SNAP
                    and item.x1 - item.x0 > 10 * _SNAP and not any(
                        side.y0 - _SNAP <= item.y0 <= side.y1 + _SNAP
                        and (abs(side.x0 - item.x0) <= _SNAP or abs(side.x1 - item.x1) <= _SNAP)
                        for side in sides)), key=lambda item: -item.y0)
    out: list[tuple[_Grid, str]] = []
    for rule in rules:  # each the top of the run of same-width rules under it
        run = [other for other in rules if other.y0 <= rule.y0 and
               abs(other.x0 - rule.x0) <= _SNAP and abs(other.x1 - rule.x1) <= _SNAP]
        if len(run) < 2 or any(grid.holds(rule, margin=_SNAP)
                               for grid in [*grids, *(grid for grid, _ in out)]):
            continue
        # The lines between neighbouring rules, from the first while they make columns.
        regions: list[list[LTTextLine]] = []
        bottom = rule.y0
        for upper, lower in itertools.pairwise(run):
            inside = [line for line in lines if rule.x0 - _SNAP <= line.x0
                      and line.x1 <= rule.x1 + _SNAP and lower.y0 < line.y0 and line.y1 < upper.y0]
            if inside and len(_columns([*itertools.chain(*regions), *inside])) < 2:
                break
            if inside:
                regions.append(inside)
                bottom = lower.y0
        if len(regions) < 2 or len(_rows(regions[0])) > _HEADER_ROWS:
            continue
        taken = list(itertools.chain(*regions))
        rows = _rows(taken)
        spans = [(min(line.y0 for line in row), max(line.y1 for line in row)) for row in rows]
        cuts = [rule.y0] + [(a[0] + b[1]) / 2 for a, b in itertools.pairwise(spans)] + [bottom]
        grid = _Grid(rule.x0 - _SNAP, bottom, rule.x1 + _SNAP, rule.y0,
                     rows=[[(x0, low, x1, high) for x0, x1 in _columns(taken)]
                           for high, low in itertools.pairwise(cuts)], full_rows=_FULL_ROWS)
        if text := _table_text(grid, lines):
            out.append((grid, text))
    return out


def _rows(lines: list[LTTextLine]) -> list[list[LTTextLine]]:
    """Lines set on one baseline (a row's cells pdfminer read apart) grouped, top to bottom."""
    rows: list[list[LTTextLine]] = []
    for line in sorted(lines, key=lambda line: -line.y0):
        if rows and abs(rows[-1][0].y0 - line.y0) <= 0.25 * line.height:
            rows[-1].append(line)
        else:
            rows.append([line])
    return rows


def _columns(lines: list[LTTextLine]) -> list[tuple[float, float]]:
    """The columns the lines' characters make (see _COLUMN_GAP), each widened to the middle of
    the gaps beside it."""
    chars = sorted((c for line in lines for c in line
                    if isinstance(c, LTChar) and c.get_text().strip()), key=lambda c: c.x0)
    if not chars:
        return []
    gap = _COLUMN_GAP * statistics.median(c.size for c in chars)
    spans = [[chars[0].x0, chars[0].x1]]
    for char in chars[1:]:
        if char.x0 - spans[-1][1] >= gap:
            spans.append([char.x0, char.x1])
        else:
            spans[-1][1] = max(spans[-1][1], char.x1)
    cuts = [spans[0][0] - gap] + [(a[1] + b[0]) / 2 for a, b in itertools.pairwise(spans)]
    return list(itertools.pairwise([*cuts, spans[-1][1] + gap]))


def _table_text(grid: _Grid, lines: list[LTTextLine]) -> str:
    """The grid's rows (cells joined by CELL) from the page's `lines`, when it is a table (see
    _FILLED), else ""."""
    cells: dict[tuple[int, int], list[str]] = {}
    for line in (line for line in lines if grid.holds(line)):
        items = list(line)
        at: list[tuple[int, int] | None] = []
        for item in items:  # a space belongs to the cell of the character before it
            at.append(_cell(grid, item) if isinstance(item, LTChar) or not at else at[-1])
        for cell, pairs in itertools.groupby(zip(at, items, strict=True), key=lambda p: p[0]):
            run = [item for _, item in pairs]
            sizes = [c.size for c in run if isinstance(c, LTChar)]
            size = statistics.median(sizes) if sizes else 0.0
            if cell is not None and (text := _clean(_line_text(run, size))):
                cells.setdefault(cell, []).append(text)
    rows = []
    for r, row in enumerate(grid.rows):
        texts = [join_lines(cells.get((r, c), [])) for c in range(len(row))]
        if filled := [c for c, text in enumerate(texts) if text]:
            rows.append(texts[filled[0]:filled[-1] + 1])
    count = sum(len(row) for row in grid.rows)
    full = sum(1 for row in rows if sum(1 for text in row if text) > 1)
    if (full < 2 or full < grid.full_rows * len(rows)
            or sum(1 for row in rows for text in row if text) < _FILLED * count):
        return ""
    return "\n".join(CELL.join(row) for row in rows)


def _cell(grid: _Grid, char: LTItem) -> tuple[int, int] | None:
    x = (char.x0 + char.x1) / 2  # type: ignore[attr-defined]
    y = (char.y0 + char.y1) / 2  # type: ignore[attr-defined]
    for r, row in enumerate(grid.rows):
        for c, (x0, y0, x1, y1) in enumerate(row):
            if x0 <= x <= x1 and y0 <= y <= y1:
                return r, c
    return None


def _marks(before: list[str], raised: bool) -> bool:
    """Whether a small digit after the text `before` marks something rather than counts: at
    the line's start (a listing's line number, a footnote's own number), or raised right after
    CJK text or punctuation (a footnote mark: "同类软件8."; not an exponent, which follows a
    letter, a digit or a bracket)."""
    last = "".join(before).rstrip()
    if not last:
        return True
    return raised and (is_cjk(last[-1]) or last[-1] in _MARKED)


def _stretched(before: object, after: object) -> bool:
    """Two CJK characters a little apart, not a word space (see _CJK_GAP)."""
    if not (isinstance(before, LTChar) and isinstance(after, LTChar)):
        return False
    a, b = before.get_text(), after.get_text()
    return (_spaceless(a) and _spaceless(b)
            and after.x0 - before.x1 < _CJK_GAP * max(before.size, after.size))


def _spaceless(char: str) -> bool:
    return len(char) == 1 and is_cjk(char) and not "\uac00" <= char <= "\ud7af"


def _prose(lines: list[str], text: str) -> bool:
    """Whether a paragraph of a contents page is prose, not entries (see _PROSE)."""
    return (len(text) >= _PROSE and _SENTENCE_END.search(text) is not None
            and not any(_LEADER.search(row) for row in _split_rows(lines)))


def _split_rows(lines: list[str]) -> list[str]:
    """The lines, a table's "line" split into its rows (each counts as a line)."""
    return [row for line in lines for row in line.split("\n")]


def _is_contents(page: _Page) -> bool:
    """Whether the page is (part of) a table of contents: see _LEADER."""
    lines = [row for box in page.boxes for row in _split_rows(box)
             if any(c.isalpha() for c in row)]
    leaders = sum(1 for line in lines if _LEADER.search(line))
    return leaders >= _CONTENTS_LINES and leaders >= _CONTENTS_SHARE * len(lines)


def _clean(text: str) -> str:
    return _LIGATURE.sub(lambda m: _LIGATURES[m.group()], text).strip()


def _shape(line: str) -> str:
    """A line with its numbers blanked: "Page 3 of 9" on each page is one running footer."""
    return re.sub(r"\d+", "#", " ".join(line.split()))


def _running_lines(pages: list[_Page]) -> set[str]:
    """Lines at a page's top or bottom, or in a watermark's type, that recur on most pages (at
    least two)."""
    counts: Counter[str] = Counter()
    for page in pages:
        counts.update(page.edge_lines())
    return {shape for shape, n in counts.items() if n >= 2 and n * 2 > len(pages)}


def _title(document: PDFDocument) -> str | None:
    for info in document.info:
        raw = info.get("Title")
        if raw is not None and hasattr(raw, "resolve"):
            raw = raw.resolve()
        if isinstance(raw, bytes):
            raw = decode_text(raw)
        if isinstance(raw, str) and raw.strip():
            return raw.strip()
    return None


def _describe(exc: Exception) -> str:
    return str(exc).splitlines()[0] if str(exc).strip() else type(exc).__name__
