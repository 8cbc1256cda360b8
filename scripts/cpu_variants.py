"""Prepares the CPU code in an unpacked llama-cpp-python sdist: which variants, which kernels.

1. Keeps only the chosen x86 CPU variants. llama.cpp's GGML_CPU_ALL_VARIANTS compiles its CPU
   backend once per variant (14 on x86) and has no option to pick a subset; each variant is a
   full compile of ggml-cpu (~1.5 min on 2 cores). This rewrites the list in
   vendor/llama.cpp/ggml/src/CMakeLists.txt.
2. Small batches of the 4-/5-/8-bit "type 0" quantizations (Q4_0, Q5_0, Q8_0, IQ4_NL) go to
   ggml's own dot products instead of llamafile's tinyBLAS tiles. Upstream sends every batch of
   2 or more rows there (`llamafile_sgemm`), which is right for prompts and wrong for a decode
   step of a few sequences: tinyBLAS' x86 kernel is slower per row than the dot product below
   8 rows, and its 4-wide tiles on AVX-512 take a second pass over the whole weight matrix when
   the rows are not a multiple of 4. Small models keep their big matrices in exactly these
   types (the Gemma 3 270M demo's tied output: Q8_0; Qwen2.5 0.5B's layers: Q5_0), so one
   llama_decode of 4 sequences took 32.3 ms against 28.5 with this (Gemma, icelake variant),
   and Qwen's 2- and 4-sequence steps 18-20% less; 1 row and prompts (>= 8 rows) are
   unchanged. AVX-512 builds use tinyBLAS from 8 rows, the others (16 vector registers, 2-wide
   tiles: 6 rows were faster in tinyBLAS there) from 4. Measured per variant:
   bench/results/small-batch-kernels.md.

Both fail loudly when the text they change is not where it was, so that a new llama.cpp
version is looked at rather than built blind.

    python scripts/cpu_variants.py SDIST_DIR x64 sse42 haswell ...
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

VARIANT_CALL = re.compile(r"^\s*ggml_add_cpu_backend_variant\((\w+)[\w ]*\)\s*$")
X86_START = 'if (GGML_SYSTEM_ARCH STREQUAL "x86")'
X86_END = 'elseif(GGML_SYSTEM_ARCH STREQUAL "ARM")'


def keep_variants(cmake: str, keep: list[str]) -> str:
    start = cmake.index(X86_START, cmake.index("if (GGML_CPU_ALL_VARIANTS)"))
    end = cmake.index(X86_END, start)
    lines = cmake[start:end].splitlines(keepends=True)
    found: list[str] = []
    out = []
    for line in lines:
        match = VARIANT_CALL.match(line)
        if match:
            name = match.group(1)
            found.append(name)
            if name not in keep:
                continue
        out.append(line)
    missing = sorted(set(keep) - set(found))
    if missing:
        raise SystemExit(f"cpu_variants: unknown variants {missing}; llama.cpp has {found}")
    return cmake[:start] + "".join(out) + cmake[end:]


SGEMM_ANCHOR = """    if (Ctype != GGML_TYPE_F32)
        return false;

    switch (Atype) {
"""
SMALL_BATCHES = """    if (Ctype != GGML_TYPE_F32)
        return false;

#if defined(__AVX__) || defined(__AVX2__) || defined(__AVX512F__)
    // llamabundle (scripts/cpu_variants.py): small batches of these types are faster in
    // ggml's own dot products than in tinyBLAS' tiles on x86.
    if ((Atype == GGML_TYPE_Q8_0 || Atype == GGML_TYPE_Q4_0 || Atype == GGML_TYPE_Q5_0 ||
         Atype == GGML_TYPE_IQ4_NL) &&
#if defined(__AVX512F__)
        n < 8)
#else
        n < 4)
#endif
        return false;
#endif

    switch (Atype) {
"""


def small_batches_to_dot_products(sgemm: str) -> str:
    if sgemm.count(SGEMM_ANCHOR) != 1:
        raise SystemExit("cpu_variants: llamafile_sgemm's type switch is not where it was; "
                         "look at sgemm.cpp before building")
    return sgemm.replace(SGEMM_ANCHOR, SMALL_BATCHES)


def main() -> None:
    source, keep = Path(sys.argv[1]), sys.argv[2:]
    if not keep:
        raise SystemExit("usage: cpu_variants.py SDIST_DIR VARIANT...")
    ggml = source / "vendor" / "llama.cpp" / "ggml" / "src"
    cmake = ggml / "CMakeLists.txt"
    cmake.write_text(keep_variants(cmake.read_text(), keep))
    sgemm = ggml / "ggml-cpu" / "llamafile" / "sgemm.cpp"
    sgemm.write_text(small_batches_to_dot_products(sgemm.read_text()))
    print(f"llama.cpp CPU variants: {' '.join(keep)}; small type-0 batches: dot products")


if __name__ == "__main__":
    main()
