"""Reads and validates a GGUF with the `gguf` package before anything is written."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

from gguf import GGUFReader, GGUFValueType, LlamaFileType

from runtime.errors import InvalidModelError


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


def read_model(path: Path) -> ModelInfo:
    """Validates `path` as a complete GGUF; raises InvalidModelError with one clear line."""
    size = _check_file(path)
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != b"GGUF":
        raise InvalidModelError(f"{path}: not a GGUF file (magic {magic!r})")
    try:
        reader = GGUFReader(path)
    except (ValueError, IndexError, KeyError, TypeError, OverflowError, UnicodeDecodeError,
            struct.error, MemoryError) as e:
        raise InvalidModelError(f"{path}: damaged or truncated GGUF ({_reason(e)})") from None
    if not reader.tensors:
        raise InvalidModelError(f"{path}: GGUF has no tensors (a vocab-only file?)")
    end = max(int(t.data_offset) + int(t.n_bytes) for t in reader.tensors)
    if end > size:
        raise InvalidModelError(f"{path}: truncated GGUF ({size} bytes, tensor data needs {end})")
    return _describe(path, size, reader)


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


def _reason(e: Exception) -> str:
    text = str(e) or type(e).__name__
    return text if len(text) < 120 else text[:117] + "..."


def _field(reader: GGUFReader, key: str) -> object | None:
    field = reader.get_field(key)
    if field is None or not field.types:
        return None
    if field.types[0] == GGUFValueType.STRING:
        return bytes(field.parts[field.data[0]]).decode("utf-8", errors="replace")
    if field.types[0] == GGUFValueType.ARRAY:
        return None
    return field.parts[field.data[0]][0].item()


def _describe(path: Path, size: int, reader: GGUFReader) -> ModelInfo:
    arch = str(_field(reader, "general.architecture") or "unknown")
    file_type = _field(reader, "general.file_type")
    try:
        quant = LlamaFileType(int(file_type)).name.removeprefix("MOSTLY_")  # type: ignore[call-overload]
    except (TypeError, ValueError):
        quant = _dominant_type(reader)
    ctx = _field(reader, f"{arch}.context_length")
    return ModelInfo(
        path=path,
        size=size,
        name=str(_field(reader, "general.name") or path.stem),
        architecture=arch,
        parameters=sum(int(t.n_elements) for t in reader.tensors),
        quantization=quant,
        context_length=int(ctx) if isinstance(ctx, (int, float)) else None,
        chat_template=_field(reader, "tokenizer.chat_template"),  # type: ignore[arg-type]
        tensors=len(reader.tensors),
    )


def _dominant_type(reader: GGUFReader) -> str:
    by_bytes: dict[str, int] = {}
    for t in reader.tensors:
        by_bytes[t.tensor_type.name] = by_bytes.get(t.tensor_type.name, 0) + int(t.n_bytes)
    return max(by_bytes, key=by_bytes.__getitem__)
