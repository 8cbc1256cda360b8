"""What differs between the operating systems the runtime runs on, in one place.

Linux (glibc) and Windows today. Everything else in runtime/ is the same on both; a new OS (macOS)
is a new branch here and a runtime package built for it (runtime-package/README.md).

- C files: llama.cpp reads the weights from a FILE* (llama_model_load_from_file_ptr), which must
  come from the C library llama.cpp itself uses: glibc on Linux, msvcrt.dll on Windows
  (mingw-w64 links llama.cpp against it; Python's own ucrt FILE* would not do).
- Which shared library holds an address: dladdr / GetModuleHandleExW.
- llama.cpp's file names: libggml.so.0 and libggml-cpu-VARIANT.so / ggml.dll and
  ggml-cpu-VARIANT.dll.
- Locks on files (flock / msvcrt.locking), usable CPUs and how many other threads want one,
  the terminal's echo and foreground process group, who may share a listening port, dying
  with PyInstaller's bootloader, the encoding of piped input.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import socket
import sys
from collections.abc import Iterator
from typing import IO, Any, TextIO

WINDOWS = sys.platform == "win32"

if WINDOWS:
    CPU_VARIANT_GLOB = "ggml-cpu-*.dll"
    CPU_VARIANT_PATTERN = r"[\\/]ggml-cpu-([\w.]+)\.dll$"
    GGML_GLOB = "ggml.dll"
    GGML_BASE_GLOB = "ggml-base.dll"  # ggml.dll's own exports are only the backend registry
else:
    CPU_VARIANT_GLOB = "libggml-cpu-*.so"
    CPU_VARIANT_PATTERN = r"/libggml-cpu-([\w.]+)\.so$"
    GGML_GLOB = "libggml.so.*"
    GGML_BASE_GLOB = ""  # dlsym on libggml.so finds libggml-base.so's functions too


def _c_functions() -> tuple[Any, Any, Any]:
    """fopen, a 64-bit fseek and fclose of the C library llama.cpp uses."""
    if sys.platform == "win32":
        crt = ctypes.CDLL("msvcrt", use_errno=True)
        fopen, fseek64 = crt._wfopen, crt._fseeki64  # _wfopen: any file name, any code page
        fopen.argtypes = [ctypes.c_wchar_p, ctypes.c_wchar_p]
    else:
        crt = ctypes.CDLL("libc.so.6", use_errno=True)
        fopen, fseek64 = crt.fopen, crt.fseeko
        fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    fopen.restype = ctypes.c_void_p
    fseek64.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int]
    crt.fclose.argtypes = [ctypes.c_void_p]
    return fopen, fseek64, crt.fclose


_fopen, _fseek64, _fclose = _c_functions()


@contextlib.contextmanager
def c_file_at(path: str, offset: int) -> Iterator[int | None]:
    """A FILE* of llama.cpp's C library, open on `path` at `offset`; None (and errno set) when
    the file cannot be opened, OSError when it cannot seek."""
    fp = _fopen(path, "rb") if WINDOWS else _fopen(os.fsencode(path), b"rb")
    if not fp:
        yield None
        return
    try:
        if _fseek64(fp, offset, os.SEEK_SET) != 0:
            raise OSError(ctypes.get_errno(), "cannot seek")
        yield fp
    finally:
        _fclose(fp)


def c_errno_text() -> str:
    """Why the last fopen failed. On Windows that is msvcrt's errno, not the one ctypes keeps
    (Python's own C runtime, ucrt, has another)."""
    if sys.platform == "win32":
        msvcrt = ctypes.CDLL("msvcrt")
        msvcrt._errno.restype = ctypes.POINTER(ctypes.c_int)
        return os.strerror(msvcrt._errno().contents.value)
    return os.strerror(ctypes.get_errno())


def library_of(address: int) -> str:
    """The path of the shared library that holds `address` ("" when none does)."""
    if sys.platform == "win32":
        kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
        handle = ctypes.c_void_p()
        FROM_ADDRESS, UNCHANGED_REFCOUNT = 0x4, 0x2
        kernel32.GetModuleHandleExW.argtypes = [ctypes.c_uint32, ctypes.c_void_p,
                                                ctypes.POINTER(ctypes.c_void_p)]
        kernel32.GetModuleFileNameW.argtypes = [ctypes.c_void_p, ctypes.c_wchar_p,
                                                ctypes.c_uint32]
        if not kernel32.GetModuleHandleExW(FROM_ADDRESS | UNCHANGED_REFCOUNT,
                                           ctypes.c_void_p(address), ctypes.byref(handle)):
            return ""
        name = ctypes.create_unicode_buffer(32768)
        n = kernel32.GetModuleFileNameW(handle, name, len(name))
        return name.value[:n]

    class DlInfo(ctypes.Structure):
        _fields_ = [("dli_fname", ctypes.c_char_p), ("dli_fbase", ctypes.c_void_p),
                    ("dli_sname", ctypes.c_char_p), ("dli_saddr", ctypes.c_void_p)]

    libc = ctypes.CDLL(None)  # dladdr lives in libc itself since glibc 2.34
    libc.dladdr.argtypes = [ctypes.c_void_p, ctypes.POINTER(DlInfo)]
    info = DlInfo()
    # dladdr needs no /proc, which a chroot or a sandbox may lack
    if not libc.dladdr(ctypes.c_void_p(address), ctypes.byref(info)):
        return ""
    return os.fsdecode(info.dli_fname or b"")


def usable_cpus() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def others_runnable() -> int | None:
    """How many threads besides the caller are running or waiting for a CPU right now, system
    wide: Linux's /proc/loadavg (the kernel's count at this instant, not an average). None where
    the OS has no such cheap count (Windows: its counters need two samples some time apart)."""
    if WINDOWS:
        return None
    try:
        with open("/proc/loadavg", "rb") as f:
            runnable = int(f.read().split()[3].split(b"/")[0])
    except (OSError, ValueError, IndexError):
        return None
    return max(0, runnable - 1)  # the caller is one of them


def lock_file(f: IO[Any] | int, wait: bool = True) -> bool:
    """An exclusive lock on an open file, held until it is closed; False when another process
    holds it and `wait` is False."""
    fd = f if isinstance(f, int) else f.fileno()
    if sys.platform == "win32":
        import msvcrt

        try:  # LK_LOCK retries for 10 s and then fails; a lock held that long is another's
            msvcrt.locking(fd, msvcrt.LK_LOCK if wait else msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        return False
    return True


@contextlib.contextmanager
def no_echo(fd: int) -> Iterator[None]:
    """Typed keys are not echoed while this lasts (a terminal; Windows' console echoes only
    while a program reads, so there is nothing to turn off)."""
    if WINDOWS:
        yield
        return
    import termios

    saved = termios.tcgetattr(fd)
    quiet = list(saved)
    quiet[3] &= ~termios.ECHO
    termios.tcsetattr(fd, termios.TCSANOW, quiet)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSANOW, saved)


@contextlib.contextmanager
def own_terminal(fd: int) -> Iterator[None]:
    """While this lasts, this process alone is the terminal's foreground process group, so a
    Ctrl-C typed there reaches it once. The runtime is the child of PyInstaller's bootloader,
    which forwards every signal it gets; a Ctrl-C reaches both (they share a process group),
    so the chat got each one twice, the second as late as the bootloader was scheduled: it
    could come after the answer it stopped had ended, and quit the chat. Shells give a job
    the terminal the same way (setpgid + tcsetpgrp). Windows' bootloader ignores Ctrl-C, so
    there the console's one event reaches the runtime alone already."""
    if WINDOWS:
        yield
        return
    import signal

    def move(group: int, foreground: int) -> None:
        # A process outside the foreground group that sets it gets SIGTTOU: ignored meanwhile.
        previous = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
        try:
            os.setpgid(0, group)
            os.tcsetpgrp(fd, foreground)
        finally:
            signal.signal(signal.SIGTTOU, previous)

    try:
        before = os.getpgrp()
        if os.tcgetpgrp(fd) != before:  # not the terminal's foreground job: leave it be
            yield
            return
        move(0, os.getpid())
    except OSError:  # a session leader, or no terminal after all: as it is
        yield
        return
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            move(before, before)


def own_port(sock: socket.socket) -> None:
    """Before bind: a port this process alone may listen on, free again as soon as it exits.
    Linux: SO_REUSEADDR (a restart need not wait out TIME_WAIT; a port in use still fails).
    Windows: SO_REUSEADDR would let a second program bind the same port and take its
    connections, so SO_EXCLUSIVEADDRUSE, and the "next free port" logic sees a busy port."""
    if sys.platform == "win32":
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_EXCLUSIVEADDRUSE, 1)
    else:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)


