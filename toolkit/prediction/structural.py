"""The structural device model: a network's latency as the sum of what it runs.

``latency = constant + sum_k count_k(arch) * cost_k`` (``+ w * predictor(arch)`` in the residual
form), where ``count_k`` counts kernel ``k`` (operator x shape, as the space says:
:meth:`modnas.toolkit.spaces.base.Space.kernel_counts`) in the network. The per-kernel costs are
fitted to the board's own measurements in relative terms, shrunk towards a prior:

* ``predictor``: the hardware-conditioned predictor's view of this device (trained on every device
  of the shared tables), read as per-kernel costs by a non-negative least-squares fit of the
  predictor's values over a pool of architectures;
* ``kernels``: the board's own kernel measurements (``onboard --kernels``), net of the runtime's
  per-inference overhead;
* ``both``, and ``residual`` (the predictor's value as one more column, kernels for what it misses).

The prior columns and the constant are free (an overall scale per prior), the deviations from the
prior are ridge-penalised; the penalty is chosen by exact leave-one-out (the hat matrix of the
weighted ridge), which also gives the out-of-sample errors the device fit compares.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

from modnas.toolkit.errors import BadInput

RIDGE_GRID = (0.01, 0.1, 1.0, 10.0, 100.0, 1e4)  # on standardised relative counts
PRIOR_POOL = 3000  # architectures the predictor's per-kernel costs are read from
MIN_POINTS = 5
from modnas.toolkit.spaces.kernels import EMPTY  # the runtime's per-inference overhead


@dataclass
class Structural:
    """A fitted structural model: ms (or mJ) per kernel count, a constant, the predictor's weight."""

    names: list[str]
    coef: list[float]
    const: float
    predictor_weight: float = 0.0  # > 0 only in the residual form
    prior: str = "predictor"
    ridge: float = 0.0
    floor: float = 0.0  # predictions never go below this (a share of the smallest measurement)

    def predict(self, counts: np.ndarray, base: np.ndarray | None = None) -> np.ndarray:
        """Values for kernel counts ``[N, K]`` (``base``: the predictor's raw values, residual form only)."""
        out = self.const + np.asarray(counts, np.float64) @ np.asarray(self.coef, np.float64)
        if self.predictor_weight:
            if base is None:
                raise BadInput("the residual structural model needs the predictor's values")
            out = out + self.predictor_weight * np.asarray(base, np.float64)
        return np.maximum(out, self.floor)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Structural":
        try:
            return cls([str(n) for n in d["names"]], [float(c) for c in d["coef"]], float(d["const"]),
                       float(d.get("predictor_weight", 0.0)), str(d.get("prior", "predictor")),
                       float(d.get("ridge", 0.0)), float(d.get("floor", 0.0)))
        except (KeyError, TypeError, ValueError) as exc:
            raise BadInput(f"bad structural model record: {exc}") from None


def predictor_prior(space: Any, predictor: Any, emb: np.ndarray, seed: int = 0) -> np.ndarray:
    """Per-kernel costs that best explain the predictor's (raw) values on this device: non-negative least
    squares in relative terms over a seeded pool of the space's usable architectures (constant included)."""
    from scipy.optimize import nnls

    pool = space.candidates(PRIOR_POOL, seed)
    if len(pool) > PRIOR_POOL:
        pool = [pool[i] for i in np.sort(np.random.default_rng(seed).choice(len(pool), PRIOR_POOL, replace=False))]
    values = np.exp(predictor.predict_log_onehot(space.encode(pool), emb))
    counts = space.kernel_counts(pool)
    a = np.hstack([np.ones((len(pool), 1)), counts]) / values[:, None]
    try:
        sol, _ = nnls(a, np.ones(len(pool)), maxiter=50 * a.shape[1])
    except RuntimeError:  # no convergence on an ill-conditioned design: least squares, clipped at zero
        sol = np.maximum(np.linalg.lstsq(a, np.ones(len(pool)), rcond=None)[0], 0.0)
    return sol[1:]


