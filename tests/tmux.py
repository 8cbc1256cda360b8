"""A real terminal for tests: a program run in tmux (on a private server socket), keys sent
with send-keys, the screen read with capture-pane."""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import shlex
import subprocess
import time
from collections.abc import Sequence

_names = itertools.count()


class Terminal:
    def __init__(self, argv: Sequence[str], width: int = 120, height: int = 50):
        # A tmux server of its own: with one shared server, a session started just as the last
        # one closed could meet the server on its way out ("new-session" exit status 1).
        self.name = f"t{next(_names)}"
        self.socket = f"llamabundle-test-{os.getpid()}-{self.name}"
        # The shell prints the exit code and stays, so the screen can still be read after.
        command = f"{shlex.join(argv)}; echo EXIT=$?; sleep 600"
        self._tmux("new-session", "-d", "-s", self.name, "-x", str(width), "-y", str(height),
                   command)

    def _tmux(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True,
                              text=True, check=True).stdout

    def send(self, *keys: str, literal: bool = False) -> None:
        """tmux key names (Enter, C-c, Up, M-Enter) or, with literal, text as typed."""
        self._tmux("send-keys", "-t", self.name, *(["-l"] if literal else []), *keys)

    def type(self, text: str) -> None:
        self.send(text, literal=True)

    def screen(self) -> str:
        """What the terminal shows, wrapped lines joined, trailing blanks dropped."""
        text = self._tmux("capture-pane", "-p", "-J", "-S", "-500", "-t", self.name)
        return "\n".join(line.rstrip() for line in text.splitlines())

    def wait_for(self, pattern: str, timeout: float = 60, count: int = 1) -> str:
        """The screen once `pattern` (a regex) shows up `count` times in it."""
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if len(re.findall(pattern, screen)) >= count:
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"{pattern!r} (x{count}) never showed up; the screen:\n"
                                     f"{screen}")
            time.sleep(0.1)

    def wait_for_last_line(self, pattern: str, timeout: float = 60) -> str:
        """The screen once its last non-blank line matches `pattern` (a regex)."""
        return self.wait_for(pattern + r"[^\n]*\n*\Z", timeout)

    def prompt_line(self) -> str:
        """The last line that starts with the prompt."""
        return [line for line in self.screen().splitlines() if line.startswith(">>>")][-1]

    def launched(self) -> int:
        """The pid of the program started in the terminal (the pane's shell's child)."""
        shell = self._tmux("list-panes", "-t", self.name, "-F", "#{pane_pid}").strip()
        with open(f"/proc/{shell}/task/{shell}/children") as f:
            return int(f.read().split()[0])

    def wait_until_answering(self, timeout: float = 60) -> None:
        """Until the chat writes an answer: the terminal is back in line mode with its echo
        off, so a key typed now is a signal, not input for the prompt."""
        tty = self._tmux("list-panes", "-t", self.name, "-F", "#{pane_tty}").strip()
        deadline = time.monotonic() + timeout
        while True:
            modes = subprocess.run(["stty", "-F", tty, "-a"], capture_output=True, text=True,
                                   check=True).stdout.split()
            if "icanon" in modes and "-echo" in modes:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"the chat never started an answer: {modes}")
            time.sleep(0.05)

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True)
        folder = os.path.join(os.environ.get("TMUX_TMPDIR", "/tmp"), f"tmux-{os.getuid()}")
        with contextlib.suppress(OSError):  # tmux leaves its socket file behind
            os.unlink(os.path.join(folder, self.socket))
