"""The device model: the shipped predictor, or the structural model, fitted to all of one board's measurements.

Four parts, each kept only where the board's own points say it helps:

* the calibration (:func:`modnas.toolkit.prediction.calibration.fit`, with its fixed per-inference offset);
* a per-operator fixed cost: ``measured ~ calibrated + counts @ c``, where ``counts`` counts each
  choice of the space's decisions (NB201: how many edges carry each op), ridge-regularised, the
  ridge strength chosen by leave-one-out. It is linear in the one-hot, so it is stored as one ms
  value per one-hot entry and stays differentiable for the search;
* few-shot fine-tuning of the hardware-conditioned predictor, regularised towards the shipped
  weights, the number of steps chosen by k-fold cross-validation on the board's points (0 steps
  = not kept);
* the structural model (:mod:`modnas.toolkit.prediction.structural`): a constant plus a cost per
  kernel the network runs, shrunk towards the predictor's view of the board or the board's own
  kernel timings; it replaces the parts above where its leave-one-out error is lower (and the
  fine-tuned predictor's cross-validated error is not lower still).

The out-of-sample residuals of the chosen model (leave-one-out, or the k folds where the
fine-tuning is kept) give the reported error and the split-conformal budget margin.
"""
from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from modnas.toolkit.threads import torch_threads
from modnas.toolkit.prediction import calibration
from modnas.toolkit.prediction import structural as structural_model
from modnas.toolkit.prediction.calibration import Calibration
from modnas.toolkit.prediction.structural import Structural
from modnas.toolkit.errors import BadInput

MIN_POINTS_FIXED = 15  # a per-op fixed cost needs at least this many measurements
MIN_POINTS_FINETUNE = 20  # fine-tuning is tried from this many measurements
RIDGE_GRID = (0.3, 1.0, 3.0, 10.0, 30.0)  # on standardised counts
FINETUNE_LR = 5e-4
FINETUNE_STEPS = (0, 20, 40, 80)  # checkpoints compared by cross-validation
FINETUNE_L2SP = 1e-1  # pull towards the shipped weights
CV_FOLDS = 4
KEEP_FACTOR = 0.97  # a part is kept when its held-out error is below this share of the simpler model's
FINETUNE_KEEP = 0.85  # fine-tuning (more freedom) must do better still
FLOOR = 0.2  # the fixed cost may lower a calibrated value to at most this share of it
MODEL_VERSION = "device-model/2"  # 2: the structural model
STRUCTURAL_KEEP_FEW = 0.6  # below MIN_POINTS_FINETUNE points leave-one-out is noisy: the structural model
# replaces the calibrated predictor only when it cuts the error by more than 40 % (benchmarks/onboard_eval.py
# --counts: kept at 10 points by the ordinary rule, it cost 2 points of within +-10 % on the table devices)


# -- the fixed-cost term -------------------------------------------------------------------------
def _ridge_fixed(counts: np.ndarray, measured: np.ndarray, base: np.ndarray, lam: float) -> np.ndarray:
    """Per-count ms cost ``c`` minimising sum(((m - base - counts c) / m)^2) + lam |c * scale|^2."""
    x = counts / measured[:, None]
    y = (measured - base) / measured
    scale = np.std(x, axis=0) + 1e-12
    xs = x / scale
    c = np.linalg.solve(xs.T @ xs + lam * np.eye(xs.shape[1]), xs.T @ y)
    return c / scale


def _apply_fixed(base: np.ndarray, extra: np.ndarray) -> np.ndarray:
    return np.maximum(base + extra, FLOOR * base)


