"""The first screen of a real knowledge bundle in Chromium, end to end: documents without
headings, built with the real instruct model, which writes the starter questions at build time;
the page names the documents and offers 3-4 starters, each answered with citations, and keeps
the system prompt behind the settings button. Screenshots of the empty screen (a plain artifact
and the knowledge bundle, 1280x800 and 390x844, English and Chinese) go to build/screenshots/
for a reviewer to look at."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

pytest.importorskip("selenium")

from browser import Chat, console, find_chromium, wait_for  # noqa: E402
from conftest import Server, build_cli, launch  # noqa: E402

if find_chromium() is None:
    pytest.skip("needs Debian's chromium and chromium-driver", allow_module_level=True)

pytestmark = [pytest.mark.usefixtures("built"), pytest.mark.slow]

PLAIN = Path(__file__).parent / "data" / "knowledge" / "plain"  # three files, no headings
SHOTS = Path(__file__).resolve().parent.parent / "build" / "screenshots"
SIZES = {"desktop": (1280, 800), "phone": (390, 844)}
LANGS = {"en": "en-US", "zh": "zh-CN"}


@pytest.fixture(scope="module")
def knowledge_build(instruct_gguf: Path, tmp_path_factory: pytest.TempPathFactory,
                    shared_cache: Path) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("first-screen") / "assistant.llamabundle"
    # -n 60: a cited first sentence, not a page of text per starter on a shared CPU; greedy
    # (--temp 0), so each starter's answer is the same in every run
    proc = build_cli(instruct_gguf, "--knowledge", PLAIN, "-o", out, "-c", "4096", "-n", "60",
                     "--temp", "0",
                     "--title", "Office helper", cache=shared_cache)
    return out, proc.stdout


@pytest.fixture(scope="module")
def server(knowledge_build: tuple[Path, str]) -> Iterator[Server]:
    server = launch(knowledge_build[0], timeout=300)
    yield server
    server.stop()



@pytest.fixture(scope="module")
def plain(tiny_artifact: Path) -> Iterator[Server]:
    server = launch(tiny_artifact)
    yield server
    server.stop()


def first_screen(page: Chat, url: str, knowledge: bool) -> Chat:
    """The page opened on a loaded model (no banner), once it shows what it will show."""
    wait_for(page.driver, lambda: httpx.get(url + "/health").status_code == 200, 300,
             "the model to load")
    page.open(url)
    wait_for(page.driver, lambda: not page.el("#status").is_displayed(), 10, "no banner")
    if knowledge:
        wait_for(page.driver, lambda: len(page.all("#library-list .doc-chip")) == 3, 30,
                 "the documents' titles")
    return page


def shoot(page: Chat, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.driver.save_screenshot(str(SHOTS / f"{name}.png"))


def read_a_document(page: Chat) -> None:
    """A title opens the document's text, every sentence once (chunks overlap by one)."""
    chip = next(c for c in page.all("#library-list .doc-chip") if c.text == "heat_pump.txt")
    chip.click()
    wait_for(page.driver, lambda: "E7" in page.el("#document-body").text, 30, "its text")
    shown = " ".join(page.el("#document-body").text.split())
    sentences = re.split(r"(?<=\.)\s+", " ".join((PLAIN / "heat_pump.txt").read_text().split()))
    assert [s for s in sentences if shown.count(s) != 1] == []
    page.el("#document-close").click()
    wait_for(page.driver, lambda: not page.el("#document-dialog").is_displayed(), 5, "closed")


def test_the_build_says_the_model_wrote_the_starters(knowledge_build):
    said = knowledge_build[1]
    assert re.search(r"^Starters: [34] written by the model from the documents", said, re.M), said


@pytest.mark.parametrize("lang", LANGS)
def test_the_first_screen_names_the_documents_and_hides_the_system_prompt(
        server, plain, browser, lang):
    for size, (width, height) in SIZES.items():
        page = first_screen(browser(width, height, lang=LANGS[lang]), server.url, True)
        line = page.el("#library-line").text
        assert line == ("Answers from 3 documents" if lang == "en" else "根据 3 份文档回答")
        chips = [c.text for c in page.all("#library-list .doc-chip")]
        assert sorted(chips) == ["bike_lease.txt", "heat_pump.txt", "食堂.txt"]
        starters = [b.text for b in page.all("#starters .starter")]
        assert 3 <= len(starters) <= 4, starters
        assert all(b.is_displayed() for b in page.all("#starters .starter"))
        assert not page.el("#system-prompt").is_displayed()
        assert page.el("#input").is_displayed()
        shoot(page, f"knowledge-{size}-{lang}")
        if size == "desktop":
            read_a_document(page)
        page.el("#settings-toggle").click()
        assert page.el("#system-prompt").is_displayed()
        assert not [e for e in console(page.driver) if e["level"] == "SEVERE"]

        page = first_screen(browser(width, height, lang=LANGS[lang]), plain.url, False)
        assert not page.el("#library").is_displayed()
        assert page.el("#welcome-text").is_displayed()
        assert not page.el("#system-prompt").is_displayed()
        shoot(page, f"plain-{size}-{lang}")
        page.el("#settings-toggle").click()  # the baked system prompt is there, and applies
        assert page.el("#system-prompt").get_attribute("value") == "You are terse."


def test_every_starter_gets_a_cited_answer(server, browser):
    page = first_screen(browser(), server.url, True)
    starters = [b.text for b in page.all("#starters .starter")]
    for i, question in enumerate(starters):
        if i:
            page.el("#new-chat").click()
            wait_for(page.driver, lambda: page.el("#welcome").is_displayed(), 10, "a new chat")
        page.all("#starters .starter")[i].click()
        page.wait_idle(600)
        assert page.messages()[0] == ("user", question)
        sources = page.all(".msg-assistant .source")
        assert sources, (question, page.answer())
        cites = page.all(".msg-assistant .msg-body .cite")
        assert cites, (question, page.answer())
