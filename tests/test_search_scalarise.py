"""Scalarisations: a concave front point only Tchebycheff reaches, the loop's losses under each, the
frozen cross-entropy scale of supernet mode, and greedy hypervolume subsets."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from modnas.toolkit.search.costs import LinearCost
from modnas.toolkit.search.scalarise import SCALARISATIONS, minimisers, scalarise

# a 2-D front (both minimised) whose middle point lies above the chord of its neighbours: no
# weighted sum has it as its minimiser, every Tchebycheff form does for the balanced preference
FRONT = np.array([[0.0, 1.0], [0.25, 0.62], [0.55, 0.55], [0.62, 0.25], [1.0, 0.0]])
CONCAVE = 2


def _prefs(n: int = 401) -> np.ndarray:
    r0 = np.linspace(0.0, 1.0, n)
    return np.stack([r0, 1.0 - r0], axis=1)


def test_weighted_sum_misses_the_concave_point_tchebycheff_finds_it() -> None:
    ws = set(minimisers(FRONT, _prefs(), "weighted_sum").tolist())
    assert CONCAVE not in ws and ws <= {0, 1, 3, 4}
    for kind in ("tchebycheff", "smooth_tchebycheff"):
        found = minimisers(FRONT, _prefs(), kind, mu=0.01, ideal=-0.01)
        assert CONCAVE in set(found.tolist()), kind
        assert set(found.tolist()) == set(range(len(FRONT))), kind     # every front point is reached
    assert minimisers(FRONT, np.array([[0.5, 0.5]]), "tchebycheff")[0] == CONCAVE


def test_scalarisation_values_and_gradients() -> None:
    f = torch.tensor([[0.2, 0.6], [0.5, 0.1]], requires_grad=True)
    r = torch.tensor([[0.3, 0.7], [0.5, 0.5]])
    for kind in SCALARISATIONS:
        f.grad = None
        out = scalarise(f, r, kind, mu=0.05, ideal=-0.01)
        assert out.shape == (2,)
        out.sum().backward()
        assert f.grad is not None and f.grad.shape == f.shape and torch.all(f.grad >= 0)
    ws = scalarise(f, r, "weighted_sum")
    tch = scalarise(f, r, "tchebycheff", ideal=-0.01)
    smooth = scalarise(f, r, "smooth_tchebycheff", mu=0.05, ideal=-0.01)
    assert torch.all(tch <= ws + 0.01 + 1e-6)                     # max of non-negative terms <= their sum
    assert torch.all(tch <= smooth) and torch.all(smooth <= tch + 0.05 * math.log(2) + 1e-6)
    f.grad = None
    scalarise(f, r, "tchebycheff").sum().backward()
    assert f.grad is not None and torch.equal((f.grad > 0).sum(dim=1), torch.tensor([1, 1]))  # one active term
    with pytest.raises(ValueError, match="unknown"):
        scalarise(f, r, "lexicographic")


def _toy_costs(n: int, seed: int) -> list[LinearCost]:
    rng = np.random.default_rng(seed)
    return [LinearCost(f"toy{i}", np.abs(rng.normal(size=30)) * np.tile([0.0, 0.1, 0.5, 1.0, 0.3], 6), 0.5,
                       rng.random(10).astype(np.float32), 0.05) for i in range(n)]


def test_each_scalarisation_in_the_benchmark_loop() -> None:
    """Same seed, same first samples: the first step's per-device losses keep the scalarisations'
    order, and every scalarisation moves the hypernetwork."""
    from modnas.toolkit.search.hypernet import flat_params
    from modnas.toolkit.search.loop import SearchDevice, Trainer
    from modnas.toolkit.search.run import BenchmarkConfig, ScalarisationConfig, SearchConfig, shipped_surrogate_dir
    from modnas.toolkit.search.surrogate import load_surrogate

    torch.set_num_threads(1)
    surrogate = load_surrogate(shipped_surrogate_dir())
    devs = [SearchDevice(m.name, m.embedding, {"latency": m}) for m in _toy_costs(3, 1)]
    losses = {}
    for kind in SCALARISATIONS:
        cfg = SearchConfig(scalarisation=ScalarisationConfig(kind=kind, smooth_mu=0.05),
                           benchmark=BenchmarkConfig(prefs_per_step=8), devices=[d.name for d in devs])
        trainer = Trainer(cfg, devs, surrogate=surrogate)
        before = flat_params(trainer.hypernet)
        loss, terms, gamma = trainer._h_step_benchmark(0, 0)
        assert loss.shape == (3,) and terms.shape == (3, 2) and np.all(np.isfinite(loss))
        assert gamma.shape == (3,) and gamma.sum() == pytest.approx(1.0, abs=1e-4)
        assert not torch.equal(before, flat_params(trainer.hypernet))
        losses[kind] = loss
    assert np.all(losses["tchebycheff"] <= losses["weighted_sum"] + 0.01 + 1e-6)
    assert np.all(losses["tchebycheff"] <= losses["smooth_tchebycheff"] + 1e-6)
    assert np.all(losses["smooth_tchebycheff"] <= losses["tchebycheff"] + 0.05 * math.log(2) + 1e-6)


def test_supernet_mode_freezes_the_error_scale(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from modnas.toolkit.search.api import run_search
    from modnas.toolkit.search.run import read_metrics

    res = run_search(_toy_costs(2, 0), accuracy="supernet", data_dir="digits", epochs=3, warmup_epochs=1,
                     out=tmp_path / "run", seed=0, channels=4, cells=1, batch_size=32, max_images=300,
                     scalarisation="smooth_tchebycheff", plots=False)
    rows = read_metrics(res["run"])
    assert rows[0].get("warmup") and "ce_range" not in rows[0]
    lo, hi = rows[1]["ce_range"]
    assert 0 < lo < hi and rows[2]["ce_range"] == [lo, hi]      # measured once, then frozen
    assert all(np.isfinite(r["loss"]) for r in rows[1:])


def test_old_runs_load_as_weighted_sum(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json

    from modnas.toolkit.search.run import FLAT_FIELDS, SearchConfig, load_run

    res_dir = tmp_path / "run"
    from modnas.toolkit.search.api import run_search

    run_search(_toy_costs(1, 0), epochs=1, steps_per_epoch=1, prefs_per_step=2, out=res_dir, plots=False,
               scalarisation="tchebycheff")
    assert load_run(res_dir).config.scalarisation.kind == "tchebycheff"
    assert SearchConfig().scalarisation.kind in ("weighted_sum", "tchebycheff", "smooth_tchebycheff")
    meta = json.loads((res_dir / "config.json").read_text())
    nested = meta["config"]
    flat = {k: v for k, v in nested.items() if not isinstance(v, dict)}
    flat.update({old: nested[section][name] for old, (section, name) in FLAT_FIELDS.items()})
    del flat["scalarisation"]                               # a config.json written before the field
    meta["config"] = flat
    (res_dir / "config.json").write_text(json.dumps(meta))
    assert load_run(res_dir).config.scalarisation.kind == "weighted_sum"


def test_greedy_hypervolume_subset() -> None:
    from modnas.toolkit.pareto import greedy_hv_subset, hypervolume

    th = np.linspace(0.0, math.pi / 2, 40)
    front = np.stack([1.0 - np.cos(th), 1.0 - np.sin(th)], axis=1) * 0.9     # a convex quarter circle
    pick = greedy_hv_subset(front, 6)
    assert len(pick) == 6 == len(set(pick))
    assert hypervolume(front[pick]) > hypervolume(front[:6]) + 0.05      # spread beats the first six
    worst = np.array([[0.95, 0.95]])                                     # dominated: adds nothing
    assert sorted(greedy_hv_subset(np.vstack([front[:2], worst]), 3)) == [0, 1]
    pts3 = np.random.default_rng(0).random((30, 3))
    pick3 = greedy_hv_subset(pts3, 5)
    assert len(pick3) == 5 and hypervolume(pts3[pick3]) >= hypervolume(pts3[:5])
