"""Chat templates rendered as Hugging Face's transformers renders them.

Sandboxed Jinja with trim_blocks and lstrip_blocks, loop controls, `raise_exception`,
`strftime_now`, a `tojson` that keeps non-ASCII text, and the `{% generation %}` tag some
templates use to mark training targets. A template's own errors (e.g. "roles must alternate")
become the caller's 400, not our 500.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

from runtime.chat.tools import Tool, prepare_messages
from runtime.errors import RequestError, TemplateError
from runtime.generation import ChatMessage


class ChatTemplate:
    def __init__(self, source: str, bos_token: str = "", eos_token: str = ""):
        try:
            self.template = _environment().from_string(source)
        except jinja2.TemplateSyntaxError as e:
            raise TemplateError(f"the chat template does not parse: {e.message} "
                                f"(line {e.lineno})") from None
        self.bos_token = bos_token
        self.eos_token = eos_token

    def render(self, messages: Sequence[ChatMessage], add_generation_prompt: bool = True,
               tools: Sequence[Tool] = (), family: str = "generic") -> str:
        """The prompt as text. BOS, when the template writes it, is written as the token's text
        (tokenized with special tokens on, it becomes the one BOS token).

        tools: given to the template as transformers gives them (`tools`, OpenAI's array), for
        templates of a family that knows them; `family` shapes past calls' ids for it."""
        extra = {"tools": [tool.to_openai() for tool in tools]} if tools else {}
        try:
            return self.template.render(
                messages=message_dicts(messages, family),
                add_generation_prompt=add_generation_prompt,
                bos_token=self.bos_token, eos_token=self.eos_token, **extra)
        except jinja2.TemplateError as e:  # raise_exception(), or a template bug for this chat
            raise RequestError(f"the chat template rejected these messages: {e}",
                               param="messages") from None


def message_dicts(messages: Sequence[ChatMessage], family: str) -> list[dict[str, Any]]:
    """The messages as templates read them: OpenAI's shape, then prepared (past calls'
    arguments as objects, results paired with calls) by prepare_messages."""
    out: list[dict[str, Any]] = []
    for m in messages:
        d: dict[str, Any] = {"role": m.role, "content": m.content}
        if m.tool_calls:
            d["tool_calls"] = [call.to_openai() for call in m.tool_calls]
        if m.tool_call_id is not None:
            d["tool_call_id"] = m.tool_call_id
        if m.name is not None:
            d["name"] = m.name
        out.append(d)
    return prepare_messages(out, family) if any(m.tool_calls or m.role == "tool"
                                                for m in messages) else out


def _environment() -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[jinja2.ext.loopcontrols, _GenerationTag])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_template_error
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env


class _GenerationTag(jinja2.ext.Extension):
    """`{% generation %}...{% endgeneration %}`: rendered as its contents."""

    tags = {"generation"}

    def parse(self, parser: Any) -> Any:
        parser.stream.skip(1)
        return parser.parse_statements(("name:endgeneration",), drop_needle=True)


def _tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None,
            separators: tuple[str, str] | None = None, sort_keys: bool = False) -> str:
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)


def _raise_template_error(message: str) -> None:
    raise jinja2.TemplateError(message)