def utf8_output() -> None:
    """Windows: answers in any language on stdout/stderr. A console gets UTF-16 from Python
    anyway, but a pipe or a file (`model.exe -p ... > answer.txt`) would get the ANSI code
    page (cp1252), which cannot write most scripts: UTF-8 instead, as on Linux."""
    if WINDOWS:
        for stream in (sys.stdout, sys.stderr):
            reconfigure = getattr(stream, "reconfigure", None)
            if reconfigure is not None:
                reconfigure(encoding="utf-8", errors="replace")


def piped_text(stdin: TextIO) -> Iterator[str]:
    """The lines piped into stdin (`--chat` reading questions), as text. Linux: the locale's
    encoding, as Python reads it. Windows: Python decodes a pipe with the ANSI code page
    (cp1252, cp936, ...), while what is piped today is mostly UTF-8 (files from Notepad or an
    editor, PowerShell 7): a Chinese question arrived as mojibake. Each line is read as
    UTF-8 then, and in the ANSI code page where it is not valid UTF-8 (cmd's `echo`)."""
    if not WINDOWS:
        yield from stdin
        return
    import codecs
    import locale

    ansi = locale.getpreferredencoding(False)
    for number, raw in enumerate(stdin.buffer):
        if number == 0:
            raw = raw.removeprefix(codecs.BOM_UTF8)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode(ansi, errors="replace")
        yield text.replace("\r\n", "\n")


def die_with_parent(signal_number: int) -> None:
    """This process ends when its parent (PyInstaller's bootloader) dies, rather than live on
    holding the port. Linux: the kernel sends `signal_number`. Windows has no such thing (and
    the bootloader makes no job object): a thread waits on the parent's process handle."""
    if WINDOWS:
        _exit_with_parent_windows()
        return
    PR_SET_PDEATHSIG = 1
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal_number)


def _exit_with_parent_windows() -> None:
    if sys.platform != "win32":
        return
    import threading

    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
    kernel32.OpenProcess.restype = ctypes.c_void_p
    kernel32.WaitForSingleObject.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
    SYNCHRONIZE, INFINITE = 0x00100000, 0xFFFFFFFF
    parent = kernel32.OpenProcess(SYNCHRONIZE, False, os.getppid())
    if not parent:  # not ours to watch (no such process, or not allowed): leave it
        return

    def wait() -> None:
        kernel32.WaitForSingleObject(parent, INFINITE)
        os._exit(1)

    threading.Thread(target=wait, name="parent-watch", daemon=True).start()
