"""Windows artifacts: `llamabundle build --os windows` on Linux, the .exe run under wine.

The builder needs no compiler and no wine (the Windows runtime package is prebuilt:
runtime-package/windows/); these tests need wine to run what it writes (tests/wine.py)."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import ollama
import openai
import pytest
import wine
from conftest import REAL_CACHE, ROOT, build_cli, free_port, port_is_free

pytestmark = [pytest.mark.skipif(bool(wine.MISSING), reason=wine.MISSING),
              pytest.mark.usefixtures("built", "built_windows")]


@pytest.fixture(scope="session")
def built_windows(shared_cache: Path) -> None:
    """The Windows runtime package installed here is the one built from this checkout
    (`make runtime-windows`: cached by content)."""
    from bundler import runtime_package
    from runtime.errors import BuildError

    try:
        runtime_package.ensure_runtime("windows")
    except BuildError:
        env = dict(os.environ, XDG_CACHE_HOME=str(REAL_CACHE), PYTHON=sys.executable)
        wheel = subprocess.run([str(ROOT / "runtime-package" / "windows" / "build.sh")],
                               env=env, check=True, stdout=subprocess.PIPE,
                               text=True).stdout.strip()
        subprocess.run([str(ROOT / "runtime-package" / "install.sh"), sys.prefix, wheel],
                       check=True)
        importlib.invalidate_caches()
        if "llamabundle_runtime_windows" in sys.modules:
            importlib.reload(sys.modules["llamabundle_runtime_windows"])
        runtime_package.ensure_runtime("windows")


@pytest.fixture(scope="module")
def prefix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    env = wine.make_prefix(tmp_path_factory.mktemp("wine"))
    yield env
    wine.end_prefix(env)


@pytest.fixture(scope="module")
def tiny_exe(tmp_path_factory: pytest.TempPathFactory, tiny_gguf: Path, shared_cache: Path,
             built: None, built_windows: None) -> Path:
    out = tmp_path_factory.mktemp("exe") / "tiny"
    build_cli(tiny_gguf, "--os", "linux,windows", "-o", out, cache=shared_cache)
    return out.with_name("tiny.exe")


def manifest_of(path: Path, cache: Path) -> dict:
    proc = subprocess.run([sys.executable, "-m", "bundler", "inspect", str(path), "--json"],
                          capture_output=True, text=True, env=dict(os.environ,
                                                                   XDG_CACHE_HOME=str(cache)))
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_one_command_writes_both(tiny_exe: Path, shared_cache: Path) -> None:
    linux = tiny_exe.with_name("tiny.llamabundle")
    assert tiny_exe.read_bytes()[:2] == b"MZ"
    assert linux.read_bytes()[:4] == b"\x7fELF"
    exe, elf = manifest_of(tiny_exe, shared_cache), manifest_of(linux, shared_cache)
    assert exe["sections"][0]["checksum"] == elf["sections"][0]["checksum"]
    assert exe["runtime_current"] and exe["runtime_key"] == elf["runtime_key"]


def test_exe_answers_a_prompt(tiny_exe: Path, prefix: dict[str, str]) -> None:
    proc = wine.run(tiny_exe, "-p", "Hello", "-n", "8", env=prefix)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip()
    info = wine.run(tiny_exe, "--info", env=prefix)
    assert info.returncode == 0, info.stderr
    cpu = json.loads(info.stdout)["cpu"]
    # The same CPU variants as Linux, and the same one chosen for this CPU (ggml scores each
    # DLL against cpuid as it does each .so); the prompt above ran on it (on an AVX-512 CPU,
    # icelake: the mingw-built AVX-512 code generating).
    linux = json.loads(subprocess.run([str(tiny_exe.with_name("tiny.llamabundle")), "--info"],
                                      capture_output=True, text=True, check=True).stdout)["cpu"]
    assert cpu["available"] == linux["available"] and len(cpu["available"]) == 7
    assert cpu["variant"] == linux["variant"] and cpu["features"] == linux["features"]


def test_bad_input_one_line_and_no_exe(tmp_path: Path, shared_cache: Path) -> None:
    not_gguf = tmp_path / "notes.gguf"
    not_gguf.write_text("not a model")
    for args in ([not_gguf, "--os", "windows"], [not_gguf, "--os", "macos"]):
        proc = subprocess.run([sys.executable, "-m", "bundler", "build", *map(str, args)],
                              capture_output=True, text=True, cwd=tmp_path,
                              env=dict(os.environ, XDG_CACHE_HOME=str(shared_cache)))
        assert proc.returncode != 0
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert not list(tmp_path.glob("*.exe"))


def test_signed_exe_still_finds_its_sections(tiny_exe: Path, tmp_path: Path,
                                             prefix: dict[str, str],
                                             shared_cache: Path) -> None:
    """An Authenticode signature appended after the build (as signtool does) moves the end of
    the file: the manifest is still found, and the .exe still runs."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=llamabundle test", "-keyout", key, "-out", cert],
                   check=True, capture_output=True)
    signed = tmp_path / "signed.exe"
    subprocess.run(["osslsigncode", "sign", "-certs", cert, "-key", key, "-in", tiny_exe,
                    "-out", signed], check=True, capture_output=True)
    assert signed.stat().st_size > tiny_exe.stat().st_size
    assert manifest_of(signed, shared_cache)["name"] == manifest_of(tiny_exe, shared_cache)["name"]
    proc = wine.run(signed, "-p", "Hello", "-n", "4", env=prefix)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip()


