"""Per-device calibration: an affine fit, in log space, of predictions to measurements.

``log(measured - offset) ~ slope * log(predicted) + intercept``. With few points (the 10 reference
measurements) or a degenerate spread, the slope falls back to 1 and only the intercept is fitted.
``offset`` (a fixed per-inference cost, e.g. runtime dispatch on a CPU, in the measured unit) is
0 unless the device has at least ``MIN_POINTS_FOR_OFFSET`` measurements and a leave-one-out check
shows that it predicts better. The residuals (log ratios) give a safety margin for budgets.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np

from modnas.toolkit.errors import BadInput

MIN_POINTS_FOR_SLOPE = 4
MIN_POINTS_FOR_OFFSET = 15
OFFSET_GRID = 16  # candidate offsets between 0 and 90 % of the smallest measurement
SLOPE_RANGE = (0.2, 5.0)


@dataclass
class Calibration:
    """``measured = offset + exp(intercept) * predicted ** slope``; residuals in log space."""

    slope: float = 1.0
    intercept: float = 0.0
    residuals: list[float] = field(default_factory=list)
    n: int = 0
    offset: float = 0.0
    loo_residuals: list[float] = field(default_factory=list)  # out-of-sample, from the device fit

    def apply(self, x: Any) -> np.ndarray:
        arr = np.asarray(x, dtype=np.float64)
        return self.offset + np.exp(self.slope * np.log(np.maximum(arr, 1e-12)) + self.intercept)

    def apply_log(self, logx: Any) -> Any:
        """The calibrated log value from a log prediction (works on numpy arrays and torch tensors)."""
        y = logx * self.slope + self.intercept
        if self.offset <= 0:
            return y
        if isinstance(y, np.ndarray) or np.isscalar(y):
            return np.logaddexp(math.log(self.offset), y)
        import torch

        return torch.logaddexp(torch.full_like(y, math.log(self.offset)), y)

    def margin(self, quantile: float = 0.9) -> float:
        """Relative margin (e.g. 0.04 = 4 %) for budgets: the split-conformal quantile of the over-runs.

        The over-runs are the out-of-sample (leave-one-out) residuals where the device fit left
        them, else the in-sample ones; with ``n`` of them the margin is the
        ``ceil((n + 1) * quantile)``-th smallest (the largest when that exceeds ``n``), so a new
        architecture's over-run stays within it with probability about ``quantile``.
        """
        if not 0 < quantile <= 1:
            raise BadInput(f"margin quantile must be in (0, 1], got {quantile}")
        return conformal_margin(self.loo_residuals or self.residuals, quantile)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Calibration":
        try:
            return cls(slope=float(d["slope"]), intercept=float(d["intercept"]),
                       residuals=[float(r) for r in d.get("residuals", [])], n=int(d.get("n", 0)),
                       offset=float(d.get("offset", 0.0)),
                       loo_residuals=[float(r) for r in d.get("loo_residuals", [])])
        except (KeyError, TypeError, ValueError) as exc:
            raise BadInput(f"bad calibration record: {exc}") from None


def conformal_margin(residuals: Sequence[float] | np.ndarray, quantile: float = 0.9) -> float:
    """``exp(q) - 1`` for the split-conformal ``quantile`` ``q`` of log over-runs (0 when none)."""
    r = np.sort(np.asarray(residuals, dtype=np.float64))
    if not r.size:
        return 0.0
    k = int(math.ceil((r.size + 1) * quantile - 1e-9))
    q = float(r[min(k, r.size) - 1])
    return max(0.0, math.exp(q) - 1.0)


def _positive(name: str, values: Sequence[float] | np.ndarray) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64).ravel()
    if arr.size and (not np.all(np.isfinite(arr)) or np.any(arr <= 0)):
        raise BadInput(f"{name} values must be positive and finite")
    return arr


def _line(lp: np.ndarray, lm: np.ndarray, min_points_for_slope: int) -> tuple[float, float]:
    """Slope and intercept of log(measured) on log(predicted); slope 1 when few or degenerate."""
    slope = 1.0
    if lp.size >= min_points_for_slope and np.std(lp) > 1e-6:
        s = float(np.cov(lp, lm, bias=True)[0, 1] / np.var(lp))
        if SLOPE_RANGE[0] <= s <= SLOPE_RANGE[1]:
            slope = s
    return slope, float(np.mean(lm - slope * lp))


def _loo_lines(lp: np.ndarray, lm: np.ndarray, min_points_for_slope: int) -> tuple[np.ndarray, np.ndarray]:
    """``_line`` fitted without each point in turn (vectorised): slopes and intercepts ``[n]``."""
    k = lp.size - 1
    sx, sy = lp.sum() - lp, lm.sum() - lm
    sxx, sxy = (lp * lp).sum() - lp * lp, (lp * lm).sum() - lp * lm
    mx, my = sx / max(k, 1), sy / max(k, 1)
    varx = sxx / max(k, 1) - mx * mx
    with np.errstate(divide="ignore", invalid="ignore"):
        s = (sxy / max(k, 1) - mx * my) / varx
    ok = (k >= min_points_for_slope) & (varx > 1e-12) & (s >= SLOPE_RANGE[0]) & (s <= SLOPE_RANGE[1])
    slope = np.where(ok, s, 1.0)
    return slope, my - slope * mx


def _loo_error(p: np.ndarray, m: np.ndarray, offset: float, min_points_for_slope: int) -> float:
    """Mean squared log error of each point predicted from a fit without it."""
    lp = np.log(p)
    slope, icpt = _loo_lines(lp, np.log(m - offset), min_points_for_slope)
    pred = np.logaddexp(math.log(offset), slope * lp + icpt) if offset > 0 else slope * lp + icpt
    return float(np.mean((pred - np.log(m)) ** 2))


def fit(pred: Sequence[float] | np.ndarray, measured: Sequence[float] | np.ndarray,
        min_points_for_slope: int = MIN_POINTS_FOR_SLOPE,
        min_points_for_offset: int = MIN_POINTS_FOR_OFFSET) -> Calibration:
    """Least-squares line in log space (slope 1 when points are few or the fit is degenerate),
    with a fixed offset only where enough points show, leave-one-out, that it predicts better."""
    p = _positive("predicted", pred)
    m = _positive("measured", measured)
    if p.size != m.size:
        raise BadInput(f"calibration needs as many predictions as measurements ({p.size} vs {m.size})")
    if p.size == 0:
        raise BadInput("calibration needs at least one measurement")
    offset = 0.0
    if p.size >= min_points_for_offset:
        grid = np.linspace(0.0, 0.9 * float(m.min()), OFFSET_GRID)
        scores = [_loo_error(p, m, float(c), min_points_for_slope) for c in grid]
        offset = float(grid[int(np.argmin(scores))])
    lp, lm = np.log(p), np.log(m - offset)
    slope, intercept = _line(lp, lm, min_points_for_slope)
    calibrated = offset + np.exp(slope * lp + intercept)
    resid = np.log(m) - np.log(calibrated)
    return Calibration(slope=slope, intercept=intercept, residuals=[float(r) for r in resid], n=int(p.size),
                       offset=offset)


def finetune(predictor: Any, archs: list[str], measured: Sequence[float] | np.ndarray, emb: np.ndarray,
             steps: int = 200, lr: float = 3e-4, seed: int = 0, min_points: int = 30) -> Any:
    """A copy of ``predictor`` fine-tuned on one device's measurements (needs ``min_points``).

    The copy's output keeps the predictor's log scale, so calibrate it afterwards on the same
    points. Returns ``predictor`` unchanged when there are fewer than ``min_points`` measurements.
    """
    m = _positive("measured", measured)
    if m.size != len(archs):
        raise BadInput(f"fine-tuning needs one measurement per architecture ({m.size} vs {len(archs)})")
    if m.size < min_points:
        return predictor
    return predictor.finetuned(archs, m, emb, steps=steps, lr=lr, seed=seed)
