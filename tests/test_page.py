"""The chat page in a real headless Chromium, checked by what is on screen.

Most tests drive a real artifact built from the tiny generated model. That model answers in a
fraction of a second, so tests that must watch an answer arrive slow the browser's downloads
(Chrome's network throttling) rather than the model. Tests about rendering exact model output
(HTML in answers, markdown) use the real server app around a fake engine that says chosen text.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

pytest.importorskip("selenium")

from browser import (  # noqa: E402
    Chat,
    Keys,
    console,
    find_chromium,
    requested_urls,
    throttle,
    wait_for,
)
from conftest import free_port, launch  # noqa: E402
from fake import FakeEngine, FakeServer  # noqa: E402

from runtime.generation import Finish, GenerationRequest  # noqa: E402

if find_chromium() is None:
    pytest.skip("needs Debian's chromium and chromium-driver (apt-get install chromium "
                "chromium-driver; .ci/run installs them)", allow_module_level=True)

pytestmark = pytest.mark.usefixtures("built")

# The tiny model's answer to this at temperature 0, with the baked system prompt, is a few
# hundred tokens, the same every time: longer than the tests' answer limits, and long enough that
# there is always something left to stop.
LONG_PROMPT = "hi"


@pytest.fixture(scope="module")
def site(tiny_artifact, tmp_path_factory) -> Iterator[Any]:
    """One real artifact for the module; each test opens it in its own browser."""
    home = tmp_path_factory.mktemp("page-home")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLAMABUNDLE_")}
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"),
               XDG_DATA_HOME=str(home / ".local" / "share"))
    server = launch(tiny_artifact, env=env)
    yield server
    server.stop()



def settings(page: Chat, temperature: float, max_tokens: int) -> None:
    """Sets temperature and answer length in the page's settings panel, as a user would."""
    page.el("#settings-toggle").click()
    for name, value in (("temperature", temperature), ("max-tokens", max_tokens)):
        field = page.el("#settings-" + name)
        field.clear()
        field.send_keys(str(value))
    page.el("#settings-close").click()
    assert not page.el("#settings-panel").is_displayed()


def errors(page: Chat) -> list[str]:
    return [e["message"] for e in console(page.driver) if e["level"] == "SEVERE"]


# ---- with the real artifact -------------------------------------------------------------------


def test_answer_streams_into_the_page_and_controls_follow(site, browser):
    page = browser().open(site.url)
    assert page.driver.switch_to.active_element.get_attribute("id") == "input"
    assert page.state == "idle" and page.messages() == []
    settings(page, temperature=0, max_tokens=80)
    throttle(page.driver, 8000)  # ~80 SSE chunks of ~250 bytes: about three seconds

    page.send(LONG_PROMPT)
    page.wait_state("streaming", 10)
    assert page.el("#stop").is_displayed() and not page.el("#send").is_displayed()
    assert page.messages()[0] == ("user", LONG_PROMPT)
    assert page.chat_titles() == [LONG_PROMPT]

    lengths = []
    deadline = time.monotonic() + 60
    while page.state == "streaming" and time.monotonic() < deadline:
        lengths.append(len(page.answer()))
        time.sleep(0.05)
    page.wait_idle(5)
    assert len(set(lengths) - {0}) >= 3, f"the answer did not grow while streaming: {lengths}"
    assert page.answer()
    assert [role for role, _ in page.messages()] == ["user", "assistant"]
    assert page.el("#send").is_displayed() and not page.el("#stop").is_displayed()
    assert page.el("#regenerate").is_displayed()
    assert page.el(".msg-assistant .msg-note").get_attribute("data-label") == \
        "Reached the maximum length"
    assert page.status() == ("", "")
    assert errors(page) == []


def test_stop_ends_the_answer_and_it_stops_growing(site, browser):
    page = browser().open(site.url)
    settings(page, temperature=0, max_tokens=400)
    throttle(page.driver, 3000)
    page.send(LONG_PROMPT)
    wait_for(page.driver, lambda: len(page.answer()) > 0, 30, "the first words of the answer")
    assert page.state == "streaming"

    page.el("#stop").click()
    page.wait_idle(10)
    stopped = page.answer()
    assert stopped
    assert page.el(".msg-assistant .msg-note").get_attribute("data-label") == "Stopped"
    assert page.el("#send").is_displayed() and not page.el("#stop").is_displayed()
    time.sleep(1)  # long enough for several more chunks at this speed, had any arrived
    assert page.answer() == stopped
    assert page.state == "idle"
    assert len(page.all("#messages .msg-assistant")) == 1


