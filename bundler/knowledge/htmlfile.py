"""HTML with the standard library's parser: headings, paragraphs, list items and table rows, and
none of the page's chrome (scripts, styles, navigation, header, footer, asides)."""

from __future__ import annotations

from html.parser import HTMLParser

from bundler.knowledge.document import Block, squash

_SKIP = {"script", "style", "nav", "footer", "header", "aside", "noscript", "template", "svg"}
_HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
# Tags that end the text before them: each one starts a new block.
_BREAKS = {
    "p", "div", "li", "dt", "dd", "pre", "blockquote", "section", "article", "main", "ul", "ol",
    "dl", "figure", "figcaption", "address", "details", "summary", "form", "body", "hr",
}


def read_html(text: str) -> tuple[str | None, list[Block]]:
    """The page's <title> (None without one) and its blocks."""
    parser = _Reader()
    parser.feed(text)
    parser.close()
    parser.flush()
    return parser.title, parser.blocks


class _Reader(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[Block] = []
        self.title: str | None = None
        self.path: list[tuple[int, str]] = []
        self.text: list[str] = []
        self.skipping: list[str] = []  # the open skipped elements (they can nest)
        self.pre = 0
        self.in_title = False
        self.cells: list[str] | None = None  # the row being read
        self.rows: list[str] | None = None  # the table being read

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.skipping or tag in _SKIP:
            if tag in _SKIP:
                self.skipping.append(tag)
            return
        if tag == "title":
            self.in_title = True
        elif tag == "br":
            self.text.append("\n")
        elif tag == "table":
            self.flush()
            self.rows = []
        elif tag == "tr":
            self.cells = []
        elif tag in ("td", "th"):
            self.text = []
        elif tag in _HEADINGS or tag in _BREAKS:
            self.flush()
            self.pre += tag == "pre"

    def handle_endtag(self, tag: str) -> None:
        if self.skipping:
            if tag == self.skipping[-1]:
                self.skipping.pop()
            return
        if tag == "title":
            self.in_title = False
        elif tag in ("td", "th") and self.cells is not None:
            self.cells.append(squash("".join(self.text)))
            self.text = []
        elif tag == "tr" and self.cells is not None:
            if any(self.cells) and self.rows is not None:
                self.rows.append(" | ".join(self.cells))
            self.cells = None
        elif tag == "table" and self.rows is not None:
            self._add("\n".join(self.rows))
            self.rows = None
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

    def flush(self) -> None:
        """Ends the block being read (tables end at </table>, cells at </td>)."""
        if self.cells is not None:
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
