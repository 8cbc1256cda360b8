"""The artifact as its users run it: a subprocess, spoken to over HTTP."""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import time
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.usefixtures("built")


def sse_events(response: httpx.Response) -> list[str]:
    return [line[len("data: "):] for line in response.iter_lines() if line.startswith("data: ")]


def test_artifact_streams_a_chat_answer_over_http(tiny_artifact, serve):
    server = serve(tiny_artifact)
    body = {"messages": [{"role": "user", "content": "hello"}], "stream": True,
            "max_tokens": 12, "seed": 1}
    with httpx.stream("POST", server.url + "/v1/chat/completions", json=body) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        events = sse_events(r)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == "tiny" for c in chunks)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert text.strip()
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"


def test_one_shot_prompt_prints_the_answer_and_exits_zero(tiny_artifact):
    proc = subprocess.run([str(tiny_artifact), "-p", "hello", "-n", "8"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip()


def test_same_seed_gives_the_same_answer(tiny_artifact, serve):
    server = serve(tiny_artifact)
    body = {"messages": [{"role": "user", "content": "the cat"}], "max_tokens": 10,
            "seed": 42, "temperature": 0.9}
    answers = [httpx.post(server.url + "/v1/chat/completions", json=body, timeout=60).json()
               for _ in range(2)]
    assert answers[0]["choices"][0]["message"] == answers[1]["choices"][0]["message"]
    assert answers[0]["usage"]["completion_tokens"] == 10


def test_info_and_verify(tiny_artifact):
    info = json.loads(subprocess.run([str(tiny_artifact), "--info"], capture_output=True,
                                     text=True, check=True).stdout)
    assert info["name"] == "Tiny Test" and info["sections"][0]["name"] == "weights"
    ok = subprocess.run([str(tiny_artifact), "--verify"], capture_output=True, text=True)
    assert ok.returncode == 0 and ok.stdout.startswith("OK: weights match xxh3-128:")


def test_verify_catches_a_flipped_bit_in_the_weights(tiny_artifact, tmp_path):
    broken = tmp_path / "broken.llamabundle"
    shutil.copy(tiny_artifact, broken)
    info = json.loads(subprocess.check_output([str(broken), "--info"]))
    weights = info["sections"][0]
    with open(broken, "r+b") as f:
        f.seek(weights["offset"] + weights["length"] // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0x10]))
    proc = subprocess.run([str(broken), "--verify"], capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.strip().endswith(
        "weights are corrupted (checksum mismatch); get a fresh copy")


def test_a_flipped_bit_in_the_manifest_is_caught_at_launch(tiny_artifact, tmp_path):
    broken = tmp_path / "broken.llamabundle"
    data = bytearray(tiny_artifact.read_bytes())
    offset = int.from_bytes(data[-16:-8], "little")  # the footer's manifest offset
    data[offset + 10] ^= 0x01
    broken.write_bytes(data)
    broken.chmod(0o755)
    proc = subprocess.run([str(broken), "--nobrowser"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.strip().endswith("corrupted artifact (manifest checksum mismatch)")
    assert "Traceback" not in proc.stderr


def test_a_truncated_artifact_says_so_in_one_line(tiny_artifact, tmp_path):
    cut = tmp_path / "cut.llamabundle"
    cut.write_bytes(tiny_artifact.read_bytes()[:-5000])
    cut.chmod(0o755)
    proc = subprocess.run([str(cut), "--nobrowser"], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip()


def test_baked_defaults_apply_and_one_flag_overrides_only_itself(tiny_gguf, tmp_path, serve,
                                                                  shared_cache):
    from conftest import build_cli

    out = tmp_path / "baked.llamabundle"
    build_cli(tiny_gguf, "-o", out, "--temp", "0.3", "-c", "256", "--system-prompt", "Be kind.",
              cache=shared_cache)
    server = serve(out, "--temp", "1.5")
    props = httpx.get(server.url + "/props").json()
    assert props["defaults"]["temperature"] == 1.5  # the launch flag
    assert props["n_ctx"] == 256  # still the baked one
    assert props["system_prompt"] == "Be kind."
    assert props["cpu"]["variant"] in props["cpu"]["available"]  # the CPU code it chose
    assert "CPU code: " + props["cpu"]["variant"] in server.stop()  # and said so at start


def test_environment_variable_overrides_the_baked_default(tiny_artifact, serve):
    env = dict(os.environ, LLAMABUNDLE_SYSTEM_PROMPT="From env.")
    server = serve(tiny_artifact, env=env)
    assert httpx.get(server.url + "/props").json()["system_prompt"] == "From env."


def test_next_free_port_is_used_and_said_when_the_port_is_taken(tiny_artifact):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.Popen([str(tiny_artifact), "--nobrowser", "--port", str(port)],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            lines = [proc.stdout.readline(), proc.stdout.readline()]  # type: ignore[union-attr]
            assert f"port {port} is in use; using {port + 1} instead" in "".join(lines)
            assert f"http://localhost:{port + 1}/" in "".join(lines)
            # The URL is said as the server starts, a moment before it listens.
            deadline = time.monotonic() + 30
            while True:
                try:
                    r = httpx.get(f"http://localhost:{port + 1}/health", timeout=10)
                    break
                except httpx.ConnectError:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise
                    time.sleep(0.1)
            assert r.status_code in (200, 503)
        finally:
            proc.terminate()
            proc.wait(10)


def test_launch_prints_the_url(tiny_artifact, serve):
    server = serve(tiny_artifact)
    server.proc.terminate()
    assert f"is starting on http://localhost:{server.port}/" in server.stop()


def test_public_host_without_api_key_is_refused(tiny_artifact):
    proc = subprocess.run([str(tiny_artifact), "--nobrowser", "--host", "0.0.0.0"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "--api-key" in proc.stderr and "Traceback" not in proc.stderr


def _minimal_root(root: Path, artifact: Path) -> Path:
    """A root file system holding only glibc, zlib and the artifact: no Python, no compiler."""
    libs = ["libz.so.1", "libc.so.6", "libm.so.6", "libdl.so.2", "libpthread.so.0", "librt.so.1",
            "libutil.so.1"]
    libdir = root / "lib" / "x86_64-linux-gnu"
    libdir.mkdir(parents=True)
    for name in libs:
        shutil.copy(Path("/lib/x86_64-linux-gnu") / name, libdir / name)
    (root / "lib64").mkdir()
    shutil.copy("/lib64/ld-linux-x86-64.so.2", root / "lib64")
    (root / "tmp").mkdir()
    (root / "dev").mkdir()  # every real system has /dev/null; llama-cpp-python opens it
    os.mknod(root / "dev" / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    (root / "app").mkdir()
    shutil.copy(artifact, root / "app" / "assistant")
    return root


@pytest.mark.skipif(os.geteuid() != 0, reason="chroot needs root")
def test_artifact_answers_in_a_root_without_python(tiny_artifact, tmp_path):
    root = _minimal_root(tmp_path / "root", tiny_artifact)
    assert not list(root.rglob("*python*"))
    cmd = ["/usr/sbin/chroot", str(root), "/app/assistant", "-p", "hello", "-n", "6"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                          env={"PATH": "/nowhere"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip()
