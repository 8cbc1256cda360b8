"""The real demo model (Gemma 3 270M Q4_K_M) end to end: build, launch, chat, no weight copy."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import openai
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("built")]

BIG = 50 * 1024 * 1024  # the demo weights are 253 MB; no file near that size may appear


def big_files(*roots: Path) -> set[Path]:
    found = set()
    for root in roots:
        for dirpath, _, names in os.walk(root):
            for name in names:
                path = Path(dirpath) / name
                try:
                    if path.is_file() and not path.is_symlink() and path.stat().st_size > BIG:
                        found.add(path)
                except OSError:
                    pass
    return found


def server_pid(bootloader_pid: int) -> int:
    children = Path(f"/proc/{bootloader_pid}/task/{bootloader_pid}/children").read_text().split()
    assert len(children) == 1
    return int(children[0])


def test_demo_artifact_chats_and_maps_weights_from_itself(demo_artifact, demo_model, serve,
                                                           shared_cache):
    roots = [Path("/tmp"), shared_cache, Path(os.environ["HOME"])]
    before = big_files(*roots)
    server = serve(demo_artifact)
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused")
    stream = client.chat.completions.create(
        model="gemma-3-270m-q4_k_m", stream=True, max_tokens=24, temperature=0,
        messages=[{"role": "user", "content": "What is the capital of France?"}])
    answer = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert answer.strip()
    # Nothing of the weights was copied anywhere...
    assert big_files(*roots) - before == set()
    # ...because the server maps them straight from the artifact file.
    maps = Path(f"/proc/{server_pid(server.proc.pid)}/maps").read_text()
    mapped = sum(int(end, 16) - int(start, 16)
                 for line in maps.splitlines() if line.endswith(str(demo_artifact))
                 for start, end in [line.split()[0].split("-")])
    assert mapped >= demo_model.stat().st_size * 0.9


def test_demo_artifact_one_shot(demo_artifact):
    proc = subprocess.run([str(demo_artifact), "-p", "Name a color.", "-n", "12", "--temp", "0"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip()


def test_demo_artifact_verify(demo_artifact):
    proc = subprocess.run([str(demo_artifact), "--verify"], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0 and proc.stdout.startswith("OK")
