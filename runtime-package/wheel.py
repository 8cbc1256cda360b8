"""Packs the frozen runtime into the runtime package: a wheel tagged for the glibc it needs.

    python wheel.py OUT KEY DEST   (OUT: freeze.py's output; KEY: the sources' content key)
    python wheel.py --windows OUT KEY DEST   (the Windows runtime: runtime-package/windows/)

Written with zipfile rather than a build backend: the wheel is one executable, its licenses
and a three-line module, and its platform tag comes from the glibc the build measured
(OUT/glibc), which setuptools cannot be told. Standard library only.
"""

from __future__ import annotations

import base64
import hashlib
import re
import sys
import tomllib
import zipfile
from pathlib import Path

NAME = "llamabundle_runtime"
MODULE = '''"""The frozen llamabundle runtime: the executable every artifact starts with.

Built by the llamabundle repository's runtime-package/ in a Debian 11 root; `llamabundle build`
uses it as it is. Nothing here is imported by the artifact itself.
"""

from pathlib import Path

EXECUTABLE = Path(__file__).parent / "runtime"
SOURCE_KEY = {key!r}  # content key of the sources it was built from (bundler.runtime_package)
GLIBC = {glibc!r}  # the oldest glibc it runs on
'''
WINDOWS_NAME = "llamabundle_runtime_windows"
WINDOWS_MODULE = '''"""The frozen llamabundle runtime for 64-bit Windows: the .exe every Windows artifact starts with.

Built on Linux by the llamabundle repository's runtime-package/windows/ (mingw-w64, the PSF's
CPython under wine); `llamabundle build --os windows` uses it as it is, on any OS.
"""

from pathlib import Path

EXECUTABLE = Path(__file__).parent / "runtime.exe"
SOURCE_KEY = {key!r}  # content key of the sources it was built from (bundler.runtime_package)
'''


def record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def pack(out: Path, key: str, dest: Path, version: str, windows: bool = False) -> Path:
    if windows:
        # Data for the builder, which runs on any OS: a pure wheel.
        name, tag, executable, target = WINDOWS_NAME, "py3-none-any", "runtime.exe", "Windows"
        module = WINDOWS_MODULE.format(key=key)
    else:
        glibc = (out / "glibc").read_text().strip()
        if not re.fullmatch(r"2\.\d+", glibc):
            raise SystemExit(f"wheel: {out / 'glibc'}: not a glibc version: {glibc!r}")
        name, tag, executable = NAME, f"py3-none-manylinux_{glibc.replace('.', '_')}_x86_64", "runtime"
        module, target = MODULE.format(key=key, glibc=glibc), "glibc " + glibc
    dist_info = f"{name}-{version}.dist-info"
    files: list[tuple[str, bytes, int]] = [
        (f"{name}/__init__.py", module.encode(), 0o644),
        (f"{name}/{executable}", (out / executable).read_bytes(), 0o755),
        *((f"{name}/licenses/{p.name}", p.read_bytes(), 0o644)
          for p in sorted((out / "licenses").iterdir())),
        (f"{dist_info}/METADATA", (
            "Metadata-Version: 2.1\n"
            f"Name: {name.replace('_', '-')}\nVersion: {version}\n"
            "Summary: The frozen runtime of llamabundle artifacts (Python, llama.cpp, the web "
            "stack), built for " + target + "\n"
            "License: MIT AND PSF-2.0 (see llamabundle_runtime/licenses)\n"
            "Requires-Python: >=3.8\n").encode(), 0o644),
        (f"{dist_info}/WHEEL", (
            "Wheel-Version: 1.0\nGenerator: llamabundle runtime-package/wheel.py\n"
            f"Root-Is-Purelib: false\nTag: {tag}\n").encode(), 0o644),
    ]
    dest.mkdir(parents=True, exist_ok=True)
    path = dest / f"{name}-{version}-{tag}.whl"
    record = [record_line(name, data) for name, data, _ in files] + [f"{dist_info}/RECORD,,"]
    files.append((f"{dist_info}/RECORD", ("\n".join(record) + "\n").encode(), 0o644))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as whl:
        for name, data, mode in files:
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))  # reproducible
            info.external_attr = (0o100000 | mode) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            whl.writestr(info, data)
    return path


def main() -> None:
    args = sys.argv[1:]
    windows = args[:1] == ["--windows"]
    out, key, dest = Path(args[windows]), args[windows + 1], Path(args[windows + 2])
    root = Path(__file__).resolve().parent.parent
    with open(root / "pyproject.toml", "rb") as f:
        version = tomllib.load(f)["project"]["version"]
    print(pack(out, key, dest, version, windows))


if __name__ == "__main__":
    main()
