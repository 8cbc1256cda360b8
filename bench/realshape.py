"""Benchmark models of the shapes people download: Qwen2.5 1.5B/3B, quantized to Q4_K_M.

Speed depends on shapes and tensor types, not on the weights' values, so the weights are
random; what makes these differ from the demo model and Qwen2.5-Coder-0.5B is that their hidden
sizes (1536, 2048) are multiples of 256, so Q4_K_M really holds Q4_K and Q6_K tensors and the
k-quant kernels do the work. The tokenizer (151,936 tokens, BPE merges, Qwen's pre-tokenizer
and chat template) is copied from the Qwen2.5-Coder-0.5B-Instruct GGUF the tests already
fetch, so prompts tokenize as they would with the real model.

The F16 model is written with the `gguf` package, then quantized by llama.cpp's own quantizer
(`llama_model_quantize`, as `llama-quantize` does). The result is cached under
`${XDG_CACHE_HOME:-~/.cache}/llamabundle/bench-models/`, keyed by the shape, the seed and the
llama.cpp version. `python -m bench.realshape [1.5b|3b]` prints its path.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import os
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Shape:
    name: str
    n_embd: int
    n_layer: int
    n_head: int
    n_head_kv: int
    n_ff: int
    n_vocab: int = 151_936
    n_ctx_train: int = 32_768
    rope_theta: float = 1_000_000.0
    rms_eps: float = 1e-6


# Qwen2.5-1.5B-Instruct and Qwen2.5-3B-Instruct as published (config.json); both tie the
# output matrix to the token embedding.
SHAPES = {
    "1.5b": Shape("Qwen2.5-1.5B shape (random weights)", 1536, 28, 12, 2, 8960),
    "3b": Shape("Qwen2.5-3B shape (random weights)", 2048, 36, 16, 2, 11008),
}
Q4_K_M = 15  # llama_ftype LLAMA_FTYPE_MOSTLY_Q4_K_M
SEED = 0


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "llamabundle" / "bench-models"


def key(shape: Shape) -> str:
    text = json.dumps([asdict(shape), SEED, Q4_K_M, importlib.metadata.version("llama_cpp_python")])
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def ensure(size: str = "1.5b", tokenizer_from: Path | None = None) -> Path:
    """The Q4_K_M model of that shape, made once per key."""
    shape = SHAPES[size]
    target = cache_dir() / f"qwen2.5-{size}-shape-q4_k_m-{key(shape)}.gguf"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    source = tokenizer_from or _instruct_gguf()
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        f16 = Path(tmp) / "f16.gguf"
        write_f16(shape, source, f16)
        partial = Path(tmp) / "q4_k_m.gguf"
        quantize(f16, partial)
        os.replace(partial, target)
    return target


def _instruct_gguf() -> Path:
    sys.path.insert(0, str(REPO / "tests"))
    from instruct_model import instruct_model

    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return instruct_model(Path(base))


def write_f16(shape: Shape, tokenizer_from: Path, path: Path) -> None:
    from gguf import GGUFReader, GGUFWriter

    reader = GGUFReader(str(tokenizer_from))
    writer = GGUFWriter(str(path), "qwen2")
    writer.add_name(shape.name)
    writer.add_context_length(shape.n_ctx_train)
    writer.add_embedding_length(shape.n_embd)
    writer.add_block_count(shape.n_layer)
    writer.add_feed_forward_length(shape.n_ff)
    writer.add_head_count(shape.n_head)
    writer.add_head_count_kv(shape.n_head_kv)
    writer.add_rope_freq_base(shape.rope_theta)
    writer.add_layer_norm_rms_eps(shape.rms_eps)
    writer.add_file_type(1)  # F16
    _copy_tokenizer(reader, writer, shape.n_vocab)
    rng = np.random.default_rng(SEED)
    head = shape.n_embd // shape.n_head
    kv = head * shape.n_head_kv

    def matrix(name: str, rows: int, cols: int) -> None:
        # std 0.02, as models are initialised: activations stay finite over 28-36 layers
        writer.add_tensor(name, (rng.standard_normal((rows, cols), dtype=np.float32)
                                 * 0.02).astype(np.float16))

    def vector(name: str, n: int, value: float | None = None) -> None:
        data = (np.full(n, value, dtype=np.float32) if value is not None
                else rng.standard_normal(n, dtype=np.float32) * 0.02)
        writer.add_tensor(name, data)

    matrix("token_embd.weight", shape.n_vocab, shape.n_embd)
    for i in range(shape.n_layer):
        b = f"blk.{i}"
        vector(f"{b}.attn_norm.weight", shape.n_embd, 1.0)
        matrix(f"{b}.attn_q.weight", shape.n_embd, shape.n_embd)
        vector(f"{b}.attn_q.bias", shape.n_embd)
        matrix(f"{b}.attn_k.weight", kv, shape.n_embd)
        vector(f"{b}.attn_k.bias", kv)
        matrix(f"{b}.attn_v.weight", kv, shape.n_embd)
        vector(f"{b}.attn_v.bias", kv)
        matrix(f"{b}.attn_output.weight", shape.n_embd, shape.n_embd)
        vector(f"{b}.ffn_norm.weight", shape.n_embd, 1.0)
        matrix(f"{b}.ffn_gate.weight", shape.n_ff, shape.n_embd)
        matrix(f"{b}.ffn_up.weight", shape.n_ff, shape.n_embd)
        matrix(f"{b}.ffn_down.weight", shape.n_embd, shape.n_ff)
    vector("output_norm.weight", shape.n_embd, 1.0)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _copy_tokenizer(reader, writer, n_vocab: int) -> None:  # type: ignore[no-untyped-def]
    """Every tokenizer.* field of the source, as it is (the token list is padded to n_vocab
    with unused tokens, as Qwen's own GGUFs are: 151,665 real tokens in a 151,936 matrix)."""
    from gguf import GGUFValueType

    for field in reader.fields.values():
        if not field.name.startswith("tokenizer."):
            continue
        kind = field.types[0]
        if kind == GGUFValueType.ARRAY:
            values = list(field.contents())
            if field.name == "tokenizer.ggml.tokens":
                values += [f"[PAD{i}]" for i in range(len(values), n_vocab)]
            elif field.name == "tokenizer.ggml.token_type":
                values += [3] * (n_vocab - len(values))  # CONTROL, never produced by text
            writer.add_array(field.name, values)
        else:
            writer.add_key_value(field.name, field.contents(), kind)


def quantize(src: Path, dst: Path) -> None:
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = Q4_K_M
    params.nthread = os.cpu_count() or 2
    if llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), params) != 0:
        raise RuntimeError(f"llama_model_quantize failed for {src}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.realshape",
                                description=__doc__.splitlines()[0])
    p.add_argument("size", nargs="?", default="1.5b", choices=sorted(SHAPES))
    print(ensure(p.parse_args(argv).size))
    return 0


if __name__ == "__main__":
    sys.exit(main())
