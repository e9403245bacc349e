"""Summary statistics of latency samples: robust centre and spread, a bootstrap CI, block agreement."""
from __future__ import annotations

import math

import numpy as np

from modnas.profilers.errors import BadInput

_BOOT_CHUNK = 64


def bootstrap_median_ci(
    samples: np.ndarray, n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap CI of the median (seeded, so the same samples give the same interval)."""
    rng = np.random.default_rng(seed)
    n = samples.size
    medians = np.empty(n_boot)
    for start in range(0, n_boot, _BOOT_CHUNK):
        rows = min(_BOOT_CHUNK, n_boot - start)
        idx = rng.integers(0, n, size=(rows, n))
        medians[start : start + rows] = np.median(samples[idx], axis=1)
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(medians, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def summarize(
    blocks: list[list[float]], disagree_tol: float = 0.1, n_boot: int = 1000, seed: int = 0,
    across_blocks: bool = False,
) -> dict:
    """median, p90, iqr, mean, std, n, ci95 over all samples; per-block medians and whether they disagree.

    Blocks whose medians differ by more than `disagree_tol` (relative to the overall median) are
    flagged in `blocks_disagree`, never dropped. With `across_blocks` (blocks timed in separate
    processes, whose level differs from process to process) `median` is the median of the block
    medians and `ci95` a bootstrap over blocks: the typical process, not the one with the most samples.
    """
    if not blocks or any(len(block) == 0 for block in blocks):
        raise BadInput("latency summary needs at least one sample in every block")
    arrays = [np.asarray(block, dtype=float) for block in blocks]
    samples = np.concatenate(arrays)
    if not np.all(np.isfinite(samples)):
        raise BadInput("latency samples must be finite numbers")
    q25, median, q75, p90 = np.quantile(samples, [0.25, 0.5, 0.75, 0.9])
    block_medians = [float(np.median(a)) for a in arrays]
    if across_blocks:
        median = float(np.median(block_medians))
        lo, hi = bootstrap_median_ci(np.asarray(block_medians), n_boot=n_boot, seed=seed)
    else:
        lo, hi = bootstrap_median_ci(samples, n_boot=n_boot, seed=seed)
    width = max(block_medians) - min(block_medians)
    spread = 0.0 if width == 0 else (width / median if median > 0 else math.inf)
    return {
        "median": float(median),
        "p90": float(p90),
        "iqr": float(q75 - q25),
        "mean": float(samples.mean()),
        "std": float(samples.std(ddof=1)) if samples.size > 1 else 0.0,
        "min": float(samples.min()),
        "n": int(samples.size),
        "ci95": [lo, hi],
        "block_medians": block_medians,
        "block_spread": float(spread),
        "blocks_disagree": bool(spread > disagree_tol),
    }
