"""GBNF grammars that make llama.cpp write tool calls in a template family's own markup, with
each tool's arguments held to its JSON schema.

`required` or a named tool: strict from the first token, so the answer is a call. `auto`: the
same grammar, lazy: llama.cpp samples freely until a trigger pattern matches, then applies the
grammar from the match (from its first capturing group when it has one; llama-grammar.cpp,
llama_grammar_trigger_pattern::find), replaying the tokens already written. A pattern that
starts with ^ matches only at the start of the answer: llama.cpp keeps the text since the
start until the grammar triggers.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

from runtime.chat.tools import Tool
from runtime.errors import RequestError
from runtime.llama.grammar import json_gbnf

# Where a lazy grammar starts. llama.cpp replays the text from a pattern's first capturing group
# to the end of what was written (the whole last token), and a replayed text the grammar
# refuses makes it throw, which ends the process. So every pattern is ^...$ (llama.cpp then
# matches it against all the text so far) and admits only text the grammar admits too: the
# marker or the bare call's opening, then at most a valid start of `{"name":`. A token that
# runs past that matches nothing, the grammar never starts, and the parser reads the text.
WS = r"[ \t\n]{0,8}"  # the grammar's ws
# `{`, then any start of `"name": "` (the call's first key: the grammar puts it first)
OPENING = r'\{' + WS + r'(?:"(?:n(?:a(?:m(?:e(?:"' + WS + r'(?::' + WS + r'"?)?)?)?)?)?)?)?'
# the answer is a bare JSON call (some models, Qwen2.5-Coder among them, write that, fenced or
# not, even when their template asks for tags): the grammar applies from its `{"name"` (or the
# `[` of several calls)
_CALL_OPENED = r'\{' + WS + r'"name"' + WS + r'(?::' + WS + r'"?)?'
BARE_TRIGGER = r'^\s*(?:```(?:json)?\s*)?(' + _CALL_OPENED + r')$'
BARE_TRIGGER_PARALLEL = r'^\s*(?:```(?:json)?\s*)?((?:\[' + WS + r')?' + _CALL_OPENED + r')$'
MARKERS = {"hermes": "<tool_call>", "mistral": "[TOOL_CALLS]", "llama3": "<|python_tag|>"}
_RULE = re.compile(r"^([A-Za-z0-9-]+) ::= (.*)$")
_TOKEN = re.compile(r'"(?:\\.|[^"\\])*"|\[(?:\\.|[^\]\\])*\]|[A-Za-z0-9-]+|.', re.S)


@dataclass(frozen=True)
class ToolGrammar:
    gbnf: str  # root rule: "root"
    lazy: bool  # llama_sampler_init_grammar_lazy_patterns rather than _init_grammar
    trigger_patterns: list[str]  # regexes (std::regex ECMAScript), empty unless lazy


def literal(text: str) -> str:
    """A GBNF string literal matching `text` exactly."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + escaped.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t") + '"'


def schema_rules(schema: dict, prefix: str) -> tuple[str, list[str]]:
    """A JSON schema's grammar with every rule renamed under `prefix`, so several schemas
    (one per tool) live in one grammar; returns the renamed root and the rule lines."""
    try:
        gbnf = json_gbnf(schema)
    except Exception as exc:  # the converter raises bare ValueError/KeyError/... on odd schemas
        raise RequestError(f"tools: a parameters schema cannot be enforced ({exc})",
                           param="tools") from exc
    rules = [m.groups() for line in gbnf.splitlines() if (m := _RULE.match(line))]
    names = {name for name, _ in rules}

    def rename(body: str) -> str:
        # only bare words are references; string literals and [classes] stay as they are
        return "".join(prefix + t if t in names else t for t in _TOKEN.findall(body))

    return prefix + "root", [f"{prefix}{name} ::= {rename(body)}" for name, body in rules]


def _call_rules(tools: Sequence[Tool], args_key: str) -> list[str]:
    """`call ::= {"name": "<tool>", "<args_key>": <its schema>}`, one alternative per tool."""
    lines, alternatives = [], []
    for i, tool in enumerate(tools):
        root, rules = schema_rules(tool.parameters, f"t{i}-")
        lines += rules
        lines.append(f"call{i} ::= \"{{\" ws {literal(json.dumps('name'))} ws \":\" ws "
                     f"{literal(json.dumps(tool.name))} ws \",\" ws "
                     f"{literal(json.dumps(args_key))} ws \":\" ws {root} ws \"}}\"")
        alternatives.append(f"call{i}")
    lines.append("call ::= " + " | ".join(alternatives))
    lines.append('ws ::= [ \\t\\n]{0,8}')
    return lines


def _family_rule(family: str, parallel: bool) -> str:
    """`calls ::=` the family's markup around one call, or several when parallel."""
    if family == "hermes":
        one = '"<tool_call>" ws call ws "</tool_call>"'
        return f'calls ::= {one} ("\\n" {one})*' if parallel else f"calls ::= {one}"
    if family == "mistral":
        more = ' ("," ws call)*' if parallel else ""
        return f'calls ::= "[TOOL_CALLS]" ws "[" ws call{more} ws "]"'
    if family == "llama3":
        return 'calls ::= call ("\\n" call)*' if parallel else "calls ::= call"
    return "calls ::= " + _bare_rule(parallel)


def _bare_rule(parallel: bool) -> str:
    # an array only for several calls: the generic instruction asks for exactly this
    return 'call | "[" ws call ("," ws call)* ws "]"' if parallel else "call"


def marker_trigger(marker: str, bracket: bool = False) -> str:
    """The marker anywhere in the answer, then at most a valid start of the call (after
    Mistral's `[`)."""
    after = OPENING if not bracket else r"(?:\[" + WS + "(?:" + OPENING + ")?)?"
    return r"^[\s\S]*?(" + re.escape(marker) + WS + "(?:" + after + ")?)$"


def tool_grammar(tools: Sequence[Tool], family: str, choice: str,
                 parallel: bool = True) -> ToolGrammar | None:
    """The grammar for a request's tools and tool_choice ("auto", "none", "required" or a
    tool's name); None when nothing is to be enforced."""
    if choice == "none" or not tools:
        if choice not in ("none", "auto"):
            raise RequestError(f"tool_choice: {choice!r} needs tools", param="tool_choice")
        return None
    if choice not in ("auto", "required"):
        tools = [tool for tool in tools if tool.name == choice]
        if not tools:
            raise RequestError(f"tool_choice: no tool named {choice!r} in tools",
                               param="tool_choice")
    lines = _call_rules(tools, "parameters" if family == "llama3" else "arguments")
    lines.append(_family_rule(family, parallel))
    if choice != "auto":
        return ToolGrammar("\n".join(["root ::= calls", *lines]), False, [])
    # lazy: from the family's marker, or from a bare JSON call at the start of the answer
    bare = f'bare ::= ({_bare_rule(parallel)}) (ws "```")?'
    root = "root ::= calls | bare" if family != "generic" else "root ::= bare"
    if family == "llama3":  # Llama 3.1 may open a call with its python tag
        root += ' | "<|python_tag|>" ws calls'
    patterns = [BARE_TRIGGER_PARALLEL if parallel else BARE_TRIGGER]
    if family in MARKERS:
        patterns.insert(0, marker_trigger(MARKERS[family], family == "mistral"))
    return ToolGrammar("\n".join([root, *lines, bare]), True, patterns)
