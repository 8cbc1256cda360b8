"""Citations for what the model said but did not cite: a sentence of the answer that cites no
passage supporting it gets the number of the one that does, at its end, as the answer streams.

A 0.5B model often answers right from a passage and cites nothing, or cites [2] for what [1]
says. The check is lexical and deterministic, so every citation it adds can be explained: the
sentence's claim is its terms (runtime/knowledge/terms.py: words, and CJK character bigrams)
less stop words and the question's own terms (an answer repeats the question, and every
passage retrieved for it shares those); a passage supports the sentence when it holds at least
SUPPORT of the claim's terms, at least MIN_CLAIM of them, and every number in the claim. Latin
words match by their first STEM letters (months/month, descale/descaling). No support, no
citation: a sentence no passage backs stays as the model wrote it, and so does one that cites
a passage that backs it. What the model cited is never taken away (it was sent).

The text already sent is never rewritten: a sentence's end (its full stop and the spaces after
it) is held back until the next character shows whether the model cites it itself
("... six months. [1]") or the sentence goes on ("3.5"), then the citation goes in before the
full stop. The model's own text (what Finish counts) is unchanged; what was added is logged.
Standard library and runtime types only.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from runtime.generation import Event, Finish
from runtime.knowledge.passage import Hit
from runtime.knowledge.terms import stem, stems, terms

log = logging.getLogger(__name__)

SUPPORT = 0.6  # share of the claim's terms the passage must hold
MIN_CLAIM = 2  # a claim of one term ("Yes.", "14.") is too little to tell passages apart

_CITATION = re.compile(r"\[(\d+)\]")
# A sentence ends at a full stop, question or exclamation mark (Latin or CJK) or a line break.
_ENDS = ".!?。！？\n"
_STOP = frozenset("""
a an the is are was were be been being am to of in on at by for with from as into about than
and or but if then so that this these those it its it's they them their there here you your
i we our he she his her me my can could may might will would shall should must do does did
done have has had not no yes also only just very more most any all each every some such per
what which who whom when where why how answer according documents document source sources
""".split())


@dataclass(frozen=True)
class Support:
    """Why a passage was cited for a sentence: its number, and the claim's terms it holds."""

    number: int  # 1-based, as the prompt numbers the passages
    found: int
    claim: int


def claim_terms(sentence: str, question: str) -> list[str]:
    """What the sentence asserts beyond the question: its terms less stop words and the
    question's terms, Latin words cut to STEM letters."""
    asked = stems(question)
    out = []
    for term in terms(_CITATION.sub(" ", sentence)):
        if term in _STOP or (len(term) == 1 and term.isascii() and term.isalpha()):
            continue  # a stop word, or a letter ("e.g.", "a.m.")
        cut = stem(term)
        if cut not in asked and cut not in out:
            out.append(cut)
    return out


def backing(sentence: str, question: str, passages: Sequence[str]) -> list[Support]:
    """The passages that support the sentence (see the module's docstring), the one holding
    most of its claim first (the first of equals)."""
    claim = claim_terms(sentence, question)
    if len(claim) < MIN_CLAIM:
        return []
    numbers = [t for t in claim if t.isdigit()]
    found = []
    for number, text in enumerate(passages, 1):
        held = stems(text)
        if any(n not in held for n in numbers):
            continue
        share = sum(t in held for t in claim)
        if share >= SUPPORT * len(claim):
            found.append(Support(number, share, len(claim)))
    return sorted(found, key=lambda s: -s.found)