# -- fine-tuning ---------------------------------------------------------------------------------
def _finetune_path(predictor: Any, onehot: np.ndarray, measured: np.ndarray, emb: np.ndarray,
                   steps: Sequence[int], eval_onehot: np.ndarray | None, seed: int) -> tuple[list[Any], list[np.ndarray]]:
    """Fine-tune a copy of the network on the points, regularised towards the shipped weights.

    Returns, at each of ``steps``: the network state (only when ``eval_onehot`` is None) or the log
    predictions for ``eval_onehot``.
    """
    import torch

    torch.manual_seed(seed)
    logp = predictor.predict_log_onehot(onehot, emb)
    cal = calibration.fit(np.exp(logp), measured, min_points_for_offset=10 ** 9)
    target = ((np.log(measured) - cal.intercept) / cal.slope - predictor.mu0) / predictor.sd0
    net = copy.deepcopy(predictor.net)
    init = [p.detach().clone() for p in net.parameters()]
    opt = torch.optim.Adam(net.parameters(), lr=FINETUNE_LR)
    x = torch.from_numpy(np.ascontiguousarray(onehot, np.float32))
    e = torch.from_numpy(np.asarray(emb, np.float32)).reshape(1, -1).expand(len(x), -1)
    y = torch.from_numpy(target.astype(np.float32))
    ev = None if eval_onehot is None else torch.from_numpy(np.ascontiguousarray(eval_onehot, np.float32))
    states: list[Any] = []
    preds: list[np.ndarray] = []
    done = 0
    for s in sorted(steps):
        net.train()
        while done < s:
            opt.zero_grad()
            loss = torch.mean((net(x, e) - y) ** 2)
            loss = loss + FINETUNE_L2SP * sum(torch.sum((p - p0) ** 2) for p, p0 in zip(net.parameters(), init))
            loss.backward()
            opt.step()
            done += 1
        net.eval()
        if ev is None:
            states.append(copy.deepcopy(net))
        else:
            with torch.no_grad():
                ee = torch.from_numpy(np.asarray(emb, np.float32)).reshape(1, -1).expand(len(ev), -1)
                preds.append((net(ev, ee) * predictor.sd0 + predictor.mu0).numpy().astype(np.float64))
    return states, preds


def finetuned_predictor(predictor: Any, archs: list[str], measured: np.ndarray, emb: np.ndarray, steps: int,
                        seed: int = 0) -> Any:
    """The predictor fine-tuned for ``steps`` (deterministic for a seed); itself when ``steps`` is 0."""
    from modnas.toolkit.prediction.predictors import Predictor

    if steps <= 0:
        return predictor
    onehot = predictor.space().encode(list(archs))
    states, _ = _finetune_path(predictor, onehot, np.asarray(measured, np.float64), emb, [steps], None, seed)
    twin = Predictor(states[-1], copy.deepcopy(predictor.meta))
    twin.meta["finetuned"] = {"points": len(archs), "steps": int(steps), "lr": FINETUNE_LR, "l2sp": FINETUNE_L2SP}
    return twin


# -- the fit -------------------------------------------------------------------------------------
@dataclass
class DeviceFit:
    """What is fitted to one device's measurements, and how well it predicts them out of sample."""

    calibration: Calibration
    fixed: np.ndarray | None  # ms per one-hot entry, or None
    finetune_steps: int
    report: dict[str, Any] = field(default_factory=dict)
    predictor: Any = None  # the predictor the calibration was fitted on (fine-tuned when finetune_steps > 0)
    structural: Structural | None = None  # the kernel-sum model, where it predicts the points best


def _stage(lp_train: np.ndarray, m_train: np.ndarray, counts_train: np.ndarray, lam: float | None,
           lp_test: np.ndarray, counts_test: np.ndarray) -> np.ndarray:
    """Calibrate (and add a fixed cost) on the training points; predict the test points."""
    cal = calibration.fit(np.exp(lp_train), m_train)
    base_tr = np.exp(cal.apply_log(lp_train))
    base_te = np.exp(cal.apply_log(lp_test))
    if lam is None:
        return base_te
    c = _ridge_fixed(counts_train, m_train, base_tr, lam)
    return _apply_fixed(base_te, counts_test @ c)


def _loo(lp: np.ndarray, m: np.ndarray, counts: np.ndarray, lam: float | None) -> np.ndarray:
    out = np.empty(len(m))
    for i in range(len(m)):
        keep = np.arange(len(m)) != i
        out[i] = _stage(lp[keep], m[keep], counts[keep], lam, lp[i:i + 1], counts[i:i + 1])[0]
    return out