def test_weights_beside_a_big_exe(tiny_gguf: Path, tmp_path: Path, prefix: dict[str, str],
                                  shared_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past Windows' 4 GiB limit (lowered here, so that a tiny model takes that path) the
    weights go beside the .exe, which checks them and runs from them."""
    monkeypatch.setenv("LLAMABUNDLE_WINDOWS_EXE_LIMIT", "1000")
    proc = build_cli(tiny_gguf, "--os", "windows", "-o", tmp_path / "big.exe", cache=shared_cache)
    weights = tmp_path / "big.weights.gguf"
    assert weights.read_bytes() == tiny_gguf.read_bytes()
    assert "big.weights.gguf" in proc.stdout and "4 GiB" in proc.stdout
    assert tiny_gguf.read_bytes() not in (tmp_path / "big.exe").read_bytes()
    ok = wine.run(tmp_path / "big.exe", "-p", "Hello", "-n", "4", env=prefix)
    assert ok.returncode == 0, ok.stderr
    verify = wine.run(tmp_path / "big.exe", "--verify", env=prefix)
    assert verify.returncode == 0 and "OK: weights" in verify.stdout, verify.stderr

    weights.rename(tmp_path / "elsewhere.gguf")
    missing = wine.run(tmp_path / "big.exe", "-p", "Hello", env=prefix)
    assert missing.returncode == 1 and not missing.stdout
    assert "big.weights.gguf" in missing.stderr and "same folder" in missing.stderr
    with open(tmp_path / "elsewhere.gguf", "ab") as f:  # another file of another size
        f.write(b"\0" * 10)
    (tmp_path / "elsewhere.gguf").rename(weights)
    changed = wine.run(tmp_path / "big.exe", "-p", "Hello", env=prefix)
    assert changed.returncode == 1 and "not the one it was built with" in changed.stderr


@pytest.mark.slow
def test_demo_exe_serves_page_openai_and_ollama(demo_model: Path, tmp_path: Path,
                                                prefix: dict[str, str],
                                                shared_cache: Path) -> None:
    exe = tmp_path / "demo.exe"
    build_cli(demo_model, "--os", "windows", "-o", exe, cache=shared_cache)
    server = wine.launch(exe, "--ollama-port", "0", port=free_port(), env=prefix)
    try:
        page = httpx.get(server.url + "/", headers={"accept": "text/html"}, timeout=30)
        assert page.status_code == 200 and "<html" in page.text.lower()
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="none")
        answer = client.chat.completions.create(
            model="gemma-3-270m-q4_k_m", max_tokens=16, temperature=0,
            messages=[{"role": "user", "content": "What is the capital of France?"}])
        # (The 270M demo model's answers are not worth asserting on: that it answers is.)
        assert (answer.choices[0].message.content or "").strip()
        assert answer.usage is not None and answer.usage.completion_tokens == 16
        reply = ollama.Client(host=server.url).chat(
            model="gemma-3-270m-q4_k_m", options={"num_predict": 16, "temperature": 0},
            messages=[{"role": "user", "content": "What is the capital of France?"}])
        assert reply.done and reply.eval_count == 16 and reply.message.content.strip()
    finally:
        log = server.stop()
    assert "http://" in log  # it said where it serves


def sparse_big_gguf(path: Path, n_elements: int) -> Path:
    """A GGUF of one F32 tensor of n_elements, its data a hole in a sparse file: past 4 GiB
    on disk in name only. llama.cpp would not load it (no model in it); the build reads only
    its header and copies its bytes."""
    import numpy as np
    from gguf import GGUFWriter

    writer = GGUFWriter(str(path), "llama")
    writer.add_name("Big Test")
    writer.add_context_length(512)
    writer.add_tensor_info("big.weight", [n_elements], np.dtype(np.float32), n_elements * 4)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    writer.close()
    header = path.stat().st_size
    with open(path, "r+b") as f:
        f.truncate(-(-header // 32) * 32 + n_elements * 4)
    return path


@pytest.mark.slow
def test_a_model_past_4_gib_puts_its_weights_beside_the_exe(tmp_path: Path,
                                                            shared_cache: Path) -> None:
    big = sparse_big_gguf(tmp_path / "big.gguf", 1_100_000_000)  # 4.4 GB
    assert big.stat().st_size > 4 * 1024**3
    proc = build_cli(big, "--os", "windows", "-o", tmp_path / "out.exe", cache=shared_cache)
    exe, weights = tmp_path / "out.exe", tmp_path / "out.weights.gguf"
    assert exe.stat().st_size < 100 * 1024**2  # the runtime, the manifest: no weights
    assert weights.stat().st_size == big.stat().st_size
    assert "Windows cannot start an .exe of 4 GiB or more" in proc.stdout
    section = manifest_of(exe, shared_cache)["sections"][0]
    assert section["file"] == "out.weights.gguf" and section["offset"] == 0


def test_upgrade_an_exe_keeps_it_an_exe(tiny_gguf: Path, tmp_path: Path, prefix: dict[str, str],
                                        shared_cache: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """upgrade puts the Windows runtime around an .exe's sections (and leaves weights that are
    beside it where they are)."""
    env = dict(os.environ, XDG_CACHE_HOME=str(shared_cache))
    build_cli(tiny_gguf, "--os", "windows", "-o", tmp_path / "a.exe", cache=shared_cache)
    monkeypatch.setenv("LLAMABUNDLE_WINDOWS_EXE_LIMIT", "1000")
    build_cli(tiny_gguf, "--os", "windows", "-o", tmp_path / "b.exe", cache=shared_cache)
    env["LLAMABUNDLE_WINDOWS_EXE_LIMIT"] = "1000"
    for args in (["a.exe", "-o", "a2.exe"], ["b.exe", "--in-place", "--force"]):
        proc = subprocess.run([sys.executable, "-m", "bundler", "upgrade", *args], cwd=tmp_path,
                              capture_output=True, text=True, env=env)
        assert proc.returncode == 0, proc.stderr
    for exe in ("a2.exe", "b.exe"):
        assert (tmp_path / exe).read_bytes()[:2] == b"MZ"
        ok = wine.run(tmp_path / exe, "-p", "Hello", "-n", "4", env=prefix)
        assert ok.returncode == 0 and ok.stdout.strip(), ok.stderr
    assert manifest_of(tmp_path / "b.exe", shared_cache)["sections"][0]["file"] == "b.weights.gguf"


# ---- Qwen2.5-Coder-0.5B-Instruct with a knowledge bundle: one .exe, one launch under wine for
# cited answers, tools, two clients at once, /metrics and Ollama's port; then --chat.


@pytest.fixture(scope="module")
def knowledge_exe(instruct_gguf: Path, tmp_path_factory: pytest.TempPathFactory,
                  shared_cache: Path, built: None, built_windows: None) -> Path:
    from test_knowledge_e2e import COFFEE_HTML, ROUTER_MD

    documents = tmp_path_factory.mktemp("documents")
    (documents / "router.md").write_text(ROUTER_MD)
    (documents / "coffee.html").write_text(COFFEE_HTML)
    exe = tmp_path_factory.mktemp("kb") / "assistant.exe"
    build_cli(instruct_gguf, "--knowledge", documents, "--os", "windows", "-o", exe,
              "-c", "4096", cache=shared_cache)
    return exe


@pytest.fixture(scope="module")
def knowledge_server(knowledge_exe: Path,
                     prefix: dict[str, str]) -> Iterator[tuple[wine.WineServer, int]]:
    """The .exe serving with two sequences, and on Ollama's own port 11434 by default (another
    port, named, where something here holds 11434, or takes it before the .exe does)."""
    server = None
    if port_is_free(11434):
        server = wine.launch(knowledge_exe, "--parallel", "2", port=free_port(), env=prefix)
        if "find it on http://localhost:11434/" not in server.log.read_text():
            server.stop()
            server = None
    ollama_port = 11434 if server else free_port()
    server = server or wine.launch(knowledge_exe, "--parallel", "2", "--ollama-port",
                                   str(ollama_port), port=free_port(), env=prefix)
    yield server, ollama_port
    log = server.stop()
    assert f"Ollama clients find it on http://localhost:{ollama_port}/" in log, log


@pytest.mark.slow
def test_exe_knowledge_bundle_gives_a_cited_answer(knowledge_server) -> None:
    from test_knowledge_e2e import ask, cited_documents

    server, _ = knowledge_server
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="none", timeout=600)
    answer = ask(client, "What is the default admin PIN of the Zephyr X200 router?")
    text = answer["choices"][0]["message"]["content"]
    assert answer["sources"][0]["document"] == "router.md"
    assert answer["sources"][0]["location"].endswith("Admin page")
    assert "4827" in text and cited_documents(answer)[:1] == ["router.md"], text
    found = httpx.post(server.url + "/knowledge/search", json={"query": "descale"},
                       timeout=60).json()["results"]
    assert found[0]["document"] == "coffee.html"


@pytest.mark.slow
def test_exe_calls_a_tool(knowledge_server) -> None:
    from test_tools_e2e import ASK_WEATHER, TIME, calls_of, sdk
    from tool_calls import WEATHER

    server, _ = knowledge_server
    answer = sdk(server.url).chat.completions.create(
        model="assistant", messages=ASK_WEATHER, tools=[WEATHER, TIME], max_tokens=80,
        temperature=0, extra_body={"knowledge": False})
    assert calls_of(answer) == [("get_weather", {"city": "Paris"})]
    assert answer.choices[0].finish_reason == "tool_calls"


def stream_marks(url: str, question: str, max_tokens: int, marks: dict[str, float]) -> None:
    """A streamed chat (no knowledge: a story is not in the documents, and the bundle would
    say so in a few tokens); marks get the times of its first and last piece and its count."""
    client = openai.OpenAI(base_url=url + "/v1", api_key="none", timeout=600)
    for chunk in client.chat.completions.create(
            model="assistant", stream=True, temperature=0, max_tokens=max_tokens,
            messages=[{"role": "user", "content": question}],
            stream_options={"include_usage": True}, extra_body={"knowledge": False}):
        if chunk.choices and chunk.choices[0].delta.content:
            marks.setdefault("first", time.monotonic())
            marks["last"] = time.monotonic()
        if chunk.usage:
            marks["tokens"] = chunk.usage.completion_tokens


@pytest.mark.slow
def test_exe_decodes_two_clients_together_and_counts_them_in_metrics(knowledge_server) -> None:
    from test_metrics import samples

    server, _ = knowledge_server
    before = samples(server.url)
    long: dict[str, float] = {}
    short: dict[str, float] = {}
    first = threading.Thread(target=stream_marks, args=(
        server.url, "Write a long story about a lighthouse keeper.", 80, long))
    first.start()
    while "first" not in long and first.is_alive():
        time.sleep(0.01)
    stream_marks(server.url, "Say hello.", 5, short)
    first.join()
    assert long["tokens"] == 80 and short["tokens"] == 5
    assert short["last"] < long["last"]  # the short one came and went meanwhile
    after = samples(server.url)
    generated = ("llamabundle_generated_tokens_total", ())
    assert after[generated] - before.get(generated, 0) == 85
    assert after[("llamabundle_sequences_busy", ())] == 0
    assert after[("llamabundle_time_to_first_token_seconds_count", ())] >= 2


@pytest.mark.slow
def test_exe_answers_ollama_clients_on_ollamas_port(knowledge_server) -> None:
    _, port = knowledge_server
    client = ollama.Client(host=f"http://localhost:{port}")
    name = client.list().models[0].model
    assert name == "qwen2.5-coder-0.5b-instruct-q4_k_m:latest"
    reply = client.chat(model=name, options={"num_predict": 30, "temperature": 0},
                        messages=[{"role": "user", "content": "How often should I descale "
                                   "the Aroma 5 coffee machine?"}])
    assert reply.done and "6 weeks" in reply.message.content, reply.message.content


@pytest.mark.slow
def test_exe_chat_answers_piped_questions_and_exits(knowledge_exe: Path,
                                                    prefix: dict[str, str]) -> None:
    """--chat with its questions piped in, as `type questions.txt | assistant.exe --chat`
    would: one answer each, the knowledge bundle's sources under it, exit 0 at the end. The
    file is UTF-8 with Windows line ends: the Chinese question is read as written (Windows
    would decode a pipe with the ANSI code page), and finds the English passage it asks for."""
    questions = ("What is the default admin PIN of the Zephyr X200 router?\r\n"
                 "How often should I descale the Aroma 5?\r\n"
                 "Aroma 5 咖啡机的水箱能装多少升水？\r\n")
    proc = wine.run(knowledge_exe, "--chat", "--temp", "0", "-n", "60", input=questions,
                    env=prefix)
    assert proc.returncode == 0, proc.stderr
    answers = proc.stdout.split("Sources:")
    assert len(answers) == 4, proc.stdout
    assert "4827" in answers[0], proc.stdout
    assert "router.md" in answers[1] and "coffee.html" in answers[2]
    assert "coffee.html" in answers[3] and "Water tank" in answers[3], proc.stdout
    assert ">>>" not in proc.stdout  # no prompts in a pipe


@pytest.mark.slow
def test_exe_chat_in_the_windows_console(knowledge_exe: Path, prefix: dict[str, str]) -> None:
    """--chat in a console: wine gives the .exe a Windows console on a real terminal (tmux),
    so the runtime reads keys through the Win32 console API, as in a Command Prompt. A cited
    answer, Ctrl-C stopping a long one, Ctrl-D leaving with 0. (wine's console draws the
    edited line with stray escape codes: the checks look only at what the answers print.)"""
    from tmux import Terminal

    wine_env = [f"{k}={prefix[k]}" for k in ("WINEPREFIX", "WINEDEBUG", "WINEDLLOVERRIDES")]
    t = Terminal(["env", *wine_env, str(wine.WINE), str(knowledge_exe), "--chat",
                  "--temp", "0", "-n", "400"])
    try:
        t.wait_for(r"(?m)^>>>", timeout=300)
        time.sleep(1)  # the prompt is drawn a moment before it reads keys
        t.type("What is the default admin PIN of the Zephyr X200 router?")
        t.send("Enter")
        t.wait_for(r"Sources:\n  \[1\] router\.md", timeout=300)
        assert "4827" in t.screen()
        before = len(t.screen())
        t.type("Write a long manual for the Zephyr X200 router, at least 1000 words.")
        t.send("Enter")
        deadline = time.monotonic() + 300
        while len(t.screen()) < before + 150 and time.monotonic() < deadline:
            time.sleep(0.2)  # until the answer is well under way
        t.send("C-c")
        t.wait_for(r"\(stopped\)\n>>>", timeout=60)
        time.sleep(1)
        t.send("C-d")
        t.wait_for("EXIT=0", timeout=60)
    finally:
        t.close()


def unpacked(env: dict[str, str]) -> list[Path]:
    """The runtime folders PyInstaller unpacked into the prefix's temp folder (%TEMP%)."""
    return sorted(Path(env["WINEPREFIX"]).glob("drive_c/users/*/Temp/_MEI*"))  # wine 8's %TEMP%


