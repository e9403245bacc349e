"""The hardware-conditioned predictor: branches, gradients, tiny fits, persistence, the service."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from modnas.toolkit.spaces.nb201 import tables as benchdata

from modnas.toolkit.data import groups as hwgroups
from modnas.toolkit.prediction import calibration, predictors, evaluation
from modnas.toolkit.errors import BadInput
from modnas.toolkit.prediction.device_cost import device_cost, device_from_store, device_from_table
from modnas.toolkit.prediction.nets import ARCH_BRANCHES, CostNet
from modnas.toolkit.spaces import get_space

TINY = {"epochs": 6, "per_device": 128, "batch": 256, "hidden": 32, "hw_hidden": 16, "head_hidden": 32}
HELD = "hw_nas_bench_360:raspberrypi5:onnx_cifar100"


@pytest.fixture(scope="module")
def space():
    return get_space("nb201")


@pytest.fixture(scope="module")
def table(data_dir: Path) -> benchdata.DeviceTable:
    if not (data_dir / "hw_nas_bench_360").is_dir():
        pytest.skip("benchmark data not available")
    return benchdata.load_table(data_dir, "latency")


@pytest.fixture(scope="module")
def tiny(data_dir: Path, table: benchdata.DeviceTable, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("pred") / "tiny"
    # a few table devices: HELP and Eagle only (the Raspberry Pi 5 is never seen)
    held = [k for k in table.keys if not k.startswith(("help:", "eagle:"))]
    res = predictors.fit_predictor(data_dir, out, held_out=held, config=TINY, seed=3, tables={"latency": table})
    return res


@pytest.mark.parametrize("branch", sorted(ARCH_BRANCHES))
def test_gradient_reaches_soft_architecture(branch: str, space) -> None:
    torch.manual_seed(0)
    net = CostNet(branch, space.onehot_dim, 10, 16, 8, 16, "nb201")
    logits = torch.randn(4, space.onehot_dim, requires_grad=True)
    soft = torch.softmax(logits.view(4, 6, 5), dim=-1).view(4, -1)
    out = net(soft, torch.rand(4, 10))
    assert out.shape == (4,)
    out.sum().backward()
    assert logits.grad is not None and torch.count_nonzero(logits.grad) > 0
    # straight-through: hard forward, soft backward
    soft = torch.softmax(logits.view(4, 6, 5), dim=-1).view(4, -1)
    hard = torch.nn.functional.one_hot(soft.view(4, 6, 5).argmax(-1), 5).float().view(4, -1)
    st = hard + soft - soft.detach()
    logits.grad = None
    net(st, torch.rand(4, 10)).sum().backward()
    assert torch.count_nonzero(logits.grad) > 0


def test_gcn_needs_a_cell_graph_and_branches_are_registered(space) -> None:
    with pytest.raises(BadInput, match="cell graph"):
        CostNet("gcn", 40, 10, 8, 8, 8, "ofa_mbv3")
    with pytest.raises(BadInput, match="unknown architecture branch"):
        CostNet("transformer", space.onehot_dim, 10, 8, 8, 8, "nb201")
    assert CostNet("mlp", 40, 10, 8, 8, 8, "no_graph_space")(torch.rand(2, 40), torch.rand(2, 10)).shape == (2,)


def test_tiny_fit_transfers_to_held_out_board(tiny: dict[str, Any], table, data_dir: Path, space) -> None:
    pred = tiny["predictor"]
    assert not any(hwgroups.hardware_group(k) == "raspberrypi5" for k in tiny["devices"])
    dev = device_from_table(data_dir, HELD, predictor=pred, table=table)
    row = table.row(HELD)
    conn = benchdata.connected_mask() & np.isfinite(row)
    idx = np.flatnonzero(conn)[::7]
    got = dev.predict([space.arch_at(int(i)) for i in idx])
    rho = spearmanr(got, row[idx])[0]
    assert rho > 0.6
    # calibrated values are in the device's range, not the training average's
    assert 0.3 < np.median(got) / np.median(row[idx]) < 3.0


def test_save_load_round_trip(tiny: dict[str, Any], space) -> None:
    pred = tiny["predictor"]
    meta = json.loads(Path(tiny["path"]).with_suffix(".json").read_text())
    for field in ("space", "metric", "references", "training_devices", "data_digest", "seed", "config", "rebuild"):
        assert field in meta
    assert meta["references"] == space.reference_archs()
    assert len(meta["data_digest"]) == 64
    back = predictors.load(tiny["path"])
    archs = space.sample(50, seed=1)
    emb = np.linspace(0, 1, 10)
    np.testing.assert_allclose(back.predict(archs, emb), pred.predict(archs, emb), rtol=1e-6)


def test_fit_is_reproducible_from_seed(data_dir: Path, table, space) -> None:
    cfg = dict(TINY, epochs=1, per_device=16)
    keys = [k for k in table.keys if not k.startswith("help:")]
    tabs = {"latency": table}
    a = predictors.fit_predictor(data_dir, None, held_out=keys, config=cfg, seed=5, tables=tabs)["predictor"]
    b = predictors.fit_predictor(data_dir, None, held_out=keys, config=cfg, seed=5, tables=tabs)["predictor"]
    archs = space.sample(20, seed=2)
    emb = np.linspace(0, 1, 10)
    np.testing.assert_array_equal(a.predict(archs, emb), b.predict(archs, emb))


def test_torch_cost_matches_predict_and_is_differentiable(tiny: dict[str, Any], space) -> None:
    refs = space.reference_archs()
    values = {a: 2.0 + i for i, a in enumerate(refs)}
    dev = device_cost("bench", values, space, predictor=tiny["predictor"])
    archs = space.sample(16, seed=4)
    onehot = torch.from_numpy(space.encode(archs)).requires_grad_(True)
    cost = dev.torch_cost(onehot)
    np.testing.assert_allclose(cost.detach().numpy(), dev.predict(archs), rtol=1e-4)
    cost.sum().backward()
    assert torch.count_nonzero(onehot.grad) > 0
    lo, hi = dev.minmax()
    assert lo < hi and lo <= float(cost.detach().min()) and float(cost.detach().max()) <= hi


class FakeStore:
    def __init__(self, values: dict[str, float]) -> None:
        self._v = values

    def values(self, device: str, space: str, metric: str) -> dict[str, float]:
        return dict(self._v) if metric == "latency" else {}


def test_store_devices_need_all_references(tiny: dict[str, Any], space) -> None:
    refs = space.reference_archs()
    store = FakeStore({a: 1.0 + i for i, a in enumerate(refs[:6])})
    with pytest.raises(BadInput, match=r"4 of 10 reference.*modnas onboard") as err:
        device_from_store(store, "pi", "nb201", "latency", predictor=tiny["predictor"])
    assert "\n" not in str(err.value)
    with pytest.raises(BadInput, match="no energy measurements"):
        device_from_store(store, "pi", "nb201", "energy", predictor=tiny["predictor"])
    with pytest.raises(BadInput, match="not nb201/energy"):
        device_cost("pi", {a: 1.0 for a in refs}, space, "energy", predictor=tiny["predictor"])
    bad = {a: 1.0 + i for i, a in enumerate(refs)}
    bad[refs[3]] = -2.0
    with pytest.raises(BadInput, match="positive"):
        device_cost("pi", bad, space, predictor=tiny["predictor"])
    full = FakeStore({a: 1.0 + i for i, a in enumerate(refs)})
    dev = device_from_store(full, "pi", "nb201", "latency", predictor=tiny["predictor"])
    assert dev.calibration.n == 10 and dev.embedding.shape == (10,)


def test_store_measurements_train_and_finetune(tiny: dict[str, Any], table, space) -> None:
    row = table.row("help:gold_6240")
    idx = [space.index(a) for a in space.reference_archs()] + list(range(0, 15625, 97))
    extra = {"lab-board": {space.arch_at(i): float(row[i]) for i in idx if np.isfinite(row[i])}}
    res = predictors.fit_predictor(None, None, extra=extra, config=dict(TINY, epochs=2), seed=0)
    assert res["devices"] == ["store:lab-board"]
    pred = tiny["predictor"]
    archs = list(extra["lab-board"])
    meas = np.array(list(extra["lab-board"].values()))
    emb = np.asarray(pred.predict(archs[:1], np.linspace(0, 1, 10)))  # warm path
    assert emb.shape == (1,)
    from modnas.toolkit.prediction.embedding import hardware_embedding

    e = hardware_embedding(extra["lab-board"], space)
    tuned = calibration.finetune(pred, archs, meas, e, steps=30)
    assert tuned is not pred and tuned.meta["finetuned"]["points"] == len(archs)
    before = np.median(np.abs(np.log(calibration.fit(pred.predict(archs, e), meas).apply(pred.predict(archs, e)) / meas)))
    after = np.median(np.abs(np.log(calibration.fit(tuned.predict(archs, e), meas).apply(tuned.predict(archs, e)) / meas)))
    assert after < before
    assert calibration.finetune(pred, archs[:5], meas[:5], e) is pred  # too few points: unchanged


def test_bad_embedding_and_missing_files(tiny: dict[str, Any], space, tmp_path: Path) -> None:
    with pytest.raises(BadInput):
        tiny["predictor"].predict(space.sample(2), np.ones(3))
    with pytest.raises(BadInput):
        tiny["predictor"].predict(space.sample(2), np.full(10, np.nan))
    with pytest.raises(BadInput, match="not found"):
        predictors.load(tmp_path / "absent")
    with pytest.raises(BadInput, match="no predictor for space"):
        predictors.load_default("nb201", "power")


@pytest.mark.parametrize("metric", ["latency", "energy"])
def test_shipped_predictor_ranks_a_table_device(metric: str, data_dir: Path, space) -> None:
    pred = predictors.load_default("nb201", metric)
    assert pred.metric == metric and pred.meta["rebuild"].startswith("modnas predictor fit")
    tab = benchdata.load_table(data_dir, metric)
    key = tab.keys[0]
    dev = device_from_table(data_dir, key, metric=metric, predictor=pred, table=tab)
    row = tab.row(key)
    idx = np.flatnonzero(benchdata.connected_mask() & np.isfinite(row))[::37]
    got = dev.predict([space.arch_at(int(i)) for i in idx])
    assert spearmanr(got, row[idx])[0] > 0.8


def test_leave_group_out_evaluation_reports_every_baseline(data_dir: Path, table) -> None:
    group = hwgroups.hardware_group("help:gold_6240")
    res = evaluation.leave_groups_out(data_dir, folds=[[group]], config=dict(TINY, epochs=1, per_device=32))
    devices = [e["device"] for e in res["rows"]]
    assert devices == ["help:gold_6240"]
    for e in res["rows"]:
        assert hwgroups.hardware_group(e["nearest_device"]) != group
        for method in ("predictor", "uncalibrated", "flops", "nearest"):
            assert -1 <= e[method]["spearman"] <= 1 and e[method]["n"] > 10000
        # calibration changes absolute error, never the ranking
        assert e["predictor"]["spearman"] == pytest.approx(e["uncalibrated"]["spearman"])
    assert "mean" in res["markdown"] and res["mean"]["predictor"]["mdape"] > 0
    with pytest.raises(BadInput):
        evaluation.leave_groups_out(data_dir, space="ofa_mbv3", metric="energy")  # OFA: latency only


def test_a_damaged_user_predictor_is_an_error_not_a_silent_fallback(modnas_home: Path, data_dir: Path) -> None:
    """`predictor fit` writes to $MODNAS_HOME/predictors, which every command then reads first: a
    half-written pair there must be one clear error, never the shipped predictor or the stand-in."""
    from modnas.toolkit.search.api import resolve_devices

    path = predictors.user_predictor_path("nb201", "latency")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a predictor")
    assert predictors.has_default("nb201", "latency")
    with pytest.raises(BadInput, match="not found"):
        predictors.load_default("nb201", "latency")
    with pytest.raises(BadInput):
        resolve_devices(["help:pixel3"], data_dir)
