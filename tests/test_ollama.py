"""The Ollama dialect's shapes, options and errors, against a real HTTP server around the fake
engine (what reaches the engine is checked on the GenerationRequest it got)."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator

import httpx
import ollama
import pytest
from conftest import free_port
from fake import FakeEngine, FakeServer, manifest

from runtime.generation import ChatMessage, Infill
from runtime.settings import resolve
from runtime.state import State
from runtime.web.ollama_info import ModelInfo
from runtime.worker import Worker

CHAT = {"model": "fake", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def fake() -> FakeEngine:
    return FakeEngine(delay=0.001)


@pytest.fixture
def server(fake: FakeEngine) -> Iterator[FakeServer]:
    with FakeServer(fake, free_port()) as s:
        yield s


def test_root_says_ollama_is_running_unless_a_browser_asks(server):
    plain = httpx.get(server.url + "/")
    assert plain.status_code == 200 and plain.text == "Ollama is running"
    assert plain.headers["content-type"].startswith("text/plain")
    browser = httpx.get(server.url + "/", headers={
        "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"})
    assert browser.headers["content-type"].startswith("text/html") and "<html" in browser.text
    head = httpx.head(server.url + "/")
    assert head.status_code == 200 and head.content == b""
    for path in ("/api/version", "/api/tags"):
        assert httpx.head(server.url + path).status_code == 200


def test_version_is_one_ollama_clients_accept(server):
    version = httpx.get(server.url + "/api/version").json()["version"]
    assert tuple(map(int, version.split("."))) >= (0, 6, 4)


def test_model_is_listed_with_latest_and_answers_to_both_names(server):
    client = ollama.Client(host=server.url)
    listed = client.list().models
    assert [m.model for m in listed] == ["fake:latest"]
    assert listed[0].size == 1_000_000 and listed[0].details.format == "gguf"
    for name in ("fake", "fake:latest", "FAKE:latest"):
        assert client.chat(model=name, messages=CHAT["messages"],
                           options={"num_predict": 1}).model == "fake:latest"
    with pytest.raises(ollama.ResponseError) as e:
        client.chat(model="llama3:8b", messages=CHAT["messages"])
    assert e.value.status_code == 404 and e.value.error == "model 'llama3:8b' not found"


def test_show_has_what_zed_and_continue_read(server):
    shown = httpx.post(server.url + "/api/show", json={"name": "fake"}).json()  # Continue
    assert shown["model_info"]["general.architecture"] == "llama"
    assert shown["model_info"]["llama.context_length"] == 256  # the served context
    assert "completion" in shown["capabilities"]
    assert "num_ctx                        256" in shown["parameters"].splitlines()
    for key in ("license", "modelfile", "template", "system", "details", "modified_at"):
        assert isinstance(shown[key], str | dict), key
    assert httpx.post(server.url + "/api/show", json={"model": "other"}).status_code == 404


def test_show_capabilities_say_insert_only_with_fim_tokens(server, fake):
    shown = httpx.post(server.url + "/api/show", json={"model": "fake"}).json()
    assert shown["capabilities"] == ["completion", "tools", "embedding"]
    assert ".Suffix" not in shown["template"]
    fake.fills_in_middle = True  # the vocabulary has FIM tokens: editors look for both signs
    shown = ollama.Client(host=server.url).show("fake")
    assert shown.capabilities == ["completion", "tools", "insert", "embedding"]
    assert "{{ .Suffix }}" in (shown.template or "")


def test_show_says_thinking_when_the_template_writes_reasoning(fake):
    thinking = manifest()
    thinking.chat_template = "{% if enable_thinking %}<think>\n{% endif %}{{ messages }}"
    state = State(thinking, resolve({}, {}, environ={}), Worker())
    state.engine = fake
    assert ModelInfo(state).capabilities() == ["completion", "tools", "embedding", "thinking"]


def test_think_and_keep_alive_are_accepted(server, fake):
    for extra in ({"think": True}, {"think": "high"}, {"keep_alive": "5m"},
                  {"keep_alive": -1}, {"keep_alive": 0}):
        r = httpx.post(server.url + "/api/chat", json={
            "model": "fake", "stream": False, "options": {"num_predict": 2}, **CHAT} | extra)
        assert r.status_code == 200 and r.json()["message"]["content"] == "w0 w1 ", extra


def test_ps_lists_the_loaded_model_with_its_context(server):
    (running,) = httpx.get(server.url + "/api/ps").json()["models"]
    assert running["model"] == "fake:latest" and running["context_length"] == 256
    assert running["size_vram"] == 0 and running["expires_at"] > "2100"


def test_chat_streams_ndjson_by_default(server):
    with httpx.stream("POST", server.url + "/api/chat",
                      json=CHAT | {"options": {"num_predict": 3}}) as r:
        assert r.headers["content-type"] == "application/x-ndjson"
        chunks = [json.loads(line) for line in r.iter_lines()]
    assert [c["done"] for c in chunks] == [False, False, False, True]
    assert "".join(c["message"]["content"] for c in chunks) == "w0 w1 w2 "
    assert all(c["message"]["role"] == "assistant" and c["created_at"].endswith("Z")
               for c in chunks)
    last = chunks[-1]
    assert last["done_reason"] == "length" and last["eval_count"] == 3
    assert last["prompt_eval_count"] == 3
    for key in ("total_duration", "load_duration", "prompt_eval_duration", "eval_duration"):
        assert isinstance(last[key], int) and last[key] >= 0, key
    assert last["total_duration"] >= last["load_duration"]


def test_created_at_has_nanoseconds(server):
    stamp = httpx.post(server.url + "/api/generate", json={
        "prompt": "x", "stream": False, "options": {"num_predict": 1}}).json()["created_at"]
    assert len(stamp) == len("2023-08-04T19:22:45.499127123Z") and stamp[19] == "."


def test_options_map_onto_sampling(server, fake):
    body = CHAT | {"stream": False, "options": {
        "num_predict": 2, "temperature": 0.3, "top_p": 0.5, "top_k": 7, "min_p": 0.1,
        "repeat_penalty": 1.3, "repeat_last_n": 32, "seed": 42, "stop": ["\n", "END"],
        "num_ctx": 99999, "mirostat": 0, "an_option_from_the_future": [1, 2]}}
    assert httpx.post(server.url + "/api/chat", json=body).status_code == 200
    request = fake.requests[-1]
    assert request.max_tokens == 2 and request.stop == ("\n", "END")
    s = request.sampling
    assert (s.temperature, s.top_p, s.top_k, s.min_p, s.repeat_penalty, s.repeat_last_n,
            s.seed) == (0.3, 0.5, 7, 0.1, 1.3, 32, 42)


@pytest.mark.parametrize("options, field, expected", [
    ({"seed": -1}, "seed", None),  # Ollama's "random"
    ({"repeat_last_n": -1}, "repeat_last_n", 256),  # the whole context
    ({"repeat_last_n": 0, "repeat_penalty": 1.5}, "repeat_penalty", 1.0),  # no window: none
    ({}, "temperature", 0.8),  # the bundle's default
])
def test_ollama_sentinels_become_whole_values(server, fake, options, field, expected):
    body = CHAT | {"stream": False, "options": options | {"num_predict": 1}}
    assert httpx.post(server.url + "/api/chat", json=body).status_code == 200
    assert getattr(fake.requests[-1].sampling, field) == expected


def test_num_predict_limits_and_unlimited(server, fake):
    for given, expected in [(None, 20), (5, 5), (0, -1), (-1, -1), (-2, -1)]:
        options = {} if given is None else {"num_predict": given}
        httpx.post(server.url + "/api/generate", json={
            "prompt": "x", "stream": False, "options": options})
        assert fake.requests[-1].max_tokens == expected, given


@pytest.mark.parametrize("options, message", [
    ({"temperature": "hot"}, "options.temperature"),
    ({"num_predict": 1.5}, "options.num_predict"),
    ({"top_k": True}, "options.top_k"),
    ({"stop": 3}, "options.stop"),
    ({"temperature": 500}, "options.temperature"),
    ({"num_thread": "all"}, "options.num_thread"),  # known, unused, still type-checked
])
def test_options_of_the_wrong_type_are_400(server, options, message):
    r = httpx.post(server.url + "/api/chat", json=CHAT | {"options": options})
    assert r.status_code == 400 and r.json()["error"].startswith(message), r.text


def test_format_json_and_schema_reach_the_grammar(server, fake):
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    for given, expected in [("json", {}), (schema, schema), ("", None), (None, None)]:
        body = CHAT | {"stream": False, "format": given, "options": {"num_predict": 1}}
        assert httpx.post(server.url + "/api/chat", json=body).status_code == 200
        assert fake.requests[-1].json_schema == expected
    r = httpx.post(server.url + "/api/chat", json=CHAT | {"format": "yaml"})
    assert r.status_code == 400 and "format" in r.json()["error"]


def test_generate_wraps_the_prompt_in_the_template_unless_raw(server, fake):
    post = lambda **kw: httpx.post(server.url + "/api/generate", json={  # noqa: E731
        "stream": False, "options": {"num_predict": 1}} | kw)
    assert post(prompt="why?", system="Be brief.").json()["response"] == "w0 "
    assert fake.requests[-1].messages == (ChatMessage("system", "Be brief."),
                                          ChatMessage("user", "why?"))
    post(prompt="<s>[INST] why? [/INST]", raw=True, template="{{ .Prompt }}", context=[1, 2])
    assert fake.requests[-1].prompt == "<s>[INST] why? [/INST]"
    assert fake.requests[-1].messages is None


def test_images_are_refused_by_name_and_suffix_asks_for_infill(server, fake):
    chat = httpx.post(server.url + "/api/chat", json={"messages": [
        {"role": "user", "content": "what is this?", "images": ["aGVsbG8="]}]})
    assert chat.status_code == 400 and chat.json()["error"].startswith("messages[0].images")
    gen = httpx.post(server.url + "/api/generate", json={"prompt": "x", "images": ["aGk="]})
    assert gen.status_code == 400 and "images" in gen.json()["error"]
    fim = httpx.post(server.url + "/api/generate", json={"prompt": "def f(", "suffix": "\n",
                                                         "stream": False})
    assert fim.status_code == 200 and fim.json()["done"]
    assert fake.requests[-1].infill == Infill("def f(", "\n")  # a FIM prompt (test_fim.py)
    # LangChain sends an empty list on every message: that is no image
    ok = httpx.post(server.url + "/api/chat", json={"stream": False, "options": {
        "num_predict": 1}, "messages": [{"role": "user", "content": "x", "images": []}]})
    assert ok.status_code == 200


def test_empty_requests_load_and_unload_as_ollama_answers(server, fake):
    load = httpx.post(server.url + "/api/chat", json={"model": "fake", "messages": []}).json()
    assert load["done"] is True and load["done_reason"] == "load"
    assert load["message"] == {"role": "assistant", "content": ""}
    unload = httpx.post(server.url + "/api/generate", json={"model": "fake",
                                                            "keep_alive": 0}).json()
    assert unload["done_reason"] == "unload" and unload["response"] == ""
    assert fake.requests == []  # nothing was generated
    assert httpx.post(server.url + "/api/chat", json={"model": "x"}).status_code == 404


def test_a_load_request_waits_for_the_model(fake):
    with FakeServer(None, free_port()) as s:
        answers: list[httpx.Response] = []
        asking = threading.Thread(target=lambda: answers.append(httpx.post(
            s.url + "/api/generate", json={"model": "fake"}, timeout=30)))
        asking.start()
        time.sleep(0.3)
        assert answers == []  # still waiting, as Ollama's clients expect
        s.state.engine = fake
        asking.join(10)
        assert answers[0].json()["done_reason"] == "load"


def test_think_keep_alive_and_unknown_fields_are_accepted(server):
    r = httpx.post(server.url + "/api/chat", json=CHAT | {
        "stream": False, "think": True, "keep_alive": "5m", "logprobs": False,
        "future_field": {"x": 1}, "options": {"num_predict": 1}})
    assert r.status_code == 200 and r.json()["message"]["content"] == "w0 "


def test_embed_shapes_and_dimensions(server):
    client = ollama.Client(host=server.url)
    assert client.embed(model="fake", input=["a", "b"]).embeddings == [[1.0, 0.0]] * 2
    r = httpx.post(server.url + "/api/embed", json={"input": "a", "dimensions": 1}).json()
    assert r["embeddings"] == [[1.0]] and r["prompt_eval_count"] == 2
    assert client.embeddings(model="fake", prompt="a").embedding == [1.0, 0.0]
    assert httpx.post(server.url + "/api/embeddings", json={"prompt": ""}).json() == {
        "embedding": []}


def test_errors_on_api_routes_are_ollama_shaped(fake):
    with FakeServer(fake, free_port(), api_key="s3cret") as s:
        key = {"Authorization": "Bearer s3cret"}
        cases = [
            httpx.post(s.url + "/api/chat", json=CHAT),  # no key: 401
            httpx.get(s.url + "/api/tags", headers={"Host": "evil.example"}),  # 421
            httpx.post(s.url + "/api/chat", content=b"x" * (9 << 20), headers=key),  # 413
            httpx.get(s.url + "/api/pull", headers=key),  # 404
            httpx.get(s.url + "/api/chat", headers=key),  # 405
            httpx.post(s.url + "/api/chat", content=b"{", headers=key | {
                "content-type": "application/json"}),  # 400
        ]
        assert [r.status_code for r in cases] == [401, 421, 413, 404, 405, 400]
        for r in cases:
            body = r.json()
            assert set(body) == {"error"} and isinstance(body["error"], str), r.text
        assert httpx.get(s.url + "/api/tags", headers=key).status_code == 200
        assert httpx.get(s.url + "/").text == "Ollama is running"  # public, as the page is
        # the other dialects keep OpenAI's shape
        assert httpx.get(s.url + "/v1/models").json()["error"]["type"] == "authentication_error"


def test_not_loaded_and_busy_are_503_in_ollama_shape(fake):
    with FakeServer(None, free_port()) as s:
        r = httpx.post(s.url + "/api/chat", json=CHAT)
        assert r.status_code == 503 and isinstance(r.json()["error"], str)
        assert httpx.get(s.url + "/api/ps").json() == {"models": []}
    slow = FakeEngine(delay=0.2)
    with FakeServer(slow, free_port(), max_waiting=0) as s:
        first = threading.Thread(target=httpx.post, args=(s.url + "/api/chat",),
                                 kwargs={"json": CHAT | {"stream": False}, "timeout": 30})
        first.start()
        time.sleep(0.3)
        r = httpx.post(s.url + "/api/chat", json=CHAT)
        first.join()
        assert r.status_code == 503 and "busy" in r.json()["error"]


def test_a_client_that_leaves_stops_the_generation(fake):
    slow = FakeEngine(delay=0.05)
    with FakeServer(slow, free_port()) as s:
        with httpx.stream("POST", s.url + "/api/chat",
                          json=CHAT | {"options": {"num_predict": 200}}) as r:
            lines = r.iter_lines()
            next(lines)
            next(lines)
        deadline = time.monotonic() + 5
        while slow.closed == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert slow.closed == 1 and slow.produced < 50


def curl(url: str, body: dict, *headers: str) -> tuple[int, str]:
    """`curl URL -d BODY` as Ollama's and llama.cpp's docs write it: curl's default type,
    application/x-www-form-urlencoded."""
    args = ["curl", "-s", "-o", "-", "-w", "\n%{http_code}", url, "-d", json.dumps(body)]
    for header in headers:
        args += ["-H", header]
    out = subprocess.run(args, capture_output=True, text=True, check=True, timeout=30).stdout
    text, _, status = out.rpartition("\n")
    return int(status), text


def test_curl_examples_without_a_json_type_are_read_as_json(server, fake):
    status, text = curl(server.url + "/api/chat", {**CHAT, "stream": False,
                                                   "options": {"num_predict": 2}})
    assert status == 200, text
    assert json.loads(text)["message"]["content"] == "w0 w1 "
    status, text = curl(server.url + "/api/generate", {"model": "fake", "prompt": "hi",
                                                       "options": {"num_predict": 1}})
    assert status == 200 and json.loads(text.splitlines()[-1])["done"], text
    # /v1/*, as llama-server does: it parses every body as JSON, whatever the type
    status, text = curl(server.url + "/v1/chat/completions", {**CHAT, "max_tokens": 1},
                        "Content-Type: text/plain")
    assert status == 200 and json.loads(text)["choices"][0]["message"]["content"] == "w0 "
    assert len(fake.requests) == 3


def test_another_sites_page_cannot_post_a_form_shaped_body(server, fake):
    # A form or text/plain POST is sent cross-site without a CORS preflight: read as JSON, it
    # would let any page the user visits run generations here.
    for origin in ("http://evil.example", "null", "http://localhost:1"):
        status, _ = curl(server.url + "/api/chat", {**CHAT, "stream": False},
                         f"Origin: {origin}")
        assert status == 400
    status, _ = curl(server.url + "/api/chat", {**CHAT, "stream": False,
                                                "options": {"num_predict": 1}},
                     "Origin: " + server.url)  # the page itself may
    assert status == 200
    assert len(fake.requests) == 1