def _err(pred: np.ndarray, m: np.ndarray) -> float:
    """Mean absolute log error (what the choices minimise)."""
    return float(np.mean(np.abs(np.log(pred) - np.log(m))))


def _folds(n: int, k: int, seed: int) -> list[np.ndarray]:
    perm = np.random.default_rng(seed).permutation(n)
    return [np.sort(perm[i::k]) for i in range(k)]


@torch_threads(1)  # a small network: more threads only slow it, and badly while a board's timing shares the CPU
def fit_device(predictor: Any, archs: list[str], measured: Sequence[float] | np.ndarray, emb: np.ndarray,
               seed: int = 0, fixed_cost: bool = True, finetune: bool = True,
               finetune_steps: int | None = None, structural: bool = True,
               kernels: dict[str, float] | None = None) -> DeviceFit:
    """Fit the device model to ``{archs: measured}``; each part kept only where held-out error drops.

    ``finetune_steps`` skips the cross-validated choice (a stored model being rebuilt). ``structural``
    tries the kernel-sum model of :mod:`modnas.toolkit.prediction.structural` (its prior from the
    predictor, and from ``kernels``, the board's kernel measurements, where given); where it predicts
    the points better out of sample it replaces the predictor-based parts, unless the fine-tuned
    predictor's cross-validated error is lower still.
    """
    m = np.asarray(measured, np.float64)
    if len(archs) != len(m) or not len(m):
        raise BadInput(f"the device fit needs one measurement per architecture ({len(m)} vs {len(archs)})")
    space = predictor.space()
    onehot = space.encode(list(archs))
    cmat = space.choice_count_matrix()
    counts = onehot.astype(np.float64) @ cmat
    lp = predictor.predict_log_onehot(onehot, emb)
    n = len(m)
    report: dict[str, Any] = {"measurements": n}
    # 1. calibration alone, then with the per-op fixed cost
    oof = _loo(lp, m, counts, None) if n >= 3 else np.exp(calibration.fit(np.exp(lp), m).apply_log(lp))
    best_lam: float | None = None
    errs = {"calibration": _err(oof, m)}
    if fixed_cost and n >= MIN_POINTS_FIXED:
        trials = {lam: _loo(lp, m, counts, lam) for lam in RIDGE_GRID}
        lam = min(trials, key=lambda k: _err(trials[k], m))
        errs["fixed_cost"] = _err(trials[lam], m)
        if errs["fixed_cost"] < KEEP_FACTOR * errs["calibration"]:
            best_lam, oof = lam, trials[lam]
    cv = "loo"
    # 2. the structural model (kernel sums), against the best of the above
    struct = None
    if structural and finetune_steps is None and n >= structural_model.MIN_POINTS:
        got = _structural(predictor, space, list(archs), m, emb, np.exp(lp), kernels, seed)
        if got is not None:
            model, loo_s, forms = got
            report["structural_forms"] = {k: round(v, 5) for k, v in forms.items()}
            errs["structural"] = min(forms.values())
            keep = KEEP_FACTOR if n >= MIN_POINTS_FINETUNE else STRUCTURAL_KEEP_FEW
            if errs["structural"] < keep * min(v for k, v in errs.items() if k != "structural"):
                struct, oof = model, loo_s
    # 3. fine-tuning, steps chosen by k-fold on the board's points
    steps = 0
    if finetune_steps is not None:
        steps = int(finetune_steps)
    elif finetune and n >= MIN_POINTS_FINETUNE:
        folds = _folds(n, CV_FOLDS, seed)
        fold_oof = {s: np.empty(n) for s in FINETUNE_STEPS}
        for te in folds:
            tr = np.setdiff1d(np.arange(n), te)
            _, preds = _finetune_path(predictor, onehot[tr], m[tr], emb, FINETUNE_STEPS,
                                      np.vstack([onehot[tr], onehot[te]]), seed)
            for s, p in zip(sorted(FINETUNE_STEPS), preds):
                fold_oof[s][te] = _stage(p[:len(tr)], m[tr], counts[tr], best_lam, p[len(tr):], counts[te])
        cv_err = {s: _err(v, m) for s, v in fold_oof.items()}
        report["finetune_cv"] = {str(s): round(e, 5) for s, e in cv_err.items()}
        s_best = min(cv_err, key=lambda s: (cv_err[s], s))
        if s_best > 0 and cv_err[s_best] < FINETUNE_KEEP * cv_err[0]:
            errs["finetune"] = cv_err[s_best]
            if struct is None or cv_err[s_best] < errs["structural"]:  # the better of the two predicts
                steps, oof, cv, struct = s_best, fold_oof[s_best], f"{CV_FOLDS}-fold", None
    tuned = finetuned_predictor(predictor, list(archs), m, emb, steps, seed)
    lp_final = tuned.predict_log_onehot(onehot, emb) if steps else lp
    cal = calibration.fit(np.exp(lp_final), m)
    fixed = None
    if best_lam is not None:
        c = _ridge_fixed(counts, m, np.exp(cal.apply_log(lp_final)), best_lam)
        fixed = cmat @ c
    resid = np.log(m) - np.log(oof)
    cal.loo_residuals = [float(r) for r in resid]
    ape = np.abs(oof - m) / m
    report.update({"loo_mdape": float(np.median(ape) * 100), "loo_within_10pct": float(np.mean(ape <= 0.10)),
                   "loo_mape": float(np.mean(ape) * 100),
                   "cv": cv, "parts": {"calibration": True, "fixed_cost": best_lam is not None,
                                       "finetune": steps > 0, "structural": struct is not None},
                   "structural_prior": None if struct is None else struct.prior,
                   "finetune_steps": steps, "fixed_cost_ridge": best_lam,
                   "held_out_error": {k: round(v, 5) for k, v in errs.items()}})
    return DeviceFit(cal, fixed, steps, report, tuned, struct)


