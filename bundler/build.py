"""`llamabundle build`: runtime + weights + manifest, streamed into one executable file."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, BinaryIO

from bundler.gguf_split import copy_range
from bundler.knowledge.index import (
    KnowledgeBuild,
    KnowledgeOptions,
    StarterOptions,
    build_knowledge,
)
from bundler.knowledge.service import ChatModel
from bundler.model_source import ModelSource, plan_merge, resolve_model, write_merged
from bundler.runtime_package import Runtime, ensure_runtime
from bundler.writer import check_output, runtime_parts, write_atomically, write_tail
from runtime import __version__
from runtime.artifact.format import align, checksum_text, new_checksum
from runtime.artifact.manifest import Manifest, Section
from runtime.chat.fallbacks import FALLBACKS, fallback_for
from runtime.chat.template import ChatTemplate
from runtime.errors import TemplateError
from runtime.knowledge.format import EMBEDDER_SECTION
from runtime.knowledge.format import FORMAT_VERSION as KNOWLEDGE_FORMAT
from runtime.knowledge.format import SECTION as KNOWLEDGE_SECTION

log = logging.getLogger(__name__)

CHUNK = 64 * 1024 * 1024

Progress = Callable[[int], None]
# progress(total, label): a callback taking the items (bytes, files, chunks) done since last call
ProgressFactory = Callable[[int, str], Progress]


@dataclass
class BuildOptions:
    model: Path  # a GGUF, the first part of a split GGUF, or Path("ollama:NAME[:TAG]")
    output: Path | None = None
    force: bool = False
    name: str | None = None
    title: str | None = None
    chat_template: str | None = None  # template text (the CLI reads a PATH for you)
    defaults: dict[str, Any] | None = None  # baked run-time settings
    knowledge: KnowledgeOptions | None = None  # --knowledge: documents to bundle
    starters: tuple[str, ...] = ()  # example questions for the chat page


@dataclass
class BuildResult:
    path: Path
    size: int
    seconds: float
    manifest: Manifest
    knowledge: KnowledgeBuild | None = None


def build(options: BuildOptions, progress: ProgressFactory | None = None) -> BuildResult:
    """Validates the model, indexes the knowledge (if any), then writes the artifact
    atomically; returns what was written. Nothing is written when any step fails.

    `progress(total, label)` returns a callback taking the items done since its last call.
    """
    started = time.monotonic()
    source = resolve_model(str(options.model))
    for note in source.notes:
        log.warning("%s: %s", source.display, note)
    file_name = source.model_id.replace("/", "-").replace(":", "-")
    output = options.output or Path.cwd() / f"{file_name}.llamabundle"
    check_output(output, options.force)
    manifest = _manifest(source, options)
    knowledge = (build_knowledge(_with_starters(options.knowledge, source, manifest), progress)
                 if options.knowledge else None)
    runtime = ensure_runtime()
    manifest.runtime_key = runtime.key
    manifest.knowledge = knowledge.info if knowledge else None
    if knowledge and not manifest.starters:  # the builder's --starter lines win
        manifest.starters = knowledge.starters
    advance = progress(source.size, "Writing") if progress else (lambda n: None)
    write_atomically(output, lambda f: _write(f, runtime, source, manifest, advance, knowledge))
    return BuildResult(output, output.stat().st_size, time.monotonic() - started, manifest,
                       knowledge)


def _with_starters(knowledge: KnowledgeOptions, model: ModelSource,
                   manifest: Manifest) -> KnowledgeOptions:
    """The builder's --starter lines win; without them the knowledge build writes starters,
    with the chat model when it is an instruct model in one GGUF file."""
    if manifest.starters:
        return replace(knowledge, starters=None)
    if manifest.chat_template_source.startswith("fallback"):
        why = "the model has no chat template, so it is taken for a base model"
    elif len(model.parts) > 1:
        why = "the model is a split GGUF"
    else:
        return replace(knowledge, starters=StarterOptions(ChatModel(model.parts[0], manifest)))
    return replace(knowledge, starters=StarterOptions(None, why))


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
        starters=list(options.starters),
    )


def _defaults(model: ModelSource, options: BuildOptions) -> dict[str, Any]:
    """The baked settings: what the model's source says (Ollama's parameters and system
    prompt), overridden one by one by the builder's own flags."""
    defaults = dict(model.defaults)
    if model.system_prompt:
        defaults["system_prompt"] = model.system_prompt
    return defaults | dict(options.defaults or {})


def _write(f: BinaryIO, runtime: Runtime, model: ModelSource, manifest: Manifest,
           advance: Progress, knowledge: KnowledgeBuild | None = None) -> None:
    head, archive = runtime_parts(runtime)
    f.write(head)
    f.write(bytes(align(f.tell()) - f.tell()))
    offset = f.tell()
    if len(model.parts) > 1:  # a split GGUF becomes one GGUF section, as gguf-split merges
        digest = write_merged(plan_merge(model.parts), f, advance)
    else:
        digest = _copy_hashing(model.parts[0], f, advance)
    manifest.sections = [Section("weights", 1, offset, model.size, digest)]
    if knowledge is not None:
        manifest.sections += _knowledge_sections(f, knowledge)
    write_tail(f, manifest, archive)


def _knowledge_sections(f: BinaryIO, knowledge: KnowledgeBuild) -> list[Section]:
    """The embedder's GGUF (mapped in place at run time, like the weights) and the index."""
    f.write(bytes(align(f.tell()) - f.tell()))
    offset = f.tell()
    digest = _copy_hashing(knowledge.embedder, f, lambda n: None)
    embedder = Section(EMBEDDER_SECTION, 1, offset, f.tell() - offset, digest)
    f.write(bytes(align(f.tell()) - f.tell()))
    offset = f.tell()
    f.write(knowledge.section)
    hashed = new_checksum()
    hashed.update(knowledge.section)
    index = Section(KNOWLEDGE_SECTION, KNOWLEDGE_FORMAT, offset, len(knowledge.section),
                    checksum_text(hashed))
    return [embedder, index]


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
