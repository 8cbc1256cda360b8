"""What every artifact write shares (`build`, `upgrade`): the output checks, the atomic
write, and the frozen runtime split around the sections (runtime/artifact/format.py)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from bundler.runtime_package import Runtime
from runtime.artifact.format import footer
from runtime.artifact.manifest import Manifest
from runtime.errors import BuildError

ELF_SHOFF = 0x28  # e_shoff, then e_shentsize/e_shnum/e_shstrndx at 0x3A..0x3F


def check_output(output: Path, force: bool) -> None:
    if output.is_dir():
        raise BuildError(f"{output}: is a directory; give a file path with -o")
    if output.exists() and not force:
        raise BuildError(f"{output}: already exists; use --force to overwrite it")
    if not output.parent.is_dir():
        raise BuildError(f"{output.parent}: no such directory")
    if not os.access(output.parent, os.W_OK):
        raise BuildError(f"{output.parent}: not writable")


def write_atomically(output: Path, write: Callable[[BinaryIO], None], *,
                     durable: bool = False, mode: int | None = None) -> None:
    """Writes beside the output and renames over it: a failed or interrupted write leaves no
    partial file. `durable` fsyncs before the rename (for `upgrade --in-place`, which
    replaces the only copy); `build` does not, as `cp` does not: it cost more than the copy
    itself (0.14 s for 250 MB), and a truncated file says so at launch.

    The file's mode is `mode` (an upgrade keeps the old file's), else 0777 less the umask,
    as a linker's output is: under `umask 077` a knowledge bundle, which holds its
    documents' full text, stays its owner's."""
    tmp = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    try:
        tmp.unlink(missing_ok=True)  # a stale one would keep its mode: the umask applies on create
        with open(tmp, "wb", opener=lambda path, flags: os.open(path, flags, 0o777)) as f:
            write(f)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, output)
        if durable:
            _fsync_dir(output.parent)
    except OSError as e:
        raise BuildError(f"{output}: cannot write ({e.strerror})") from None
    finally:  # also on KeyboardInterrupt: an interrupted write leaves nothing
        tmp.unlink(missing_ok=True)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def runtime_parts(runtime: Runtime) -> tuple[bytes, bytes]:
    """The frozen runtime's executable part (written first) and its archive (written last)."""
    with open(runtime.path, "rb") as rt:
        head = bytearray(rt.read(runtime.archive_offset))
        archive = rt.read()
    # The archive moves to the end of the file, so the ELF section table it carries no longer
    # sits where the header says; clear those fields (the loader never uses sections). A PE
    # (Windows) maps only its own sections: what follows them is left alone by its loader.
    if head[:4] == b"\x7fELF":
        head[ELF_SHOFF:ELF_SHOFF + 8] = bytes(8)
        head[0x3C:0x40] = bytes(4)
    return bytes(head), archive


def artifact_os(path: Path) -> str:
    """"windows" for a PE file (an .exe), else "linux"."""
    with open(path, "rb") as f:
        return "windows" if f.read(2) == b"MZ" else "linux"


def write_tail(f: BinaryIO, manifest: Manifest, archive: bytes) -> None:
    """After the last section: the manifest, the runtime's archive, the footer."""
    data = manifest.to_json()
    manifest_offset = f.tell()
    f.write(data)
    f.write(archive)
    f.write(footer(manifest_offset, data))
