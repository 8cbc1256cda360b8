"""The chat page of a knowledge bundle in a real headless Chromium: starters, sources under the
answer, [n] opening its passage, in English and Chinese, and a hostile document kept as text.

The server is the real web app around the fake engine and fake knowledge (tests/fake.py), so
the answer's words are chosen; tests/test_knowledge_e2e.py drives a real knowledge artifact."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

pytest.importorskip("selenium")

from browser import Chat, console, find_chromium, wait_for  # noqa: E402
from conftest import free_port  # noqa: E402
from fake import FakeEngine, FakeKnowledge, FakeServer  # noqa: E402

from runtime.generation import Finish, GenerationRequest  # noqa: E402
from runtime.knowledge.passage import Passage  # noqa: E402

if find_chromium() is None:
    pytest.skip("needs Debian's chromium and chromium-driver", allow_module_level=True)

PASSAGES = [
    Passage("manual/install.md", "Install", "Install › Linux",
            "To install the printer driver on Linux run the setup script as root."),
    Passage("notes/<img src=x onerror=alert(1)>.html", "<b>Toner</b>", "p. 2",
            "<script>window.__pwned=1</script> The printer toner is replaced from the front, "
            "as the Linux driver's install guide shows."),  # the question's words: a source too
    Passage("手册/网络.txt", "网络设置", "连接 › Wi-Fi",
            "打印机连接 Wi-Fi 时，请在设置菜单中选择网络，然后输入密码。"),
]


class CitingEngine(FakeEngine):
    """Answers every chat with `text`, a few characters at a time (after retrieval)."""

    def __init__(self, text: str, knowledge: FakeKnowledge | None):
        super().__init__(0.01, knowledge=knowledge)
        self.text = text

    def _words(self, request: GenerationRequest) -> Iterator[Any]:
        pieces = [self.text[i:i + 5] for i in range(0, len(self.text), 5)]
        for piece in pieces:
            time.sleep(self.delay)
            yield piece
        yield Finish("stop", 3, len(pieces), 0)


ANSWER = "Run the setup script as root [1]. The toner is replaced from the front [2]. `[1]` [9]"


@pytest.fixture
def site() -> Iterator[FakeServer]:
    engine = CitingEngine(ANSWER, FakeKnowledge(PASSAGES))
    starters = ["How do I install the printer driver on Linux?", "How is the toner replaced?"]
    with FakeServer(engine, free_port(), starters=starters) as server:
        yield server



def sources(page: Chat) -> list[dict[str, Any]]:
    return page.js("return [...document.querySelectorAll('.msg-assistant .source')].map(s => ({"
                   "id: s.querySelector('.source-id').textContent,"
                   "doc: s.querySelector('.source-doc').textContent,"
                   "loc: (s.querySelector('.source-loc') || {}).textContent,"
                   "open: s.querySelector('details').open,"
                   "text: s.querySelector('.source-text').textContent}))")


def test_a_starter_asks_and_the_answer_shows_its_sources_and_links_its_citations(site, browser):
    page = browser().open(site.url)
    starters = [b.text for b in page.all("#starters .starter")]
    assert starters == ["How do I install the printer driver on Linux?",
                        "How is the toner replaced?"]
    assert page.el(".starters-label").text == "Try asking"
    page.all("#starters .starter")[0].click()
    page.wait_idle()
    assert page.messages()[0] == ("user", "How do I install the printer driver on Linux?")

    shown = sources(page)
    assert [s["id"] for s in shown] == ["[1]", "[2]"]
    assert shown[0]["doc"] == "manual/install.md" and shown[0]["loc"] == "Install › Linux"
    assert not any(s["open"] for s in shown)  # passages on demand
    assert page.el(".sources-head").text.lower() == "sources"

    cites = page.all(".msg-assistant .msg-body .cite")
    assert [c.text for c in cites] == ["1", "2"]  # not the one in code, not [9] (no source 9)
    assert "[9]" in page.answer() and page.el(".msg-assistant code").text == "[1]"
    cites[1].click()
    wait_for(page.driver, lambda: sources(page)[1]["open"], 5, "source 2 to open")
    passage = page.el(".msg-assistant .source[data-id='2'] .source-text")
    assert passage.is_displayed()
    assert passage.text.startswith("<script>window.__pwned=1</script> The printer toner")
    assert sources(page)[1]["doc"] == "notes/<img src=x onerror=alert(1)>.html"
    assert page.all("#messages img, #messages script, #messages b") == []
    assert page.js("return window.__pwned") is None

    page.reload()  # the sources are kept with the chat
    page.el("#chat-list .chat-open").click()
    wait_for(page.driver, lambda: len(sources(page)) == 2, 5, "the sources after a reload")
    assert [c.text for c in page.all(".msg-assistant .msg-body .cite")] == ["1", "2"]
    assert not [e for e in console(page.driver) if e["level"] == "SEVERE"]


def test_sources_and_starters_in_chinese(site, browser):
    page = browser(lang="zh-CN").open(site.url)
    assert page.el(".starters-label").text == "可以这样问"
    page.send("打印机怎么连接 Wi-Fi 网络？")
    page.wait_idle()
    assert page.el(".sources-head").text == "来源"
    assert sources(page)[0]["doc"] == "手册/网络.txt"
    assert page.el(".msg-assistant .cite").get_attribute("aria-label") == "来源 1"


def test_an_answer_the_documents_do_not_cover_says_so(site, browser):
    page = browser().open(site.url)
    page.send("Who painted the Mona Lisa?")
    page.wait_idle()
    assert page.el(".msg-assistant .sources-none").text == \
        "Nothing in the documents covers this question."
    assert page.all(".msg-assistant .source, .msg-assistant .cite") == []


def test_no_starters_and_no_sources_without_knowledge(browser):
    with FakeServer(CitingEngine("Plain answer [1].", None), free_port()) as server:
        page = browser().open(server.url)
        assert not page.el("#starters-box").is_displayed()
        page.send("hello there")
        page.wait_idle()
        assert page.all(".sources, .cite") == []
        assert page.answer() == "Plain answer [1]."


def test_the_first_screen_lists_the_documents_and_opens_one_as_text(site, browser):
    page = browser().open(site.url)
    wait_for(page.driver, lambda: len(page.all("#library-list .doc-chip")) == 3, 10,
             "the documents' titles")
    assert page.el("#library-line").text == "Answers from 3 documents"
    assert [c.text for c in page.all("#library-list .doc-chip")] == \
        ["Install", "<b>Toner</b>", "网络设置"]
    assert not page.el("#welcome-text").is_displayed()
    page.all("#library-list .doc-chip")[1].click()
    dialog = page.el("#document-dialog")
    wait_for(page.driver, lambda: "front" in page.el("#document-body").text, 5, "its text")
    assert page.el("#document-title").text == "<b>Toner</b>"
    assert page.el("#document-body p").text.startswith("<script>window.__pwned=1</script>")
    assert page.all("#document-dialog b, #document-dialog script, #document-dialog img") == []
    assert page.js("return window.__pwned") is None
    page.el("#document-close").click()
    assert not dialog.is_displayed()
    assert not [e for e in console(page.driver) if e["level"] == "SEVERE"]


def test_the_system_prompt_waits_behind_the_settings_button(site, browser):
    page = browser(lang="zh-CN").open(site.url)
    assert page.el("#library-line").text == "根据 3 份文档回答"
    assert not page.el("#system-prompt").is_displayed()
    page.el("#settings-toggle").click()
    assert page.el("#system-prompt").is_displayed()
    assert page.el("label[for=system-prompt]").text == "系统提示词"


def test_the_documents_routes(site):
    listed = httpx.get(site.url + "/knowledge/documents").json()["documents"]
    assert [(d["id"], d["title"], d["passages"]) for d in listed] == \
        [(0, "Install", 1), (1, "<b>Toner</b>", 1), (2, "网络设置", 1)]
    one = httpx.get(site.url + "/knowledge/documents/2").json()
    assert one["document"] == "手册/网络.txt"
    assert one["passages"] == [{"location": "连接 › Wi-Fi", "text": PASSAGES[2].text}]
    missing = httpx.get(site.url + "/knowledge/documents/9")
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "not_found_error"
    with FakeServer(CitingEngine("x", None), free_port()) as plain:
        assert httpx.get(plain.url + "/knowledge/documents").status_code == 404


def test_the_documents_are_listed_once_the_access_key_is_given(browser):
    engine = CitingEngine("x", FakeKnowledge(PASSAGES))
    with FakeServer(engine, free_port(), api_key="K3y") as server:
        page = browser()
        page.driver.get(server.url)  # not open(): /props is behind the key too
        wait_for(page.driver, lambda: page.el("#api-key-dialog").is_displayed(), 10, "the key")
        assert page.all("#library-list .doc-chip") == []
        page.el("#api-key-input").send_keys("K3y")
        page.el("#api-key-submit").click()
        page.wait_loaded()
        assert page.el("#library-line").text == "Answers from 3 documents"
        wait_for(page.driver, lambda: len(page.all("#library-list .doc-chip")) == 3, 10,
                 "the titles after the key")


def test_a_document_reads_without_the_chunks_overlap():
    from runtime.web.knowledge import reading_text

    def p(location: str, text: str) -> Passage:
        return Passage("a.md", "A", location, text)

    passages = [p("Setup", "Plug it in. Press the red button. Wait."),
                p("Setup", "Wait. Then the light turns green."),  # shares "Wait." with the first
                p("Use", "Wait. Start again."),  # a new section: no overlap, even if it reads so
                p("Use", "Start again. 打开电源。按下按钮。"),
                p("Use", "按下按钮。等待绿灯。"),
                p("Use", "Nothing shared here."),
                # a line without a full stop shared (a command): shown once too
                p("Use", "Run it:\njob 1 at Wed Jul 27 09:00:00 2022"),
                p("Use", "job 1 at Wed Jul 27 09:00:00 2022\nThe job is queued."),
                p("Use", "It runs now"),
                p("Use", "now\nlater")]  # "now" ends a line, but starts none before: kept
    assert reading_text(passages) == [
        "Plug it in. Press the red button. Wait.", "Then the light turns green.",
        "Wait. Start again.", "打开电源。按下按钮。", "等待绿灯。", "Nothing shared here.",
        "Run it:\njob 1 at Wed Jul 27 09:00:00 2022", "The job is queued.",
        "It runs now", "now\nlater"]