def test_regenerate_replaces_the_last_answer(site, browser):
    page = browser().open(site.url)
    settings(page, temperature=0, max_tokens=40)
    page.send(LONG_PROMPT)
    page.wait_idle()
    first = page.answer()
    assert first

    settings(page, temperature=2, max_tokens=40)  # a different answer, all but surely
    throttle(page.driver, 5000)  # slow enough to look at the page while it regenerates
    page.el("#regenerate").click()
    assert page.state == "streaming"
    assert first not in [text for _, text in page.messages()]  # the old answer is gone at once
    assert len(page.all("#messages .msg-assistant")) == 1
    page.wait_idle()
    second = page.answer()
    assert page.messages() == [("user", LONG_PROMPT), ("assistant", second)]
    assert second != first
    assert page.chat_titles() == [LONG_PROMPT]


def test_reload_keeps_the_chat_list(site, browser):
    page = browser().open(site.url)
    settings(page, temperature=0, max_tokens=12)
    page.send("first question")
    page.wait_idle()
    first_answer = page.answer()
    page.el("#new-chat").click()
    assert page.messages() == []
    page.send("second question")
    page.wait_idle()
    assert page.chat_titles() == ["second question", "first question"]

    page.reload()
    assert page.chat_titles() == ["second question", "first question"]
    assert page.messages() == []  # a reload starts a fresh chat; the old ones wait in the list
    assert page.el("#welcome").is_displayed()

    page.all("#chat-list .chat-open")[1].click()
    assert page.messages() == [("user", "first question"), ("assistant", first_answer)]
    assert page.el("#chat-list .chat-item.active .chat-open").text == "first question"


def test_no_request_leaves_the_origin(site, browser):
    page = browser().open(site.url)
    settings(page, temperature=0, max_tokens=12)
    page.send("hello there")
    page.wait_idle()
    page.el("#regenerate").click()
    page.wait_idle()
    page.el("#settings-toggle").click()
    page.el("#new-chat").click()
    page.reload()

    urls = requested_urls(page.driver)
    origin = site.url
    ours = {urlsplit(u).path for u in urls if u.startswith(origin + "/")}
    assert {"/", "/assets/app.js", "/assets/app.css", "/assets/markdown.js", "/props",
            "/health", "/v1/chat/completions"} <= ours, urls
    browser_own = ("chrome://", "chrome-untrusted://", "about:", "devtools://")
    away = [u for u in urls if not u.startswith((origin + "/", "data:", *browser_own))]
    assert away == []


def test_csp_header_forbids_external_origins(site, browser):
    for path in ("/", "/assets/app.js"):
        csp = httpx.get(site.url + path).headers["content-security-policy"]
        directives = dict((d.split(" ", 1) + [""])[:2] for d in
                          (part.strip() for part in csp.split(";")) if d)
        assert directives["default-src"] == "'none'"
        for name in ("script-src", "style-src", "connect-src", "img-src"):
            sources = set(directives[name].split())
            assert sources <= {"'self'", "data:"}, (name, sources)
        assert not re.search(r"https?:|\*|unsafe-inline|unsafe-eval", csp), csp

    # And the browser enforces it: the page itself cannot reach another origin.
    page = browser().open(site.url)
    blocked = page.driver.execute_async_script("""
        const done = arguments[arguments.length - 1];
        const seen = [];
        document.addEventListener("securitypolicyviolation",
                                  (e) => seen.push(e.effectiveDirective));
        fetch("https://example.com/x").catch(() => {});
        const img = document.createElement("img");
        img.src = "https://example.com/p.png";
        document.body.appendChild(img);
        const script = document.createElement("script");
        script.src = "https://example.com/s.js";
        document.body.appendChild(script);
        const wait = () => seen.length >= 3 ? done(seen.sort()) : setTimeout(wait, 50);
        wait();
    """)
    assert blocked == ["connect-src", "img-src", "script-src-elem"]


