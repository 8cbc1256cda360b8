"""Makes llama.cpp's vendored sources compile with Debian 12's mingw-w64 (10.0).

mingw-w64 10's headers declare SetThreadInformation(ThreadPowerThrottling, ...), which ggml-cpu.c
calls to keep Windows 11 from parking its threads on efficiency cores, but not the structure it
takes (THREAD_POWER_THROTTLING_STATE) nor its constants. This declares them after ggml-cpu.c's
`#include <windows.h>`, only where the headers lack them, and fails loudly when the include is
not where it was.

    python mingw_shim.py SDIST_DIR
"""

from __future__ import annotations

import sys
from pathlib import Path

ANCHOR = "#include <windows.h>\n"
SHIM = ANCHOR + """#if defined(__MINGW32__) && !defined(THREAD_POWER_THROTTLING_CURRENT_VERSION)
// llamabundle (runtime-package/windows/mingw_shim.py): declarations mingw-w64 10 lacks.
typedef struct _THREAD_POWER_THROTTLING_STATE {
    ULONG Version;
    ULONG ControlMask;
    ULONG StateMask;
} THREAD_POWER_THROTTLING_STATE;
#define THREAD_POWER_THROTTLING_CURRENT_VERSION 1
#define THREAD_POWER_THROTTLING_EXECUTION_SPEED 0x1
#endif
"""


def main() -> None:
    path = Path(sys.argv[1]) / "vendor" / "llama.cpp" / "ggml" / "src" / "ggml-cpu" / "ggml-cpu.c"
    text = path.read_text()
    if text.count(ANCHOR) != 1:
        raise SystemExit(f"mingw_shim: {path}: the windows.h include is not where it was")
    path.write_text(text.replace(ANCHOR, SHIM))


if __name__ == "__main__":
    main()
