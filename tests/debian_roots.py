"""Debian root file systems made by debootstrap, with no Python in them, to run artifacts in."""

from __future__ import annotations

import fcntl
import shutil
import subprocess
import tempfile
from pathlib import Path

from conftest import REAL_CACHE


def debian_root(release: str) -> Path:
    """A Debian minbase root made by debootstrap: no Python in it. Made once per machine,
    outside the repository; about 45 s and 200 MB each."""
    cache = REAL_CACHE / "llamabundle" / "rootfs"
    root = cache / f"{release}-minbase"
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / f"{release}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not root.exists():
            staging = Path(tempfile.mkdtemp(prefix=".debootstrap-", dir=cache))
            subprocess.run(["debootstrap", "--variant=minbase", release, str(staging),
                            "http://deb.debian.org/debian"], check=True, capture_output=True,
                           timeout=1200)
            staging.rename(root)
    assert not list((root / "usr" / "bin").glob("python*"))
    return root


def run_inside(root: Path, artifact: Path, *args: str) -> subprocess.CompletedProcess[str]:
    app = Path(tempfile.mkdtemp(prefix="app-", dir=root / "opt"))
    try:
        shutil.copy(artifact, app / "assistant")
        inside = "/" + str((app / "assistant").relative_to(root))
        return subprocess.run(["/usr/sbin/chroot", str(root), inside, *args],
                              capture_output=True, text=True, timeout=120,
                              env={"PATH": "/usr/bin:/bin", "HOME": "/root"})
    finally:
        shutil.rmtree(app)
