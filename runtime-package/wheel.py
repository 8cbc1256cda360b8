"""Packs the frozen runtime into the runtime package: a wheel tagged for the glibc it needs.

    python wheel.py OUT KEY DEST   (OUT: freeze.py's output; KEY: the sources' content key)

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


def record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def pack(out: Path, key: str, dest: Path, version: str) -> Path:
    glibc = (out / "glibc").read_text().strip()
    if not re.fullmatch(r"2\.\d+", glibc):
        raise SystemExit(f"wheel: {out / 'glibc'}: not a glibc version: {glibc!r}")
    tag = f"py3-none-manylinux_{glibc.replace('.', '_')}_x86_64"
    dist_info = f"{NAME}-{version}.dist-info"
    files: list[tuple[str, bytes, int]] = [
        (f"{NAME}/__init__.py", MODULE.format(key=key, glibc=glibc).encode(), 0o644),
        (f"{NAME}/runtime", (out / "runtime").read_bytes(), 0o755),
        *((f"{NAME}/licenses/{p.name}", p.read_bytes(), 0o644)
          for p in sorted((out / "licenses").iterdir())),
        (f"{dist_info}/METADATA", (
            "Metadata-Version: 2.1\n"
            f"Name: llamabundle-runtime\nVersion: {version}\n"
            "Summary: The frozen runtime of llamabundle artifacts (Python, llama.cpp, the web "
            "stack), built for glibc " + glibc + "\n"
            "License: MIT AND PSF-2.0 (see llamabundle_runtime/licenses)\n"
            "Requires-Python: >=3.8\n").encode(), 0o644),
        (f"{dist_info}/WHEEL", (
            "Wheel-Version: 1.0\nGenerator: llamabundle runtime-package/wheel.py\n"
            f"Root-Is-Purelib: false\nTag: {tag}\n").encode(), 0o644),
    ]
    dest.mkdir(parents=True, exist_ok=True)
    path = dest / f"{NAME}-{version}-{tag}.whl"
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
    out, key, dest = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    root = Path(__file__).resolve().parent.parent
    with open(root / "pyproject.toml", "rb") as f:
        version = tomllib.load(f)["project"]["version"]
    print(pack(out, key, dest, version))


if __name__ == "__main__":
    main()
