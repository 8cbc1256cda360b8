"""A lazy tool grammar (tool_choice auto) whose trigger is watched here, on a bounded window.

llama.cpp's own lazy grammar keeps the whole answer until its trigger matches and runs every
pattern over all of it on every token: a `^...$` pattern with std::regex_match, which in
libstdc++ recurses once per character (a 40-48k character answer overflowed the stack and
ended the server), and any pattern in time that grows with the answer. Here the answer's last
WINDOW bytes are searched instead, with Python's `re` and the same patterns (they are written
in the subset where ECMAScript and Python agree, on bytes). Only when one matches is
llama.cpp's lazy grammar made, with that pattern alone, and given the window's tokens: it
finds the same match and replays the call's start from there, as it always did.
"""

from __future__ import annotations

import ctypes
import re

from runtime.errors import RequestError
from runtime.llama.bindings import llama_cpp
from runtime.llama.tool_grammar import ToolGrammar

# Bytes of the answer's end looked at: longer than any trigger's longest match (under 100).
WINDOW = 256


def _python(pattern: str) -> re.Pattern[bytes]:
    # ECMAScript's $ is the end of the input; Python's also matches before a final newline
    assert pattern.endswith("$")
    return re.compile(pattern[:-1].encode() + rb"\Z")


class LazyGrammar:
    """One answer's lazy tool grammar. accept() each token while `sampler` is None; once a
    trigger matched, `sampler` is llama.cpp's grammar, now applying, and the caller owns it."""

    def __init__(self, vocab: llama_cpp.llama_vocab_p, grammar: ToolGrammar):
        self.vocab = vocab
        self.grammar = grammar
        self.triggers = [(p, _python(p)) for p in grammar.trigger_patterns]
        self.sampler: llama_cpp.llama_sampler_p | None = None
        self._window: list[tuple[int, bytes]] = []
        self._size = 0
        self._whole = True  # the window still starts at the answer's start
        check = self._make(grammar.trigger_patterns)  # a schema it cannot compile fails now,
        if not check:  # with the request, not in the middle of the answer
            raise RequestError("tools: the tools' schemas could not be compiled", param="tools")
        llama_cpp.llama_sampler_free(check)

    def accept(self, token: int, piece: bytes) -> None:
        """The answer's next token and its text (control tokens' text included, as llama.cpp's
        grammar sees them)."""
        assert self.sampler is None
        self._window.append((token, piece))
        self._size += len(piece)
        text = b"".join(p for _, p in self._window)
        for pattern, regex in self.triggers:
            if pattern.startswith("^") and not self._whole:
                continue  # the answer's start has left the window: it can match no more
            if regex.search(text):
                self.sampler = self._make([pattern])
                if not self.sampler:  # compiled a moment ago; only out of memory gets here
                    raise RequestError("tools: the tools' schemas could not be compiled",
                                       param="tools")
                for window_token, _ in self._window:  # it matches at the last one, and
                    llama_cpp.llama_sampler_accept(self.sampler, window_token)  # replays
                self._window.clear()
                return
        while self._size - len(self._window[0][1]) >= WINDOW:
            self._size -= len(self._window.pop(0)[1])
            self._whole = False

    def _make(self, patterns: list[str]) -> llama_cpp.llama_sampler_p:
        array = (ctypes.c_char_p * len(patterns))(*[p.encode() for p in patterns])
        return llama_cpp.llama_sampler_init_grammar_lazy_patterns(
            self.vocab, self.grammar.gbnf.encode(), b"root", array, len(patterns), None, 0)
