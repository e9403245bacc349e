"""The device model: extra architectures chosen where they help, the fit to a board's own points,
the conformal budget margin, and `onboard`'s `fit` on a local board."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from modnas.toolkit.prediction import calibration, device_model, predictors
from modnas.toolkit.cli import main
from modnas.toolkit.prediction.device_cost import DeviceCost, device_cost, device_from_store
from modnas.toolkit.spaces import get_space
from modnas.toolkit.store import Store

QUICK = {"warmup_s": 0.02, "min_runs": 3, "min_time_s": 0.02, "repeats": 2, "cooldown_s": 0.0, "timeout_s": 60.0}
SP = get_space("nb201")
PRED = predictors.load_default("nb201", "latency")
EMB = np.array([0.0, 0.12, 0.3, 0.45, 0.5, 0.61, 0.7, 0.8, 0.93, 1.0], np.float32)
POOL = SP.sample(3000, seed=7)


def _counts(archs: list[str], op: str) -> np.ndarray:
    return np.array([a.count(op) for a in archs], np.float64)


def synthetic(archs: list[str], fixed_ms: float = 0.0) -> np.ndarray:
    """A device the predictor knows the shape of (its own prediction for EMB, times 3) plus a per-pool
    fixed cost that no training device had."""
    return 3.0 * PRED.predict(archs, EMB) + fixed_ms * _counts(archs, "avg_pool_3x3")


def _ref_cost(fixed_ms: float = 0.0) -> Any:
    refs = SP.reference_archs()
    return device_cost("synthetic", dict(zip(refs, synthetic(refs, fixed_ms))), SP, "latency", PRED)


def _error(archs: list[str]) -> np.ndarray:
    """A stand-in accuracy source: more convolutions, lower error."""
    return 20.0 - 2.0 * _counts(archs, "nor_conv_3x3") - 0.5 * _counts(archs, "nor_conv_1x1")


def test_extras_are_deterministic_spread_new_and_not_random() -> None:
    cost = _ref_cost()
    n = 12
    picks = device_model.choose_extras(cost, n, seed=3, error_fn=_error, candidates=POOL)
    assert picks == device_model.choose_extras(cost, n, seed=3, error_fn=_error, candidates=POOL)
    assert len(set(picks)) == n and not set(picks) & set(cost.measured)
    # one pick in each of n equal-count bins of predicted latency over the candidates
    pool = [a for a in POOL if a not in cost.measured]
    lat = cost.predict(pool)
    edges = np.quantile(lat, np.linspace(0, 1, n + 1))
    bins = np.clip(np.searchsorted(edges, cost.predict(picks), side="right") - 1, 0, n - 1)
    assert len(set(bins.tolist())) >= n - 1
    rand = [pool[i] for i in np.random.default_rng(3).choice(len(pool), n, replace=False)]
    assert len(set(picks) & set(rand)) <= 1
    # the front-seeking turns pick near the predicted front more often than random does
    gap = dict(zip(pool, device_model.front_gap(_error(pool), np.log(lat))))
    assert np.mean([gap[a] for a in picks[::device_model.FRONT_EVERY]]) < np.mean([gap[a] for a in rand])
    # already measured architectures are never chosen again
    more = device_cost("synthetic", {**cost.measured, **dict(zip(picks, synthetic(picks)))}, SP, "latency", PRED,
                       model=False)
    again = device_model.choose_extras(more, n, seed=3, error_fn=_error, candidates=POOL)
    assert not set(again) & set(picks)


def test_fit_learns_a_per_op_fixed_cost_the_predictor_cannot_know() -> None:
    archs = SP.reference_archs() + [a for a in POOL[:60] if a not in SP.reference_archs()][:20]
    measured = synthetic(archs, fixed_ms=0.6)
    fit = device_model.fit_device(PRED, archs, measured, EMB, finetune=False)
    errs = fit.report["held_out_error"]
    assert fit.report["parts"]["fixed_cost"] and errs["fixed_cost"] < 0.7 * errs["calibration"]
    assert fit.report["measurements"] == 30 and fit.report["cv"] == "loo"
    only_cal = device_model.fit_device(PRED, archs, measured, EMB, fixed_cost=False, finetune=False)
    assert fit.report["loo_mdape"] < only_cal.report["loo_mdape"]
    # and it generalises: fresh architectures are predicted better through the stored cost model
    fresh = POOL[100:600]
    full = DeviceCost("d", SP, "latency", PRED, EMB, fit.calibration, {}, fit.fixed, fit.report)
    cal_only = device_cost("d", dict(zip(archs, measured)), SP, "latency", PRED, model=False)
    truth = synthetic(fresh, fixed_ms=0.6)
    ape = lambda c: np.median(np.abs(c.predict(fresh) - truth) / truth)  # noqa: E731
    assert full.fixed is not None and ape(full) < 0.7 * ape(cal_only)
    # the fixed cost is linear in the one-hot, so the differentiable cost agrees with predict()
    import torch

    x = torch.from_numpy(SP.encode(fresh[:5]))
    assert np.allclose(full.torch_cost(x).detach().numpy(), full.predict(fresh[:5]), rtol=1e-4)


def test_no_fixed_cost_is_kept_where_there_is_none() -> None:
    archs = SP.reference_archs() + [a for a in POOL[:40] if a not in SP.reference_archs()][:20]
    noise = np.exp(np.random.default_rng(0).normal(0, 0.02, len(archs)))
    fit = device_model.fit_device(PRED, archs, synthetic(archs) * noise, EMB, finetune=False)
    assert not fit.report["parts"]["fixed_cost"] and fit.fixed is None
    assert fit.report["loo_mdape"] < 5.0


def test_conformal_margin_covers_about_one_minus_alpha() -> None:
    rng = np.random.default_rng(0)
    covered = []
    for _ in range(400):
        resid = rng.normal(0.0, 0.1, 20)  # out-of-sample log over-runs seen on the board
        m = calibration.conformal_margin(resid, 0.9)
        new = rng.normal(0.0, 0.1, 200)
        covered.append(np.mean(np.exp(new) <= 1 + m))
    assert 0.88 <= float(np.mean(covered)) <= 0.95
    assert calibration.conformal_margin([], 0.9) == 0.0
    assert calibration.conformal_margin([-0.2, -0.1], 0.9) == 0.0  # always over-predicted: no margin
    # with few points the conformal rank is the largest over-run
    assert calibration.conformal_margin([0.0, 0.1, 0.2], 0.9) == pytest.approx(np.exp(0.2) - 1)


def test_margin_of_a_fitted_device_covers_fresh_architectures() -> None:
    rng = np.random.default_rng(1)
    fresh = POOL[1000:2000]
    cover = []
    for seed in range(4):
        archs = SP.reference_archs() + POOL[200 + 20 * seed:220 + 20 * seed]
        truth = synthetic(archs + fresh) * np.exp(rng.normal(0, 0.05, len(archs) + len(fresh)))
        fit = device_model.fit_device(PRED, archs, truth[:len(archs)], EMB, finetune=False)
        cost = DeviceCost("d", SP, "latency", PRED, EMB, fit.calibration, {}, fit.fixed, fit.report)
        assert len(cost.calibration.loo_residuals) == len(archs)
        cover.append(np.mean(truth[len(archs):] <= cost.predict(fresh) * (1 + cost.margin())))
    assert 0.8 <= float(np.mean(cover)) <= 0.99


def test_stored_fit_is_reused_until_measurements_change(tmp_path: Path) -> None:
    archs = SP.reference_archs() + [a for a in POOL[:40] if a not in SP.reference_archs()][:6]
    with Store(tmp_path / "s.db") as store:  # below the fine-tuning threshold: the cheap parts only
        store.import_values("dev", "nb201", "latency", dict(zip(archs, synthetic(archs, 0.6))))
        first = device_from_store(store, "dev", "nb201")
        rec = store.get_calibration("dev", "nb201")
        assert rec["digest"] and rec["fit"]["measurements"] == 16 and rec["fit"]["parts"]["fixed_cost"]
        again = device_from_store(store, "dev", "nb201")
        assert np.allclose(again.predict(POOL[:50]), first.predict(POOL[:50]))
        more = POOL[300:303]
        store.import_values("dev", "nb201", "latency", dict(zip(more, synthetic(more, 0.6))))
        refit = device_from_store(store, "dev", "nb201")
        assert refit.fit["measurements"] == 19
        assert store.get_calibration("dev", "nb201")["digest"] != rec["digest"]


@pytest.mark.slow  # onboard end to end: 13 measurements on this machine (12 s quiet, 80-100 s under load)
def test_onboard_reports_the_fit_on_a_local_board(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("MODNAS_HOME", str(tmp_path / "home"))
    dev = tmp_path / "fitboard.yaml"
    dev.write_text(yaml.safe_dump({"name": "fitboard", "host": "local", "python": sys.executable,
                                   "workdir": str(tmp_path / "work"), "runtime": "onnxruntime", "threads": 1,
                                   "measurement": QUICK}, sort_keys=False))
    code = main(["onboard", str(dev), "--extra", "3", "--json", "--quiet"])
    out, err = capsys.readouterr()
    assert code == 0, err
    doc = json.loads(out)
    fit = doc["fit"]
    assert fit["measurements"] == 13 and 0 <= fit["loo_within_10pct"] <= 1 and fit["loo_mdape"] >= 0
    assert fit["parts"]["calibration"] is True
    assert set(fit["parts"]) == {"calibration", "fixed_cost", "finetune", "structural"}
    refs = set(SP.reference_archs())
    assert len(doc["extra_archs"]) == 3 and not set(doc["extra_archs"]) & refs
    with Store(tmp_path / "home" / "modnas.db") as store:
        assert set(store.values("fitboard", "nb201")) == refs | set(doc["extra_archs"])
        assert store.get_calibration("fitboard", "nb201")["fit"]["measurements"] == 13


def test_finetuning_is_cross_validated_and_kept_only_when_it_helps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(device_model, "FINETUNE_STEPS", (0, 10, 30))
    archs = SP.reference_archs() + [a for a in POOL[:60] if a not in SP.reference_archs()][:14]
    other = np.array([1.0, 0.9, 0.1, 0.5, 0.0, 0.3, 0.8, 0.2, 0.6, 0.4], np.float32)  # a shape EMB does not give
    measured = PRED.predict(archs, other)
    fit = device_model.fit_device(PRED, archs, measured, EMB, fixed_cost=False)
    cv = {int(k): v for k, v in fit.report["finetune_cv"].items()}
    assert set(cv) == {0, 10, 30}
    best = min(cv, key=lambda s: (cv[s], s))
    kept = best > 0 and cv[best] < device_model.FINETUNE_KEEP * cv[0]
    assert fit.report["parts"]["finetune"] == kept and fit.finetune_steps == (best if kept else 0)
    assert fit.report["cv"] == ("4-fold" if kept else "loo")
    # rebuilding from the stored choice gives the same predictions (deterministic for the seed)
    a = device_model.finetuned_predictor(PRED, archs, measured, EMB, 10)
    b = device_model.finetuned_predictor(PRED, archs, measured, EMB, 10)
    assert np.array_equal(a.predict(POOL[:20], EMB), b.predict(POOL[:20], EMB))
    assert not np.allclose(a.predict(POOL[:20], EMB), PRED.predict(POOL[:20], EMB))
