"""Read-out of a trained run for any device given its embedding: fronts and budget picks."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from modnas.toolkit.errors import BadInput
from modnas.toolkit.pareto import greedy_hv_subset, nondominated_mask
from modnas.toolkit.results import DocList, JsonDoc
from modnas.toolkit.search.preferences import preference_grid
from modnas.toolkit.search.run import COST_OBJECTIVES, Run
from modnas.toolkit.search.topk import TOPK_PREFERENCES, default_top_k, topk_candidates

DEFAULT_MARGIN = 0.05
# the read-out queries the hypernetwork at this many times the preferences it returns, keeps the
# predicted non-dominated arg-maxes and chooses the returned ones by predicted hypervolume
OVERSAMPLE = 16
# the predictor-only read-out minimises Tchebycheff whatever the run trained with: it reaches every
# part of the front (NB201 held-out devices, 24 picks: HV/exhaustive 0.991 against 0.986 with the
# weighted sum, benchmarks/scalarisation_eval.py)
PREDICTOR_SCALARISATION = "tchebycheff"


@dataclass
class FrontRow(JsonDoc):
    """One architecture of a read-out front: the preference that produced it (None when a refinement
    added it) and its predicted terms by objective (``error`` % or, for language models, ``loss``;
    ``latency_ms``, ``energy_mj``, ...)."""

    preference: list[float] | None
    arch: str
    predicted: dict[str, float]


@dataclass
class Front(DocList):
    """``modnas pareto``: the read-out front for a device, sorted by its first cost."""

    rows: list[FrontRow]

    @classmethod
    def of(cls, rows: list[dict[str, Any]]) -> "Front":
        """The typed front of :func:`pareto`'s rows."""
        return cls([FrontRow(r["preference"], r["arch"], r["predicted"]) for r in rows])


@dataclass
class Selection(JsonDoc):
    """``modnas select``: the most accurate architecture predicted to meet ``budget_ms`` with ``margin``."""

    arch: str
    predicted: dict[str, float]
    margin: float
    margin_ms: float
    budget_ms: float
    preference: list[float] | None

    @classmethod
    def of(cls, doc: dict[str, Any]) -> "Selection":
        """The typed pick of :func:`select`'s reply."""
        return cls(doc["arch"], doc["predicted"], doc["margin"], doc["margin_ms"], doc["budget_ms"], doc["preference"])


def _devices_terms(run: Run, costs: dict[str, Any], archs: list[str]) -> dict[str, np.ndarray]:
    """Predicted terms by key: the space's quality (``error`` %, or ``loss`` for language models), then
    each cost the run optimises (``latency_ms``, ``energy_mj``)."""
    out = {run.space.quality: run.predict_error(archs)}
    for obj in run.objectives[1:]:
        if obj not in costs:
            continue
        out[COST_OBJECTIVES[obj]] = np.asarray(costs[obj].predict(archs), dtype=np.float64)
    return out


def _costs_for(run: Run, device_cost: Any, energy_cost: Any = None, require_all: bool = True) -> dict[str, Any]:
    costs = {"latency": device_cost} if device_cost is not None else {}
    if energy_cost is not None:
        costs["energy"] = energy_cost
    missing = [o for o in run.objectives[1:] if o not in costs] if require_all else []
    if missing:
        raise BadInput(f"the run optimises {', '.join(missing)}: give a cost model for it")
    return costs


def _top_k(run: Run) -> int:
    """The top-k read-out's default k: by the number of objectives wherever the run has an accuracy (or
    loss) surrogate (measured on NB201; ofa_mbv3's distilled surrogate and gpt's loss surrogate take it
    too); else 1, the arg-maxes (without a surrogate each candidate costs a supernet evaluation)."""
    return default_top_k(len(run.objectives)) if run.surrogate is not None else 1


def candidates(run: Run, embedding: np.ndarray, preferences: int) -> tuple[list[str], np.ndarray]:
    """Distinct arg-max architectures over a preference grid, with the first preference of each."""
    prefs = preference_grid(len(run.objectives), preferences)
    archs = run.archs(prefs, embedding)
    seen: dict[str, int] = {}
    for i, a in enumerate(archs):
        seen.setdefault(a, i)
    keys = list(seen)
    return keys, prefs[[seen[a] for a in keys]]


