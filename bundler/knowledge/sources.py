"""Which files are documents, and reading one into a Document whatever its format."""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

from bundler.knowledge.decode import decode_text
from bundler.knowledge.document import Block, Document, Skipped, Source
from bundler.knowledge.docxfile import read_docx
from bundler.knowledge.htmlfile import read_html
from bundler.knowledge.pdffile import read_pdf
from bundler.knowledge.textfile import read_markdown, read_plain
from runtime.errors import DocumentError

log = logging.getLogger(__name__)

EXTENSIONS = (".txt", ".md", ".markdown", ".html", ".htm", ".pdf", ".docx")
# Past this a file is more likely a data dump than a document someone wants cited.
MAX_BYTES = 256 * 1024 * 1024


def find_documents(paths: list[Path]) -> tuple[list[Source], list[Skipped]]:
    """The documents under files and folders (recursive, sorted, hidden ones left out), and the
    files left out with why. A file reached twice, or with another's bytes, counts once."""
    found: list[tuple[Source, Path]] = []  # each with the folder or file it was found under
    skipped: list[Skipped] = []
    seen: dict[str, Path] = {}  # content hash -> first path with it
    for root in paths:
        for path, relpath in _walk(root, skipped):
            reason = _unwanted(path)
            if reason is None:
                digest = _digest(path)
                if digest in seen:
                    reason = f"same content as {seen[digest]}"
                else:
                    seen[digest] = path
            if reason is None:
                found.append((Source(path, relpath), root))
            else:
                skipped.append(Skipped(path, reason))
    return _named_apart(found), skipped


def _named_apart(found: list[tuple[Source, Path]]) -> list[Source]:
    """Sources whose names (how citations name them, and the index's key) are unique: two
    folders given to one build may each hold a README.md; then each is named under its folder
    ("pkgA/README.md"), and a number tells apart what still collides."""
    count: dict[str, int] = {}
    for source, _ in found:
        count[source.relpath] = count.get(source.relpath, 0) + 1
    used: set[str] = set()
    out = []
    for source, root in found:
        name = source.relpath
        if count[name] > 1:
            name = f"{root.resolve().name}/{name}" if root.is_dir() else name  # "." too
        unique, n = name, 1
        while unique in used:
            n += 1
            unique = f"{name} ({n})"
        used.add(unique)
        out.append(Source(source.path, unique))
    return out


def _walk(root: Path, skipped: list[Skipped]) -> list[tuple[Path, str]]:
    if not root.exists():
        skipped.append(Skipped(root, "no such file or folder"))
        return []
    if not root.is_dir():
        return [(root, root.name)]
    files: list[tuple[Path, str]] = []
    visited: set[Path] = set()  # real paths of folders walked: a symlink loop ends here

    def walk(folder: Path) -> None:
        real = folder.resolve()
        if real in visited:
            skipped.append(Skipped(folder, "folder already read (symlink loop?)"))
            return
        visited.add(real)
        try:
            entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
        except OSError as exc:
            skipped.append(Skipped(folder, f"cannot list the folder ({exc.strerror})"))
            return
        pages = {Path(e.name).stem for e in entries if e.name.lower().endswith((".html", ".htm"))}
        for entry in entries:
            if entry.name.startswith("."):
                continue
            path = Path(entry.path)
            if entry.is_dir() and entry.name.endswith("_files") and entry.name[:-6] in pages:
                # A browser's "Web page, complete" save: the page's images, scripts, ads and
                # chat widgets, not documents.
                skipped.append(Skipped(path, f"the files of the saved page {entry.name[:-6]}"))
            elif entry.is_dir():
                walk(path)
            else:
                files.append((path, path.relative_to(root).as_posix()))

    walk(root)
    return files


def _unwanted(path: Path) -> str | None:
    if path.suffix.lower() not in EXTENSIONS:
        return f"not a supported document type ({path.suffix or 'no extension'})"
    if path.exists() and not path.is_file():  # a pipe or a device would block the build
        return "not a regular file"
    try:
        size = path.stat().st_size
    except OSError as exc:
        return f"cannot read it ({exc.strerror})"
    if size > MAX_BYTES:
        return f"too large ({size / 2**20:.0f} MiB; at most {MAX_BYTES // 2**20} MiB)"
    return None


def _digest(path: Path) -> str:
    digest = hashlib.sha256()
    try:
        with path.open("rb") as file:
            while chunk := file.read(1 << 20):
                digest.update(chunk)
    except OSError:
        return f"unreadable:{path}"  # read_document names the problem
    return digest.hexdigest()


def read_document(source: Source) -> Document:
    """Reads a document; DocumentError (one line, naming the file) when it cannot be used."""
    name = source.relpath
    suffix = source.path.suffix.lower()
    try:
        if suffix == ".pdf":
            title, blocks = read_pdf(source.path, name)
        elif suffix == ".docx":
            title, blocks = read_docx(source.path, name)
        else:
            title, blocks = _read_text(source.path, name, suffix)
    except OSError as exc:
        raise DocumentError(f"{name}: cannot read it ({exc.strerror or exc})") from None
    blocks = [b for b in (_visible(block) for block in blocks) if b.text.strip()]
    if not blocks:
        raise DocumentError(f"{name}: no text in it (empty document)")
    log.debug("%s: %d blocks", name, len(blocks))
    headed = next((block.headings[0] for block in blocks if block.headings), None)
    if suffix in (".html", ".htm"):  # the page's first top-level heading, else its <title>
        return Document(name, title or headed or source.path.name, blocks)
    return Document(name, headed or title or source.path.name, blocks)


# Characters nobody sees that split a word for search: zero-width spaces and joiners, a BOM
# in mid-text, soft hyphens ("li\u200bcense" was not found by "license").
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"))


def _visible(block: Block) -> Block:
    return Block(block.text.translate(_INVISIBLE),
                 tuple(h.translate(_INVISIBLE) for h in block.headings), block.page)


def _read_text(path: Path, name: str, suffix: str) -> tuple[str | None, list[Block]]:
    data = path.read_bytes()
    if not data.strip():
        raise DocumentError(f"{name}: empty file")
    text = decode_text(data, name).replace("\r\n", "\n").replace("\r", "\n")  # old Macs: CR
    if suffix in (".html", ".htm"):
        return read_html(text)
    if suffix in (".md", ".markdown"):
        return None, read_markdown(text)
    return None, read_plain(text)
