"""Tables in a passage's text. Every reader writes a table as one block, its rows on lines and
its cells joined by CELL (bundler/knowledge/document.py), so a run of two or more such lines is
a table and its first line is the header that names the columns. The chunker repeats a
table's header at the top of each chunk the table runs on into, and the excerpt shows a
matching row under its header: "广州 | 天河区体育西路12号 | 020-38886677" alone does not say
which number is the phone's. Standard library only."""

from __future__ import annotations

from collections.abc import Sequence

CELL = " | "


def headers(lines: Sequence[str]) -> list[int | None]:
    """For each line, the index of the header of the table it is a row of; None for a line
    outside any table and for a header itself."""
    out: list[int | None] = [None] * len(lines)
    start = 0
    while start < len(lines):
        end = start
        while end < len(lines) and CELL in lines[end]:
            end += 1
        if end - start >= 2:
            for row in range(start + 1, end):
                out[row] = start
        start = max(end, start + 1)
    return out
