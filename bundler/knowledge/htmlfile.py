"""HTML with the standard library's parser: headings, paragraphs, list items and table rows, and
none of the page's chrome (scripts, styles, navigation, the site's header and footer, asides,
buttons, cookie banners, a documentation generator's sidebar, its "on this page" contents and
its "¶" heading links). A page that marks its main content (<main>, role="main", <article>)
is read from it alone, as a browser's reader view does, when it holds a fair share of the
page's text."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser

from bundler.knowledge.document import Block, squash
from runtime.knowledge.rows import CELL

_SKIP = {"script", "style", "nav", "footer", "header", "aside", "noscript", "template", "svg",
         "button", "select"}
# An <article>'s or a <section>'s own <header> holds its title: skipped only outside them.
_ARTICLE = {"article", "main", "section"}
# Chrome marked by its role, or by a class or id word that names it (Sphinx's sidebar and
# "¶" links, cookie banners, breadcrumbs, share buttons, comment boxes, ads): any element.
_SKIP_ROLES = {"navigation", "banner", "contentinfo", "complementary", "search"}
_SKIP_NAMES = re.compile(
    r"^(?:sphinxsidebar|headerlink|breadcrumbs?|cookies?|cookie-?(?:banner|consent|notice)"
    r"|consent|share|sharing|social|share-?buttons|comments|comment-?(?:box|form|list|section)"
    r"|advert|advertisement|ads?|skip-?link|toc|site-?header|site-?footer|footer|copyright"
    r"|navheader|navfooter|docnav"
    r"|related|related-?(?:posts|articles|links))$",
    re.IGNORECASE)
# Words that name chrome wherever they stand in a class name, split at "-", "_" and camelCase
# ("theme-doc-toc-mobile", "csdn-toolbar", "recommend-box"), and a table of contents or a list
# of tables however it is written ("tableOfContents_bqdL", "list-of-tables").
_CHROME_PARTS = {
    "toc", "navbar", "breadcrumb", "breadcrumbs", "toolbar", "cookie", "cookies",
    "pagination", "pager", "recommend", "recommends", "recommended", "recommendations", "copyright",
    "advert", "advertisement", "comments", "share", "sharing", "social", "search", "skip",
}
_CLASS_PARTS = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])")
_LISTS = re.compile(r"tableofcontents|listof(?:tables|figures|examples|equations)")
# Words that name chrome or content: a blog's sidebar is links, a DocBook manual's sidebar is
# a "TIP" box of prose, a page's banner its title. Such an element is read, and dropped if
# links make at least _LINKS_SHARE of its text.
_MAYBE_PARTS = {"sidebar", "banner"}
_LINKS_SHARE = 0.5
# Headings that are a title page's byline, not a section (DocBook's <h3 class="author">).
_BYLINES = {"author", "authorgroup", "byline", "corpauthor", "editor", "othercredit"}
# The main content must hold this share of the page's text to be read alone: a <main> or an
# <article> holding a teaser card, not the page, leaves the page read whole.
_MAIN_SHARE = 1 / 3
_HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
# Tags that end the text before them: each one starts a new block.
_BREAKS = {
    "p", "div", "li", "dt", "dd", "pre", "blockquote", "section", "article", "main", "ul", "ol",
    "dl", "figure", "figcaption", "address", "details", "summary", "form", "body", "hr",
}
_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
         "track", "wbr"}


def _chrome_class(word: str) -> bool:
    parts = [part.lower() for part in _CLASS_PARTS.findall(word)]
    return bool(_SKIP_NAMES.match(word) or _CHROME_PARTS.intersection(parts)
                or _LISTS.search("".join(parts)))


def _words(attrs: dict[str, str]) -> set[str]:
    """The parts of an element's class and id words, lower-cased."""
    words = attrs.get("class", "").split() + attrs.get("id", "").split()
    return {part.lower() for word in words for part in _CLASS_PARTS.findall(word)}


def read_html(text: str) -> tuple[str | None, list[Block]]:
    """The page's title (its first top-level heading, else its <title>, else None) and its
    blocks. A heading counts even with no text under it before the next one: a manual's title
    page (its name, then the table of contents) is the document's title."""
    parser = _Reader()
    parser.feed(text)
    parser.close()
    parser.end_tables()
    parser.flush()
    main = _main_content(parser.blocks, parser.regions)
    pairs = zip(parser.blocks, parser.regions, strict=True)
    blocks = [block for block, region in pairs if main in region]
    headings = [(level, title) for level, title, region in parser.headings if main in region]
    top = min(headings, default=None, key=lambda h: h[0])
    return top[1] if top else parser.title, blocks


