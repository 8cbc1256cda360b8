"""Tool calling, the parts every dialect and the engine share: the tool and call types, which
output family a chat template speaks, the messages as templates expect them, and the system
text for templates that know no tools. Grammars: tool_grammar.py; parsing: tool_parse.py."""

from __future__ import annotations

import copy
import hashlib
import json
import re
import secrets
import string
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from runtime.errors import RequestError

FAMILIES = ("hermes", "llama3", "mistral", "generic")
# What opens (and, for Hermes, closes) a call region in each family's output. One table for
# the parser (tool_parse.py), the lazy grammar's trigger (tool_grammar.py) and the engine's
# marker tokens, so a family's markup is written down once.
MARKERS: dict[str, tuple[str, ...]] = {
    "hermes": ("<tool_call>", "</tool_call>"), "mistral": ("[TOOL_CALLS]",),
    "llama3": ("<|python_tag|>",), "generic": ()}
CHOICES = ("auto", "none", "required")  # any other choice is a tool's name
_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
_ALNUM = string.ascii_letters + string.digits
EMPTY_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {}}


@dataclass(frozen=True)
class Tool:
    name: str
    description: str = ""
    parameters: dict[str, Any] = field(default_factory=lambda: dict(EMPTY_PARAMETERS))

    @classmethod
    def from_openai(cls, obj: object, where: str = "tools") -> Tool:
        """One OpenAI (or Ollama) tool, `{"type": "function", "function": {name, ...}}`."""
        if not isinstance(obj, dict) or obj.get("type", "function") != "function":
            raise RequestError(f"{where}: expected {{\"type\": \"function\", \"function\": "
                               "{...}}", param="tools")
        fn = obj.get("function")
        if not isinstance(fn, dict):
            raise RequestError(f"{where}.function: expected an object", param="tools")
        name = fn.get("name")
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise RequestError(f"{where}.function.name: expected 1 to 64 letters, digits, "
                               "'_', '-' or '.'", param="tools")
        description = fn.get("description") or ""
        if not isinstance(description, str):
            raise RequestError(f"{where}.function.description: expected a string",
                               param="tools")
        parameters = fn.get("parameters")
        if parameters is None:
            parameters = dict(EMPTY_PARAMETERS)
        if not isinstance(parameters, dict):
            raise RequestError(f"{where}.function.parameters: expected a JSON schema object",
                               param="tools")
        return cls(name, description, parameters)

    def to_openai(self) -> dict[str, Any]:
        return {"type": "function", "function": {
            "name": self.name, "description": self.description, "parameters": self.parameters}}


def tools_from_openai(objs: object) -> list[Tool]:
    """A request's `tools` array; names must be unique, since calls are told apart by name."""
    if objs is None:
        return []
    if not isinstance(objs, list):
        raise RequestError("tools: expected an array", param="tools")
    tools = [Tool.from_openai(obj, f"tools[{i}]") for i, obj in enumerate(objs)]
    names = [tool.name for tool in tools]
    for name in names:
        if names.count(name) > 1:
            raise RequestError(f"tools: the name {name!r} is used twice", param="tools")
    return tools


def tool_choice_from_openai(obj: object, tools: Sequence[Tool]) -> str:
    """OpenAI's `tool_choice` (a word or `{"type": "function", "function": {"name"}}`) as
    "auto", "none", "required" or the forced tool's name. The default is auto with tools."""
    if obj is None:
        return "auto" if tools else "none"
    if isinstance(obj, dict):
        fn = obj.get("function")
        name = fn.get("name") if isinstance(fn, dict) else None
        if not isinstance(name, str):
            raise RequestError("tool_choice: expected {\"type\": \"function\", \"function\": "
                               "{\"name\": ...}}", param="tool_choice")
        if name not in {tool.name for tool in tools}:
            raise RequestError(f"tool_choice: no tool named {name!r} in tools",
                               param="tool_choice")
        return name
    if obj in ("any",):  # LangChain's and Anthropic's word for required
        return "required"
    if obj not in CHOICES:
        raise RequestError("tool_choice: expected \"auto\", \"none\", \"required\" or a "
                           "function", param="tool_choice")
    if obj == "required" and not tools:
        raise RequestError("tool_choice: \"required\" needs tools", param="tool_choice")
    return str(obj)


@dataclass
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text, as OpenAI sends it; Ollama wants json.loads(arguments)

    def to_openai(self) -> dict[str, Any]:
        return {"id": self.id, "type": "function",
                "function": {"name": self.name, "arguments": self.arguments}}

    def arguments_object(self) -> dict[str, Any]:
        """The arguments as an object, as Ollama and Anthropic send them ({} if the text is
        not a JSON object, which the call grammar prevents)."""
        try:
            value = json.loads(self.arguments or "{}")
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}


