"""The one type that describes an artifact, and the artifact's layout on disk.

Layout (offsets in bytes):

    [0, head)          the frozen runtime's executable part (PyInstaller's bootloader, ELF)
    [.., W)            zero padding up to a 64 KiB boundary
    [W, W+len)         section "weights": the GGUF, verbatim; mmap needs page alignment, and
                       64 KiB covers every page size in use (4K, 16K, 64K)
    ...                later sections (e.g. knowledge), each aligned the same way
    [M, M+mlen)        the manifest, UTF-8 JSON
    [.., end-32)       the frozen runtime's PyInstaller archive, cookie included
    [end-32, end)      the footer: magic, format, manifest CRC-32, manifest offset and length

PyInstaller's bootloader finds its archive by scanning backwards from the end of the file for its
cookie, so the archive goes last (only our 32-byte footer follows it): launch never scans the
weights. Nothing else in the file points at the weights; they are found through the manifest.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from dataclasses import asdict, dataclass, field
from typing import Any, BinaryIO

import xxhash

from runtime.errors import ArtifactError

ALIGNMENT = 64 * 1024
FORMAT_VERSION = 2  # 2: section checksums are XXH3 ("checksum"), not SHA-256 ("sha256")
FOOTER_MAGIC = b"LLBUNDLE"
FOOTER = struct.Struct("<8sIIQQ")  # magic, format, crc32(manifest), offset, length
MAX_MANIFEST = 16 * 1024 * 1024


@dataclass
class Section:
    name: str  # "weights" (the GGUF); later "knowledge", ...
    version: int
    offset: int
    length: int
    checksum: str  # "xxh3-128:<hex>" of the section's bytes (see new_checksum)


CHECKSUM = "xxh3-128"


def new_checksum() -> Any:
    """The hash behind `--verify`. XXH3 rather than SHA-256: it hashes at memory speed (~10x
    SHA-256 on a CPU without SHA extensions), so `build` keeps up with `cp`. It finds
    corruption, which is what --verify promises; being unforgeable would need a signature."""
    return xxhash.xxh3_128()


def checksum_text(digest: Any) -> str:
    return f"{CHECKSUM}:{digest.hexdigest()}"


@dataclass
class Manifest:
    runtime_version: str
    name: str
    title: str
    model_id: str  # the id clients see on /v1/models: the GGUF file's stem
    architecture: str
    parameters: int | None
    quantization: str
    context_length: int | None
    gguf_chat_template: bool  # whether the GGUF itself carries tokenizer.chat_template
    chat_template: str  # the template the runtime uses (GGUF's, baked, or the fallback)
    chat_template_source: str  # "gguf", "baked" or "fallback:<name>"
    defaults: dict[str, Any] = field(default_factory=dict)  # baked run-time settings
    sections: list[Section] = field(default_factory=list)
    format: int = FORMAT_VERSION

    def section(self, name: str) -> Section:
        for section in self.sections:
            if section.name == name:
                return section
        raise ArtifactError(f"artifact has no {name!r} section")

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=1, sort_keys=True, ensure_ascii=False).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Manifest:
        raw = json.loads(data)
        raw["sections"] = [Section(**s) for s in raw.get("sections", [])]
        return cls(**raw)

    def summary(self) -> dict[str, Any]:
        """What `inspect --json` and `--info` print."""
        return asdict(self) | {"chat_template": None} | {
            "chat_template_length": len(self.chat_template)}


def footer(manifest_offset: int, manifest_bytes: bytes) -> bytes:
    crc = zlib.crc32(manifest_bytes)
    return FOOTER.pack(FOOTER_MAGIC, FORMAT_VERSION, crc, manifest_offset, len(manifest_bytes))


def align(offset: int) -> int:
    return -(-offset // ALIGNMENT) * ALIGNMENT


def read_manifest(f: BinaryIO, where: str) -> Manifest:
    """Reads and checks the footer and manifest of an open artifact."""
    size = f.seek(0, os.SEEK_END)
    if size < FOOTER.size:
        raise ArtifactError(f"{where}: not a llamabundle artifact (file too small)")
    f.seek(size - FOOTER.size)
    magic, fmt, crc, offset, length = FOOTER.unpack(f.read(FOOTER.size))
    if magic != FOOTER_MAGIC:
        raise ArtifactError(f"{where}: not a llamabundle artifact, or truncated (no footer)")
    if fmt > FORMAT_VERSION:
        raise ArtifactError(f"{where}: artifact format {fmt} is newer than this tool "
                            f"(supports {FORMAT_VERSION}); upgrade llamabundle")
    if fmt < FORMAT_VERSION:
        raise ArtifactError(f"{where}: artifact format {fmt} is from an older llamabundle "
                            f"(this one reads {FORMAT_VERSION}); rebuild it from its GGUF")
    if length > MAX_MANIFEST or offset + length > size - FOOTER.size:
        raise ArtifactError(f"{where}: corrupted artifact (manifest out of bounds)")
    f.seek(offset)
    data = f.read(length)
    if zlib.crc32(data) != crc:
        raise ArtifactError(f"{where}: corrupted artifact (manifest checksum mismatch)")
    try:
        manifest = Manifest.from_json(data)
    except (ValueError, TypeError) as e:
        raise ArtifactError(f"{where}: corrupted artifact (bad manifest: {e})") from None
    for section in manifest.sections:
        if section.offset + section.length > offset:
            raise ArtifactError(f"{where}: corrupted artifact "
                                f"(section {section.name!r} out of bounds)")
    # Cheap, and it means llama.cpp is never handed something that is not a GGUF.
    f.seek(manifest.section("weights").offset)
    if f.read(4) != b"GGUF":
        raise ArtifactError(f"{where}: corrupted artifact (no GGUF at the weights offset)")
    return manifest


def read_manifest_at(path: str) -> Manifest:
    try:
        with open(path, "rb") as f:
            return read_manifest(f, path)
    except OSError as e:
        raise ArtifactError(f"{path}: cannot read ({e.strerror})") from None
