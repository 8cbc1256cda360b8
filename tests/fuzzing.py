"""What the fuzz tests share (test_fuzz.py: the OpenAI and llama.cpp routes; test_ollama_fuzz.py:
Ollama's): random JSON values, and a server that must still be healthy after the run, behind a
client that counts what it sent and fails on any 5xx."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
from conftest import Server, launch
from hypothesis import strategies as st

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) |
    st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12)


def fuzzed_server(artifact: Path, *args: str) -> Iterator[Server]:
    """A module fixture's body: the server, then the check that it survived."""
    server = launch(artifact, "-n", "8", *args)
    yield server
    healthy = httpx.get(server.url + "/health").status_code
    server.stop()
    assert healthy == 200


class Poster:
    """POSTs raw bodies; counts them; no answer may be a 5xx, every error must pass
    `check_error` (the dialect's error shape) and every other answer `check_ok`."""

    def __init__(self, http: httpx.Client, check_error: Callable[[httpx.Response], None],
                 check_ok: Callable[[httpx.Response], None] = lambda r: None):
        self.http = http
        self.check_error = check_error
        self.check_ok = check_ok
        self.sent = 0

    def __call__(self, route: str, content: bytes,
                 content_type: str = "application/json") -> httpx.Response:
        self.sent += 1
        r = self.http.post(route, content=content, headers={"content-type": content_type})
        assert r.status_code < 500, (route, content[:200], r.status_code, r.text[:300])
        if r.status_code >= 400:
            self.check_error(r)
        else:
            self.check_ok(r)
        return r
