"""The manifest reader: every format this project has shipped is read, through a migration per
format, by the runtime and by the build tool."""

from __future__ import annotations

import json
import subprocess
import zlib

import pytest
from old_formats import as_format, as_format_1

from bundler.cli import main
from runtime.artifact.format import FORMAT_VERSION, Footer
from runtime.artifact.manifest import MIGRATIONS, Manifest, read_manifest_at
from runtime.errors import ArtifactError


def test_every_format_before_the_current_one_has_a_migration():
    assert sorted(MIGRATIONS) == list(range(1, FORMAT_VERSION))


def test_format_1_json_migrates_to_sha256_checksums():
    raw = {"runtime_version": "0.1.0", "name": "n", "title": "t", "model_id": "m",
           "architecture": "llama", "parameters": 1, "quantization": "F32",
           "context_length": 8, "gguf_chat_template": False, "chat_template": "",
           "chat_template_source": "fallback:chatml", "defaults": {"temp": 0.5}, "format": 1,
           "sections": [{"name": "weights", "version": 1, "offset": 65536, "length": 10,
                         "sha256": "ab" * 32}]}
    manifest = Manifest.from_json(json.dumps(raw).encode(), fmt=1)
    assert manifest.format == 1  # as written; the fields are the current format's
    assert manifest.section("weights").checksum == "sha256:" + "ab" * 32
    assert manifest.defaults == {"temp": 0.5}


def test_format_1_json_that_already_had_xxh3_checksums_keeps_them():
    raw = {"runtime_version": "0.1.0", "name": "n", "title": "t", "model_id": "m",
           "architecture": "llama", "parameters": 1, "quantization": "F32",
           "context_length": 8, "gguf_chat_template": False, "chat_template": "",
           "chat_template_source": "fallback:chatml", "defaults": {}, "format": 1,
           "sections": [{"name": "weights", "version": 1, "offset": 65536, "length": 10,
                         "checksum": "xxh3-128:" + "cd" * 16}]}
    manifest = Manifest.from_json(json.dumps(raw).encode(), fmt=1)
    assert manifest.section("weights").checksum == "xxh3-128:" + "cd" * 16
    assert manifest.runtime_key == ""


@pytest.mark.parametrize("fmt", ["1-xxh3", "2"])
def test_artifacts_of_later_old_formats_are_read_without_a_runtime_key(tiny_artifact, tmp_path,
                                                                        fmt):
    old = tmp_path / "old.llamabundle"
    as_format(tiny_artifact, old, fmt)
    manifest = read_manifest_at(str(old))
    current = read_manifest_at(str(tiny_artifact))
    assert manifest.runtime_key == "" and current.runtime_key
    assert manifest.sections == current.sections and manifest.defaults == current.defaults


def test_a_format_1_artifact_is_read_inspected_and_verified(tiny_artifact, tmp_path, runner):
    old = tmp_path / "old.llamabundle"
    sha = as_format_1(tiny_artifact, old)
    manifest = read_manifest_at(str(old))
    assert manifest.section("weights").checksum == f"sha256:{sha}"
    assert manifest.model_id == read_manifest_at(str(tiny_artifact)).model_id
    result = runner.invoke(main, ["inspect", str(old), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["sections"][0]["checksum"] == f"sha256:{sha}"
    verify = subprocess.run([str(old), "--verify"], capture_output=True, text=True)
    assert verify.returncode == 0 and f"sha256:{sha}" in verify.stdout, verify.stderr


def test_a_format_1_artifact_with_a_flipped_weights_bit_fails_verify(tiny_artifact, tmp_path):
    old = tmp_path / "old.llamabundle"
    as_format_1(tiny_artifact, old)
    section = read_manifest_at(str(old)).section("weights")
    with open(old, "r+b") as f:
        f.seek(section.offset + section.length // 2)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 1]))
    verify = subprocess.run([str(old), "--verify"], capture_output=True, text=True)
    assert verify.returncode == 1 and "checksum mismatch" in verify.stderr


def test_a_format_1_manifest_without_its_checksum_is_corrupted_not_a_traceback(tmp_path):
    raw = {"format": 1, "sections": [{"name": "weights"}]}
    with pytest.raises((ValueError, TypeError, KeyError)):
        Manifest.from_json(json.dumps(raw).encode(), fmt=1)
    body = json.dumps(raw).encode()
    path = tmp_path / "bad.llamabundle"
    path.write_bytes(b"\0" * 64 + body + Footer(1, zlib.crc32(body), 64, len(body)).pack())
    with pytest.raises(ArtifactError, match="bad manifest"):
        read_manifest_at(str(path))


pytestmark = pytest.mark.usefixtures("built")
