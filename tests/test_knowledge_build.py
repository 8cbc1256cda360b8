"""`llamabundle build --knowledge` as a user runs it: bad input, the artifact's knowledge as
`--info`, `inspect` and `--verify` describe it, and the real Knowledge searching it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image
from reportlab.pdfgen import canvas

from runtime.artifact.manifest import read_manifest_at

DOCS = Path(__file__).parent / "data" / "knowledge" / "docs"
# A document in two languages: its chunks are numbered script group by script group.
BILINGUAL = ("# Setup\n\nPlug the lamp into a wall socket.\n\n# 清洁\n\n用干布擦拭灯罩。\n\n"
             "# Storage\n\nKeep the lamp in a dry place.\n")


def _build(*args: object, cache: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, XDG_CACHE_HOME=str(cache))
    return subprocess.run([sys.executable, "-m", "bundler", "build", *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=900)


def _bad_files(folder: Path) -> dict[str, str]:
    """Every kind of unusable document the issue names, and the reason each must be given."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "empty.txt").write_bytes(b"")
    (folder / "image.txt").write_bytes(bytes(range(256)) * 8)  # binary with a text extension
    with open(folder / "huge.md", "wb") as f:  # sparse: no disk used, read never
        f.truncate(257 * 2**20)
    locked = canvas.Canvas(str(folder / "locked.pdf"), encrypt="hunter2")
    locked.drawString(72, 700, "Top secret.")
    locked.save()
    Image.new("RGB", (200, 100), "white").save(folder / "scan.png")
    scan = canvas.Canvas(str(folder / "scan.pdf"))
    scan.drawImage(str(folder / "scan.png"), 72, 600, width=200, height=100)
    scan.save()
    (folder / "gone.txt").symlink_to(folder / "nowhere.txt")  # unreadable: a dangling link
    (folder / "loop").mkdir()
    (folder / "loop" / "again").symlink_to(folder / "loop")
    return {"empty.txt": "empty file", "image.txt": "not text in any known encoding",
            "huge.md": "too large", "locked.pdf": "encrypted", "scan.pdf": "no text layer",
            "gone.txt": "cannot read it", "scan.png": "not a supported document type",
            "again": "symlink loop"}


def _named_once(stderr: str, reasons: dict[str, str]) -> None:
    for name, reason in reasons.items():
        lines = [line for line in stderr.splitlines() if name in line and reason in line]
        assert len(lines) == 1, f"{name} ({reason}) not named once in:\n{stderr}"


def test_no_usable_document_is_exit_1_one_line_each_and_no_output(
        tiny_gguf: Path, tmp_path: Path, shared_cache: Path) -> None:
    reasons = _bad_files(tmp_path / "docs")
    out = tmp_path / "out" / "kb.llamabundle"
    out.parent.mkdir()
    proc = _build(tiny_gguf, "--knowledge", tmp_path / "docs", "--knowledge",
                  tmp_path / "missing", "-o", out, cache=shared_cache)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    _named_once(proc.stderr, reasons | {"missing": "no such file or folder"})
    assert proc.stderr.splitlines()[-1].startswith("Error: no usable document in ")
    assert list(out.parent.iterdir()) == []  # nothing written, not even a temporary file


def test_embedding_model_that_is_not_a_gguf_is_one_line(
        tiny_gguf: Path, tmp_path: Path, shared_cache: Path) -> None:
    fake = tmp_path / "emb.gguf"
    fake.write_bytes(b"PK\x03\x04 not a model")
    out = tmp_path / "kb.llamabundle"
    proc = _build(tiny_gguf, "--knowledge", DOCS / "en" / "warranty.txt", "--embedding-model",
                  fake, "-o", out, cache=shared_cache)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        f"Error: {fake}: not a GGUF file (--embedding-model takes a GGUF embedding model)")
    assert not out.exists()


def test_embedding_model_without_knowledge_is_a_usage_error(
        tiny_gguf: Path, tmp_path: Path, shared_cache: Path) -> None:
    proc = _build(tiny_gguf, "--embedding-model", tiny_gguf, "-o", tmp_path / "x",
                  cache=shared_cache)
    assert proc.returncode == 2 and "--embedding-model is for --knowledge" in proc.stderr


