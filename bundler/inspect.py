"""`llamabundle inspect`: what a GGUF or an artifact holds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bundler.gguf_split import read_split_model
from bundler.runtime_package import runtime_key
from runtime.artifact.manifest import read_manifest_at
from runtime.errors import ArtifactError


def inspect_path(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as e:
        raise ArtifactError(f"{path}: cannot read ({e.strerror})") from None
    if magic == b"GGUF":
        headers, info = read_split_model(path)
        return {"kind": "gguf", "parts": len(headers), "name": info.name,
                "architecture": info.architecture, "parameters": info.parameters,
                "quantization": info.quantization,
                "context_length": info.context_length,
                "chat_template": info.chat_template is not None, "size": info.size}
    manifest = read_manifest_at(str(path))
    # Whether `upgrade` would change the runtime: the key hashes everything frozen into it.
    current = manifest.runtime_key == runtime_key()
    return {"kind": "artifact", **manifest.summary(), "runtime_current": current}
