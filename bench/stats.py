"""Medians, ranges, pair-by-pair ratios and the goals they are judged against."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    unit: str
    scale: float = 1.0  # raw value * scale = the number shown
    goal: str = ""  # how the goal reads in the table
    # ours/peer ratio (or ours - peer for memory) -> met?; None: no goal for this metric
    check: Callable[[float], bool] | None = None
    compare: str = "ratio"  # "ratio": ours/peer; "diff": ours - peer
    higher_is_better: bool = False


METRICS = (
    Metric("decode_tps", "decode", "tokens/s", goal="≥ 0.97×", check=lambda r: r >= 0.97,
           higher_is_better=True),
    Metric("prefill_tps", "prefill (~512-token prompt)", "tokens/s", goal="≥ 0.95×",
           check=lambda r: r >= 0.95, higher_is_better=True),
    Metric("ttft_s", "time to first token, short chat", "ms", scale=1000),
    Metric("launch_ready_s", "launch → /health 200", "s", goal="≤ 1.0×",
           check=lambda r: r <= 1.0),
    Metric("launch_first_token_s", "launch → first chat token", "s", goal="≤ 1.0×",
           check=lambda r: r <= 1.0),
    Metric("peak_rss_mb", "peak memory (process tree)", "MB", goal="≤ +150 MB",
           check=lambda d: d <= 150, compare="diff"),
)


def summary(values: Sequence[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0}
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "n": len(values)}


def cv(values: Sequence[float]) -> float | None:
    """Coefficient of variation: how much one server's own runs scatter on this machine."""
    if len(values) < 2 or statistics.mean(values) == 0:
        return None
    return statistics.stdev(values) / statistics.mean(values)


def values(runs: Sequence[dict[str, Any]], key: str) -> list[float]:
    return [run[key] for run in runs if key in run]


def paired(ours: Sequence[dict[str, Any]], peer: Sequence[dict[str, Any]], key: str,
           compare: str = "ratio") -> list[float]:
    """Repetition i of ours against repetition i of the peer; pairs with a failure drop out."""
    out = []
    for a, b in zip(ours, peer, strict=False):
        if key in a and key in b:
            out.append(a[key] / b[key] if compare == "ratio" else a[key] - b[key])
    return out


def met(check: Callable[[float], bool] | None, pairs: Sequence[float]) -> bool | None:
    """Judged on the median pair; None when there is no goal or no data."""
    if check is None or not pairs:
        return None
    return check(statistics.median(pairs))