def test_api_key_dialog_unlocks_the_chat(tiny_artifact, serve, browser):
    server = serve(tiny_artifact, "--api-key", "K3y")
    page = browser()
    page.driver.get(server.url)  # not open(): its title comes from /props, behind the key
    dialog = page.el("#api-key-dialog")
    wait_for(page.driver, lambda: dialog.get_attribute("open") is not None, 10, "the key dialog")
    assert page.el("#api-key-dialog h2").text == "Access key needed"
    assert page.status()[0] == "key"

    page.el("#api-key-input").send_keys("wrong")
    page.el("#api-key-submit").click()
    error = page.el("#api-key-error")
    wait_for(page.driver, error.is_displayed, 10, "the wrong-key message")
    assert error.text == "That key was not accepted. Check it and try again."
    assert dialog.get_attribute("open") is not None

    page.el("#api-key-input").send_keys("K3y")
    page.el("#api-key-submit").click()
    wait_for(page.driver, lambda: dialog.get_attribute("open") is None, 10, "the dialog to close")
    page.wait_loaded()  # /props, with the key
    assert page.status() == ("", "")
    settings(page, temperature=0, max_tokens=12)
    page.send("hello")
    page.wait_idle()
    assert page.answer()
    assert page.status() == ("", "")

    page.reload()  # the key is kept for the browser session
    assert page.el("#api-key-dialog").get_attribute("open") is None
    assert page.chat_titles() == ["hello"]


@pytest.mark.parametrize("lang, expected", [
    ("en-US", {"lang": "en", "new": "New chat", "send": "Send",
               "placeholder": "Message the assistant…",
               "hint": "Enter to send · Shift+Enter for a new line"}),
    ("zh-CN", {"lang": "zh-CN", "new": "新对话", "send": "发送", "placeholder": "给助手发消息…",
               "hint": "Enter 发送 · Shift+Enter 换行"}),
])
def test_ui_language_follows_the_browser(site, browser, lang, expected):
    page = browser(lang=lang).open(site.url)
    assert page.js("return navigator.language") == lang
    assert page.js("return document.documentElement.lang") == expected["lang"]
    assert page.el("#new-chat").text == expected["new"]
    assert page.el("#send").get_attribute("aria-label") == expected["send"]
    assert page.el("#input").get_attribute("placeholder") == expected["placeholder"]
    assert page.el(".hint").text == expected["hint"]
    settings(page, temperature=0, max_tokens=8)
    page.send("hi")
    page.wait_idle()
    label = {"en-US": "Regenerate", "zh-CN": "重新生成"}[lang]
    assert page.el("#regenerate").text == label


@pytest.mark.parametrize("scheme, width", [("light", 1280), ("dark", 375)])
def test_theme_and_layout_follow_the_device(site, browser, scheme, width):
    page = browser(width, 800, scheme=scheme).open(site.url)
    rgb = page.js("return getComputedStyle(document.body).backgroundColor")
    r, g, b = map(int, re.findall(r"\d+", rgb)[:3])
    brightness = (r * 299 + g * 587 + b * 114) / 1000
    assert (brightness > 160) if scheme == "light" else (brightness < 90), rgb
    assert page.js("return document.documentElement.scrollWidth") <= width  # no sideways scroll
    assert page.el("#input").is_displayed() and page.el("#send").is_displayed()
    phone = width < 600
    assert page.el("#menu").is_displayed() == phone
    assert page.el("#new-chat").is_displayed() == (not phone)
    if phone:
        page.el("#menu").click()
        wait_for(page.driver, page.el("#new-chat").is_displayed, 5, "the sidebar to open")


# ---- with a fake engine that says chosen text -------------------------------------------------

HOSTILE = (
    "Plain **bold** and <img src=x onerror=alert(1)> and <script>alert(1)</script> too.\n\n"
    'Also <img src=/x2 onerror="window.__pwned=1"> and <script>window.__pwned=2</script> '
    "and [a link](javascript:window.__pwned=3) and <a href=\"https://example.com\">x</a>.\n\n"
    "```html\n<script>window.__pwned=4</script>\n```\n"
)


class SaysEngine(FakeEngine):
    """Answers every chat with `text`, a few characters at a time."""

    def __init__(self, text: str, delay: float = 0.01):
        super().__init__(delay)
        self.text = text

    def _words(self, request: GenerationRequest) -> Iterator[Any]:
        pieces = [self.text[i:i + 7] for i in range(0, len(self.text), 7)]
        for piece in pieces:
            time.sleep(self.delay)
            yield piece
        yield Finish("stop", 3, len(pieces), 0)


