"""Server behaviour with a fake engine behind a real HTTP server: queueing, disconnects,
readiness, errors and the security defaults."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
from conftest import free_port
from fake import FakeEngine, FakeServer

CHAT = {"messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def fake() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
def server(fake):
    with FakeServer(fake, free_port()) as s:
        yield s


def test_health_is_503_while_loading_then_200(fake):
    with FakeServer(None, free_port()) as s:
        r = httpx.get(s.url + "/health")
        assert r.status_code == 503 and r.json() == {"status": "loading"}
        chat = httpx.post(s.url + "/v1/chat/completions", json=CHAT)
        assert chat.status_code == 503 and chat.json()["error"]["type"] == "model_loading"
        s.state.engine = fake
        assert httpx.get(s.url + "/health").json() == {"status": "ok"}


def test_health_and_models_answer_during_a_generation_without_cancelling_it(server, fake):
    body = CHAT | {"stream": True, "max_tokens": 30}
    with httpx.stream("POST", server.url + "/v1/chat/completions", json=body) as r:
        lines = r.iter_lines()
        next(lines)
        started = time.monotonic()
        assert httpx.get(server.url + "/health").status_code == 200
        assert httpx.get(server.url + "/v1/models").json()["data"][0]["id"] == "fake"
        assert time.monotonic() - started < 0.5  # not queued behind the generation
        events = [line for line in lines if line.startswith("data: ")]
    assert events[-1] == "data: [DONE]"
    assert fake.produced == 30


def test_client_disconnect_stops_generation_within_about_one_token(server, fake):
    body = CHAT | {"stream": True, "max_tokens": 200}
    with httpx.stream("POST", server.url + "/v1/chat/completions", json=body) as r:
        for i, _ in enumerate(r.iter_lines()):
            if i >= 6:
                break
    time.sleep(0.5)
    produced = fake.produced
    time.sleep(0.5)
    assert fake.closed == 1
    assert fake.produced == produced < 20


def test_requests_during_a_generation_wait_their_turn_in_order(server, fake):
    results: list[tuple[int, str]] = []

    clients = [httpx.Client(timeout=30) for _ in range(4)]

    def ask(i: int) -> None:
        r = clients[i].post(server.url + "/v1/chat/completions",
                            json=CHAT | {"max_tokens": 10 if i == 0 else 2, "seed": i})
        results.append((r.status_code, r.json()["choices"][0]["message"]["content"]))

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(4)]
    for t in threads:  # the first runs 0.5 s; the others arrive, 0.1 s apart, while it runs
        t.start()
        time.sleep(0.1)
    for t in threads:
        t.join()
    assert [code for code, _ in results] == [200] * 4
    assert [r.sampling.seed for r in fake.requests] == [0, 1, 2, 3]


def test_a_full_queue_gets_a_clear_503(fake):
    with FakeServer(fake, free_port(), max_waiting=0) as s:
        body = CHAT | {"stream": True, "max_tokens": 20}
        with httpx.stream("POST", s.url + "/v1/chat/completions", json=body) as r:
            lines = r.iter_lines()  # kept: a dropped iterator closes the stream
            next(lines)
            busy = httpx.post(s.url + "/v1/chat/completions", json=CHAT)
        assert busy.status_code == 503
        assert busy.json()["error"]["type"] == "server_busy"


@pytest.mark.parametrize("body, param", [
    (b"{not json", None),
    (b"[]", None),
    (b'{"messages": []}', "messages"),
    (b'{"messages": "hi"}', "messages"),
    (b'{"messages": [{"role": "wizard", "content": "x"}]}', "messages.0.role"),
    (b'{"messages": [{"role": "user", "content": 5}]}', "messages.0.content.str"),
    (b'{"messages": [{"role": "user", "content": "x"}], "max_tokens": -5}', "max_tokens"),
    (b'{"messages": [{"role": "user", "content": "x"}], "max_tokens": 1e300}', "max_tokens"),
    (b'{"messages": [{"role": "user", "content": "x"}], "temperature": "hot"}', "temperature"),
    (b'{"messages": [{"role": "user", "content": "x"}], "top_p": 7}', "top_p"),
    (b'{"messages": [{"role": "user", "content": "x"}], "n": 2, "stream": true}', None),
])
def test_caller_mistakes_get_openai_shaped_400s(server, body, param):
    r = httpx.post(server.url + "/v1/chat/completions", content=body,
                   headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error" and error["message"]
    if param:
        assert error["param"] == param
    assert httpx.get(server.url + "/health").status_code == 200


def test_body_over_the_limit_is_refused_with_413(server):
    r = httpx.post(server.url + "/v1/chat/completions", content=b"x" * (9 * 1024 * 1024),
                   headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large"


def test_dns_rebinding_host_header_is_refused(server):
    for path in ("/", "/health", "/v1/models"):
        r = httpx.get(server.url + path, headers={"Host": "evil.example"})
        assert r.status_code == 421
    assert httpx.get(server.url + "/health", headers={"Host": "localhost:1234"}).is_success


def test_no_permissive_cors(server):
    r = httpx.get(server.url + "/v1/models", headers={"Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in r.headers


def test_api_key_is_required_on_api_routes_but_not_on_the_page(fake):
    with FakeServer(fake, free_port(), api_key="s3cret") as s:
        assert httpx.get(s.url + "/").status_code == 200
        for method, path in [("GET", "/v1/models"), ("POST", "/v1/chat/completions"),
                             ("POST", "/completion"), ("POST", "/tokenize")]:
            r = httpx.request(method, s.url + path, json=CHAT)
            assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
            wrong = httpx.request(method, s.url + path, json=CHAT,
                                  headers={"Authorization": "Bearer nope"})
            assert wrong.status_code == 401
        ok = httpx.get(s.url + "/v1/models", headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200


def test_props_and_why_a_load_failed_need_the_key(fake):
    # /props tells the system prompt, starters and knowledge; /health's load error, paths
    key = {"Authorization": "Bearer s3cret"}
    with FakeServer(fake, free_port(), api_key="s3cret", system_prompt="Be Zorg.") as s:
        assert httpx.get(s.url + "/props").status_code == 401
        props = httpx.get(s.url + "/props", headers=key).json()
        assert props["system_prompt"] == "Be Zorg." and props["api_key_required"] is True
        assert httpx.get(s.url + "/assets/app.js").status_code == 200  # the page shell
        assert httpx.get(s.url + "/health").json() == {"status": "ok"}
        s.state.engine, s.state.load_error = None, "could not load /home/me/secret.gguf"
        failed = httpx.get(s.url + "/health")
        assert failed.status_code == 500 and failed.json() == {"status": "error"}
        assert "secret" in httpx.get(s.url + "/health", headers=key).json()["message"]
    with FakeServer(None, free_port()) as s:  # no key: everyone may know
        s.state.load_error = "could not load x.gguf"
        assert httpx.get(s.url + "/health").json()["message"] == "could not load x.gguf"


def test_page_forbids_external_requests_by_csp(server):
    r = httpx.get(server.url + "/", headers={"Accept": "text/html"})  # as browsers ask
    csp = r.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp
    assert r.headers["content-type"].startswith("text/html")
    assert httpx.get(server.url + "/assets/app.js").headers["content-type"].startswith(
        ("text/javascript", "application/javascript"))
    assert httpx.get(server.url + "/assets/../runtime/main.py").status_code == 404


def test_props_describe_the_bundle(server):
    props = httpx.get(server.url + "/props").json()
    assert props["title"] == "Fake Title" and props["model"] == "fake"
    assert props["defaults"]["temperature"] == 0.8
