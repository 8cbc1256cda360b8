"""What Ollama's clients read about the model: its name, /api/tags, /api/show and /api/ps.

Clients validate these shapes strictly (the `ollama` Python client's pydantic models, Zed's
serde structs), so every field they read is always present and of the right type."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from runtime.errors import ModelNotFoundError
from runtime.state import State

# The Ollama API version whose routes and fields this dialect serves. Some clients parse it as
# dotted integers and refuse old versions (structured outputs came in 0.5, `think` in 0.9).
OLLAMA_VERSION = "0.12.0"
# Ollama's "never unloads" (keep_alive -1) is Go's longest duration from now, about 292 years.
NEVER = timedelta(days=292 * 365)
# A chat template that writes a reasoning block: Ollama's "thinking" capability.
THINKING_MARKS = ("<think>", "enable_thinking", "reasoning_content")
# The FIM prompt as Ollama's code models write it (the tokens are the model's own, by role).
FIM_GO_TEMPLATE = "<|fim_prefix|>{{ .Prompt }}<|fim_suffix|>{{ .Suffix }}<|fim_middle|>"


def rfc3339(ns: int | None = None) -> str:
    """UTC time with nanoseconds, as Ollama writes `created_at`: 2023-08-04T19:22:45.499127Z."""
    ns = time.time_ns() if ns is None else ns
    seconds, fraction = divmod(ns, 1_000_000_000)
    stamp = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{fraction:09d}Z"


def parameter_size(parameters: int | None) -> str:
    """Ollama's way of writing a parameter count: "494.03M", "1.5B", "7B"."""
    if not parameters:
        return ""
    for unit, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if parameters >= scale:
            value = parameters / scale
            if unit == "B":
                return f"{value:.1f}".removesuffix(".0") + unit
            return f"{value:.2f}{unit}"
    return str(parameters)


class ModelInfo:
    """The one model this server has, described as Ollama describes a pulled model."""

    def __init__(self, state: State):
        self.state = state
        m = state.manifest
        # Ollama names carry a tag; a GGUF's stem has none, so it is listed as NAME:latest.
        self.name = m.model_id if ":" in m.model_id.rsplit("/", 1)[-1] else f"{m.model_id}:latest"
        weights = m.section("weights")
        self.size = weights.length
        self.digest = weights.checksum.partition(":")[2]
        path = state.artifact
        self.modified_ns = os.stat(path).st_mtime_ns if path else time.time_ns()

    def check(self, name: str | None) -> str:
        """The listed name, if `name` means this model (with or without `:latest`, any case,
        or not given at all: there is only one); else 404, as Ollama answers."""
        if name and self._full(name) != self.name.lower():
            raise ModelNotFoundError(f"model '{name}' not found")
        return self.name

    @staticmethod
    def _full(name: str) -> str:
        name = name.strip().lower()
        return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"

    @property
    def n_ctx(self) -> int:
        """The context this server runs with: what clients must fit their prompts into."""
        engine = self.state.engine
        if engine is not None:
            return engine.n_ctx
        return self.state.settings.ctx_size or self.state.manifest.context_length or 0

    def details(self) -> dict[str, Any]:
        m = self.state.manifest
        return {"parent_model": "", "format": "gguf", "family": m.architecture,
                "families": [m.architecture], "parameter_size": parameter_size(m.parameters),
                "quantization_level": m.quantization}

    def tag(self) -> dict[str, Any]:
        """One entry of /api/tags."""
        return {"name": self.name, "model": self.name, "modified_at": rfc3339(self.modified_ns),
                "size": self.size, "digest": self.digest, "details": self.details()}

    def running(self) -> list[dict[str, Any]]:
        """/api/ps's models: this one once loaded (it stays loaded while the server runs)."""
        if self.state.engine is None:
            return []
        expires = (datetime.now(UTC) + NEVER).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return [{"name": self.name, "model": self.name, "size": self.size,
                 "digest": self.digest, "details": self.details(), "expires_at": expires,
                 "size_vram": 0, "context_length": self.n_ctx}]

    def show(self) -> dict[str, Any]:
        """/api/show. `template` is the model's Jinja chat template (Ollama's are Go templates:
        a client can read it, not run it); with FIM tokens it is wrapped in the Go template
        lines Ollama's code models have, since Continue looks for `.Suffix` there."""
        return {"license": "", "modelfile": self.modelfile(), "parameters": self.parameters(),
                "template": self.template(), "system": self.state.settings.system_prompt,
                "details": self.details(), "model_info": self.model_info(),
                "capabilities": self.capabilities(), "modified_at": rfc3339(self.modified_ns)}

    def fills_in_middle(self) -> bool:
        """Known once the model is loaded (the vocabulary says); clients ask after /health."""
        engine = self.state.engine
        return engine is not None and engine.fills_in_middle

    def capabilities(self) -> list[str]:
        """Ollama's words: every chat can call tools here (templates that know none get the
        generic instruction); "insert" is fill-in-the-middle; "thinking" when the template
        writes a reasoning block."""
        template = self.state.manifest.chat_template
        thinking = any(mark in template for mark in THINKING_MARKS)
        return ["completion", "tools", *(["insert"] if self.fills_in_middle() else []),
                "embedding", *(["thinking"] if thinking else [])]

    def template(self) -> str:
        template = self.state.manifest.chat_template
        if not self.fills_in_middle():
            return template
        return (f"{{{{- if .Suffix }}}}{FIM_GO_TEMPLATE}{{{{- else }}}}{template}"
                "{{- end }}")

    def model_info(self) -> dict[str, Any]:
        """The GGUF keys clients read: Zed and Continue size their prompts by
        `<arch>.context_length`, so it is the context this server runs with, not the trained
        one (num_ctx cannot change it: the context is fixed at launch)."""
        m = self.state.manifest
        return {"general.architecture": m.architecture, "general.basename": m.name,
                "general.name": m.title, "general.parameter_count": m.parameters or 0,
                "general.file_type": m.quantization,
                f"{m.architecture}.context_length": self.n_ctx}

    def parameters(self) -> str:
        """The bundle's defaults as a Modelfile's PARAMETER lines (Continue reads num_ctx)."""
        s = self.state.settings
        values = {"num_ctx": self.n_ctx, "num_predict": s.n_predict, "temperature": s.temp,
                  "top_k": s.top_k, "top_p": s.top_p, "repeat_penalty": s.repeat_penalty}
        return "\n".join(f"{key:<30} {value}" for key, value in values.items())

    def modelfile(self) -> str:
        lines = ["# This artifact carries its own model and Jinja chat template; the text below",
                 "# describes it and cannot re-create it.", f"FROM {self.name}"]
        if self.state.settings.system_prompt:
            lines.append(f'SYSTEM """{self.state.settings.system_prompt}"""')
        lines += [f"PARAMETER {line}" for line in self.parameters().splitlines()]
        return "\n".join(lines) + "\n"
