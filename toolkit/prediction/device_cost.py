"""Calibrated cost of architectures on one device: embedding + predictor + calibration.

This is what ``modnas predict``, ``select`` and the search call. A device's reference
measurements give its embedding; the same measurements (plus any others) calibrate the
predictor's output to the device's absolute values.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from modnas.toolkit.prediction.calibration import Calibration
from modnas.toolkit.prediction.structural import Structural
from modnas.toolkit.errors import BadInput
from modnas.toolkit.results import DocList, JsonDoc, internal

MINMAX_SAMPLES = 20000


def _space(space: Any) -> Any:
    from modnas.toolkit.spaces import get_space

    return get_space(space) if isinstance(space, str) else space


@dataclass
class DeviceCost:
    """Cost model of one device (the ``modnas.toolkit.search.costs.CostModel`` protocol); ``predict``
    in ms (latency) or mJ (energy)."""

    name: str
    space: Any
    metric: str
    predictor: Any
    embedding: np.ndarray
    calibration: Calibration
    measured: dict[str, float] = field(default_factory=dict)
    fixed: np.ndarray | None = None  # per-op fixed cost, ms (or mJ) per one-hot entry (modnas.toolkit.prediction.device_model)
    fit: dict[str, Any] = field(default_factory=dict)  # what the device fit kept and its held-out error
    structural: Any = None  # a modnas.toolkit.prediction.structural.Structural where the fit kept it
    _minmax: tuple[float, float] | None = field(default=None, repr=False)

    def predict_onehot(self, onehot: np.ndarray) -> np.ndarray:
        x = np.asarray(onehot, np.float32)
        if self.structural is not None:
            return self._structural([self.space.decode(row) for row in x], x)
        base = np.exp(self.calibration.apply_log(self.predictor.predict_log_onehot(x, self.embedding)))
        if self.fixed is None:
            return base
        from modnas.toolkit.prediction.device_model import FLOOR

        return np.maximum(base + x.astype(np.float64) @ self.fixed, FLOOR * base)

    def predict(self, archs: Sequence[str]) -> np.ndarray:
        """Calibrated values for ``archs`` (any string form the space parses)."""
        if self.structural is not None:
            return self._structural(list(archs), self.space.encode(list(archs)))
        return self.predict_onehot(self.space.encode(list(archs)))

    def _structural(self, archs: list[str], onehot: np.ndarray) -> np.ndarray:
        """The structural model's values (the residual form adds the predictor's raw values)."""
        base = None
        if self.structural.predictor_weight:
            base = np.exp(self.predictor.predict_log_onehot(onehot, self.embedding))
        return self.structural.predict(self.space.kernel_counts(archs), base)

    def torch_cost(self, onehot: Any) -> Any:
        """Calibrated value per row of a soft or straight-through one-hot ``[B, D]``; differentiable. (The
        structural model counts what a network runs, which a soft one-hot does not say: the search's
        gradient comes from the calibrated predictor, its read-out and picks from :meth:`predict`.)"""
        import torch

        emb = torch.as_tensor(self.embedding, dtype=onehot.dtype, device=onehot.device).reshape(1, -1)
        logp = self.predictor.torch_log_forward(onehot, emb.expand(onehot.shape[0], -1))
        base = torch.exp(self.calibration.apply_log(logp))
        if self.fixed is None:
            return base
        from modnas.toolkit.prediction.device_model import FLOOR

        extra = onehot @ torch.as_tensor(self.fixed, dtype=onehot.dtype, device=onehot.device)
        return torch.maximum(base + extra, FLOOR * base)

    def minmax(self) -> tuple[float, float]:
        """Smallest and largest predicted value over the space (all of it where the space is
        enumerable; a seeded sample otherwise)."""
        if self._minmax is None:
            vals = self.predict(self.space.span(MINMAX_SAMPLES))
            self._minmax = (float(vals.min()), float(vals.max()))
        return self._minmax

    def margin(self, quantile: float = 0.9) -> float:
        """The calibration's relative over-run at ``quantile`` (a conformal margin)."""
        return self.calibration.margin(quantile)

    def to_dict(self) -> dict[str, Any]:
        return {"device": self.name, "space": self.space.name, "metric": self.metric,
                "embedding": [float(x) for x in self.embedding], "calibration": self.calibration.to_dict(),
                "measurements": len(self.measured), "fit": self.fit}


