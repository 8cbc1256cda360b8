"""The embedding model for `build --knowledge`, run by the frozen runtime in a subprocess.

The build tool ships no llama.cpp of its own (nor asks for a compiler to build one): the runtime
package's frozen runtime, which every artifact starts with, embeds the documents in its hidden
`--embed-service` mode (runtime/embed_service.py has the protocol). Tokens, counts and vectors
are the ones an artifact's embedder gives, from the same llama.cpp with the CPU code it picks.

Whatever goes wrong in the subprocess (a GGUF it cannot load, a crash, a kill, a hang) is one
BuildError line: the child's last words from its stderr, or how it died, or how long it was
silent.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from bundler.runtime_package import ensure_runtime
from runtime.artifact.format import checksum_text, new_checksum
from runtime.artifact.manifest import Manifest, Section
from runtime.embed_service import FLAG
from runtime.errors import BuildError

EMBED_GROUP = 32  # chunks per request, and per progress update (llama.cpp batches them itself)
# A reply is at most a group of passages: seconds here (6,500 tokens/s), a minute on an old
# single core. Ten minutes of silence from a child that is still alive means it hangs.
REPLY_TIMEOUT_S = 600.0
# Prefixes the embedders we know were trained with (by a substring of general.name).
PREFIXES = {"e5": ("query: ", "passage: "),
            "nomic-embed": ("search_query: ", "search_document: ")}


@dataclass
class ChatModel:
    """The chat model the bundle will carry, for the service to write starter questions with."""

    gguf: Path  # one GGUF file (a split one is not offered)
    manifest: Manifest  # what the build will write; its weights section is the whole file


class LoadedEmbedder:
    """The embedding GGUF loaded in the runtime's llama.cpp, with its tokenizer; and, when the
    build offers one, the chat model (loaded by the service on the first `chat`)."""

    reply_timeout = REPLY_TIMEOUT_S

    def __init__(self, gguf: Path, threads: int | None, chat: ChatModel | None = None):
        self.gguf = gguf
        self._silent = False  # the watchdog ended it
        self._waiting_since: float | None = None  # when the write or read now waiting began
        self._closed = threading.Event()
        self.checksum = _checksum(gguf)  # also refuses a file that is not a GGUF, before starting
        command = [str(ensure_runtime().path), FLAG, str(gguf)]
        if threads:
            command += ["--threads", str(threads)]
        self._chat_manifest: Any = None
        if chat is not None:
            self._chat_manifest = tempfile.NamedTemporaryFile(suffix=".json")
            whole = replace(chat.manifest, sections=[Section(
                "weights", 1, 0, chat.gguf.stat().st_size, "")], knowledge=None)
            self._chat_manifest.write(whole.to_json())
            self._chat_manifest.flush()
            command += ["--chat", str(chat.gguf), "--chat-manifest", self._chat_manifest.name]
        self._stderr = tempfile.TemporaryFile()  # a file, not a pipe: the child never blocks on it
        try:
            # Its own process group: the watchdog ends the frozen runtime under PyInstaller's
            # bootloader with it (a SIGKILL to the bootloader alone would orphan it).
            self._process = subprocess.Popen(command, stdin=subprocess.PIPE,
                                             stdout=subprocess.PIPE, stderr=self._stderr,
                                             process_group=0)
        except OSError as e:
            self._stderr.close()
            raise BuildError(f"{command[0]}: cannot start the runtime to embed documents "
                             f"({e.strerror}); reinstall llamabundle-runtime") from None
        # One thread for the child's life, not one per read: chunking asks for a token count
        # per sentence, thousands of round trips.
        threading.Thread(target=self._watch, name="embedder-watchdog", daemon=True).start()
        try:
            ready = self._reply()["ready"]
        except BaseException:
            self.close()
            raise
        self.name: str = ready["name"]
        self.dims: int = ready["dims"]
        self.n_batch: int = ready["n_batch"]
        self.n_seq_max: int = ready["n_seq_max"]
        self.cpu: str = ready["cpu"]
        self.query_prefix, self.passage_prefix = next(
            (p for key, p in PREFIXES.items() if key in self.name.lower()), ("", ""))

    def counter(self) -> Callable[[str], int]:
        return lambda text: self._ask("count", [self.passage_prefix + text])["counts"][0]

    def tokens(self, text: str) -> list[int]:
        """The tokens a text is embedded as: stripped, with BOS, cut to the model's batch."""
        return list(self._ask("tokens", [text])["tokens"][0])

    def embed_passages(self, texts: list[str], advance: Callable[[int], None]) -> np.ndarray:
        out = np.zeros((len(texts), self.dims), dtype=np.float32)
        for start in range(0, len(texts), EMBED_GROUP):
            group = texts[start:start + EMBED_GROUP]
            out[start:start + len(group)] = self._embed([self.passage_prefix + t for t in group])
            advance(len(group))
        return out

    def embed_queries(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        return self._embed([self.query_prefix + t for t in texts]).tolist()

    def chat(self, messages: list[dict[str, str]], max_tokens: int) -> str:
        """The chat model's greedy answer; BuildError when there is none or it did not load."""
        return str(self._send({"op": "chat", "messages": messages,
                               "max_tokens": max_tokens})["text"])

    def close(self) -> None:
        """Ends the subprocess: the end of its stdin ends an idle one at once; one still
        embedding (the build was interrupted) is terminated, its bootloader cleaning up."""
        self._closed.set()
        process = self._process if hasattr(self, "_process") else None
        if process is not None and process.stdin is not None:
            with contextlib.suppress(OSError):
                process.stdin.close()
            if not _ended(process, 2):
                process.terminate()
                if not _ended(process, 10):
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(process.pid, signal.SIGKILL)  # the runtime under it too
                    process.wait()
            if process.stdout is not None:
                process.stdout.close()
        self._stderr.close()
        if self._chat_manifest is not None:
            self._chat_manifest.close()

    def _embed(self, texts: list[str]) -> np.ndarray:
        header = self._ask("embed", texts)
        rows, dims = header["rows"], header["dims"]
        data = self._read(rows * dims * 4)
        return np.frombuffer(data, dtype="<f4").reshape(rows, dims)

    def _ask(self, op: str, texts: list[str]) -> dict[str, Any]:
        return self._send({"op": op, "texts": texts})

    def _send(self, request: dict[str, Any]) -> dict[str, Any]:
        assert self._process.stdin is not None
        try:
            # watched too: a request larger than the pipe's buffer (64 KiB) blocks until the
            # child reads it, forever if it hangs
            with self._watchdog():
                self._process.stdin.write(json.dumps(request).encode() + b"\n")
                self._process.stdin.flush()
        except OSError:  # a broken pipe: it died (or the watchdog ended it); _died says how
            raise self._died() from None
        return self._reply()

    def _reply(self) -> dict[str, Any]:
        assert self._process.stdout is not None
        with self._watchdog():
            line = self._process.stdout.readline()
        if not line.endswith(b"\n"):
            raise self._died()
        try:
            reply: dict[str, Any] = json.loads(line)
        except ValueError:  # not the runtime we know (an older or foreign one): say so
            raise BuildError(f"the runtime embedding the documents answered {line[:80]!r}; "
                             "reinstall llamabundle-runtime") from None
        if "error" in reply:  # each names what failed (the GGUF's path when it will not load)
            raise BuildError(reply["error"])
        return reply

    def _read(self, size: int) -> bytes:
        assert self._process.stdout is not None
        with self._watchdog():
            data = self._process.stdout.read(size)
        if len(data) != size:
            raise self._died()
        return data

    @contextlib.contextmanager
    def _watchdog(self) -> Iterator[None]:
        """Around a write to the child's stdin or a read of its stdout: _watch ends the child
        if it takes longer than reply_timeout, the write or read then sees the pipe's end, and
        _died says it stopped answering."""
        self._waiting_since = time.monotonic()
        try:
            yield
        finally:
            self._waiting_since = None

    def _watch(self) -> None:
        while not self._closed.wait(1.0):
            since = self._waiting_since
            if since is not None and time.monotonic() - since > self.reply_timeout:
                self._silent = True
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self._process.pid, signal.SIGKILL)
                return

    def _died(self) -> BuildError:
        if self._silent:
            self._process.wait()
            return BuildError(f"{self.gguf}: the runtime embedding the documents stopped "
                              f"answering (nothing in {self.reply_timeout:g} s); it was ended")
        try:
            code = self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:  # stopped answering but still alive: not ours to wait
            self._process.kill()
            code = self._process.wait()
        how = (f"killed by {signal.Signals(-code).name}" if code < 0 and -code in
               signal.valid_signals() else f"exit status {code}")
        said = _last_line(self._stderr)
        return BuildError(f"{self.gguf}: the runtime embedding the documents stopped ({how})"
                          + (f": {said}" if said else ""))


def _ended(process: subprocess.Popen[bytes], seconds: float) -> bool:
    try:
        process.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        return False
    return True


def _last_line(f: Any) -> str:
    """The child's last non-empty line of stderr, without our log prefix."""
    f.seek(0)
    lines = [line.strip() for line in f.read()[-4096:].decode(errors="replace").splitlines()]
    last = next((line for line in reversed(lines) if line), "")
    return last.removeprefix("llamabundle: ")


def _checksum(path: Path) -> str:
    digest = new_checksum()
    try:
        with open(path, "rb") as f:
            if f.read(4) != b"GGUF":
                raise BuildError(f"{path}: not a GGUF file (--embedding-model takes a GGUF "
                                 "embedding model)")
            f.seek(0)
            while data := f.read(1 << 22):
                digest.update(data)
    except OSError as e:
        raise BuildError(f"{path}: cannot read ({e.strerror})") from None
    return checksum_text(digest)
