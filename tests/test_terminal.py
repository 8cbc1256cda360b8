"""`--chat`, the terminal chat: in a real terminal (tmux) against real artifacts, with piped
stdin, and its conversation logic against the fake engine. Also llamafile's flags."""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from fake import FakeEngine
from tmux import Terminal

from runtime.errors import Abandoned, ContextOverflowError
from runtime.generation import Defaults, Event, Finish, GenerationRequest, Sampling, Sources
from runtime.knowledge.passage import Hit, Passage
from runtime.terminal import HELP, Chat, piped_lines

STATS = r"\((\d+) prompt tokens, (\d+) reused; (\d+) generated"
READY = r"(?m)^>>> Send a message"  # the prompt, empty, waiting for keys
VERBOSE_READY = r"\(statistics on\)\n>>> Send a message"  # /verbose done, the prompt back


def leave_with_ctrl_d(t: Terminal) -> None:
    # Only at the prompt: a Ctrl-D typed while the answer ends is read by no one.
    t.wait_for_last_line(READY)
    t.send("C-d")
    t.wait_for("EXIT=0")


# The conversation, against the fake engine


def chat_with(engine: FakeEngine, system: str = "Be terse.") -> tuple[Chat, io.StringIO]:
    out = io.StringIO()
    return Chat(engine, Defaults(Sampling(), 3, system), out), out


def test_the_conversation_grows_turn_by_turn_with_the_system_prompt_first():
    engine = FakeEngine(delay=0)
    chat, out = chat_with(engine)
    chat.handle("hello")
    chat.handle("and then?")
    messages = engine.requests[-1].messages
    assert messages is not None
    assert [(m.role, m.content) for m in messages] == [
        ("system", "Be terse."), ("user", "hello"), ("assistant", "w0 w1 w2 "),
        ("user", "and then?")]
    assert engine.requests[-1].max_tokens == 3  # the bundle's defaults, through Defaults
    assert out.getvalue() == "w0 w1 w2 \n" * 2


def test_control_characters_in_an_answer_never_reach_the_terminal():
    """An escape sequence, a carriage return or a backspace would rewrite the user's screen."""
    engine = FakeEngine(delay=0, script=["\x1b[2J\x1b]0;pwned\x07Hi", "\r\x08 there\n\tok\x9b",
                                         Finish("stop", 3, 2, 0)])
    chat, out = chat_with(engine)
    chat.handle("hello")
    assert out.getvalue() == "[2J]0;pwnedHi there\n\tok\n"
    assert chat.history[-1].content == "\x1b[2J\x1b]0;pwned\x07Hi\r\x08 there\n\tok\x9b"


def test_control_characters_in_a_source_never_reach_the_terminal():
    """A document's path or headings are shown too, and a document can hold escapes."""
    hit = Hit(Passage("notes\x1b[2J.md", "Notes", "Install \x1b]0;pwned\x07› Linux", "text"), 1.0)
    engine = FakeEngine(delay=0, script=[Sources((hit,)), "Hi", Finish("stop", 3, 1, 0)])
    chat, out = chat_with(engine)
    chat.handle("hello")
    assert out.getvalue() == "Hi\nSources:\n  [1] notes[2J.md — Install ]0;pwned› Linux\n"


def test_system_clear_and_help_commands():
    engine = FakeEngine(delay=0)
    chat, out = chat_with(engine)
    chat.handle("hello")
    chat.handle("/system You speak French.")
    chat.handle("/clear")
    chat.handle("bonjour")
    messages = engine.requests[-1].messages
    assert messages is not None
    assert [(m.role, m.content) for m in messages] == [
        ("system", "You speak French."), ("user", "bonjour")]
    chat.handle("/system")
    chat.handle("/help")
    chat.handle("/nope")
    text = out.getvalue()
    assert "(system prompt set)" in text and "(the conversation is forgotten)" in text
    assert "You speak French.\n" in text and HELP in text
    assert "unknown command /nope; /help lists them" in text
    assert chat.handle("/bye") is False


def test_a_block_is_one_question_without_its_quotes():
    engine = FakeEngine(delay=0)
    chat, _ = chat_with(engine)
    chat.handle('"""\nfirst line\nsecond line\n"""')
    messages = engine.requests[-1].messages
    assert messages is not None and messages[-1].content == "first line\nsecond line"