@pytest.fixture(scope="session")
def knowledge_build(tiny_gguf: Path, tmp_path_factory: pytest.TempPathFactory,
                    shared_cache: Path, built: None) -> tuple[Path, subprocess.CompletedProcess]:
    """The bilingual test set (Markdown, text in GBK, HTML, PDF), a duplicate of one of its
    files and every kind of bad file, built into one artifact."""
    root = tmp_path_factory.mktemp("kb")
    docs = root / "docs"
    shutil.copytree(DOCS, docs)
    shutil.copy(DOCS / "en" / "warranty.txt", docs / "warranty-copy.txt")
    (docs / "bilingual.md").write_text(BILINGUAL, encoding="utf-8")
    _bad_files(docs / "bad")
    out = root / "kb.llamabundle"
    proc = _build(tiny_gguf, "--knowledge", docs, "-o", out, cache=shared_cache)
    assert proc.returncode == 0, proc.stderr
    return out, proc


@pytest.mark.slow
def test_build_names_each_skipped_file_and_reports_the_knowledge(knowledge_build) -> None:  # noqa: ANN001
    _, proc = knowledge_build
    assert "Traceback" not in proc.stderr
    _named_once(proc.stderr, {"warranty-copy.txt": "same content as"})
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("Knowledge: 20 documents, ")
    assert " 9 skipped; index " in lines[0]  # 8 bad files (the loop too), the duplicate
    assert lines[1].startswith("Self-test: hit@5 ")
    assert float(lines[1].split()[2]) >= 0.9
    # Progress in a log (stderr is a pipe here): lines with counts, the last one at the end.
    chunks = int(lines[0].split(" chunks")[0].split()[-1])
    embedding = [line for line in proc.stderr.splitlines() if line.startswith("Embedding ")]
    assert 2 <= len(embedding) <= 11 and embedding[-1].startswith(f"Embedding {chunks}/{chunks} ")


@pytest.mark.slow
def test_info_and_inspect_describe_the_knowledge(knowledge_build) -> None:  # noqa: ANN001
    artifact, _ = knowledge_build
    info = json.loads(subprocess.run([str(artifact), "--info"], capture_output=True,
                                     text=True, check=True).stdout)
    knowledge = info["knowledge"]
    assert knowledge["documents"] == 20 and knowledge["chunks"] > 20
    assert knowledge["format"] == 3
    assert knowledge["chunking"] == {"max_tokens": 256, "overlap_sentences": 1}
    model = knowledge["embedding_model"]
    assert model["name"] == "multilingual-e5-small" and model["dimensions"] == 384
    sections = {s["name"]: s for s in info["sections"]}
    assert set(sections) == {"weights", "embedder", "knowledge"}
    assert model["checksum"] == sections["embedder"]["checksum"]
    assert sections["knowledge"]["length"] == knowledge["index_bytes"]
    assert set(knowledge["threshold"]) == set(knowledge["floor"]) == {"other", "cjk"}
    for group, levels in knowledge["self_test"]["groups"].items():
        assert 0 < knowledge["floor"][group] <= knowledge["threshold"][group]
        # levels per query script, from its own off-topic questions (and the most cautious of
        # them shown as the group's)
        assert set(levels["by_query"]) == set(levels["unrelated_lift"]) == {"other", "cjk"}
        assert knowledge["threshold"][group] == max(t for t, _ in levels["by_query"].values())
        for asked, (threshold, floor) in levels["by_query"].items():
            assert 0 < floor <= threshold
            assert levels["unrelated_lift"][asked]["p90"] < levels["relevant_lift"]["p10"]
    assert knowledge["self_test"]["unrelated_kept"] <= 0.1
    inspected = subprocess.run([sys.executable, "-m", "bundler", "inspect", str(artifact),
                                "--json"], capture_output=True, text=True, check=True)
    assert json.loads(inspected.stdout)["knowledge"] == knowledge


