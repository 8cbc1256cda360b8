"""Reads and validates a GGUF before anything is written.

The `gguf` package supplies the format's definitions (value types, quantization block sizes,
file types, supported versions); the walk over the header is ours. GGUFReader builds a numpy
view for every element of every array, which takes ~9 s for Gemma 3's 262k-token vocabulary:
a build must take about as long as `cp`. This walk skips what it does not need and checks
every offset against the file's size, so a truncated or damaged file fails here, not in
llama.cpp.
"""

from __future__ import annotations

import importlib.util
import mmap
import struct
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from runtime.errors import InvalidModelError


def _gguf_constants() -> ModuleType:
    # gguf/constants.py alone (it imports only enum and typing): `import gguf` also loads its
    # reader, writer and numpy, 0.3 s, longer than copying a small model takes.
    package = importlib.util.find_spec("gguf")
    assert package and package.origin
    name = "_llamabundle_gguf_constants"
    spec = importlib.util.spec_from_file_location(name, Path(package.origin).parent
                                                  / "constants.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # enum needs its module registered while the class is made
    spec.loader.exec_module(module)
    return module


_gguf = _gguf_constants()
GGML_QUANT_SIZES = _gguf.GGML_QUANT_SIZES
GGUF_DEFAULT_ALIGNMENT = _gguf.GGUF_DEFAULT_ALIGNMENT
GGMLQuantizationType = _gguf.GGMLQuantizationType
GGUFValueType = _gguf.GGUFValueType
LlamaFileType = _gguf.LlamaFileType
READER_SUPPORTED_VERSIONS = [2, _gguf.GGUF_VERSION]  # as gguf/gguf_reader.py has it

SCALARS = {GGUFValueType.UINT8: "B", GGUFValueType.INT8: "b", GGUFValueType.UINT16: "H",
           GGUFValueType.INT16: "h", GGUFValueType.UINT32: "I", GGUFValueType.INT32: "i",
           GGUFValueType.FLOAT32: "f", GGUFValueType.BOOL: "?", GGUFValueType.UINT64: "Q",
           GGUFValueType.INT64: "q", GGUFValueType.FLOAT64: "d"}
WANTED = ("general.name", "general.architecture", "general.file_type", "general.alignment",
          "tokenizer.chat_template", "split.no", "split.count", "split.tensors.count")
SPLIT_KEYS = ("split.no", "split.count", "split.tensors.count")  # llama.cpp's gguf-split


@dataclass
class ModelInfo:
    path: Path
    size: int
    name: str
    architecture: str
    parameters: int
    quantization: str
    context_length: int | None
    chat_template: str | None
    tensors: int


@dataclass
class Tensor:
    name: str
    shape: tuple[int, ...]
    kind: int  # GGMLQuantizationType
    offset: int  # from the start of the data section
    nbytes: int

    @property
    def elements(self) -> int:
        count = 1
        for n in self.shape:
            count *= n
        return count


@dataclass
class Header:
    """One GGUF file's header, walked: what merging split parts needs to rewrite it."""

    path: Path
    size: int
    version: int
    kvs: list[tuple[str, int, int]]  # key, and the record's [start, end) bytes in the file
    meta: dict[str, Any]  # the values of WANTED keys (others are None)
    tensors: list[Tensor]
    alignment: int
    data_start: int

    @property
    def split_count(self) -> int:
        """How many parts the model is split into (0 or 1: not split)."""
        return int(self.meta.get("split.count") or 0)


_U64 = struct.Struct("<Q")


class _Damaged(Exception):
    pass


class _Cursor:
    def __init__(self, data: mmap.mmap):
        self.data = data
        self.pos = 0

    def take(self, fmt: str) -> Any:
        size = struct.calcsize("<" + fmt)
        if self.pos + size > len(self.data):
            raise _Damaged(f"ends inside the header at byte {self.pos}")
        value = struct.unpack_from("<" + fmt, self.data, self.pos)[0]
        self.pos += size
        return value

    def string(self) -> str:
        n = self.take("Q")
        if self.pos + n > len(self.data):
            raise _Damaged(f"ends inside a string at byte {self.pos}")
        text = bytes(self.data[self.pos:self.pos + n]).decode("utf-8", errors="replace")
        self.pos += n
        return text

    def skip_string(self) -> None:
        n = self.take("Q")
        self.pos += n

    def skip_strings(self, count: int) -> None:
        # A vocabulary is one such array (262k strings for Gemma 3): the loop is kept bare.
        length = _U64.unpack_from
        data, pos, end = self.data, self.pos, len(self.data) - 8
        for _ in range(count):
            if pos > end:
                raise _Damaged(f"ends inside a string array at byte {pos}")
            pos += 8 + length(data, pos)[0]
        self.pos = pos

    def value(self, kind: int, keep: bool) -> Any:
        if kind == GGUFValueType.STRING:
            return self.string() if keep else self.skip_string()
        if kind == GGUFValueType.ARRAY:
            item, count = self.take("I"), self.take("Q")
            if item in SCALARS:
                self.pos += count * struct.calcsize(SCALARS[GGUFValueType(item)])
            elif item == GGUFValueType.STRING:
                self.skip_strings(count)
            else:
                for _ in range(count):
                    self.value(item, keep=False)
            return None
        if kind not in SCALARS:
            raise _Damaged(f"unknown value type {kind} at byte {self.pos}")
        return self.take(SCALARS[GGUFValueType(kind)])


def read_model(path: Path) -> ModelInfo:
    """Validates `path` as a complete GGUF; raises InvalidModelError with one clear line.

    A part of a split model is refused here (the rest of the model would be missing): the
    split-aware entry is bundler.gguf_split.read_split_model."""
    header = read_header(path)
    if header.split_count > 1:
        no = int(header.meta.get("split.no") or 0)
        raise InvalidModelError(f"{path}: part {no + 1} of a GGUF split into "
                                f"{header.split_count}; it must be merged with its other parts")
    return describe([header], header.size)


def read_header(path: Path) -> Header:
    """Walks and checks one GGUF file's header (a split part may hold no tensors)."""
    size = _check_file(path)
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        if data[:4] != b"GGUF":
            raise InvalidModelError(f"{path}: not a GGUF file (magic {bytes(data[:4])!r})")
        try:
            return _walk(path, size, _Cursor(data))
        except (_Damaged, ValueError, OverflowError) as e:
            raise InvalidModelError(f"{path}: damaged or truncated GGUF ({e})") from None


def _walk(path: Path, size: int, cur: _Cursor) -> Header:
    cur.pos = 4
    version = cur.take("I")
    if version not in READER_SUPPORTED_VERSIONS:
        raise InvalidModelError(f"{path}: GGUF version {version} is not supported "
                                f"(supported: {', '.join(map(str, READER_SUPPORTED_VERSIONS))})")
    n_tensors, n_kv = cur.take("Q"), cur.take("Q")
    meta: dict[str, Any] = {}
    kvs = []
    for _ in range(n_kv):
        start = cur.pos
        key = cur.string()
        keep = key in WANTED or key.endswith(".context_length")
        meta[key] = cur.value(cur.take("I"), keep)
        kvs.append((key, start, cur.pos))
    tensors = [_tensor_info(cur) for _ in range(n_tensors)]
    alignment = meta.get("general.alignment") or GGUF_DEFAULT_ALIGNMENT
    data_start = -(-cur.pos // alignment) * alignment
    end = max((data_start + t.offset + t.nbytes for t in tensors), default=cur.pos)
    if end > size:
        raise InvalidModelError(f"{path}: truncated GGUF ({size} bytes, tensor data needs {end})")
    return Header(path, size, version, kvs, meta, tensors, alignment, data_start)


def _tensor_info(cur: _Cursor) -> Tensor:
    name = cur.string()
    n_dims = cur.take("I")
    if not 1 <= n_dims <= 4:
        raise _Damaged(f"tensor with {n_dims} dimensions")
    shape = tuple(cur.take("Q") for _ in range(n_dims))
    kind = GGMLQuantizationType(cur.take("I"))
    block, type_size = GGML_QUANT_SIZES[kind]
    tensor = Tensor(name, shape, int(kind), cur.take("Q"), 0)
    tensor.nbytes = tensor.elements // block * type_size
    return tensor


def _check_file(path: Path) -> int:
    try:
        if path.is_dir():
            raise InvalidModelError(f"{path}: is a directory, not a GGUF file")
        with open(path, "rb"):
            pass
        size = path.stat().st_size
    except OSError as e:
        raise InvalidModelError(f"{path}: cannot read ({e.strerror})") from None
    if size == 0:
        raise InvalidModelError(f"{path}: empty file, not a GGUF model")
    return size


def describe(headers: list[Header], size: int) -> ModelInfo:
    """The model that `headers` (one file, or a split model's parts in order) hold together;
    the metadata is the first part's, as gguf-split writes it."""
    first, path = headers[0].meta, headers[0].path
    tensors = [t for h in headers for t in h.tensors]
    if not tensors:
        raise InvalidModelError(f"{path}: GGUF has no tensors (a vocab-only file?)")
    arch = str(first.get("general.architecture") or "unknown")
    try:
        quant = LlamaFileType(first["general.file_type"]).name.removeprefix("MOSTLY_")
    except (KeyError, ValueError):
        quant = "unknown"
    ctx = first.get(f"{arch}.context_length")
    return ModelInfo(
        path=path, size=size, name=str(first.get("general.name") or path.stem),
        architecture=arch, parameters=sum(t.elements for t in tensors), quantization=quant,
        context_length=int(ctx) if isinstance(ctx, int) else None,
        chat_template=first.get("tokenizer.chat_template"), tensors=len(tensors),
    )
