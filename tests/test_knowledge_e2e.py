"""A knowledge bundle end to end: `build --knowledge` on documents in English and Chinese, in
three formats (Markdown, a GBK-encoded text file, HTML), with the real instruct model; then the
artifact answers real clients with cited answers and their sources."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import openai
import pytest
from conftest import Server, build_cli, launch
from fuzzing import json_values
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = [pytest.mark.usefixtures("built"), pytest.mark.slow]

ROUTER_MD = """# Zephyr X200 router manual

## Resetting the router

To reset the Zephyr X200 router to factory settings, hold the recessed RESET button on the
back for 12 seconds until the status light blinks amber. The router restarts in about two
minutes.

## Wi-Fi networks

The Zephyr X200 broadcasts two networks, ZEPHYR-2G and ZEPHYR-5G. The Wi-Fi password is
printed on the label under the router.

## Admin page

Open http://192.168.8.1 in a browser. The default admin PIN is 4827; change it after the
first login.
"""

WARRANTY_TXT = """Zephyr X200 保修说明

保修期限
Zephyr X200 路由器的保修期为 18 个月，自购买之日起计算。

不保修的情况
人为损坏、进水和私自拆机不在保修范围内。

如何申请保修
请携带购买发票到任一授权维修点，或拨打客服电话 400-820-1234。
"""

# A second Chinese document: with one Chinese chunk only, the index's per-script baseline is
# that chunk itself and it never ranks (reported to the index's owner); real bundles hold more.
ROOMS_MD = """# 会议室预订规定

## 预订方式

会议室需要通过内部系统提前预订，最多可提前 14 天预订。每次预订不超过 3 小时。

## 取消预订

如果会议取消，请至少提前 2 小时在系统中取消预订，否则会记录一次违约。

## 设备使用

会议室配有投影仪和视频会议设备。使用完毕后请关闭投影仪并带走个人物品。
"""

COFFEE_HTML = """<html><head><title>Aroma 5 coffee machine</title></head><body>
<h1>Aroma 5 coffee machine</h1>
<h2>Descaling</h2>
<p>Descale the Aroma 5 every 6 weeks with the blue descaling liquid. The descaling program
takes 25 minutes.</p>
<h2>Water tank</h2>
<p>The water tank holds 1.8 litres. Empty it <b>every evening</b>.</p>
<script>alert("not text")</script>
</body></html>
"""


@pytest.fixture(scope="module")
def documents(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("documents")
    (folder / "router.md").write_text(ROUTER_MD)
    (folder / "售后").mkdir()
    (folder / "售后" / "保修.txt").write_bytes(WARRANTY_TXT.encode("gbk"))
    (folder / "售后" / "会议室预订.md").write_text(ROOMS_MD)
    (folder / "coffee.html").write_text(COFFEE_HTML)
    return folder


@pytest.fixture(scope="module")
def artifact(instruct_gguf: Path, documents: Path, tmp_path_factory: pytest.TempPathFactory,
             shared_cache: Path) -> Path:
    out = tmp_path_factory.mktemp("kb") / "assistant.llamabundle"
    build_cli(instruct_gguf, "--knowledge", documents, "-o", out, "-c", "4096",
              cache=shared_cache)
    return out


@pytest.fixture(scope="module")
def server(artifact: Path) -> Iterator[Server]:
    server = launch(artifact, timeout=300)
    yield server
    server.stop()


@pytest.fixture
def client(server: Server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", timeout=600)


def ask(client: openai.OpenAI, question: str, **kwargs: object) -> dict:
    reply = client.chat.completions.create(  # type: ignore[call-overload]
        model="assistant", messages=[{"role": "user", "content": question}], temperature=0,
        **{"max_tokens": 60} | kwargs)
    return reply.model_dump()


def cited_documents(answer: dict) -> list[str]:
    """The documents the answer's [n] point to, in order."""
    by_id = {s["id"]: s["document"] for s in answer["sources"]}
    text = answer["choices"][0]["message"]["content"]
    return [by_id[int(n)] for n in re.findall(r"\[(\d+)\]", text) if int(n) in by_id]