def _main_content(blocks: list[Block], regions: list[frozenset[str]]) -> str:
    """Which blocks make the page: those in its <main> (or role="main"), else in its
    <article>s, when they hold at least _MAIN_SHARE of the text; else all ("page")."""
    sizes = [(len(block.text), where) for block, where in zip(blocks, regions, strict=True)]
    total = sum(size for size, _ in sizes)
    for region in ("main", "article"):
        inside = sum(size for size, where in sizes if region in where)
        if inside and inside >= _MAIN_SHARE * total:
            return region
    return "page"


@dataclass
class _Open:
    """An open element: the region it begins ("main", "article"), and for one that may be
    chrome (_MAYBE_PARTS), the reader's counts when it began: blocks, headings, link text and
    all text."""

    tag: str
    region: str | None = None
    began: tuple[int, int, int, int] | None = None


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
        if self.cells and any(self.cells):  # empty cells at its ends (an icon's) left out
            filled = [i for i, cell in enumerate(self.cells) if cell]
            self.rows.append(CELL.join(self.cells[filled[0]:filled[-1] + 1]))
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
        self.pre = 0
        self.in_title = False
        self.tables: list[_Table] = []  # open tables, innermost last
        # (level, text, region) of every heading, in order; each block's region: "page" and
        # "main" or "article" when it is inside one
        self.headings: list[tuple[int, str, frozenset[str]]] = []
        self.regions: list[frozenset[str]] = []
        self.open: list[_Open] = []
        self.anchors = 0  # open <a> elements
        self.link_chars = self.all_chars = 0  # characters of text read: in links, in all
        self.byline = False  # the heading being read is a byline (_BYLINES)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.skipping:
            self.skip_depth += tag == self.skipping
            return
        found = {name: value or "" for name, value in attrs}
        if tag not in _VOID and self._chrome(tag, found):
            self.skipping, self.skip_depth = tag, 1
            return
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
        if tag in _HEADINGS:
            self.byline = not _BYLINES.isdisjoint(_words({"class": found.get("class", "")}))
        self.anchors += tag == "a"
        if tag not in _VOID:
            main = tag == "main" or found.get("role") == "main"
            counts = (len(self.blocks), len(self.headings), self.link_chars, self.all_chars)
            maybe = not _MAYBE_PARTS.isdisjoint(_words(found))
            self.open.append(_Open(tag, "main" if main else "article" if tag == "article" else None,
                                   counts if maybe else None))

    def handle_endtag(self, tag: str) -> None:
        if self.skipping:
            self.skip_depth -= tag == self.skipping
            if self.skip_depth == 0:
                self.skipping = None
            return
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
        elif tag in _HEADINGS and self.byline:
            self.flush()
        elif tag in _HEADINGS:
            self._heading(_HEADINGS[tag], squash("".join(self.text)))
            self.text = []
        elif tag in _BREAKS:
            self.flush()
            self.pre -= tag == "pre" and self.pre > 0
        self.anchors -= tag == "a" and self.anchors > 0
        # An end tag closes its element and whatever HTML let go unclosed inside it.
        for depth in range(len(self.open) - 1, -1, -1):
            if self.open[depth].tag == tag:
                for element in reversed(self.open[depth:]):
                    self._links_only(element)
                del self.open[depth:]
                break

    def _links_only(self, element: _Open) -> None:
        """Drops what a maybe-chrome element gave if it was mostly links."""
        if element.began is None:
            return
        blocks, headings, links, chars = element.began
        if self.link_chars - links >= _LINKS_SHARE * (self.all_chars - chars) > 0:
            del self.blocks[blocks:], self.regions[blocks:], self.headings[headings:]

    def handle_data(self, data: str) -> None:
        if self.skipping:
            return
        if self.in_title:
            self.title = squash((self.title or "") + data) or None
        else:  # outside <pre> a source line break is just a space; <br> is the break
            self.text.append(data if self.pre else data.replace("\n", " "))
            size = len(data.strip())
            self.link_chars += size if self.anchors else 0
            self.all_chars += size

    def _chrome(self, tag: str, found: dict[str, str]) -> bool:
        if tag in _SKIP:
            return not (tag == "header" and any(e.tag in _ARTICLE for e in self.open))
        classes = found.get("class", "").split()
        if found.get("role", "").lower() in _SKIP_ROLES:
            return True
        if any(_chrome_class(word) for word in classes):
            return True
        # An id names chrome only as a whole word, and never a section's: documentation
        # generators give each section its heading's name ("cookies", "pager-support").
        section = tag == "section" or "section" in classes
        return not section and bool(_SKIP_NAMES.match(found.get("id", "")))

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

    def _region(self) -> frozenset[str]:
        return frozenset({"page"}.union(e.region for e in self.open if e.region))

    def _add(self, text: str) -> None:
        if text.strip():
            self.blocks.append(Block(text, tuple(title for _, title in self.path)))
            self.regions.append(self._region())

    def _heading(self, level: int, title: str) -> None:
        while self.path and self.path[-1][0] >= level:
            self.path.pop()
        if title:
            self.path.append((level, title))
            self.headings.append((level, title, self._region()))
