"""Which operating systems an artifact is built for, and what each is called on disk.

linux: NAME.llamabundle, the Linux runtime (ELF). windows: NAME.exe, the Windows runtime (PE),
with the same sections and manifest (runtime/artifact/format.py). Windows will not start an
executable of 4 GiB or more ("This app can't run on your PC"), so a bigger Windows build leaves
the weights out: NAME.exe plus NAME.weights.gguf beside it, which the .exe finds, checks and
maps in place (runtime/artifact/manifest.py: locate).
"""

from __future__ import annotations

import os
from pathlib import Path

from runtime.errors import BuildError

OSES = ("linux", "windows")
SUFFIX = {"linux": ".llamabundle", "windows": ".exe"}
# Windows refuses an .exe of 4 GiB or more; the margin leaves room for a signature added later.
# LLAMABUNDLE_WINDOWS_EXE_LIMIT lowers it, for tests of the big-model layout with small models.
EXE_LIMIT = 4 * 1024**3 - 64 * 1024**2
BESIDE_NOTE = ("Windows cannot start an .exe of 4 GiB or more, so the weights are in "
               "{weights}, next to {exe}: give both files, and keep them in the same folder")


def parse(value: str) -> tuple[str, ...]:
    """`--os linux,windows` -> ("linux", "windows"): known names, each once, in order."""
    names = tuple(dict.fromkeys(part.strip().lower() for part in value.split(",")
                                if part.strip()))
    unknown = [name for name in names if name not in OSES]
    if unknown or not names:
        raise BuildError(f"--os {value}: give {' or '.join(OSES)}, or both separated by a comma")
    return names


def outputs(oses: tuple[str, ...], output: Path | None, default_stem: Path) -> dict[str, Path]:
    """The file each OS's artifact goes to. -o is the file itself for one OS; for several,
    its name with each OS's suffix (-o build/model -> build/model.llamabundle, model.exe)."""
    if output is not None and len(oses) == 1:
        return {oses[0]: output}
    if output is None:
        stem = default_stem
    elif output.suffix in SUFFIX.values():
        stem = output.with_suffix("")
    else:
        stem = output
    return {name: stem.with_name(stem.name + SUFFIX[name]) for name in oses}


def weights_beside(os_name: str, output: Path, size: int) -> Path | None:
    """The file the weights go to beside a Windows .exe that would be too big, else None."""
    limit = int(os.environ.get("LLAMABUNDLE_WINDOWS_EXE_LIMIT", EXE_LIMIT))
    if os_name != "windows" or size < limit:
        return None
    return output.with_name(output.name.removesuffix(".exe") + ".weights.gguf")
