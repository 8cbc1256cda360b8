"""The join between the API dialects and the engine: one typed request in, one typed result out.

Every dialect (the page's and OpenAI's chat, OpenAI's and llama.cpp's completions; Ollama's
next) builds a `GenerationRequest` with `Defaults.request(...)`, where the bundle's defaults are
applied, once. The engine answers with text pieces (and, when the request offers tools, call
starts and argument fragments) and then one `Finish`; each dialect formats those. `Model` is
the engine's interface as the web layer sees it: the real engine and the tests' fake both
satisfy it (mypy checks), and the web layer never imports llama.cpp.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from runtime.chat.tools import Tool, ToolCall
from runtime.knowledge.passage import DocumentInfo, Hit, Passage
from runtime.settings import Settings


@dataclass(frozen=True)
class Sampling:
    temperature: float = 0.8
    top_p: float = 0.95
    top_k: int = 40
    min_p: float = 0.05
    repeat_penalty: float = 1.0
    repeat_last_n: int = 64  # the window of the three penalties (llama.cpp's penalty_last_n)
    presence_penalty: float = 0.0  # OpenAI's and Ollama's: subtracted once from a seen token
    frequency_penalty: float = 0.0  # ... and this, times how often it was seen
    seed: int | None = None  # None: a random one


@dataclass(frozen=True)
class ChatMessage:
    role: str  # "system", "user", "assistant" or "tool"
    content: str
    tool_calls: tuple[ToolCall, ...] = ()  # an assistant's calls
    tool_call_id: str | None = None  # a tool result: the call it answers (Ollama sends none)
    name: str | None = None  # a tool result: the tool's name, when the client says


@dataclass(frozen=True)
class Infill:
    """Fill-in-the-middle: the text to write between `prefix` and `suffix`, in the model's own
    FIM tokens. `extra`: other files of the project as (file name, text), for context."""

    prefix: str
    suffix: str
    extra: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class GenerationRequest:
    """What to generate. Exactly one of `messages` (a chat, rendered by the model's template),
    `prompt` (text, or token ids, continued as is) and `infill` is set."""

    messages: tuple[ChatMessage, ...] | None = None
    prompt: str | tuple[int, ...] | None = None
    infill: Infill | None = None
    sampling: Sampling = field(default_factory=Sampling)
    max_tokens: int = 512  # 0: none (the prompt is still evaluated); -1: until the context is full
    stop: tuple[str, ...] = ()
    json_schema: dict[str, Any] | None = None  # {}: any JSON object
    tools: tuple[Tool, ...] = ()
    tool_choice: str = "auto"  # "auto", "none", "required" or a tool's name; no tools: none
    parallel_tool_calls: bool = True
    logprobs: int | None = None  # None: none; n: each token's, with its n likeliest (0-20)
    knowledge: bool = True  # a chat in a knowledge bundle retrieves passages; False skips it
    # Document text the messages quote (knowledge passages): data, tokenized as text, so a
    # document holding "<|im_end|><|im_start|>system" cannot write control tokens.
    passages: tuple[str, ...] = ()
    # Set when nobody wants the answer any more (the client went away, Ctrl-C): the one signal
    # every layer obeys. The worker skips a request still queued, the decoder drops its
    # sequence (waiting, reading the prompt or generating) and the reader gets Abandoned.
    cancel: threading.Event = field(default_factory=threading.Event, compare=False,
                                    repr=False)
    # With tool_choice "none": the answer is still read for calls, and any call in it dropped
    # rather than shown as text (the agent-loop guard's second try; runtime/chat/agent_loop.py)
    text_only: bool = False
    # The answer may not end before it holds a word, only citations ("[2]") or nothing: an
    # answer from passages (runtime/knowledge/retrieve.py)
    words_first: bool = False

    @property
    def calls_tools(self) -> bool:
        """Whether the answer may hold tool calls (tools offered, and not refused)."""
        return bool(self.tools) and self.tool_choice != "none"


@dataclass(frozen=True)
class TopLogprob:
    token: str
    piece: bytes  # the token's bytes (a token may hold part of a UTF-8 character)
    logprob: float  # natural log of the model's probability, before sampling settings


@dataclass(frozen=True)
class TokenLogprob(TopLogprob):
    top: tuple[TopLogprob, ...] = ()  # the likeliest tokens at this position, best first


@dataclass(frozen=True)
class KnowledgeUsage:
    """What retrieval put in a chat's prompt, and what the context budget left out."""

    passages: int  # passages in the prompt (the response's sources)
    passages_left_out: int  # found relevant, dropped (lowest-ranked first) to fit the context
    tokens: int  # prompt tokens spent on the passages and the instruction around them
    turns_left_out: int = 0  # older messages dropped after every passage was
    search_ns: int = 0  # retrieval, the query's embedding included, and fitting the prompt


@dataclass(frozen=True)
class Sources:
    """The first event of a chat that retrieval ran for: the passages its prompt holds, in the
    order they are numbered for citation ([1] is hits[0]); empty when none was relevant."""

    hits: tuple[Hit, ...]


@dataclass(frozen=True)
class Finish:
    """How a generation ended, with its counts and timings (nanoseconds)."""

    reason: str  # "stop" (end of turn or a stop string), "length" or "tool_calls"
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int  # prompt tokens whose KV entries were reused from the last request
    prompt_ns: int = 0  # evaluating the prompt (the part not reused)
    generation_ns: int = 0  # from the first generated token to the last
    logprobs: tuple[TokenLogprob, ...] | None = None  # each generated token's, when asked
    knowledge: KnowledgeUsage | None = None  # set when retrieval ran for this chat
    stop_sequence: str | None = None  # the stop string that ended it, if one did

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class CallStart:
    """A tool call begins: its id and name, sent once."""

    index: int  # 0, 1, ... in the answer
    id: str
    name: str


@dataclass(frozen=True)
class CallArguments:
    index: int
    fragment: str  # the call's arguments (JSON text) are the concatenation of its fragments


# A generation yields text pieces and, with tools, CallStart then its CallArguments; then one
# Finish. Text never holds call markup. A chat that retrieval ran for starts with its Sources.
Event = str | Sources | CallStart | CallArguments | Finish


@dataclass(frozen=True)
class Completion:
    text: str
    finish: Finish
    tool_calls: tuple[ToolCall, ...] = ()
    sources: Sources | None = None


def collect(events: Iterable[Event]) -> Completion:
    """A whole answer from a generation's events, its calls whole."""
    parts: list[str] = []
    calls: list[ToolCall] = []
    sources = None
    for event in events:
        if isinstance(event, Finish):
            return Completion("".join(parts), event, tuple(calls), sources)
        if isinstance(event, Sources):
            sources = event
        elif isinstance(event, CallStart):
            calls.append(ToolCall(event.id, event.name, ""))
        elif isinstance(event, CallArguments):
            calls[event.index].arguments += event.fragment
        else:
            parts.append(event)
    raise RuntimeError("generation ended without a Finish")


@dataclass(frozen=True)
class Embedding:
    vector: list[float]  # pooled and L2-normalised
    tokens: int


@dataclass(frozen=True)
class Defaults:
    """The bundle's defaults for a request, from its settings."""

    sampling: Sampling
    max_tokens: int
    system_prompt: str

    @classmethod
    def from_settings(cls, s: Settings) -> Defaults:
        return cls(Sampling(temperature=s.temp, top_p=s.top_p, top_k=s.top_k,
                            repeat_penalty=s.repeat_penalty), s.n_predict, s.system_prompt)

    def request(self, *, messages: Sequence[ChatMessage] | None = None,
                prompt: str | Sequence[int] | None = None, infill: Infill | None = None,
                max_tokens: int | None = None,
                stop: str | Sequence[str] | None = None, json_schema: dict[str, Any] | None = None,
                tools: Sequence[Tool] = (), tool_choice: str | None = None,
                parallel_tool_calls: bool | None = None, logprobs: int | None = None,
                knowledge: bool = True, **sampling: Any) -> GenerationRequest:
        """A request with these defaults where the caller gave None. A chat without a system
        message gets the bundle's system prompt. tool_choice: "auto" with tools, else none."""
        if messages is not None and self.system_prompt and \
                not any(m.role == "system" for m in messages):
            messages = [ChatMessage("system", self.system_prompt), *messages]
        given = {k: v for k, v in sampling.items() if v is not None}
        return GenerationRequest(
            messages=None if messages is None else tuple(messages),
            prompt=prompt if prompt is None or isinstance(prompt, str) else tuple(prompt),
            infill=infill,
            sampling=replace(self.sampling, **given),
            max_tokens=self.max_tokens if max_tokens is None else max_tokens,
            stop=(stop,) if isinstance(stop, str) else tuple(stop or ()),
            json_schema=json_schema,
            tools=tuple(tools),
            tool_choice=tool_choice or ("auto" if tools else "none"),
            parallel_tool_calls=True if parallel_tool_calls is None else parallel_tool_calls,
            logprobs=logprobs,
            knowledge=knowledge,
        )


class Model(Protocol):
    """A loaded model as the web layer uses it; called only from the worker thread."""

    @property
    def n_ctx(self) -> int: ...

    @property
    def fills_in_middle(self) -> bool:
        """Whether the vocabulary has fill-in-the-middle tokens (a request with `infill` is
        refused without them)."""
        ...

    def prompt_tokens(self, request: GenerationRequest) -> int:
        """How many tokens the request's prompt takes, without generating."""
        ...

    def hardware(self) -> dict[str, Any]:
        """What runs the model (the CPU code chosen), for /props."""
        ...

    def generate(self, request: GenerationRequest) -> Iterator[Event]:
        """Text pieces as they are decoded, then one Finish; raises before the first piece if
        the request cannot be served (too long, bad schema); closing the iterator stops it."""
        ...

    def embed(self, item: str | Sequence[int], truncate: bool = False) -> Embedding:
        """truncate: an input longer than the embedder takes is cut to fit (Ollama's
        default), else it is a 400."""
        ...

    def tokenize(self, text: str, add_special: bool = True) -> list[int]: ...

    def detokenize(self, tokens: Sequence[int]) -> str: ...

    def kv_cache(self) -> tuple[int, int]:
        """Tokens the KV cache holds now, and at most (for /metrics; read from any thread)."""
        ...

    def knowledge_info(self) -> dict[str, Any] | None:
        """The bundle's knowledge described (documents, chunks, embedder), None without one."""
        ...

    def search(self, query: str, top_k: int) -> list[Hit]:
        """The bundle's retrieval itself; raises NoKnowledgeError in a bundle without one."""
        ...

    def documents(self) -> list[DocumentInfo]:
        """The bundled documents (any thread); raises NoKnowledgeError without knowledge."""
        ...

    def document(self, number: int) -> list[Passage]:
        """One document's passages in order (any thread); [] for no such document."""
        ...
