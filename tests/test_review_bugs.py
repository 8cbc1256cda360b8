"""The bugs found in review of the first version, each shown fixed as a user would meet it."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import free_port
from fake import FakeEngine, FakeServer

from bundler.cli import main as cli
from runtime.errors import LoadError
from runtime.generation import Event, GenerationRequest

ROOT = Path(__file__).resolve().parent.parent
CHAT = {"messages": [{"role": "user", "content": "hi"}]}


# 1. A load failure that is not one of ours reaches /health, the log and the exit code.

FAILING_LOAD = """
import sys
import runtime.engine
def boom(*args, **kwargs):
    raise OSError("libggml-cpu-haswell.so: cannot open shared object file")
runtime.engine.Engine.load = classmethod(boom)
from runtime.main import main
sys.exit(main(sys.argv[1:]))
"""


def _run_failing(artifact: Path, *args: str, **kwargs: object) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", FAILING_LOAD, str(artifact), *args],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **kwargs)  # type: ignore[call-overload]


@pytest.mark.usefixtures("built")
def test_a_foreign_load_failure_with_p_is_one_line_and_exit_1(tiny_artifact):
    proc = _run_failing(tiny_artifact, "-p", "hello")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and out == ""
    assert err.strip().splitlines() == [
        "llamabundle: could not load the model: OSError: "
        "libggml-cpu-haswell.so: cannot open shared object file"]


@pytest.mark.usefixtures("built")
def test_a_foreign_load_failure_when_serving_reaches_health_log_and_exit_code(tiny_artifact):
    port = free_port()
    proc = _run_failing(tiny_artifact, "--nobrowser", "--port", str(port))
    try:
        deadline = time.monotonic() + 60
        while True:
            assert time.monotonic() < deadline, "/health never reported the failure"
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
                if r.status_code != 503:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        assert r.status_code == 500 and r.json()["status"] == "error"
        assert "OSError: libggml-cpu-haswell.so" in r.json()["message"]
        chat = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=CHAT)
        assert chat.status_code == 503 and "could not load the model" in chat.text
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 1
    errors = [line for line in err.splitlines() if "could not load" in line]
    assert len(errors) == 1 and "Traceback" not in err


def test_load_engine_turns_any_exception_into_one_load_error(monkeypatch):
    import runtime.engine
    from runtime.load import load_engine

    def boom(*args: object) -> None:
        raise ValueError("min() iterable argument is empty")

    monkeypatch.setattr(runtime.engine.Engine, "load", boom)
    with pytest.raises(LoadError, match=r"^could not load the model: ValueError: min\(\)"):
        load_engine("x", None, None)  # type: ignore[arg-type]


# 2. Bad environment values are one-line errors naming the variable.

@pytest.mark.usefixtures("built")
@pytest.mark.parametrize(("name", "value", "says"), [
    ("LLAMABUNDLE_PORT", "abc", "LLAMABUNDLE_PORT: expected an integer, got 'abc'"),
    ("LLAMABUNDLE_NOBROWSER", "ture", "LLAMABUNDLE_NOBROWSER: expected true or false, got "
                                      "'ture'")])
def test_a_bad_environment_value_is_one_line_naming_the_variable(tiny_artifact, name, value,
                                                                  says):
    proc = subprocess.run([str(tiny_artifact), "-p", "hi"], capture_output=True, text=True,
                          env=dict(os.environ, **{name: value}), timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [f"llamabundle: {says}"]


# 3. A chunked body over the limit is a 413, not a 400.

@pytest.fixture
def server() -> Iterator[FakeServer]:
    with FakeServer(FakeEngine(delay=0), free_port()) as s:
        yield s


def test_a_chunked_body_over_8_mib_is_413(server):
    def chunks() -> Iterator[bytes]:
        yield b'{"messages": [{"role": "user", "content": "'
        for _ in range(9):
            yield b"x" * (1 << 20)
        yield b'"}]}'

    r = httpx.post(server.url + "/v1/chat/completions", content=chunks(), timeout=30,
                   headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large"


def test_a_chunked_body_under_the_limit_is_served(server):
    def chunks() -> Iterator[bytes]:
        yield b'{"messages": [{"role": "user", '
        yield b'"content": "hi"}], "max_tokens": 2}'

    r = httpx.post(server.url + "/v1/chat/completions", content=chunks(),
                   headers={"Content-Type": "application/json"})
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "w0 w1 "


# 4. An unexpected exception is an OpenAI-shaped JSON 500, logged once with its traceback.

class BuggyEngine(FakeEngine):
    def generate(self, request: GenerationRequest) -> Iterator[Event]:
        raise ZeroDivisionError("a bug of ours")


def test_an_unexpected_exception_is_a_json_500_logged_once(caplog):
    with FakeServer(BuggyEngine(), free_port()) as s, caplog.at_level(logging.ERROR):
        r = httpx.post(s.url + "/v1/chat/completions", json=CHAT)
        stream = httpx.post(s.url + "/v1/chat/completions", json=CHAT | {"stream": True})
    assert r.status_code == 500 and stream.status_code == 500
    assert r.json()["error"]["type"] == "server_error"
    assert "a bug of ours" not in r.text  # internals stay in the log
    logged = [rec for rec in caplog.records if rec.exc_info and
              isinstance(rec.exc_info[1], ZeroDivisionError)]
    assert len(logged) == 2  # once per request
    assert "a bug of ours" in caplog.text and "Traceback" in caplog.text


# 5. n_predict 0 generates nothing; -1 runs until the context is full.

def test_native_n_predict_zero_generates_nothing_and_minus_one_means_the_context(server):
    r = httpx.post(server.url + "/completion", json={"prompt": "hi", "n_predict": 0})
    assert r.status_code == 200 and r.json()["content"] == ""
    assert r.json()["tokens_predicted"] == 0
    fake = server.state.engine
    httpx.post(server.url + "/completion", json={"prompt": "hi", "n_predict": -1})
    assert [r.max_tokens for r in fake.requests] == [0, -1]


@pytest.mark.usefixtures("built")
def test_real_engine_n_predict_zero_evaluates_the_prompt_and_stops(tiny_artifact):
    from runtime.artifact.manifest import read_manifest_at
    from runtime.engine import Engine
    from runtime.generation import Defaults, collect
    from runtime.settings import resolve

    settings = resolve({}, {"ctx_size": 64}, environ={})
    engine = Engine.load(str(tiny_artifact), read_manifest_at(str(tiny_artifact)), settings)
    defaults = Defaults.from_settings(settings)
    nothing = collect(engine.generate(defaults.request(prompt="hello world", max_tokens=0)))
    assert nothing.text == "" and nothing.finish.completion_tokens == 0
    assert nothing.finish.prompt_tokens > 0
    warm = collect(engine.generate(defaults.request(prompt="hello world", max_tokens=1)))
    assert warm.finish.cached_tokens == warm.finish.prompt_tokens - 1  # the prompt was kept
    full = collect(engine.generate(defaults.request(prompt="hello", max_tokens=-1,
                                                    temperature=0)))
    assert full.finish.reason == "stop" or full.finish.total_tokens == 64


# 6. --chat-template with a mistyped path, and two system prompts, are clear errors.

def test_a_mistyped_chat_template_path_is_an_error_not_a_template(runner, tiny_gguf, tmp_path):
    out = tmp_path / "x.llamabundle"
    result = runner.invoke(cli, ["build", str(tiny_gguf), "-o", str(out),
                                 "--chat-template", str(tmp_path / "tmplate.jinja")])
    assert result.exit_code == 2 and not out.exists()
    assert "tmplate.jinja: cannot read (No such file or directory)" in result.output


def test_a_chat_template_that_does_not_parse_is_refused(runner, tiny_gguf, tmp_path):
    result = runner.invoke(cli, ["build", str(tiny_gguf), "-o", str(tmp_path / "x"),
                                 "--chat-template", "{% for m in messages %}{{ m }}"])
    assert result.exit_code == 2 and "does not parse" in result.output


def test_system_prompt_and_system_prompt_file_together_are_refused(runner, tiny_gguf,
                                                                    tmp_path):
    prompt = tmp_path / "p.txt"
    prompt.write_text("Be kind.")
    result = runner.invoke(cli, ["build", str(tiny_gguf), "-o", str(tmp_path / "x"),
                                 "--system-prompt", "Be brief.",
                                 "--system-prompt-file", str(prompt)])
    assert result.exit_code == 2
    assert "--system-prompt or --system-prompt-file, not both" in result.output


def test_the_frozen_runtime_key_covers_files_in_subfolders(tmp_path, monkeypatch):
    from bundler import runtime_package

    root = tmp_path / "src"
    for rel in ("runtime/__init__.py", "runtime/web/app.py", "templates/index.html",
                "runtime-package/inside.sh", "scripts/cpu_variants.py"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("x")
    monkeypatch.setattr(runtime_package, "ROOT", root)
    before = runtime_package.source_key()
    (root / "runtime/web/app.py").write_text(textwrap.dedent("y"))
    assert runtime_package.source_key() != before
