"""Split GGUFs (llama.cpp's gguf-split format), found, checked and merged into one GGUF.

gguf-split writes `NAME-00001-of-0000N.gguf` ... : every part is a GGUF with the KVs split.no
(u16, 0-based), split.count (u16) and split.tensors.count (i32, over all parts); the first part
holds all the model's metadata, later parts only those three KVs, and each part its own tensors.

The merge is planned, not performed: one new header (the first part's KVs without split.*, every
part's tensor infos with offsets into one data section) and the byte ranges to copy after it, so
the build streams it into the artifact with copy_file_range like any GGUF. The result is the
model exactly as it was before it was split. `gguf-split --merge` differs from it only in
keeping split.no=0, split.tensors.count and split.count=0 (`as_gguf_split=True` keeps them too,
which gives gguf-split's bytes).
"""

from __future__ import annotations

import errno
import os
import re
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from bundler.gguf_info import SPLIT_KEYS, Header, ModelInfo, Tensor, describe, read_header
from runtime.artifact.format import checksum_text, new_checksum
from runtime.errors import BuildError, InvalidModelError

PART_NAME = re.compile(r"^(?P<prefix>.+)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf$")
CHUNK = 64 * 1024 * 1024


@dataclass
class MergePlan:
    header: bytes  # the merged GGUF's header, padded to its data section
    ranges: list[tuple[Path, int, int, int]]  # (part, offset, length, zero bytes after it)
    size: int  # bytes the merged GGUF has


def split_stem(path: Path) -> str:
    """The model's name without gguf-split's -0000N-of-0000M suffix."""
    match = PART_NAME.match(path.name)
    return match["prefix"] if match else path.stem


def find_parts(path: Path) -> list[Header]:
    """The headers of every part of the model `path` starts, in order, checked to belong
    together; [header] for a GGUF that is not split."""
    first = read_header(path)
    if first.split_count <= 1:
        return [first]
    count, no = first.split_count, int(first.meta.get("split.no") or 0)
    match = PART_NAME.match(path.name)
    if no != 0:
        expected = _part_path(path, match, 1, count) if match else "its first part"
        raise InvalidModelError(f"{path}: part {no + 1} of {count} of a split GGUF; "
                                f"give the first part ({expected})")
    if not match or int(match["no"]) != 1 or int(match["count"]) != count:
        raise InvalidModelError(f"{path}: the first part of a GGUF split into {count}, but not "
                                f"named NAME-00001-of-{count:05d}.gguf, so its parts cannot be "
                                "found")
    headers = [first]
    for i in range(2, count + 1):
        part = _part_path(path, match, i, count)
        if not part.exists():
            raise InvalidModelError(f"{path}: part {i} of {count} is missing (no {part.name} "
                                    "beside it)")
        headers.append(read_header(part))
    _check_together(headers)
    return headers


def read_split_model(path: Path) -> tuple[list[Header], ModelInfo]:
    """The parts of the model `path` starts and one ModelInfo for all of them, whose size is
    that of the merged GGUF (what a build writes)."""
    headers = find_parts(path)
    size = headers[0].size if len(headers) == 1 else _plan(headers, False).size
    return headers, describe(headers, size)


def _part_path(path: Path, match: re.Match[str], no: int, count: int) -> Path:
    return path.with_name(f"{match['prefix']}-{no:05d}-of-{count:05d}.gguf")


def _check_together(headers: list[Header]) -> None:
    first = headers[0]
    count, total = first.split_count, first.meta.get("split.tensors.count")
    for i, header in enumerate(headers):
        no, n = header.meta.get("split.no"), header.split_count
        theirs = header.meta.get("split.tensors.count")
        if no != i or n != count or theirs != total:
            raise InvalidModelError(
                f"{header.path}: does not belong with {first.path.name} (it says part "
                f"{_plus_one(no)} of {n} with {theirs} tensors; expected part {i + 1} of "
                f"{count} with {total})")
    tensors = sum(len(h.tensors) for h in headers)
    if tensors != total:
        raise InvalidModelError(f"{first.path}: its {count} parts hold {tensors} tensors, but "
                                f"split.tensors.count says {total}")
    seen: set[str] = set()
    for name in (t.name for h in headers for t in h.tensors):
        if name in seen:
            raise InvalidModelError(f"{first.path}: tensor {name} is in two parts")
        seen.add(name)


def _plus_one(no: Any) -> str:
    return str(no + 1) if isinstance(no, int) else "?"


def plan_merge(parts: list[Path], *, as_gguf_split: bool = False) -> MergePlan:
    """Plans the one GGUF that `parts` (a split model's files in order, or one GGUF) make.

    The data section keeps the first part's alignment (general.alignment, or 32) from the
    GGUF's start, so the weights stay page-mappable once the GGUF sits at an aligned offset."""
    headers = [read_header(p) for p in parts]
    if len(headers) > 1 or headers[0].split_count > 1:
        _check_together(headers)
    return _plan(headers, as_gguf_split)


