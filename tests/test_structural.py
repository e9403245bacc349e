"""The structural device model: kernel counts of the spaces (checked against the exported graphs), the weighted
ridge fit with its exact leave-one-out, and onboarding a board whose latency is a sum of kernel costs."""
from __future__ import annotations

import collections
import io
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modnas.toolkit.cli import main
from modnas.toolkit.prediction import structural
from modnas.toolkit.spaces import get_space, space_names
from modnas.toolkit.spaces.kernels import EMPTY, KernelSpace

NB201 = get_space("nb201")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _usable(space: Any) -> list[str]:
    archs = space.all_archs()
    return [a for a, ok in zip(archs, space.usable(archs)) if ok]


def _additive_costs(names: list[str], rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(0.001, 0.05, len(names))


# -- 1a: the fit ----------------------------------------------------------------------------------------------
def _brute_loo(counts: np.ndarray, y: np.ndarray, prior: np.ndarray, lam: float) -> np.ndarray:
    """Leave-one-out by refitting without each point: minimise sum_j (1 - pred_j / y_j)^2 + lam * |scaled deviation|^2
    (the deviations from ``alpha * prior`` scaled by the spread of their relative counts over all points, the
    constant and ``alpha`` left free), then predict the point left out."""
    n = len(y)
    rel = counts / y[:, None]
    scale = rel.std(axis=0)
    use = scale > 1e-12 * max(1.0, float(np.abs(rel).max()))
    design = np.hstack([np.column_stack([np.ones(n), counts @ prior]) / y[:, None], rel[:, use] / scale[use]])
    penalty = np.sqrt(np.r_[1e-9, 1e-9, np.full(int(use.sum()), lam)])
    out = np.empty(n)
    for i in range(n):
        keep = np.arange(n) != i
        a = np.vstack([design[keep], np.diag(penalty)])
        b = np.r_[np.ones(n - 1), np.zeros(len(penalty))]
        w = np.linalg.lstsq(a, b, rcond=None)[0]
        out[i] = y[i] * float(design[i] @ w)
    return out


def test_fit_recovers_an_additive_device_and_its_loo_is_a_refit() -> None:
    rng = np.random.default_rng(7)
    usable = _usable(NB201)
    pick = rng.permutation(len(usable))
    train, held = [usable[i] for i in pick[:40]], [usable[i] for i in pick[40:240]]
    names = NB201.kernel_names()
    cost = _additive_costs(names, rng)
    x_train, x_held = NB201.kernel_counts(train), NB201.kernel_counts(held)
    y_train, y_held = 0.4 + x_train @ cost, 0.4 + x_held @ cost
    prior = np.ones(len(names))  # a prior that is wrong in proportion: the data must correct it

    got = structural.fit(names, x_train, y_train, {"flat": prior})
    assert got is not None
    model, loo, errors = got
    assert model.names == names and model.prior == "flat" and model.ridge in structural.RIDGE_GRID
    assert set(errors) == {"flat"}
    np.testing.assert_allclose(model.predict(x_held), y_held, rtol=5e-3)
    # the error the fit reports is that of its leave-one-out predictions
    assert errors["flat"] == pytest.approx(float(np.mean(np.abs(np.log(loo) - np.log(y_train)))), rel=1e-9)
    np.testing.assert_allclose(loo, _brute_loo(x_train, y_train, prior, model.ridge), rtol=1e-6)

    # with noise the leave-one-out predictions are far from the fitted ones: still exactly a refit
    noisy = y_train * np.exp(rng.normal(0.0, 0.05, len(y_train)))
    model, loo, _ = structural.fit(names, x_train, noisy, {"flat": prior})
    brute = _brute_loo(x_train, noisy, prior, model.ridge)
    assert np.max(np.abs(brute / noisy - 1)) > 1e-3  # a test that can tell a refit from the fit
    np.testing.assert_allclose(loo, brute, rtol=1e-6)
    fitted = model.predict(x_train)
    assert np.mean(np.abs(loo - noisy)) > np.mean(np.abs(fitted - noisy))  # out of sample is worse than in


def test_fit_needs_enough_points_and_the_residual_form_needs_the_predictor() -> None:
    names = NB201.kernel_names()
    archs = _usable(NB201)[:structural.MIN_POINTS - 1]
    counts = NB201.kernel_counts(archs)
    assert structural.fit(names, counts, 1.0 + counts.sum(1), {"flat": np.ones(len(names))}) is None
    model = structural.Structural(names, [0.01] * len(names), 0.5, predictor_weight=0.3, prior="residual")
    with pytest.raises(Exception, match="predictor"):
        model.predict(counts)
    np.testing.assert_allclose(model.predict(counts, np.ones(len(archs))), 0.8 + counts.sum(1) * 0.01)
    assert structural.Structural.from_dict(model.to_dict()) == model


# -- 1b: NB201 kernel counts against the exported graph -------------------------------------------------------
DEAD_EDGE = "|nor_conv_3x3~0|+|nor_conv_3x3~0|none~1|+|nor_conv_1x1~0|nor_conv_3x3~1|none~2|"  # node 2 unused
ZERO_NODE = "|none~0|+|skip_connect~0|nor_conv_3x3~1|+|nor_conv_1x1~0|none~1|skip_connect~2|"  # node 1 is x * 0
COUNTED = {"Conv": ("conv3x3", "conv1x1"), "Mul": ("zero",), "Add": ("add",)}


def _graph_ops(arch: str) -> collections.Counter:
    import onnx
    import torch

    buf = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(NB201.build(arch).eval(), (torch.zeros(NB201.input_shape(arch)),), buf, dynamo=False,
                          opset_version=17)
    return collections.Counter(node.op_type for node in onnx.load_from_string(buf.getvalue()).graph.node)


def _kernel_sums(arch: str, kinds: tuple[str, ...]) -> float:
    row = dict(zip(NB201.kernel_names(), NB201.kernel_counts([arch])[0]))
    return sum(v for name, v in row.items() if name.split("@")[0] in kinds)


def test_nb201_kernel_counts_are_what_the_exported_network_runs() -> None:
    from modnas.toolkit.spaces.nb201.cell import OPS

    dead_idx = NB201.to_indices(DEAD_EDGE)
    convs_on_edges = sum(OPS[i] in ("nor_conv_3x3", "nor_conv_1x1") for i in dead_idx)
    assert _kernel_sums(DEAD_EDGE, COUNTED["Conv"]) < 15 * convs_on_edges  # the dead conv is pruned ...
    assert _kernel_sums(ZERO_NODE, ("zero",)) > 0  # ... and a zero node is counted
    archs = [DEAD_EDGE, ZERO_NODE] + NB201.reference_archs()
    fixed: dict[str, float] = {}
    for arch in archs:
        ops = _graph_ops(arch)
        for op, kinds in COUNTED.items():
            extra = ops.get(op, 0) - _kernel_sums(arch, kinds)
            fixed.setdefault(op, extra)  # the stem, reductions and head: the same for every cell
            assert extra == fixed[op] >= 0, (arch, op, ops.get(op, 0))
    assert fixed["Mul"] == 0 and fixed["Conv"] > 0


# The ReLU in front of a convolution and an average pool are parameter-free: the exporter merges two of them that
# read the same tensor, and a node reached by one skip edge is the same tensor as its source.
ALIASED = ["|skip_connect~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|none~0|none~1|skip_connect~2|",  # ReLU(x) twice
           "|avg_pool_3x3~0|+|avg_pool_3x3~0|none~1|+|avg_pool_3x3~0|skip_connect~1|skip_connect~2|"]  # pool(x) x3


def test_nb201_relu_and_pool_counts_follow_shared_tensors() -> None:
    fixed = {"Relu": 5, "AveragePool": 2}  # head + reductions (ReLU), the reductions' shortcuts (pool)
    kinds = {"Relu": ("relu",), "AveragePool": ("avgpool",)}
    got = {arch: {op: _graph_ops(arch).get(op, 0) - _kernel_sums(arch, kinds[op]) for op in kinds}
           for arch in ALIASED}
    assert all(g == fixed for g in got.values()), got


# -- 1c: every registered space ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", space_names())
def test_kernel_counts_and_kernel_networks_of_every_space(name: str, tmp_path: Path) -> None:
    space = get_space(name)
    names = space.kernel_names()
    archs = space.sample(24, seed=3)
    counts = space.kernel_counts(archs)
    assert counts.shape == (len(archs), len(names)) and len(set(names)) == len(names)
    assert np.all(np.isfinite(counts)) and np.all(counts >= 0)
    assert any(not np.array_equal(counts[0], row) for row in counts[1:])
    np.testing.assert_array_equal(space.kernel_counts(archs[:3]), counts[:3])  # a row is the arch's alone

    kspace = KernelSpace(space)
    assert kspace.name == f"{name}.kernels" and kspace.all_archs() == [EMPTY] + names
    assert kspace.measurable == (space.kernel_network(names[0]) is not None)
    if not kspace.measurable:
        return
    import onnxruntime as ort

    from modnas.exporters.onnx import export_onnx

    for kernel in kspace.all_archs():
        shape = kspace.input_shape(kernel)
        path = tmp_path / f"k{kspace.all_archs().index(kernel)}.onnx"
        export_onnx(kspace.build(kernel), shape, path)  # checks onnxruntime against PyTorch
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        feed = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        (out,) = session.run(None, {session.get_inputs()[0].name: feed})
        assert out.shape == shape and np.all(np.isfinite(out)), kernel  # every kernel keeps its tensor's shape


# -- 1d: a board whose latency is a sum of kernel costs -------------------------------------------------------
def _run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, Any, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, (json.loads(out) if out.strip() else None), err


def _mape(pred: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean(np.abs(np.asarray(pred) / truth - 1.0)))


def test_onboarding_an_additive_board_keeps_the_structural_model(tmp_path: Path, monkeypatch, capsys) -> None:
    from modnas.toolkit.data.replay_tables import write_device
    from modnas.toolkit.prediction.device_cost import device_cost, device_from_store
    from modnas.toolkit.store import Store

    monkeypatch.setenv("MODNAS_HOME", str(tmp_path / "home"))
    names = NB201.kernel_names()
    # pooling dear, convolutions cheap: nothing like the devices the predictor learned from
    per_kernel = {"conv3x3": 0.002, "conv1x1": 0.0005, "relu": 0.0004, "avgpool": 0.08, "identity": 0.0001,
                  "add": 0.001, "zero": 0.003}
    per_stage = {"16x32": 1.0, "32x16": 0.6, "64x8": 0.45}
    costs = np.array([per_kernel[n.split("@")[0]] * per_stage[n.split("@")[1]] for n in names])
    archs = NB201.all_archs()
    table = dict(zip(archs, 0.7 + NB201.kernel_counts(archs) @ costs))
    dev = write_device(tmp_path / "boards", "additive", table, noise=0.0, measurement={"min_runs": 5, "repeats": 2})

    code, doc, err = _run(capsys, "onboard", str(dev), "--extra", "20", "--json", "--quiet")
    assert code == 0, err
    assert doc["extra"] == 20 and doc["fit"]["measurements"] == 30
    assert doc["fit"]["parts"]["structural"] is True and doc["fit"]["structural_prior"]
    assert doc["fit"]["loo_mape"] < 1.0  # % on the board's own points

    with Store(tmp_path / "home" / "modnas.db") as store:
        values = store.values("additive", "nb201", "latency")
        rng = np.random.default_rng(11)
        rest = [a for a in _usable(NB201) if a not in values]
        other = [rest[i] for i in rng.choice(len(rest), 200, replace=False)]
        truth = np.array([table[a] for a in other])
        stored = device_from_store(store, "additive", NB201)
        assert stored.structural is not None
        structural_pred = stored.predict(other)
        without = device_cost("additive", dict(values), NB201, structural=False)
        assert without.structural is None and without.fit["parts"]["structural"] is False
        plain_pred = without.predict(other)
    archs_file = tmp_path / "other.txt"
    archs_file.write_text("\n".join(other) + "\n")
    code, predicted, err = _run(capsys, "predict", "--device", "additive", "--archs", str(archs_file), "--json")
    assert code == 0, err
    rows = predicted if isinstance(predicted, list) else predicted["rows"]
    cli_pred = np.array([row["value"] for row in rows])
    assert [row["arch"] for row in rows] == other
    np.testing.assert_allclose(cli_pred, structural_pred, rtol=1e-9)
    np.testing.assert_allclose(structural_pred, truth, rtol=0.01)
    assert _mape(plain_pred, truth) >= 3 * _mape(structural_pred, truth), (_mape(plain_pred, truth),
                                                                             _mape(structural_pred, truth))