@pytest.fixture
def fake_site() -> Iterator[FakeServer]:
    with FakeServer(SaysEngine(HOSTILE), free_port()) as server:
        yield server


def test_html_in_answers_and_messages_shows_as_text_and_runs_nothing(fake_site, browser):
    page = browser().open(fake_site.url)
    typed = "what does <img src=x onerror=alert(1)> do?"
    page.send(typed)
    page.wait_idle()

    assert page.messages()[0] == ("user", typed)
    answer = page.answer()
    for literal in ("<img src=x onerror=alert(1)>", "<script>alert(1)</script>",
                    '<img src=/x2 onerror="window.__pwned=1">',
                    "<script>window.__pwned=2</script>", '<a href="https://example.com">x</a>'):
        assert literal in answer
    assert page.el(".msg-assistant strong").text == "bold"  # markdown still renders
    code = page.el(".msg-assistant .code pre code")
    assert code.text == "<script>window.__pwned=4</script>"
    assert page.all(".msg-assistant .code .code-copy")

    assert page.all("#messages img, #messages script, #messages iframe, #messages object") == []
    hrefs = [a.get_attribute("href") for a in page.all("#messages a")]
    assert all(h.startswith("https://") for h in hrefs), hrefs
    assert page.js("return window.__pwned") is None
    urls = requested_urls(page.driver)
    assert not [u for u in urls if urlsplit(u).path in ("/x", "/x2")], urls
    assert not [m for m in errors(page) if "Content Security Policy" in m]


def test_enter_while_composing_does_not_send(fake_site, browser):
    page = browser().open(fake_site.url)
    driver = page.driver
    page.js("window.__keys = []; document.addEventListener('keydown', "
            "(e) => __keys.push([e.key, e.keyCode, e.isComposing]), true)")
    field = page.el("#input")
    field.click()

    def enter(code: int) -> None:
        for kind in ("rawKeyDown", "keyUp"):
            driver.execute_cdp_cmd("Input.dispatchKeyEvent", {
                "type": kind, "key": "Enter", "code": "Enter", "windowsVirtualKeyCode": code,
                "nativeVirtualKeyCode": code})

    # A Chinese input method: typing "nihao" composes; Enter picks the candidate.
    driver.execute_cdp_cmd("Input.imeSetComposition",
                           {"text": "nihao", "selectionStart": 5, "selectionEnd": 5})
    enter(13)
    driver.execute_cdp_cmd("Input.insertText", {"text": "你好"})
    # Some input methods (and Safari) report the confirming Enter as keyCode 229 instead.
    enter(229)
    keys = page.js("return __keys")
    assert ["Enter", 13, True] in keys and ["Enter", 229, False] in keys, keys
    assert field.get_attribute("value") == "你好"
    assert page.messages() == [] and page.state == "idle"

    field.send_keys(Keys.SHIFT, Keys.ENTER)
    field.send_keys("second line")
    assert field.get_attribute("value") == "你好\nsecond line"
    assert page.messages() == []

    field.send_keys(Keys.ENTER)
    wait_for(driver, lambda: page.messages()[:1] == [("user", "你好\nsecond line")], 10,
             "the message to be sent")
    assert field.get_attribute("value") == ""
    page.wait_idle()
    assert page.answer().startswith("Plain bold")


def test_chats_rename_and_delete_from_the_sidebar(fake_site, browser):
    page = browser().open(fake_site.url)
    page.send("one")
    page.wait_idle()
    page.el("#new-chat").click()
    page.send("two")
    page.wait_idle()
    assert page.chat_titles() == ["two", "one"]

    page.all("#chat-list .chat-rename")[1].click()
    rename = page.el(".chat-rename-input")
    rename.send_keys(Keys.CONTROL, "a")
    rename.send_keys("Renamed", Keys.ENTER)
    assert page.chat_titles() == ["two", "Renamed"]

    page.all("#chat-list .chat-delete")[0].click()
    assert page.chat_titles() == ["Renamed"]
    stored = json.loads(page.js("return localStorage.getItem('llamabundle.chats')"))
    assert [c["title"] for c in stored] == ["Renamed"]
