"""Chat helpers every API dialect shares: tool calling (tools, tool_grammar, tool_parse)."""