def _structural(predictor: Any, space: Any, archs: list[str], m: np.ndarray, emb: np.ndarray, raw: np.ndarray,
                kernels: dict[str, float] | None, seed: int) -> Any:
    """The structural model's best form (prior from the predictor, the board's kernels, both, residual)."""
    names = space.kernel_names()
    priors = {"predictor": structural_model.predictor_prior(space, predictor, emb, seed)}
    measured_kernels = structural_model.kernel_prior(names, kernels) if kernels else None
    if measured_kernels is not None:
        priors["kernels"] = measured_kernels
    return structural_model.fit(names, space.kernel_counts(archs), m, priors, raw_predictor=raw)


def measurement_digest(values: dict[str, float], predictor: Any, kernels: dict[str, float] | None = None) -> str:
    """Identifies a measurement set and predictor: a stored fit is reused only when this matches."""
    h = hashlib.sha256()
    h.update(MODEL_VERSION.encode())  # a record of an older device model is refitted, not reused
    for k in sorted(kernels or {}):
        h.update(f"kernel {k}\t{float(kernels[k])!r}\n".encode())
    h.update(str(predictor.meta.get("data_digest", "")).encode())
    h.update(str(predictor.meta.get("seed", "")).encode())
    h.update(str(predictor.meta.get("finetuned", "")).encode())
    for a in sorted(values):
        h.update(f"{a}\t{float(values[a])!r}\n".encode())
    return h.hexdigest()


# -- choosing what to measure --------------------------------------------------------------------
CANDIDATES = 4000  # sampled candidates in spaces that are not enumerated
ENSEMBLE = 8
EMB_NOISE = 0.05
FRONT_EVERY = 4  # every this many latency bins, the pick is on the predicted front
TYPICAL_DRAW = 1  # off the front: the least sure of this many random candidates of the band (1: plain
# stratified random; 4 leaned to outliers and cost 2 points of MdAPE in benchmarks/onboard_eval.py)


