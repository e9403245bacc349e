"""Benchmark-mode search on table devices; pareto/select on a device held out of training."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from modnas.toolkit.errors import BadInput
from modnas.toolkit.prediction.embedding import minmax
from modnas.toolkit.search.costs import CostModel, LinearCost
from modnas.toolkit.spaces import get_space


@pytest.fixture(scope="module")
def table_costs(data_dir: Path) -> dict[str, LinearCost]:
    """Stand-in cost models for four HELP devices of different hardware (one held out below)."""
    path = data_dir / "combined" / "nb201_wide.csv.gz"
    if not path.exists():
        pytest.skip(f"benchmark tables not found at {path}")
    wide = pd.read_csv(path).sort_values("arch_index")
    space = get_space("nb201")
    onehot = space.encode(list(wide["arch_str"]))
    refs = [space.index(a) for a in space.reference_archs()]
    connected = wide["input_output_connected"].to_numpy() == 1
    out = {}
    for col in [c for c in wide.columns if c.startswith("help:") and c.endswith(":latency_ms")]:
        if not any(k in col for k in ("1080ti_1", "pixel3", "gold_6240", "samsung_a50")):
            continue
        values = wide[col].to_numpy(dtype=float)
        out[col.split(":")[1]] = LinearCost.fit(col, onehot, np.where(connected, values, np.nan),
                                                minmax(values[refs]).astype(np.float32))
    assert len(out) == 4
    return out


@pytest.fixture(scope="module")
def run_dir(table_costs: dict[str, LinearCost], tmp_path_factory: pytest.TempPathFactory) -> Path:
    from modnas.toolkit.search.api import run_search

    train = [table_costs[k] for k in ("1080ti_1", "pixel3", "gold_6240")]
    out = tmp_path_factory.mktemp("search") / "run"
    res = run_search(train, epochs=2, out=out, seed=3, steps_per_epoch=15, prefs_per_step=8, h_lr=0.01,
                     cost_source="test stand-in")
    assert res["devices"] == [m.name for m in train] and res["epochs"] == 2
    return Path(res["run"])


def test_run_directory_contents(run_dir: Path) -> None:
    from modnas.toolkit.search.run import read_metrics

    meta = json.loads((run_dir / "config.json").read_text())
    assert meta["config"]["accuracy"] == "benchmark" and meta["config"]["cost_source"] == "test stand-in"
    assert len(meta["devices"]) == 3 and len(meta["devices"][0]["embedding"]) == 10
    rows = read_metrics(run_dir)
    assert [r["epoch"] for r in rows] == [1, 2]
    assert all(np.isfinite(r["loss"]) for r in rows)
    for name in ("hypernet.safetensors", "surrogate/accuracy_surrogate.safetensors", "loss.png", "fronts.png"):
        assert (run_dir / name).exists(), name


def test_pareto_on_a_held_out_device(run_dir: Path, table_costs: dict[str, LinearCost]) -> None:
    from modnas.toolkit.search.readout import pareto
    from modnas.toolkit.search.run import load_run

    run = load_run(run_dir)
    device = table_costs["samsung_a50"]          # never seen in training
    front = pareto(run, device, preferences=24)
    assert front
    space = get_space("nb201")
    pts = np.array([[r["predicted"]["error"], r["predicted"]["latency_ms"]] for r in front])
    assert np.all(np.diff(pts[:, 1]) >= 0)                             # sorted by latency
    assert np.all(np.diff(pts[:, 0]) <= 0)                             # non-dominated: error falls
    archs = [r["arch"] for r in front]
    assert len(set(archs)) == len(archs)
    assert np.allclose(pts[:, 1], device.predict(archs))
    assert np.allclose(pts[:, 0], run.predict_error(archs))
    for r in front:
        assert space.canonical(r["arch"]) == r["arch"]
        assert len(r["preference"]) == 2 and sum(r["preference"]) == pytest.approx(1.0)


def test_select_meets_the_budget_with_margin(run_dir: Path, table_costs: dict[str, LinearCost]) -> None:
    from modnas.toolkit.search.readout import pareto, select
    from modnas.toolkit.search.run import load_run

    run = load_run(run_dir)
    device = table_costs["samsung_a50"]
    front = pareto(run, device)
    lat = np.array([r["predicted"]["latency_ms"] for r in front])
    budget = float(lat.max() * 1.3)
    pick = select(run, device, budget)
    assert pick["margin"] == pytest.approx(device.margin())
    assert pick["predicted"]["latency_ms"] * (1 + pick["margin"]) <= budget
    fitting = [r["predicted"]["error"] for r in front if r["predicted"]["latency_ms"] * (1 + pick["margin"]) <= budget]
    assert pick["predicted"]["error"] <= min(fitting) + 1e-9
    tight = select(run, device, budget, margin=0.5)
    assert tight["predicted"]["latency_ms"] * 1.5 <= budget
    with pytest.raises(BadInput, match="fastest predicted"):
        select(run, device, float(lat.min()) * 0.5, margin=0.0)
    with pytest.raises(BadInput):
        select(run, device, -1.0)


def test_same_seed_same_hypernet(table_costs: dict[str, LinearCost], tmp_path: Path) -> None:
    from safetensors.torch import load_file

    from modnas.toolkit.search.api import run_search

    devs = [table_costs["1080ti_1"], table_costs["pixel3"]]
    for name in ("a", "b"):
        run_search(devs, epochs=1, out=tmp_path / name, seed=5, steps_per_epoch=3, plots=False)
    a, b = load_file(str(tmp_path / "a" / "hypernet.safetensors")), load_file(str(tmp_path / "b" / "hypernet.safetensors"))
    assert a.keys() == b.keys() and all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)


def test_preference_grid() -> None:
    from modnas.toolkit.search.readout import preference_grid

    g = preference_grid(2, 24)
    assert g.shape == (24, 2) and np.allclose(g.sum(axis=1), 1.0) and np.all(g > 0)
    assert np.all(np.diff(g[:, 0]) < 0)
    g3 = preference_grid(3, 24)
    assert g3.shape[1] == 3 and len(g3) <= 24 and np.allclose(g3.sum(axis=1), 1.0)


def test_bad_config_is_one_line_bad_input(table_costs: dict[str, LinearCost], tmp_path: Path) -> None:
    from modnas.toolkit.search.api import run_search

    with pytest.raises(BadInput, match="accuracy"):
        run_search([table_costs["pixel3"]], accuracy="oracle", out=tmp_path / "x")
    with pytest.raises(BadInput, match="objectives"):
        run_search([table_costs["pixel3"]], objectives=["latency"], out=tmp_path / "x")
    with pytest.raises(BadInput, match="energy"):
        run_search([table_costs["pixel3"]], objectives=["error", "latency", "energy"], out=tmp_path / "x")


class _FakeDeviceCost:
    """Another cost model written to the protocol alone (as DeviceCost is), with its own margin."""

    def __init__(self, inner: LinearCost) -> None:
        self.name, self.embedding, self._inner = "fake:" + inner.name, inner.embedding, inner

    def predict(self, archs: list[str]) -> np.ndarray:
        return self._inner.predict(archs)

    def torch_cost(self, onehot):  # type: ignore[no-untyped-def]
        return self._inner.torch_cost(onehot)

    def minmax(self) -> tuple[float, float]:
        return self._inner.minmax()

    def margin(self, quantile: float = 0.9) -> float:
        return 0.07


def test_three_objectives_and_device_cost_shape(tmp_path: Path) -> None:
    from modnas.toolkit.search.api import run_search
    from modnas.toolkit.search.readout import pareto, select
    from modnas.toolkit.search.run import load_run

    rng = np.random.default_rng(2)
    lat = [LinearCost(f"d{i}", np.abs(rng.normal(size=30)) * 0.2, 0.0, rng.random(10), 0.05) for i in range(2)]
    energy = [LinearCost(f"d{i}", np.abs(rng.normal(size=30)) * 0.3, 1.0, m.embedding, 0.05) for i, m in enumerate(lat)]
    assert all(isinstance(_FakeDeviceCost(m), CostModel) for m in lat)
    res = run_search([_FakeDeviceCost(m) for m in lat], objectives=["error", "latency", "energy"],
                     energy_devices=energy, epochs=1, steps_per_epoch=3, out=tmp_path / "run", plots=False)
    assert res["objectives"] == ["error", "latency", "energy"]
    run = load_run(res["run"])
    front = pareto(run, _FakeDeviceCost(lat[0]), preferences=12, energy_cost=energy[0])
    assert front and set(front[0]["predicted"]) == {"error", "latency_ms", "energy_mj"}
    assert all(len(r["preference"]) == 3 for r in front)
    with pytest.raises(BadInput, match="energy"):
        pareto(run, _FakeDeviceCost(lat[0]))
    pick = select(run, _FakeDeviceCost(lat[0]), budget_ms=1e9)
    assert pick["margin"] == pytest.approx(0.07)


def test_readout_spreads_to_at_most_k_distinct_nondominated(run_dir: Path, table_costs: dict[str, LinearCost]) -> None:
    from modnas.toolkit.pareto import hypervolume, nondominated_mask
    from modnas.toolkit.search.readout import pareto, preference_grid, spread
    from modnas.toolkit.search.run import load_run
    from modnas.toolkit.search.topk import TOPK_PREFERENCES

    run = load_run(run_dir)
    device = table_costs["samsung_a50"]
    costs = {"latency": device}
    for k in (3, 24):
        for kw in ({}, {"predictor_only": True}):
            front = pareto(run, device, preferences=k, **kw)
            archs = [r["arch"] for r in front]
            assert 1 <= len(front) <= k and len(set(archs)) == len(archs)
            pts = np.array([[r["predicted"]["error"], r["predicted"]["latency_ms"]] for r in front])
            assert nondominated_mask(pts).all()
            # from the fine grid: the oversampled one (predictor-only), the top-k read-out's otherwise
            grid = preference_grid(2, k * 16 if kw else max(k, TOPK_PREFERENCES))
            assert all(np.isclose(grid, r["preference"]).all(axis=1).any() for r in front)
    # the scalarisation's minimisers reach further than the plain 24-preference grid
    assert len(pareto(run, device, 24, predictor_only=True)) > 3
    # greedy hypervolume picks beat the first k non-dominated candidates of a large pool
    pool = get_space("nb201").sample(400, seed=4)
    prefs = np.full((len(pool), 2), 0.5)
    everything, _ = spread(run, costs, pool, prefs, 10 ** 6)
    picked, _ = spread(run, costs, pool, prefs, 5)
    assert len(everything) > 5 and len(picked) == 5 and set(picked) <= set(everything)

    def hv(archs: list[str]) -> float:
        f = np.stack([run.predict_error(archs), device.predict(archs)], axis=1)
        all_f = np.stack([run.predict_error(everything), device.predict(everything)], axis=1)
        lo, hi = all_f.min(axis=0), all_f.max(axis=0) * 1.05
        return hypervolume((f - lo) / (hi - lo))

    assert hv(picked) > hv(everything[:5])


def test_select_pool_includes_the_spread_readout(run_dir: Path, table_costs: dict[str, LinearCost]) -> None:
    from modnas.toolkit.search.readout import pareto, select
    from modnas.toolkit.search.run import load_run

    run = load_run(run_dir)
    device = table_costs["samsung_a50"]
    front = pareto(run, device, 24)
    for row in front:
        budget = row["predicted"]["latency_ms"] * 1.06 + 1e-9
        pick = select(run, device, budget, margin=0.05, refine_rounds=0)
        assert pick["predicted"]["error"] <= row["predicted"]["error"] + 1e-9


def test_preferences_move_the_shipped_runs_argmax() -> None:
    """On one device, neighbouring preferences give different architectures, and not only at one
    end of the preference range."""
    from modnas.toolkit.search.readout import preference_grid
    from modnas.toolkit.search.run import load_run

    run = load_run(None, "nb201")
    grid = preference_grid(2, 96)
    devices = run.meta["devices"]
    for dev in (devices[0], devices[len(devices) // 2], devices[-1]):
        archs = run.archs(grid, np.asarray(dev["embedding"], dtype=np.float32))
        changes = [i for i in range(1, len(archs)) if archs[i] != archs[i - 1]]
        assert len(set(archs)) >= 5, dev["name"]
        assert len({i * 3 // len(grid) for i in changes}) >= 2, (dev["name"], changes)