def test_an_english_question_gets_a_cited_answer_from_the_right_document(client):
    answer = ask(client, "What is the default admin PIN of the Zephyr X200 router?")
    text = answer["choices"][0]["message"]["content"]
    assert answer["sources"][0]["document"] == "router.md"
    assert answer["sources"][0]["location"].endswith("Admin page")
    assert "4827" in text
    assert cited_documents(answer)[:1] == ["router.md"], text
    usage = answer["usage"]["knowledge"]
    assert usage["passages"] == len(answer["sources"]) and usage["tokens"] > 0


def test_a_chinese_question_cites_the_gbk_encoded_chinese_document(client):
    answer = ask(client, "Zephyr X200 路由器的保修期是多久？")
    text = answer["choices"][0]["message"]["content"]
    assert answer["sources"][0]["document"] == "售后/保修.txt"
    assert "18" in text
    assert cited_documents(answer)[:1] == ["售后/保修.txt"], text


def test_a_stream_carries_the_sources_on_its_first_chunk_and_knowledge_false_skips_them(
        client):
    chunks = list(client.chat.completions.create(
        model="assistant", stream=True, temperature=0, max_tokens=8,
        messages=[{"role": "user", "content": "How often should I descale the Aroma 5?"}]))
    assert chunks[0].model_dump()["sources"][0]["document"] == "coffee.html"
    plain = ask(client, "How often should I descale the Aroma 5?", max_tokens=4,
                extra_body={"knowledge": False})
    assert "sources" not in plain and "knowledge" not in plain["usage"]


def test_a_question_the_documents_do_not_cover_gets_no_sources_and_says_so(client):
    answer = ask(client, "Who painted the Mona Lisa?", max_tokens=30)
    assert answer["sources"] == []
    text = answer["choices"][0]["message"]["content"]
    assert "do not cover" in text and "[" not in text, text  # not an answer from memory


def test_knowledge_search_finds_the_passage(server):
    found = httpx.post(server.url + "/knowledge/search",
                       json={"query": "保修期是多久？", "top_k": 3}, timeout=60)
    assert found.status_code == 200
    results = found.json()["results"]
    assert results[0]["document"] == "售后/保修.txt" and "18" in results[0]["text"]
    assert len(results) <= 3
    html = httpx.post(server.url + "/knowledge/search", json={"query": "水箱容量"}, timeout=60)
    top = html.json()["results"][0]
    assert top["document"] == "coffee.html" and "not text" not in top["text"]


@pytest.mark.parametrize(("question", "document"), [
    ("路由器的默认管理员 PIN 是多少？", "router.md"),
    ("咖啡机的水箱能装多少升水？", "coffee.html"),
    ("秦始皇统一六国是在哪一年？", None), ("How do whales sleep?", None)])
def test_a_chinese_question_about_english_text_is_covered_and_off_topic_ones_are_not(
        server, question, document):
    """A Chinese question's lifts into English passages run lower, for what answers it and for
    noise alike: the levels are calibrated per query script (issue #24)."""
    found = httpx.post(server.url + "/knowledge/search", json={"query": question},
                       timeout=60).json()["results"]
    assert [r["document"] for r in found][:1] == ([document] if document else []), found


@pytest.mark.parametrize("question", [
    "What is the default admin PIN of the Zephyr X200 router?", "会议室最多可以提前多少天预订？",
    "What address do I open in a browser for the admin page?", "Who painted the Mona Lisa?"])
def test_a_chats_sources_are_what_knowledge_search_returns(server, client, question):
    """One retrieval path (issue #24): the same passages, in the same order, for the same
    question, from /knowledge/search and as a chat answer's sources."""
    found = httpx.post(server.url + "/knowledge/search", json={"query": question},
                       timeout=60).json()["results"]
    sources = ask(client, question, max_tokens=1)["sources"]
    assert [(s["document"], s["text"]) for s in sources] == \
        [(r["document"], r["text"]) for r in found]


