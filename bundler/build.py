"""`llamabundle build`: runtime + weights + manifest, streamed into one executable file."""

from __future__ import annotations

import copy
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, BinaryIO

from bundler import targets
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
from runtime.errors import BuildError, TemplateError
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
    # Which OS the artifact runs on: "linux" (NAME.llamabundle) and/or "windows" (NAME.exe);
    # with several, -o's stem names each (bundler/targets.py).
    os: tuple[str, ...] = ("linux",)


@dataclass
class BuildResult:
    path: Path
    size: int
    seconds: float
    manifest: Manifest
    knowledge: KnowledgeBuild | None = None
    os: str = "linux"
    # Files written beside the artifact (a Windows build's weights past 4 GiB), and why.
    beside: list[Path] = field(default_factory=list)
    note: str = ""


def build(options: BuildOptions, progress: ProgressFactory | None = None) -> BuildResult:
    """One artifact (options.os names one OS): see build_all."""
    if len(options.os) != 1:
        raise BuildError("build() writes one artifact; build_all() writes one per OS")
    return build_all(options, progress)[0]


def build_all(options: BuildOptions,
              progress: ProgressFactory | None = None) -> list[BuildResult]:
    """Validates the model, indexes the knowledge (if any, once for every OS), then writes
    one artifact per OS in options.os, each atomically; returns what was written. Nothing is
    written when a step before the writing fails.

    `progress(total, label)` returns a callback taking the items done since its last call.
    """
    started = time.monotonic()
    source = resolve_model(str(options.model))
    for note in source.notes:
        log.warning("%s: %s", source.display, note)
    file_name = source.model_id.replace("/", "-").replace(":", "-")
    outputs = targets.outputs(options.os, options.output, Path.cwd() / file_name)
    for output in outputs.values():
        check_output(output, options.force)
    runtimes = {os_name: ensure_runtime(os_name) for os_name in outputs}
    for os_name, output in outputs.items():  # before anything is written
        beside = targets.weights_beside(os_name, output,
                                        runtimes[os_name].path.stat().st_size + source.size)
        if beside is not None:
            check_output(beside, options.force)
    manifest = _manifest(source, options)  # once: its warnings are said once
    knowledge = (build_knowledge(_with_starters(options.knowledge, source, manifest), progress)
                 if options.knowledge else None)
    return [_write_one(os_name, output, runtimes[os_name], source, copy.deepcopy(manifest),
                       options, knowledge, progress, started)
            for os_name, output in outputs.items()]


def _write_one(os_name: str, output: Path, runtime: Runtime, source: ModelSource,
               manifest: Manifest, options: BuildOptions, knowledge: KnowledgeBuild | None,
               progress: ProgressFactory | None, started: float) -> BuildResult:
    manifest.runtime_key = runtime.key
    manifest.knowledge = knowledge.info if knowledge else None
    if knowledge and not manifest.starters:  # the builder's --starter lines win
        manifest.starters = knowledge.starters
    beside = targets.weights_beside(os_name, output, runtime.path.stat().st_size
                                    + source.size + _knowledge_size(knowledge))
    advance = progress(source.size, "Writing") if progress else (lambda n: None)
    result = BuildResult(output, 0, 0.0, manifest, knowledge, os_name)
    if beside is None:
        write_atomically(output, lambda f: _write(f, runtime, source, manifest, advance,
                                                  knowledge))
    else:  # the weights first: an .exe is never left pointing at nothing
        check_output(beside, options.force)
        digest: list[str] = []
        write_atomically(beside, lambda f: digest.append(_weights(f, source, advance)))
        weights = Section("weights", 1, 0, source.size, digest[0], file=beside.name)
        try:
            write_atomically(output, lambda f: _write(f, runtime, source, manifest, advance,
                                                      knowledge, weights))
        except BaseException:
            beside.unlink(missing_ok=True)
            raise
        result.beside = [beside]
        result.note = targets.BESIDE_NOTE.format(exe=output.name, weights=beside.name)
    return replace(result, size=output.stat().st_size, seconds=time.monotonic() - started)


def _knowledge_size(knowledge: KnowledgeBuild | None) -> int:
    if knowledge is None:
        return 0
    return knowledge.embedder.stat().st_size + len(knowledge.section)


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
           advance: Progress, knowledge: KnowledgeBuild | None = None,
           weights: Section | None = None) -> None:
    """The artifact; `weights`: a section already written beside it (not copied in)."""
    head, archive = runtime_parts(runtime)
    f.write(head)
    if weights is None:
        f.write(bytes(align(f.tell()) - f.tell()))
        offset = f.tell()
        weights = Section("weights", 1, offset, model.size, _weights(f, model, advance))
    manifest.sections = [weights]
    if knowledge is not None:
        manifest.sections += _knowledge_sections(f, knowledge)
    write_tail(f, manifest, archive)


def _weights(f: BinaryIO, model: ModelSource, advance: Progress) -> str:
    """Writes the GGUF at f's position; returns its checksum."""
    if len(model.parts) > 1:  # a split GGUF becomes one GGUF section, as gguf-split merges
        return write_merged(plan_merge(model.parts), f, advance)
    return _copy_hashing(model.parts[0], f, advance)


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