def _plan(headers: list[Header], as_gguf_split: bool) -> MergePlan:
    first = headers[0]
    alignment = first.alignment
    kvs = _merged_kvs(first, as_gguf_split)
    infos, ranges, offset = [], [], 0
    for header in headers:
        for tensor in header.tensors:
            infos.append(_tensor_record(tensor, offset, as_gguf_split))
            padded = -(-tensor.nbytes // alignment) * alignment
            ranges.append((header.path, header.data_start + tensor.offset, tensor.nbytes,
                           padded - tensor.nbytes))
            offset += padded
    head = b"".join([b"GGUF", struct.pack("<IQQ", first.version, len(infos), len(kvs)), *kvs,
                     *infos])
    head += bytes(-len(head) % alignment)
    return MergePlan(head, ranges, len(head) + offset)


def _merged_kvs(first: Header, as_gguf_split: bool) -> list[bytes]:
    """The merged GGUF's KV records: the first part's, split.* left out
    (or, as gguf-split does, kept with split.count set to 0 and moved last)."""
    with open(first.path, "rb") as f:
        raw = f.read(first.kvs[-1][2]) if first.kvs else b""
    records = [raw[start:end] for key, start, end in first.kvs if key not in SPLIT_KEYS]
    if as_gguf_split and first.split_count:
        split = {key: raw[start:end] for key, start, end in first.kvs if key in SPLIT_KEYS}
        records += [split[k] for k in ("split.no", "split.tensors.count") if k in split]
        records.append(_u16_record("split.count", 0))
    return records


def _u16_record(key: str, value: int) -> bytes:
    name = key.encode()
    return struct.pack("<Q", len(name)) + name + struct.pack("<IH", 2, value)  # 2: UINT16


def _tensor_record(tensor: Tensor, offset: int, as_gguf_split: bool) -> bytes:
    shape = tensor.shape
    if as_gguf_split:  # ggml_n_dims: llama.cpp's writer drops trailing dimensions of 1
        while len(shape) > 1 and shape[-1] == 1:
            shape = shape[:-1]
    name = tensor.name.encode()
    return b"".join([struct.pack("<Q", len(name)), name, struct.pack("<I", len(shape)),
                     struct.pack(f"<{len(shape)}Q", *shape),
                     struct.pack("<IQ", tensor.kind, offset)])


def write_merged(plan: MergePlan, out: BinaryIO, advance: Callable[[int], None]) -> str:
    """Writes the merged GGUF at `out`'s position: the header, then each range copied in the
    kernel (copy_file_range), while a second thread hashes the same bytes from the parts.
    Returns the checksum text (runtime.artifact.format) of exactly the bytes written."""
    digest = new_checksum()
    failure: list[BaseException] = []
    stop = threading.Event()  # set when the copy fails or is interrupted: stop hashing too
    hasher = threading.Thread(target=_hash_plan, args=(plan, digest, failure, stop),
                              daemon=True)
    hasher.start()
    try:
        out.write(plan.header)
        out.flush()
        advance(len(plan.header))
        for path, offset, length, pad in plan.ranges:
            with open(path, "rb") as src:
                copy_range(src, out, offset, length, advance)
            if pad:
                _write_all(out.fileno(), bytes(pad))
                advance(pad)
    except BaseException:
        stop.set()
        raise
    finally:
        hasher.join()
    out.seek(0, os.SEEK_END)  # the copies moved the descriptor, not the buffered writer
    if failure:
        raise BuildError(f"cannot read the model while hashing it ({failure[0]})")
    return checksum_text(digest)


def copy_range(src: BinaryIO, out: BinaryIO, offset: int, length: int,
               advance: Callable[[int], None]) -> None:
    """Copies src[offset:offset+length] to out's position in the kernel (copy_file_range:
    no trip through Python, a reflink where the filesystem has them)."""
    end = offset + length
    while offset < end:
        n = _copy_chunk(src, out, offset, min(CHUNK, end - offset))
        if n == 0:
            raise BuildError(f"{src.name}: changed size while being copied")
        offset += n
        advance(n)


def _copy_chunk(src: BinaryIO, out: BinaryIO, offset: int, length: int) -> int:
    try:
        return os.copy_file_range(src.fileno(), out.fileno(), length, offset)
    except OSError as e:
        # Older kernels refuse across filesystems (EXDEV); some filesystems not at all.
        if e.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
            raise
    data = os.pread(src.fileno(), length, offset)
    _write_all(out.fileno(), data)
    return len(data)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _hash_plan(plan: MergePlan, digest: Any, failure: list[BaseException],
               stop: threading.Event) -> None:
    try:
        digest.update(plan.header)
        for path, offset, length, pad in plan.ranges:
            with open(path, "rb", buffering=0) as f:
                end = offset + length
                while offset < end and not stop.is_set():
                    data = os.pread(f.fileno(), min(CHUNK, end - offset), offset)
                    if not data:
                        raise OSError(f"{path}: shorter than its header says")
                    digest.update(data)
                    offset += len(data)
            digest.update(bytes(pad))
    except OSError as e:
        failure.append(e)