@pytest.mark.slow
def test_verify_checks_every_section_and_opens_the_index(knowledge_build,  # noqa: ANN001
                                                         tmp_path: Path) -> None:
    artifact, _ = knowledge_build
    ok = subprocess.run([str(artifact), "--verify"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.splitlines()[1].startswith("OK: embedder match xxh3-128:")
    assert "OK: knowledge index opens (20 documents, " in ok.stdout  # simsimd, frozen
    damaged = tmp_path / "damaged.llamabundle"
    shutil.copy(artifact, damaged)
    section = read_manifest_at(str(damaged)).section("knowledge")
    with open(damaged, "r+b") as f:
        f.seek(section.offset + section.length // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))
    bad = subprocess.run([str(damaged), "--verify"], capture_output=True, text=True)
    assert bad.returncode == 1
    assert "knowledge section is corrupted (checksum mismatch)" in bad.stderr


@pytest.fixture(scope="module")
def knowledge(knowledge_build):  # noqa: ANN001, ANN201
    from runtime.knowledge.index import open_knowledge
    from runtime.llama import cpu
    from runtime.llama.bindings import llama_cpp

    artifact, _ = knowledge_build
    cpu.load()
    llama_cpp.llama_backend_init()
    opened = open_knowledge(str(artifact), read_manifest_at(str(artifact)), threads=2)
    assert opened is not None
    yield opened
    opened.close()


@pytest.mark.slow
@pytest.mark.parametrize(("question", "document", "phrase"), [
    ("How long do I hold the reset button on the router?", "en/router-manual.md",
     "reset button"),
    ("报销金额五千元以上需要谁审批？", "zh/报销制度.txt", "财务总监"),  # GBK on disk
    ("What does error F5 mean on the espresso machine?", "en/coffee-machine.pdf", "F5"),
    ("每年有多少天带薪年假？", "en/leave-policy.md", "28 days"),  # Chinese question, English text
    ("How long are the daily database backups kept?", "zh/数据备份.md", "三十天"),
])
def test_bundled_knowledge_finds_the_passage(knowledge, question: str, document: str,  # noqa: ANN001
                                             phrase: str) -> None:
    hits = knowledge.search(question, 5)
    assert any(h.passage.document == document and phrase in h.passage.text for h in hits), \
        [(h.passage.document, h.passage.text[:40]) for h in hits]
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


@pytest.mark.slow
def test_a_document_in_two_languages_reads_in_its_own_order(knowledge) -> None:  # noqa: ANN001
    number = next(d.number for d in knowledge.documents() if d.document == "bilingual.md")
    assert [p.text for p in knowledge.document(number)] == [
        "Plug the lamp into a wall socket.", "用干布擦拭灯罩。", "Keep the lamp in a dry place."]


@pytest.mark.slow
def test_bundled_knowledge_returns_nothing_for_what_the_documents_do_not_cover(
        knowledge) -> None:  # noqa: ANN001
    assert knowledge.search("How many players are on a rugby team?", 5) == []
    assert knowledge.search("   ", 5) == []


@pytest.mark.slow
@pytest.mark.parametrize(("others", "expected"), [(None, 1), (0, 2), (1, 1), (5, 1)])
def test_the_questions_embedding_takes_a_second_thread_only_while_a_core_is_free(
        knowledge, monkeypatch: pytest.MonkeyPatch, others: int | None,  # noqa: ANN001
        expected: int) -> None:
    # Two threads meet at a barrier after every operation; on a busy machine each wait lasts
    # until the other is scheduled again (issue #24: seconds per search). None: the OS has no
    # count of waiting threads (Windows).
    from runtime import system
    from runtime.llama.bindings import llama_cpp

    monkeypatch.setattr(system, "usable_cpus", lambda: 2)
    monkeypatch.setattr(system, "others_runnable", lambda: others)
    knowledge.search("How do I reset the router?", 3)
    assert llama_cpp.llama_n_threads(knowledge.embedder.ctx) == expected
    knowledge.embed(["The router restarts."])
    assert llama_cpp.llama_n_threads(knowledge.embedder.ctx) == expected


@pytest.mark.skipif(sys.platform != "linux", reason="Linux's count of runnable threads")
def test_threads_that_want_a_cpu_are_counted_at_that_instant() -> None:
    from runtime import system

    spinning = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        time.sleep(0.3)
        assert (system.others_runnable() or 0) >= 2
    finally:
        for p in spinning:
            p.kill()
            p.wait()


@pytest.mark.slow
def test_bundled_knowledge_embeds_and_describes(knowledge) -> None:  # noqa: ANN001
    from runtime.errors import RequestError

    vectors = knowledge.embed(["The router restarts.", "路由器重新启动。"])
    assert [len(v) for v in vectors] == [384, 384]
    assert all(abs(sum(x * x for x in v) - 1) < 1e-3 for v in vectors)
    assert sum(a * b for a, b in zip(*vectors, strict=True)) > 0.8  # same meaning
    assert knowledge.describe()["documents"] == 20
    with pytest.raises(RequestError, match="empty input"):
        knowledge.embed([""])
    with pytest.raises(RequestError, match="at most 512"):
        knowledge.embed(["word " * 2000])
    with pytest.raises(RequestError, match="top_k"):
        knowledge.search("reset", 0)
