"""Chat-level helpers shared by every API dialect: tool calling (tools, tool_grammar, tool_parse)."""
