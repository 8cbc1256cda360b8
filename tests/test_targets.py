"""Which OS an artifact is for and what it is called (bundler/targets.py), and how a signed
.exe's footer is found (runtime/artifact/format.py): no wine needed."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import pytest

from bundler import targets
from runtime.artifact.format import FOOTER_MAGIC, content_end
from runtime.errors import BuildError


def test_parse_accepts_known_names_once_in_order() -> None:
    assert targets.parse("linux") == ("linux",)
    assert targets.parse("Windows, linux,windows") == ("windows", "linux")
    for bad in ("", "macos", "linux,bsd", ","):
        with pytest.raises(BuildError, match="--os"):
            targets.parse(bad)


def test_outputs_name_each_os(tmp_path: Path) -> None:
    stem = tmp_path / "model"
    assert targets.outputs(("linux",), None, stem) == {"linux": tmp_path / "model.llamabundle"}
    assert targets.outputs(("windows",), None, stem) == {"windows": tmp_path / "model.exe"}
    assert targets.outputs(("windows",), tmp_path / "x.bin", stem) == {
        "windows": tmp_path / "x.bin"}
    both = targets.outputs(("linux", "windows"), tmp_path / "out" / "m.exe", stem)
    assert both == {"linux": tmp_path / "out" / "m.llamabundle",
                    "windows": tmp_path / "out" / "m.exe"}


def test_weights_go_beside_only_a_windows_exe_past_the_limit(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    exe = tmp_path / "big.exe"
    assert targets.weights_beside("windows", exe, 4 * 1024**3 - 100 * 1024**2) is None
    assert targets.weights_beside("windows", exe, 4 * 1024**3) == tmp_path / "big.weights.gguf"
    assert targets.weights_beside("linux", tmp_path / "big.llamabundle", 5 * 1024**3) is None
    monkeypatch.setenv("LLAMABUNDLE_WINDOWS_EXE_LIMIT", "10")
    assert targets.weights_beside("windows", exe, 11) == tmp_path / "big.weights.gguf"


def _pe(cert_offset: int, cert_size: int) -> bytearray:
    """A PE32+ header whose certificate table (data directory 4) is at cert_offset."""
    head = bytearray(4096)
    head[:2] = b"MZ"
    head[0x3C:0x40] = struct.pack("<I", 0x80)
    head[0x80:0x84] = b"PE\0\0"
    optional = 0x80 + 24
    head[optional:optional + 2] = struct.pack("<H", 0x20B)
    entry = optional + 112 + 4 * 8
    head[entry:entry + 8] = struct.pack("<II", cert_offset, cert_size)
    return head


@pytest.mark.parametrize("padding", [0, 3, 7])
def test_content_end_skips_an_appended_signature(padding: int) -> None:
    body = bytes(_pe(0, 0)) + b"x" * 1000 + FOOTER_MAGIC + bytes(24)
    end = len(body)
    table = end + padding
    signed = _pe(table, 512)
    data = bytes(signed) + body[4096:] + bytes(padding) + b"S" * 512
    assert content_end(io.BytesIO(data), len(data)) == end
    assert content_end(io.BytesIO(body), len(body)) == len(body)  # unsigned: the file's end
    elf = b"\x7fELF" + body[4:]
    assert content_end(io.BytesIO(elf), len(elf)) == len(elf)
