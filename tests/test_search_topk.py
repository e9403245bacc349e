"""The top-k read-out (exact k-best of the hypernetwork's distribution) and the entropy bonus."""
from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from modnas.toolkit.errors import BadInput
from modnas.toolkit.search.costs import LinearCost, linear_costs_from_table
from modnas.toolkit.search.topk import kbest, topk_candidates
from modnas.toolkit.spaces import get_space


def test_kbest_is_the_exact_k_best_of_the_product() -> None:
    torch.manual_seed(0)
    logits = torch.randn(3, 4, 3) * 2.0
    logp = torch.log_softmax(logits.double(), dim=-1)
    for k in (1, 7, 30, 200):
        choices, score = kbest(logits, k)
        assert choices.shape == (3, min(k, 81), 4) and score.shape == (3, min(k, 81))
        for p in range(3):
            brute = sorted((float(sum(logp[p, j, c] for j, c in enumerate(combo))), combo)
                           for combo in itertools.product(range(3), repeat=4))[::-1][:k]
            assert np.allclose(score[p].numpy(), [s for s, _ in brute])
            got = [float(sum(logp[p, j, c] for j, c in enumerate(row))) for row in choices[p].tolist()]
            assert np.allclose(got, score[p].numpy())                     # each row scores what it says
            assert len({tuple(r) for r in choices[p].tolist()}) == len(got)  # distinct
    with pytest.raises(BadInput):
        kbest(logits, 0)


class _FixedRun:
    """What topk_candidates reads of a run: logits for preferences, and the space."""

    def __init__(self, logits: torch.Tensor) -> None:
        self._logits = logits
        self.space = get_space("nb201")

    def logits(self, prefs: np.ndarray, embedding: np.ndarray) -> torch.Tensor:
        return self._logits[: len(prefs)]


def test_topk_candidates_skip_masked_choices() -> None:
    from modnas.toolkit.search.hypernet import MASKED

    logits = torch.randn(2, 6, 5)
    logits[:, :, 4] = MASKED                        # avg_pool is never a choice: 4 ** 6 valid cells
    prefs = np.array([[0.2, 0.8], [0.7, 0.3]])
    archs, first = topk_candidates(_FixedRun(logits), np.zeros(10), prefs, 5000)
    assert len(archs) == 4 ** 6 and not any("avg_pool" in a for a in archs)
    assert first.shape == (len(archs), 2)


@pytest.fixture(scope="module")
def held_out_device(data_dir: Path) -> LinearCost:
    """A stand-in cost model of a device the shipped run never trained on (HELP's samsung_s7)."""
    (cost,) = linear_costs_from_table(data_dir, ["help:samsung_s7"])
    return cost


def test_topk_readout_spreads_on_a_held_out_device(held_out_device: LinearCost) -> None:
    from modnas.toolkit.pareto import nondominated_mask
    from modnas.toolkit.search.readout import pareto, preference_grid
    from modnas.toolkit.search.run import load_run

    run = load_run(None, "nb201")
    assert held_out_device.name not in run.config.devices
    front = pareto(run, held_out_device, 24)
    archs = [r["arch"] for r in front]
    pts = np.array([[r["predicted"]["error"], r["predicted"]["latency_ms"]] for r in front])
    assert len(set(archs)) == len(archs) >= 15 and nondominated_mask(pts).all()
    assert len(front) > len(pareto(run, held_out_device, 24, top_k=1))      # the arg-maxes collapse
    # the picks cover most of the device's predicted latency range along the front
    lat_all = np.asarray(held_out_device.predict(get_space("nb201").all_archs()))
    lo, hi = float(lat_all.min()), float(np.quantile(lat_all, 0.99))
    assert pts[:, 1].min() - lo < 0.1 * (hi - lo) and pts[:, 1].max() - lo > 0.6 * (hi - lo)
    # neighbouring preferences give different top-k sets in every quarter of the range
    grid = preference_grid(2, 48)
    sets = [set(topk_candidates(run, held_out_device.embedding, grid[i:i + 1], 16)[0]) for i in range(len(grid))]
    changed = [i for i in range(1, len(sets)) if sets[i] != sets[i - 1]]
    assert {4 * i // len(sets) for i in changed} == {0, 1, 2, 3}
    with pytest.raises(BadInput):
        pareto(run, held_out_device, 24, top_k=0)


def test_entropy_bonus_config_and_effect() -> None:
    from modnas.toolkit.search.loop import SearchDevice, Trainer, mean_entropy
    from modnas.toolkit.search.run import BenchmarkConfig, HypernetConfig, SearchConfig, make_config, shipped_surrogate_dir
    from modnas.toolkit.search.surrogate import load_surrogate

    for bad in (-0.1, 2.0, "x"):
        with pytest.raises(BadInput, match="entropy_bonus"):
            make_config({"entropy_bonus": bad})
    assert make_config({}).benchmark.entropy_bonus == 0.0
    z = torch.zeros(2, 3, 6, 5)
    assert torch.allclose(mean_entropy(z), torch.full((2,), math.log(5), dtype=z.dtype))
    z[..., 4] = -1e4
    assert torch.allclose(mean_entropy(z), torch.full((2,), math.log(4), dtype=z.dtype), atol=1e-5)

    torch.set_num_threads(1)
    rng = np.random.default_rng(1)
    costs = [LinearCost(f"toy{i}", np.abs(rng.normal(size=30)) * np.tile([0.0, 0.1, 0.5, 1.0, 0.3], 6), 0.5,
                        rng.random(10).astype(np.float32), 0.05) for i in range(2)]
    devs = [SearchDevice(m.name, m.embedding, {"latency": m}) for m in costs]
    surrogate = load_surrogate(shipped_surrogate_dir())
    entropy: dict[float, float] = {}
    for bonus in (0.0, 0.3):
        cfg = SearchConfig(benchmark=BenchmarkConfig(entropy_bonus=bonus, prefs_per_step=8), epochs=2,
                           hypernet=HypernetConfig(lr=0.05), devices=[d.name for d in devs])
        trainer: Any = Trainer(cfg, devs, surrogate=surrogate)
        assert trainer._entropy_weight(0) == pytest.approx(bonus) and trainer._entropy_weight(1) == 0.0
        for step in range(25):
            trainer._h_step_benchmark(0, step)
        r = torch.tensor([[0.5, 0.5], [0.9, 0.1], [0.1, 0.9]])
        with torch.no_grad():
            logits = trainer.hypernet(r, torch.as_tensor(devs[0].embedding).reshape(1, -1).expand(3, -1))
        entropy[bonus] = float(mean_entropy(logits[None])[0])
    assert entropy[0.3] > entropy[0.0] + 0.1


def test_pareto_top_k_flag_moves_the_pool(capsys: pytest.CaptureFixture[str], data_dir: Path, modnas_home: Path) -> None:
    """``pareto --top-k 1`` is the arg-max read-out (few picks); the default pools the top-k cells."""
    import json

    from modnas.toolkit.cli import main

    base = ["pareto", "--device", "help:pixel3", "--data", str(data_dir), "--json", "--quiet"]
    assert main(base + ["--top-k", "1"]) == 0
    argmax = json.loads(capsys.readouterr().out)
    assert main(base) == 0
    pooled = json.loads(capsys.readouterr().out)
    assert len({r["arch"] for r in pooled}) == 24 > len({r["arch"] for r in argmax})
    assert main(base + ["--top-k", "0"]) == 2
    assert capsys.readouterr().err.strip() == "modnas: --top-k must be at least 1"
