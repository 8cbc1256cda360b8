"""Where the runtime's own files are, frozen or run from a source checkout."""

from __future__ import annotations

import sys
from pathlib import Path


def frozen() -> bool:
    return bool(getattr(sys, "frozen", False))


def templates_dir() -> Path:
    if frozen():
        return Path(sys._MEIPASS) / "templates"  # type: ignore[attr-defined]
    return Path(__file__).resolve().parent.parent / "templates"
