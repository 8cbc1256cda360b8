"""Turn the raw runs into the summary, the README table, the JSON and the chart."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench import stats
from bench.servers import LLAMA_CPP_PYTHON, LLAMA_SERVER, OURS

BUILD_GOAL, OVERHEAD_GOAL_MB = 1.3, 40.0


def summarize(runs: dict[str, list[dict[str, Any]]], build: dict[str, Any] | None
              ) -> dict[str, Any]:
    """Per metric: each server's median/min/max, ours/peer pairs, goal met, peer noise."""
    out: dict[str, Any] = {}
    ours = runs.get(OURS, [])
    for m in stats.METRICS:
        entry: dict[str, Any] = {"unit": m.unit, "goal": m.goal, "compare": m.compare}
        entry["servers"] = {name: stats.summary(stats.values(r, m.key)) for name, r in runs.items()}
        entry["noise_cv"] = {name: stats.cv(stats.values(r, m.key)) for name, r in runs.items()}
        entry["vs"] = {}
        for peer in (LLAMA_SERVER, LLAMA_CPP_PYTHON):
            if peer in runs:
                pairs = stats.paired(ours, runs[peer], m.key, m.compare)
                entry["vs"][peer] = {**stats.summary(pairs), "pairs": pairs}
                if m.compare != "ratio":  # the chart shows every metric as a ratio
                    ratios = stats.paired(ours, runs[peer], m.key)
                    entry["vs"][peer]["as_ratio"] = {**stats.summary(ratios), "pairs": ratios}
        entry["met"] = stats.met(m.check, entry["vs"].get(LLAMA_SERVER, {}).get("pairs", []))
        out[m.key] = entry
    if build:
        pairs = [b / c for b, c in zip(build["build_s"], build["cp_s"], strict=True)]
        synced = [b / c for b, c in zip(build["build_s"], build["cp_sync_s"], strict=True)]
        out["build"] = {"build_s": stats.summary(build["build_s"]),
                        "cp_s": stats.summary(build["cp_s"]),
                        "cp_sync_s": stats.summary(build["cp_sync_s"]),
                        "ratio_vs_cp_sync": {**stats.summary(synced), "pairs": synced},
                        "ratio": {**stats.summary(pairs), "pairs": pairs},
                        "met": stats.met(lambda r: r <= BUILD_GOAL, pairs),
                        "noise_cv": stats.cv(build["cp_s"])}
        out["overhead_mb"] = {"value": build["overhead_mb"],
                              "met": build["overhead_mb"] <= OVERHEAD_GOAL_MB}
    return out


def _num(x: float | None) -> str:
    if x is None:
        return "—"
    a = abs(x)
    return f"{x:.0f}" if a >= 100 else f"{x:.1f}" if a >= 10 else f"{x:.2f}"


def _cell(s: dict[str, Any], scale: float = 1.0, sign: bool = False) -> str:
    if not s.get("n"):
        return "failed"
    med, lo, hi = (s[k] * scale for k in ("median", "min", "max"))
    plus = "+" if sign and med >= 0 else ""
    return f"{plus}{_num(med)} ({_num(lo)}–{_num(hi)})"


def _ratio(s: dict[str, Any] | None, compare: str = "ratio") -> str:
    if not s or not s.get("n"):
        return "—"
    if compare == "diff":
        return _cell(s, sign=True) + " MB"
    return f"{s['median']:.2f}× ({s['min']:.2f}–{s['max']:.2f})"


def _met(flag: bool | None) -> str:
    return "—" if flag is None else "yes" if flag else "**no**"


def _cv(x: float | None) -> str:
    return "—" if x is None else f"{x * 100:.1f}%"


def markdown(summary: dict[str, Any], context: str) -> str:
    head = ("| metric | llamabundle | llama-server | ours / llama-server | goal | met? "
            "| llama-cpp-python | ours / llama-cpp-python | llama-server noise (CV) |")
    rows = [head, "|" + " --- |" * 9]
    for m in stats.METRICS:
        e = summary[m.key]
        cells = [f"{m.label} ({m.unit})"]
        cells += [_cell(e["servers"].get(n, {}), m.scale) if n in e["servers"] else "—"
                  for n in (OURS, LLAMA_SERVER)]
        cells += [_ratio(e["vs"].get(LLAMA_SERVER), m.compare), m.goal or "—", _met(e["met"])]
        cells += [_cell(e["servers"][LLAMA_CPP_PYTHON], m.scale)
                  if LLAMA_CPP_PYTHON in e["servers"] else "—",
                  _ratio(e["vs"].get(LLAMA_CPP_PYTHON), m.compare),
                  _cv(e["noise_cv"].get(LLAMA_SERVER))]
        rows.append("| " + " | ".join(cells) + " |")
    if "build" in summary:
        b, o = summary["build"], summary["overhead_mb"]
        rows.append(f"| build time (s; peer column: `cp` of the GGUF) | {_cell(b['build_s'])} "
                    f"| cp {_cell(b['cp_s'])} | {_ratio(b['ratio'])} | ≤ {BUILD_GOAL}× "
                    f"| {_met(b['met'])} | — | — | {_cv(b['noise_cv'])} (cp) |")
        rows.append(f"| build time vs `cp` + `sync FILE` (s) | {_cell(b['build_s'])} "
                    f"| cp + sync {_cell(b['cp_sync_s'])} | {_ratio(b['ratio_vs_cp_sync'])} "
                    "| — | — | — | — | — |")
        rows.append(f"| artifact size − GGUF size (MB) | {_num(o['value'])} | — | — "
                    f"| ≤ {OVERHEAD_GOAL_MB:.0f} MB | {_met(o['met'])} | — | — | — |")
    return "\n".join(rows) + "\n\n" + context + "\n"


