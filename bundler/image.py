"""`llamabundle export-image`: an artifact as a container image, for running many replicas.

The image is a docker-archive (what `docker save` writes; `docker load` and `podman load` read
it) with no base image: nothing can be pulled here, and none is needed. The artifact needs no
Python and no package manager, only the few system libraries its frozen runtime links against
(glibc, libstdc++, ...). Those are found by reading every ELF file inside the artifact's
runtime (PyInstaller's archive) for the libraries it needs and the archive does not carry, and
copied from this machine, with what they need in turn. The artifact itself goes in as a layer
of its own, so replicas of the same model on one node share it.

Written by hand because no registry package writes an image without a container engine or a
base image to start from; the format is small: a tar of layer tars, a config and a manifest.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from elftools.common.exceptions import ELFError
from elftools.elf.dynamic import DynamicSegment
from elftools.elf.elffile import ELFFile
from PyInstaller.archive.readers import CArchiveReader

from runtime.artifact.manifest import read_manifest_at
from runtime.errors import BuildError
from runtime.settings import BY_NAME

APP = "/app/model.llamabundle"
PORT = 8080
# The image's own defaults, as environment (the settings' LLAMABUNDLE_* variables), not as
# flags after the entrypoint: a flag there would beat `-e LLAMABUNDLE_PORT=...` (flags win over
# the environment), while `docker run -e` replaces these and arguments after the image name
# still win over both. One port, the one exposed: Ollama's clients reach the same /api/* routes
# on it, and a second listener on 0.0.0.0:11434 in every replica is nothing a Service routes
# to (-e LLAMABUNDLE_OLLAMA_PORT=11434 turns it back on).
DEFAULTS = {"host": "0.0.0.0", "port": str(PORT), "ollama_port": "0", "nobrowser": "true"}
USER = "65534:65534"  # nobody: the server needs no privilege, only a writable /tmp
LIBRARY_DIR = "/lib/x86_64-linux-gnu"
# glibc dlopens libgcc_s for unwinding (thread cancellation, C++ exceptions crossing C frames):
# no DT_NEEDED entry names it, yet without it such a process aborts.
ALWAYS = ("libgcc_s.so.1",)


@dataclass(frozen=True)
class Image:
    path: Path
    tag: str
    size: int
    libraries: list[str]
    seconds: float


def default_tag(artifact: Path) -> str:
    name = re.sub(r"[^a-z0-9._-]+", "-", artifact.name.removesuffix(".llamabundle").lower())
    return f"{name.strip('.-_') or 'model'}:latest"


def export_image(artifact: Path, output: Path, tag: str, force: bool = False,
                 progress: Callable[[int], Callable[[int], None]] | None = None) -> Image:
    """Writes a docker-archive image of `artifact` to `output`, atomically."""
    started = time.monotonic()
    if output.exists() and not force:
        raise BuildError(f"{output}: already exists (use --force to overwrite)")
    try:
        read_manifest_at(str(artifact))
    except OSError as e:
        raise BuildError(f"{artifact}: {e.strerror or e}") from None
    needed, interpreter = _runtime_needs(artifact)
    libraries = _resolve(needed | set(ALWAYS))
    tmp = tempfile.NamedTemporaryFile(dir=output.parent, prefix=f".{output.name}.",
                                      suffix=".tmp", delete=False)
    try:
        with tmp, tempfile.TemporaryDirectory(dir=output.parent) as work:
            system = _layer(Path(work) / "system.tar", _system_entries(libraries, interpreter))
            app = _layer(Path(work) / "app.tar", _app_entries(artifact), progress)
            _write_archive(tmp, [system, app], tag)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp.name, output)
    except BaseException:
        os.unlink(tmp.name)
        raise
    return Image(output, tag, output.stat().st_size, sorted(libraries),
                 time.monotonic() - started)


# ---- what the runtime needs from the system


def _runtime_needs(artifact: Path) -> tuple[set[str], str]:
    """The sonames the runtime's ELF files need and do not carry, and the bootloader's
    program interpreter (the dynamic loader's path)."""
    try:
        archive = CArchiveReader(str(artifact))
    except Exception as e:  # PyInstaller raises bare TypeErrors and its own errors alike
        raise BuildError(f"{artifact}: its runtime cannot be read ({e})") from None
    carried: set[str] = set()
    needed: set[str] = set()
    with open(artifact, "rb") as f:
        boot = ELFFile(f)
        interpreter = _interpreter(boot)
        # The bootloader starts before anything is unpacked: what it needs (libz) must be in
        # the image even when the archive carries a copy for Python.
        boot_needs = _needed(boot)
    for name in archive.toc:
        data = archive.extract(name)
        if not isinstance(data, bytes) or not data.startswith(b"\x7fELF"):
            continue
        carried.add(os.path.basename(name))
        try:
            needed |= _needed(ELFFile(io.BytesIO(data)))
        except ELFError as e:
            raise BuildError(f"{artifact}: {name} in its runtime is not a readable ELF "
                             f"({e})") from None
    return (needed - carried) | boot_needs, interpreter


def _needed(elf: ELFFile) -> set[str]:
    # From the program headers, not the section table: in an artifact the bootloader's section
    # table points past its ELF part (the weights follow it), and the loader never reads it.
    names: set[str] = set()
    for segment in elf.iter_segments():
        if isinstance(segment, DynamicSegment):
            names.update(tag.needed for tag in segment.iter_tags()  # type: ignore[attr-defined]
                         if tag.entry.d_tag == "DT_NEEDED")
    return names


def _interpreter(elf: ELFFile) -> str:
    for segment in elf.iter_segments():
        if segment["p_type"] == "PT_INTERP":
            return str(segment.get_interp_name())  # type: ignore[attr-defined]
    raise BuildError("the artifact's runtime has no program interpreter")


def _system_libraries() -> dict[str, str]:
    """This machine's x86-64 libraries by soname, from the dynamic loader's cache."""
    out = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, check=True).stdout
    found: dict[str, str] = {}
    for line in out.splitlines():
        match = re.match(r"\s*(\S+) \(([^)]*)\) => (\S+)", line)
        if match and "x86-64" in match.group(2):
            found.setdefault(match.group(1), match.group(3))
    return found


