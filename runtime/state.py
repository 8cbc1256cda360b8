"""What the app serves: the bundle's manifest, its worker and, once loaded, its engine.

Kept apart from runtime/server.py so the launcher can start loading the model before the web
stack is imported: the two overlap, and launch gets faster."""

from __future__ import annotations

from typing import Any

from runtime.errors import NotReadyError
from runtime.manifest import Manifest
from runtime.worker import Worker


class State:
    """What the app serves: the bundle's manifest and, once loaded, its engine."""

    def __init__(self, manifest: Manifest, worker: Worker):
        self.manifest = manifest
        self.worker = worker
        self.engine: Any = None
        self.load_error: str | None = None

    def ready_engine(self) -> Any:
        if self.engine is None:
            raise NotReadyError(self.load_error or "the model is still loading; try again "
                                "in a moment (GET /health says when it is ready)")
        return self.engine
