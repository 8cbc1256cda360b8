"""Stopping an artifact: signals, a killed launcher, the folders PyInstaller leaves behind."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from conftest import launch, port_is_free

pytestmark = pytest.mark.usefixtures("built")


def wait_for(condition, timeout: float = 15) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def unpacked(tmp: Path) -> list[Path]:
    return sorted(tmp.glob("_MEI*"))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_shuts_down_cleanly_and_removes_the_unpacked_runtime(tiny_artifact, tmp_path,
                                                                     sig):
    env = dict(os.environ, TMPDIR=str(tmp_path))
    server = launch(tiny_artifact, env=env)
    assert len(unpacked(tmp_path)) == 1
    server.proc.send_signal(sig)
    assert server.proc.wait(15) in (0, -sig, 128 + sig)
    assert port_is_free(server.port)
    assert unpacked(tmp_path) == []


def test_killed_launcher_takes_the_server_down_and_next_launch_sweeps_its_folder(
        tiny_artifact, tmp_path):
    env = dict(os.environ, TMPDIR=str(tmp_path))
    server = launch(tiny_artifact, env=env)
    stale = unpacked(tmp_path)
    server.proc.kill()  # SIGKILL: the bootloader cannot clean up
    server.proc.wait(5)
    assert wait_for(lambda: port_is_free(server.port)), "server outlived its launcher"
    assert unpacked(tmp_path) == stale  # left behind...
    second = launch(tiny_artifact, env=env)
    try:
        remaining = unpacked(tmp_path)
        assert len(remaining) == 1 and remaining != stale  # ...and swept by the next launch
    finally:
        second.stop()


def test_two_artifacts_launched_at_once_both_serve(tiny_artifact, tmp_path):
    env = dict(os.environ, TMPDIR=str(tmp_path))
    first, second = launch(tiny_artifact, env=env), launch(tiny_artifact, env=env)
    try:
        assert first.port != second.port
        assert len(unpacked(tmp_path)) == 2  # neither swept the other's live folder
    finally:
        first.stop()
        second.stop()