def test_embeddings_come_from_the_bundled_multilingual_embedder(client):
    texts = ["How do I reset the router?", "如何把路由器恢复出厂设置？",
             "The cat sleeps on the sofa."]
    vectors = [d.embedding for d in client.embeddings.create(
        model="assistant", input=texts, encoding_format="float").data]
    assert [len(v) for v in vectors] == [384] * 3  # multilingual-e5-small's, not the chat model's

    def cos(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True))

    assert math.isclose(cos(vectors[0], vectors[0]), 1.0, rel_tol=1e-4)
    assert cos(vectors[0], vectors[1]) > cos(vectors[0], vectors[2])


def test_props_describe_the_knowledge_and_offer_questions_about_its_headings(server):
    props = httpx.get(server.url + "/props").json()
    assert props["knowledge"]["documents"] == 4
    assert props["knowledge"]["embedding_model"]["name"]
    assert props["starters"] and len(props["starters"]) <= 4
    assert any("Resetting the router" in s for s in props["starters"]), props["starters"]


def test_the_page_shows_a_cited_answer_with_its_sources(server):
    pytest.importorskip("selenium")
    from browser import Chat, find_chromium, new_driver, quit_driver

    if find_chromium() is None:
        pytest.skip("needs Debian's chromium and chromium-driver")
    driver = new_driver()
    try:
        page = Chat(driver).open(server.url)
        starters = [b.text for b in page.all("#starters .starter")]
        assert any("Resetting the router" in s for s in starters), starters
        page.el("#settings-toggle").click()  # greedy and short, as a user would set it
        for name, value in (("temperature", 0), ("max-tokens", 60)):
            page.el("#settings-" + name).clear()
            page.el("#settings-" + name).send_keys(str(value))
        page.el("#settings-close").click()
        page.send("What is the default admin PIN of the Zephyr X200 router?")
        page.wait_idle(timeout=600)
        assert "4827" in page.answer()
        documents = [e.text for e in page.all(".msg-assistant .source-doc")]
        assert documents and documents[0] == "router.md"
        cites = page.all(".msg-assistant .msg-body .cite")
        assert cites, page.answer()
        cites[0].click()
        passage = page.el(f".msg-assistant .source[data-id='{cites[0].text}'] .source-text")
        assert passage.is_displayed() and passage.text
    finally:
        quit_driver(driver)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck),
          derandomize=True)
@given(body=st.fixed_dictionaries({}, optional={
    "query": st.sampled_from(["How do I reset the router?", "保修期多长？", ""]) | json_values,
    "top_k": st.integers(-3, 60) | json_values, "knowledge": json_values}))
def test_knowledge_search_fuzzed_never_gets_a_5xx(server, body):
    r = httpx.post(server.url + "/knowledge/search", content=json.dumps(body), timeout=120)
    assert r.status_code < 500, (body, r.text[:300])
    if r.status_code >= 400:
        assert set(r.json()["error"]) == {"message", "type", "param", "code"}


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck),
          derandomize=True)
@given(number=st.integers(-5, 10**12) | st.text(max_size=12),
       body=st.fixed_dictionaries({"messages": st.lists(st.fixed_dictionaries({
           "role": st.sampled_from(["user", "assistant", "system", "x"]),
           "content": st.sampled_from(["Reset the router?", "会议室怎么预订？"]) | json_values}),
           max_size=3) | json_values}, optional={"knowledge": json_values,
                                                 "stream": st.booleans()}))
def test_documents_and_knowledge_chats_fuzzed_never_get_a_5xx(server, number, body):
    """Every knowledge route, the chat with retrieval bounded to 2 tokens: 4xx or an answer."""
    r = httpx.get(f"{server.url}/knowledge/documents/{quote(str(number), safe='')}", timeout=60)
    assert r.status_code < 500, (number, r.text[:300])
    for path in ("/v1/chat/completions", "/api/chat"):
        sent = body | {"max_tokens": 2, "options": {"num_predict": 2}}
        r = httpx.post(server.url + path, content=json.dumps(sent), timeout=300)
        assert r.status_code < 500, (path, sent, r.text[:300])
