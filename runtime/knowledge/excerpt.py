"""What of a passage the model is shown: the sentences that match the question, each with the
sentence after it, instead of the whole chunk (issue #24).

A 0.5B model copies from whatever is nearest the question or most prominent, and a 256-token
chunk of a README holds a dozen lines (install commands, examples, a list of features) of which
one answers. The chunk's other lines are distractors, and they are most of the prompt: a first
turn's time to first token is the prompt's evaluation, ~1,000 tokens of passages against ~40
without. So the prompt quotes, per passage, the sentences holding most of the question's
terms (runtime/knowledge/terms.py: words, CJK bigrams, numbers), each from the start of its
line to AFTER sentences past it, and "…" where it skips. Nothing before a matching line: a small
model copies a passage from its first line, so that line should be the one that answers (on
the tune split, the answer in the first line of the first passage 7 -> 16 of 23 against one
sentence either side, the answer anywhere in the prompt 20 -> 19). A table's row is quoted
under its header (runtime/knowledge/rows.py). The sources (and /knowledge/search) still give
whole passages: only the prompt is cut.

A passage that shares no term with the question (a question in the other language: the
vectors found it, not the words) is quoted whole, for the answer may be anywhere in it.
Standard library and runtime types only.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Sequence

from runtime.knowledge.rows import CELL, headers
from runtime.knowledge.terms import stem, stems, terms

AFTER = 1  # sentences kept after a matching one: a command follows its "use:" line
# A sentence matches when it holds at least this share of the best sentence's score: the
# answer is sometimes split over two places of a passage (a mode named, then described).
CLOSE = 0.7
SKIP = " … "  # between the kept runs of a passage (plain text: it is quoted as data)
# Words a question is made of whatever it asks: they match every other sentence of a README.
_STOP = frozenset("""
a an the is are was were be been being am to of in on at by for with from as into about and or
but if then so that this these those it its they them their there here you your i we our can
could may might will would shall should must do does did have has had not no what which who
whom when where why how use used using
""".split())
_STOP_ZH = frozenset("""
什么 哪个 哪种 哪些 怎么 怎样 如何 是否 可以 需要 多少 多大 的是 是什 么版 么算
""".split())
# A sentence ends at a full stop, question or exclamation mark followed by a space (Latin) or
# at once (CJK), or at a line break; a README's lines (commands, list items) are sentences.
_SENTENCE = re.compile(r"[^\n]*?(?:[。！？；]|[.!?;](?=\s)|$)", re.MULTILINE)


def sentences(text: str) -> list[str]:
    """The passage's sentences, in order, each stripped; blank lines dropped. Joined with
    single spaces or line breaks they give the passage's text back (less blank lines)."""
    out = []
    for line in text.splitlines():
        out += [s.strip() for s in _SENTENCE.findall(line) if s.strip()]
    return out


def question_terms(question: str) -> set[str]:
    """The question's terms that can tell a passage's sentences apart, Latin words stemmed
    (terms.stem): no stop words, no question words (什么 哪个 included), no single letters."""
    return {stem(t) for t in terms(question)
            if t not in _STOP and t not in _STOP_ZH
            and not (len(t) == 1 and t.isascii() and t.isalpha())}


def term_share(asked: set[str], text: str) -> float:
    """The share of `asked` (question_terms of a question) that `text` holds (0 of none)."""
    return len(stems(text) & asked) / len(asked) if asked else 0.0


# Cached: a request quotes each passage in its sources, then again in every prompt that fitting
# the conversation to the context tries (runtime/knowledge/retrieve.py: ground).
@functools.lru_cache(maxsize=64)
def excerpt(text: str, question: str) -> str:
    """The sentences of `text` that match `question` (see the module's docstring), each from
    the start of its line to AFTER sentences past it, in reading order, SKIP between runs
    that are not next to each other, lines kept as lines. `text` stripped when no sentence
    holds a term of the question, or when every sentence would be kept."""
    parts = sentences(text)
    asked = question_terms(question)
    if not asked or len(parts) <= 1 + AFTER:
        return text.strip()
    lines = _line_of(parts, text)
    # A table's row holds its header's terms too (the header names what its cells are), and
    # a row kept brings its header, not the next row: another record is no context.
    head = headers(text.split("\n"))
    heading = [[j for j, line in enumerate(lines) if line == head[lines[i]]]
               if head[lines[i]] is not None else [] for i in range(len(parts))]
    held = [stems(" ".join(parts[j] for j in [i, *heading[i]])) & asked
            for i in range(len(parts))]
    # A term in many of the passage's sentences (the project's name) tells them apart less than
    # one in a single sentence: weigh each by its inverse sentence frequency within the passage.
    weight = {t: math.log(1 + len(parts) / sum(t in h for h in held)) for t in asked
              if any(t in h for h in held)}
    scores = [sum(weight[t] for t in h) for h in held]
    best = max(scores)
    if best <= 0:
        return text.strip()
    keep: set[int] = set()
    for i, score in enumerate(scores):
        if score >= CLOSE * best:
            start = i  # back to the line's first sentence: a list item is read whole
            while start > 0 and lines[start - 1] == lines[i]:
                start -= 1
            after = 0 if heading[i] else AFTER
            keep.update(heading[i], range(start, min(len(parts), i + after + 1)))
    if len(keep) == len(parts):
        return text.strip()
    return _join(parts, sorted(keep), lines)


def _join(parts: Sequence[str], keep: Sequence[int], lines: Sequence[int]) -> str:
    """The kept sentences in order: a line break between sentences that were on different
    `lines`, a space between sentences of one line, SKIP over a gap (but a line break between
    two rows of a table)."""
    out = ""
    for before, i in zip([None, *keep], keep, strict=False):
        if before is None:
            out = parts[i]
        elif i != before + 1 and not (CELL in parts[before] and CELL in parts[i]):
            out += SKIP + parts[i]
        elif i != before + 1:  # rows of a table left out: the next row kept goes on a line
            out += "\n" + parts[i]
        else:
            out += ("\n" if lines[i] != lines[before] else " ") + parts[i]
    return out


def _line_of(parts: Sequence[str], text: str) -> list[int]:
    """The line of `text` each sentence starts on."""
    out, line, at = [], 0, 0
    for part in parts:
        found = text.find(part, at)
        line += text.count("\n", at, found)
        out.append(line)
        at = found + len(part)
    return out
