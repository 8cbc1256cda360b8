"""One artifact for any x86-64 Linux: the CPU code is chosen when it starts, on this CPU and on
older ones emulated by qemu, and it runs in a Debian root file system that has no Python."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ROOT
from debian_roots import debian_root, run_inside

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(os.geteuid() != 0, reason="binfmt_misc and chroot need root")]

QEMU = "/usr/bin/qemu-x86_64"  # Debian's qemu-user; .ci/run installs it
BINFMT = Path("/proc/sys/fs/binfmt_misc")
EMULATED = ".emulated-cpu"  # files named *.emulated-cpu run under qemu while the tests run

# What each variant's code needs, in /proc/cpuinfo's names, from the least to the most capable;
# ggml's scores (ggml-cpu/arch/x86/cpu-feats.cpp) rank them in the same order.
HASWELL = {"sse4_2", "avx", "f16c", "fma", "avx2", "bmi2"}
AVX512 = {"avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw"}
NEEDS = {
    "x64": set(),
    "sse42": {"sse4_2"},
    "sandybridge": {"sse4_2", "avx"},
    "haswell": HASWELL,
    "alderlake": HASWELL | {"avx_vnni"},
    "skylakex": HASWELL | AVX512,
    "icelake": HASWELL | AVX512 | {"avx512vbmi", "avx512_vnni"},
}
GLIBC_FLOOR = "2.31"  # README, "Which computers it runs on"


def cpu_flags() -> set[str]:
    text = Path("/proc/cpuinfo").read_text()
    return set(re.search(r"^flags\s*:(.*)$", text, re.M).group(1).split())  # type: ignore


def best_variant(available: list[str], flags: set[str]) -> str:
    fits = [v for v in NEEDS if v in available and NEEDS[v] <= flags]
    return fits[-1]


def info(artifact: Path, env: dict[str, str] | None = None) -> dict:
    proc = subprocess.run([str(artifact), "--info"], capture_output=True, text=True,
                          timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def emulation() -> Iterator[None]:
    """Registers qemu-user for files ending in EMULATED. Through binfmt_misc, not by running
    `qemu-x86_64 ARTIFACT`: PyInstaller's launcher execs itself for the real work, and that
    child must be emulated too. QEMU_CPU (inherited by the child) picks the CPU model."""
    assert Path(QEMU).exists(), "qemu-user is missing (apt-get install qemu-user)"
    if not (BINFMT / "register").exists():
        subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)], check=True)
    name = f"llamabundle-test-{os.getpid()}"
    (BINFMT / "register").write_text(f":{name}:E::{EMULATED[1:]}::{QEMU}:")
    try:
        yield
    finally:
        (BINFMT / name).write_text("-1")


def emulated(artifact: Path, tmp_path: Path) -> Path:
    # A hard link keeps the file's own name in /proc/self/exe (a symlink would resolve to the
    # original, which the child would then run natively).
    link = tmp_path / (artifact.stem + EMULATED)
    try:
        os.link(artifact, link)
    except OSError:
        shutil.copy(artifact, link)
    return link


def test_this_cpu_gets_its_best_variant(tiny_artifact):
    cpu = info(tiny_artifact)["cpu"]
    assert set(cpu["available"]) == set(NEEDS)
    assert cpu["variant"] == best_variant(cpu["available"], cpu_flags())
    assert "SSE3" in cpu["features"]


PROMPT = ["-p", "1, 2, 3, 4, 5, 6, 7, 8,", "-n", "8", "--temp", "0"]


@pytest.fixture(scope="module")
def native_answer(demo_artifact) -> str:
    """The demo model's greedy answer with this CPU's (most capable) variant."""
    proc = subprocess.run([str(demo_artifact), *PROMPT], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.split()) >= 3, proc.stdout
    return proc.stdout


@pytest.mark.parametrize(("model", "variant", "isa"), [
    ("Nehalem", "sse42", None),  # 2008: SSE4.2, no AVX
    ("Haswell", "haswell", "AVX2"),  # 2013: AVX2, no AVX-512
])
def test_older_cpus_run_the_artifact_with_their_variant(emulation, demo_artifact, native_answer,
                                                        tmp_path, model, variant, isa):
    artifact = emulated(demo_artifact, tmp_path)
    env = dict(os.environ, QEMU_CPU=model)
    cpu = info(artifact, env)["cpu"]
    assert cpu["variant"] == variant
    assert "AVX512" not in cpu["features"]
    assert isa is None or isa in cpu["features"]
    if isa is None:
        assert "AVX" not in cpu["features"]
    proc = subprocess.run([str(artifact), *PROMPT], capture_output=True, text=True, env=env,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr
    assert f"CPU code: {variant} " in proc.stderr
    # The same greedy answer as the native run: other kernels, same model, same tokens.
    assert proc.stdout == native_answer


def test_a_planted_cpu_library_is_never_loaded(tiny_artifact, tmp_path):
    """ggml's default search includes the executable's folder and the current directory; a
    libggml-cpu-*.so left there (a download, a shared folder) must not be loaded."""
    source = tmp_path / "planted.c"
    marker = tmp_path / "planted-ran"
    source.write_text(
        '#include <stdio.h>\n'
        '__attribute__((constructor)) static void ran(void) {\n'
        f'    fclose(fopen("{marker}", "w"));\n'
        '}\n'
        'int ggml_backend_score(void) { return 1 << 20; }\n')
    folder = tmp_path / "downloads"
    folder.mkdir()
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(folder / "libggml-cpu-planted.so"),
                    str(source)], check=True)
    artifact = folder / "assistant"
    shutil.copy(tiny_artifact, artifact)
    proc = subprocess.run([str(artifact), "-p", "hi", "-n", "2"], cwd=folder,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert not marker.exists()
    assert "CPU code: planted" not in proc.stderr


@pytest.mark.parametrize("release", ["bullseye", "bookworm"])  # Debian 11 (glibc 2.31), 12
def test_debian_without_python_runs_the_artifact(tiny_artifact, release):
    proc = run_inside(debian_root(release), tiny_artifact, "-p", "hello", "-n", "6")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip()
    assert "CPU code: " in proc.stderr


def test_glibc_floor_is_what_the_readme_says(built, tmp_path):
    """No file in the runtime (the launcher, and every library and extension in its archive)
    needs a glibc newer than the floor we state, and the runtime package is tagged for it."""
    import llamabundle_runtime

    from bundler.runtime_package import ensure_runtime

    newest = newest_glibc(ensure_runtime().path, tmp_path)
    assert newest <= floor(GLIBC_FLOOR), newest
    assert llamabundle_runtime.GLIBC == f"{newest[0]}.{newest[1]}"
    assert f"glibc {GLIBC_FLOOR}" in (ROOT / "README.md").read_text()


def floor(version: str) -> tuple[int, int]:
    major, minor = version.split(".")
    return int(major), int(minor)


def newest_glibc(executable: Path, tmp_path: Path) -> tuple[int, int]:
    from PyInstaller.archive.readers import CArchiveReader

    archive = CArchiveReader(str(executable))
    files = [executable]
    for name, (*_, typecode) in archive.toc.items():
        if typecode in ("b", "e", "x"):  # binary, extension, external (see PyInstaller)
            files.append(tmp_path / f"elf-{len(files)}")
            files[-1].write_bytes(archive.extract(name))
    assert len(files) > 20  # libpython, llama.cpp's libraries, the extension modules...
    newest = (0, 0)
    for path in files:
        if path.read_bytes()[:4] != b"\x7fELF":  # typecode "x" also holds base_library.zip
            continue
        symbols = subprocess.run(["objdump", "-T", str(path)], capture_output=True,
                                 text=True, check=True).stdout
        for major, minor in re.findall(r"GLIBC_(\d+)\.(\d+)", symbols):
            newest = max(newest, (int(major), int(minor)))
    return newest
