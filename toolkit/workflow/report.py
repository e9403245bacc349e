"""Validation figures: agreement statistics, plots of predicted against measured, a Markdown report."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def agreement(predicted: np.ndarray, measured: np.ndarray) -> dict[str, float]:
    """Spearman, Kendall, MAPE (percent) and the share within +-10 % of the measurement."""
    from scipy.stats import kendalltau, spearmanr

    p, m = np.asarray(predicted, float), np.asarray(measured, float)
    ape = np.abs(p - m) / m
    rho = float(spearmanr(p, m).statistic) if len(p) > 2 else float("nan")
    tau = float(kendalltau(p, m).statistic) if len(p) > 2 else float("nan")
    return {"spearman": rho, "kendall": tau, "mape": float(100 * ape.mean()), "within_10pct": float((ape <= 0.1).mean()),
            "n": int(len(p))}


REPEATABILITY_DEFINITION = ("mean over architectures and over pairs of rounds (i < j) of "
                            "|round_i - round_j| / median of the architecture's rounds, in percent")


def repeatability(rounds: dict[str, list[float]]) -> dict[str, Any]:
    """The board's own repeatability from per-round medians of the same architectures.

    ``mape``: between rounds, pairwise (see ``REPEATABILITY_DEFINITION``); ``to_median_mape``: mean of
    |round - median| / median; ``worst_arch_mape`` / ``median_arch_mape``: the largest and the median
    per-architecture pairwise value (one disturbed round shows as a worst far above the median). None
    with fewer than two rounds of any architecture."""
    pair, dev = [], []
    for values in rounds.values():
        v = np.asarray(values, float)
        if len(v) < 2:
            continue
        med = float(np.median(v))
        i, j = np.triu_indices(len(v), k=1)
        pair.append(float(np.mean(np.abs(v[i] - v[j]))) / med)
        dev.append(float(np.mean(np.abs(v - med))) / med)
    have = bool(pair)
    return {"mape": 100 * float(np.mean(pair)) if have else None,
            "to_median_mape": 100 * float(np.mean(dev)) if have else None,
            "worst_arch_mape": 100 * float(np.max(pair)) if have else None,
            "median_arch_mape": 100 * float(np.median(pair)) if have else None,
            "archs": len(pair), "rounds": max((len(v) for v in rounds.values()), default=0),
            "definition": REPEATABILITY_DEFINITION}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_predicted_vs_measured(predicted: np.ndarray, measured: np.ndarray, path: Path, title: str) -> Path:
    """Scatter with the y = x line and a +-10 % band."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 5), dpi=110)
    lo = float(min(np.min(predicted), np.min(measured))) * 0.85
    hi = float(max(np.max(predicted), np.max(measured))) * 1.15
    line = np.linspace(lo, hi, 50)
    ax.fill_between(line, line * 0.9, line * 1.1, color="tab:green", alpha=0.15, label="+-10 %")
    ax.plot(line, line, color="tab:green", lw=1, label="y = x")
    ax.scatter(measured, predicted, s=18, color="tab:blue", zorder=3, label="architectures")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    if hi / max(lo, 1e-9) > 20:  # latencies spanning decades read better on log axes
        ax.set_xscale("log")
        ax.set_yscale("log")
    ax.set_xlabel("measured latency (ms)")
    ax.set_ylabel("predicted latency (ms)")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_fronts(error: np.ndarray, predicted: np.ndarray, measured: np.ndarray, path: Path, title: str,
                quality: str = "predicted error (%)") -> Path:
    """The front as predicted and the same architectures at their measured latency (``quality`` labels the
    other axis: a language model's is its predicted loss)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    for lat, label, style in ((predicted, "predicted latency", "o--"), (measured, "measured latency", "s-")):
        order = np.argsort(lat)
        ax.plot(np.asarray(lat)[order], np.asarray(error)[order], style, ms=4, label=label)
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel(quality)
    if max(np.max(predicted), np.max(measured)) / max(min(np.min(predicted), np.min(measured)), 1e-9) > 20:
        ax.set_xscale("log")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _verified_lines(picks: list[dict[str, Any]]) -> list[str]:
    """The verified picks: each measured on the board to meet its budget (or why none does)."""
    lines = ["## Verified picks (measured on the board)", "",
             "| budget ms | pick | predicted ms | measured ms | margin % | board measurements | meets |",
             "|---:|---|---:|---:|---:|---:|---|"]
    for p in picks:
        if p.get("arch") is None:
            lines.append(f"| {p['budget_ms']:.3f} | none: {p.get('reason', '')} | - | - | - | "
                         f"{p.get('measurements', 0)} | - |")
            continue
        lines.append(f"| {p['budget_ms']:.3f} | `{p['arch']}` | {p['predicted']['latency_ms']:.3f} | "
                     f"{p['measured']['latency_ms']:.3f} | {100 * p['verify_margin']:.1f} | "
                     f"{p.get('measurements', 0)} | "
                     f"{'yes' if p['measured']['latency_ms'] <= p['budget_ms'] else 'NO'} |")
    lines.append("")
    lm = [p for p in picks if p.get("arch") is not None and (p.get("loss") or p.get("sample"))]
    if lm:  # a language model's picks: each exported file's held-out loss and a sample of its text
        lines += ["## The picks' files and text", "",
                  "| budget ms | pick | predicted loss | loss by file (nats/token) | tokens/s (onnxruntime) |",
                  "|---:|---|---:|---|---:|"]
        for p in lm:
            files = ", ".join(f"{k} {v:.4f}" for k, v in (p.get("loss") or {}).items())
            tps = (p.get("sample") or {}).get("tokens_per_s")
            lines.append(f"| {p['budget_ms']:.3f} | `{p['arch']}` | {p['predicted'].get('loss', float('nan')):.4f} | "
                         f"{files or '-'} | {'-' if tps is None else f'{tps:.1f}'} |")
        lines.append("")
        for arch in dict.fromkeys(p["arch"] for p in lm if p.get("sample")):  # one sample per architecture
            p = next(q for q in lm if q["arch"] == arch and q.get("sample"))
            lines += [f"Sample of `{arch}` ({p['sample']['tokens_per_s']:.0f} tokens/s):", "", "```",
                      p["sample"]["text"], "```", ""]
    return lines


def markdown_report(doc: dict[str, Any], picks: list[dict[str, Any]] | None = None) -> str:
    """The validation report; ``picks`` (``select --verify`` documents) add the verified picks."""
    rep = doc.get("repeatability_mape")
    rounds = doc.get("rounds", 1)
    lines = [f"# Validation on {doc['device']}", "",
             f"- architectures: {len(doc['rows'])}, each measured in {rounds} interleaved round(s); "
             f"measured = median of rounds",
             *([f"- {n} of them reference architectures, in the device model's fit: not in the figures below"]
               if (n := sum(1 for r in doc["rows"] if r.get("in_fit"))) and len(doc["rows"]) - n >= 2 else []),
             f"- Spearman {doc['spearman']:.3f}, Kendall {doc['kendall']:.3f}",
             f"- MAPE {doc['mape']:.1f} %, within +-10 %: {100 * doc['within_10pct']:.0f} %"]
    if rep is not None:
        lines.append(f"- prediction MAPE {doc['mape']:.1f} % vs the board's repeatability {rep:.1f} % "
                     f"({doc['repeatability']['definition']})")
    lines.append("")
    if picks:
        lines += _verified_lines(picks)
    if doc.get("budgets"):
        lines += ["## Picks from predictions alone (among the validated architectures, not verified)", "",
                  "| budget ms | pick | predicted ms | measured ms | meets |", "|---:|---|---:|---:|---|"]
        for b in doc["budgets"]:
            lines.append(f"| {b['budget_ms']:.3f} | `{b['arch']}` | {b['predicted_ms']:.3f} | {b['measured_ms']:.3f} "
                         f"| {'yes' if b['meets'] else 'NO'} |")
        lines.append("")
    lines += ["## Validated architectures", "",
              "| architecture | predicted ms | measured ms | error % | rounds ms |", "|---|---:|---:|---:|---|"]
    for r in doc["rows"]:
        per_round = ", ".join(f"{v:.3f}" for v in r.get("rounds", []))
        lines.append(f"| `{r['arch']}` | {r['predicted']:.3f} | {r['measured']:.3f} | "
                     f"{100 * (r['predicted'] - r['measured']) / r['measured']:+.1f} | {per_round} |")
    lines += ["", f"![predicted against measured]({Path(doc['plot']).name})"]
    if doc.get("front_plot"):
        lines.append(f"![fronts]({Path(doc['front_plot']).name})")
    return "\n".join(lines) + "\n"
