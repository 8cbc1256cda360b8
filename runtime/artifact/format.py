"""The artifact's layout on disk, and the checksums of its sections.

Layout (offsets in bytes):

    [0, head)          the frozen runtime's executable part (PyInstaller's bootloader, ELF)
    [.., W)            zero padding up to a 64 KiB boundary
    [W, W+len)         section "weights": the GGUF, verbatim; mmap needs page alignment, and
                       64 KiB covers every page size in use (4K, 16K, 64K)
    ...                later sections (e.g. knowledge), each aligned the same way
    [M, M+mlen)        the manifest, UTF-8 JSON (runtime/artifact/manifest.py)
    [.., end-32)       the frozen runtime's PyInstaller archive, cookie included
    [end-32, end)      the footer: magic, format, manifest CRC-32, manifest offset and length

PyInstaller's bootloader finds its archive by scanning backwards from the end of the file for its
cookie, so the archive goes last (only our 32-byte footer follows it): launch never scans the
weights. Nothing else in the file points at the weights; they are found through the manifest.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from dataclasses import dataclass
from typing import Any

import xxhash

from runtime.errors import ArtifactError

ALIGNMENT = 64 * 1024
# 1: section checksums were SHA-256 ("sha256": hex). 2: "checksum": "<algorithm>:<hex>", XXH3.
# 3: the manifest records the runtime's key ("runtime_key").
FORMAT_VERSION = 3
FOOTER_MAGIC = b"LLBUNDLE"
FOOTER = struct.Struct("<8sIIQQ")  # magic, format, crc32(manifest), offset, length
MAX_MANIFEST = 16 * 1024 * 1024
CHECKSUM = "xxh3-128"


@dataclass(frozen=True)
class Footer:
    format: int
    crc: int
    manifest_offset: int
    manifest_length: int

    def pack(self) -> bytes:
        return FOOTER.pack(FOOTER_MAGIC, self.format, self.crc, self.manifest_offset,
                           self.manifest_length)

    @classmethod
    def unpack(cls, data: bytes, where: str) -> Footer:
        magic, fmt, crc, offset, length = FOOTER.unpack(data)
        if magic != FOOTER_MAGIC:
            raise ArtifactError(f"{where}: not a llamabundle artifact, or truncated (no footer)")
        return cls(fmt, crc, offset, length)


def footer(manifest_offset: int, manifest_bytes: bytes) -> bytes:
    return Footer(FORMAT_VERSION, zlib.crc32(manifest_bytes), manifest_offset,
                  len(manifest_bytes)).pack()


def align(offset: int) -> int:
    return -(-offset // ALIGNMENT) * ALIGNMENT


def new_checksum(algorithm: str = CHECKSUM) -> Any:
    """The hash behind `--verify`. XXH3 rather than SHA-256: it hashes at memory speed (~10x
    SHA-256 on a CPU without SHA extensions), so `build` keeps up with `cp`. It finds
    corruption, which is what --verify promises; being unforgeable would need a signature.
    SHA-256 is still read: format-1 artifacts carry it."""
    if algorithm == CHECKSUM:
        return xxhash.xxh3_128()
    if algorithm == "sha256":
        return hashlib.sha256()
    raise ArtifactError(f"unknown checksum algorithm {algorithm!r}")


def checksum_text(digest: Any) -> str:
    name = CHECKSUM if isinstance(digest, xxhash.xxh3_128) else digest.name
    return f"{name}:{digest.hexdigest()}"
