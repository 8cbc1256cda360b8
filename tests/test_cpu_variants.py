"""How llama.cpp's CPU code is prepared before it is compiled (scripts/cpu_variants.py), and
that a batch of several sequences decodes what each sequence decodes alone."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("cpu_variants", ROOT / "scripts" / "cpu_variants.py")
assert spec and spec.loader
cpu_variants = importlib.util.module_from_spec(spec)
spec.loader.exec_module(cpu_variants)

CMAKE = """if (GGML_CPU_ALL_VARIANTS)
    if (GGML_SYSTEM_ARCH STREQUAL "x86")
        ggml_add_cpu_backend_variant(x64)
        ggml_add_cpu_backend_variant(haswell            SSE42 AVX F16C FMA AVX2 BMI2)
        ggml_add_cpu_backend_variant(icelake            SSE42 AVX F16C AVX2 AVX512)
    elseif(GGML_SYSTEM_ARCH STREQUAL "ARM")
        ggml_add_cpu_backend_variant(armv8.0_1)
"""

SGEMM = """    if (n < 2)
        return false;
#endif

    if (Ctype != GGML_TYPE_F32)
        return false;

    switch (Atype) {

    case GGML_TYPE_F32: {
"""


def test_only_the_chosen_variants_are_kept():
    out = cpu_variants.keep_variants(CMAKE, ["x64", "icelake"])
    assert "variant(x64)" in out and "variant(icelake" in out and "haswell" not in out
    assert "armv8.0_1" in out  # other architectures are left alone


def test_an_unknown_variant_stops_the_build():
    with pytest.raises(SystemExit, match="unknown variants"):
        cpu_variants.keep_variants(CMAKE, ["x64", "zen9"])


def test_small_type0_batches_are_sent_to_the_dot_products_before_the_type_switch():
    out = cpu_variants.small_batches_to_dot_products(SGEMM)
    guard = out.index("Atype == GGML_TYPE_Q8_0")
    assert out.index("if (Ctype != GGML_TYPE_F32)") < guard < out.index("switch (Atype)")
    assert "n < llamabundle_dot_product_rows" in out
    # AMD only: 8 rows in AVX-512 builds, 4 in the others; upstream's rule (0) elsewhere
    assert '__builtin_cpu_is("amd") ? 8 : 0' in out and '__builtin_cpu_is("amd") ? 4 : 0' in out
    assert 'getenv("LLAMABUNDLE_DOT_PRODUCT_ROWS")' in out  # benchmarks measure both ways
    added = out.replace(SGEMM.split("    switch")[0].rstrip(), "", 1)
    assert added.count("#if") == added.count("#endif") == 2  # balanced


def test_a_changed_sgemm_stops_the_build():
    with pytest.raises(SystemExit, match="not where it was"):
        cpu_variants.small_batches_to_dot_products(SGEMM.replace("switch (Atype)", "switch (A)"))


@pytest.mark.parametrize("rows", ["", "0", "8"])
def test_sequences_batched_together_decode_what_each_decodes_alone(demo_model, rows):
    """The demo model's big matrices are Q8_0 and Q5_0: a batch of 2, 3 or 4 sequences goes
    through tinyBLAS' tiles or through ggml's dot products (LLAMABUNDLE_DOT_PRODUCT_ROWS: "0"
    the tiles, "8" the dot products, unset what this CPU's vendor gets), a single sequence
    through the dot products one row at a time. Each sequence's next-token logits must be the
    same either way. Its own process each: the choice is read once per process."""
    env = {k: v for k, v in os.environ.items() if k != "LLAMABUNDLE_DOT_PRODUCT_ROWS"}
    if rows:
        env["LLAMABUNDLE_DOT_PRODUCT_ROWS"] = rows
    script = (f"import sys; sys.path[:0] = [{str(ROOT)!r}, {str(ROOT / 'tests')!r}]; "
              f"import test_cpu_variants as t; t.batched_and_alone({str(demo_model)!r})")
    run = subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "batched == alone for 2, 3, 4 sequences" in run.stdout


def batched_and_alone(demo_model: str) -> None:
    from runtime.llama import cpu
    from runtime.llama import model as llama_model
    from runtime.llama.bindings import llama_cpp

    cpu.load()
    llama_cpp.llama_backend_init()
    mdl = llama_model.load_model(demo_model, 0)
    tokenizer = llama_model.Tokenizer(mdl)
    prompts = [tokenizer.tokenize(f"The {word} is") for word in ("sea", "sky", "forest", "city")]
    n_vocab = tokenizer.n_vocab

    def last_logits(sequences: list[list[int]]) -> list[np.ndarray]:
        """Reads every prompt but its last token one sequence at a time, then the last tokens
        of all sequences in one batch."""
        ctx = llama_model.new_context(mdl, 512, 2, n_seq=len(sequences))
        batch = llama_cpp.llama_batch_init(64, 0, len(sequences))
        try:
            for seq, tokens in enumerate(sequences):
                batch.n_tokens = len(tokens) - 1
                for i, token in enumerate(tokens[:-1]):
                    batch.token[i], batch.pos[i], batch.n_seq_id[i] = token, i, 1
                    batch.seq_id[i][0], batch.logits[i] = seq, False
                assert llama_cpp.llama_decode(ctx, batch) == 0
            batch.n_tokens = len(sequences)
            for seq, tokens in enumerate(sequences):
                batch.token[seq], batch.pos[seq] = tokens[-1], len(tokens) - 1
                batch.n_seq_id[seq], batch.seq_id[seq][0], batch.logits[seq] = 1, seq, True
            assert llama_cpp.llama_decode(ctx, batch) == 0
            return [np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, seq),
                                          shape=(n_vocab,)).copy()
                    for seq in range(len(sequences))]
        finally:
            llama_cpp.llama_batch_free(batch)
            llama_cpp.llama_free(ctx)

    try:
        alone = [last_logits([p])[0] for p in prompts]
        for n in (2, 3, 4):
            together = last_logits(prompts[:n])
            for seq in range(n):
                a, b = alone[seq], together[seq]
                assert a.argmax() == b.argmax()
                assert np.abs(a - b).max() < 0.05 * np.abs(a).max()
        print("batched == alone for 2, 3, 4 sequences")
    finally:
        llama_cpp.llama_model_free(mdl)
