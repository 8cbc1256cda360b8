"""Ollama's request bodies, validated by pydantic: a caller's mistake is a 400 naming the field.
Unknown fields and option keys are ignored, as Ollama does."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator

from runtime.chat.tools import ToolCall, tools_from_openai
from runtime.errors import RequestError
from runtime.generation import ChatMessage, Infill
from runtime.settings import MAX_TOKENS
from runtime.web.schemas import Request, Stops, bounded


class Options(Request):
    """Ollama's `options`. Unknown keys are ignored, as Ollama does; a known key with a wrong
    type is a 400 (strict: "0.5" is not a number). Those not mapped onto our sampling (load-time
    options, mirostat, ...) are only type-checked."""

    model_config = ConfigDict(extra="ignore", strict=True)

    num_predict: int | None = Field(default=None, ge=-2, le=MAX_TOKENS)  # <= 0: no limit, as Ollama
    temperature: float | None = bounded("temp")
    top_p: float | None = bounded("top_p")
    top_k: int | None = bounded("top_k")
    min_p: float | None = Field(default=None, ge=0.0, le=1.0)
    repeat_penalty: float | None = bounded("repeat_penalty")
    repeat_last_n: int | None = Field(default=None, ge=-1, le=MAX_TOKENS)  # -1: the whole context
    seed: int | None = Field(default=None, ge=-(1 << 63), le=(1 << 64) - 1)  # < 0: a random one
    stop: Stops = None
    num_ctx: int | None = Field(default=None, ge=0)  # the context is fixed at launch
    num_keep: int | None = None
    num_batch: int | None = None
    num_gpu: int | None = None
    main_gpu: int | None = None
    num_thread: int | None = None
    mirostat: int | None = None
    mirostat_tau: float | None = None
    mirostat_eta: float | None = None
    tfs_z: float | None = None
    typical_p: float | None = None
    presence_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    penalize_newline: bool | None = None
    numa: bool | None = None
    low_vram: bool | None = None
    f16_kv: bool | None = None
    use_mmap: bool | None = None
    use_mlock: bool | None = None
    vocab_only: bool | None = None
    logits_all: bool | None = None
    embedding_only: bool | None = None

    def request_keywords(self, n_ctx: int) -> dict[str, Any]:
        """The keywords of `Defaults.request` (None: the bundle's default)."""
        penalty, last_n = self.repeat_penalty, self.repeat_last_n
        presence, frequency = self.presence_penalty, self.frequency_penalty
        if last_n == 0:  # Ollama's "no penalty window": no penalty at all
            penalty, last_n, presence, frequency = 1.0, None, 0.0, 0.0
        elif last_n == -1:
            last_n = n_ctx
        predict = self.num_predict
        return {"max_tokens": None if predict is None else (predict if predict > 0 else -1),
                "stop": self.stop, "temperature": self.temperature, "top_p": self.top_p,
                "top_k": self.top_k, "min_p": self.min_p, "repeat_penalty": penalty,
                "repeat_last_n": last_n, "presence_penalty": presence,
                "frequency_penalty": frequency,
                "seed": None if self.seed is None or self.seed < 0 else self.seed}


class Generation(Request):
    model: str | None = None
    stream: bool | None = None  # Ollama streams unless told not to
    format: str | dict[str, Any] | None = None
    options: Options | None = None
    keep_alive: int | float | str | None = None
    think: bool | str | None = None

    @field_validator("format")
    @classmethod
    def _known_format(cls, value: Any) -> Any:
        if isinstance(value, str) and value not in ("", "json"):
            raise ValueError('expected "json" or a JSON schema object')
        return value

    @property
    def unloads(self) -> bool:
        """keep_alive 0: Ollama unloads the model after this request."""
        return self.keep_alive in (0, "0", "0s", "0m")

    def keywords(self, n_ctx: int) -> dict[str, Any]:
        schema = {} if self.format == "json" else (self.format or None)
        options = self.options or Options()
        return options.request_keywords(n_ctx) | {"json_schema": schema}


def _no_images(images: list[str] | None, where: str) -> None:
    if images:
        raise RequestError(f"{where}: this model reads text only; send no images",
                           param="images")


class CalledFunction(Request):
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)  # an object, not JSON text


class MessageToolCall(Request):
    id: str = ""  # Ollama sends none; results then pair with calls by order
    function: CalledFunction


class Message(Request):
    role: Literal["system", "user", "assistant", "tool"]
    content: str | None = None
    images: list[str] | None = None
    thinking: str | None = None
    tool_calls: list[MessageToolCall] | None = None  # an assistant's past calls
    tool_name: str | None = None  # a tool result: which tool answered
    tool_call_id: str | None = None  # LangChain's ChatOllama sends it

    def chat_message(self) -> ChatMessage:
        calls = tuple(ToolCall(c.id, c.function.name, json.dumps(c.function.arguments))
                      for c in self.tool_calls or ())
        tool = self.role == "tool"
        return ChatMessage(self.role, self.content or "",
                           tool_calls=calls if self.role == "assistant" else (),
                           tool_call_id=self.tool_call_id if tool else None,
                           name=self.tool_name if tool else None)


class ChatRequest(Generation):
    messages: list[Message] | None = None
    tools: list[dict[str, Any]] | None = None  # OpenAI's shape; checked by tools_from_openai
    knowledge: bool = True  # ours, as on /v1/chat/completions: false skips retrieval

    def chat(self) -> list[ChatMessage]:
        for i, message in enumerate(self.messages or ()):
            _no_images(message.images, f"messages[{i}].images")
        return [m.chat_message() for m in self.messages or ()]

    def tool_fields(self) -> dict[str, Any]:
        """Ollama has no tool_choice: the model calls tools when it decides to (auto)."""
        return {"tools": tools_from_openai(self.tools or None), "knowledge": self.knowledge}


class GenerateRequest(Generation):
    prompt: str | None = None
    system: str | None = None
    suffix: str | None = None
    raw: bool = False
    images: list[str] | None = None
    template: str | None = None
    context: list[int] | None = None

    def generation(self) -> dict[str, Any]:
        """`prompt`, `messages` or `infill` for `Defaults.request`."""
        _no_images(self.images, "images")
        if self.suffix:  # fill-in-the-middle, in the model's FIM tokens (raw or not)
            return {"infill": Infill(self.prompt or "", self.suffix)}
        if self.raw:
            return {"prompt": self.prompt}
        system = [ChatMessage("system", self.system)] if self.system else []
        return {"messages": [*system, ChatMessage("user", self.prompt or "")]}


class EmbedRequest(Request):
    model: str | None = None
    input: str | list[str] = Field(default_factory=list, max_length=256)
    truncate: bool = True
    dimensions: int | None = Field(default=None, ge=1)
    options: Options | None = None
    keep_alive: int | float | str | None = None

    def inputs(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)


class LegacyEmbeddingRequest(Request):
    model: str | None = None
    prompt: str = ""
    options: Options | None = None
    keep_alive: int | float | str | None = None


class ShowRequest(Request):
    model: str | None = None
    name: str | None = None  # the old spelling, still sent by Continue
    verbose: bool = False
