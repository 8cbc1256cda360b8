"""`llamabundle build`: runtime + weights + manifest, streamed into one executable file."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from bundler.freeze import Runtime, ensure_runtime
from bundler.gguf_split import copy_range
from bundler.model_source import ModelSource, plan_merge, resolve_model, write_merged
from bundler.writer import check_output, runtime_parts, write_atomically, write_tail
from runtime import __version__
from runtime.artifact.format import align, checksum_text, new_checksum
from runtime.artifact.manifest import Manifest, Section
from runtime.chat.fallbacks import FALLBACKS, fallback_for
from runtime.chat.template import ChatTemplate
from runtime.errors import TemplateError

log = logging.getLogger(__name__)

CHUNK = 64 * 1024 * 1024

Progress = Callable[[int], None]


@dataclass
class BuildOptions:
    model: Path  # a GGUF, the first part of a split GGUF, or Path("ollama:NAME[:TAG]")
    output: Path | None = None
    force: bool = False
    name: str | None = None
    title: str | None = None
    chat_template: str | None = None  # template text (the CLI reads a PATH for you)
    defaults: dict[str, Any] | None = None  # baked run-time settings


@dataclass
class BuildResult:
    path: Path
    size: int
    seconds: float
    manifest: Manifest


def build(options: BuildOptions, progress: Callable[[int], Progress] | None = None) -> BuildResult:
    """Validates the model, then writes the artifact atomically; returns what was written.

    `progress(total)` returns a callback taking the bytes written since its last call.
    """
    started = time.monotonic()
    source = resolve_model(str(options.model))
    for note in source.notes:
        log.warning("%s: %s", source.display, note)
    file_name = source.model_id.replace("/", "-").replace(":", "-")
    output = options.output or Path.cwd() / f"{file_name}.llamabundle"
    check_output(output, options.force)
    runtime = ensure_runtime()
    manifest = _manifest(source, options)
    manifest.runtime_key = runtime.key
    advance = progress(source.size) if progress else (lambda n: None)
    write_atomically(output, lambda f: _write(f, runtime, source, manifest, advance))
    return BuildResult(output, output.stat().st_size, time.monotonic() - started, manifest)


def chat_template_text(value: str) -> str:
    """`--chat-template TEXT|PATH`: a file's contents, or the Jinja text itself; checked to
    parse either way, so a mistyped path is never baked in as a "template"."""
    path = Path(value)
    if "{{" not in value and "{%" not in value:
        try:
            value = path.read_text()
        except (OSError, UnicodeDecodeError) as e:
            reason = e.strerror if isinstance(e, OSError) else "not UTF-8 text"
            raise TemplateError(f"--chat-template: {value}: cannot read ({reason}); give a "
                                "template file or Jinja text with {{ }} or {% %}") from None
    ChatTemplate(value)  # raises TemplateError if it does not parse
    return value


def _manifest(model: ModelSource, options: BuildOptions) -> Manifest:
    info = model.info
    assert info is not None  # resolve_model always reads it
    if options.chat_template:
        template, source = options.chat_template, "baked"
    elif info.chat_template:
        template, source = info.chat_template, "gguf"
    else:
        fallback = fallback_for(info.architecture)
        template, source = FALLBACKS[fallback][0], f"fallback:{fallback}"
        log.warning("%s has no chat template; using the %r fallback (give --chat-template to "
                    "choose another)", model.display, fallback)
    name = options.name or info.name
    return Manifest(
        runtime_version=__version__, name=name, title=options.title or name,
        model_id=model.model_id, architecture=info.architecture, parameters=info.parameters,
        quantization=info.quantization, context_length=info.context_length,
        gguf_chat_template=info.chat_template is not None, chat_template=template,
        chat_template_source=source, defaults=_defaults(model, options),
    )


def _defaults(model: ModelSource, options: BuildOptions) -> dict[str, Any]:
    """The baked settings: what the model's source says (Ollama's parameters and system
    prompt), overridden one by one by the builder's own flags."""
    defaults = dict(model.defaults)
    if model.system_prompt:
        defaults["system_prompt"] = model.system_prompt
    return defaults | dict(options.defaults or {})


def _write(f: BinaryIO, runtime: Runtime, model: ModelSource, manifest: Manifest,
           advance: Progress) -> None:
    head, archive = runtime_parts(runtime)
    f.write(head)
    f.write(bytes(align(f.tell()) - f.tell()))
    offset = f.tell()
    if len(model.parts) > 1:  # a split GGUF becomes one GGUF section, as gguf-split merges
        digest = write_merged(plan_merge(model.parts), f, advance)
    else:
        digest = _copy_hashing(model.parts[0], f, advance)
    manifest.sections = [Section("weights", 1, offset, model.size, digest)]
    write_tail(f, manifest, archive)


def _copy_hashing(source: Path, out: BinaryIO, advance: Progress) -> str:
    """Copies source into out in the kernel (copy_file_range: no trip through Python, and a
    reflink where the filesystem has them) while a second thread hashes the source: the goal
    is a build about as fast as `cp`."""
    digest = new_checksum()
    hasher = threading.Thread(target=_hash_file, args=(source, digest), daemon=True)
    hasher.start()
    out.flush()
    try:
        with open(source, "rb") as src:
            copy_range(src, out, 0, os.fstat(src.fileno()).st_size, advance)
    finally:
        hasher.join()
    out.seek(0, os.SEEK_END)
    return checksum_text(digest)


def _hash_file(path: Path, digest: Any) -> None:
    buffer = memoryview(bytearray(CHUNK))
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buffer):
            digest.update(buffer[:n])
