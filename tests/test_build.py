"""`llamabundle build` and `inspect`: what a builder sees."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from bundler.cli import main
from runtime.artifact.format import ALIGNMENT
from runtime.artifact.manifest import read_manifest_at

pytestmark = pytest.mark.usefixtures("built")


def test_build_writes_executable_next_to_cwd_with_summary(runner, tiny_gguf, tmp_path,
                                                         monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(main, ["build", str(tiny_gguf)])
    assert result.exit_code == 0, result.output
    out = tmp_path / "tiny.llamabundle"
    assert out.stat().st_mode & stat.S_IXUSR
    last = result.output.strip().splitlines()[-1]
    assert last.startswith(f"Wrote {out} (") and last.endswith(" s")


def test_weights_are_stored_verbatim_at_an_aligned_offset(tiny_artifact, tiny_gguf):
    weights = read_manifest_at(str(tiny_artifact)).section("weights")
    assert weights.offset % ALIGNMENT == 0
    with open(tiny_artifact, "rb") as f:
        f.seek(weights.offset)
        assert f.read(weights.length) == tiny_gguf.read_bytes()


def test_pyinstaller_archive_is_last_so_launch_never_scans_the_weights(tiny_artifact):
    data = tiny_artifact.read_bytes()
    cookie = data.rfind(b"MEI\014\013\012\013\016")
    weights = read_manifest_at(str(tiny_artifact)).section("weights")
    assert cookie > weights.offset + weights.length
    assert len(data) - cookie < 4096


def test_build_is_reproducible(runner, tiny_gguf, tmp_path):
    a, b = tmp_path / "a.llamabundle", tmp_path / "b.llamabundle"
    for out in (a, b):
        assert runner.invoke(main, ["build", str(tiny_gguf), "-o", str(out)]).exit_code == 0
    assert a.read_bytes() == b.read_bytes()


def test_build_refuses_to_overwrite_without_force(runner, tiny_gguf, tmp_path):
    out = tmp_path / "x.llamabundle"
    out.write_text("precious")
    result = runner.invoke(main, ["build", str(tiny_gguf), "-o", str(out)])
    assert result.exit_code == 1
    assert "already exists; use --force" in result.output
    assert out.read_text() == "precious"
    assert runner.invoke(main, ["build", str(tiny_gguf), "-o", str(out), "--force"]).exit_code == 0
    assert out.read_bytes()[:4] == b"\x7fELF"


def _tensor_infos_middle(gguf_path: Path) -> int:
    """A byte offset inside the tensor-info table (after the metadata, before the data)."""
    from gguf import GGUFReader

    reader = GGUFReader(gguf_path)
    first_info = reader.tensors[0].field.offset
    return (first_info + reader.data_offset) // 2


def _cut(source: Path, dest: Path, size: int) -> Path:
    dest.write_bytes(source.read_bytes()[:size])
    return dest


@pytest.mark.parametrize("make, message", [
    (lambda p, g: p.write_bytes(b"PK\x03\x04 not a model") and p, "not a GGUF file (magic b'PK"),
    (lambda p, g: p.write_bytes(b"") or p, "empty file"),
    (lambda p, g: p.write_bytes(os.urandom(1 << 16)) and p, "not a GGUF file (magic"),
    (lambda p, g: _cut(g, p, _tensor_infos_middle(g)), "damaged or truncated GGUF"),
    (lambda p, g: _cut(g, p, 40), "damaged or truncated GGUF"),
    (lambda p, g: _cut(g, p, 2000), "damaged or truncated GGUF"),
    (lambda p, g: _cut(g, p, g.stat().st_size - 1000), "truncated GGUF"),
    (lambda p, g: p.mkdir() or p, "is a directory"),
    (lambda p, g: p, "cannot read (No such file or directory)"),
])
def test_build_rejects_bad_input_with_one_line_and_no_output(runner, tiny_gguf, tmp_path,
                                                             make, message):
    bad = make(tmp_path / "bad.gguf", tiny_gguf)
    out = tmp_path / "out.llamabundle"
    result = runner.invoke(main, ["build", str(bad), "-o", str(out)])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0]
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []


def test_build_rejects_unknown_gguf_version(runner, tiny_gguf, tmp_path):
    data = bytearray(tiny_gguf.read_bytes())
    data[4:8] = (99).to_bytes(4, "little")
    bad = tmp_path / "v99.gguf"
    bad.write_bytes(data)
    result = runner.invoke(main, ["build", str(bad), "-o", str(tmp_path / "o")])
    assert result.exit_code == 1 and "version 99" in result.output
    assert not (tmp_path / "o").exists()


def test_build_rejects_public_host_without_api_key(runner, tiny_gguf, tmp_path):
    result = runner.invoke(main, ["build", str(tiny_gguf), "-o", str(tmp_path / "o"),
                                  "--host", "0.0.0.0"])
    assert result.exit_code == 2 and "--api-key" in result.output
    assert not (tmp_path / "o").exists()


def test_build_into_missing_folder_fails_cleanly(runner, tiny_gguf, tmp_path):
    result = runner.invoke(main, ["build", str(tiny_gguf), "-o", str(tmp_path / "no" / "x")])
    assert result.exit_code == 1 and "no such directory" in result.output


def test_inspect_gguf_reports_model_facts(runner, tiny_gguf):
    result = runner.invoke(main, ["inspect", str(tiny_gguf), "--json"])
    info = json.loads(result.output)
    assert info["kind"] == "gguf" and info["architecture"] == "llama"
    assert info["name"] == "Tiny Test" and info["chat_template"] is False
    assert info["context_length"] == 512 and info["parameters"] > 100_000


@pytest.mark.parametrize(("fmt", "says"), [(0, "format 0 is unknown"),
                                           (99, "newer than this tool")])
def test_inspect_names_an_artifact_format_it_does_not_read(runner, tiny_artifact, tmp_path,
                                                            fmt, says):
    other = tmp_path / "other.llamabundle"
    shutil.copy(tiny_artifact, other)
    with open(other, "r+b") as f:
        f.seek(-32 + 8, os.SEEK_END)  # the footer's format field, after its magic
        f.write(fmt.to_bytes(4, "little"))
    result = runner.invoke(main, ["inspect", str(other)])
    assert result.exit_code == 1
    assert says in result.output and "Traceback" not in result.output


def test_inspect_artifact_shows_manifest_and_baked_defaults(runner, tiny_artifact):
    info = json.loads(runner.invoke(main, ["inspect", str(tiny_artifact), "--json"]).output)
    assert info["kind"] == "artifact"
    assert info["defaults"] == {"system_prompt": "You are terse."}
    assert info["chat_template_source"] == "fallback:chatml"
    assert re.fullmatch(r"xxh3-128:[0-9a-f]{32}", info["sections"][0]["checksum"])
    assert info["runtime_version"]
    text = runner.invoke(main, ["inspect", str(tiny_artifact)]).output
    assert "architecture:" in text and "llama" in text


def test_inspect_rejects_a_file_that_is_neither(runner, tmp_path):
    junk = tmp_path / "junk"
    junk.write_bytes(os.urandom(4096))
    result = runner.invoke(main, ["inspect", str(junk)])
    assert result.exit_code == 1 and "not a llamabundle artifact" in result.output


def test_chat_template_option_wins_and_reads_files(runner, tiny_gguf, tmp_path):
    template = tmp_path / "t.jinja"
    template.write_text("{% for m in messages %}{{ m['content'] }}{% endfor %}")
    out = tmp_path / "t.llamabundle"
    result = runner.invoke(main, ["build", str(tiny_gguf), "-o", str(out),
                                  "--chat-template", str(template), "--title", "Helper"])
    assert result.exit_code == 0, result.output
    manifest = read_manifest_at(str(out))
    assert manifest.chat_template_source == "baked" and manifest.title == "Helper"
    assert manifest.chat_template == template.read_text()


def test_frozen_runtime_carries_no_dev_tools():
    import tempfile

    from PyInstaller.archive.readers import CArchiveReader, ZlibArchiveReader

    from bundler.runtime_package import ensure_runtime

    archive = CArchiveReader(str(ensure_runtime().path))
    with tempfile.NamedTemporaryFile() as pyz:
        pyz.write(archive.extract("PYZ.pyz"))
        pyz.flush()
        packages = {name.split(".")[0] for name in ZlibArchiveReader(pyz.name).toc}
    assert {"runtime", "llama_cpp", "fastapi", "uvicorn"} <= packages
    dev = {"pytest", "_pytest", "hypothesis", "openai", "selenium", "langchain_core",
           "matplotlib", "bundler", "PyInstaller", "gguf", "trio", "websockets"}
    assert packages & dev == set()


def test_a_baked_api_key_is_said_to_be_set_never_printed(runner, tiny_gguf, tmp_path):
    out = tmp_path / "keyed.llamabundle"
    result = runner.invoke(main, ["build", str(tiny_gguf), "-o", str(out), "--api-key",
                                  "s3cretKEY"])
    assert result.exit_code == 0, result.output
    assert read_manifest_at(str(out)).defaults["api_key"] == "s3cretKEY"  # it still works
    inspected = runner.invoke(main, ["inspect", str(out), "--json"]).output
    assert json.loads(inspected)["defaults"]["api_key"] == "(set, not shown)"
    shown = [inspected, runner.invoke(main, ["inspect", str(out)]).output]
    for flag in ("--help", "--info"):
        proc = subprocess.run([str(out), flag], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        shown.append(proc.stdout + proc.stderr)
    assert "(set, not shown)" in shown[2] and "(set, not shown)" in shown[3]
    assert not [text for text in shown if "s3cretKEY" in text]


@pytest.mark.parametrize("umask, mode", [(0o077, 0o700), (0o022, 0o755), (0o027, 0o750)],
                         ids=["umask077", "umask022", "umask027"])
def test_the_artifact_mode_is_what_the_umask_allows(runner, tiny_gguf, tmp_path, umask, mode):
    # a knowledge bundle holds its documents' full text: umask 077 must keep it private
    out = tmp_path / "private.llamabundle"
    previous = os.umask(umask)
    try:
        result = runner.invoke(main, ["build", str(tiny_gguf), "-o", str(out)])
    finally:
        os.umask(previous)
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(out.stat().st_mode) == mode
