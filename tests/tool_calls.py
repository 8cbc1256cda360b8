"""What the tool-calling tests share: a weather tool, a question that calls it and one more, the
events a model makes for those two calls, and fake servers that replay scripted events."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from conftest import free_port
from fake import FakeEngine, FakeServer

from runtime.generation import CallArguments, CallStart, Event, Finish

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}
ASK = [{"role": "user", "content": "Weather in Paris and the time?"}]
TWO_CALLS = [CallStart(0, "call_a1", "get_weather"), CallArguments(0, '{"city": '),
             CallArguments(0, '"Paris"}'), CallStart(1, "call_b2", "get_time"),
             CallArguments(1, "{}"), Finish("tool_calls", 20, 12, 0)]

Start = Callable[..., tuple[FakeServer, FakeEngine]]


def scripted_servers() -> Iterator[Start]:
    """A fixture's body: `start(*events)` serves a fake engine that replays those events; every
    server started is stopped at the end."""
    servers: list[FakeServer] = []

    def start(*events: Event) -> tuple[FakeServer, FakeEngine]:
        engine = FakeEngine(delay=0, script=events)
        servers.append(FakeServer(engine, free_port()).__enter__())
        return servers[-1], engine

    yield start
    for server in servers:
        server.__exit__()
