"""A model's answer back into content and tool calls, per template family, whole or streamed.

One parser does both: parse_tool_calls feeds the whole answer to a ToolStream. The stream is
a generator that asks for more text whenever a decision needs it (a possible marker start,
the end of a call's name, the end of the answer for a bare JSON call), so where the text was
cut never changes the result, and markup never reaches the content.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Generator, Iterable, Sequence
from dataclasses import dataclass

from runtime.chat.tools import MARKERS, Tool, ToolCall, new_call_id
from runtime.generation import CallArguments, CallStart

log = logging.getLogger(__name__)

ARGUMENT_KEYS = ("arguments", "parameters")  # Llama 3 says parameters
_CALL_KEYS = {"name", "arguments", "parameters", "type", "id"}
_FENCE = re.compile(r"```[ \t]*(?:json|JSON)?[ \t]*\n(.*?)\n?[ \t]*```", re.S)


@dataclass(frozen=True)
class Content:
    text: str


# CallStart and CallArguments are the engine's own events (runtime/generation.py)
Event = Content | CallStart | CallArguments
Wait = Generator[None, None, None]  # the parser's steps: they yield to ask for more text


def bare_calls(text: str, names: set[str]) -> list[tuple[str, str]] | None:
    """An answer that is nothing but JSON call objects (bare or ```json fenced; one, an array,
    or several in a row) each naming an offered tool: (name, arguments) pairs; else None,
    and the answer is content."""
    body = text.strip()
    if (fence := _FENCE.fullmatch(body)) is not None:
        body = fence.group(1).strip()
    elif body.endswith("```"):  # the lazy grammar's bare call may close a fence it never opened
        body = body[:-3].rstrip()
    items = _json_items(body)
    if items is None and body.startswith("{{"):
        items = _doubled_braces(body)
    if items is None:
        return None
    calls = [_bare_call(item, names) for item in items]
    if not calls or any(call is None for call in calls):
        return None
    return [call for call in calls if call is not None]


def _json_items(body: str) -> list[object] | None:
    """One JSON array's items, or the JSON values written one after another; None if not."""
    decoder = json.JSONDecoder()
    items: list[object] = []
    try:
        if body.startswith("["):
            value = json.loads(body)
            return value if isinstance(value, list) else []
        at = 0
        while at < len(body):
            item, at = decoder.raw_decode(body, at)
            items.append(item)
            while at < len(body) and (body[at].isspace() or body[at] == ";"):
                at += 1
    except ValueError:
        return None
    return items


def _doubled_braces(body: str) -> list[object] | None:
    """A call written in doubled braces, `{{"name": ..., "arguments": {...}}}` (small models
    write that after a tool result, copying a template's escaped braces): the object inside."""
    inner = body.lstrip("{")
    try:
        item, at = json.JSONDecoder().raw_decode("{" + inner)
    except ValueError:
        return None
    rest = inner[at - 1:].strip()
    return [item] if set(rest) <= {"}"} else None


def _bare_call(item: object, names: set[str]) -> tuple[str, str] | None:
    if not isinstance(item, dict) or not set(item) <= _CALL_KEYS or item.get("name") not in names:
        return None
    arguments = item.get("arguments", item.get("parameters", {}))
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except ValueError:
            return None
    if not isinstance(arguments, dict):
        return None
    return str(item["name"]), json.dumps(arguments, ensure_ascii=False)


def _decoded_arguments(raw: str) -> str:
    """Arguments the model wrote as a JSON string holding the object: the object's text."""
    if raw.startswith('"'):
        try:
            value = json.loads(raw)
        except ValueError:
            return raw
        return value.strip() if isinstance(value, str) else raw
    return raw


class ToolStream:
    """Incremental parser: feed(text) and finish() return the events that text decided."""

    def __init__(self, family: str, tools: Sequence[Tool]):
        self.family = family
        self._names = {tool.name for tool in tools}
        self._markers = MARKERS.get(family, ())
        self._buf = ""
        self._pos = 0
        self._eof = False
        self._events: list[Event] = []
        self._blank = ""  # content's trailing whitespace: dropped if a call follows
        self._n_calls = 0
        self._steps = self._answer()
        next(self._steps)

    def feed(self, text: str) -> list[Event]:
        self._buf += text
        return self._resume()

    def finish(self) -> list[Event]:
        self._eof = True
        return self._resume()

    def _resume(self) -> list[Event]:
        try:
            next(self._steps)
        except StopIteration:
            pass
        events, self._events = self._events, []
        return events

    # -- reading the buffer: each step yields until it has what it needs or the answer ended

    def _need(self, n: int) -> Generator[None, None, bool]:
        while len(self._buf) - self._pos < n:
            if self._eof:
                return False
            yield
        return True

    def _peek(self) -> Generator[None, None, str]:
        return self._buf[self._pos] if (yield from self._need(1)) else ""

    def _skip_blanks(self) -> Wait:
        while (c := (yield from self._peek())) and c.isspace():
            self._pos += 1

    def _next_solid(self, at: int) -> Generator[None, None, int]:
        """Index of the first non-blank character at or after `at`, -1 at the end."""
        while True:
            while at < len(self._buf) and self._buf[at].isspace():
                at += 1
            if at < len(self._buf):
                return at
            if self._eof:
                return -1
            yield

    def _starts_with(self, text: str) -> Generator[None, None, bool]:
        yield from self._need(len(text))
        return self._buf.startswith(text, self._pos)

    # -- emitting

    def _content(self, text: str) -> None:
        text = self._blank + text
        solid = text.rstrip()
        self._blank = text[len(solid):]
        if solid:
            self._events.append(Content(solid))

    def _start_call(self, name: str) -> int:
        index = self._n_calls
        self._n_calls += 1
        self._events.append(CallStart(index, new_call_id(self.family), name))
        return index

    # -- the answer

    def _answer(self) -> Wait:
        if (yield from self._bare_answer()):
            return
        while (marker := (yield from self._text())) is not None:
            self._blank = ""
            yield from self._markup(marker)
            yield from self._skip_blanks()
        if self._blank:
            self._events.append(Content(self._blank))

    def _bare_answer(self) -> Generator[None, None, bool]:
        """A whole answer that is a JSON call can only be known at its end: until then, an
        answer that starts like one is held back."""
        start = self._pos
        at = yield from self._next_solid(start)
        if at < 0:
            return False
        if self._buf[at] == "[":
            at = yield from self._next_solid(at + 1)
            if at < 0 or self._buf[at] != "{":
                return False
        elif self._buf[at] == "`":
            at = yield from self._json_fence(at)
            if at < 0:
                return False
        elif self._buf[at] != "{":
            return False
        while (yield from self._need(len(self._buf) - self._pos + 1)):
            pass  # wait for the end of the answer
        calls = bare_calls(self._buf[start:], self._names)
        if calls is None:
            return False
        for name, arguments in calls:
            self._events.append(CallArguments(self._start_call(name), arguments))
        self._pos = len(self._buf)
        return True

    def _json_fence(self, at: int) -> Generator[None, None, int]:
        """After an opening ``` or ```json line, where its JSON starts; -1 if it is not one
        (so a ```python answer streams at once)."""
        while (newline := self._buf.find("\n", at)) < 0:
            if self._eof:
                return -1
            yield
        if not self._buf.startswith("```", at) or \
                self._buf[at + 3:newline].strip().lower() not in ("", "json"):
            return -1
        at = yield from self._next_solid(newline + 1)
        return at if at >= 0 and self._buf[at] in "{[" else -1

    def _text(self) -> Generator[None, None, str | None]:
        """Content up to the next marker, which it returns (None at the end); a tail that may
        be the start of a marker is held back until the next text tells."""
        while True:
            hits = [(at, m) for m in self._markers if (at := self._buf.find(m, self._pos)) >= 0]
            if hits:
                at, marker = min(hits)
                self._content(self._buf[self._pos:at])
                self._pos = at + len(marker)
                return marker
            partial = self._partial_marker()
            end = len(self._buf) - partial
            self._content(self._buf[self._pos:end])
            self._pos = end
            if self._eof:
                if partial < 2:  # a lone "<" or "[" ends some answers; "<tool_c" is markup
                    self._content(self._buf[self._pos:])
                self._pos = len(self._buf)
                return None
            yield

    def _partial_marker(self) -> int:
        tail = self._buf[self._pos:]
        for n in range(min(len(tail), max(map(len, self._markers), default=1) - 1), 0, -1):
            if any(m.startswith(tail[-n:]) for m in self._markers):
                return n
        return 0

    def _markup(self, marker: str) -> Wait:
        yield from self._skip_blanks()
        c = yield from self._peek()
        if marker == "<tool_call>":
            if c == "{":
                yield from self._call()
                yield from self._skip_blanks()
                if (yield from self._starts_with("</tool_call>")):
                    self._pos += len("</tool_call>")
            elif c:  # not a JSON call: drop the region rather than show markup
                log.warning("dropped a <tool_call> region that holds no JSON call")
                yield from self._drop_until("</tool_call>")
        elif marker == "[TOOL_CALLS]":
            if c == "[":
                self._pos += 1
            yield from self._call_list("]")
        elif marker == "<|python_tag|>":
            yield from self._call_list(";")
        # a stray </tool_call> is simply dropped

    def _call_list(self, end: str) -> Wait:
        """Calls separated by commas or `;` until `end`; stops at anything else."""
        while (c := (yield from self._peek())):
            if c == "{":
                yield from self._call()
            elif c in ",;" or c.isspace():
                self._pos += 1
            else:
                if c == end:
                    self._pos += 1
                return

    def _drop_until(self, text: str) -> Wait:
        while (at := self._buf.find(text, self._pos)) < 0:
            if self._eof:
                self._pos = len(self._buf)
                return
            yield
        self._pos = at + len(text)

    def _call(self) -> Wait:
        """One `{"name": ..., "arguments": ...}` object: its name once known, then its
        arguments as they come (arguments written before the name wait for it)."""
        self._pos += 1  # {
        index, early, sent = -1, None, False
        while (c := (yield from self._peek())) and c != "}":
            if c in ",:" or c.isspace():
                self._pos += 1
                continue
            if c != '"':
                break  # not JSON any more: the call ends here
            key = _string((yield from self._value(None)))
            yield from self._skip_blanks()
            if not (yield from self._starts_with(":")):
                break
            self._pos += 1
            yield from self._skip_blanks()
            if key == "name" and index < 0:
                name = _string((yield from self._value(None)))
                if name is None:
                    break
                index = self._start_call(name)
                if early is not None:
                    self._events.append(CallArguments(index, early))
                    sent = True
            elif key in ARGUMENT_KEYS and not sent and early is None:
                if index >= 0:
                    yield from self._value(index)
                    sent = True
                else:
                    early = _decoded_arguments((yield from self._value(None)))
            else:
                yield from self._value(None)
        if c == "}":
            self._pos += 1
        if index >= 0 and not sent:
            self._events.append(CallArguments(index, "{}"))

    def _value(self, index: int | None) -> Generator[None, None, str]:
        """Reads one JSON value and returns its text; with an index, it goes out as argument
        fragments as it arrives (a string value, JSON inside a string, goes out decoded)."""
        start = self._pos
        first = yield from self._peek()
        if first == '"':
            yield from self._scan(lambda depth, c: c == '"' and depth == 0, in_string=True)
            raw = self._buf[start:self._pos]
            if index is not None:
                self._events.append(CallArguments(index, _decoded_arguments(raw)))
            return raw
        if first in "{[":
            yield from self._scan(lambda depth, c: depth == 0, index=index)
        else:  # number, true, false, null
            yield from self._scan(lambda depth, c: False, stop=",}] \t\n\r", index=index)
        return self._buf[start:self._pos]

    def _scan(self, done: object, *, in_string: bool = False, stop: str = "",
              index: int | None = None) -> Wait:
        """Moves past one value, tracking strings and nesting; streams it when asked."""
        assert callable(done)
        sent = self._pos
        depth, escaped = 0, False
        if in_string:
            self._pos += 1
        while True:
            if self._pos >= len(self._buf):
                sent = self._send(index, sent)
                if not (yield from self._need(1)):
                    return
                continue
            c = self._buf[self._pos]
            if not in_string and c in stop:
                break
            self._pos += 1
            if in_string:
                if escaped:
                    escaped = False
                elif c == "\\":
                    escaped = True
                elif c == '"':
                    in_string = False
                    if done(depth, c):
                        break
            elif c == '"':
                in_string = True
            elif c in "{[":
                depth += 1
            elif c in "}]":
                depth -= 1
                if done(depth, c):
                    break
        self._send(index, sent)

    def _send(self, index: int | None, sent: int) -> int:
        """Streams the arguments read since `sent`, less trailing blanks (they go out with
        what follows them, or never if the answer ends), and returns the new mark."""
        if index is None:
            return sent
        text = self._buf[sent:self._pos]
        solid = text.rstrip()
        if solid:
            self._events.append(CallArguments(index, solid))
        return sent + len(solid)


def _string(raw: str) -> str | None:
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, str) else None


def collect(events: Iterable[Event]) -> tuple[str, list[ToolCall]]:
    """Events gathered into the content and whole calls (unary answers, Ollama)."""
    content: list[str] = []
    calls: list[ToolCall] = []
    for event in events:
        if isinstance(event, Content):
            content.append(event.text)
        elif isinstance(event, CallStart):
            calls.append(ToolCall(event.id, event.name, ""))
        else:
            calls[event.index].arguments += event.fragment
    return "".join(content), calls


def parse_tool_calls(text: str, family: str, tools: Sequence[Tool]) -> tuple[str, list[ToolCall]]:
    """A whole answer as (content, calls); the calls' markup is never in the content."""
    stream = ToolStream(family, tools)
    return collect([*stream.feed(text), *stream.finish()])
