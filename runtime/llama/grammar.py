"""Constrained output: JSON schemas as llama.cpp grammars (GBNF)."""

from __future__ import annotations

import json
from typing import Any

from runtime.errors import RequestError
from runtime.llama.bindings import JSON_GBNF, json_schema_to_gbnf

# llama-cpp-python's converter lets a string hold raw control characters (a newline, a tab),
# which JSON forbids: json.loads, and every client that parses a tool call's arguments,
# refuses them. Its own JSON_GBNF and llama.cpp's converter exclude them; so do we.
_LOOSE_CHAR = 'char ::= [^"\\\\] |'
_JSON_CHAR = 'char ::= [^"\\\\\\x7F\\x00-\\x1F] |'


def json_gbnf(schema: dict[str, Any]) -> str:
    """A JSON schema's grammar (root rule "root"); raises what the converter raises."""
    gbnf = json_schema_to_gbnf(json.dumps(schema))
    return "\n".join(_JSON_CHAR + line[len(_LOOSE_CHAR):] if line.startswith(_LOOSE_CHAR)
                     else line for line in gbnf.splitlines())


def schema_grammar(schema: dict[str, Any]) -> str:
    """The grammar for a JSON schema; {} means any JSON object (response_format json_object)."""
    if not schema:
        return JSON_GBNF
    try:
        return json_gbnf(schema)
    except Exception as e:  # the converter raises assorted types for schemas it cannot map
        raise RequestError(f"response_format: unsupported JSON schema ({e})",
                           param="response_format") from None
