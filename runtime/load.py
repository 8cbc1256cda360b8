"""Loading the model: one home for what the server, `--chat` and `-p` all do first, so the
entry point (main.py) and the modes it starts (serve.py, terminal.py) need not import each
other. Importing this module does not load llama.cpp; calling load_engine does."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from runtime.artifact.manifest import Manifest
from runtime.errors import LlamabundleError, LoadError
from runtime.settings import Settings

if TYPE_CHECKING:
    from runtime.engine import Engine

log = logging.getLogger("llamabundle")


def load_engine(artifact: str, manifest: Manifest, settings: Settings) -> Engine:
    """The loaded model; any failure, ours or not, as one LlamabundleError line."""
    try:
        from runtime.engine import Engine  # imports llama.cpp: only when a model is needed

        return Engine.load(artifact, manifest, settings)
    except LlamabundleError:
        raise
    except Exception as e:  # e.g. OSError from a library that will not load on this system
        log.debug("model load failed", exc_info=True)
        raise LoadError(f"could not load the model: {type(e).__name__}: {e}") from None
