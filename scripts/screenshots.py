"""Screenshots of the chat page (`make screenshots`): desktop and phone, light and dark, English,
and one in Simplified Chinese, written to screenshots/ (not committed).

Builds an artifact from the tiny generated test model, starts it, chats with it in headless
Chromium so the pages have real content, and saves one PNG per view. The tiny model has random
weights: its answers are word salad, but they are real streamed answers from a real artifact.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "screenshots"
sys.path.insert(0, str(ROOT / "tests"))

from browser import Chat, find_chromium, new_driver, quit_driver  # noqa: E402
from tiny_model import make_tiny_gguf  # noqa: E402

EN = [["Hello!"], ["Write a haiku about the sea", "Make it shorter, please."]]
ZH = [["你好！"], ["写一首关于大海的诗", "再短一点。"]]
VIEWS = [  # name, width, height, scheme, lang, chats (each a list of questions)
    ("desktop-light", 1280, 800, "light", "en-US", EN),
    ("desktop-dark", 1280, 800, "dark", "en-US", EN),
    ("phone-light", 375, 812, "light", "en-US", EN),
    ("phone-dark", 375, 812, "dark", "en-US", EN),
    ("desktop-light-zh-CN", 1280, 800, "light", "zh-CN", ZH),
]


def build() -> Path:
    gguf = make_tiny_gguf(OUT / "tiny.gguf", name="Tiny Demo")
    artifact = OUT / "tiny.llamabundle"
    tool = Path(sys.executable).with_name("llamabundle")
    cmd = [str(tool)] if tool.exists() else [sys.executable, "-m", "bundler"]
    subprocess.run([*cmd, "build", str(gguf), "-o", str(artifact), "--force",
                    "--system-prompt", "You are a helpful assistant."], check=True)
    return artifact


def start(artifact: Path) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([str(artifact), "--nobrowser", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"the artifact exited with {proc.returncode}")
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    proc.kill()
    sys.exit("the artifact never became ready")


def shoot(url: str, name: str, width: int, height: int, scheme: str, lang: str,
          chats: list[list[str]]) -> Path:
    driver = new_driver(width, height, scheme=scheme, lang=lang)
    try:
        page = Chat(driver).open(url)
        page.el("#settings-toggle").click()
        for field, value in (("temperature", "0"), ("max-tokens", "60")):
            page.el("#settings-" + field).clear()
            page.el("#settings-" + field).send_keys(value)
        page.el("#settings-close").click()
        for i, questions in enumerate(chats):
            if i:  # on a phone the sidebar's button is hidden; the click is the same
                page.js("document.getElementById('new-chat').click()")
            for question in questions:
                page.send(question)
                page.wait_idle()
        path = OUT / f"{name}.png"
        driver.save_screenshot(str(path))
        return path
    finally:
        quit_driver(driver)


def main() -> None:
    if find_chromium() is None:
        sys.exit("screenshots need chromium and chromedriver (apt-get install chromium "
                 "chromium-driver)")
    OUT.mkdir(exist_ok=True)
    proc, url = start(build())
    try:
        for view in VIEWS:
            print(shoot(url, *view).relative_to(ROOT))
    finally:
        proc.terminate()
        proc.wait(10)


if __name__ == "__main__":
    main()
