"""The knowledge section's bytes: written by the build, read by the runtime (standard library only).

    [0, 16)   magic b"LLBKNOWL", format version (u32), codec (u32: 1 = zlib)
    [16, ..)  an SQLite database, compressed

The database holds the chunks (document, title, location, text), an FTS5 full-text index over
runtime/knowledge/terms.py's terms (contentless: the text is stored once, in `chunks`), the
int8 vectors as one blob (row i is chunk i + 1), from format 3 each chunk's hub score per
query script (`hubs`: one float32 per chunk, in chunk order), each chunk's place in its
document's reading order (`reading`: chunks are numbered script group by script group, so a
document in two languages is not in reading order by id; optional), and `meta`: everything the
runtime needs to search as the build did (dimensions, quantization scales, the script groups
with their calibrated relevance levels, the embedder's prefixes). SQLite rather than a format
of our own: FTS5 and bm25 come with the runtime's Python, and it is opened from memory
(`Connection.deserialize`, or a /dev/shm file unlinked once open where the runtime's SQLite lacks
it), never extracted to disk. The section is checksummed like every other
(runtime/artifact/format.py).
"""

from __future__ import annotations

import json
import os
import sqlite3
import struct
import tempfile
import zlib
from dataclasses import asdict, dataclass, field
from typing import Any

from runtime.artifact.format import new_checksum
from runtime.artifact.manifest import Section
from runtime.errors import ArtifactError

MAGIC = b"LLBKNOWL"
# 2: the calibrated threshold and floor are per script group; 3: and per the query's script,
# with each passage's hub score (the `hubs` table; runtime/knowledge/search.py)
FORMAT_VERSION = 3
READS = (1, 2, 3)  # an upgraded artifact keeps its section: formats 1 and 2 are read as they are
CODEC_ZLIB = 1
HEADER = struct.Struct("<8sII")
SECTION = "knowledge"  # the manifest's section names
EMBEDDER_SECTION = "embedder"

SCHEMA = """
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE documents(id INTEGER PRIMARY KEY, path TEXT NOT NULL, title TEXT NOT NULL);
CREATE TABLE chunks(id INTEGER PRIMARY KEY, document INTEGER NOT NULL REFERENCES documents,
                    location TEXT NOT NULL, text TEXT NOT NULL);
CREATE VIRTUAL TABLE fts USING fts5(terms, content='', tokenize='unicode61 remove_diacritics 0');
CREATE TABLE vectors(id INTEGER PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE hubs(script TEXT PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE reading(chunk INTEGER PRIMARY KEY, position INTEGER NOT NULL);
"""


@dataclass(frozen=True)
class Group:
    """Chunks [start, end) (ids) in one script group ("cjk" or "other"), their centroid (the
    mean of their float vectors, whose dot product with a query is the group's baseline), and
    the group's two calibrated levels of lift (bundler/knowledge/calibrate.py): unless one
    passage of some group reaches its `threshold`, nothing answers; a passage below its group's
    `floor` is never returned. `levels`, from format 3: the two levels for a query of each
    script ("cjk" or "other": {script: [threshold, floor]}), which take the place of the two
    above (kept for the report and for a query of a script not calibrated)."""

    name: str
    start: int
    end: int
    centroid: list[float]
    threshold: float = 0.0
    floor: float = 0.0
    levels: dict[str, list[float]] = field(default_factory=dict)

    def levels_for(self, script: str) -> tuple[float, float]:
        """(threshold, floor) for a query written in `script`."""
        threshold, floor = self.levels.get(script, (self.threshold, self.floor))
        return threshold, floor


@dataclass(frozen=True)
class IndexMeta:
    """How the index was built: what the runtime needs to search it the same way."""

    dims: int
    count: int  # chunks
    scales: list[float]  # per dimension: float value = int8 value * scale
    groups: list[dict[str, Any]]  # Group fields; chunks are stored group by group
    query_prefix: str  # e5 wants "query: " and "passage: "; "" for embedders without
    passage_prefix: str