def test_ctrl_c_stops_the_answer_at_the_next_piece_and_keeps_the_chat():
    class Interrupted(FakeEngine):
        def _words(self, request: GenerationRequest) -> Iterator[Event]:
            for i, word in enumerate(super()._words(request)):
                if i == 2 and len(self.requests) == 1:  # Ctrl-C during the first answer
                    os.kill(os.getpid(), signal.SIGINT)
                yield word

    engine = Interrupted(delay=0.01)
    chat, out = chat_with(engine)
    chat.defaults = Defaults(Sampling(), 50, "")
    handler = signal.getsignal(signal.SIGINT)
    turn = chat.ask("count")
    assert turn.interrupted and turn.text == "w0 w1 "
    assert engine.closed == 1 and engine.produced < 5  # the generation was closed, not drained
    assert out.getvalue() == "w0 w1 \n(stopped)\n"
    assert chat.interrupted
    assert signal.getsignal(signal.SIGINT) is handler  # Ctrl-C raises again at the prompt
    chat.handle("go on")
    assert not chat.interrupted
    messages = engine.requests[-1].messages
    assert messages is not None and messages[-2].content == "w0 w1 "  # what the user saw


def test_ctrl_c_stops_a_long_prompt_evaluation_before_the_first_piece():
    """No piece comes while a long prompt is read, so a flag checked at each piece was never
    looked at: Ctrl-C sets the request's cancel signal, which the decoder obeys within a step
    (this engine reads its "prompt" for 5 s, obeying it as the decoder does)."""
    class SlowPrompt(FakeEngine):
        def _words(self, request: GenerationRequest) -> Iterator[Event]:
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                if request.cancel.is_set():
                    raise Abandoned("the request was abandoned")
                time.sleep(0.01)
            yield from super()._words(request)

    engine = SlowPrompt(delay=0.01)
    chat, out = chat_with(engine)
    threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()
    started = time.monotonic()
    turn = chat.ask("a question after a long document")
    assert time.monotonic() - started < 2
    assert turn.interrupted and turn.text == "" and engine.produced == 0
    assert out.getvalue() == "\n(stopped)\n"
    chat.handle("go on")  # the chat goes on
    assert not chat.interrupted


def test_a_conversation_too_long_for_the_context_forgets_its_oldest_exchange():
    class Small(FakeEngine):
        def generate(self, request: GenerationRequest) -> Iterator[Event]:
            if request.messages is not None and len(request.messages) > 4:
                raise ContextOverflowError("too long")
            return super().generate(request)

    engine = Small(delay=0)
    chat, out = chat_with(engine, system="")
    for question in ("one", "two", "three"):
        chat.handle(question)
    assert "(the oldest exchange was dropped to fit the context)" in out.getvalue()
    assert [m.content for m in chat.history] == ["two", "w0 w1 w2 ", "three", "w0 w1 w2 "]


def test_piped_lines_are_questions_and_blocks_span_lines():
    lines = io.StringIO('hello\n\n  \n"""\na\n\nb\n"""\nlast\n"""\nunfinished\n')
    assert list(piped_lines(lines)) == ["hello", '"""\na\n\nb\n"""', "last",
                                        '"""\nunfinished']


def test_piped_text_on_windows_is_utf8_with_the_ansi_code_page_as_fallback(monkeypatch):
    """(The .exe reading a UTF-8 file through a pipe: test_windows.py.)"""
    import locale

    from runtime import system

    monkeypatch.setattr(system, "WINDOWS", True)
    monkeypatch.setattr(locale, "getpreferredencoding", lambda do_setlocale=True: "cp1252")
    raw = b"\xef\xbb\xbf\xe6\xb0\xb4\xe7\xae\xb1?\r\ncaf\xe9 au lait\r\n\"\"\"\r\n"
    stdin = io.TextIOWrapper(io.BytesIO(raw), encoding="cp1252")
    assert list(system.piped_text(stdin)) == ["水箱?\n", "café au lait\n", '"""\n']


# In a real terminal


@pytest.fixture
def terminal() -> Iterator[type[Terminal]]:
    opened: list[Terminal] = []

    class Opened(Terminal):
        def __init__(self, *args: object, **kwargs: object):
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]
            opened.append(self)

    yield Opened
    for t in opened:
        t.close()


def verbose_chat(terminal, artifact, *args: str):
    """`artifact --chat ARGS` with /verbose on and its prompt back: keys typed before the
    prompt is redrawn would race its drawing."""
    t = terminal([str(artifact), "--chat", *args])
    t.wait_for(READY)
    t.type("/verbose")
    t.send("Enter")
    t.wait_for(VERBOSE_READY)
    return t


