"""Drives Debian's headless Chromium for the chat page's tests and screenshots.

Every driver gets a fresh profile, the browser language and the colour scheme it asks for, and
keeps Chrome's performance log, so a test can list every request the page made.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

__all__ = ["By", "Chat", "Keys", "console", "find_chromium", "new_driver", "quit_driver",
           "requested_urls", "throttle", "wait_for"]

T = TypeVar("T")

FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run", "--no-default-browser-check", "--disable-quic",
         "--disable-features=Translate,OptimizationHints,MediaRouter",
         "--hide-scrollbars", "--mute-audio"]


def find_chromium() -> tuple[str, str] | None:
    """(chromium, chromedriver) paths, or None if either is missing."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    for path in ("/usr/bin/chromium", "/usr/lib/chromium/chromium"):
        if not browser and Path(path).exists():
            browser = path
    if not driver and Path("/usr/bin/chromedriver").exists():
        driver = "/usr/bin/chromedriver"
    return (browser, driver) if browser and driver else None


def new_driver(width: int = 1280, height: int = 800, *, scheme: str = "light",
               lang: str = "en-US") -> webdriver.Chrome:
    """A headless Chromium whose browser language is `lang` and that prefers `scheme`."""
    found = find_chromium()
    if found is None:
        raise RuntimeError("chromium and chromedriver are needed")
    browser, driver_path = found
    profile = tempfile.mkdtemp(prefix="llamabundle-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument(f"--window-size={width},{height}")
    options.add_argument(f"--lang={lang}")
    options.add_experimental_option("prefs", {"intl.accept_languages": lang})
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    try:
        driver = webdriver.Chrome(service=Service(driver_path), options=options)
    except Exception:
        shutil.rmtree(profile, ignore_errors=True)
        raise
    driver.profile_dir = profile  # type: ignore[attr-defined]
    driver.requests_seen = []  # type: ignore[attr-defined]
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600})
    driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {
        "features": [{"name": "prefers-color-scheme", "value": scheme}]})
    return driver


def quit_driver(driver: webdriver.Chrome) -> None:
    try:
        driver.quit()
    finally:
        shutil.rmtree(getattr(driver, "profile_dir", ""), ignore_errors=True)


def wait_for(driver: webdriver.Chrome, condition: Callable[[], T], timeout: float = 30,
             what: str = "") -> T:
    """Polls `condition` until it returns something truthy; fails with `what` on timeout."""
    def check(_: Any) -> T:
        try:
            return condition()
        except StaleElementReferenceException:  # the page redrew the element: try again
            return None  # type: ignore[return-value]

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.05).until(check)
    except TimeoutException:
        raise AssertionError(f"timed out after {timeout} s waiting for {what or condition}") \
            from None


def console(driver: webdriver.Chrome) -> list[dict[str, Any]]:
    """The browser console since the last call (errors, CSP violations, ...)."""
    return list(driver.get_log("browser"))


def requested_urls(driver: webdriver.Chrome) -> list[str]:
    """Every URL the page has asked the network for so far (Network.requestWillBeSent)."""
    seen: list[str] = driver.requests_seen  # type: ignore[attr-defined]
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            seen.append(message["params"]["request"]["url"])
    return list(seen)


def throttle(driver: webdriver.Chrome, bytes_per_second: int) -> None:
    """Slows the page's downloads, so a fast model's answer streams in over seconds."""
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.emulateNetworkConditions", {
        "offline": False, "latency": 0, "downloadThroughput": bytes_per_second,
        "uploadThroughput": -1})


class Chat:
    """The chat page, as the tests and screenshots see it."""

    def __init__(self, driver: webdriver.Chrome):
        self.driver = driver

    def open(self, url: str) -> Chat:
        self.driver.get(url)
        return self.wait_loaded()

    def reload(self) -> Chat:
        self.driver.refresh()
        return self.wait_loaded()

    def wait_loaded(self) -> Chat:
        """Waits until the page has its title from /props, so it knows the server."""
        wait_for(self.driver, lambda: self.js("return document.title !== 'Chat'"), 30,
                 "the page to load /props")
        return self

    def js(self, script: str, *args: Any) -> Any:
        return self.driver.execute_script(script, *args)

    def el(self, css: str) -> WebElement:
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def all(self, css: str) -> list[WebElement]:
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    @property
    def state(self) -> str:
        return self.js("return document.body.dataset.state")

    def messages(self) -> list[tuple[str, str]]:
        """(role, text on screen) for every message shown."""
        return [(m["role"], m["text"]) for m in self.js(
            "return [...document.querySelectorAll('#messages .msg')].map(m => ({"
            "role: m.classList.contains('msg-user') ? 'user' : 'assistant',"
            "text: m.querySelector('.msg-body').innerText}))")]

    def answer(self) -> str:
        """The text of the last assistant message, '' if there is none."""
        answers = [text for role, text in self.messages() if role == "assistant"]
        return answers[-1] if answers else ""

    def type(self, text: str) -> None:
        self.el("#input").send_keys(text)

    def send(self, text: str) -> None:
        self.type(text)
        self.el("#send").click()

    def wait_state(self, value: str, timeout: float = 60) -> None:
        wait_for(self.driver, lambda: self.state == value, timeout, f"body[data-state={value}]")

    def wait_idle(self, timeout: float = 60) -> None:
        self.wait_state("idle", timeout)

    def chat_titles(self) -> list[str]:
        return [e.get_attribute("textContent") for e in self.all("#chat-list .chat-open")]

    def status(self) -> tuple[str, str]:
        """(data-kind, text) of the status banner; ('', '') when it is hidden."""
        box = self.el("#status")
        if not box.is_displayed():
            return "", ""
        return box.get_attribute("data-kind") or "", box.text
