"""The stop scanner in-process: text held back only while it may begin a stop string."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from runtime.stops import StopScanner


def feed_all(stops: list[str], pieces: list[str]) -> tuple[str, bool]:
    scanner = StopScanner(stops)
    out = []
    for piece in pieces:
        text, hit = scanner.feed(piece)
        out.append(text)
        if hit:
            return "".join(out), True
    return "".join(out) + scanner.flush(), False


def test_cuts_at_a_stop_string_split_across_pieces():
    assert feed_all(["</s>"], ["Hello <", "/", "s> more"]) == ("Hello ", True)


def test_holds_back_only_a_possible_start():
    scanner = StopScanner(["STOP"])
    assert scanner.feed("abc ST") == ("abc ", False)
    assert scanner.feed("ART") == ("START", False)


def test_earliest_of_several_stops_wins():
    assert feed_all(["world", "lo"], ["hello world"]) == ("hel", True)


def test_without_stops_everything_passes_through_at_once():
    assert StopScanner([]).feed("abc") == ("abc", False)
    assert StopScanner([""]).feed("abc") == ("abc", False)


def test_non_ascii_stop():
    assert feed_all(["。"], ["你好", "。再见"]) == ("你好", True)


@given(st.text(alphabet="ab<>/ 你", max_size=30), st.lists(st.integers(1, 5), max_size=30))
def test_any_split_gives_the_same_text_as_the_whole(text, cuts):
    pieces, i = [], 0
    for n in cuts:
        pieces.append(text[i:i + n])
        i += n
    pieces.append(text[i:])
    whole = feed_all(["</s>", "a>"], [text])
    assert feed_all(["</s>", "a>"], pieces) == whole
    if not whole[1]:
        assert whole[0] == text
