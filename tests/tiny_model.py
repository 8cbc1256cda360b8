"""A tiny random-weight llama GGUF written with the `gguf` package: llama.cpp loads and runs it
in milliseconds, so fast tests need no downloaded model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from gguf import GGUFWriter, TokenType

N_EMBD, N_HEAD, N_FF, N_LAYER, N_CTX = 64, 4, 128, 2, 512
WORDS = ["hello", "world", "the", "cat", "sat", "on", "mat", "a", "dog", "ran", "fast",
         "and", "then", "slept", "is", "good", "yes", "no", "maybe", "sun", "moon"]


def vocab(long_pieces: int = 0) -> tuple[list[bytes], list[float], list[int]]:
    tokens = [b"<unk>", b"<s>", b"</s>"]
    types = [TokenType.UNKNOWN, TokenType.CONTROL, TokenType.CONTROL]
    for b in range(256):
        tokens.append(f"<0x{b:02X}>".encode())
        types.append(TokenType.BYTE)
    # SentencePiece merges pieces pairwise, so every prefix of "▁word" must be a piece too.
    pieces = ["\u2581", *"abcdefghijklmnopqrstuvwxyz.,!?"]
    for word in WORDS:
        for end in range(2, len(word) + 2):
            if ("\u2581" + word)[:end] not in pieces:
                pieces.append(("\u2581" + word)[:end])
    # pieces of 500 characters: a model that writes tens of thousands of characters in a few
    # hundred tokens (what a long answer does to code that keeps the answer's text)
    pieces += [f"\u2581{i:03d}" + "x" * 496 for i in range(long_pieces)]
    for piece in pieces:
        tokens.append(piece.encode())
        types.append(TokenType.NORMAL)
    # longer pieces score higher, so whole words win over letters
    scores = [0.0] * 3 + [-1000.0] * 256 + [float(len(t)) for t in tokens[259:]]
    return tokens, scores, [int(t) for t in types]


def make_tiny_gguf(path: Path, *, name: str = "Tiny Test", chat_template: str | None = None,
                   seed: int = 0, long_pieces: int = 0, ends_at_once: bool = False) -> Path:
    """ends_at_once: a model whose likeliest next token is always the end of text "</s>" (a
    large constant in every token's embedding, which only that token's output row reads, and
    layers that add nothing)."""
    rng = np.random.default_rng(seed)
    tokens, scores, types = vocab(long_pieces)
    writer = GGUFWriter(str(path), "llama")
    writer.add_name(name)
    writer.add_context_length(N_CTX)
    writer.add_embedding_length(N_EMBD)
    writer.add_block_count(N_LAYER)
    writer.add_feed_forward_length(N_FF)
    writer.add_head_count(N_HEAD)
    writer.add_head_count_kv(N_HEAD)
    writer.add_rope_dimension_count(N_EMBD // N_HEAD)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(0)  # all F32
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)
    if chat_template is not None:
        writer.add_chat_template(chat_template)

    def tensor(name: str, *shape: int, ends: float = 0.0) -> None:
        weights = (rng.standard_normal(shape) * 0.5).astype(np.float32)
        if ends_at_once:  # the layers add nothing; the first dimension means the end
            if name.startswith("blk."):
                weights[:] = 0.0
            weights[:, 0] = ends
            if name == "output.weight":
                weights[2, 0] = 10.0
        writer.add_tensor(name, weights)

    n_vocab = len(tokens)
    tensor("token_embd.weight", n_vocab, N_EMBD, ends=8.0)
    for i in range(N_LAYER):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(N_EMBD, dtype=np.float32))
        for part in ("attn_q", "attn_k", "attn_v", "attn_output"):
            tensor(f"blk.{i}.{part}.weight", N_EMBD, N_EMBD)
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(N_EMBD, dtype=np.float32))
        tensor(f"blk.{i}.ffn_gate.weight", N_FF, N_EMBD)
        tensor(f"blk.{i}.ffn_up.weight", N_FF, N_EMBD)
        tensor(f"blk.{i}.ffn_down.weight", N_EMBD, N_FF)
    writer.add_tensor("output_norm.weight", np.ones(N_EMBD, dtype=np.float32))
    tensor("output.weight", n_vocab, N_EMBD)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
