"""The one type that describes an artifact, read back from any format this project has written.

Written as JSON at build time, read at run time, printed by `inspect` and `--info`. Each older
format has a migration that turns its JSON into the current one, so an artifact built by an
earlier llamabundle still runs, and `upgrade` can rewrap it.
"""

from __future__ import annotations

import json
import os
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, BinaryIO

from runtime.artifact.format import FOOTER, FORMAT_VERSION, MAX_MANIFEST, Footer, content_end
from runtime.errors import ArtifactError
from runtime.settings import shown_defaults


@dataclass
class Section:
    name: str  # "weights" (the GGUF); later "knowledge", ...
    version: int
    offset: int
    length: int
    checksum: str  # "<algorithm>:<hex>" of the section's bytes (see format.new_checksum)
    # The name of a file beside the artifact that holds the section at `offset` (a Windows
    # .exe's weights past 4 GiB), or "" when it is inside the artifact.
    file: str = ""


@dataclass
class Manifest:
    runtime_version: str
    name: str
    title: str
    model_id: str  # the id clients see on /v1/models: the GGUF file's stem
    architecture: str
    parameters: int | None
    quantization: str
    context_length: int | None
    gguf_chat_template: bool  # whether the GGUF itself carries tokenizer.chat_template
    chat_template: str  # the template the runtime uses (GGUF's, baked, or the fallback)
    chat_template_source: str  # "gguf", "baked" or "fallback:<name>"
    # Which frozen runtime the file carries (bundler/runtime_package.py's key: a hash of all
    # frozen into it); "" when not recorded (format 2 and older). `inspect` compares it with
    # the build tool's own to say whether `upgrade` would change anything.
    runtime_key: str = ""
    defaults: dict[str, Any] = field(default_factory=dict)  # baked run-time settings
    sections: list[Section] = field(default_factory=list)
    starters: list[str] = field(default_factory=list)  # example questions the page offers
    # What --knowledge bundled (None: nothing): documents, chunks, the embedder with its
    # checksum, the chunking parameters, the knowledge section's format version.
    knowledge: dict[str, Any] | None = None
    format: int = FORMAT_VERSION  # the format the file was written in

    def section(self, name: str) -> Section:
        for section in self.sections:
            if section.name == name:
                return section
        raise ArtifactError(f"artifact has no {name!r} section")

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=1, sort_keys=True, ensure_ascii=False).encode()

    @classmethod
    def from_json(cls, data: bytes, fmt: int = FORMAT_VERSION) -> Manifest:
        """The manifest of a format-`fmt` artifact, migrated to the current format."""
        raw = json.loads(data)
        if not isinstance(raw, dict):
            raise ValueError("the manifest is not a JSON object")
        for version in range(fmt, FORMAT_VERSION):
            raw = MIGRATIONS[version](raw)
        raw["format"] = fmt  # what the file says, for inspect; the fields are current now
        raw["sections"] = [Section(**s) for s in raw.get("sections", [])]
        return cls(**raw)

    def summary(self) -> dict[str, Any]:
        """What `inspect --json` and `--info` print: a baked API key only as set."""
        return asdict(self) | {"chat_template": None} | {
            "chat_template_length": len(self.chat_template),
            "defaults": shown_defaults(self.defaults)}


def _from_format_1(raw: dict[str, Any]) -> dict[str, Any]:
    """Format 1 kept each section's SHA-256 as "sha256": "<hex>". Its last builds (before the
    format number moved to 2) already wrote "checksum": "xxh3-128:<hex>"; those stay."""
    for section in raw.get("sections", []):
        if "sha256" in section or "checksum" not in section:
            section["checksum"] = "sha256:" + section.pop("sha256")
    return raw


def _from_format_2(raw: dict[str, Any]) -> dict[str, Any]:
    """Format 2 did not record which runtime the artifact carries."""
    raw.setdefault("runtime_key", "")
    return raw


def _from_format_3(raw: dict[str, Any]) -> dict[str, Any]:
    """Format 3 kept every section inside the artifact (Section.file's default)."""
    return raw


# MIGRATIONS[n] turns format n's manifest JSON into format n + 1's.
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {
    1: _from_format_1, 2: _from_format_2, 3: _from_format_3}
OLDEST_FORMAT = min(MIGRATIONS)


def read_manifest(f: BinaryIO, where: str) -> Manifest:
    """Reads and checks the footer and manifest of an open artifact."""
    size = content_end(f, f.seek(0, os.SEEK_END))
    if size < FOOTER.size:
        raise ArtifactError(f"{where}: not a llamabundle artifact (file too small)")
    f.seek(size - FOOTER.size)
    foot = Footer.unpack(f.read(FOOTER.size), where)
    if foot.format > FORMAT_VERSION:
        raise ArtifactError(f"{where}: artifact format {foot.format} is newer than this tool "
                            f"(supports {FORMAT_VERSION}); upgrade llamabundle")
    if foot.format < OLDEST_FORMAT:
        raise ArtifactError(f"{where}: artifact format {foot.format} is unknown (this tool reads "
                            f"{OLDEST_FORMAT} to {FORMAT_VERSION}); rebuild it from its GGUF")
    offset, length = foot.manifest_offset, foot.manifest_length
    if length > MAX_MANIFEST or offset + length > size - FOOTER.size:
        raise ArtifactError(f"{where}: corrupted artifact (manifest out of bounds)")
    f.seek(offset)
    data = f.read(length)
    if zlib.crc32(data) != foot.crc:
        raise ArtifactError(f"{where}: corrupted artifact (manifest checksum mismatch)")
    try:
        manifest = Manifest.from_json(data, foot.format)
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise ArtifactError(f"{where}: corrupted artifact (bad manifest: {e})") from None
    for section in manifest.sections:
        if section.file and os.path.basename(section.file) != section.file:
            raise ArtifactError(f"{where}: corrupted artifact (section file {section.file!r})")
        if not section.file and section.offset + section.length > offset:
            raise ArtifactError(f"{where}: corrupted artifact "
                                f"(section {section.name!r} out of bounds)")
    # Cheap, and it means llama.cpp is never handed something that is not a GGUF. (Weights
    # beside the artifact are checked where they are opened: locate.)
    weights = manifest.section("weights")
    if not weights.file:
        f.seek(weights.offset)
        if f.read(4) != b"GGUF":
            raise ArtifactError(f"{where}: corrupted artifact (no GGUF at the weights offset)")
    return manifest


def locate(artifact: str, section: Section) -> tuple[str, int]:
    """The file and offset a section's bytes are at: inside the artifact, or in the file the
    build wrote beside it, checked to be there, of the size the manifest says and, for the
    weights, a GGUF (its whole checksum: --verify)."""
    if not section.file:
        return artifact, section.offset
    path = os.path.join(os.path.dirname(os.path.abspath(artifact)), section.file)
    name = os.path.basename(artifact)
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            f.seek(section.offset)
            magic = f.read(4)
    except OSError:
        raise ArtifactError(f"{name} needs its {section.name} file {section.file} in the same "
                            f"folder ({os.path.dirname(path)}), and it is not there: put the "
                            f"two files side by side") from None
    if size != section.offset + section.length or (section.name == "weights"
                                                   and magic != b"GGUF"):
        raise ArtifactError(f"{section.file} beside {name} is not the one it was built with "
                            f"({size} bytes, expected {section.offset + section.length}); "
                            "get both files again")
    return path, section.offset


def read_manifest_at(path: str) -> Manifest:
    try:
        with open(path, "rb") as f:
            return read_manifest(f, path)
    except OSError as e:
        raise ArtifactError(f"{path}: cannot read ({e.strerror})") from None
