"""Build faults: a full disk, Ctrl-C mid-write, unusable output paths. Nothing is left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bundler.cli import main

pytestmark = pytest.mark.usefixtures("built")


def _mount_tmpfs(mount: Path, options: str):
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mount)]).returncode != 0:
        pytest.skip("needs root to mount a small tmpfs")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


@pytest.fixture
def small_disk(tmp_path):
    yield from _mount_tmpfs(tmp_path / "disk", "size=10m")


@pytest.fixture
def read_only_folder(tmp_path):
    yield from _mount_tmpfs(tmp_path / "ro", "ro,size=1m")


def test_read_only_output_folder_fails_cleanly(runner, tiny_gguf, read_only_folder):
    result = runner.invoke(main, ["build", str(tiny_gguf), "-o",
                                  str(read_only_folder / "x.llamabundle")])
    assert result.exit_code == 1
    assert "not writable" in result.output or "Read-only file system" in result.output
    assert list(read_only_folder.iterdir()) == []


def test_full_disk_fails_cleanly_and_leaves_nothing(runner, tiny_gguf, small_disk):
    out = small_disk / "x.llamabundle"
    result = runner.invoke(main, ["build", str(tiny_gguf), "-o", str(out)])
    assert result.exit_code == 1
    assert "No space left on device" in result.output
    assert list(small_disk.iterdir()) == []


def big_gguf(tiny_gguf: Path, path: Path, size: int) -> Path:
    """A valid GGUF padded (sparsely) to `size` bytes: slow enough to copy to interrupt."""
    path.write_bytes(tiny_gguf.read_bytes())
    os.truncate(path, size)
    return path


def test_ctrl_c_mid_write_leaves_no_output(tiny_gguf, tmp_path, shared_cache):
    model = big_gguf(tiny_gguf, tmp_path / "big.gguf", 2 << 30)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "bundler", "build", str(model), "-o",
                             str(out_dir / "big.llamabundle")],
                            stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, XDG_CACHE_HOME=str(shared_cache)),
                            # a background job of a non-interactive shell inherits SIGINT
                            # ignored; a user's terminal delivers it
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 60
    while not list(out_dir.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.02)  # wait until the temp file exists: we are mid-write
    proc.send_signal(signal.SIGINT)
    assert proc.wait(60) != 0
    assert list(out_dir.iterdir()) == []


def test_output_in_a_missing_folder_is_refused(runner, tiny_gguf, tmp_path):
    result = runner.invoke(main, ["build", str(tiny_gguf), "-o", str(tmp_path / "a" / "b")])
    assert result.exit_code == 1 and "no such directory" in result.output


def test_output_that_is_a_directory_is_refused(runner, tiny_gguf, tmp_path):
    result = runner.invoke(main, ["build", str(tiny_gguf), "-o", str(tmp_path)])
    assert result.exit_code == 1 and "is a directory" in result.output


def test_unreadable_model_is_refused(tiny_gguf, tmp_path):
    """As a user who may not read the file (root drops to `nobody` in a forked child)."""
    from bundler.gguf_info import read_model
    from runtime.errors import InvalidModelError

    model = tmp_path / "locked.gguf"
    model.write_bytes(tiny_gguf.read_bytes())
    model.chmod(0)
    tmp_path.chmod(0o755)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: become another user, try, report, exit without cleanup
        try:
            if os.geteuid() == 0:
                os.setgid(65534)
                os.setuid(65534)
            read_model(model)
            message = "no error"
        except InvalidModelError as e:
            message = str(e)
        except BaseException as e:  # anything else is the failure to report
            message = f"unexpected {e!r}"
        os.write(write_end, message.encode())
        os._exit(0)
    os.close(write_end)
    os.waitpid(pid, 0)
    message = os.read(read_end, 4096).decode()
    assert message == f"{model}: cannot read (Permission denied)"