def _check_predictor(predictor: Any, space: Any, metric: str) -> Any:
    from modnas.toolkit.prediction import predictors

    pred = predictor if predictor is not None else predictors.load_default(space.name, metric)
    if pred.space_name != space.name or pred.metric != metric:
        raise BadInput(f"predictor is for {pred.space_name}/{pred.metric}, not {space.name}/{metric}")
    return pred


def _canonical_values(name: str, values: dict[str, float], sp: Any, metric: str) -> dict[str, float]:
    canon: dict[str, float] = {}
    for arch, v in values.items():
        x = float(v)
        if not np.isfinite(x) or x <= 0:
            raise BadInput(f"device {name}: measured {metric} of {arch} must be positive and finite, got {x}")
        canon[sp.canonical(arch)] = x
    return canon


def device_cost(name: str, values: dict[str, float], space: Any, metric: str = "latency", predictor: Any = None,
                finetune: bool = False, finetune_min: int = 30, model: bool = True, seed: int = 0,
                stored: dict[str, Any] | None = None, kernels: dict[str, float] | None = None,
                structural: bool = True) -> DeviceCost:
    """A cost model from measured ``{arch: value}``; the reference architectures must be among them.

    ``model`` (default): the device model of :mod:`modnas.toolkit.prediction.device_model` fitted to all the points
    (calibration, per-op fixed cost and fine-tuning, each where it helps held out); ``stored`` is a
    record of an earlier fit of the same points (:meth:`DeviceCost.record`), rebuilt without the
    cross-validation; ``kernels`` are the board's kernel measurements (the structural model's prior),
    ``structural=False`` leaves that model out. ``model=False``: calibration only (``finetune`` forces the old fine-tuning
    from ``finetune_min`` points).
    """
    from modnas.toolkit.prediction import calibration, device_model
    from modnas.toolkit.prediction.embedding import hardware_embedding

    sp = _space(space)
    pred = _check_predictor(predictor, sp, metric)
    canon = _canonical_values(name, values, sp, metric)
    refs = [sp.canonical(r) for r in pred.references]
    missing = [r for r in refs if r not in canon]
    if missing:
        raise BadInput(f"device {name}: {len(missing)} of {len(refs)} reference architectures have no {metric} "
                       f"measurement; run `modnas onboard {name}` or `modnas import FILE --device {name}`")
    emb = hardware_embedding(canon, sp, refs)
    archs = list(canon)
    meas = np.array([canon[a] for a in archs])
    if model and not finetune:
        if stored is not None:
            steps = int(stored.get("finetune_steps", 0))
            tuned = device_model.finetuned_predictor(pred, archs, meas, emb, steps, seed)
            cal = Calibration.from_dict(stored)
            fixed = stored.get("fixed")
            kept = stored.get("structural")
            return DeviceCost(name, sp, metric, tuned, emb, cal, canon,
                              None if fixed is None else np.asarray(fixed, np.float64), dict(stored.get("fit", {})),
                              None if kept is None else Structural.from_dict(kept))
        fitted = device_model.fit_device(pred, archs, meas, emb, seed=seed, kernels=kernels, structural=structural)
        return DeviceCost(name, sp, metric, fitted.predictor, emb, fitted.calibration, canon, fitted.fixed,
                          fitted.report, fitted.structural)
    if finetune and len(archs) >= finetune_min:
        pred = calibration.finetune(pred, archs, meas, emb, min_points=finetune_min)
    cal = calibration.fit(pred.predict(archs, emb), meas)
    return DeviceCost(name, sp, metric, pred, emb, cal, canon)


def record_of(cost: DeviceCost) -> dict[str, Any]:
    """What is stored of a fitted device model: the calibration plus the fit's choices."""
    fixed = None if cost.fixed is None else [float(v) for v in cost.fixed]
    return {**cost.calibration.to_dict(), "fixed": fixed,
            "structural": None if cost.structural is None else cost.structural.to_dict(),
            "finetune_steps": int(cost.predictor.meta.get("finetuned", {}).get("steps", 0)), "fit": cost.fit}