class Attributor:
    """Fed the answer's text pieces as they stream; returns what may be sent now, with a
    citation put in before the end of each sentence a passage supports and the model did not
    cite."""

    def __init__(self, question: str, hits: Sequence[Hit]):
        self.question = question
        self.passages = [f"{h.passage.title}\n{h.passage.text}" for h in hits]
        self.sentence = ""  # the current sentence, sent already except for `held`
        self.held = ""  # the sentence's end (full stop, spaces), not sent yet
        self.added: list[tuple[str, Support]] = []

    def feed(self, piece: str) -> str:
        return "".join(self._char(char) for char in piece)

    def _char(self, char: str) -> str:
        if not self.held:
            if char in _ENDS:
                self.held = char
                return ""
            self.sentence += char
            return char
        if char.isspace() or (char in _ENDS and not self.held[-1].isspace()):
            self.held += char  # "?!", "...", the spaces after the full stop
            return ""
        goes_on = self.held[0] == "." and "\n" not in self.held and (
            char.islower() or (char.isalnum() and not self.held[-1].isspace()))
        if char == "[" or goes_on:
            # The model cites the sentence itself ("... months. [1]"), or the full stop was
            # not the sentence's end ("3.5", "e.g.", "3 a.m. and"): the sentence goes on.
            sent = self.held + char
            self.sentence += sent
            self.held = ""
            return sent
        return self._end() + self._char(char)

    def finish(self) -> str:
        """What is left to send at the end of the answer."""
        return self._end()

    def _end(self) -> str:
        """The held sentence end, with the citation of the passage supporting the sentence
        before it when the sentence cites none that does."""
        held, self.held = self.held, ""
        sentence, self.sentence = self.sentence, ""
        if not sentence.strip():
            return held
        backs = backing(sentence, self.question, self.passages)
        cited = {int(n) for n in _CITATION.findall(sentence)}
        if not backs or any(b.number in cited for b in backs):
            return held  # nothing supports it, or the model cited what does
        found = backs[0]
        self.added.append((sentence.strip(), found))
        space = "" if sentence[-1:].isspace() else " "
        return f"{space}[{found.number}]{held}"


def without_label(events: Iterator[Event], labels: Sequence[str]) -> Iterator[Event]:
    """`events` with the passage label an answer opens with cut to its citation: "[1] cn2an —
    3 使用 › 3.1 中文数字: 最大支持到…" goes out as "[1] 最大支持到…". A 0.5B model opens most
    answers by copying a passage's line whole, label included, and forbidding the "[" cost more
    answers their fact than it saved (issue #24: 0.739 -> 0.609 on the tune split); the
    citation stays, so the copied passage is still the one cited. "[1] " goes out as soon as it
    is written; the title and location after it are held back while they can still be the
    label's, and go out whole the moment they are not. An opening citation of a passage that
    was not given ("[2] " with one source) is left out."""
    held, state = "", "deciding"  # "cited" ("[n] " sent), "trimming" (label cut), "passing"
    tails: list[str] = []  # after "[n] ": the rest of each label (title and location)
    for event in events:
        if not isinstance(event, str) or state == "passing":
            if held and state in ("deciding", "cited"):  # the text ended inside a label
                yield held
            held, state = "", "passing"
            yield event
            continue
        held += event
        if state == "deciding":
            start = held.lstrip()
            citation = start[:start.find("] ") + 2] if "] " in start else ""
            # Any passage's label: the model sometimes copies the second one's after "[1] ".
            tails = [lab[lab.find("] ") + 2:] for lab in labels] \
                if re.fullmatch(r"\[\d+\] ", citation) else []
            if tails:
                if int(citation[1:-2]) <= len(labels):  # not "[2] " with one source given
                    yield citation
                held, state = start[len(citation):], "cited"
            elif any(lab.startswith(start) for lab in labels):
                continue  # "[", "[1": still the start of a label
            else:
                state = "passing"
                yield held
                held = ""
                continue
        if state == "cited":
            whole = next((tail for tail in tails if held.startswith(tail)), None)
            if whole is None and any(tail.startswith(held) for tail in tails):
                continue  # still the start of the label's title and location
            if whole is None:
                state = "passing"
                yield held
                held = ""
                continue
            held, state = held[len(whole):], "trimming"
        held = held.lstrip()  # the space or line break after the label
        if held:
            state = "passing"
            yield held
            held = ""


def attributed(events: Iterator[Event], question: str, hits: Sequence[Hit]) -> Iterator[Event]:
    """`events` with citations added to the supported sentences of its text (tool calls and
    the Finish pass through unchanged, after the text before them)."""
    attributor = Attributor(question, hits)
    for event in events:
        if isinstance(event, str):
            text = attributor.feed(event)
            if text:
                yield text
            continue
        rest = attributor.finish()  # the text ends here (a tool call, or the end)
        if rest:
            yield rest
        if isinstance(event, Finish):
            for sentence, found in attributor.added:
                log.info("knowledge: cited [%d], which holds %d of the %d terms of a "
                         "sentence the model did not cite it for: %.80s", found.number,
                         found.found, found.claim, sentence)
        yield event