def _normalised(run: Run, costs: dict[str, Any], terms: dict[str, np.ndarray]) -> np.ndarray:
    """The predicted terms ``[N, M]`` on fixed scales: error between the smallest and the largest
    predicted error over the space (NB201 with a surrogate; else over the candidates), each cost
    between the device model's space minimum and maximum (enumerable spaces; else the
    candidates'); the read-out's hypervolume reference is then (1, ..., 1)."""
    keys = list(terms)
    f = np.stack([terms[k] for k in keys], axis=1)
    lo, hi = f.min(axis=0), f.max(axis=0)
    if run.surrogate is not None and run.space.enumerable:
        from modnas.toolkit.search.loop import error_range

        e_lo, e_hi = error_range(run.surrogate, 1.0, run.space)
        lo[0], hi[0] = min(lo[0], e_lo), max(hi[0], e_hi)
    by_key = {COST_OBJECTIVES[o]: o for o in costs} if hasattr(run.space, "all_archs") else {}
    for j, k in enumerate(keys[1:], start=1):
        model = costs.get(by_key.get(k, ""))
        minmax = getattr(model, "minmax", None)
        if callable(minmax):
            c_lo, c_hi = minmax()
            lo[j], hi[j] = min(lo[j], float(c_lo)), max(hi[j], float(c_hi))
    span = np.where(hi > lo, hi - lo, 1.0)
    # a little room past the worst candidate so every extreme point adds some hypervolume
    return (f - lo) / (span * 1.05)


def spread(run: Run, costs: dict[str, Any], archs: list[str], prefs: np.ndarray, k: int
           ) -> tuple[list[str], np.ndarray]:
    """At most ``k`` distinct predicted non-dominated architectures of ``archs`` (in order, with
    ``prefs`` their preferences): all of them when they are ``k`` or fewer, else the ``k`` chosen
    greedily by predicted hypervolume contribution."""
    archs = list(archs)
    if not archs:
        return [], prefs[:0]
    terms = _devices_terms(run, costs, archs)
    raw = np.stack(list(terms.values()), axis=1)
    nd = np.flatnonzero(nondominated_mask(raw))
    # duplicates of a point keep only the first architecture
    _, first = np.unique(raw[nd], axis=0, return_index=True)
    nd = np.sort(nd[first])
    if len(nd) > k:
        f = _normalised(run, costs, {key: v[nd] for key, v in terms.items()})
        nd = np.sort(nd[greedy_hv_subset(f, k)])
    return [archs[i] for i in nd], prefs[nd]


def spread_candidates(run: Run, costs: dict[str, Any], embedding: np.ndarray, preferences: int,
                      oversample: int = OVERSAMPLE) -> tuple[list[str], np.ndarray]:
    """The spreading read-out: distinct arg-maxes over ``preferences * oversample`` preferences,
    then :func:`spread` down to at most ``preferences``."""
    archs, prefs = candidates(run, embedding, max(preferences, preferences * max(1, oversample)))
    return spread(run, costs, archs, prefs, preferences)


def predictor_candidates(run: Run, costs: dict[str, Any], embedding: np.ndarray, preferences: int,
                         oversample: int = OVERSAMPLE, pool: int = 4000, seed: int = 0,
                         scalarisation: str = PREDICTOR_SCALARISATION) -> tuple[list[str], np.ndarray]:
    """Predictor-only read-out: ``scalarisation`` (the run's ``smooth_mu`` and ``ideal_point``; error
    scaled between its minimum and the run's ``error_quantile``) minimised, for each of
    ``preferences * oversample`` preferences, over a candidate pool with the run's accuracy
    surrogate and the device's cost models (no hypernetwork in the choice; the pool is the whole
    space where it is enumerable, else the hypernetwork's arg-maxes plus ``pool`` random
    architectures), then :func:`spread`."""
    from modnas.toolkit.search.scalarise import minimisers

    if run.surrogate is None:
        raise BadInput("the predictor-only read-out needs an accuracy surrogate (a benchmark-mode run, or a "
                       "supernet run with a distilled one); this run would evaluate every candidate on its supernet")
    space = run.space
    prefs = preference_grid(len(run.objectives), max(preferences, preferences * max(1, oversample)))
    if space.enumerable:  # (every space has an all_archs; only enumerable ones can list theirs)
        archs = list(space.all_archs())
    else:
        archs = list(dict.fromkeys(run.archs(prefs, embedding) + [space.canonical(a) for a in space.sample(pool, seed)]))
    terms = _devices_terms(run, costs, archs)
    f = np.stack(list(terms.values()), axis=1)
    lo = f.min(axis=0)
    hi = np.array([np.quantile(f[:, 0], run.config.benchmark.error_quantile)] + list(f[:, 1:].max(axis=0)))
    objs = (f - lo) / np.where(hi > lo, hi - lo, 1.0)
    sc = run.config.scalarisation
    best = minimisers(objs, prefs, scalarisation, sc.smooth_mu, sc.ideal_point)
    first: dict[int, int] = {}
    for j, i in enumerate(best):
        first.setdefault(int(i), j)
    order = sorted(first, key=first.get)  # type: ignore[arg-type]
    return spread(run, costs, [archs[i] for i in order], prefs[[first[i] for i in order]], preferences)


