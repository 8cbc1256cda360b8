"""What `build MODEL` can take: a GGUF, the first part of a split GGUF, or `ollama:NAME[:TAG]`
from the local Ollama store. Each resolves to the GGUF file(s) to write into the artifact, plus
what the source says about running it (Ollama's system prompt and parameters)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bundler import ollama_store
from bundler.gguf_info import ModelInfo
from bundler.gguf_split import (
    MergePlan,
    find_parts,
    plan_merge,
    read_split_model,
    split_stem,
    write_merged,
)
from runtime.errors import InvalidModelError

__all__ = ["MergePlan", "ModelSource", "find_parts", "plan_merge", "resolve_model",
           "write_merged"]


@dataclass
class ModelSource:
    display: str  # how messages name the model: the path given, or ollama:NAME:TAG
    model_id: str  # the id clients see: the file stem (split suffix dropped) or NAME:TAG
    parts: list[Path]  # one GGUF, or a split model's parts in order (merge them: plan_merge)
    size: int  # bytes of the GGUF the artifact gets (merged size for a split model)
    system_prompt: str | None
    defaults: dict[str, Any]  # baked settings, by runtime/settings.py's names
    notes: list[str] = field(default_factory=list)  # one line per thing that did not carry over
    info: ModelInfo | None = None  # the whole model's metadata (all parts)


def resolve_model(spec: str) -> ModelSource:
    """Finds and checks the model `spec` names; raises InvalidModelError with one line."""
    if spec.startswith("ollama:"):
        return _from_ollama(spec)
    return _from_path(Path(spec), spec)


def _from_path(path: Path, display: str) -> ModelSource:
    headers, info = read_split_model(path)
    return ModelSource(display=display, model_id=split_stem(path),
                       parts=[h.path for h in headers], size=info.size, system_prompt=None,
                       defaults={}, notes=[], info=info)


def _from_ollama(spec: str) -> ModelSource:
    model = ollama_store.find_model(spec.removeprefix("ollama:"))
    try:
        source = _from_path(model.blob, f"ollama:{model.name}")
    except InvalidModelError as e:
        raise InvalidModelError(f"{spec}: the model blob is not a usable GGUF ({e})") from None
    if len(source.parts) > 1:  # a blob's name cannot name its other parts
        raise InvalidModelError(f"{spec}: the model blob is one part of a split GGUF")
    source.model_id = model.name
    source.system_prompt = model.system
    source.defaults = model.defaults
    source.notes = model.notes
    if model.has_template and source.info and not source.info.chat_template:
        source.notes.append("the GGUF carries no chat template, so a built-in fallback is used "
                            "(pass --chat-template to choose one)")
    return source