def stats(screen: str) -> list[tuple[int, int, int]]:
    return [tuple(map(int, m)) for m in re.findall(STATS, screen)]  # type: ignore[misc]


@pytest.mark.usefixtures("built")
def test_chat_streams_answers_recalls_history_and_reuses_the_cache(tiny_artifact, terminal):
    t = verbose_chat(terminal, tiny_artifact, "-n", "8")
    t.wait_for("Tiny Test is ready. /help for help, Ctrl-D to leave.")
    t.type("hello there")
    t.send("Enter")
    screen = t.wait_for(STATS)
    answer = screen.split(">>> hello there\n", 1)[1].split("\n(", 1)[0]
    assert answer.strip()  # the model's words, between the question and the statistics
    t.send("Up")
    t.wait_for(r"(?m)^>>> hello there$", count=2)  # recalled onto the new prompt
    t.send("Enter")
    first, second = stats(t.wait_for(STATS, count=2))
    assert second[0] > first[0]  # the whole conversation is the prompt...
    assert second[1] >= first[0]  # ...and the first turn's tokens came from the KV cache
    leave_with_ctrl_d(t)


@pytest.mark.usefixtures("built")
def test_chat_edits_chinese_input_and_sends_it(tiny_artifact, terminal):
    t = verbose_chat(terminal, tiny_artifact, "-n", "4")
    t.type("你好世界")
    t.send("Left", "Left")
    t.type("大")
    t.wait_for(r"(?m)^>>> 你好大世界$")  # wide characters: the cursor moved by characters
    t.send("Enter")
    t.wait_for(STATS)
    leave_with_ctrl_d(t)


@pytest.mark.usefixtures("built")
def test_a_triple_quote_block_and_alt_enter_each_make_one_question(tiny_artifact, terminal):
    t = verbose_chat(terminal, tiny_artifact, "-n", "4")
    t.type('"""')
    t.send("Enter")
    t.type("line one")
    t.send("Enter")
    t.type('line two"""')
    t.send("Enter")
    screen = t.wait_for(STATS)
    assert '>>> """\n... line one\n... line two"""\n' in screen
    t.type("first")
    t.send("M-Enter")
    t.type("second")
    t.send("Enter")
    screen = t.wait_for(STATS, count=2)
    assert ">>> first\n... second\n" in screen
    assert len(stats(screen)) == 2  # two questions, two answers


@pytest.mark.usefixtures("built")
def test_ctrl_c_clears_the_line_and_twice_at_an_empty_prompt_leaves(tiny_artifact, terminal):
    t = terminal([str(tiny_artifact), "--chat"])
    t.wait_for(READY)
    t.type("half a thought")
    t.wait_for(r"(?m)^>>> half a thought$")
    t.send("C-c")
    t.wait_for(r"(?m)^>>> Send a message")
    assert "half a thought" not in t.prompt_line() and "EXIT" not in t.screen()
    t.send("C-c")
    t.wait_for(r"\(Ctrl-C again or Ctrl-D to leave\)")
    t.send("C-c")
    t.wait_for("EXIT=0")