def neighbours(arch: str, space: Any = None) -> list[str]:
    """Every architecture one decision away (NB201: 6 edges x 4 other ops), distinct and canonical."""
    from modnas.toolkit.spaces import get_space

    space = space if space is not None else get_space("nb201")
    idx = space.to_indices(arch)
    out = []
    for pos, cur in enumerate(idx):
        for op in range(len(space.decisions[pos].choices)):
            if op != cur:
                out.append(space.from_indices(idx[:pos] + [op] + idx[pos + 1:]))
    return [a for a in dict.fromkeys(out) if a != arch]


def refine(run: Run, costs: dict[str, Any], archs: list[str], rounds: int) -> list[str]:
    """Local refinement of a read-out with the same predictors (no training): ``rounds`` times, add
    the one-edit neighbours of the current predicted front and keep the predicted front."""
    pool = list(dict.fromkeys(archs))
    frontier = pool
    for _ in range(rounds):
        seen = set(pool)
        new = list(dict.fromkeys(n for a in frontier for n in neighbours(a, run.space) if n not in seen))
        if not new:
            break
        pool += new
        terms = _devices_terms(run, costs, pool)
        mask = nondominated_mask(np.stack(list(terms.values()), axis=1))
        pool = [a for a, m in zip(pool, mask) if m]
        fresh = set(new)
        frontier = [a for a in pool if a in fresh]
    return pool


def pareto(run: Run, device_cost: Any, preferences: int = 24, energy_cost: Any = None,
           refine_rounds: int = 0, oversample: int = OVERSAMPLE, predictor_only: bool = False,
           top_k: int | None = None, topk_preferences: int = TOPK_PREFERENCES,
           embedding: np.ndarray | None = None) -> list[dict[str, Any]]:
    """The non-dominated read-out for a device (seen in training or not), sorted by latency: at most
    ``preferences`` distinct predicted non-dominated architectures chosen by predicted hypervolume
    from a pool; each row's ``preference`` is the first that produced its architecture. The pool:
    with ``top_k`` > 1 (default :func:`modnas.toolkit.search.topk.default_top_k` on NB201 with an
    accuracy surrogate, else 1), the ``top_k`` most probable architectures of the hypernetwork's
    distribution at each of ``max(preferences, topk_preferences)`` preferences
    (:func:`modnas.toolkit.search.topk.topk_candidates`); with ``top_k`` 1, its arg-maxes at
    ``preferences * oversample`` preferences (``oversample`` 1: the plain grid).
    ``embedding`` conditions the hypernetwork instead of the cost model's own (a prefill model read out
    with the device's latency embedding, the one the run was trained on).
    ``predictor_only`` takes Tchebycheff's minimisers over the predictors instead
    (:func:`predictor_candidates`). ``refine_rounds`` > 0 adds a local refinement with the
    predictors (rows it adds carry ``preference: null``)."""
    top_k = _top_k(run) if top_k is None else top_k
    if top_k < 1 or topk_preferences < 1:
        raise BadInput("top_k and topk_preferences must be at least 1")
    costs = _costs_for(run, device_cost, energy_cost)
    emb = next(iter(costs.values())).embedding if embedding is None else embedding
    if predictor_only:
        archs, prefs = predictor_candidates(run, costs, emb, preferences, oversample)
    elif top_k > 1:
        grid = preference_grid(len(run.objectives), max(preferences, topk_preferences))
        archs, prefs = spread(run, costs, *topk_candidates(run, emb, grid, top_k), preferences)
    elif oversample > 1:
        archs, prefs = spread_candidates(run, costs, emb, preferences, oversample)
    else:
        archs, prefs = candidates(run, emb, preferences)
    if refine_rounds > 0:
        pref_of = dict(zip(archs, prefs))
        archs = refine(run, costs, archs, refine_rounds)
        prefs = np.array([pref_of.get(a, np.full(len(run.objectives), np.nan)) for a in archs])
    terms = _devices_terms(run, costs, archs)
    keys = list(terms)
    mask = nondominated_mask(np.stack([terms[k] for k in keys], axis=1))
    rows = [{"preference": None if np.isnan(prefs[i]).any() else [float(v) for v in prefs[i]], "arch": archs[i],
             "predicted": {k: float(terms[k][i]) for k in keys}} for i in np.flatnonzero(mask)]
    sort_key = keys[1] if len(keys) > 1 else keys[0]
    return sorted(rows, key=lambda row: row["predicted"][sort_key])


