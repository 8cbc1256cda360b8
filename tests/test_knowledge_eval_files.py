"""bench.knowledge_eval's question files: well formed, the splits apart, and the held-out
splits' answers kept out of anything written unless --final."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from bench.knowledge_eval import HERE, SPLITS, kinds, public, sdists_of, summary

KINDS = {"en-en", "zh-zh", "en-zh", "zh-en"}
TYPES = {"fact", "near-verbatim"}


@pytest.mark.parametrize("split", list(SPLITS))
def test_each_question_names_a_fetched_document_its_answer_and_its_kind(split: str) -> None:
    data = json.loads(SPLITS[split].read_text())
    documents = kinds()
    assert data["split"] == split and 20 <= len(data["questions"]) <= 30
    for q in data["questions"]:
        assert q["document"] in documents, q
        assert q["kind"] in KINDS and q["type"] in TYPES, q
        assert q["answer"] and all(a.strip() for a in q["answer"]) and q["evidence"], q
        asked, written = q["kind"].split("-")
        assert _zh(q["question"]) == (asked == "zh"), q
    assert len(data["off_topic"]) >= 6
    assert {q["type"] for q in data["questions"]} == TYPES


def test_the_splits_share_no_question_and_the_fresh_one_no_document() -> None:
    data = {s: json.loads(path.read_text()) for s, path in SPLITS.items()}
    asked = {s: {q["question"] for q in d["questions"]} | set(d["off_topic"])
             for s, d in data.items()}
    for a, b in itertools.combinations(SPLITS, 2):
        assert not asked[a] & asked[b], (a, b)
    # The fresh split is on documents added with it, none of which the others ask about.
    fresh = {q["document"] for q in data["fresh"]["questions"]}
    assert not fresh & {q["document"] for s in ("tune", "held-out")
                        for q in data[s]["questions"]}
    packages = json.loads((HERE / "packages.json").read_text())["packages"]
    added = {f["as"] for p in packages if p.get("split") == "fresh" for f in p["files"]}
    assert fresh == added


def test_the_builds_calibration_questions_are_none_of_the_evaluations() -> None:
    # The build calibrates its thresholds and hub scores on these: a question of either split
    # or of bench.knowledge's set among them would be judged by what it was calibrated on (one
    # of the held-out split's off-topic questions was, by coincidence, on 2026-12-06).
    from bundler.knowledge.calibrate import OFF_TOPIC

    evaluated = set()
    for path in SPLITS.values():
        data = json.loads(path.read_text())
        evaluated |= {q["question"] for q in data["questions"]} | set(data["off_topic"])
    bilingual = json.loads((Path(__file__).parent / "data" / "knowledge" / "questions.json")
                           .read_text())
    evaluated |= {q["question"] for q in bilingual["questions"]} | set(bilingual["unanswerable"])
    assert not set(OFF_TOPIC) & evaluated


def test_packages_are_pinned_and_their_documents_are_not_in_the_repository() -> None:
    packages = json.loads((HERE / "packages.json").read_text())["packages"]
    assert all(p["version"].count(".") >= 1 for p in packages)
    repo = Path(__file__).resolve().parent.parent
    tracked = {p.name for p in (repo / "bench" / "pypi_docs").iterdir()}
    assert tracked == {"packages.json", "tune.json", "heldout.json", "fresh.json"}


def test_the_held_out_answers_are_written_only_in_the_final_run() -> None:
    figures, result = {"all": {"n": 1}}, {"rows": [{"answer": "x"}], "off_topic": []}
    for held_out in ("held-out", "fresh"):
        assert public(held_out, figures, result, final=False) == {"summary": figures}
        assert public(held_out, figures, result, final=True)["rows"] == result["rows"]
    assert public("tune", figures, result, final=False)["rows"] == result["rows"]


def _zh(text: str) -> bool:
    return any("\u4e00" <= c <= "\u9fff" for c in text)


def test_the_figures_tell_retrievals_misses_from_the_models() -> None:
    def row(first: bool, sourced: bool, cited: bool) -> dict:
        return {"kind": "zh-en", "type": "fact", "doc_kind": "readme-md", "first": first,
                "sourced": sourced, "cited_right": cited, "fact": cited, "refused": False,
                "same_as_search": True, "search_ms": 3.0}

    rows = [row(True, True, True), row(False, True, False), row(False, False, False)]
    figures = summary({"rows": rows, "off_topic": []})
    assert figures["all"] == {"n": 3, "first": 0.333, "sourced": 0.667, "cited_right": 0.333,
                              "fact": 0.333}
    assert figures["missed_citations"] == {"with_the_document_given": 1,
                                           "document_not_found": 1}


def test_an_sdist_is_found_under_its_name_as_written_or_normalized(tmp_path: Path) -> None:
    for name in ("python_dotenv-1.2.4.tar.gz", "cn2an-0.5.22.tar.gz", "python-dotenv-1.0.0.zip"):
        (tmp_path / name).touch()
    assert [p.name for p in sdists_of(tmp_path, "python-dotenv", "1.2.4")] == [
        "python_dotenv-1.2.4.tar.gz"]
    assert [p.name for p in sdists_of(tmp_path, "cn2an", "0.5.22")] == ["cn2an-0.5.22.tar.gz"]
    assert sdists_of(tmp_path, "python-dotenv", "1.2.5") == []
