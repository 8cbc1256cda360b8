"""The build tool's embedder: the frozen runtime run as `RUNTIME --embed-service EMB.gguf
[--threads N]` (a hidden mode, not in --help), so that `build --knowledge` embeds documents with
the llama.cpp the runtime package ships, its CPU variants chosen as an artifact's are, and the
build tool needs no llama.cpp (nor a compiler) of its own. bundler/knowledge/service.py drives it.

One JSON line in, one JSON line out, in order, over stdin/stdout:

    (on start)                              -> {"ready": {"name", "dims", "n_batch",
                                                           "n_seq_max", "cpu"}}
    {"op": "count", "texts": [...]}         -> {"counts": [n, ...]}
    {"op": "tokens", "texts": [...]}        -> {"tokens": [[id, ...], ...]}
    {"op": "embed", "texts": [...]}         -> {"rows": R, "dims": D} + R*D float32 (little-endian)
    {"op": "chat", "messages": [{"role", "content"}, ...], "max_tokens": N}
                                            -> {"text": "..."}

`chat` answers with the chat model named by `--chat CHAT.gguf --chat-manifest M.json` (a plain
GGUF and the manifest the build is about to write, its weights section at offset 0), through the
runtime's own engine: its template, stops and sampling (greedy, so a build is repeatable). The
build writes a knowledge bundle's starter questions with it. The model loads on the first
`chat`; one that does not load answers that error to every `chat`, and embedding goes on.

Texts are tokenized as the knowledge index needs (stripped, BOS added, special tokens as text,
cut to the embedder's n_batch keeping the last token); vectors are pooled and L2-normalised, and
follow their header as raw bytes. A request that fails answers {"error": "..."} and the service
goes on; a model that does not load answers that as its first line and exits 1. End of stdin
ends it (exit 0): a build that stops, for any reason, stops its embedder.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import struct
import sys
from collections.abc import Sequence
from typing import Any, BinaryIO

from runtime.errors import LlamabundleError

FLAG = "--embed-service"
N_SEQ_MAX = 16  # sequences per decode: a knowledge build embeds thousands of short chunks

log = logging.getLogger(__name__)


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog=f"runtime {FLAG}")
    parser.add_argument("gguf")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--chat", default=None)
    parser.add_argument("--chat-manifest", default=None)
    args = parser.parse_args(argv)
    # Ctrl-C in the builder's terminal reaches us too: the build tool handles it, and ends us
    # by closing our stdin (a traceback here would only race its own message).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The answers own stdout: anything else that writes to fd 1 (llama.cpp's C code) goes to
    # stderr, where the build tool keeps it for its error message.
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    try:
        service = _Service(args.gguf, args.threads, args.chat, args.chat_manifest)
    except LlamabundleError as e:
        _send(out, {"error": str(e)})
        return 1
    try:
        _send(out, {"ready": service.describe()})
        for line in sys.stdin.buffer:
            service.answer(line, out)
    except BrokenPipeError:  # the build tool went away: nothing left to answer
        pass
    finally:
        service.close()
    return 0


class _Service:
    def __init__(self, gguf: str, threads: int | None, chat: str | None = None,
                 chat_manifest: str | None = None):
        from runtime.llama import cpu  # imports llama.cpp
        from runtime.llama.bindings import llama_cpp
        from runtime.llama.embedder import (
            N_EMBED_CTX,
            Embedder,
            load_embedding_model,
            model_meta,
        )
        from runtime.llama.model import Tokenizer, physical_cores

        self.cpu = cpu.load()
        llama_cpp.llama_backend_init()
        self.model = load_embedding_model(gguf)
        self.name = model_meta(self.model, "general.name") or os.path.splitext(
            os.path.basename(gguf))[0]
        self.tokenizer = Tokenizer(self.model)
        self.embedder = Embedder(self.model, threads or physical_cores(), n_batch=N_EMBED_CTX,
                                 n_seq_max=N_SEQ_MAX, own_pooling=True)
        self.chat = _Chat(chat, chat_manifest, threads) if chat and chat_manifest else None

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "dims": self.embedder.n_embd,
                "n_batch": self.embedder.n_batch, "n_seq_max": self.embedder.n_seq_max,
                "cpu": self.cpu.describe()}

    def tokens(self, text: str) -> list[int]:
        # special=False: a document that contains "</s>" is text, not a control token
        tokens = self.tokenizer.tokenize(text.strip(), add_bos=True, special=False)
        limit = self.embedder.n_batch
        return tokens if len(tokens) <= limit else tokens[:limit - 1] + tokens[-1:]  # keep EOS

    def answer(self, line: bytes, out: BinaryIO) -> None:
        try:
            request = json.loads(line)
            op, texts = request["op"], request.get("texts", [])
            if op == "count":
                _send(out, {"counts": [len(self.tokens(t)) for t in texts]})
            elif op == "tokens":
                _send(out, {"tokens": [self.tokens(t) for t in texts]})
            elif op == "embed":
                vectors = self.embedder.embed_many([self.tokens(t) for t in texts])
                dims = self.embedder.n_embd
                data = b"".join(struct.pack(f"<{dims}f", *v) for v in vectors)
                _send(out, {"rows": len(vectors), "dims": dims}, data)
            elif op == "chat":
                if self.chat is None:
                    raise LlamabundleError("no chat model (start the service with --chat)")
                _send(out, {"text": self.chat.answer(request["messages"],
                                                     int(request["max_tokens"]))})
            else:
                _send(out, {"error": f"unknown op {op!r}"})
        except LlamabundleError as e:
            _send(out, {"error": str(e)})
        except (ValueError, KeyError, TypeError) as e:  # a malformed request: ours, not the user's
            _send(out, {"error": f"bad request: {type(e).__name__}: {e}"})

    def close(self) -> None:
        from runtime.llama.bindings import llama_cpp

        self.embedder.close()
        llama_cpp.llama_model_free(self.model)


class _Chat:
    """The chat model, loaded on first use, answering one chat at a time."""

    CTX_SIZE = 2048  # a passage and a short answer; a small KV cache whatever the model

    def __init__(self, gguf: str, manifest: str, threads: int | None):
        self.gguf, self.manifest, self.threads = gguf, manifest, threads
        self.engine: Any = None
        self.error: str | None = None

    def answer(self, messages: list[dict[str, str]], max_tokens: int) -> str:
        from runtime.generation import ChatMessage, GenerationRequest, Sampling

        engine = self._load()
        request = GenerationRequest(
            messages=tuple(ChatMessage(m["role"], m["content"]) for m in messages),
            sampling=Sampling(temperature=0.0, seed=0), max_tokens=max_tokens, knowledge=False)
        return "".join(e for e in engine.generate(request) if isinstance(e, str))  # the text

    def _load(self) -> Any:
        from runtime.artifact.manifest import Manifest
        from runtime.engine import Engine
        from runtime.settings import resolve

        if self.error is not None:
            raise LlamabundleError(self.error)
        if self.engine is None:
            try:
                with open(self.manifest, "rb") as f:
                    manifest = Manifest.from_json(f.read())
                given = {"ctx_size": self.CTX_SIZE} | ({"threads": self.threads}
                                                       if self.threads else {})
                self.engine = Engine.load(self.gguf, manifest, resolve({}, given, environ={}))
            except (LlamabundleError, OSError, ValueError) as e:
                self.error = f"{self.gguf}: the chat model did not load ({e})"
                raise LlamabundleError(self.error) from None
        return self.engine


def _send(out: BinaryIO, header: dict[str, Any], data: bytes = b"") -> None:
    out.write(json.dumps(header, ensure_ascii=False).encode() + b"\n" + data)
    out.flush()
