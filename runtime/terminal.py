"""`--chat`: talk to the model in this terminal, as `ollama run` does.

A conversation (`Chat`) goes through the same `Defaults.request` and engine calls as `-p` and
the HTTP dialects, so the engine reuses the KV cache of the conversation so far at each turn.
Its input comes from prompt_toolkit when stdin and stdout are a terminal (line editing, history
with the arrow keys; readline is GPL and left out of the frozen runtime), and otherwise from
the lines piped in: one answer per question, exit 0 at the end of the input.
"""

from __future__ import annotations

import contextlib
import logging
import re
import signal
import sys
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from types import FrameType
from typing import TYPE_CHECKING, TextIO

from runtime import system
from runtime.artifact.manifest import Manifest
from runtime.errors import Abandoned, ContextOverflowError, RequestError
from runtime.generation import ChatMessage, Defaults, Finish, Model, Sources
from runtime.knowledge.retrieve import cited_list
from runtime.load import load_engine
from runtime.settings import Settings

if TYPE_CHECKING:
    from prompt_toolkit import PromptSession

log = logging.getLogger("llamabundle")

# What the model and the documents write reaches the terminal as text only: an escape, carriage
# return or backspace in an answer or a source's title (a random model's, or one a document put
# there) would move the cursor or rewrite the screen; the tiny test model's once overwrote the
# statistics line. Control characters other than line breaks and tabs are left out of all that
# Chat shows (Chat.show; the conversation keeps the answer as it was).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
BLOCK = '"""'  # a question over several lines: starts and ends with three quotes, as in Ollama
HELP = f"""\
Type a message and press Enter. Commands:
  /clear          forget the conversation (the system prompt stays)
  /system TEXT    set the system prompt; /system alone shows it
  /verbose        show token counts and speed after each answer (again to hide them)
  /help           this text
  /bye            leave (so do Ctrl-D and Ctrl-C at an empty prompt twice)
Several lines: start with {BLOCK} and end with {BLOCK}, or press Alt+Enter (Esc, Enter) for a
new line. Ctrl-C stops an answer; the arrow keys edit the line and recall earlier ones."""


@dataclass
class Turn:
    """What one answer produced."""

    text: str = ""
    finish: Finish | None = None
    interrupted: bool = False
    # Knowledge bundles will yield their sources as another kind of event; they are gathered
    # here and printed compactly under the answer (see Chat._after_answer).
    extras: list[object] = field(default_factory=list)


class Chat:
    """The conversation and its commands; it knows nothing of terminals."""

    def __init__(self, model: Model, defaults: Defaults, out: TextIO):
        self.model = model
        self.defaults = defaults
        self.out = out
        self.system = defaults.system_prompt
        self.history: list[ChatMessage] = []
        self.verbose = False
        self.interrupted = False  # the last answer was stopped with Ctrl-C

    def handle(self, line: str) -> bool:
        """Answers a question or runs a command; False when the user asked to leave."""
        text = line.strip()
        if text.startswith(BLOCK):
            text = text[len(BLOCK):].removesuffix(BLOCK).strip()
        elif text.startswith("/"):
            return self.command(text)
        if text.strip():
            self.ask(text)
        return True

    def command(self, text: str) -> bool:
        name, _, arg = text.partition(" ")
        if name in ("/bye", "/exit", "/quit"):
            return False
        if name == "/clear":
            self.history.clear()
            self.say("(the conversation is forgotten)")
        elif name == "/system" and arg.strip():
            self.system = arg.strip()
            self.say("(system prompt set)")
        elif name == "/system":
            self.say(self.system or "(no system prompt)")
        elif name == "/verbose":
            self.verbose = not self.verbose
            self.say(f"(statistics {'on' if self.verbose else 'off'})")
        elif name in ("/help", "/?"):
            self.say(HELP)
        else:
            self.say(f"unknown command {name}; /help lists them")
        return True

    def ask(self, question: str) -> Turn:
        self.interrupted = False
        self.history.append(ChatMessage("user", question))
        while True:
            try:
                turn = self.stream()
                break
            except ContextOverflowError as e:
                if not self._forget_oldest_turn():
                    self.history.pop()
                    self.say(f"error: {e}")
                    return Turn()
                self.say("(the oldest exchange was dropped to fit the context)")
            except RequestError as e:
                self.history.pop()
                self.say(f"error: {e}")
                return Turn()
        # A stopped answer stays in the conversation as far as it got: what the user saw.
        self.history.append(ChatMessage("assistant", turn.text))
        self.interrupted = turn.interrupted
        self._after_answer(turn)
        return turn

    def stream(self) -> Turn:
        """Writes the answer as it comes; Ctrl-C (SIGINT) stops it within a decoder step, even
        while a long prompt is being read (no piece has come yet)."""
        messages = ([ChatMessage("system", self.system)] if self.system else []) + self.history
        request = self.defaults.request(messages=messages)
        turn, parts = Turn(), []
        with _interruptible(request.cancel):
            try:
                for event in self.model.generate(request):
                    if request.cancel.is_set():
                        break
                    if isinstance(event, str):
                        parts.append(event)
                        self.show(event)
                    elif isinstance(event, Finish):
                        turn.finish = event
                    else:
                        turn.extras.append(event)
            except Abandoned:
                pass  # Ctrl-C while the prompt was read, or between two pieces
            finally:
                request.cancel.set()  # whatever ended it: the decoder drops the sequence
            turn.interrupted = turn.finish is None
        turn.text = "".join(parts)
        self.show("\n")
        return turn

    def _after_answer(self, turn: Turn) -> None:
        for extra in turn.extras:  # a knowledge bundle's: one compact line per source
            if isinstance(extra, Sources):
                self.say("\n".join(["Sources:", *("  " + line for line in
                                                   cited_list(extra.hits))])
                         if extra.hits else "(the documents do not cover this)")
        if turn.interrupted:
            self.say("(stopped)")
        elif self.verbose and turn.finish is not None:
            self.say(_stats(turn.finish))

    def _forget_oldest_turn(self) -> bool:
        """Drops the oldest question and its answer; False if only the new question is left."""
        if len(self.history) <= 1:
            return False
        del self.history[:2]
        return True

    def say(self, text: str) -> None:
        self.show(text + "\n")

    def show(self, text: str) -> None:
        self.out.write(_CONTROL.sub("", text))
        self.out.flush()


