"""Prepares the CPU code in an unpacked llama-cpp-python sdist: which variants, which kernels.

1. Keeps only the chosen x86 CPU variants. llama.cpp's GGML_CPU_ALL_VARIANTS compiles its CPU
   backend once per variant (14 on x86) and has no option to pick a subset; each variant is a
   full compile of ggml-cpu (~1.5 min on 2 cores). This rewrites the list in
   vendor/llama.cpp/ggml/src/CMakeLists.txt.
2. On AMD CPUs, small batches of the 4-/5-/8-bit "type 0" quantizations (Q4_0, Q5_0, Q8_0,
   IQ4_NL) go to ggml's own dot products instead of llamafile's tinyBLAS tiles. Upstream sends
   every batch of 2 or more rows there (`llamafile_sgemm`), which is right for prompts; for a
   decode step of a few sequences on an AMD EPYC (Zen 4), tinyBLAS' x86 kernel was slower per
   row than the dot product below 8 rows, and its 4-wide tiles on AVX-512 take a second pass
   over the whole weight matrix when the rows are not a multiple of 4. Small models keep their
   big matrices in exactly these types (the Gemma 3 270M demo's tied output: Q8_0; Qwen2.5
   0.5B's layers: Q5_0): one llama_decode of 4 Gemma sequences took 28.5 ms against 32.3
   there. On an Intel Xeon (Ice Lake-SP) the same change made that step 1.54x slower, so the
   choice is made when the CPU code first runs, from the CPU's vendor (cpuid): AMD, dot
   products below 8 rows (AVX-512 variants) or 4 (the others); any other vendor, upstream's
   rule. The variable LLAMABUNDLE_DOT_PRODUCT_ROWS overrides it, so that one build can be
   measured both ways (`python -m bench.batch_decode --rows`). Measured per variant and CPU:
   bench/results/small-batch-kernels*.md.

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
    // llamabundle (scripts/cpu_variants.py): on AMD CPUs, small batches of these types are
    // faster in ggml's own dot products than in tinyBLAS' tiles; on Intel's, not. Chosen once,
    // from the CPU's vendor; LLAMABUNDLE_DOT_PRODUCT_ROWS (a row count, 0: upstream's choice)
    // overrides it, for benchmarks.
    static const int64_t llamabundle_dot_product_rows = [] {
        if (const char * rows = getenv("LLAMABUNDLE_DOT_PRODUCT_ROWS"))
            return (int64_t) atoi(rows);
        __builtin_cpu_init();
#if defined(__AVX512F__)
        return (int64_t) (__builtin_cpu_is("amd") ? 8 : 0);
#else
        return (int64_t) (__builtin_cpu_is("amd") ? 4 : 0);
#endif
    }();
    if ((Atype == GGML_TYPE_Q8_0 || Atype == GGML_TYPE_Q4_0 || Atype == GGML_TYPE_Q5_0 ||
         Atype == GGML_TYPE_IQ4_NL) &&
        n < llamabundle_dot_product_rows)
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
    print(f"llama.cpp CPU variants: {' '.join(keep)}; small type-0 batches on AMD: "
          "dot products")


if __name__ == "__main__":
    main()