def kernel_prior(names: Sequence[str], kernels: dict[str, float]) -> np.ndarray | None:
    """Per-kernel costs from the board's kernel measurements, net of the empty network's time (None when
    fewer than half of the space's kernels were measured)."""
    overhead = float(kernels.get(EMPTY, 0.0))
    have = [n for n in names if n in kernels]
    if len(have) < 0.5 * len(names):
        return None
    return np.array([max(float(kernels[n]) - overhead, 0.0) if n in kernels else 0.0 for n in names])


@dataclass
class _Solved:
    ridge: float
    const: float
    alphas: np.ndarray
    delta: np.ndarray
    loo: np.ndarray  # leave-one-out predictions


def _solve(counts: np.ndarray, y: np.ndarray, bases: list[np.ndarray], lam: float) -> _Solved:
    """Weighted ridge: unpenalised constant and base columns, penalised per-kernel deviations."""
    n = len(y)
    free = np.hstack([np.ones((n, 1))] + [b.reshape(-1, 1) for b in bases]) / y[:, None]
    rel = counts / y[:, None]
    scale = rel.std(axis=0)
    use = scale > 1e-12 * max(1.0, float(np.max(np.abs(rel))) if rel.size else 1.0)
    pen = rel[:, use] / scale[use]
    a = np.hstack([free, pen])
    p = np.zeros(a.shape[1])
    p[:free.shape[1]] = 1e-9
    p[free.shape[1]:] = lam
    inv = np.linalg.pinv(a.T @ a + np.diag(p))
    w = inv @ a.T @ np.ones(n)
    resid = 1.0 - a @ w
    h = np.einsum("ij,jk,ik->i", a, inv, a)
    loo_rel = resid / np.maximum(1.0 - h, 1e-6)
    delta = np.zeros(counts.shape[1])
    delta[use] = w[free.shape[1]:] / scale[use]
    return _Solved(lam, float(w[0]), w[1:free.shape[1]], delta, y * (1.0 - loo_rel))


def _err(pred: np.ndarray, m: np.ndarray, floor: float) -> float:
    return float(np.mean(np.abs(np.log(np.maximum(pred, floor)) - np.log(m))))


def fit(names: list[str], counts: np.ndarray, measured: np.ndarray, priors: dict[str, np.ndarray],
        raw_predictor: np.ndarray | None = None) -> tuple[Structural, np.ndarray, dict[str, float]] | None:
    """The best structural model over priors and ridge strengths by leave-one-out error.

    ``priors``: name -> per-kernel costs; ``raw_predictor`` (the predictor's values at the points) adds
    the residual form. Returns (model, its leave-one-out predictions, error per form) or None (too few points).
    """
    y = np.asarray(measured, np.float64)
    if len(y) < MIN_POINTS:
        return None
    counts = np.asarray(counts, np.float64)
    floor = 0.2 * float(np.min(y))
    forms: dict[str, list[np.ndarray]] = {name: [counts @ t] for name, t in priors.items()}
    if len(priors) > 1:
        forms["both"] = [counts @ t for t in priors.values()]
    if raw_predictor is not None:
        forms["residual"] = [np.asarray(raw_predictor, np.float64)]
    best: tuple[float, str, _Solved] | None = None
    errors: dict[str, float] = {}
    for form, bases in forms.items():
        if len(y) < len(bases) + 3:
            continue
        trials = [_solve(counts, y, bases, lam) for lam in RIDGE_GRID]
        errs = [_err(t.loo, y, floor) for t in trials]
        k = int(np.argmin(errs))
        errors[form] = errs[k]
        if best is None or errs[k] < best[0]:
            best = (errs[k], form, trials[k])
    if best is None:
        return None
    _, form, sol = best
    coef = sol.delta.copy()
    weight = 0.0
    prior_names = list(priors) if form == "both" else ([form] if form in priors else [])
    for alpha, name in zip(sol.alphas, prior_names):
        coef = coef + alpha * priors[name]
    if form == "residual":
        weight = float(sol.alphas[0])
    model = Structural(list(names), [float(c) for c in coef], sol.const, weight, form, sol.ridge, floor)
    return model, np.maximum(sol.loo, floor), errors


__all__ = ["EMPTY", "Structural", "fit", "kernel_prior", "predictor_prior"]
