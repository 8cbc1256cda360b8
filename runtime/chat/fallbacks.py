"""Fallback chat templates for models whose GGUF carries none (the demo model is one).

The build tool picks one by the model's architecture and warns; `--chat-template` overrides it.
They are rendered as transformers renders chat templates (runtime/chat/template.py), with
trim_blocks and lstrip_blocks, so every newline that matters is written as an explicit {{ '\\n' }}.
"""

from __future__ import annotations

# Gemma's turn format; Gemma has no system role, so system text opens the first user turn.
GEMMA = (
    "{{ bos_token }}{% set ns = namespace(system='') %}"
    "{% for m in messages %}"
    "{% if m['role'] == 'system' %}{% set ns.system = ns.system + m['content'] + '\\n\\n' %}"
    "{% else %}"
    "<start_of_turn>{{ 'model' if m['role'] == 'assistant' else 'user' }}{{ '\\n' }}"
    "{% if m['role'] == 'user' %}{{ ns.system }}{% set ns.system = '' %}{% endif %}"
    "{{ m['content'] | trim }}<end_of_turn>{{ '\\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model{{ '\\n' }}{% endif %}"
)

CHATML = (
    "{% for m in messages %}"
    "<|im_start|>{{ m['role'] }}{{ '\\n' }}{{ m['content'] }}<|im_end|>{{ '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant{{ '\\n' }}{% endif %}"
)

# name -> (template, stop strings the model may print when the markers are not special tokens)
FALLBACKS: dict[str, tuple[str, list[str]]] = {
    "gemma": (GEMMA, ["<end_of_turn>"]),
    "chatml": (CHATML, ["<|im_end|>"]),
}


def fallback_for(architecture: str) -> str:
    """The fallback's name for a GGUF `general.architecture`."""
    return "gemma" if architecture.startswith("gemma") else "chatml"


def stop_strings(source: str) -> list[str]:
    """Extra stop strings for a manifest's chat_template_source ("fallback:<name>")."""
    kind, _, name = source.partition(":")
    return list(FALLBACKS[name][1]) if kind == "fallback" and name in FALLBACKS else []
