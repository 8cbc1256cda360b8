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

from bundler.gguf_split import copy_range
from bundler.model_source import ModelSource, plan_merge, resolve_model, write_merged
from bundler.runtime_package import Runtime, ensure_runtime
from runtime import __version__
from runtime.artifact.format import align, checksum_text, footer, new_checksum
from runtime.artifact.manifest import Manifest, Section
from runtime.chat.fallbacks import FALLBACKS, fallback_for
from runtime.chat.template import ChatTemplate
from runtime.errors import BuildError, TemplateError

log = logging.getLogger(__name__)

CHUNK = 64 * 1024 * 1024
ELF_SHOFF = 0x28  # e_shoff, then e_shentsize/e_shnum/e_shstrndx at 0x3A..0x3F

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
    _check_output(output, options.force)
    runtime = ensure_runtime()
    manifest = _manifest(source, options)
    advance = progress(source.size) if progress else (lambda n: None)
    _write_atomically(output, lambda f: _write(f, runtime, source, manifest, advance))
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


def _check_output(output: Path, force: bool) -> None:
    if output.is_dir():
        raise BuildError(f"{output}: is a directory; give a file path with -o")
    if output.exists() and not force:
        raise BuildError(f"{output}: already exists; use --force to overwrite it")
    if not output.parent.is_dir():
        raise BuildError(f"{output.parent}: no such directory")
    if not os.access(output.parent, os.W_OK):
        raise BuildError(f"{output.parent}: not writable")


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


def _write_atomically(output: Path, write: Callable[[BinaryIO], None]) -> None:
    # Written beside the output and renamed over it: a failed or interrupted build leaves no
    # partial file. No fsync, as `cp` does none: it cost more than the copy itself (0.14 s for
    # 250 MB), and what a power cut can leave, a truncated file, the artifact reports as such.
    tmp = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
        os.chmod(tmp, 0o755)
        os.replace(tmp, output)
    except OSError as e:
        raise BuildError(f"{output}: cannot write ({e.strerror})") from None
    finally:  # also on KeyboardInterrupt: an interrupted build leaves nothing
        tmp.unlink(missing_ok=True)


def _write(f: BinaryIO, runtime: Runtime, model: ModelSource, manifest: Manifest,
           advance: Progress) -> None:
    with open(runtime.path, "rb") as rt:
        head = bytearray(rt.read(runtime.archive_offset))
        archive = rt.read()
    # The archive moves to the end of the file, so the ELF section table it carries no longer
    # sits where the header says; clear those fields (the loader never uses sections).
    head[ELF_SHOFF:ELF_SHOFF + 8] = bytes(8)
    head[0x3C:0x40] = bytes(4)
    f.write(head)
    f.write(bytes(align(f.tell()) - f.tell()))
    offset = f.tell()
    if len(model.parts) > 1:  # a split GGUF becomes one GGUF section, as gguf-split merges
        digest = write_merged(plan_merge(model.parts), f, advance)
    else:
        digest = _copy_hashing(model.parts[0], f, advance)
    manifest.sections = [Section("weights", 1, offset, model.size, digest)]
    data = manifest.to_json()
    manifest_offset = f.tell()
    f.write(data)
    f.write(archive)
    f.write(footer(manifest_offset, data))


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
