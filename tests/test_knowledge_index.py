"""The knowledge section and its search, without llama.cpp: the format's round trip and its
damage reports, full text with CJK bigrams, vectors, fusion, and the calibrated gates."""

from __future__ import annotations

import math
import zlib

import pytest

from runtime.errors import ArtifactError
from runtime.knowledge.format import HEADER, MAGIC, IndexMeta, pack, unpack, write_database
from runtime.knowledge.search import Index
from runtime.knowledge.terms import terms

DIMS = 8


def _unit(*values: float) -> list[float]:
    v = list(values) + [0.0] * (DIMS - len(values))
    norm = math.sqrt(sum(x * x for x in v))
    return [x / norm for x in v]


# Three English passages and one Chinese, each near one axis of an 8-dimensional space.
PASSAGES = [
    ("router.md", "Reset", "Hold the reset button for ten seconds.", _unit(1, 0.1)),
    ("router.md", "LEDs", "A blinking amber light means the cable is unplugged.", _unit(0.1, 1)),
    ("leave.md", "", "Employees get 28 days of paid annual leave.", _unit(0, 0.1, 1)),
    ("zh/备份.md", "", "生产数据库每天凌晨两点进行全量备份。", _unit(0, 0, 0.1, 1)),
]


def _index(threshold: float = 0.05, floor: float = 0.0) -> Index:
    scales = [1 / 127] * DIMS
    rows = [(0 if doc == "router.md" else 1 if doc == "leave.md" else 2, loc, text,
             " ".join(terms(text))) for doc, loc, text, _ in PASSAGES]
    vectors = bytes(round(x * 127) & 0xFF for *_, v in PASSAGES for x in v)
    groups = [{"name": "other", "start": 1, "end": 4, "centroid": _mean([p[3] for p in
                                                                          PASSAGES[:3]])},
              {"name": "cjk", "start": 4, "end": 5, "centroid": PASSAGES[3][3]}]
    meta = IndexMeta(DIMS, len(PASSAGES), scales, threshold, floor, groups, "query: ",
                     "passage: ")
    db = write_database(meta, [("router.md", "Router"), ("leave.md", "Leave"),
                               ("zh/备份.md", "备份")], rows, vectors)
    return Index(unpack(pack(db), "test"))


def _mean(vectors: list[list[float]]) -> list[float]:
    return [sum(column) / len(vectors) for column in zip(*vectors, strict=True)]


def test_section_round_trips_through_pack_and_unpack() -> None:
    index = _index()
    assert index.meta.count == 4 and index.meta.dims == DIMS and index.documents() == 3
    passage = index.passage(4)
    assert (passage.document, passage.title, passage.text) == (
        "zh/备份.md", "备份", "生产数据库每天凌晨两点进行全量备份。")


@pytest.mark.parametrize(("damage", "message"), [
    (lambda data: data[:10], "too short"),
    (lambda data: b"NOTKNOWL" + data[8:], "bad magic"),
    (lambda data: HEADER.pack(MAGIC, 99, 1) + data[HEADER.size:],
     "knowledge format 99 .* rebuild the artifact"),
    (lambda data: data[:HEADER.size] + b"garbage" + data[HEADER.size + 7:], "corrupted"),
    (lambda data: data[:HEADER.size] + zlib.compress(b"not a database" * 100),
     "corrupted knowledge section"),
])
def test_a_damaged_section_is_one_line_naming_the_artifact(damage, message: str) -> None:  # noqa: ANN001
    meta = IndexMeta(DIMS, 0, [1.0] * DIMS, 0.0, 0.0, [], "", "")
    data = pack(write_database(meta, [], [], b""))
    with pytest.raises(ArtifactError, match=f"^bundle.llamabundle: .*{message}") as raised:
        unpack(damage(data), "bundle.llamabundle")
    assert "\n" not in str(raised.value)


def test_full_text_matches_words_and_chinese_bigrams() -> None:
    index = _index()
    assert index.full_text("reset button", 5)[0] == 1
    assert index.full_text("全量备份", 5) == [4]  # no dictionary: 全量 量备 备份
    assert index.full_text("数据库", 5) == [4]
    assert index.full_text("?!", 5) == []  # no terms: no query at all


def test_a_query_whose_words_are_fts_syntax_is_still_plain_text() -> None:
    assert _index().full_text('reset" OR NEAR(x', 5)[0] == 1


def test_vectors_find_the_passage_in_other_words_and_fusion_ranks_it_first() -> None:
    index = _index()
    ranked = index.rank("how do I restart it", _unit(1, 0.2))  # no shared word but "it"
    assert ranked[0].chunk == 1
    hits = index.search("reset button", _unit(1, 0.2), top_k=2)
    assert [h.passage.location for h in hits][:1] == ["Reset"]
    assert hits[0].score == pytest.approx(2 / 61)  # first in both rankings


def test_lift_is_measured_against_the_passages_own_script_group() -> None:
    index = _index()
    q = index.prepare(PASSAGES[3][3])
    # The Chinese passage is the only one of its group: its lift is 0 however close it is,
    # and the English ones are judged against the English centroid.
    assert index.lift(q, 4) == pytest.approx(0.0, abs=0.02)
    assert index.lift(index.prepare(_unit(1, 0.1)), 1) > 0.2


def test_nothing_is_returned_unless_one_passage_reaches_the_threshold() -> None:
    assert _index(threshold=0.05).search("reset button", _unit(1, 0.1), 3)
    assert _index(threshold=0.9).search("reset button", _unit(1, 0.1), 3) == []


def test_passages_below_the_floor_take_no_part() -> None:
    hits = _index(threshold=0.05, floor=0.1).search("reset button", _unit(1, 0.1), 4)
    assert [h.passage.location for h in hits] == ["Reset"]


def test_a_hits_relevance_is_its_lift_past_the_floor() -> None:
    index = _index(threshold=0.05, floor=0.1)
    q = index.prepare(_unit(1, 0.1))
    (hit,) = index.search("reset button", _unit(1, 0.1), 4)
    assert hit.relevance == pytest.approx(index.lift(q, 1) - 0.1)
    assert hit.relevance > 0.1
