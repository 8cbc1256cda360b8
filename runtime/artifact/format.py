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

On Windows the executable part is a PE file (PyInstaller's Windows bootloader); the rest is the
same. An Authenticode signature added later (signtool, osslsigncode) goes after the footer, at
the end of the file, where the PE header's certificate table points: the footer is then found
just before that table (content_end). A section may also live in a file beside the artifact
(Section.file): Windows refuses to start an .exe of 4 GiB or more, so such a build leaves the
weights out of the .exe (bundler/build.py).

PyInstaller's bootloader finds its archive by scanning backwards from the end of the file for its
cookie, so the archive goes last (only our 32-byte footer follows it): launch never scans the
weights. Nothing else in the file points at the weights; they are found through the manifest.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from dataclasses import dataclass
from typing import Any, BinaryIO

import xxhash

from runtime.errors import ArtifactError

ALIGNMENT = 64 * 1024
# 1: section checksums were SHA-256 ("sha256": hex). 2: "checksum": "<algorithm>:<hex>", XXH3.
# 3: the manifest records the runtime's key ("runtime_key"). 4: a section may be in a file
# beside the artifact ("file"), and the file may be a Windows .exe.
FORMAT_VERSION = 4
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


def content_end(f: BinaryIO, size: int) -> int:
    """Where the artifact's own bytes end (its footer's end): the file's end, or, in a signed
    .exe, the start of the Authenticode certificate table (padded to 8 bytes before it)."""
    f.seek(0)
    head = f.read(4096)
    if head[:2] != b"MZ" or len(head) < 0x40:
        return size
    pe = int.from_bytes(head[0x3C:0x40], "little")
    optional = pe + 24
    if head[pe:pe + 4] != b"PE\0\0" or optional + 2 > len(head):
        return size
    # PE32+ (0x20b): the data directories start 112 bytes in; entry 4 is the certificate table
    # (a file offset, unlike the others, and its size).
    if int.from_bytes(head[optional:optional + 2], "little") != 0x20B:
        return size
    entry = optional + 112 + 4 * 8
    table = int.from_bytes(head[entry:entry + 4], "little")
    if not table or table > size:
        return size
    for end in range(table, max(table - 8, 0) - 1, -1):
        f.seek(end - FOOTER.size)
        if f.read(len(FOOTER_MAGIC)) == FOOTER_MAGIC:
            return end
    return size


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
