"""Citations added to the sentences an answer left uncited (runtime/knowledge/attribute.py):
only where a passage holds the sentence's claim, at the sentence's end, in the stream, never
rewriting what was sent."""

from __future__ import annotations

import logging

import pytest

from runtime.generation import CallStart, Finish
from runtime.knowledge.attribute import (
    Attributor,
    attributed,
    backing,
    claim_terms,
    without_label,
)
from runtime.knowledge.passage import Hit, Passage

LEAVE = Passage("leave.md", "Leave policy", "Annual leave",
                "Full-time employees receive 28 days of paid annual leave per calendar year.")
ONBOARDING = Passage("onboarding.txt", "Onboarding", "",
                     "The probation period is six months. Salaries are paid on the 25th.")
CANTEEN = Passage("食堂.md", "食堂", "价格", "食堂午餐每份十五元，员工卡支付可打八折。")
HITS = [Hit(LEAVE, 1.0), Hit(ONBOARDING, 0.9)]


def attribute(question: str, pieces: list[str], hits: list[Hit] = HITS) -> str:
    """The answer as sent, streamed in `pieces`; what was sent is never taken back."""
    attributor = Attributor(question, hits)
    sent = ""
    for piece in pieces:
        out = attributor.feed(piece)
        sent += out
    return sent + attributor.finish()


def test_an_uncited_sentence_gets_the_passage_that_holds_its_claim_before_its_full_stop():
    out = attribute("How long is the probation period?",
                    ["The probation", " period is six months.", " Anything else?"])
    assert out == "The probation period is six months [2]. Anything else?"


def test_the_claim_is_what_the_sentence_adds_to_the_question():
    assert claim_terms("The probation period is six months [2].",
                       "How long is the probation period?") == ["six", "month"]


@pytest.mark.parametrize("answer", [
    "The probation period is six months. [2]",  # the model cites after the full stop
    "The probation period is six months [2]",
    "The probation period is six months [1] [2].",
])
def test_a_sentence_citing_its_support_is_left_as_written(answer):
    assert attribute("How long is the probation period?", [answer]) == answer


@pytest.mark.parametrize(("answer", "sent"), [
    ("The probation period is six months [1].", "The probation period is six months [1] [2]."),
    ("The probation period is six months [7].", "The probation period is six months [7] [2]."),
])
def test_a_sentence_citing_a_passage_that_does_not_hold_it_gets_the_one_that_does(answer, sent):
    assert attribute("How long is the probation period?", [answer]) == sent


@pytest.mark.parametrize("answer", [
    "You get 30 days of paid annual leave.",  # a number no passage holds
    "The company was founded in Amsterdam by two engineers.",  # nothing shared
    "Yes.",  # too short a claim to tell passages apart
    "The documents do not cover it.",
])
def test_no_support_no_citation(answer):
    assert attribute("How many vacation days do I get?", [answer]) == answer


def test_each_sentence_is_checked_on_its_own_and_a_line_break_ends_one():
    out = attribute("What do new hires need to know?", [
        "You get 28 days of paid annual leave", " per year.\n\nSalaries are paid on the 25th."])
    assert out == ("You get 28 days of paid annual leave per year [1].\n\n"
                   "Salaries are paid on the 25th [2].")


def test_a_full_stop_inside_a_sentence_does_not_end_it():
    out = attribute("When are salaries paid?", ["Version 3", ".", "5 says salaries are paid ",
                                                "on the 25th, i.e. monthly."])
    assert out == "Version 3.5 says salaries are paid on the 25th, i.e. monthly."  # no 3.5
    out = attribute("When are salaries paid?", ["They are paid at 9 a.m. on the 25th."])
    assert out == "They are paid at 9 a.m. on the 25th."  # no 9 in the passages
    out = attribute("What do new hires need to know?", ["Salaries are paid e.g. on the 25th. "
                                                        "Bye."])
    assert out == "Salaries are paid e.g. on the 25th [2]. Bye."


def test_chinese_is_matched_by_character_bigrams():
    canteen = [Hit(CANTEEN, 1.0)]
    out = attribute("食堂午餐多少钱？", ["午餐每份十五元", "，刷员工卡打八折。"], canteen)
    assert out == "午餐每份十五元，刷员工卡打八折 [1]。"
    assert attribute("食堂午餐多少钱？", ["午餐每份二十元。"], canteen) == "午餐每份二十元。"


def test_the_best_supporting_passage_is_cited_and_the_first_of_equals():
    found = backing("Salaries are paid on the 25th.", "When?", [LEAVE.text, ONBOARDING.text,
                                                               ONBOARDING.text])
    assert [(s.number, s.found, s.claim) for s in found] == [(2, 3, 3), (3, 3, 3)]
    found = backing("Leave is 28 days a year, paid.", "When?", [ONBOARDING.text, LEAVE.text])
    assert [(s.number, s.found, s.claim) for s in found] == [(2, 5, 5)]


def test_the_stream_keeps_its_events_and_logs_what_was_added(caplog):
    finish = Finish("stop", 10, 5, 0)
    events = ["The probation period", " is six months.", finish]
    with caplog.at_level(logging.INFO, logger="runtime.knowledge.attribute"):
        out = list(attributed(iter(events), "How long is the probation period?", HITS))
    assert out == ["The probation period", " is six months", " [2].", finish]
    assert "cited [2], which holds 2 of the 2 terms of a sentence" in caplog.text


def test_the_text_before_a_tool_call_is_sent_before_it():
    call = CallStart(0, "call_1", "lookup")
    finish = Finish("tool_calls", 10, 5, 0)
    out = list(attributed(iter(["Salaries are paid on the 25th.", call, finish]),
                          "What do new hires need to know?", HITS))
    assert out == ["Salaries are paid on the 25th", " [2].", call, finish]


LABELS = ["[1] Leave policy — Annual leave:", "[2] Onboarding:"]


@pytest.mark.parametrize(("pieces", "sent"), [
    (["[1] Leave", " policy — Annual leave: Full-time", " employees get 28 days."],
     ["[1] ", "Full-time", " employees get 28 days."]),
    ([" [2] Onboarding:", "\nThe probation period is six months."],
     ["[2] ", "The probation period is six months."]),
    (["The probation", " period is six months."], ["The probation", " period is six months."]),
    (["[2", "] says six months."], ["[2] ", "says six months."]),  # not the label: kept
    (["[2]"], ["[2]"]),  # the text ended inside a label's start: sent as it was
    (["[1] Leave pol", "icy — Annual"], ["[1] ", "Leave policy — Annual"]),
    (["[2] Leave policy — Annual leave: 28 days."], ["[2] ", "28 days."]),  # the other's
    (["[2] Leave policy: x."], ["[2] ", "Leave policy: x."]),  # no passage is labelled so
    (["[3] Onboarding: Six", " months."], ["Six", " months."]),  # no third passage was given
])
def test_a_copied_passage_label_at_the_start_is_cut_to_its_citation(pieces, sent):
    out = list(without_label(iter([*pieces, Finish("stop", 1, 2, 0)]), LABELS))
    assert out[:-1] == sent and isinstance(out[-1], Finish)


def test_text_that_cannot_be_a_label_goes_out_at_once():
    def model():
        yield "Twenty-eight days."
        raise AssertionError("read past the first piece before sending it")

    assert next(without_label(model(), LABELS)) == "Twenty-eight days."
