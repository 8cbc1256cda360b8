"""`build --knowledge` embeds with the frozen runtime run as a subprocess (`RUNTIME
--embed-service EMB.gguf`): the same tokens and vectors as llama.cpp in-process, and every
failure of the subprocess one BuildError line, never a traceback or a hang."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from bundler.knowledge.embedder import default_embedder
from bundler.knowledge.service import LoadedEmbedder
from runtime.errors import BuildError

DOCS = Path(__file__).parent / "data" / "knowledge" / "docs"
TEXTS = ["How do I reset the router to its factory settings?",
         "保修期为自购买之日起十八个月。",
         "A document that says </s> and <s> means the text, not control tokens.",
         "   padded with spaces and a newline\n",
         "长文本。" * 400]  # over the embedder's 512 tokens: cut, keeping the last token


@pytest.fixture(scope="module")
def e5_gguf(shared_cache: Path) -> Path:
    os.environ["XDG_CACHE_HOME"] = str(shared_cache)  # as the autouse fixture does, per test
    return default_embedder()


@pytest.fixture(scope="module")
def service(e5_gguf: Path, built: None):  # noqa: ANN201
    embedder = LoadedEmbedder(e5_gguf, threads=2)
    yield embedder
    embedder.close()


def test_tokens_and_vectors_equal_llama_cpp_in_process(service, e5_gguf: Path) -> None:  # noqa: ANN001
    from runtime.llama import cpu
    from runtime.llama.bindings import llama_cpp
    from runtime.llama.embedder import Embedder, load_embedding_model
    from runtime.llama.model import Tokenizer

    cpu.load()
    llama_cpp.llama_backend_init()
    model = load_embedding_model(str(e5_gguf))
    tokenizer = Tokenizer(model)
    embedder = Embedder(model, 2, n_batch=512, n_seq_max=16, own_pooling=True)
    try:
        passages = [service.passage_prefix + t for t in TEXTS]
        expected = [tokenizer.tokenize(t.strip(), add_bos=True, special=False) for t in passages]
        expected = [t if len(t) <= 512 else t[:511] + t[-1:] for t in expected]
        assert [service.tokens(t) for t in passages] == expected
        assert [service.counter()(t) for t in TEXTS] == [len(t) for t in expected]
        assert len(expected[-1]) == 512 and expected[-1][-1] == expected[0][-1]  # EOS kept

        ours = service.embed_passages(TEXTS, lambda n: None)
        theirs = np.asarray(embedder.embed_many(expected), dtype=np.float32)
        assert ours.shape == (len(TEXTS), 384) and ours.dtype == np.float32
        np.testing.assert_allclose(ours, theirs, atol=1e-5)

        queries = service.embed_queries(["保修期多久？", "router reset"])
        alone = embedder.embed_many([tokenizer.tokenize("query: 保修期多久？", True, False),
                                     tokenizer.tokenize("query: router reset", True, False)])
        np.testing.assert_allclose(np.asarray(queries), np.asarray(alone), atol=1e-5)
    finally:
        embedder.close()
        llama_cpp.llama_model_free(model)


def test_the_service_describes_the_model_and_the_cpu_code(service, tiny_artifact) -> None:  # noqa: ANN001
    assert service.name == "multilingual-e5-small"
    assert (service.query_prefix, service.passage_prefix) == ("query: ", "passage: ")
    assert service.dims == 384 and service.n_batch == 512
    assert service.embed_queries([]) == []
    # llama.cpp's CPU code is chosen as an artifact's is: the same variant here
    info = json.loads(subprocess.run([str(tiny_artifact), "--info"], capture_output=True,
                                     text=True, timeout=120, check=True).stdout)
    cpu = info["cpu"]
    assert service.cpu == f"{cpu['variant']} ({' '.join(cpu['features']) or 'baseline x86-64'})"


def test_a_gguf_llama_cpp_cannot_load_is_one_line(tmp_path: Path, built: None) -> None:
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\xff" * 64)
    with pytest.raises(BuildError) as caught:
        LoadedEmbedder(bad, threads=1)
    assert str(caught.value) == f"{bad}: llama.cpp could not load it as a GGUF embedding model"


@pytest.mark.parametrize("whom", ["bootloader", "runtime"])
def test_an_embedder_that_dies_is_one_line_not_a_hang(e5_gguf: Path, built: None,
                                                       whom: str) -> None:
    """Killed from outside (the OOM killer, a user): the PyInstaller bootloader, or the frozen
    Python under it (its child): the next request says the embedder stopped."""
    embedder = LoadedEmbedder(e5_gguf, threads=1)
    try:
        pid = embedder._process.pid
        if whom == "runtime":
            pid = int(Path(f"/proc/{pid}/task/{pid}/children").read_text().split()[0])
        os.kill(pid, signal.SIGKILL)
        started = time.monotonic()
        with pytest.raises(BuildError, match=r"the runtime embedding the documents stopped \("):
            embedder.embed_passages(["hello"] * 40, lambda n: None)
        assert time.monotonic() - started < 30
    finally:
        embedder.close()


def test_an_embedder_that_hangs_is_ended_and_one_line(e5_gguf: Path, built: None) -> None:
    """Alive but silent (stopped here, as a deadlock or a swapping machine would leave it):
    the watchdog ends the whole child, the runtime under the bootloader included."""
    embedder = LoadedEmbedder(e5_gguf, threads=1)
    embedder.reply_timeout = 2
    try:
        bootloader = embedder._process.pid
        runtime = int(Path(f"/proc/{bootloader}/task/{bootloader}/children").read_text().split()[0])
        os.kill(runtime, signal.SIGSTOP)
        started = time.monotonic()
        with pytest.raises(BuildError) as caught:
            embedder.embed_passages(["hello"] * 40, lambda n: None)
        assert time.monotonic() - started < 30
        assert str(caught.value) == (f"{e5_gguf}: the runtime embedding the documents stopped "
                                     "answering (nothing in 2 s); it was ended")
    finally:
        embedder.close()
    deadline = time.monotonic() + 10
    while _alive(runtime) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(runtime)


def test_an_embedder_that_hangs_while_sent_a_large_request_is_ended_too(
        e5_gguf: Path, built: None) -> None:
    """A request larger than the pipe's buffer blocks its write until the child reads: a
    stopped child must not hold the build there either."""
    embedder = LoadedEmbedder(e5_gguf, threads=1)
    embedder.reply_timeout = 2
    bootloader = embedder._process.pid
    runtime = int(Path(f"/proc/{bootloader}/task/{bootloader}/children").read_text().split()[0])
    os.kill(runtime, signal.SIGSTOP)
    caught: list[BaseException] = []

    def embed() -> None:
        try:
            embedder.embed_passages(["many words " * 20_000], lambda n: None)  # 220 kB
        except BaseException as e:  # noqa: BLE001 -- handed to the test's thread
            caught.append(e)

    writer = threading.Thread(target=embed, daemon=True)
    writer.start()
    writer.join(30)
    try:
        assert not writer.is_alive(), "the write to a stopped embedder blocked the build"
        assert len(caught) == 1 and isinstance(caught[0], BuildError)
        assert "stopped answering (nothing in 2 s); it was ended" in str(caught[0])
    finally:
        with contextlib.suppress(ProcessLookupError):  # unblocks the write if it hangs
            os.killpg(bootloader, signal.SIGKILL)
        writer.join(10)
        embedder.close()


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "State:\tZ" not in status  # a zombie has ended; its new parent reaps it


def test_a_build_whose_embedder_cannot_load_stops_with_one_line(
        tiny_gguf: Path, tmp_path: Path, shared_cache: Path, built: None) -> None:
    bad = tmp_path / "emb.gguf"
    bad.write_bytes(b"GGUF" + b"\x03\x00\x00\x00" + b"\x00" * 8)  # a header, then nothing
    out = tmp_path / "out" / "kb.llamabundle"
    out.parent.mkdir()
    proc = subprocess.run([sys.executable, "-m", "bundler", "build", str(tiny_gguf),
                           "--knowledge", str(DOCS / "en" / "warranty.txt"),
                           "--embedding-model", str(bad), "-o", str(out)],
                          capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, XDG_CACHE_HOME=str(shared_cache)))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        f"Error: {bad}: llama.cpp could not load it as a GGUF embedding model")
    assert list(out.parent.iterdir()) == []  # no artifact, no temporary file


def test_the_artifact_help_does_not_show_the_build_tools_mode(tiny_artifact: Path) -> None:
    shown = subprocess.run([str(tiny_artifact), "--help"], capture_output=True, text=True,
                           timeout=120)
    assert shown.returncode == 0 and "--prompt" in shown.stdout
    assert "--embed-service" not in shown.stdout