def _stats(finish: Finish) -> str:
    seconds = finish.generation_ns / 1e9
    speed = f", {finish.completion_tokens / seconds:.1f} tokens/s" if seconds > 0 else ""
    return (f"({finish.prompt_tokens} prompt tokens, {finish.cached_tokens} reused; "
            f"{finish.completion_tokens} generated in {seconds:.2f} s{speed})")


class _interruptible:
    """While an answer is written, Ctrl-C sets the request's cancel signal instead of raising
    KeyboardInterrupt somewhere inside the decoding loop: the decoder drops the sequence at its
    next step and the reader gets Abandoned."""

    def __init__(self, cancel: threading.Event):
        self.cancel = cancel

    def __enter__(self) -> None:
        def handler(sig: int, frame: FrameType | None) -> None:
            self.cancel.set()

        self.previous = signal.signal(signal.SIGINT, handler)

    def __exit__(self, *exc: object) -> None:
        signal.signal(signal.SIGINT, self.previous)


def piped_lines(stream: Iterable[str]) -> Iterator[str]:
    """One question per line; a \"\"\" block is one question over several lines."""
    block: list[str] | None = None
    for raw in stream:
        line = raw.rstrip("\n")
        if block is None and line.strip().startswith(BLOCK):
            block = []
        if block is not None:
            block.append(line)
            if not _open_block("\n".join(block)):
                yield "\n".join(block)
                block = None
        elif line.strip():
            yield line
    if block:  # the input ended inside a block: ask what there is
        yield "\n".join(block)


def _open_block(text: str) -> bool:
    """Whether text starts a \"\"\" block that is not closed yet."""
    text = text.strip()
    return text.startswith(BLOCK) and (text == BLOCK or not text.endswith(BLOCK))


def terminal_lines(session: PromptSession[str], conversation: Chat) -> Iterator[str]:
    """Lines typed at the prompt. Ctrl-C clears a line being typed; at an empty prompt it
    leaves if the last thing was also a Ctrl-C (one that stopped an answer, or one at the
    prompt), and otherwise says how to leave. Ctrl-D leaves."""
    armed = False
    while True:
        try:
            line = session.prompt()
        except KeyboardInterrupt:
            if armed:
                return
            armed = True
            conversation.say("(Ctrl-C again or Ctrl-D to leave)")
            continue
        except EOFError:
            return
        yield line
        armed = conversation.interrupted


def new_session() -> PromptSession[str]:
    from prompt_toolkit import PromptSession
    from prompt_toolkit.filters import Condition
    from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent

    keys = KeyBindings()

    @keys.add("c-c")
    def _clear_or_leave(event: KeyPressEvent) -> None:
        buffer = event.app.current_buffer
        if buffer.text:
            buffer.reset()  # as a shell does: drop the line, stay at the prompt
        else:
            event.app.exit(exception=KeyboardInterrupt)

    @keys.add("escape", "enter")
    def _new_line(event: KeyPressEvent) -> None:
        event.current_buffer.insert_text("\n")

    in_block = Condition(lambda: _open_block(session.default_buffer.text))

    @keys.add("enter", filter=in_block)
    def _block_line(event: KeyPressEvent) -> None:
        event.current_buffer.insert_text("\n")

    session: PromptSession[str] = PromptSession(
        ">>> ", key_bindings=keys, prompt_continuation="... ",
        placeholder="Send a message (/help for help)")
    return session


def chat(artifact: str, manifest: Manifest, settings: Settings) -> int:
    engine = load_engine(artifact, manifest, settings)
    log.info("CPU code: %s", engine.cpu.describe())
    conversation = Chat(engine, Defaults.from_settings(settings), sys.stdout)
    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    if not interactive:
        return _converse(conversation, piped_lines(system.piped_text(sys.stdin)), interactive)
    with system.own_terminal(sys.stdin.fileno()):
        conversation.say(f"{manifest.title} is ready. /help for help, Ctrl-D to leave.")
        return _converse(conversation, terminal_lines(new_session(), conversation), interactive)


def _converse(conversation: Chat, lines: Iterable[str], interactive: bool) -> int:
    for line in lines:
        with _no_echo(sys.stdin):
            if not conversation.handle(line):
                break
        if conversation.interrupted and not interactive:
            return 130  # Ctrl-C in a pipeline stops all of it, as in any filter
    return 0


@contextlib.contextmanager
def _no_echo(stdin: TextIO) -> Iterator[None]:
    """While an answer is written, what the user types is not echoed into it; it waits for
    the next prompt instead (type-ahead, as in a shell). Ctrl-C still interrupts."""
    if not stdin.isatty():
        yield
        return
    with system.no_echo(stdin.fileno()):
        yield