def _resolve(sonames: Iterable[str]) -> dict[str, Path]:
    """Each soname's file on this machine, with what it needs in turn."""
    system = _system_libraries()
    found: dict[str, Path] = {}
    todo = list(sonames)
    while todo:
        soname = todo.pop()
        if soname in found or soname.startswith("ld-linux"):
            continue
        if soname not in system:
            raise BuildError(f"the runtime needs {soname}, which this machine does not have")
        path = Path(system[soname]).resolve()
        found[soname] = path
        with open(path, "rb") as f:
            todo.extend(_needed(ELFFile(f)))
    return found


# ---- layers


def _system_entries(libraries: dict[str, Path],
                    interpreter: str) -> Iterable[tuple[tarfile.TarInfo, Path | None]]:
    for folder in ("lib", "lib64", "lib/x86_64-linux-gnu", "app"):
        yield _dir(folder, 0o755), None
    yield _dir("tmp", 0o1777), None  # the runtime unpacks itself there at every launch
    loader = Path(os.path.realpath(interpreter))
    yield _file(interpreter.lstrip("/"), loader), loader
    for soname, path in sorted(libraries.items()):
        yield _file(f"{LIBRARY_DIR.lstrip('/')}/{soname}", path), path


def _app_entries(artifact: Path) -> Iterable[tuple[tarfile.TarInfo, Path | None]]:
    info = _file(APP.lstrip("/"), artifact)
    info.mode = 0o755
    yield info, artifact


def _mtime() -> int:
    return int(os.environ.get("SOURCE_DATE_EPOCH", "0"))  # the same inputs, the same bytes


def _dir(name: str, mode: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime = tarfile.DIRTYPE, mode, _mtime()
    return info


def _file(name: str, source: Path) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = source.stat().st_size, 0o755, _mtime()
    return info


@dataclass(frozen=True)
class _Layer:
    path: Path
    digest: str  # sha256 of the uncompressed tar: the image config's diff_id


class _Hashing(io.RawIOBase):
    """A write-only file that hashes what passes through it (and reports progress)."""

    def __init__(self, f: IO[bytes], advance: Callable[[int], None] | None):
        self.f, self.sha, self.advance = f, hashlib.sha256(), advance

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.sha.update(data)
        self.f.write(data)
        if self.advance:
            self.advance(len(data))
        return len(data)


def _layer(path: Path, entries: Iterable[tuple[tarfile.TarInfo, Path | None]],
           progress: Callable[[int], Callable[[int], None]] | None = None) -> _Layer:
    items = list(entries)
    advance = progress(sum(i.size for i, _ in items)) if progress else None
    with open(path, "wb") as f:
        sink = _Hashing(f, advance)
        with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            for info, source in items:
                if source is None:
                    tar.addfile(info)
                else:
                    with open(source, "rb") as data:
                        tar.addfile(info, data)
    return _Layer(path, sink.sha.hexdigest())


def _write_archive(f: IO[bytes], layers: list[_Layer], tag: str) -> None:
    config = json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": {
            "User": USER,
            "Entrypoint": [APP],
            "Env": ["PATH=/app", "TMPDIR=/tmp", "HOME=/tmp",
                    *(f"{BY_NAME[name].env}={value}" for name, value in DEFAULTS.items())],
            "ExposedPorts": {f"{PORT}/tcp": {}},
            "WorkingDir": "/app",
            "Labels": {"org.opencontainers.image.title": tag.split(":")[0]},
        },
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{layer.digest}" for layer in layers]},
        "history": [{"created_by": "llamabundle export-image: system libraries"},
                    {"created_by": "llamabundle export-image: the artifact"}],
    }, sort_keys=True).encode()
    config_name = f"{hashlib.sha256(config).hexdigest()}.json"
    manifest = json.dumps([{"Config": config_name, "RepoTags": [tag],
                            "Layers": [f"{layer.digest}/layer.tar" for layer in layers]}]).encode()
    with tarfile.open(fileobj=f, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for layer in layers:
            tar.addfile(_dir(layer.digest, 0o755))
            info = tarfile.TarInfo(f"{layer.digest}/layer.tar")
            info.size, info.mtime, info.mode = layer.path.stat().st_size, _mtime(), 0o644
            with open(layer.path, "rb") as data:
                tar.addfile(info, data)
        for name, body in ((config_name, config), ("manifest.json", manifest)):
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(body), _mtime(), 0o644
            tar.addfile(info, io.BytesIO(body))

