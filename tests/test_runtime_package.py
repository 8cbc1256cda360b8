"""The runtime package: the frozen runtime built once in a Debian 11 root (runtime-package/),
installed as a dependency and used as it is, so that `llamabundle build` needs no compiler and
its artifacts run on glibc 2.31 and newer, whatever machine built them."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import httpx
import pytest
from conftest import REAL_CACHE, ROOT
from debian_roots import debian_root, run_inside

pytestmark = pytest.mark.skipif(os.geteuid() != 0,
                                reason="the runtime package is built in a chroot; needs root")
COMPILERS = ("cc", "gcc", "c++", "g++", "clang", "cmake", "make", "ninja")


def build_sh(env_extra: dict[str, str] | None = None) -> tuple[Path, float]:
    """`make runtime`'s script, against the user's real cache: the wheel's path and the time."""
    env = dict(os.environ, XDG_CACHE_HOME=str(REAL_CACHE), PYTHON=sys.executable,
               **(env_extra or {}))
    started = time.monotonic()
    proc = subprocess.run([str(ROOT / "runtime-package" / "build.sh")], env=env,
                          stdout=subprocess.PIPE, text=True, check=True)
    return Path(proc.stdout.strip()), time.monotonic() - started


@pytest.fixture(scope="module")
def wheel(built) -> Path:
    return build_sh()[0]


def test_the_same_sources_give_no_rebuild(wheel):
    again, seconds = build_sh()
    assert again == wheel
    assert seconds < 10


def test_the_wheel_is_tagged_for_the_glibc_it_needs(wheel):
    import llamabundle_runtime

    assert wheel.name.endswith(f"-py3-none-manylinux_{llamabundle_runtime.GLIBC.replace('.', '_')}"
                               "_x86_64.whl")
    with zipfile.ZipFile(wheel) as whl:
        names = set(whl.namelist())
        mode = whl.getinfo("llamabundle_runtime/runtime").external_attr >> 16
    assert mode & 0o111
    assert any(n.startswith("llamabundle_runtime/licenses/CPython") for n in names)
    assert any(n.startswith("llamabundle_runtime/licenses/llama_cpp_python") for n in names)
    assert {"llamabundle_runtime/licenses/llama.cpp-LICENSE",
            "llamabundle_runtime/licenses/debian-libssl1.1-copyright"} <= names


@pytest.fixture(scope="module")
def compiler_free(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A fresh venv and a PATH with no compiler or build tool, where pip installed the build
    tool and its runtime package: its `llamabundle`, and the environment to run it in."""
    home = tmp_path_factory.mktemp("builder")
    venv = home / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    path = str(venv / "bin")
    assert [tool for tool in COMPILERS if shutil.which(tool, path=path)] == []
    env = {"PATH": path, "HOME": str(home), "PIP_CACHE_DIR": str(REAL_CACHE / "pip"),
           "PIP_DISABLE_PIP_VERSION_CHECK": "1", "XDG_CACHE_HOME": str(home / "cache")}
    install = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--find-links",
                              str(wheel.parent), str(ROOT)], env=env, capture_output=True,
                             text=True, timeout=900)
    assert install.returncode == 0, install.stderr[-3000:]
    listed = subprocess.run([str(venv / "bin" / "pip"), "list"], env=env, capture_output=True,
                            text=True, check=True).stdout
    assert "llamabundle-runtime" in listed
    assert "llama" not in listed.replace("llamabundle", "")  # nothing compiled llama.cpp
    return venv / "bin" / "llamabundle", env


@pytest.mark.slow
def test_a_builder_without_a_compiler_builds_an_artifact_that_runs_on_debian_11(
        compiler_free, tiny_gguf, tmp_path):
    """pip installs the build tool and its runtime package with no compiler, `llamabundle
    build` takes seconds, and the artifact answers, here and in Debian 11 and 12 roots that have
    no Python."""
    llamabundle, env = compiler_free
    out = tmp_path / "tiny.llamabundle"
    started = time.monotonic()
    build = subprocess.run([str(llamabundle), "build", str(tiny_gguf), "-o", str(out)],
                           env=env, capture_output=True, text=True, timeout=120)
    seconds = time.monotonic() - started
    assert build.returncode == 0, build.stderr
    assert seconds < 30, seconds

    answer = subprocess.run([str(out), "-p", "hello", "-n", "4"], capture_output=True,
                            text=True, timeout=120, env={"PATH": "/usr/bin:/bin"})
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.strip()
    for release in ("bullseye", "bookworm"):  # Debian 11 (glibc 2.31) and 12 (2.36)
        inside = run_inside(debian_root(release), out, "-p", "hello", "-n", "4")
        assert inside.returncode == 0, (release, inside.stderr)
        assert inside.stdout.strip() and "CPU code: " in inside.stderr


@pytest.mark.slow
def test_a_builder_without_a_compiler_builds_a_knowledge_bundle(compiler_free, tiny_gguf,
                                                                 tmp_path, serve):
    """The documents are embedded by the runtime package's frozen runtime (no llama.cpp in the
    builder's venv), and the artifact finds the passage that answers a question."""
    llamabundle, env = compiler_free
    out = tmp_path / "kb.llamabundle"
    docs = ROOT / "tests" / "data" / "knowledge" / "docs"
    build = subprocess.run([str(llamabundle), "build", str(tiny_gguf), "--knowledge",
                            str(docs), "-o", str(out)],
                           env=env, capture_output=True, text=True, timeout=900)
    assert build.returncode == 0, build.stderr
    assert "Traceback" not in build.stderr
    server = serve(out)
    found = httpx.post(server.url + "/knowledge/search",
                       json={"query": "What is the default admin password of the router?",
                             "top_k": 3}, timeout=120)
    assert found.status_code == 200, found.text
    results = found.json()["results"]
    assert results and results[0]["document"] == "en/router-manual.md", results
    chinese = httpx.post(server.url + "/knowledge/search",
                         json={"query": "拖地前水箱里应该加什么水？"}, timeout=120).json()
    assert chinese["results"][0]["document"] == "zh/扫地机器人.md", chinese


def test_every_command_inside_sh_runs_is_on_the_chroots_path(wheel):
    """inside.sh runs in the root with build.sh's PATH: bullseye keeps ldconfig in /sbin, and
    a PATH without it broke the cold build once, hidden by a cached root."""
    build = (ROOT / "runtime-package" / "build.sh").read_text()
    path = build.split("/usr/bin/env -i PATH=", 1)[1].split()[0].split(":")
    root_sh = ROOT / "runtime-package" / "root.sh"
    root = (REAL_CACHE / "llamabundle" / "rootfs"
            / f"bullseye-build-{hashlib.sha256(root_sh.read_bytes()).hexdigest()[:12]}")
    assert root.is_dir()
    for command in ("ldconfig", "apt-get", "sed", "sha256sum", "tar", "clang-19", "gcc"):
        assert any((root / d.lstrip("/") / command).exists() for d in path), command
