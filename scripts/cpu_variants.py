"""Keeps only the chosen x86 CPU variants in an unpacked llama-cpp-python sdist.

llama.cpp's GGML_CPU_ALL_VARIANTS compiles its CPU backend once per variant (14 on x86) and has
no option to pick a subset; each variant is a full compile of ggml-cpu (~1.5 min on 2 cores).
This rewrites the list in vendor/llama.cpp/ggml/src/CMakeLists.txt, and fails loudly when the
list is not where it was, so that a new llama.cpp version is looked at rather than built blind.

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


def main() -> None:
    source, keep = Path(sys.argv[1]), sys.argv[2:]
    if not keep:
        raise SystemExit("usage: cpu_variants.py SDIST_DIR VARIANT...")
    path = source / "vendor" / "llama.cpp" / "ggml" / "src" / "CMakeLists.txt"
    path.write_text(keep_variants(path.read_text(), keep))
    print(f"llama.cpp CPU variants: {' '.join(keep)}")


if __name__ == "__main__":
    main()