def new_call_id(family: str) -> str:
    """Never empty (some clients break on ""); Mistral's templates refuse anything but exactly
    9 alphanumerics when the call comes back in the history."""
    if family == "mistral":
        return "".join(secrets.choice(_ALNUM) for _ in range(9))
    return "call_" + "".join(secrets.choice(_ALNUM) for _ in range(24))


def tool_family(template: str) -> str:
    """Which call markup a chat template teaches its model; "generic" when it renders no tools
    (or in a markup we do not parse), so the caller adds generic_instruction() itself."""
    if MARKERS["mistral"][0] in template:
        return "mistral"
    # Qwen3-Coder and GLM also say <tool_call> but put XML inside, not JSON
    if "<tool_call>" in template and "<function=" not in template \
            and "<arg_key>" not in template:
        return "hermes"
    if "<|python_tag|>" in template or ("<|start_header_id|>" in template
                                        and '"parameters"' in template):
        return "llama3"
    return "generic"


def _mistral_id(call_id: object) -> str:
    """A client's id (call_..., or none from Ollama) as the 9 alphanumerics Mistral's template
    demands; the same id maps to the same string, so results still meet their calls."""
    if isinstance(call_id, str) and len(call_id) == 9 and call_id.isalnum():
        return call_id
    digest = hashlib.sha256(str(call_id).encode()).digest()
    return "".join(_ALNUM[b % len(_ALNUM)] for b in digest[:9])


def _call_for_template(call: Any, family: str, i: int) -> Any:
    if not isinstance(call, dict):
        return call
    call = copy.deepcopy(call)
    call.setdefault("type", "function")
    if not call.get("id"):
        call["id"] = f"call_{i}"
    if family == "mistral":
        call["id"] = _mistral_id(call["id"])
    fn = call.get("function")
    if isinstance(fn, dict) and isinstance(fn.get("arguments"), str):
        # Qwen's template writes `arguments | tojson`: a string would come out double-encoded
        try:
            fn["arguments"] = json.loads(fn["arguments"] or "{}")
        except ValueError:
            pass  # not JSON: the template shows what the client sent
    return call


def prepare_messages(messages: Sequence[dict[str, Any]],
                     family: str = "generic") -> list[dict[str, Any]]:
    """The history as chat templates expect it: past calls' arguments as objects, null content
    as "", every tool result paired with a call id (Ollama sends none: results follow the
    calls in order), and ids in the family's form. The caller's dicts are not changed."""
    out: list[dict[str, Any]] = []
    pending: list[Any] = []  # ids of the last assistant's calls still awaiting results
    n_calls = 0
    for message in messages:
        m = dict(message)
        if m.get("content") is None:
            m["content"] = ""
        if m.get("role") == "assistant" and m.get("tool_calls"):
            calls = [_call_for_template(c, family, n_calls + i)
                     for i, c in enumerate(m["tool_calls"])]
            n_calls += len(calls)
            m["tool_calls"] = calls
            pending = [c.get("id") if isinstance(c, dict) else None for c in calls]
        elif m.get("role") == "tool":
            if not m.get("tool_call_id") and pending:
                m["tool_call_id"] = pending[0]
            elif family == "mistral" and m.get("tool_call_id"):
                m["tool_call_id"] = _mistral_id(m["tool_call_id"])
            if m.get("tool_call_id") in pending:
                pending.remove(m["tool_call_id"])
            if "name" not in m and m.get("tool_name"):  # Ollama's spelling
                m["name"] = m["tool_name"]
        out.append(m)
    return out


def generic_instruction(tools: Sequence[Tool], choice: str = "auto",
                        parallel: bool = False) -> str:
    """System text that teaches tools to a model whose template knows none; the answer format
    it asks for is what parse_tool_calls reads and tool_grammar(family="generic") enforces."""
    lines = ["You can call the following tools. Each is given as a JSON schema of its "
             "arguments.", ""]
    for tool in tools:
        lines.append(f"- {tool.name}: {tool.description}".rstrip(": "))
        lines.append(f"  arguments: {json.dumps(tool.parameters, ensure_ascii=False)}")
    lines.append("")
    lines.append('To call a tool, answer with only a JSON object {"name": <tool name>, '
                 '"arguments": {<argument name>: <value>, ...}} and nothing else.')
    if parallel:
        lines.append("To call several tools at once, answer with only a JSON array of "
                     "such objects.")
    if choice == "auto":
        lines.append("If no tool is needed, answer the user normally, in plain text.")
    elif choice == "required":
        lines.append("You must call a tool now.")
    elif choice != "none":
        lines.append(f"You must call the tool {choice} now.")
    return "\n".join(lines)
