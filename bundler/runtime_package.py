"""The frozen runtime every artifact starts with, from the runtime package.

The runtime (CPython, llama.cpp with its CPU variants, the web stack, the page) is not built on
the builder's machine: it comes frozen in the `llamabundle-runtime` wheel, built once in a
Debian 11 root (runtime-package/, `make runtime`) so that artifacts run on glibc 2.31 and newer
whatever machine ran `build`, and no builder needs a compiler. In a source checkout the
installed package must have been built from the checkout's own sources (its content key):
otherwise an edit to runtime/ would silently not reach the artifacts built from it.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from runtime.errors import BuildError

ROOT = Path(__file__).resolve().parent.parent
# What the runtime package is made of, in a source checkout: any change rebuilds it.
SOURCES = ("runtime", "templates", "runtime-package", "scripts/cpu_variants.py")

COOKIE_MAGIC = b"MEI\014\013\012\013\016"
COOKIE_LENGTH = 88  # PyInstaller's '!8sIIII64s'
COOKIE_SEARCH = 64 * 1024  # only the ELF section table (objcopy's) follows the cookie


@dataclass
class Runtime:
    path: Path
    key: str
    archive_offset: int  # where the PyInstaller archive starts; everything before is the ELF


def in_checkout() -> bool:
    """Run from the repository (not from an installed llamabundle)."""
    return (ROOT / "runtime-package" / "build.sh").exists()


def source_key() -> str:
    """The content key of the sources the runtime package is built from: every file under
    SOURCES, at any depth, by its path, and the pins of what is frozen with them."""
    digest = hashlib.sha256()
    files: list[Path] = []
    for name in SOURCES:
        top = ROOT / name
        files += [top] if top.is_file() else [p for p in top.rglob("*") if p.is_file()]
    # The note on how it is built (runtime-package/README.md) is not what it is built from.
    note = ROOT / "runtime-package" / "README.md"
    files = [p for p in files if "__pycache__" not in p.parts and p != note]
    for path in sorted(files):
        digest.update(path.relative_to(ROOT).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    digest.update(" ".join(_pins()).encode())
    return digest.hexdigest()[:20]


def _pins() -> list[str]:
    pins_py = ROOT / "runtime-package" / "pins.py"
    if not pins_py.exists():
        return []
    spec = importlib.util.spec_from_file_location("runtime_package_pins", pins_py)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return list(module.pins(str(ROOT / "pyproject.toml")))


# The runtime package of each OS an artifact can be built for (bundler/targets.py).
PACKAGES = {"linux": ("llamabundle_runtime", "make runtime"),
            "windows": ("llamabundle_runtime_windows", "make runtime-windows")}


def ensure_runtime(os_name: str = "linux") -> Runtime:
    """The installed runtime package's frozen runtime for `os_name`, checked against the
    checkout's sources when run from one. Both packages are built from the same sources, so
    they share one key."""
    module, make = PACKAGES[os_name]
    dist = module.replace("_", "-")
    try:
        package = importlib.import_module(module)
    except ImportError:
        hint = f"run `{make}`" if in_checkout() else f"pip install {dist}"
        raise BuildError(f"the runtime package for {os_name.capitalize()} ({dist}) is not "
                         "installed; " + hint) from None
    if in_checkout() and package.SOURCE_KEY != source_key():
        raise BuildError(f"the installed {dist} was built from other sources than "
                         "this checkout's runtime/, templates/ or runtime-package/; "
                         f"run `{make}`")
    path = Path(package.EXECUTABLE)
    return Runtime(path, package.SOURCE_KEY, archive_offset(path))


def runtime_key() -> str:
    """The key of the runtime `build` and `upgrade` put in artifacts now (inspect compares an
    artifact's with it): the checkout's sources in a checkout, else the installed package's."""
    if in_checkout():
        return source_key()
    try:
        import llamabundle_runtime as package
    except ImportError:
        return ""
    return str(package.SOURCE_KEY)


def archive_offset(path: Path) -> int:
    """Where PyInstaller's archive starts: its cookie, near the end, holds its length."""
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            tail_start = max(0, size - COOKIE_SEARCH)
            f.seek(tail_start)
            tail = f.read()
    except OSError as e:
        raise BuildError(f"{path}: cannot read the runtime ({e.strerror}); reinstall "
                         "llamabundle-runtime") from None
    pos = tail.rfind(COOKIE_MAGIC)
    if pos < 0:
        raise BuildError(f"{path}: no PyInstaller archive found; reinstall llamabundle-runtime")
    length = int.from_bytes(tail[pos + 8:pos + 12], "big")
    return tail_start + pos + COOKIE_LENGTH - length


if __name__ == "__main__":  # `python -m bundler.runtime_package key`: for runtime-package/build.sh
    if sys.argv[1:] != ["key"]:
        raise SystemExit("usage: python -m bundler.runtime_package key")
    print(source_key())
