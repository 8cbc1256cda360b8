"""Artifacts as earlier llamabundles wrote them, made from a current one.

The layout has not changed since format 1 ([runtime head][pad][GGUF][manifest][archive][footer]);
what each format wrote differently is its manifest, rewritten here as that format had it:

- format 1, first builds: each section's SHA-256 as "sha256": "<hex>", no runtime key;
- format 1, last builds (4b1bece..e19fb66): "checksum": "xxh3-128:<hex>" already, no runtime key;
- format 2: "checksum": "<algorithm>:<hex>", no runtime key.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from pathlib import Path
from typing import Any

from runtime.artifact.format import FOOTER, Footer

FORMATS = ["1-sha256", "1-xxh3", "2"]


def rewrite(artifact: Path, out: Path, change: Any, fmt: int) -> dict[str, Any]:
    """Writes artifact to out with its manifest JSON changed by change(raw, data) and the
    footer saying format fmt; returns the JSON written."""
    data = artifact.read_bytes()
    foot = Footer.unpack(data[-FOOTER.size:], str(artifact))
    start, end = foot.manifest_offset, foot.manifest_offset + foot.manifest_length
    raw = json.loads(data[start:end])
    change(raw, data)
    raw["format"] = fmt
    manifest = json.dumps(raw, indent=1, sort_keys=True, ensure_ascii=False).encode()
    old_footer = Footer(fmt, zlib.crc32(manifest), start, len(manifest)).pack()
    out.write_bytes(data[:start] + manifest + data[end:-FOOTER.size] + old_footer)
    out.chmod(0o755)
    return raw


def as_format(artifact: Path, out: Path, name: str) -> dict[str, Any]:
    """artifact rewritten as format `name` (one of FORMATS) wrote it."""

    def change(raw: dict[str, Any], data: bytes) -> None:
        raw.pop("runtime_key")
        if name == "1-sha256":
            for section in raw["sections"]:
                del section["checksum"]
                body = data[section["offset"]:section["offset"] + section["length"]]
                section["sha256"] = hashlib.sha256(body).hexdigest()

    return rewrite(artifact, out, change, int(name.split("-")[0]))


def as_format_1(artifact: Path, out: Path) -> str:
    """artifact as format 1's first builds wrote it; returns the weights' SHA-256."""
    return str(as_format(artifact, out, "1-sha256")["sections"][0]["sha256"])
