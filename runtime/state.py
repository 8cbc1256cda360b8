"""What the app serves: the bundle's manifest and settings, its worker and, once loaded, its
model.

Kept apart from runtime/web/ so the launcher can start loading the model before the web stack
is imported: the two overlap, and launch gets faster."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from runtime.artifact.manifest import Manifest
from runtime.errors import NotReadyError
from runtime.generation import Defaults, Event, Model
from runtime.settings import Settings
from runtime.worker import Worker

if TYPE_CHECKING:  # prometheus_client costs ~50 ms to import: create_app does, off the
    from runtime.metrics import Metrics  # path from launch to the model's load


class State:
    def __init__(self, manifest: Manifest, settings: Settings, worker: Worker):
        self.manifest = manifest
        self.settings = settings
        self.defaults = Defaults.from_settings(settings)
        self.worker = worker
        self.metrics: Metrics | None = None  # set by the web app
        self.engine: Model | None = None
        self.load_error: str | None = None
        self.artifact: str | None = None  # its file, for what clients show as "modified"

    def ready_engine(self) -> Model:
        if self.engine is None:
            raise NotReadyError(self.load_error or "the model is still loading; try again "
                                "in a moment (GET /health says when it is ready)")
        return self.engine

    def observe(self, events: Iterator[Event]) -> Iterator[Event]:
        """A generation's events, counted and timed for /metrics once the app has metrics."""
        return events if self.metrics is None else self.metrics.observe(events)

    def kv_cache_tokens(self) -> int:
        return 0 if self.engine is None else self.engine.kv_cache()[0]
