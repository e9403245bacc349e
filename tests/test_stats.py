"""Latency summaries: centre, spread, seeded bootstrap CI, and block agreement flagged, never dropped."""
from __future__ import annotations

import statistics

import numpy as np
import pytest

from modnas.profilers.stats import bootstrap_median_ci, summarize
from modnas.toolkit.errors import BadInput


def _blocks(seed: int, centres: list[float], n: int = 60) -> list[list[float]]:
    rng = np.random.default_rng(seed)
    return [list(c + rng.gamma(2.0, 0.05 * c, size=n)) for c in centres]


def test_summary_matches_independent_statistics() -> None:
    blocks = _blocks(1, [4.0, 4.0, 4.0])
    flat = [v for block in blocks for v in block]
    s = summarize(blocks)
    assert s["n"] == len(flat)
    assert s["median"] == pytest.approx(statistics.median(flat))
    assert s["mean"] == pytest.approx(statistics.fmean(flat))
    assert s["std"] == pytest.approx(statistics.stdev(flat))
    q = statistics.quantiles(flat, n=20, method="inclusive")  # 5 % steps: q[17] is p90, q[4]/q[14] p25/p75
    assert s["p90"] == pytest.approx(q[17])
    assert s["iqr"] == pytest.approx(q[14] - q[4])
    assert s["block_medians"] == pytest.approx([statistics.median(b) for b in blocks])
    assert s["blocks_disagree"] is False


def test_bootstrap_ci_is_seeded_and_brackets_the_median() -> None:
    blocks = _blocks(2, [10.0, 10.0])
    a, b = summarize(blocks), summarize(blocks)
    assert a["ci95"] == b["ci95"]
    lo, hi = a["ci95"]
    assert lo <= a["median"] <= hi and lo < hi
    other = summarize(blocks, seed=7)["ci95"]
    assert other != a["ci95"]
    # more samples from the same distribution give a narrower interval
    few = np.asarray(_blocks(3, [10.0], n=20)[0])
    many = np.asarray(_blocks(3, [10.0], n=2000)[0])
    w_few = np.subtract(*bootstrap_median_ci(few)[::-1])
    w_many = np.subtract(*bootstrap_median_ci(many)[::-1])
    assert w_many < w_few


def test_disagreeing_blocks_are_flagged_and_kept() -> None:
    blocks = _blocks(4, [5.0, 5.0, 7.0])
    s = summarize(blocks, disagree_tol=0.1)
    assert s["blocks_disagree"] is True
    assert s["n"] == sum(len(b) for b in blocks)
    assert max(s["block_medians"]) > 1.2 * min(s["block_medians"])
    assert summarize(blocks, disagree_tol=1.0)["blocks_disagree"] is False


def test_single_sample_and_constant_blocks() -> None:
    s = summarize([[3.0]])
    assert (s["median"], s["std"], s["iqr"], s["n"]) == (3.0, 0.0, 0.0, 1)
    assert summarize([[2.0, 2.0], [2.0, 2.0]])["blocks_disagree"] is False


@pytest.mark.parametrize("blocks", [[], [[]], [[1.0], []], [[1.0, float("nan")]], [[float("inf")]]])
def test_bad_samples_are_refused(blocks: list[list[float]]) -> None:
    with pytest.raises(BadInput):
        summarize(blocks)
