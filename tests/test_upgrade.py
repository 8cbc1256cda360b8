"""`llamabundle upgrade`: artifacts of every earlier format get the current runtime around
the same sections and baked settings, atomically, with build's validation and errors; driven
through the CLI in a subprocess, the results spoken to over HTTP."""

from __future__ import annotations

import errno
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from old_formats import FORMATS, as_format

import bundler.upgrade
from bundler.runtime_package import runtime_key
from bundler.upgrade import upgrade
from runtime.artifact.format import (
    FOOTER,
    FORMAT_VERSION,
    Footer,
    align,
    checksum_text,
    footer,
    new_checksum,
)
from runtime.artifact.manifest import read_manifest_at
from runtime.errors import BuildError

pytestmark = pytest.mark.usefixtures("built")

TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
            "{% if add_generation_prompt %}<|assistant|>{% endif %}")


def upgrade_cli(*args: object) -> subprocess.CompletedProcess[str]:
    """`llamabundle upgrade` as a user runs it."""
    return subprocess.run([sys.executable, "-m", "bundler", "upgrade", *map(str, args)],
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="session")
def baked(tiny_gguf: Path, tmp_path_factory: pytest.TempPathFactory, shared_cache: Path,
          built: None) -> Path:
    """An artifact with a baked name, template, system prompt and defaults to carry over."""
    from conftest import build_cli

    out = tmp_path_factory.mktemp("baked") / "baked.llamabundle"
    build_cli(tiny_gguf, "-o", out, "--name", "Old One", "--title", "Old Title",
              "--chat-template", TEMPLATE, "--system-prompt", "Be kind.", "--temp", "0.3",
              "-c", "256", cache=shared_cache)
    return out


def section_bytes(path: Path, name: str) -> bytes:
    section = read_manifest_at(str(path)).section(name)
    with open(path, "rb") as f:
        f.seek(section.offset)
        return f.read(section.length)


@pytest.mark.parametrize("fmt", FORMATS)
def test_upgrade_gives_an_old_format_the_current_runtime_and_keeps_its_settings(
        baked, tmp_path, serve, fmt):
    old, new = tmp_path / "old.llamabundle", tmp_path / "new.llamabundle"
    as_format(baked, old, fmt)
    before = read_manifest_at(str(old))
    assert before.runtime_key == "" and before.format == int(fmt[0])
    proc = upgrade_cli(old, "-o", new)
    assert proc.returncode == 0, proc.stderr
    key = runtime_key()
    assert f"runtime 0.1.0 (unrecorded) -> 0.1.0 ({key[:12]})" in proc.stdout
    after = read_manifest_at(str(new))
    assert after.runtime_key == key and after.format == FORMAT_VERSION
    assert after.sections[0].checksum == before.sections[0].checksum  # sha256 stays sha256
    assert after.sections[0].offset % (64 * 1024) == 0
    for field in ("name", "title", "model_id", "chat_template", "chat_template_source",
                  "defaults", "context_length", "quantization"):
        assert getattr(after, field) == getattr(before, field), field
    assert section_bytes(new, "weights") == section_bytes(old, "weights")
    verify = subprocess.run([str(new), "--verify"], capture_output=True, text=True)
    assert verify.returncode == 0, verify.stderr
    server = serve(new)
    props = httpx.get(server.url + "/props").json()
    assert props["system_prompt"] == "Be kind." and props["n_ctx"] == 256
    assert props["defaults"]["temperature"] == 0.3 and props["title"] == "Old Title"
    body = {"messages": [{"role": "user", "content": "hello"}], "max_tokens": 6, "seed": 1}
    answer = httpx.post(server.url + "/v1/chat/completions", json=body, timeout=60).json()
    assert answer["usage"]["completion_tokens"] > 0 and answer["model"] == "tiny"


def with_extra_section(artifact: Path, out: Path, payload: bytes) -> None:
    """artifact with one more section after the weights, as a knowledge build lays it out."""
    data = artifact.read_bytes()
    foot = Footer.unpack(data[-FOOTER.size:], str(artifact))
    start, end = foot.manifest_offset, foot.manifest_offset + foot.manifest_length
    raw = json.loads(data[start:end])
    offset = align(start)
    digest = new_checksum()
    digest.update(payload)
    raw["sections"].append({"name": "knowledge", "version": 7, "offset": offset,
                            "length": len(payload), "checksum": checksum_text(digest)})
    manifest = json.dumps(raw).encode()
    out.write_bytes(data[:start] + bytes(offset - start) + payload + manifest
                    + data[end:-FOOTER.size] + footer(offset + len(payload), manifest))
    out.chmod(0o755)


def test_upgrade_copies_every_section_with_its_checksum_and_version(baked, tmp_path, serve):
    old, new = tmp_path / "old.llamabundle", tmp_path / "new.llamabundle"
    payload = os.urandom(200_000)
    with_extra_section(baked, old, payload)
    proc = upgrade_cli(old, "-o", new)
    assert proc.returncode == 0, proc.stderr
    before, after = read_manifest_at(str(old)), read_manifest_at(str(new))
    assert [s.name for s in after.sections] == ["weights", "knowledge"]
    knowledge = after.section("knowledge")
    assert knowledge.version == 7 and knowledge.offset % (64 * 1024) == 0
    assert knowledge.checksum == before.section("knowledge").checksum
    assert section_bytes(new, "knowledge") == payload
    assert httpx.get(serve(new).url + "/health").status_code == 200


