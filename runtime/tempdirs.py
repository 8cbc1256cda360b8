"""PyInstaller unpacks the runtime into a `_MEI*` folder under the temp dir and its bootloader
removes it at exit, unless the bootloader itself is killed (SIGKILL, power loss). Each running
artifact holds an flock on a file in its own folder; at launch, any `_MEI*` folder whose lock
can be taken belongs to no live artifact and is removed."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

LOCK_NAME = ".llamabundle.lock"
_held: list[int] = []  # our own lock's fd, open for the life of the process


def claim(folder: Path) -> None:
    fd = os.open(folder / LOCK_NAME, os.O_CREAT | os.O_RDWR, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    _held.append(fd)


def sweep(own: Path, parent: Path | None = None) -> list[Path]:
    """Removes stale folders of dead artifacts next to `own`; returns what was removed."""
    removed = []
    for folder in (parent or Path(tempfile.gettempdir())).glob("_MEI*"):
        lock = folder / LOCK_NAME
        if folder == own or not lock.exists():
            continue  # ours, or not an artifact's (another PyInstaller app): leave it
        with contextlib.suppress(OSError), open(lock) as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a live artifact holds it
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
            log.info("removed %s, left behind by an artifact that was killed", folder)
    return removed
