"""Request bodies, validated by pydantic: a caller's mistake becomes a 400 naming the field.

Unknown fields are ignored, as OpenAI's clients send fields we have no use for."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MAX_TOKENS = 1 << 20


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ContentPart(_Request):
    type: Literal["text"]
    text: str


class Message(_Request):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[ContentPart] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.text for part in self.content)
        return self.content or ""


class StreamOptions(_Request):
    include_usage: bool = False


class Sampling(_Request):
    temperature: float | None = Field(None, ge=0, le=100)
    top_p: float | None = Field(None, ge=0, le=1)
    top_k: int | None = Field(None, ge=0, le=MAX_TOKENS)
    repeat_penalty: float | None = Field(None, ge=0, le=100)
    seed: int | None = Field(None, ge=-(1 << 63), le=(1 << 64) - 1)
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    model: str | None = None

    @field_validator("stop")
    @classmethod
    def _few_stops(cls, value: Any) -> Any:
        if isinstance(value, list) and len(value) > 16:
            raise ValueError("at most 16 stop sequences")
        return value


class ResponseFormat(_Request):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: dict[str, Any] | None = None  # OpenAI: {"name", "schema", "strict"}
    schema_: dict[str, Any] | None = Field(None, alias="schema")  # llama.cpp's shorthand


class Generation(Sampling):
    max_tokens: int | None = Field(None, ge=1, le=MAX_TOKENS)
    n: int = Field(1, ge=1, le=8)
    response_format: ResponseFormat | None = None

    @model_validator(mode="after")
    def _one_stream(self) -> Generation:
        if self.stream and self.n > 1:
            raise ValueError("n > 1 is only supported without stream")
        return self

    def engine_request(self) -> dict[str, Any]:
        fields = self.model_dump(exclude={"stream_options", "response_format", "n"})
        fields["json_schema"] = _schema(self.response_format)
        return fields


def _schema(fmt: ResponseFormat | None) -> dict[str, Any] | None:
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_object":
        return fmt.schema_ or {}
    schema = (fmt.json_schema or {}).get("schema", fmt.json_schema) or fmt.schema_
    if not isinstance(schema, dict):
        raise ValueError("json_schema.schema must be an object")
    return schema


class ChatRequest(Generation):
    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1, le=MAX_TOKENS)

    def engine_request(self) -> dict[str, Any]:
        """The plain dict the engine takes: messages flattened to text, one max_tokens."""
        fields = super().engine_request()
        del fields["messages"], fields["max_completion_tokens"]
        fields["max_tokens"] = self.max_completion_tokens or self.max_tokens
        fields["messages"] = [
            {"role": "system" if m.role == "developer" else m.role, "content": m.text()}
            for m in self.messages
        ]
        return fields


Prompt = str | list[str] | list[int]


class CompletionRequest(Generation):
    prompt: Prompt

    @field_validator("prompt")
    @classmethod
    def _one_prompt(cls, value: Any) -> Any:
        if isinstance(value, list) and value and isinstance(value[0], str):
            if len(value) != 1:
                raise ValueError("send one prompt per request")
            return value[0]
        if value == "" or value == []:
            raise ValueError("prompt is empty")
        return value


class NativeCompletionRequest(Sampling):
    """llama.cpp's /completion (LangChain's Llamafile client posts here)."""

    prompt: str | list[int]
    n_predict: int | None = Field(None, ge=-1, le=MAX_TOKENS)
    json_schema: dict[str, Any] | None = None

    def engine_request(self) -> dict[str, Any]:
        fields = self.model_dump(exclude={"stream_options", "n_predict"})
        fields["max_tokens"] = None if self.n_predict is None else max(self.n_predict, 0)
        return fields


class EmbeddingRequest(_Request):
    input: str | list[str] | list[int] | list[list[int]]
    model: str | None = None
    encoding_format: Literal["float", "base64"] = "float"

    @field_validator("input")
    @classmethod
    def _bounded(cls, value: Any) -> Any:
        if isinstance(value, list) and not 1 <= len(value) <= 256:
            raise ValueError("input must hold 1 to 256 items")
        return value

    def inputs(self) -> list[str | list[int]]:
        """One entry per vector to return: a text or a list of token ids."""
        if isinstance(self.input, str) or isinstance(self.input[0], int):
            return [self.input]  # type: ignore[list-item]
        return list(self.input)  # type: ignore[arg-type]


class NativeEmbeddingRequest(_Request):
    content: str


class TokenizeRequest(_Request):
    content: str
    add_special: bool = False
    with_pieces: bool = False


class DetokenizeRequest(_Request):
    tokens: list[int] = Field(max_length=1 << 20)
