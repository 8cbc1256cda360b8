"""Test helpers: a GGUF split the way llama.cpp's `gguf-split --split` writes it (read with the
`gguf` package, written byte by byte), and `gguf-split --merge`'s header made by llama.cpp's own
gguf library (libggml-base, shipped with llama-cpp-python) through ctypes."""

from __future__ import annotations

import ctypes
import struct
from pathlib import Path

import numpy as np
from gguf import GGUFReader

ALIGN = 32  # GGUF_DEFAULT_ALIGNMENT: gguf-split pads every tensor to it


def split_gguf(source: Path, prefix: Path, sizes: list[int]) -> list[Path]:
    """Writes `prefix`-0000i-of-0000n.gguf, part i holding the next sizes[i] tensors.

    KV order as gguf-split leaves it: the model's KVs (first part only), then split.no,
    split.tensors.count and split.count (gguf_set_val re-appends split.count when it is set
    the second time)."""
    reader = GGUFReader(str(source))
    assert sum(sizes) == len(reader.tensors)
    kvs = [b"".join(p.tobytes() for p in f.parts) for name, f in reader.fields.items()
           if not name.startswith("GGUF.")]
    paths, start = [], 0
    for i, n in enumerate(sizes):
        records = (kvs if i == 0 else []) + [
            _kv("split.no", 2, struct.pack("<H", i)),
            _kv("split.tensors.count", 5, struct.pack("<i", len(reader.tensors))),
            _kv("split.count", 2, struct.pack("<H", len(sizes)))]
        path = prefix.with_name(f"{prefix.name}-{i + 1:05d}-of-{len(sizes):05d}.gguf")
        _write_part(path, records, reader.tensors[start:start + n])
        paths.append(path)
        start += n
    return paths


def _kv(key: str, kind: int, value: bytes) -> bytes:
    return struct.pack("<Q", len(key)) + key.encode() + struct.pack("<I", kind) + value


def _write_part(path: Path, records: list[bytes], tensors: list) -> None:
    infos, data, offset = [], [], 0
    for t in tensors:
        name, dims = t.name.encode(), t.field.parts[3]
        infos.append(struct.pack("<Q", len(name)) + name + struct.pack("<I", len(dims))
                     + dims.tobytes() + struct.pack("<IQ", int(t.tensor_type), offset))
        raw = np.asarray(t.data).tobytes()
        pad = -len(raw) % ALIGN
        data.append(raw + bytes(pad))
        offset += len(raw) + pad
    head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(records))
    head += b"".join(records) + b"".join(infos)
    head += bytes(-len(head) % ALIGN)
    path.write_bytes(head + b"".join(data))


class _InitParams(ctypes.Structure):
    _fields_ = [("no_alloc", ctypes.c_bool), ("ctx", ctypes.POINTER(ctypes.c_void_p))]


def gguf_split_merge_header(first: Path, parts: list[Path]) -> bytes:
    """The header `gguf-split --merge` writes, made by the same calls it makes
    (tools/gguf-split/gguf-split.cpp, gguf_merge) in llama.cpp's gguf library."""
    import llama_cpp

    lib = ctypes.CDLL(str(Path(llama_cpp.__file__).parent / "lib" / "libggml-base.so"))
    vp, cp = ctypes.c_void_p, ctypes.c_char_p
    lib.gguf_init_from_file.restype = vp
    lib.gguf_init_from_file.argtypes = [cp, _InitParams]
    lib.gguf_init_empty.restype = vp
    lib.gguf_set_val_u16.argtypes = [vp, cp, ctypes.c_uint16]
    lib.gguf_set_kv.argtypes = [vp, vp]
    lib.gguf_get_n_tensors.restype = ctypes.c_int64
    lib.gguf_get_n_tensors.argtypes = [vp]
    lib.gguf_get_tensor_name.restype = cp
    lib.gguf_get_tensor_name.argtypes = [vp, ctypes.c_int64]
    lib.ggml_get_tensor.restype = vp
    lib.ggml_get_tensor.argtypes = [vp, cp]
    lib.gguf_add_tensor.argtypes = [vp, vp]
    lib.gguf_get_meta_size.restype = ctypes.c_size_t
    lib.gguf_get_meta_size.argtypes = [vp]
    lib.gguf_get_meta_data.argtypes = [vp, vp]
    out = lib.gguf_init_empty()
    for i, part in enumerate(parts):
        meta = ctypes.c_void_p()
        ctx = lib.gguf_init_from_file(str(part).encode(), _InitParams(True, ctypes.pointer(meta)))
        assert ctx, part
        if i == 0:
            lib.gguf_set_val_u16(ctx, b"split.count", 0)
            lib.gguf_set_kv(out, ctx)
        for t in range(lib.gguf_get_n_tensors(ctx)):
            lib.gguf_add_tensor(out, lib.ggml_get_tensor(meta, lib.gguf_get_tensor_name(ctx, t)))
    buffer = ctypes.create_string_buffer(lib.gguf_get_meta_size(out))
    lib.gguf_get_meta_data(out, buffer)
    return buffer.raw