@pytest.mark.usefixtures("built")
def test_piped_questions_get_one_answer_each_and_exit_0(tiny_artifact):
    questions = '/verbose\nhello\n\nthe cat\n"""\nsat on\nthe mat\n"""\n'
    proc = subprocess.run([str(tiny_artifact), "--chat", "-n", "5"], input=questions,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("(statistics on)\n")
    assert len(stats(proc.stdout)) == 3
    assert ">>>" not in proc.stdout and "ready" not in proc.stdout  # no prompts in a pipe


@pytest.mark.slow
def test_a_real_instruct_model_answers_in_english_and_chinese_and_stops_on_ctrl_c(
        instruct_gguf, tmp_path, terminal, shared_cache, built):
    from conftest import build_cli

    artifact = tmp_path / "qwen.llamabundle"
    build_cli(instruct_gguf, "-o", artifact, cache=shared_cache)
    t = terminal([str(artifact), "--chat", "--temp", "0", "-c", "2048"])
    t.wait_for(READY, timeout=120)
    t.type("What is the capital of France? Answer with one word.")
    t.send("Enter")
    t.wait_for(r"(?m)^Paris", timeout=120)
    t.type("法国的首都是哪里？请用中文回答。")
    t.send("Enter")
    t.wait_for("巴黎", timeout=120)
    t.type("Write a long story about a cat, at least 1000 words.")
    t.send("Enter")
    t.wait_for(r">>> Write a long story[^\n]*\n[^\n]{10}", timeout=120)
    t.send("C-c")
    t.wait_for(r"\(stopped\)")
    t.type("What is the capital of Germany? Answer with one word.")
    t.send("Enter")
    t.wait_for(r"(?m)^Berlin", timeout=120)  # the chat went on
    leave_with_ctrl_d(t)


@pytest.mark.slow
def test_a_ctrl_c_reaches_the_chat_once_however_late_the_launcher_runs(demo_artifact,
                                                                        terminal):
    """The artifact is PyInstaller's bootloader, which runs the runtime as its child and
    forwards every signal it gets. A Ctrl-C typed in the terminal used to reach both, so the
    chat got a second one as late as the bootloader was scheduled: on a busy machine, after
    the answer it stopped had ended, where it quit the chat. The bootloader is held stopped
    here (a very busy machine) while Ctrl-C stops an answer, then let go."""
    t = terminal([str(demo_artifact), "--chat"])
    t.wait_for(READY, timeout=120)
    launcher = t.launched()
    t.type("Write a long story about a dragon.")
    t.send("Enter")
    t.wait_for(r">>> Write a long story[^\n]*\n[^\n]{10}", timeout=120)
    os.kill(launcher, signal.SIGSTOP)
    try:
        t.send("C-c")
        t.wait_for(r"\(stopped\)\n>>> ")
    finally:
        os.kill(launcher, signal.SIGCONT)
    time.sleep(2)  # a forwarded Ctrl-C would have come by now
    assert "EXIT" not in t.screen() and "(Ctrl-C again" not in t.screen()
    leave_with_ctrl_d(t)


@pytest.mark.slow
def test_ctrl_c_stops_a_long_prompt_evaluation_in_a_real_terminal(demo_artifact, terminal,
                                                                   monkeypatch):
    """The demo model reads a system prompt of some 5,500 tokens for many seconds before its
    first piece; Ctrl-C stops it within a decoder step (a 512-token chunk), not after."""
    system = " ".join(f"Rule {i}: answer politely and keep to the point." for i in range(400))
    monkeypatch.setenv("LLAMABUNDLE_SYSTEM_PROMPT", system)  # too long for tmux's command line
    t = terminal([str(demo_artifact), "--chat", "-c", "8192"])
    t.wait_for(READY, timeout=120)
    t.type("Summarise the rules.")
    t.send("Enter")
    # Once the prompt has given the terminal back (on a busy machine that can take a while; a
    # Ctrl-C sent before would be a key typed ahead for the next prompt, not a signal), and
    # well inside the prompt's evaluation.
    t.wait_until_answering()
    time.sleep(1.5)
    assert "(stopped)" not in t.screen()
    sent = time.monotonic()
    t.send("C-c")
    t.wait_for(r"\(stopped\)", timeout=60)
    assert time.monotonic() - sent < 4, time.monotonic() - sent
    leave_with_ctrl_d(t)


# llamafile's flags


@pytest.mark.usefixtures("built")
def test_llamafile_server_and_ngl_flags_serve_as_usual(tiny_artifact, serve):
    server = serve(tiny_artifact, "--server", "-ngl", "35", "--embedding")
    assert httpx.get(server.url + "/v1/models").json()["data"][0]["id"] == "tiny"
    log = server.stop()
    assert "-ngl 35: this build runs on the CPU; the flag is ignored" in log


@pytest.mark.usefixtures("built")
@pytest.mark.parametrize("args, message", [
    (["-m", "other.gguf"], "-m other.gguf: this artifact carries its own model (Tiny Test); "
                           "run it without -m"),
    (["--chat", "-p", "hi"], "--chat and -p cannot be used together; pick one"),
    (["--server", "--chat"], "--chat and --server cannot be used together; pick one"),
])
def test_contradictory_flags_are_one_line_and_exit_2(tiny_artifact, args, message):
    proc = subprocess.run([str(tiny_artifact), *args], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"llamabundle: {message}"


@pytest.mark.usefixtures("built")
def test_licenses_prints_the_notices_of_everything_the_runtime_carries(tiny_artifact):
    proc = subprocess.run([str(tiny_artifact), "--licenses"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0
    for notice in ("CPython.txt", "llama.cpp-LICENSE", "prompt_toolkit-LICENSE",
                   "wcwidth-LICENSE", "fastapi-LICENSE", "prometheus_client-NOTICE",
                   "debian-libssl1.1-copyright"):
        assert f"== {notice}" in proc.stdout, notice
    assert "Redistribution and use in source and binary forms" in proc.stdout

