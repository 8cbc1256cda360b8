"""HTML with the standard library's parser: headings, paragraphs, list items and table rows, and
none of the page's chrome (scripts, styles, navigation, the site's header and footer, asides,
cookie banners, a documentation generator's sidebar and its "¶" heading links)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser

from bundler.knowledge.document import Block, squash

_SKIP = {"script", "style", "nav", "footer", "header", "aside", "noscript", "template", "svg"}
# An <article>'s or a <section>'s own <header> holds its title: skipped only outside them.
_ARTICLE = {"article", "main", "section"}
# Chrome marked by its role, or by a class or id word that names it (Sphinx's sidebar and
# "¶" links, cookie banners, breadcrumbs, share buttons, comment boxes, ads): any element.
_SKIP_ROLES = {"navigation", "banner", "contentinfo", "complementary", "search"}
_SKIP_NAMES = re.compile(
    r"^(?:sphinxsidebar|headerlink|breadcrumbs?|cookies?|cookie-?(?:banner|consent|notice)"
    r"|consent|share|sharing|social|share-?buttons|comments|comment-?(?:box|form|list|section)"
    r"|advert|advertisement|ads?|sidebar|skip-?link|toc|site-?header|site-?footer|footer|copyright"
    r"|related|related-?(?:posts|articles|links))$",
    re.IGNORECASE)
_HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
# Tags that end the text before them: each one starts a new block.
_BREAKS = {
    "p", "div", "li", "dt", "dd", "pre", "blockquote", "section", "article", "main", "ul", "ol",
    "dl", "figure", "figcaption", "address", "details", "summary", "form", "body", "hr",
}
_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
         "track", "wbr"}


def read_html(text: str) -> tuple[str | None, list[Block]]:
    """The page's title (its first top-level heading, else its <title>, else None) and its
    blocks. A heading counts even with no text under it before the next one: a manual's title
    page (its name, then the table of contents) is the document's title."""
    parser = _Reader()
    parser.feed(text)
    parser.close()
    parser.end_tables()
    parser.flush()
    top = min(parser.headings, default=None, key=lambda h: h[0])
    return top[1] if top else parser.title, parser.blocks


@dataclass
class _Table:
    """A table being read. HTML lets </td> and </tr> go unwritten (the next cell, row or the
    table's end closes them), so cells and rows end at whatever comes next."""

    outer: list[str]  # the text being read when the table began (an outer cell's, say)
    rows: list[str] = field(default_factory=list)
    cells: list[str] | None = None  # the row being read
    cell: bool = False  # a cell is open: text goes into it

    def end_cell(self, text: list[str]) -> None:
        if self.cell and self.cells is not None:
            self.cells.append(squash("".join(text)))
        self.cell = False
        text.clear()

    def end_row(self, text: list[str]) -> None:
        self.end_cell(text)
        if self.cells and any(self.cells):
            self.rows.append(" | ".join(self.cells))
        self.cells = None


class _Reader(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[Block] = []
        self.title: str | None = None
        self.path: list[tuple[int, str]] = []
        self.text: list[str] = []
        # The skipped element being read past (nothing inside it is read), and how many elements
        # of its tag are open (itself and those nested in it): it ends when that reaches 0.
        self.skipping: str | None = None
        self.skip_depth = 0
        self.articles = 0  # open <article>/<main> elements
        self.pre = 0
        self.in_title = False
        self.tables: list[_Table] = []  # open tables, innermost last
        self.headings: list[tuple[int, str]] = []  # (level, text) of every heading, in order

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.skipping:
            self.skip_depth += tag == self.skipping
            return
        if tag not in _VOID and self._chrome(tag, attrs):
            self.skipping, self.skip_depth = tag, 1
            return
        self.articles += tag in _ARTICLE
        table = self.tables[-1] if self.tables else None
        if tag == "title":
            self.in_title = True
        elif tag == "br":
            self.text.append("\n")
        elif tag == "table":
            if table is None:
                self.flush()
            self.tables.append(_Table(self.text))
            self.text = []
        elif table is not None and tag == "tr":
            table.end_row(self.text)
            table.cells = []
        elif table is not None and tag in ("td", "th"):
            table.end_cell(self.text)
            if table.cells is None:
                table.cells = []
            table.cell = True
        elif table is not None and (tag in _HEADINGS or tag in _BREAKS):
            self.text.append(" ")  # a paragraph or list inside a cell stays in the cell
        elif tag in _HEADINGS or tag in _BREAKS:
            self.flush()
            self.pre += tag == "pre"

    def handle_endtag(self, tag: str) -> None:
        if self.skipping:
            self.skip_depth -= tag == self.skipping
            if self.skip_depth == 0:
                self.skipping = None
            return
        if tag in _ARTICLE and self.articles:
            self.articles -= 1
        table = self.tables[-1] if self.tables else None
        if tag == "title":
            self.in_title = False
        elif table is not None and tag in ("td", "th"):
            table.end_cell(self.text)
        elif table is not None and tag == "tr":
            table.end_row(self.text)
        elif table is not None and tag == "table":
            self._end_table()
        elif table is not None and (tag in _HEADINGS or tag in _BREAKS):
            self.text.append(" ")
        elif tag in _HEADINGS:
            self._heading(_HEADINGS[tag], squash("".join(self.text)))
            self.text = []
        elif tag in _BREAKS:
            self.flush()
            self.pre -= tag == "pre" and self.pre > 0

    def handle_data(self, data: str) -> None:
        if self.skipping:
            return
        if self.in_title:
            self.title = squash((self.title or "") + data) or None
        else:  # outside <pre> a source line break is just a space; <br> is the break
            self.text.append(data if self.pre else data.replace("\n", " "))

    def _chrome(self, tag: str, attrs: list[tuple[str, str | None]]) -> bool:
        if tag in _SKIP:
            return not (tag == "header" and self.articles)
        for name, value in attrs:
            if not value:
                continue
            if name == "role" and value.lower() in _SKIP_ROLES:
                return True
            if name in ("class", "id") and any(_SKIP_NAMES.match(w) for w in value.split()):
                return True
        return False

    def _end_table(self) -> None:
        """The innermost table ends: a block of its rows, or, inside another table's cell,
        its rows as that cell's text."""
        table = self.tables.pop()
        table.end_row(self.text)
        self.text = table.outer
        if self.tables:
            self.text.append(" " + "; ".join(table.rows) + " ")
        else:
            self._add("\n".join(table.rows))

    def end_tables(self) -> None:
        """Tables the page never closed end with it."""
        while self.tables:
            self._end_table()

    def flush(self) -> None:
        """Ends the block being read (inside a table, its text is a cell's: tables end as a
        whole)."""
        if self.tables:
            return
        raw = "".join(self.text)
        self.text = []
        if self.pre:
            self._add(raw.strip("\n"))
        else:
            self._add("\n".join(squash(line) for line in raw.split("\n") if line.strip()))

    def _add(self, text: str) -> None:
        if text.strip():
            self.blocks.append(Block(text, tuple(title for _, title in self.path)))

    def _heading(self, level: int, title: str) -> None:
        while self.path and self.path[-1][0] >= level:
            self.path.pop()
        if title:
            self.path.append((level, title))
            self.headings.append((level, title))
