"""The runtime frozen by PyInstaller: where its files are, and the process set-up it needs.

PyInstaller unpacks the runtime into a `_MEI*` folder under the temp dir and its bootloader
removes it at exit, unless the bootloader itself is killed (SIGKILL, power loss). Each running
artifact holds an flock on a file in its own folder; at launch, any `_MEI*` folder whose lock
can be taken belongs to no live artifact and is removed."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

from runtime import system

log = logging.getLogger(__name__)

LOCK_NAME = ".llamabundle.lock"
_held: list[int] = []  # our own lock's fd, open for the life of the process


def claim(folder: Path) -> None:
    fd = os.open(folder / LOCK_NAME, os.O_CREAT | os.O_RDWR, 0o600)
    system.lock_file(fd)
    _held.append(fd)


def sweep(own: Path, parent: Path | None = None) -> list[Path]:
    """Removes stale folders of dead artifacts next to `own`; returns what was removed."""
    removed = []
    for folder in (parent or Path(tempfile.gettempdir())).glob("_MEI*"):
        lock = folder / LOCK_NAME
        if folder == own or not lock.exists():
            continue  # ours, or not an artifact's (another PyInstaller app): leave it
        try:
            with open(lock) as f:
                if not system.lock_file(f, wait=False):
                    continue  # a live artifact holds it
        except OSError:
            continue
        # Only once the lock file is closed: Windows cannot delete a file that is open (the
        # folder stayed, holding its lock file). No live artifact claims an old folder.
        shutil.rmtree(folder, ignore_errors=True)
        if not folder.exists():
            removed.append(folder)
            log.info("removed %s, left behind by an artifact that was killed", folder)
    return removed


def frozen() -> bool:
    return bool(getattr(sys, "frozen", False))


def templates_dir() -> Path:
    if frozen():
        return Path(sys._MEIPASS) / "templates"  # type: ignore[attr-defined]
    return Path(__file__).resolve().parent.parent / "templates"


def notices() -> str:
    """The license notices frozen into the runtime (runtime-package/freeze.py)."""
    if not frozen():
        return "(run from a source checkout: see each installed package's license)"
    folder = Path(sys._MEIPASS) / "licenses"  # type: ignore[attr-defined]
    return "\n\n".join(f"== {path.relative_to(folder)}\n{path.read_text(errors='replace')}"
                         for path in sorted(folder.rglob("*")) if path.is_file())


def _parent_is_bootloader() -> bool:
    """In a container the bootloader itself is process 1: the parent is alive, and is us."""
    try:
        parent, own = os.stat("/proc/1/exe"), os.stat("/proc/self/exe")
    except OSError:  # init of another user: not our bootloader
        return False
    return (parent.st_dev, parent.st_ino) == (own.st_dev, own.st_ino)


def prepare_process() -> None:
    """What a frozen artifact does first: the user's environment for the programs it starts,
    dying with its bootloader, and sweeping the folders of artifacts that were killed."""
    # PyInstaller points LD_LIBRARY_PATH at its unpacked libraries; programs we start (the
    # browser) must see the user's own environment instead.
    if "LD_LIBRARY_PATH_ORIG" in os.environ:
        os.environ["LD_LIBRARY_PATH"] = os.environ["LD_LIBRARY_PATH_ORIG"]
    else:
        os.environ.pop("LD_LIBRARY_PATH", None)
    # If the bootloader (our parent) dies, die too rather than live on holding the port.
    system.die_with_parent(signal.SIGTERM)
    if (not system.WINDOWS and os.getppid() == 1
            and not _parent_is_bootloader()):  # it died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)
    own = Path(sys._MEIPASS)  # type: ignore[attr-defined]
    claim(own)
    sweep(own, own.parent)