def resolve_margin(device_cost: Any, margin: float | None) -> float:
    """The relative latency margin: given, else the cost model's calibration margin, else 5 %."""
    if margin is not None:
        if margin < 0:
            raise BadInput("margin must be non-negative")
        return float(margin)
    return float(device_cost.margin()) if device_cost is not None else DEFAULT_MARGIN


def select(run: Run, device_cost: Any, budget_ms: float, margin: float | None = None,
           preferences: int = 24, dense: int = 201, margin_ms: float = 0.0,
           energy_cost: Any = None, refine_rounds: int | None = None, top_k: int | None = None,
           embedding: np.ndarray | None = None) -> dict[str, Any]:
    """The architecture with the highest predicted accuracy whose predicted latency meets the budget
    with a safety margin: ``latency * (1 + margin) + margin_ms <= budget_ms``. Candidates: the run's
    read-out at ``preferences`` plus a denser grid of ``max(dense, preferences * OVERSAMPLE)``
    preferences (every arg-max of the spreading read-out's grid), plus, with ``top_k`` > 1, the
    top-k read-out's pool (:func:`pareto`'s default, so every row it returns is a candidate). ``margin`` is relative
    (default: the device's calibration margin, else 5 %); ``margin_ms`` an absolute extra.
    ``refine_rounds`` (default 2 with an accuracy surrogate, 0 in supernet mode, where each error
    costs a supernet evaluation) adds one-edit neighbours of the candidates' predicted front."""
    if not budget_ms > 0:
        raise BadInput(f"`budget_ms` must be a positive number of ms, got {budget_ms}", param="budget_ms")
    if "latency" not in run.objectives:
        raise BadInput("this run does not optimise latency; select needs a latency objective")
    model = device_cost
    m = resolve_margin(model, margin)
    costs = _costs_for(run, model, energy_cost, require_all=False)
    emb = model.embedding if embedding is None else embedding  # as pareto's
    archs_a, prefs_a = candidates(run, emb, preferences)
    archs_b, prefs_b = candidates(run, emb, max(dense, preferences * OVERSAMPLE))
    pool = dict(zip(archs_a, prefs_a))
    top_k = _top_k(run) if top_k is None else top_k
    if top_k > 1:
        grid = preference_grid(len(run.objectives), max(preferences, TOPK_PREFERENCES))
        archs_c, prefs_c = topk_candidates(run, emb, grid, top_k)
        archs_b, prefs_b = archs_b + archs_c, np.concatenate([prefs_b, prefs_c])
    for a, p in zip(archs_b, prefs_b):
        pool.setdefault(a, p)
    archs = list(pool)
    rounds = refine_rounds if refine_rounds is not None else (2 if run.surrogate is not None else 0)
    if rounds > 0:
        archs = list(dict.fromkeys(archs + refine(run, costs, archs, rounds)))
    terms = _devices_terms(run, costs, archs)
    lat = terms["latency_ms"]
    ok = lat * (1.0 + m) + margin_ms <= budget_ms
    if not ok.any():
        raise BadInput(f"no architecture is predicted to meet {budget_ms:g} ms on {model.name} with a "
                       f"{m:.1%} margin; the fastest predicted is {float(lat.min()):.4g} ms")
    idx = np.flatnonzero(ok)
    best = idx[np.lexsort((lat[idx], terms[run.space.quality][idx]))[0]]
    return {"arch": archs[best], "predicted": {k: float(v[best]) for k, v in terms.items()}, "margin": m,
            "margin_ms": float(margin_ms), "budget_ms": float(budget_ms),
            "preference": ([float(v) for v in pool[archs[best]]] if archs[best] in pool else None)}


__all__ = ["DEFAULT_MARGIN", "OVERSAMPLE", "PREDICTOR_SCALARISATION", "Front", "FrontRow", "Selection", "candidates",
           "neighbours", "pareto", "predictor_candidates",
           "preference_grid", "refine", "resolve_margin", "select", "spread", "spread_candidates"]
