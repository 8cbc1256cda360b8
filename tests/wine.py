"""Windows artifacts (.exe) run under wine for the tests, in a wine prefix of the tests' own.

wine 8.0 lacks bcryptprimitives.dll (ProcessPrng), which pydantic-core's Rust code calls on
Windows: a stand-in (tests/data/bcryptprimitives.c, compiled with mingw-w64) goes into this
prefix only; real Windows has it. A Windows CPython under wine wants stdin that is not a
terminal (/dev/null here) and stdout that is a pipe.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

from conftest import Server

WINE = shutil.which("wine")
MINGW = shutil.which("x86_64-w64-mingw32-gcc-posix") or shutil.which("x86_64-w64-mingw32-gcc")
STUB = Path(__file__).parent / "data" / "bcryptprimitives.c"
MISSING = ("wine is not installed (Debian: apt install wine wine64 g++-mingw-w64-x86-64-posix);"
           " the Windows tests run the .exe under it" if not (WINE and MINGW) else "")


def make_prefix(folder: Path) -> dict[str, str]:
    """A fresh wine prefix in `folder`; returns the environment that uses it."""
    env = dict(os.environ, WINEPREFIX=str(folder), WINEDEBUG="-all",
               WINEDLLOVERRIDES="mscoree,mshtml=")  # no Mono/Gecko install prompts
    subprocess.run(["wineboot", "-i"], env=env, stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, timeout=600)
    system32 = folder / "drive_c" / "windows" / "system32"
    subprocess.run([str(MINGW), "-shared", "-O2", "-o", str(system32 / "bcryptprimitives.dll"),
                    str(STUB), "-ladvapi32"], check=True)
    return env


def end_prefix(env: dict[str, str]) -> None:
    subprocess.run(["wineserver", "-k"], env=env, check=False)


def run(exe: Path, *args: str, env: dict[str, str], timeout: float = 600,
        input: str | None = None) -> subprocess.CompletedProcess[str]:
    """Runs the .exe to its end; `input` is piped to its stdin (else stdin is /dev/null)."""
    return subprocess.run([str(WINE), str(exe), *args], env=env, input=input,
                          stdin=subprocess.DEVNULL if input is None else None,
                          capture_output=True, text=True, encoding="utf-8", timeout=timeout)


def _copy(proc: subprocess.Popen[str], log: Path) -> None:
    assert proc.stdout is not None
    with open(log, "a") as out:
        for line in proc.stdout:
            out.write(line)
            out.flush()


class WineServer(Server):
    """An .exe serving under wine."""

    name = ".exe"
    grace = 20


def launch(exe: Path, *args: str, port: int, env: dict[str, str],
           timeout: float = 600) -> WineServer:
    """Starts the .exe under wine and waits until /health says ok."""
    log = Path(tempfile.mkstemp(prefix=f"exe-{port}-", suffix=".log")[1])
    # A pipe, not the file: a Windows CPython under wine cannot open a file handed to it as
    # stdout ("init_sys_streams: Invalid handle"). A thread copies the pipe into the file.
    proc = subprocess.Popen([str(WINE), str(exe), "--nobrowser", "--port", str(port), *args],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)
    threading.Thread(target=_copy, args=(proc, log), daemon=True).start()
    server = WineServer(proc, port, log)
    server.wait_healthy(timeout, poll=0.2)
    return server