def test_in_place_replaces_the_file_atomically_then_has_nothing_to_do(baked, tmp_path):
    folder = tmp_path / "models"
    folder.mkdir()
    old = folder / "model.llamabundle"
    as_format(baked, old, "2")
    inode = old.stat().st_ino
    proc = upgrade_cli(old, "--in-place")
    assert proc.returncode == 0, proc.stderr
    assert old.stat().st_ino != inode  # a new file renamed over the old one
    assert sorted(p.name for p in folder.iterdir()) == ["model.llamabundle"]
    info = json.loads(subprocess.check_output(
        [sys.executable, "-m", "bundler", "inspect", str(old), "--json"]))
    assert info["runtime_current"] is True and info["runtime_key"] == runtime_key()
    inode = old.stat().st_ino
    again = upgrade_cli(old, "--in-place")
    assert again.returncode == 0 and "nothing to do" in again.stdout
    assert old.stat().st_ino == inode
    forced = upgrade_cli(old, "--in-place", "--force")
    assert forced.returncode == 0 and old.stat().st_ino != inode


@pytest.mark.parametrize("mode", [0o700, 0o750], ids=["0700", "0750"])
def test_in_place_keeps_the_files_mode_and_a_new_output_follows_the_umask(baked, tmp_path,
                                                                          mode):
    old = tmp_path / "model.llamabundle"
    as_format(baked, old, "2")
    old.chmod(mode)
    proc = upgrade_cli(old, "--in-place")
    assert proc.returncode == 0, proc.stderr
    assert stat.S_IMODE(old.stat().st_mode) == mode  # not widened to 0755
    new = tmp_path / "new.llamabundle"
    proc = subprocess.run([sys.executable, "-m", "bundler", "upgrade", str(old), "-o",
                           str(new)], capture_output=True, text=True, timeout=300,
                          preexec_fn=lambda: os.umask(0o077))
    assert proc.returncode == 0, proc.stderr
    assert stat.S_IMODE(new.stat().st_mode) == 0o700


def test_inspect_says_an_old_runtime_is_not_current(baked, tmp_path):
    old = tmp_path / "old.llamabundle"
    as_format(baked, old, "2")
    fresh = json.loads(subprocess.check_output(
        [sys.executable, "-m", "bundler", "inspect", str(baked), "--json"]))
    assert fresh["runtime_current"] is True and fresh["runtime_key"] == runtime_key()
    text = subprocess.check_output([sys.executable, "-m", "bundler", "inspect", str(old)],
                                   text=True)
    assert "runtime_current:         False" in text
    assert f"`llamabundle upgrade {old} --in-place`" in text


def _flip(path: Path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0x10]))


def _broken(kind: str, baked: Path, tiny_gguf: Path, folder: Path) -> Path:
    path = folder / "old.llamabundle"
    data = baked.read_bytes()
    if kind == "gguf":
        return tiny_gguf
    if kind == "missing":
        return path
    if kind == "truncated":
        path.write_bytes(data[:-5000])
    else:
        path.write_bytes(data)
        manifest = read_manifest_at(str(baked))
        weights = manifest.section("weights")
        offset = int.from_bytes(data[-16:-8], "little") + 10  # in the manifest
        _flip(path, weights.offset + weights.length // 2 if kind == "weights" else offset)
    return path


@pytest.mark.parametrize("kind, message", [
    ("gguf", "is a GGUF model, not an artifact; `llamabundle build {old}` makes one"),
    ("missing", "cannot read (No such file or directory)"),
    ("truncated", "not a llamabundle artifact, or truncated (no footer)"),
    ("manifest", "corrupted artifact (manifest checksum mismatch)"),
    ("weights", "corrupted artifact (section 'weights' does not match its checksum); "
                "get a fresh copy"),
])
def test_a_bad_artifact_is_one_line_exit_1_and_no_output(baked, tiny_gguf, tmp_path, kind,
                                                          message):
    folder = tmp_path / "in"
    folder.mkdir()
    old = _broken(kind, baked, tiny_gguf, folder)
    out = tmp_path / "out"
    out.mkdir()
    proc = upgrade_cli(old, "-o", out / "new.llamabundle")
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    message = message.format(old=old)
    assert lines[-1].startswith("Error: ") and lines[-1].endswith(message), proc.stderr
    assert "Traceback" not in proc.stderr
    assert list(out.iterdir()) == []


def test_an_existing_output_needs_force(baked, tmp_path):
    out = tmp_path / "new.llamabundle"
    out.write_text("mine")
    proc = upgrade_cli(baked, "-o", out)
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"Error: {out}: already exists; use --force to overwrite it"
    assert out.read_text() == "mine"
    assert upgrade_cli(baked, "-o", out, "--force").returncode == 0
    assert read_manifest_at(str(out)).runtime_key == runtime_key()


@pytest.mark.parametrize("args, message", [
    ((), "give -o NEW to write a new file, or --in-place to replace OLD"),
    (("-o", "x.llamabundle", "--in-place"), "give -o NEW or --in-place, not both"),
])
def test_upgrade_needs_exactly_one_destination(baked, args, message):
    proc = upgrade_cli(baked, *args)
    assert proc.returncode == 2 and proc.stderr.strip().endswith(message)


@pytest.mark.parametrize("error", [KeyboardInterrupt(), OSError(errno.ENOSPC, "No space")])
def test_an_interrupted_in_place_upgrade_leaves_the_old_file_and_nothing_else(
        baked, tmp_path, monkeypatch, error):
    folder = tmp_path / "models"
    folder.mkdir()
    old = folder / "model.llamabundle"
    as_format(baked, old, "2")
    before = old.read_bytes()

    def fail(*args: object) -> None:
        raise error

    monkeypatch.setattr(bundler.upgrade, "copy_range", fail)
    expected = KeyboardInterrupt if isinstance(error, KeyboardInterrupt) else BuildError
    with pytest.raises(expected):
        upgrade(old, in_place=True)
    assert old.read_bytes() == before
    assert sorted(p.name for p in folder.iterdir()) == ["model.llamabundle"]