@pytest.mark.slow
def test_exe_leaves_no_unpacked_folder_and_sweeps_a_killed_ones(tiny_exe: Path,
                                                              prefix: dict[str, str]) -> None:
    """A normal end removes the folder the .exe unpacked itself into; a killed .exe cannot,
    and the next start removes what it left (its lock is free: runtime/frozen.py)."""
    before = unpacked(prefix)
    assert wine.run(tiny_exe, "-p", "Hello", "-n", "2", env=prefix).returncode == 0
    assert unpacked(prefix) == before
    server = wine.launch(tiny_exe, port=free_port(), env=prefix)
    stale = [p for p in unpacked(prefix) if p not in before]
    assert len(stale) == 1  # the live one
    server.proc.kill()  # the bootloader, as Task Manager's End task would: no clean-up
    server.proc.wait(30)
    deadline = time.monotonic() + 30
    while not port_is_free(server.port):
        assert time.monotonic() < deadline, "the server outlived its launcher"
        time.sleep(0.2)
    assert all(p.exists() for p in stale)  # left behind...
    second = wine.launch(tiny_exe, port=free_port(), env=prefix)
    try:
        live = [p for p in unpacked(prefix) if p not in before]
        assert len(live) == 1 and live != stale  # ...and swept by the next start
    finally:
        second.stop()