def _candidates(space: Any, seed: int) -> list[str]:
    return space.candidates(CANDIDATES, seed)


def front_gap(error: np.ndarray, latency: np.ndarray) -> np.ndarray:
    """Error above the best error reachable at the same or lower latency (0 on the front)."""
    order = np.argsort(latency, kind="stable")
    best = np.minimum.accumulate(error[order])
    gap = np.empty_like(error)
    gap[order] = error[order] - best
    return gap


def choose_extras(cost: Any, n: int, seed: int = 0, error_fn: Callable[[list[str]], np.ndarray] | None = None,
                  candidates: list[str] | None = None) -> list[str]:
    """``n`` architectures to measure next on the device of ``cost`` (a :class:`DeviceCost`).

    Stratified over predicted latency (``n`` equal-count bins of the candidates). In one bin of
    every ``FRONT_EVERY``: the least sure of the candidates nearest the predicted front
    (``error_fn``: predicted error; the top tenth of the bin by closeness to the front). In the
    others: the least sure of ``TYPICAL_DRAW`` drawn at random from the bin (typical
    architectures: a fit to the most uncertain outliers mis-calibrates the bulk, as
    benchmarks/onboard_eval.py showed). Uncertainty: the spread of an ensemble of predictions
    under perturbed reference measurements; candidates within one edit of a measured or chosen
    architecture are passed over. Deterministic for a seed.
    """
    from modnas.toolkit.prediction.embedding import hardware_embedding

    if n <= 0:
        return []
    space = cost.space
    measured = set(cost.measured)
    pool = [a for a in (candidates if candidates is not None else _candidates(space, seed)) if a not in measured]
    if not pool:
        return []
    onehot = space.encode(pool)
    lat = np.log(cost.predict_onehot(onehot))
    rng = np.random.default_rng(seed)
    refs = [space.canonical(r) for r in cost.predictor.references]
    ref_vals = np.array([cost.measured[r] for r in refs]) if all(r in cost.measured for r in refs) else None
    if ref_vals is not None:
        members = []
        for _ in range(ENSEMBLE):
            noisy = dict(zip(refs, ref_vals * np.exp(rng.normal(0.0, EMB_NOISE, len(refs)))))
            emb = hardware_embedding(noisy, space, refs)
            members.append(cost.predictor.predict_log_onehot(onehot, emb))
        spread = np.std(np.vstack(members), axis=0)
    else:
        spread = np.zeros(len(pool))
    frontness = np.zeros(len(pool))
    if error_fn is not None:
        err = np.asarray(error_fn(pool), np.float64)
        gap = front_gap(err, lat)
        frontness = -gap / (np.median(gap[gap > 0]) if np.any(gap > 0) else 1.0)
    taken = space.encode(sorted(measured)) if measured else np.zeros((0, onehot.shape[1]), np.float32)
    n_dec = len(space.decisions)
    dist = np.full(len(pool), float(n_dec)) if not len(taken) else n_dec - np.max(onehot @ taken.T, axis=1)
    bins = np.array_split(np.argsort(lat, kind="stable"), min(n, len(pool)))
    picks: list[int] = []
    for k, idx in enumerate(bins):
        fresh = idx[dist[idx] >= 2] if np.any(dist[idx] >= 2) else idx  # no near-copies of measured ones
        if error_fn is not None and k % FRONT_EVERY == 0:  # on (or nearest) the predicted front of this band
            near = fresh[frontness[fresh] >= np.quantile(frontness[fresh], 0.9)]
            best = int(near[np.argmax(spread[near] + 1e-3 * dist[near])])
        else:  # typical of the band rather than an outlier: the least sure of a few drawn at random
            drawn = rng.choice(fresh, size=min(TYPICAL_DRAW, len(fresh)), replace=False)
            best = int(drawn[np.argmax(spread[drawn])])
        picks.append(best)
        dist = np.minimum(dist, n_dec - onehot @ onehot[best])
    return [pool[i] for i in picks]
