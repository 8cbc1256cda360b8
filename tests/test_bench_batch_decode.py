"""bench.batch_decode's tables: the paired ratios compare builds rep by rep."""

from __future__ import annotations

from bench.batch_decode import paired, table


def _rep(ms: float, backend: str = "icelake") -> dict[str, object]:
    return {"backend": backend, "step_ms": {"1": ms}, "prompt_tokens_per_s": 100.0}


def test_paired_ratios_follow_each_rep_not_the_medians() -> None:
    # The machine is slow in the second rep for both builds: each rep's pair says 0.9, while the
    # medians alone (40 against 36) cannot tell it from noise as their ranges overlap.
    results = {"installed": [_rep(30.0), _rep(50.0), _rep(40.0)],
               "gcc": [_rep(27.0), _rep(45.0), _rep(36.0)]}
    shown = paired(results, [1])
    assert "| step / installed's in the same rep | gcc |" in shown
    assert "| 1 sequence | 0.900 (0.900–0.900) |" in shown
    assert "40.0 (30.0–50.0)" in table(results, [1])


def test_one_build_has_no_pairs() -> None:
    assert paired({"installed": [_rep(30.0)]}, [1]) == ""
