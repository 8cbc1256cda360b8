"""Freezes runtime/ + templates/ into one executable with PyInstaller.

    python freeze.py SRC WORK OUT   ->  OUT/runtime (and OUT/licenses/)

Run by inside.sh with the build root's Python, whose llama_cpp was compiled there; the same
script on the development machine's venv freezes the runtime the old way (the benchmark
compares the two). The Windows runtime (runtime-package/windows/build.sh) is frozen by the
same script, run by a Windows CPython under wine: OUT/runtime.exe, no glibc floor. Standard
library and PyInstaller only.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

WINDOWS = sys.platform == "win32"

# Standard-library parts the runtime never uses; leaving them out keeps the artifact small.
EXCLUDES = ["tkinter", "unittest", "pydoc", "doctest", "lib2to3", "idlelib", "ensurepip",
            "pip", "setuptools", "distutils", "test", "IPython", "matplotlib", "PIL",
            "pytest", "bundler", "gguf", "zstandard", "PyInstaller",
            "llama_cpp.mtmd_cpp", "llama_cpp.llava_cpp", "llama_cpp.server",
            # llama-cpp-python's high-level layer and numpy: runtime/llama/bindings.py imports
            # only the ctypes bindings (numpy and OpenBLAS are 40 MB to unpack at every launch)
            "llama_cpp.llama", "llama_cpp._internals", "llama_cpp.llama_chat_format",
            "llama_cpp.llama_speculative", "llama_cpp.llama_cache", "llama_cpp.llama_tokenizer",
            "numpy",
            # dev tools that optional imports would drag in when frozen from a dev venv
            "openai", "pygments", "requests", "urllib3", "httpx", "httpx2", "httpcore",
            "httpcore2", "yaml", "jiter", "mypy", "ast_serialize", "rich",
            "charset_normalizer", "curses", "readline", "langchain", "langchain_core",
            "hypothesis", "_pytest", "trio", "websockets", "selenium", "aiohttp", "sqlalchemy"]
# llama_cpp loads libllama.so from its own lib/ folder by name; the ggml ones are its DT_NEEDED
# (by soname, found through RUNPATH $ORIGIN).
LLAMA_LIBS = (["libllama.dll", "ggml.dll", "ggml-base.dll"] if WINDOWS else
              ["libllama.so", "libggml.so.0", "libggml-base.so.0"])
# uvicorn picks its protocol and loop modules by name at run time; PyInstaller cannot see that.
HIDDEN = ["uvicorn.loops.asyncio", "uvicorn.protocols.http.h11_impl",
          "uvicorn.lifespan.off", "runtime.engine", "runtime.serve", "runtime.web.app",
          "runtime.terminal", "runtime.knowledge.index"]
# Whose licenses travel with the runtime (their notices must): the packages frozen into it.
FROZEN_PACKAGES = ["llama_cpp_python", "fastapi", "starlette", "pydantic", "pydantic_core",
                   "uvicorn", "h11", "click", "jinja2", "markupsafe", "xxhash", "anyio",
                   "sniffio", "idna", "typing_extensions", "annotated_types",
                   "typing_inspection", "annotated_doc", "pyinstaller", "prompt_toolkit",
                   "wcwidth", "simsimd", "prometheus_client"]

# A PyInstaller spec rather than flags, for one thing flags cannot say: strip every library.
# (Vendored libraries in a wheel's "*.libs/" folder stop loading when stripped: "ELF load
# command address/offset not page-aligned".) Unstripped, libpython alone adds ~7 MB compressed.
SPEC = """
import os, shutil, subprocess
a = Analysis([{entry!r}], pathex=[{root!r}], binaries={binaries!r}, datas={datas!r},
             hiddenimports={hidden!r}, excludes={excludes!r}, noarchive=False)

def stripped(dest, src):
    # Windows: the DLLs come stripped (mingw's strip, runtime-package/windows/llama.sh), and
    # CPython's are signed by the PSF: left as they are.
    if {windows!r} or dest.split("/")[0].endswith(".libs"):
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


def llama_lib_dir() -> Path:
    # Found without importing llama_cpp (which would load llama.cpp and numpy).
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or spec.origin is None:
        raise SystemExit("freeze: llama_cpp is not installed in this Python")
    return Path(spec.origin).parent / "lib"


