"""`llamabundle upgrade`: the current runtime around an artifact's sections, as fast as a copy.

Every section (the weights, and whatever else a build put there: knowledge, an embedding
model) is copied as it is, each to a new 64 KiB-aligned offset, keeping its checksum and every
other field; the manifest keeps the names, the template and the baked defaults and system
prompt, and records the new runtime. The copy runs in the kernel (copy_file_range: no trip
through Python, and a reflink where the filesystem shares extents, as btrfs and XFS do) while a
second thread checks each section against its recorded checksum: a corrupted artifact is
refused, not rewrapped.
"""

from __future__ import annotations

import dataclasses
import os
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from bundler.gguf_split import copy_range
from bundler.runtime_package import Runtime, ensure_runtime
from bundler.writer import artifact_os, check_output, runtime_parts, write_atomically, write_tail
from runtime import __version__
from runtime.artifact.format import FORMAT_VERSION, align, new_checksum
from runtime.artifact.manifest import Manifest, Section, locate, read_manifest_at
from runtime.errors import ArtifactError, BuildError

Progress = Callable[[int], None]
HASH_BUFFER = 8 * 1024 * 1024


@dataclass
class UpgradeResult:
    path: Path
    size: int
    seconds: float
    manifest: Manifest  # what the new artifact holds
    previous: Manifest  # what the old one held
    written: bool  # False: it already carried this runtime and --in-place had nothing to do


def upgrade(old: Path, output: Path | None = None, *, in_place: bool = False,
            force: bool = False,
            progress: Callable[[int], Progress] | None = None) -> UpgradeResult:
    """Writes OLD's sections and settings around the current runtime, atomically, to
    `output` or (in_place) over OLD itself."""
    started = time.monotonic()
    _check_old(old)
    previous = read_manifest_at(str(old))  # not an artifact, truncated, corrupted: one line
    target = _target(old, output, in_place, force)
    runtime = ensure_runtime(artifact_os(old))
    beside = [s for s in previous.sections if s.file]
    for section in beside:  # stays where it is, so the new file must sit next to it
        locate(str(old), section)
        if target.resolve().parent != old.resolve().parent:
            raise BuildError(f"{old}'s weights are in {section.file} beside it; write the "
                             "upgraded .exe into the same folder (or use --in-place)")
    if in_place and previous.runtime_key == runtime.key and not force:
        return UpgradeResult(old, old.stat().st_size, time.monotonic() - started, previous,
                             previous, written=False)
    manifest = dataclasses.replace(previous, runtime_version=__version__,
                                   runtime_key=runtime.key, format=FORMAT_VERSION, sections=[])
    advance = (progress(sum(s.length for s in previous.sections if not s.file)) if progress
               else _ignore)
    # in place, the file stays as open as it was (a 0700 artifact is not widened); a new
    # output gets the umask's mode, as build's does
    mode = stat.S_IMODE(target.stat().st_mode) if in_place else None
    with open(old, "rb") as src:
        write_atomically(target, lambda f: _write(f, src, runtime, previous, manifest, advance),
                         durable=True, mode=mode)
    return UpgradeResult(target, target.stat().st_size, time.monotonic() - started, manifest,
                         previous, written=True)


def _check_old(old: Path) -> None:
    if old.is_dir():
        raise ArtifactError(f"{old}: is a directory, not an artifact")
    try:
        with open(old, "rb") as f:
            gguf = f.read(4) == b"GGUF"
    except OSError as e:
        raise ArtifactError(f"{old}: cannot read ({e.strerror})") from None
    if gguf:
        raise ArtifactError(f"{old}: is a GGUF model, not an artifact; `llamabundle build "
                            f"{old}` makes one")


def _ignore(n: int) -> None:
    pass


def _target(old: Path, output: Path | None, in_place: bool, force: bool) -> Path:
    if in_place:
        real = Path(os.path.realpath(old))  # through a symlink: replace the file it names
        if not os.access(real.parent, os.W_OK):
            raise BuildError(f"{real.parent}: not writable, so {old} cannot be replaced")
        return real
    assert output is not None  # the CLI asks for -o or --in-place
    if output.exists() and output.resolve() == old.resolve() and not force:
        raise BuildError(f"{output}: is the artifact being upgraded; use --in-place to "
                         "replace it")
    check_output(output, force)
    return output


def _write(f: BinaryIO, src: BinaryIO, runtime: Runtime, previous: Manifest,
           manifest: Manifest, advance: Progress) -> None:
    head, archive = runtime_parts(runtime)
    f.write(head)
    for section in previous.sections:  # in the old file's order
        if section.file:  # beside the artifact: checked for presence and size by upgrade()
            manifest.sections.append(section)
            continue
        f.write(bytes(align(f.tell()) - f.tell()))
        f.flush()  # copy_file_range writes at the descriptor's position, under Python's buffer
        offset = f.tell()
        _copy_checked(src, f, section, advance)
        f.seek(0, os.SEEK_END)
        manifest.sections.append(dataclasses.replace(section, offset=offset))
    write_tail(f, manifest, archive)


def _copy_checked(src: BinaryIO, out: BinaryIO, section: Section, advance: Progress) -> None:
    """Copies one section while another thread hashes it; a mismatch fails the upgrade."""
    algorithm, _, expected = section.checksum.partition(":")
    digest = new_checksum(algorithm)
    failure: list[BaseException] = []
    stop = threading.Event()
    hasher = threading.Thread(target=_hash_range, daemon=True,
                              args=(src.fileno(), section, digest, failure, stop))
    hasher.start()
    try:
        copy_range(src, out, section.offset, section.length, advance)
    except BaseException:  # a full disk, Ctrl-C: do not hash the rest first
        stop.set()
        raise
    finally:
        hasher.join()
    if failure:
        raise BuildError(f"{src.name}: cannot read ({failure[0]})")
    if digest.hexdigest() != expected:
        raise ArtifactError(f"{src.name}: corrupted artifact (section {section.name!r} does "
                            "not match its checksum); get a fresh copy")


def _hash_range(fd: int, section: Section, digest: object, failure: list[BaseException],
                stop: threading.Event) -> None:
    # One reused 8 MiB buffer: fresh 64 MiB reads cost five times the hashing itself.
    buffer = memoryview(bytearray(HASH_BUFFER))
    try:
        offset, end = section.offset, section.offset + section.length
        while offset < end and not stop.is_set():
            n = os.preadv(fd, [buffer[:min(HASH_BUFFER, end - offset)]], offset)
            if not n:
                raise OSError("the file ended inside a section")
            digest.update(buffer[:n])  # type: ignore[attr-defined]
            offset += n
    except OSError as e:
        failure.append(e)
