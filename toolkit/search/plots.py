"""PNG plots of a run: loss curves and predicted fronts of the training devices."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_losses(history: list[dict[str, Any]], path: Path) -> Path:
    plt = _pyplot()
    epochs = [h["epoch"] for h in history]
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.5))
    nan = float("nan")  # warm-up epochs have no hypernetwork steps
    ax[0].plot(epochs, [nan if h["loss"] is None else h["loss"] for h in history],
               label="hypernetwork loss (mean over devices)")
    if "ce_train" in history[0]:
        ax[0].plot(epochs, [h["ce_train"] for h in history], label="supernet CE (weight half)")
    ax[0].set_xlabel("epoch")
    ax[0].legend(fontsize=7)
    names = list(dict.fromkeys(k for h in history for k in h["terms"]))
    for name in names:
        ax[1].plot(epochs, [h["terms"].get(name, nan) for h in history], label=name)
    ax[1].set_xlabel("epoch")
    ax[1].set_title("objective terms (normalised)", fontsize=8)
    ax[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_fronts(fronts: dict[str, list[dict[str, Any]]], path: Path,
                background: dict[str, np.ndarray] | None = None) -> Path:
    """One panel per device: the read-out front (predicted error vs latency)."""
    plt = _pyplot()
    names = list(fronts)[:12]
    cols = min(4, max(1, len(names)))
    rows = (len(names) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.8 * rows), squeeze=False)
    for ax, name in zip(axes.ravel(), names):
        if background and name in background:
            bg = background[name]
            ax.scatter(bg[:, 1], bg[:, 0], s=1, c="0.8", label="space (predicted)")
        quality = "loss" if any("loss" in r["predicted"] for r in fronts[name]) else "error"
        pts = np.array([[r["predicted"][quality], r["predicted"].get("latency_ms", np.nan)] for r in fronts[name]])
        if len(pts):
            ax.plot(pts[:, 1], pts[:, 0], "o-", ms=3, c="C3", label="read-out front")
        ax.set_title(name, fontsize=7)
        ax.set_xlabel("latency ms", fontsize=7)
        ax.set_ylabel("loss (nats/token)" if quality == "loss" else "error %", fontsize=7)
        ax.tick_params(labelsize=6)
    for ax in axes.ravel()[len(names):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


__all__ = ["plot_fronts", "plot_losses"]