def llama_libs(lib_dir: Path) -> list[Path]:
    """llama.cpp's libraries, with its CPU backend: one library per CPU variant, which nothing
    links (runtime/llama/cpu.py loads the best at start), or the one built-in library."""
    if WINDOWS:  # and the mingw-w64 runtime DLLs beside them (windows/build.sh)
        return sorted(lib_dir.glob("*.dll"))
    else:
        cpu = sorted(lib_dir.glob("libggml-cpu-*.so")) or [lib_dir / "libggml-cpu.so.0"]
    return [*(lib_dir / name for name in LLAMA_LIBS), *cpu]


def freeze(src: Path, work: Path, out: Path) -> Path:
    """The runtime, with the page and the license notices (out/licenses/, collected first)
    frozen in: every artifact carries them, and `--licenses` prints them."""
    work.mkdir(parents=True, exist_ok=True)
    spec = work / "runtime.spec"
    spec.write_text(SPEC.format(
        entry=str(src / "runtime" / "__main__.py"), root=str(src), excludes=EXCLUDES,
        hidden=HIDDEN, datas=[(str(src / "templates"), "templates"),
                              (str(out / "licenses"), "licenses")],
        binaries=[(str(path), "llama_cpp/lib") for path in llama_libs(llama_lib_dir())],
        stripped=str(work / "stripped"), windows=WINDOWS))
    cmd = [sys.executable, "-m", "PyInstaller", "--noconfirm", "--log-level", "WARN",
           "--distpath", str(work / "dist"), "--workpath", str(work / "build"), str(spec)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit("freeze: PyInstaller failed:\n" + proc.stderr[-4000:])
    out.mkdir(parents=True, exist_ok=True)
    name = "runtime.exe" if WINDOWS else "runtime"
    shutil.move(work / "dist" / name, out / name)
    return out / name


def copy_licenses(out: Path) -> None:
    """The license files of what the runtime carries: CPython's and each frozen package's."""
    licenses = out / "licenses"
    licenses.mkdir(parents=True, exist_ok=True)
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    python_license = (Path(sys.base_prefix) / "LICENSE.txt" if WINDOWS else
                      Path(sys.base_prefix) / "lib" / version / "LICENSE.txt")
    if python_license.exists():
        shutil.copy(python_license, licenses / "CPython.txt")
    site = Path(importlib.util.find_spec("fastapi").origin).parent.parent  # type: ignore
    for dist in sorted(site.glob("*.dist-info")):
        name = dist.name.split("-")[0].lower()
        if name not in FROZEN_PACKAGES:
            continue
        for path in sorted(p for p in dist.rglob("*") if p.is_file() and
                           p.name.upper().startswith(("LICENSE", "LICENCE", "COPYING", "NOTICE"))):
            shutil.copy(path, licenses / f"{name}-{path.name}")


def glibc_floor(executable: Path, work: Path) -> str:
    """The newest GLIBC_ symbol version the launcher or any library in its archive needs: the
    oldest glibc the runtime runs on, and so the runtime package's platform tag."""
    from PyInstaller.archive.readers import CArchiveReader

    archive = CArchiveReader(str(executable))
    files = [executable]
    for name, (*_, typecode) in archive.toc.items():
        if typecode in ("b", "e", "x"):  # binary, extension, external (PyInstaller's codes)
            files.append(work / "elf" / name)
            files[-1].parent.mkdir(parents=True, exist_ok=True)
            files[-1].write_bytes(archive.extract(name))
    newest = (0, 0)
    for path in files:
        if path.read_bytes()[:4] != b"\x7fELF":  # typecode "x" also holds base_library.zip
            continue
        symbols = subprocess.run(["objdump", "-T", str(path)], capture_output=True,
                                 text=True, check=True).stdout
        for major, minor in re.findall(r"GLIBC_(\d+)\.(\d+)", symbols):
            newest = max(newest, (int(major), int(minor)))
    return f"{newest[0]}.{newest[1]}"


def main() -> None:
    src, work, out = (Path(arg) for arg in sys.argv[1:4])
    copy_licenses(out)
    executable = freeze(src, work, out)
    if not WINDOWS:
        (out / "glibc").write_text(glibc_floor(executable, work) + "\n")


if __name__ == "__main__":
    main()
