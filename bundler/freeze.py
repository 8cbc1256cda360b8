"""Freezes runtime/ + templates/ into one executable with PyInstaller, once per machine.

The result is cached under the user's cache dir, keyed by a hash of everything that went into
it (our sources, every installed package's version, the llama.cpp libraries' bytes, Python's
version), built under a file lock and moved into place in one step, as shiv extracts its
archives. Every `build` reuses it.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from runtime.errors import BuildError

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
ENTRY = ROOT / "runtime" / "__main__.py"
# Found without importing llama_cpp (which loads llama.cpp and numpy: slow for every build).
_LLAMA_CPP = Path(importlib.util.find_spec("llama_cpp").origin or "").parent  # type: ignore
LIB_DIR = _LLAMA_CPP / "lib"

# Standard-library parts the runtime never uses; leaving them out keeps the artifact small.
EXCLUDES = ["tkinter", "unittest", "pydoc", "doctest", "lib2to3", "idlelib", "ensurepip",
            "pip", "setuptools", "distutils", "test", "IPython", "matplotlib", "PIL",
            "pytest", "bundler", "gguf", "zstandard", "PyInstaller",
            "llama_cpp.mtmd_cpp", "llama_cpp.llava_cpp", "llama_cpp.server",
            # llama-cpp-python's high-level layer and numpy: runtime/bindings.py imports only
            # the ctypes bindings (numpy and OpenBLAS are 40 MB to unpack at every launch)
            "llama_cpp.llama", "llama_cpp._internals", "llama_cpp.llama_chat_format",
            "llama_cpp.llama_speculative", "llama_cpp.llama_cache", "llama_cpp.llama_tokenizer",
            "numpy",
            # dev tools installed beside us that optional imports would otherwise drag in
            "openai", "pygments", "requests", "urllib3", "httpx", "httpx2", "httpcore",
            "httpcore2", "yaml", "jiter", "mypy", "ast_serialize", "rich",
            "charset_normalizer", "curses", "readline", "langchain", "langchain_core",
            "hypothesis", "_pytest", "trio", "websockets", "selenium", "aiohttp", "sqlalchemy"]
# llama_cpp loads libllama.so from its own lib/ folder by name; the ggml ones are its DT_NEEDED
# (by soname, found through RUNPATH $ORIGIN).
LLAMA_LIBS = ["libllama.so", "libggml.so.0", "libggml-base.so.0"]
# uvicorn picks its protocol and loop modules by name at run time; PyInstaller cannot see that.
HIDDEN = ["uvicorn.loops.asyncio", "uvicorn.protocols.http.h11_impl",
          "uvicorn.lifespan.off", "runtime.engine", "runtime.serve", "runtime.web.app",
          "runtime.knowledge.index"]

COOKIE_MAGIC = b"MEI\014\013\012\013\016"
COOKIE_LENGTH = 88  # PyInstaller's '!8sIIII64s'
COOKIE_SEARCH = 64 * 1024  # only the ELF section table (objcopy's) follows the cookie


@dataclass
class Runtime:
    path: Path
    key: str
    archive_offset: int  # where the PyInstaller archive starts; everything before is the ELF


def llama_libs() -> list[Path]:
    """llama.cpp's libraries, with its CPU backend: one library per CPU variant, which nothing
    links (runtime/cpu.py loads the best at start), or the one built-in library."""
    cpu = sorted(LIB_DIR.glob("libggml-cpu-*.so")) or [LIB_DIR / "libggml-cpu.so.0"]
    return [*(LIB_DIR / name for name in LLAMA_LIBS), *cpu]


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "llamabundle" / "runtime"


def runtime_key() -> str:
    digest = hashlib.sha256()
    # Every file under runtime/ and templates/, at any depth, by its path: a file in a subfolder
    # must invalidate the frozen runtime as surely as one at the top.
    sources = sorted(p for folder in ("runtime", "templates") for p in (ROOT / folder).rglob("*")
                     if p.is_file() and "__pycache__" not in p.parts)
    for path in sources:
        name = path.relative_to(ROOT).as_posix()
        digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    digest.update(Path(__file__).read_bytes())  # how it is frozen
    # llama.cpp's libraries (tens of MB) by size and time: they change only when reinstalled.
    for path in sorted(LIB_DIR.glob("*")):
        st = path.stat()
        digest.update(f"{path.name} {st.st_size} {st.st_mtime_ns}\n".encode())
    # Installed packages by their dist-info folder names ("name-version.dist-info"): reading
    # every METADATA file instead costs a third of a second per build.
    for dist in sorted(p.name for p in _LLAMA_CPP.parent.glob("*.dist-info")):
        digest.update(dist.encode() + b"\n")
    digest.update(sys.version.encode())
    return digest.hexdigest()[:20]


def ensure_runtime() -> Runtime:
    """The frozen runtime for the current sources, freezing it first if it is not cached."""
    key = runtime_key()
    folder = cache_dir()
    target = folder / key / "runtime"
    if not target.exists():
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / f"{key}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not target.exists():
                log.info("Freezing the runtime once for this machine (about a minute)...")
                _freeze(folder, key)
    return Runtime(target, key, archive_offset(target))


def _freeze(folder: Path, key: str) -> None:
    with tempfile.TemporaryDirectory(dir=folder, prefix=".freeze-") as tmp:
        work = Path(tmp)
        spec = work / "runtime.spec"
        spec.write_text(SPEC.format(
            entry=str(ENTRY), root=str(ROOT), excludes=EXCLUDES, hidden=HIDDEN,
            datas=[(str(ROOT / "templates"), "templates")],
            binaries=[(str(path), "llama_cpp/lib") for path in llama_libs()],
            stripped=str(work / "stripped")))
        cmd = [sys.executable, "-m", "PyInstaller", "--noconfirm", "--log-level", "WARN",
               "--distpath", str(work / "dist"), "--workpath", str(work / "build"), str(spec)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise BuildError("freezing the runtime with PyInstaller failed:\n"
                             + proc.stderr[-4000:])
        staged = work / key
        staged.mkdir()
        shutil.move(work / "dist" / "runtime", staged / "runtime")
        os.replace(staged, folder / key)  # one step: a reader sees all of it or nothing


# A PyInstaller spec rather than flags, for one thing flags cannot say: strip every library.
# (Vendored libraries in a wheel's "*.libs/" folder, as numpy's OpenBLAS once was here, stop
# loading when stripped: "ELF load command address/offset not page-aligned".) Unstripped,
# pyenv's libpython alone adds ~7 MB compressed.
SPEC = """
import os, shutil, subprocess
a = Analysis([{entry!r}], pathex=[{root!r}], binaries={binaries!r}, datas={datas!r},
             hiddenimports={hidden!r}, excludes={excludes!r}, noarchive=False)

def stripped(dest, src):
    if dest.split("/")[0].endswith(".libs"):
        return src
    out = os.path.join({stripped!r}, dest)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    shutil.copyfile(src, out)
    subprocess.run(["strip", "--strip-unneeded", out], check=True)
    return out

a.binaries = [(dest, stripped(dest, src), kind) for dest, src, kind in a.binaries]
pyz = PYZ(a.pure)
exe = EXE(pyz, a.scripts, a.binaries, a.datas, [], name="runtime", debug=False,
          strip=False, upx=False, console=True, runtime_tmpdir=None)
"""


def archive_offset(path: Path) -> int:
    """Where PyInstaller's archive starts: its cookie, near the end, holds its length."""
    with open(path, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        tail_start = max(0, size - COOKIE_SEARCH)
        f.seek(tail_start)
        tail = f.read()
    pos = tail.rfind(COOKIE_MAGIC)
    if pos < 0:
        raise BuildError(f"{path}: no PyInstaller archive found; delete {cache_dir()}")
    length = int.from_bytes(tail[pos + 8:pos + 12], "big")
    return tail_start + pos + COOKIE_LENGTH - length
