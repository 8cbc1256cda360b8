"""Constrained output: JSON schemas as llama.cpp grammars (GBNF)."""

from __future__ import annotations

import json
from typing import Any

from runtime.errors import RequestError
from runtime.llama.bindings import JSON_GBNF, json_schema_to_gbnf


def schema_grammar(schema: dict[str, Any]) -> str:
    """The grammar for a JSON schema; {} means any JSON object (response_format json_object)."""
    if not schema:
        return JSON_GBNF
    try:
        return json_schema_to_gbnf(json.dumps(schema))
    except Exception as e:  # the converter raises assorted types for schemas it cannot map
        raise RequestError(f"response_format: unsupported JSON schema ({e})",
                           param="response_format") from None
