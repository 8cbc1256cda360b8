"""GET /metrics: Prometheus' text format, read back with prometheus_client's own parser."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
from conftest import free_port
from fake import FakeEngine, FakeServer
from prometheus_client.parser import text_string_to_metric_families

CHAT = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}


def samples(url: str, headers: dict[str, str] | None = None) -> dict[tuple, float]:
    r = httpx.get(url + "/metrics", headers=headers)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(r.text) for s in family.samples}


def requests_of(values: dict[tuple, float], route: str, status: str) -> float:
    return sum(v for (name, labels), v in values.items() if name == "llamabundle_requests_total"
               and ("route", route) in labels and ("status", status) in labels)


def test_requests_are_counted_by_route_template_and_status_unknown_paths_as_other():
    with FakeServer(FakeEngine(delay=0), free_port()) as s:
        httpx.post(s.url + "/v1/chat/completions", json=CHAT)
        httpx.post(s.url + "/v1/chat/completions", json={"messages": "no"})
        httpx.get(s.url + "/assets/app.js")
        for i in range(5):
            httpx.get(s.url + f"/wp-admin/{i}.php")
        values = samples(s.url)
    assert requests_of(values, "/v1/chat/completions", "200") == 1
    assert requests_of(values, "/v1/chat/completions", "400") == 1
    assert requests_of(values, "/assets/{name}", "200") == 1
    assert requests_of(values, "other", "404") == 5  # one series, however many paths


def test_metrics_need_the_api_key_and_count_the_refusals():
    with FakeServer(FakeEngine(delay=0), free_port(), api_key="k") as s:
        assert httpx.get(s.url + "/metrics").status_code == 401
        httpx.post(s.url + "/v1/chat/completions", json=CHAT)
        values = samples(s.url, {"Authorization": "Bearer k"})
    assert requests_of(values, "/v1/chat/completions", "401") == 1


def test_queue_depth_and_busy_sequences_during_generations():
    fake = FakeEngine(delay=0.05)
    with FakeServer(fake, free_port()) as s:
        body = {**CHAT, "max_tokens": 40}
        threads = [threading.Thread(target=httpx.post, args=(s.url + "/v1/chat/completions",),
                                    kwargs={"json": body, "timeout": 30}) for _ in range(3)]
        for t in threads:
            t.start()
        time.sleep(0.5)
        during = samples(s.url)
        for t in threads:
            t.join()
        after = samples(s.url)
    assert during[("llamabundle_sequences_busy", ())] == 1
    assert during[("llamabundle_queue_depth", ())] == 2
    assert after[("llamabundle_sequences_busy", ())] == 0
    assert after[("llamabundle_queue_depth", ())] == 0
    assert after[("llamabundle_queue_wait_seconds_count", ())] == 3


@pytest.mark.slow
def test_a_real_artifact_reports_tokens_cache_reuse_and_latencies(tiny_artifact, serve):
    server = serve(tiny_artifact)
    chat = {"messages": [{"role": "user", "content": "tell me a story"}], "max_tokens": 8,
            "temperature": 0}
    first = httpx.post(server.url + "/v1/chat/completions", json=chat, timeout=60).json()
    chat["messages"] += [{"role": "assistant", "content": first["choices"][0]["message"][
        "content"]}, {"role": "user", "content": "and then?"}]
    with httpx.stream("POST", server.url + "/v1/chat/completions", timeout=60,
                      json={**chat, "stream": True}) as r:
        r.read()
    values = samples(server.url)
    assert values[("llamabundle_generated_tokens_total", ())] == 16
    cached = values[("llamabundle_prompt_tokens_total", (("kind", "cached"),))]
    evaluated = values[("llamabundle_prompt_tokens_total", (("kind", "evaluated"),))]
    assert cached > 0 and evaluated > 0  # turn 2 reused turn 1's prefix
    assert values[("llamabundle_time_to_first_token_seconds_count", ())] == 2
    assert values[("llamabundle_time_per_output_token_seconds_count", ())] == 2
    assert values[("llamabundle_generations_total", (("reason", "length"),))] == 2
    assert 0 < values[("llamabundle_kv_cache_tokens", ())] <= \
        values[("llamabundle_kv_cache_size_tokens", ())]


def test_made_up_methods_are_counted_as_one_other_method_refused_or_not():
    # any method token became its own label: `ZZZ1 / HTTP/1.1` grew the metrics without end
    with FakeServer(FakeEngine(delay=0), free_port(), api_key="k") as s:
        for i in range(5):
            httpx.request(f"ZZZ{i}", s.url + "/v1/models")  # refused: no key
            httpx.request(f"QQQ{i}", s.url + "/v1/models", headers={"Authorization":
                                                                    "Bearer k"})
        httpx.get(s.url + "/v1/models", headers={"Authorization": "Bearer k"})
        values = samples(s.url, {"Authorization": "Bearer k"})
    methods = {dict(labels)["method"] for (name, labels) in values
               if name == "llamabundle_requests_total"}
    assert methods == {"other", "GET"}
    other = [v for (name, labels), v in values.items()
             if name == "llamabundle_requests_total" and ("method", "other") in labels]
    assert sum(other) == 10
