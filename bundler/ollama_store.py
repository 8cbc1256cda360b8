"""Reads a model out of the local Ollama store, laid out as Ollama lays it out:

    $OLLAMA_MODELS (or ~/.ollama/models)/
      manifests/<host>/<namespace>/<name>/<tag>   JSON, schemaVersion 2: config + layers
      blobs/sha256-<hex>                          each layer, named by its digest

A name is `[host/][namespace/]name[:tag]`, by default registry.ollama.ai, library and latest.
The layers: the GGUF (.model), Ollama's Go template (.template), the system prompt (.system),
the parameters as JSON (.params), the license, and LoRA adapters / vision projectors.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runtime.errors import InvalidModelError, SettingsError
from runtime.settings import BY_NAME

HOST, NAMESPACE, TAG = "registry.ollama.ai", "library", "latest"
MEDIA = "application/vnd.ollama.image."
# Ollama's parameter -> our setting of the same meaning (runtime/settings.py)
PARAMS = {"temperature": "temp", "top_p": "top_p", "top_k": "top_k",
          "repeat_penalty": "repeat_penalty", "num_ctx": "ctx_size", "num_predict": "n_predict",
          "num_thread": "threads"}
SHOWN = 12  # models listed in a "not in the store" message


@dataclass
class OllamaModel:
    name: str  # as `ollama list` shows it: qwen2.5:1.5b, user/name:tag, host/ns/name:tag
    blob: Path  # the GGUF
    system: str | None = None
    has_template: bool = False
    defaults: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def store() -> Path:
    env = os.environ.get("OLLAMA_MODELS")
    return Path(env) if env else Path.home() / ".ollama" / "models"


def parse_name(text: str) -> tuple[str, str, str, str]:
    """(host, namespace, name, tag) of `[host/][namespace/]name[:tag]`."""
    *path, last = text.split("/")
    name, _, tag = last.partition(":")  # a host may carry :port, so only the last part's ':'
    if len(path) > 2 or not name or any(not p for p in path) or ":" in tag:
        raise InvalidModelError(f"ollama:{text}: not an Ollama model name "
                                "([host/][namespace/]name[:tag])")
    host, namespace = [HOST, *path] if len(path) == 1 else path or [HOST, NAMESPACE]
    return host, namespace, name, tag or TAG


def short_name(host: str, namespace: str, name: str, tag: str) -> str:
    """The shortest form Ollama shows: defaults left out."""
    if host != HOST:
        return f"{host}/{namespace}/{name}:{tag}"
    if namespace != NAMESPACE:
        return f"{namespace}/{name}:{tag}"
    return f"{name}:{tag}"


def find_model(text: str) -> OllamaModel:
    """Reads the manifest of `text` from the store; one-line InvalidModelError otherwise."""
    root = store()
    host, namespace, name, tag = parse_name(text)
    spec = f"ollama:{text}"
    if not (root / "manifests").is_dir():
        raise InvalidModelError(f"{spec}: no Ollama store at {root} (set OLLAMA_MODELS to "
                                "where `ollama pull` puts models)")
    model_dir = root / "manifests" / host / namespace / name
    manifest = model_dir / tag
    if not manifest.is_file():
        if model_dir.is_dir():
            tags = sorted(p.name for p in model_dir.iterdir() if p.is_file())
            raise InvalidModelError(f"{spec}: no tag {tag!r} in the Ollama store at {root} "
                                    f"({name} has: {', '.join(tags) or 'none'})")
        raise InvalidModelError(f"{spec}: not in the Ollama store at {root} "
                                f"(it has: {_available(root)})")
    model = OllamaModel(short_name(host, namespace, name, tag), Path())
    _read_layers(spec, root, _manifest(spec, manifest), model)
    return model


def _available(root: Path) -> str:
    names = sorted(short_name(*p.relative_to(root / "manifests").parts)
                   for p in (root / "manifests").glob("*/*/*/*") if p.is_file())
    if not names:
        return "no models"
    more = f", and {len(names) - SHOWN} more" if len(names) > SHOWN else ""
    return ", ".join(names[:SHOWN]) + more


def _manifest(spec: str, path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_bytes())
        if not isinstance(data, dict) or not isinstance(data.get("layers"), list):
            raise ValueError("no layers")
        return data
    except (OSError, ValueError) as e:
        raise InvalidModelError(f"{spec}: unreadable Ollama manifest {path} ({e})") from None


def _blob(spec: str, root: Path, layer: dict[str, Any]) -> Path:
    digest = str(layer.get("digest", ""))
    algorithm, _, hexdigest = digest.partition(":")
    path = root / "blobs" / f"{algorithm}-{hexdigest}"
    if algorithm != "sha256" or not hexdigest.isalnum() or not path.is_file():
        raise InvalidModelError(f"{spec}: blob {digest or '(no digest)'} is missing from the "
                                f"store (run `ollama pull {spec.removeprefix('ollama:')}`)")
    # No sha256 over gigabytes here: the build's own checksum covers what it copies.
    if isinstance(layer.get("size"), int) and path.stat().st_size != layer["size"]:
        raise InvalidModelError(f"{spec}: blob {path.name} has {path.stat().st_size} bytes, "
                                f"its manifest says {layer['size']} (damaged; pull it again)")
    return path


def _read_layers(spec: str, root: Path, manifest: dict[str, Any], model: OllamaModel) -> None:
    models = []
    for layer in manifest["layers"]:
        kind = str(layer.get("mediaType", "")).removeprefix(MEDIA)
        if kind == "model":
            models.append(_blob(spec, root, layer))
        elif kind == "system":
            model.system = _blob(spec, root, layer).read_text(encoding="utf-8")
        elif kind == "params":
            _map_params(spec, _blob(spec, root, layer), model)
        elif kind == "template":
            model.has_template = True
            model.notes.append("Ollama's Go template is not used: the GGUF's own "
                               "tokenizer.chat_template is")
        elif kind == "adapter":
            raise InvalidModelError(f"{spec}: has a LoRA adapter layer, which llamabundle "
                                    "cannot bundle; build from the base model instead")
        elif kind == "projector":
            model.notes.append("the vision projector is not bundled: the artifact is text-only")
        elif kind == "license":
            model.notes.append("the license layer is not bundled: keep its terms with the "
                               "artifact (`ollama show --license`)")
        else:
            model.notes.append(f"layer {kind or '(no media type)'} is not used")
    if len(models) != 1:
        raise InvalidModelError(f"{spec}: manifest has {len(models)} model layers (expected 1)")
    model.blob = models[0]


def _map_params(spec: str, path: Path, model: OllamaModel) -> None:
    try:
        params = json.loads(path.read_bytes())
        if not isinstance(params, dict):
            raise ValueError("not an object")
    except (OSError, ValueError) as e:
        raise InvalidModelError(f"{spec}: unreadable params blob {path.name} ({e})") from None
    for key, value in params.items():
        ours = PARAMS.get(key)
        if ours is None:
            model.notes.append(f"parameter {key}={json.dumps(value)} has no llamabundle "
                               "setting" + (" (the chat template's end-of-turn token ends "
                                            "answers)" if key == "stop" else ""))
            continue
        try:
            model.defaults[ours] = BY_NAME[ours].check(value)
        except SettingsError as e:
            model.notes.append(f"parameter {key}={json.dumps(value)} not used ({e})")