def device_from_store(store: Any, name: str, space: Any = "nb201", metric: str = "latency", predictor: Any = None,
                      finetune: bool = False) -> DeviceCost:
    """The device's measured medians from the results store -> its fitted device model.

    The fit is stored beside the calibration with a digest of the measurements it saw; while the
    measurements are unchanged it is rebuilt from the record, and refitted (and stored again)
    once a campaign has added any.
    """
    from modnas.toolkit.prediction.device_model import measurement_digest

    sp = _space(space)
    values = store.values(name, sp.name, metric)
    if not values:
        raise BadInput(f"device {name} has no {metric} measurements in the store; "
                       f"run `modnas onboard {name}` or `modnas import FILE --device {name}`")
    if finetune:
        return device_cost(name, dict(values), sp, metric, predictor, finetune=True)
    pred = _check_predictor(predictor, sp, metric)
    kernels = board_kernels(store, name, sp, metric)
    digest = measurement_digest(_canonical_values(name, dict(values), sp, metric), pred, kernels)
    get, put = getattr(store, "get_calibration", None), getattr(store, "set_calibration", None)
    rec = get(name, sp.name, metric) if get is not None else None
    stored = rec if rec and rec.get("digest") == digest else None
    cost = device_cost(name, dict(values), sp, metric, pred, stored=stored, kernels=kernels)
    if stored is None and put is not None:
        put(name, sp.name, metric, {**record_of(cost), "digest": digest})
    return cost


def board_kernels(store: Any, name: str, space: Any, metric: str = "latency") -> dict[str, float] | None:
    """The board's kernel measurements of the space (``onboard --kernels``), None when it has none."""
    from modnas.toolkit.spaces.kernels import kernel_space_name

    values = getattr(store, "values", None)
    found = values(name, kernel_space_name(space.name), metric) if values is not None else {}
    return dict(found) or None


def device_from_table(data_dir: str | Path, key: str, space: Any = "nb201", metric: str = "latency",
                      n_extra: int = 0, seed: int = 0, predictor: Any = None, table: Any = None,
                      finetune: bool = False) -> DeviceCost:
    """A benchmark-table device onboarded from its reference values (plus ``n_extra`` random usable
    ones); the table is the space's (``Space.load_table``)."""
    sp = _space(space)
    if n_extra < 0:
        raise BadInput(f"n_extra must not be negative, got {n_extra}")
    pred = _check_predictor(predictor, sp, metric)
    tab = table if table is not None else sp.load_table(data_dir, metric)
    archs = list(tab.archs)
    usable = sp.usable(archs) if n_extra else np.ones(len(archs), bool)
    row = tab.row(key)
    pos = {a: i for i, a in enumerate(archs)}
    ref_idx = [pos[sp.canonical(r)] for r in pred.references if sp.canonical(r) in pos]
    values = {archs[i]: float(row[i]) for i in ref_idx if np.isfinite(row[i])}
    if n_extra:
        ok = np.isfinite(row) & usable
        ok[ref_idx] = False
        cand = np.flatnonzero(ok)
        pick = np.random.default_rng(seed).choice(cand, size=min(n_extra, len(cand)), replace=False)
        values.update({archs[int(i)]: float(row[i]) for i in pick})
    return device_cost(key, values, sp, metric, pred, finetune=finetune)


@dataclass
class Prediction(JsonDoc):
    """One architecture's predicted cost on a device (ms for latency, mJ for energy)."""

    arch: str
    value: float


@dataclass
class Predictions(DocList):
    """``modnas predict``: the predicted cost of each architecture, in the order asked."""

    rows: list[Prediction]
    unit: str = internal("ms")  # ms (latency) or mJ (energy)


def predict_on_device(store: Any, name: str, space: Any, metric: str, archs: Sequence[str],
                      predictor_path: str | Path | None = None) -> Predictions:
    """``modnas predict``: ``archs`` on a stored device, from its embedding and device model (the predictor
    at ``predictor_path`` instead of the default one when given)."""
    from modnas.toolkit.names import check_name
    from modnas.toolkit.prediction import predictors

    pred = predictors.load(predictor_path) if predictor_path else None
    cost = device_from_store(store, check_name(name, "device name"), space, metric, predictor=pred)
    values = cost.predict(list(archs))
    return Predictions([Prediction(a, float(v)) for a, v in zip(archs, values)],
                       unit="mJ" if metric == "energy" else "ms")