def chart(summary: dict[str, Any], path: Path, title: str) -> None:
    """Bars: median ours/peer ratio per metric, whiskers min–max, a tick line at each goal."""
    labels, series, goals = _chart_data(summary)
    bars(labels, series, goals, path, title)


def bars(labels: list[str], series: dict[str, list[tuple[float, float, float]]],
         goals: list[float | None], path: Path, title: str) -> None:
    """One group of bars per label: each series' (median, min, max) ratio, 0 for none."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, ax = plt.subplots(figsize=(10, 4.8))
    width = 0.8 / max(1, len(series))
    for i, (peer, points) in enumerate(series.items()):
        offset = (i - (len(series) - 1) / 2) * width
        shown = [(x + offset, p) for x, p in enumerate(points) if p[0] > 0]
        xs, meds = [x for x, _ in shown], [p[0] for _, p in shown]
        # Bars grow from 1.0 on a log axis: 2x slower and 2x faster look equally far off.
        ax.bar(xs, [m - 1 for m in meds], width, bottom=1, label=f"ours / {peer}",
               yerr=[[p[0] - p[1] for _, p in shown], [p[2] - p[0] for _, p in shown]],
               capsize=3)
        for x, m in zip(xs, meds, strict=True):
            ax.annotate(f"{m:.2f}", (x, m), textcoords="offset points", ha="center",
                        xytext=(0, 3 if m >= 1 else -10), fontsize=7)
    for x, goal in enumerate(goals):
        if goal is not None:
            ax.hlines(goal, x - 0.45, x + 0.45, colors="black", linestyles="--", linewidth=1.2)
    ax.set_yscale("log")
    ax.set_yticks([0.25, 0.5, 0.75, 1, 1.5, 2, 4, 8], ["0.25", "0.5", "0.75", "1", "1.5", "2",
                                                      "4", "8"])
    ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.axhline(1.0, color="grey", linewidth=0.6)
    ax.set_xticks(range(len(labels)), labels, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("ours / peer, log scale (↑/↓: better; dashed: goal)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _chart_data(summary: dict[str, Any]) -> tuple[list[str], dict[str, list[Any]], list[Any]]:
    labels: list[str] = []
    goals: list[float | None] = []
    series: dict[str, list[Any]] = {LLAMA_SERVER: [], LLAMA_CPP_PYTHON: []}
    goal_of = {"decode_tps": 0.97, "prefill_tps": 0.95, "launch_ready_s": 1.0,
               "launch_first_token_s": 1.0}
    for m in stats.METRICS:
        e = summary[m.key]
        labels.append(f"{m.label} {'↑' if m.higher_is_better else '↓'}")
        for peer in series:
            series[peer].append(_as_ratio(e, peer))
        peer_med = e["servers"].get(LLAMA_SERVER, {}).get("median")
        goals.append(goal_of.get(m.key) if m.key != "peak_rss_mb"
                     else (peer_med + 150) / peer_med if peer_med else None)
    if "build" in summary:
        labels.append("build / cp ↓")
        r = summary["build"]["ratio"]
        series[LLAMA_SERVER].append((r["median"], r["min"], r["max"]))
        series[LLAMA_CPP_PYTHON].append((0.0, 0.0, 0.0))
        goals.append(BUILD_GOAL)
    series = {k: v for k, v in series.items() if any(p[0] for p in v)}
    return labels, series, goals


def _as_ratio(entry: dict[str, Any], peer: str) -> tuple[float, float, float]:
    vs = entry["vs"].get(peer) or {}
    vs = vs.get("as_ratio", vs)
    if not vs.get("n"):
        return (0.0, 0.0, 0.0)
    return (vs["median"], vs["min"], vs["max"])


def write(results_dir: Path, stem: str, data: dict[str, Any], table: str, title: str) -> Path:
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / f"{stem}.json").write_text(json.dumps(data, indent=2, default=str) + "\n")
    (results_dir / f"{stem}.md").write_text(table)
    chart(data["summary"], results_dir / f"{stem}.png", title)
    return results_dir