def write_database(meta: IndexMeta, documents: list[tuple[str, str]],
                   chunks: list[tuple[int, str, str, str]], vectors: bytes) -> sqlite3.Connection:
    """A new in-memory database: documents (path, title), chunks (document index, location,
    text, full-text terms joined by spaces), the int8 vectors row after row."""
    db = sqlite3.connect(":memory:")
    db.executescript(SCHEMA)
    db.executemany("INSERT INTO meta VALUES (?, ?)",
                   [(k, json.dumps(v, ensure_ascii=False)) for k, v in asdict(meta).items()])
    db.executemany("INSERT INTO documents VALUES (?, ?, ?)",
                   [(i, path, title) for i, (path, title) in enumerate(documents)])
    db.executemany("INSERT INTO chunks VALUES (?, ?, ?, ?)",
                   [(i, doc, loc, text) for i, (doc, loc, text, _) in enumerate(chunks, 1)])
    db.executemany("INSERT INTO fts(rowid, terms) VALUES (?, ?)",
                   [(i, terms) for i, (_, _, _, terms) in enumerate(chunks, 1)])
    db.execute("INSERT INTO fts(fts) VALUES ('optimize')")  # one b-tree segment: smaller
    db.execute("INSERT INTO vectors VALUES (1, ?)", (vectors,))
    db.commit()
    return db


def pack(db: sqlite3.Connection) -> bytes:
    db.execute("VACUUM")
    return HEADER.pack(MAGIC, FORMAT_VERSION, CODEC_ZLIB) + zlib.compress(db.serialize(), 9)


def unpack(data: bytes | memoryview, where: str) -> sqlite3.Connection:
    """The section's database, in memory; ArtifactError if it is not one we read."""
    if len(data) < HEADER.size:
        raise ArtifactError(f"{where}: corrupted knowledge section (too short)")
    magic, version, codec = HEADER.unpack(data[:HEADER.size])
    if magic != MAGIC:
        raise ArtifactError(f"{where}: corrupted knowledge section (bad magic)")
    if version not in READS or codec != CODEC_ZLIB:
        readable = " or ".join(map(str, READS))
        raise ArtifactError(f"{where}: knowledge format {version} (codec {codec}) is not one "
                            f"this runtime reads ({readable}); rebuild the artifact")
    try:
        db = _open(zlib.decompress(data[HEADER.size:]))
        db.execute("SELECT count(*) FROM chunks").fetchone()
    except (zlib.error, sqlite3.Error) as e:
        raise ArtifactError(f"{where}: corrupted knowledge section ({e})") from None
    return db


def _open(raw: bytes) -> sqlite3.Connection:
    """A database image opened in memory. Used from any thread (one at a time: the caller
    locks), so not tied to the one that opens it."""
    if hasattr(sqlite3.Connection, "deserialize"):
        db = sqlite3.connect(":memory:", check_same_thread=False)
        db.deserialize(raw)
        return db
    # The runtime's SQLite (Debian 11's 3.34, for glibc 2.31) is built without
    # sqlite3_deserialize. The image goes into a file in /dev/shm (memory, not disk) that is
    # unlinked as soon as SQLite holds it open; only without /dev/shm, the temp dir. (An
    # anonymous memfd would be better, but SQLite resolves /proc/self/fd/N's link and fails.)
    shm = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    with tempfile.NamedTemporaryFile(dir=shm, prefix="llamabundle-knowledge-") as f:
        f.write(raw)
        f.flush()
        db = sqlite3.connect(f"file:{f.name}?mode=ro&immutable=1", uri=True,
                             check_same_thread=False)
        db.execute("SELECT count(*) FROM sqlite_master").fetchone()  # opened: now unlink it
    return db


def read_meta(db: sqlite3.Connection) -> IndexMeta:
    values: dict[str, Any] = {k: json.loads(v) for k, v in db.execute("SELECT * FROM meta")}
    if "threshold" in values:  # format 1: one threshold and floor for every group
        levels = {"threshold": values["threshold"], "floor": values.get("floor", 0.0)}
        values["groups"] = [levels | g for g in values.get("groups", [])]
    try:
        return IndexMeta(**{k: values[k] for k in IndexMeta.__dataclass_fields__})
    except KeyError as e:
        raise ArtifactError(f"corrupted knowledge section (no {e} in its meta)") from None


def read_section(artifact: str, section: Section) -> bytes:
    """A section's bytes, checked against its checksum (the index is small: hashing it costs
    about a millisecond, and a damaged index would otherwise fail in odd ways later)."""
    try:
        with open(artifact, "rb") as f:
            f.seek(section.offset)
            data = f.read(section.length)
    except OSError as e:
        raise ArtifactError(f"{artifact}: cannot read ({e.strerror})") from None
    algorithm, _, expected = section.checksum.partition(":")
    digest = new_checksum(algorithm)
    digest.update(data)
    if len(data) != section.length or digest.hexdigest() != expected:
        raise ArtifactError(f"{artifact}: the {section.name} section is corrupted (checksum "
                            "mismatch); get a fresh copy")
    return data
