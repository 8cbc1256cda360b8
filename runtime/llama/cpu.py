"""Which build of llama.cpp's CPU code runs here: the best one for this CPU, chosen at start.

The runtime carries llama.cpp's CPU backend compiled several times, one shared library per
instruction-set level (libggml-cpu-x64.so ... -icelake.so; the Makefile's CPU_VARIANTS). ggml
scores each against the CPU's cpuid bits and keeps the best (ggml_backend_load_all_from_path).

The folder is always given: left to itself (llama_backend_init with nothing loaded), ggml
searches the executable's folder and the current directory, so any libggml-cpu-*.so lying
beside the artifact, in the user's Downloads, would be loaded and run. The bindings do not
expose the call, hence ctypes on libggml.
"""

from __future__ import annotations

import ctypes
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtime import system
from runtime.errors import ArtifactError
from runtime.llama.bindings import llama_cpp

LIB_DIR = Path(llama_cpp.__file__).resolve().parent / "lib"
_VARIANT_FILE = re.compile(system.CPU_VARIANT_PATTERN)


@dataclass(frozen=True)
class CpuBackend:
    variant: str  # "icelake", ...; "built-in" when llama.cpp was compiled without variants
    features: tuple[str, ...]  # instruction sets the loaded code uses, as llama.cpp names them
    available: tuple[str, ...]  # every variant the artifact carries

    def describe(self) -> str:
        return f"{self.variant} ({' '.join(self.features) or 'baseline x86-64'})"

    def as_dict(self) -> dict[str, object]:
        return {"variant": self.variant, "features": list(self.features),
                "available": list(self.available)}


_loaded: CpuBackend | None = None


def load() -> CpuBackend:
    """Loads the best CPU variant (once per process) and says which one it is."""
    global _loaded
    if _loaded is None:
        _loaded = _load(LIB_DIR)
    return _loaded


def _load(folder: Path) -> CpuBackend:
    variants = tuple(sorted(_variant_name(p) for p in folder.glob(system.CPU_VARIANT_GLOB)))
    if not variants:
        return CpuBackend("built-in", _features(), ())
    # The copy libllama.so loaded, by its soname (libggml.so.0): a wheel holds libggml.so and
    # libggml.so.0.x.y too, as separate files that would each bring a registry of their own.
    ggml = _ggml(folder)
    ggml.ggml_backend_load_all_from_path.argtypes = [ctypes.c_char_p]
    ggml.ggml_backend_load_all_from_path(os.fsencode(folder))
    reg = ggml.ggml_backend_reg_by_name(b"CPU")
    if not reg:
        raise ArtifactError("none of this artifact's CPU builds runs on this processor "
                            f"({', '.join(variants)})")
    # Which file the CPU backend came from: ask the loader about one of its functions.
    function = ggml.ggml_backend_reg_get_proc_address(reg, b"ggml_backend_get_features")
    library = system.library_of(function) if function else ""
    if not library:
        raise ArtifactError("llama.cpp loaded a CPU backend but cannot say which")
    return CpuBackend(_variant_name(library), _features(), variants)


class _Libraries:
    """Functions looked up in several libraries in turn. On Windows, GetProcAddress finds only
    a DLL's own exports: ggml's C API is split between ggml.dll (the backend registry) and
    ggml-base.dll (the rest); on Linux, dlsym on libggml.so finds its dependencies' too."""

    def __init__(self, libraries: list[ctypes.CDLL]):
        self._libraries = libraries

    def __getattr__(self, name: str) -> Any:
        for library in self._libraries:
            try:
                return getattr(library, name)  # the CDLL keeps it: argtypes set on it stay
            except AttributeError:
                pass
        raise AttributeError(name)


def _ggml(folder: Path = LIB_DIR) -> Any:
    soname = min(folder.glob(system.GGML_GLOB), key=lambda p: len(p.name))
    base = list(folder.glob(system.GGML_BASE_GLOB)) if system.GGML_BASE_GLOB else []
    ggml = _Libraries([ctypes.CDLL(str(soname)), *(ctypes.CDLL(str(p)) for p in base)])
    ggml.ggml_backend_reg_by_name.argtypes = [ctypes.c_char_p]
    ggml.ggml_backend_reg_by_name.restype = ctypes.c_void_p
    ggml.ggml_backend_reg_get_proc_address.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    ggml.ggml_backend_reg_get_proc_address.restype = ctypes.c_void_p
    ggml.ggml_threadpool_params_init.argtypes = [ctypes.c_void_p, ctypes.c_int]
    return ggml


class _ThreadpoolParams(ctypes.Structure):
    """ggml.h's struct ggml_threadpool_params (GGML_MAX_N_THREADS is 512)."""

    _fields_ = [("cpumask", ctypes.c_bool * 512), ("n_threads", ctypes.c_int),
                ("prio", ctypes.c_int), ("poll", ctypes.c_uint32), ("strict_cpu", ctypes.c_bool),
                ("paused", ctypes.c_bool)]


def threadpool(n_threads: int) -> int | None:
    """A pool of llama.cpp's compute threads that lives as long as the process, as
    llama-server attaches one to its context (common_threadpools::init). Without it, every
    llama_decode of a pthreads build (this one; llama-server's uses OpenMP's lasting threads)
    starts its worker threads and joins them again (a "disposable threadpool" in
    ggml-cpu.c). On 2 busy cores a one-token decode of the demo model took 0.19x the time
    with the pool, a 4-sequence one 0.51x (bench/results/decode-step-profile.md). None
    when the CPU backend offers no pool."""
    if not list(LIB_DIR.glob(system.GGML_GLOB)):
        return None
    ggml = _ggml()
    reg = ggml.ggml_backend_reg_by_name(b"CPU")
    new = reg and ggml.ggml_backend_reg_get_proc_address(reg, b"ggml_threadpool_new")
    if not new:
        return None
    params = _ThreadpoolParams()
    ggml.ggml_threadpool_params_init(ctypes.byref(params), n_threads)
    # No polling: between steps the workers sleep instead of spinning (level 50 spins for
    # about 0.1 s, which covers the whole gap between steps), so the cores are free for what
    # runs between two decodes: sampling, the request threads, the event loop. 4 clients on
    # 2 busy cores: 1.23x the aggregate of level 50 (1.10-1.36 over 4 interleaved pairs).
    params.poll = 0
    pool = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.POINTER(_ThreadpoolParams))(new)(
        ctypes.byref(params))
    return int(pool) if pool else None


def _variant_name(path: Path | str) -> str:
    match = _VARIANT_FILE.search(str(path))
    return match.group(1) if match else "built-in"


def _features() -> tuple[str, ...]:
    # "CPU : SSE3 = 1 | AVX = 1 | ... | LLAMAFILE = 1 | REPACK = 1 |": the ISA flags, in order.
    info = llama_cpp.llama_print_system_info().decode(errors="replace")
    cpu = info.split("CPU :", 1)[-1]
    flags = re.findall(r"(\w+) = 1", cpu)
    return tuple(f for f in flags if f not in {"LLAMAFILE", "OPENMP", "REPACK", "KLEIDIAI"})
