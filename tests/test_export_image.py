"""`llamabundle export-image`: the artifact as a container image that podman loads and runs,
serving on 0.0.0.0:8080 behind an API key, with /health as readiness."""

from __future__ import annotations

import asyncio
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import httpx
import pytest
from conftest import free_port

from runtime.web.guard import Guard

PODMAN = ["podman", "--runtime", "runc", "--cgroup-manager", "cgroupfs"]
# These machines need runc (crun refuses their hybrid cgroup set-up) and explicit ulimits.
RUN = [*PODMAN, "run", "--rm", "-d", "--network=host", "--ulimit", "nofile=1024:1024",
       "--ulimit", "nproc=1024:1024"]


@pytest.fixture(scope="module")
def image(tiny_artifact: Path, tmp_path_factory: pytest.TempPathFactory,
          shared_cache: Path) -> Path:
    out = tmp_path_factory.mktemp("image") / "tiny.image.tar"
    proc = cli("export-image", tiny_artifact, "-o", out, "--tag", "llamabundle-test/tiny:1",
               cache=shared_cache)
    assert proc.returncode == 0, proc.stderr
    return out


def cli(*args: object, cache: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bundler", *map(str, args)],
                          capture_output=True, text=True,
                          env={**os.environ, "XDG_CACHE_HOME": str(cache)})


def members(tar_path: Path) -> dict[str, bytes]:
    with tarfile.open(tar_path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}  # type: ignore


def test_image_is_a_docker_archive_with_the_artifact_and_its_system_libraries(
        image: Path, tiny_artifact: Path) -> None:
    files = members(image)
    (entry,) = json.loads(files["manifest.json"])
    assert entry["RepoTags"] == ["llamabundle-test/tiny:1"]
    config = json.loads(files[entry["Config"]])
    # the image's defaults as environment, so that `-e LLAMABUNDLE_PORT=...` works; one port
    assert config["config"]["Entrypoint"] == ["/app/model.llamabundle"]
    env = dict(item.split("=", 1) for item in config["config"]["Env"])
    assert {key: env[key] for key in env if key.startswith("LLAMABUNDLE_")} == {
        "LLAMABUNDLE_HOST": "0.0.0.0", "LLAMABUNDLE_PORT": "8080",
        "LLAMABUNDLE_OLLAMA_PORT": "0", "LLAMABUNDLE_NOBROWSER": "true"}
    assert config["config"]["User"] == "65534:65534"
    assert config["config"]["ExposedPorts"] == {"8080/tcp": {}}
    layers = [members_of(files[name]) for name in entry["Layers"]]
    system, app = layers
    assert app["app/model.llamabundle"] == tiny_artifact.read_bytes()
    names = {Path(name).name for name in system}
    # the bootloader's own needs (libz before anything is unpacked) and glibc's loader
    assert {"libc.so.6", "libz.so.1", "ld-linux-x86-64.so.2", "libgcc_s.so.1"} <= names
    assert len(system) < 20  # the few libraries the runtime needs, not a distribution


def members_of(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}  # type: ignore


def test_image_bytes_are_reproducible(image: Path, tiny_artifact: Path, tmp_path: Path,
                                      shared_cache: Path) -> None:
    again = tmp_path / "again.tar"
    cli("export-image", tiny_artifact, "-o", again, "--tag", "llamabundle-test/tiny:1",
        cache=shared_cache)
    assert again.read_bytes() == image.read_bytes()


def test_export_image_refuses_what_is_not_an_artifact_and_leaves_nothing(
        tiny_gguf: Path, tmp_path: Path, shared_cache: Path) -> None:
    out = tmp_path / "out" / "x.tar"
    out.parent.mkdir()
    proc = cli("export-image", tiny_gguf, "-o", out, cache=shared_cache)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith("Error: ")
    assert "Traceback" not in proc.stderr
    assert list(out.parent.iterdir()) == []


def test_export_image_keeps_an_existing_output_without_force(
        image: Path, tiny_artifact: Path, shared_cache: Path) -> None:
    before = image.read_bytes()
    proc = cli("export-image", tiny_artifact, "-o", image, cache=shared_cache)
    assert proc.returncode == 1 and "already exists" in proc.stderr
    assert image.read_bytes() == before


def _status(guard: Guard, host: str, key: str | None = None) -> int:
    async def go() -> int:
        transport = httpx.ASGITransport(app=guard)
        headers = {"Host": host, **({"Authorization": f"Bearer {key}"} if key else {})}
        async with httpx.AsyncClient(transport=transport, base_url="http://x") as client:
            return (await client.get("/v1/models", headers=headers)).status_code

    return asyncio.run(go())


async def _ok(scope: object, receive: object, send: object) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})  # type: ignore
    await send({"type": "http.response.body", "body": b"{}"})  # type: ignore


def test_wildcard_bind_with_a_key_accepts_any_host_but_not_a_missing_key() -> None:
    """Behind a Service or an ingress the Host is a name the server cannot know; the key
    guards it. On loopback the Host check still stops DNS rebinding."""
    wildcard = Guard(_ok, bound_host="0.0.0.0", api_key="k", max_body=1024)
    assert _status(wildcard, "llm.default.svc.cluster.local:8080", "k") == 200
    assert _status(wildcard, "10.1.2.3:8080") == 401
    loopback = Guard(_ok, bound_host="127.0.0.1", api_key="k", max_body=1024)
    assert _status(loopback, "evil.example", "k") == 421


@pytest.mark.slow
def test_podman_loads_and_runs_the_image_behind_an_api_key(image: Path) -> None:
    assert shutil.which("podman"), "podman is needed (Debian's podman and runc; .ci/run)"
    subprocess.run([*PODMAN, "load", "-i", str(image)], check=True, capture_output=True)
    port = free_port()
    name = f"llamabundle-test-{port}"
    subprocess.run([*RUN, "--name", name, "-e", "LLAMABUNDLE_API_KEY=s3cret",
                    "-e", f"LLAMABUNDLE_PORT={port}", "localhost/llamabundle-test/tiny:1"],
                   check=True, capture_output=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        else:
            logs = subprocess.run([*PODMAN, "logs", name], capture_output=True, text=True)
            pytest.fail(f"the container never became ready:\n{logs.stdout}{logs.stderr}")
        headers = {"Host": "llm.example.internal", "Authorization": "Bearer s3cret"}
        r = httpx.post(url + "/v1/chat/completions", headers=headers, timeout=60,
                       json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4})
        assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 4
        assert httpx.get(url + "/v1/models", timeout=5).status_code == 401
        said = subprocess.run([*PODMAN, "logs", name], capture_output=True, text=True)
        assert f"starting on http://0.0.0.0:{port}/" in said.stdout, said.stdout
        assert "Ollama clients" not in said.stdout  # the one port: no 0.0.0.0:11434 as well
    finally:
        subprocess.run([*PODMAN, "rm", "-f", name], capture_output=True)
        subprocess.run([*PODMAN, "rmi", "-f", "localhost/llamabundle-test/tiny:1"],
                       capture_output=True)
