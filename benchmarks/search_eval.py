"""Evaluate a benchmark-mode MODNAS search on held-out table devices, against every baseline.

Held-out devices are whole hardware groups (``modnas.toolkit.data.hwgroups.hardware_group``) drawn with the
seed, never a fixed list (the split of ``modnas.toolkit.search.default_run``, so the shipped runs never saw
them). Where every device with the objectives is one board (energy: the Raspberry Pi 5 settings
only), the held-out unit is a runtime of that board instead, drawn the same way, and said so.
Each held-out device is given only its 10 reference measurements (its predictor is calibrated on
them). For each one, on the true table values (chance-level cells dropped, min-max normalised over
the rest, reference point all ones, the method's protocol): HV relative to the exhaustive front,
IGD+, the distinct picks (predicted non-dominated) and how many of them are truly non-dominated among
themselves, of

- ``modnas``: the run's read-out (24 picks, ``modnas.toolkit.search.readout.pareto``'s default: the
  hypernetwork's top-k cells at each preference of a finer grid, chosen by predicted hypervolume),
  ``modnas-argmax``: the same from its arg-maxes only (``top_k=1``, the read-out before the top-k
  one), ``modnas-grid``: the plain 24-preference grid (one arg-max each), ``modnas-refine``: the
  read-out plus two rounds of one-edit refinement (``select``'s default);
- ``exact-<scalarisation>``: the exact minimisers of each scalarised objective for the same 24
  preferences, enumerated over all 15,625 cells with the run's accuracy surrogate and the device's
  predictor, normalised as the training loop normalises them (the hypernetwork's amortisation gap
  is ``modnas-grid`` against the run's own scalarisation; the scalarisation's gap is that against
  ``predicted-front``);
- ``predicted-front``: every cell predicted non-dominated, and ``predicted-24``: 24 of them chosen
  by predicted hypervolume;
- ``blind-24``: 24 chosen the same way from the front of (predicted error, a device-blind cost: the
  mean percentile rank of the training devices' measured values);
- ``random-pool``: the control of the top-k read-out: as many random cells as its pool holds
  (``topk_pool_cells`` in the summary), 24 chosen the same way; the gap to ``modnas`` is what the
  hypernetwork's distribution adds over scoring that many cells blindly;
- ``random``, ``nsga2`` (pymoo): on the same predictors at equal wall time (the search's cost per
  training device plus the read-out's).

Budget picks at the 10/25/50/75th percentiles of the device's true latency: regret (best true
accuracy within the budget minus the pick's) and share of picks truly over the budget; ``modnas``
rows pick with ``select`` (the device's calibration margin), the others the most accurate of their
set predicted to fit with the same margin.

    python benchmarks/search_eval.py --data ../shared/data --run toolkit/assets/runs/default
    python benchmarks/search_eval.py --data ../shared/data --objectives error,latency,energy --epochs 20
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from modnas.toolkit.pareto import greedy_hv_subset, hypervolume, igd_plus, nondominated, nondominated_mask, normalise

PERCENTILES = (10, 25, 50, 75)
PREFERENCES = 24


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="../shared/data")
    p.add_argument("--run", default=None, help="evaluate this run instead of training one")
    p.add_argument("--task", choices=["cifar10", "cifar100", "imagenet16-120"], default=None,
                   help="when training (default cifar10); with --run, the run's task")
    p.add_argument("--objectives", default=None, help="error,latency (default) or error,latency,energy; "
                   "with --run, the run's")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--holdout-share", type=float, default=0.25)
    p.add_argument("--out", default="benchmarks/results/search")
    p.add_argument("--tag", default=None, help="file name stem (default: task, objectives and run name)")
    p.add_argument("--run-out", default="runs/search_eval", help="where a trained run is written (git-ignored)")
    p.add_argument("--cost", choices=["auto", "standin", "predictor"], default="auto")
    p.add_argument("--max-devices", type=int, default=0, help="cap on held-out devices (0 = all)")
    p.add_argument("--no-baselines", action="store_true", help="skip random search and NSGA-II")
    p.add_argument("--supernet-epoch", action="store_true", help="also time one supernet-mode epoch")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=JSON",
                   help="when training, a run configuration field (e.g. entropy_bonus=0.02); repeatable")
    return p.parse_args()


def _overrides(items: list[str]) -> dict[str, Any]:
    """``FIELD=JSON`` pairs (a value that is not JSON is taken as a string)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set {item!r}: expected FIELD=VALUE")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- devices -------------------------------------------------------------------------------------
def split_held_out(keys: list[str], seed: int, share: float) -> tuple[list[str], list[str], list[str], str]:
    """(training, held-out, held-out units, unit): whole hardware groups, or runtimes of the one board
    when every device is the same hardware."""
    from modnas.toolkit.data.groups import groups, hardware_group
    from modnas.toolkit.search.default_run import split_devices

    if len(groups(keys)) >= 2:
        train, held, held_groups = split_devices(keys, seed, share)
        return train, held, held_groups, "hardware group"
    units: dict[str, list[str]] = {}
    for k in keys:
        parts = k.split(":")
        runtime = parts[2].split("_")[0] if len(parts) > 2 else parts[-1]
        units.setdefault(f"{hardware_group(k)}/{runtime}", []).append(k)
    names = sorted(units)
    if len(names) < 2:
        raise SystemExit(f"cannot hold devices out: {len(keys)} devices, one hardware group and one runtime")
    n_hold = min(len(names) - 1, max(1, int(round(share * len(names)))))
    held_units = sorted(np.random.default_rng(seed).choice(names, size=n_hold, replace=False).tolist())
    held = [k for u in held_units for k in units[u]]
    return [k for k in keys if k not in held], held, held_units, "runtime of one board (every device is one board)"


def _costs(data: str, keys: list[str], mode: str, metric: str, table: Any) -> tuple[list[Any], str]:
    from modnas.toolkit.search.api import resolve_devices
    from modnas.toolkit.search.costs import linear_costs_from_table

    if mode == "standin":
        return linear_costs_from_table(data, keys, metric, table=table), "stand-in log-linear per table column"
    return resolve_devices(keys, data, metric=metric, allow_standin=(mode == "auto"), table=table)


# -- method helpers ------------------------------------------------------------------------------
def percentile_rank(values: np.ndarray) -> np.ndarray:
    """Rank of each finite value among the finite ones, in [0, 1] (ties share their mean rank); NaN stays NaN."""
    from scipy.stats import rankdata

    v = np.asarray(values, dtype=np.float64)
    out = np.full(len(v), np.nan)
    ok = np.isfinite(v)
    out[ok] = (rankdata(v[ok]) - 1.0) / max(int(ok.sum()) - 1, 1)
    return out


def spread_picks(points: np.ndarray, k: int) -> list[int]:
    """Up to ``k`` indices of ``points`` (minimised, any scale) spread along their non-dominated
    set: greedy by hypervolume on the points min-max scaled with 5 % room past the worst."""
    f = np.asarray(points, dtype=np.float64)
    nd = np.flatnonzero(nondominated_mask(f))
    _, first = np.unique(np.round(f[nd], 12), axis=0, return_index=True)
    nd = np.sort(nd[first])
    if len(nd) <= k:
        return [int(i) for i in nd]
    lo, hi = f.min(axis=0), f.max(axis=0)
    g = (f[nd] - lo) / (np.where(hi > lo, hi - lo, 1.0) * 1.05)
    return [int(nd[i]) for i in greedy_hv_subset(g, k)]


def exact_minimisers(objs: np.ndarray, prefs: np.ndarray, kind: str, mu: float, ideal: float) -> list[int]:
    """Index of the minimiser of the scalarised ``objs`` [N, M] for each preference row."""
    try:
        from modnas.toolkit.search.scalarise import minimisers
    except ImportError:  # the toolkit before its scalarisation module: the weighted sum only
        if kind != "weighted_sum":
            raise
        return [int(i) for i in np.argmin(prefs @ objs.T, axis=1)]
    return [int(i) for i in minimisers(objs, prefs, kind, mu, ideal)]


def _random_search(seconds: float, score: Callable[[list[int]], np.ndarray], n_all: int, seed: int) -> list[int]:
    rng = np.random.default_rng(seed)
    seen: set[int] = set()
    idx: list[int] = []
    rows: list[np.ndarray] = []
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds and len(seen) < n_all:
        batch = [int(i) for i in dict.fromkeys(rng.integers(0, n_all, 64).tolist()) if int(i) not in seen]
        if not batch:
            continue
        seen.update(batch)
        rows.append(score(batch))
        idx += batch
    f = np.vstack(rows)
    return [i for i, m in zip(idx, nondominated_mask(f)) if m]


def _nsga2(seconds: float, score: Callable[[list[int]], np.ndarray], n_obj: int, seed: int) -> list[int]:
    from pymoo.algorithms.moo.nsga2 import NSGA2
    from pymoo.core.problem import Problem
    from pymoo.operators.crossover.sbx import SBX
    from pymoo.operators.mutation.pm import PM
    from pymoo.operators.repair.rounding import RoundingRepair
    from pymoo.operators.sampling.rnd import IntegerRandomSampling
    from pymoo.optimize import minimize
    from pymoo.termination.max_time import TimeBasedTermination

    from modnas.toolkit.spaces import get_space

    space = get_space("nb201")
    index = {a: i for i, a in enumerate(space.all_archs())}

    def to_index(row: np.ndarray) -> int:
        return index[space.canonical(space.from_indices([int(v) for v in row]))]

    class P(Problem):
        def __init__(self) -> None:
            super().__init__(n_var=6, n_obj=n_obj, xl=0, xu=4, vtype=int)

        def _evaluate(self, x: np.ndarray, out: dict[str, Any], *args: Any, **kwargs: Any) -> None:
            out["F"] = score([to_index(row) for row in np.round(x).astype(int)])

    algo = NSGA2(pop_size=24, sampling=IntegerRandomSampling(),
                 crossover=SBX(prob=0.9, eta=15, vtype=float, repair=RoundingRepair()),
                 mutation=PM(eta=20, vtype=float, repair=RoundingRepair()), eliminate_duplicates=True)
    res = minimize(P(), algo, TimeBasedTermination(max_time=seconds), seed=seed, verbose=False)
    x = np.atleast_2d(res.pop.get("X")).astype(int)
    mask = nondominated_mask(np.atleast_2d(res.pop.get("F")))
    return list(dict.fromkeys(to_index(row) for row in x[mask]))


# -- scoring -------------------------------------------------------------------------------------
def score_set(picks: list[int], truth: np.ndarray, valid: np.ndarray, lo: np.ndarray, hi: np.ndarray,
              ref_front: np.ndarray, hv_exh: float) -> dict[str, float]:
    """HV ratio, IGD+ and counts of a set of picked cells on the true (normalised) objectives."""
    distinct = list(dict.fromkeys(picks))
    ok = [i for i in distinct if valid[i]]
    pts = normalise(truth[ok], lo, hi) if ok else np.zeros((0, truth.shape[1]))
    true_nd = int(nondominated_mask(pts).sum()) if ok else 0
    return {"hv_ratio": hypervolume(pts) / hv_exh, "igd_plus": igd_plus(pts, ref_front),
            "distinct": len(distinct), "true_nondominated": true_nd}


def budget_picks(pick: Callable[[float], int | None], acc: np.ndarray, lat: np.ndarray, valid: np.ndarray
                 ) -> dict[str, Any]:
    """Regret and over-budget share of the picks at the latency percentiles (a missing pick counted apart)."""
    regrets, over, missed = [], [], 0
    for q in PERCENTILES:
        b = float(np.percentile(lat[valid], q))
        i = pick(b)
        if i is None:
            missed += 1
            continue
        best = float(acc[valid & (lat <= b)].max())
        regrets.append(best - float(acc[i]))
        over.append(bool(lat[i] > b))
    return {"regret_each": regrets, "over_each": over, "no_pick": missed / len(PERCENTILES)}


# -- main ----------------------------------------------------------------------------------------
def main() -> None:
    torch.set_num_threads(1)
    args = _args()
    t_bench = time.perf_counter()
    from modnas.toolkit.spaces.nb201.tables import load_accuracy, load_table
    from modnas.toolkit.search.api import run_search
    from modnas.toolkit.search.default_run import objective_keys
    from modnas.toolkit.search.loop import error_range
    from modnas.toolkit.search.readout import pareto, preference_grid, resolve_margin, select
    from modnas.toolkit.search.run import load_run
    from modnas.toolkit.spaces import get_space
    from modnas.toolkit.spaces.nb201.tasks import CHANCE_ACCURACY, task_column

    run = load_run(args.run) if args.run else None
    if run is not None:
        objectives = list(run.objectives)
        if args.objectives and [o.strip() for o in args.objectives.split(",")] != objectives:
            raise SystemExit(f"--objectives {args.objectives} but run {args.run} optimised {','.join(objectives)}")
        if run.config.accuracy != "benchmark" or run.config.space != "nb201":
            raise SystemExit("only benchmark-mode nb201 runs can be scored against the tables")
        task = run.config.benchmark.task or "cifar10"
        if args.task and args.task != task:
            raise SystemExit(f"--task {args.task} but run {args.run} searched {task}")
        column = run.config.benchmark.accuracy_column
    else:
        objectives = [o.strip() for o in (args.objectives or "error,latency").split(",")]
        task = args.task or "cifar10"
        column = task_column(task)
    metrics = objectives[1:]
    space = get_space("nb201")
    all_archs = space.all_archs()
    n_all = len(all_archs)
    tables = {m: load_table(args.data, m) for m in metrics}
    acc = np.asarray(load_accuracy(args.data)[column], dtype=np.float64)
    keys, _ = objective_keys(args.data, objectives, table=tables.get("latency"))
    train, held, held_units, unit = split_held_out(keys, args.seed, args.holdout_share)
    if args.max_devices:
        held = held[: args.max_devices]
    if run is not None:
        seen = sorted(set(run.config.devices) & set(held))
        if seen:
            raise SystemExit(f"run {args.run} trained on held-out devices {seen}: draw another --seed")
        train = list(run.config.devices)
    _log(f"task {task}, objectives {','.join(objectives)}: {len(train)} training devices; held out "
         f"({unit}): {held_units} ({len(held)} devices)")

    train_costs = {m: _costs(args.data, train, args.cost, m, tables[m]) for m in metrics}
    held_costs = {m: _costs(args.data, held, args.cost, m, tables[m])[0] for m in metrics}
    source = train_costs[metrics[0]][1]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if run is None:
        t0 = time.perf_counter()
        tag_run = f"run_{task}_{'-'.join(metrics)}"
        run_dir = Path(args.run_out) / tag_run
        res = run_search(train_costs["latency"][0] if "latency" in metrics else train_costs[metrics[0]][0],
                         objectives, accuracy="benchmark", data_dir=args.data, epochs=args.epochs,
                         out=run_dir, seed=args.seed, steps_per_epoch=args.steps, cost_source=source,
                         energy_devices=train_costs["energy"][0] if "energy" in metrics else None,
                         task=task, plots=False, **_overrides(args.set))
        search_s = time.perf_counter() - t0
        run = load_run(res["run"])
        run_name = str(run_dir)
    else:
        search_s = float(run.meta.get("seconds", 0.0))
        run_name = str(args.run)
    cfg = run.config
    scal = cfg.scalarisation.kind
    mu, ideal = float(cfg.scalarisation.smooth_mu), float(cfg.scalarisation.ideal_point)
    try:
        from modnas.toolkit.search.scalarise import SCALARISATIONS
        kinds = list(SCALARISATIONS)
    except ImportError:
        kinds = ["weighted_sum"]

    with torch.no_grad():
        pred_err = run.surrogate.error(torch.as_tensor(space.encode(all_archs))).numpy().astype(np.float64)
    e_lo, e_hi = error_range(run.surrogate, cfg.benchmark.error_quantile, run.space)
    index_of = {a: i for i, a in enumerate(all_archs)}
    prefs = preference_grid(len(objectives), PREFERENCES)
    n_train = len(train)

    # device-blind cost per metric: mean percentile rank of the training devices' measured values
    blind = np.column_stack([np.nanmean(np.vstack([percentile_rank(tables[m].row(k)) for k in train]), axis=0)
                             for m in metrics])
    known = np.all(np.isfinite(blind), axis=1)
    blind_picks = [int(np.flatnonzero(known)[i])
                   for i in spread_picks(np.column_stack([pred_err, blind])[known], PREFERENCES)]

    import inspect

    has_oversample = "oversample" in inspect.signature(pareto).parameters
    has_predictor_only = "predictor_only" in inspect.signature(pareto).parameters
    rows: list[dict[str, Any]] = []
    pool_sizes: list[int] = []  # distinct cells in the top-k read-out's pool, per held-out device
    for d, name in enumerate(held):
        costs = {m: held_costs[m][d] for m in metrics}
        lat_cost = costs.get("latency")
        energy_cost = costs.get("energy")
        truth = np.column_stack([100.0 - acc] + [tables[m].row(name) for m in metrics])
        valid = np.all(np.isfinite(truth), axis=1) & (acc > CHANCE_ACCURACY[task] + 0.5)
        lo, hi = truth[valid].min(axis=0), truth[valid].max(axis=0)
        ref_front = normalise(nondominated(truth[valid]), lo, hi)
        hv_exh = hypervolume(ref_front)
        pred = np.column_stack([pred_err] + [np.asarray(costs[m].predict(all_archs), dtype=np.float64)
                                             for m in metrics])
        norm = np.empty_like(pred)
        norm[:, 0] = (pred[:, 0] - e_lo) / (e_hi - e_lo)
        for j, m in enumerate(metrics, start=1):
            c_lo, c_hi = costs[m].minmax()
            norm[:, j] = (pred[:, j] - c_lo) / ((c_hi - c_lo) if c_hi > c_lo else 1.0)

        def front_of(idx: list[int]) -> list[int]:
            """The predicted non-dominated distinct members of ``idx`` (what a read-out would show)."""
            u = list(dict.fromkeys(idx))
            return [i for i, m in zip(u, nondominated_mask(pred[u])) if m] if u else []

        t0 = time.perf_counter()
        front = pareto(run, lat_cost, PREFERENCES, energy_cost=energy_cost)
        t_read = time.perf_counter() - t0
        methods: dict[str, list[int]] = {"modnas": [index_of[r["arch"]] for r in front]}
        if "top_k" in inspect.signature(pareto).parameters:
            methods["modnas-argmax"] = [index_of[r["arch"]] for r in
                                        pareto(run, lat_cost, PREFERENCES, energy_cost=energy_cost, top_k=1)]
        if has_oversample:
            methods["modnas-grid"] = [index_of[r["arch"]] for r in
                                      pareto(run, lat_cost, PREFERENCES, energy_cost=energy_cost, oversample=1,
                                             **({"top_k": 1} if "top_k" in inspect.signature(pareto).parameters else {}))]
        if has_predictor_only:
            methods["modnas-predictor-only"] = [index_of[r["arch"]] for r in
                                                pareto(run, lat_cost, PREFERENCES, energy_cost=energy_cost,
                                                       predictor_only=True)]
        if "top_k" in inspect.signature(pareto).parameters:
            # the control for the top-k read-out: as many cells as its pool holds, drawn at random,
            # chosen the same way (predicted hypervolume); what is left is the hypernetwork's share
            from modnas.toolkit.search.preferences import preference_grid as _grid
            from modnas.toolkit.search.readout import _top_k
            from modnas.toolkit.search.topk import TOPK_PREFERENCES, topk_candidates

            k_default = _top_k(run)
            if k_default > 1:
                pool_archs, _ = topk_candidates(run, lat_cost.embedding,
                                                _grid(len(run.objectives), max(PREFERENCES, TOPK_PREFERENCES)), k_default)
                pool_sizes.append(len(pool_archs))
                drawn = np.random.default_rng(args.seed + len(pool_sizes)).choice(n_all, size=len(pool_archs),
                                                                                 replace=False)
                drawn = [int(i) for i in drawn]
                methods["random-pool"] = front_of([drawn[i] for i in spread_picks(pred[drawn], PREFERENCES)])
        methods["modnas-refine"] = [index_of[r["arch"]] for r in
                                    pareto(run, lat_cost, PREFERENCES, energy_cost=energy_cost, refine_rounds=2)]
        for kind in kinds:
            methods[f"exact-{kind}"] = front_of(exact_minimisers(norm, prefs, kind, mu, ideal))
        pf = [int(i) for i in np.flatnonzero(nondominated_mask(pred))]
        methods["predicted-front"] = front_of(pf)
        methods["predicted-24"] = front_of([pf[i] for i in spread_picks(pred[pf], PREFERENCES)])
        methods["blind-24"] = list(blind_picks)
        t_equal = search_s / max(1, n_train) + t_read
        if not args.no_baselines:
            cache: dict[int, np.ndarray] = {}

            def score(idx: list[int]) -> np.ndarray:
                new = [i for i in dict.fromkeys(idx) if i not in cache]
                if new:
                    archs = [all_archs[i] for i in new]
                    vals = np.column_stack([np.asarray(costs[m].predict(archs), dtype=np.float64) for m in metrics])
                    cache.update(zip(new, vals))
                return np.array([np.concatenate([[pred_err[i]], cache[i]]) for i in idx])

            methods["random"] = _random_search(t_equal, score, n_all, args.seed)
            cache.clear()
            methods["nsga2"] = _nsga2(t_equal, score, len(objectives), args.seed)

        margin = resolve_margin(lat_cost, None) if lat_cost is not None else 0.0
        row: dict[str, Any] = {"device": name, "hv_exhaustive": hv_exh, "exhaustive_front": len(ref_front),
                               "readout_s": t_read, "equal_time_s": t_equal, "margin": margin, "methods": {}}
        for mname, picks in methods.items():
            rec: dict[str, Any] = score_set(picks, truth, valid, lo, hi, ref_front, hv_exh)
            if lat_cost is not None:
                lat_true = truth[:, 1 + metrics.index("latency")]
                j_lat = 1 + metrics.index("latency")
                if mname in ("modnas", "modnas-refine"):
                    rounds = 0 if mname == "modnas" else 2

                    def pick(b: float, rounds: int = rounds) -> int | None:
                        try:
                            return index_of[select(run, lat_cost, b, refine_rounds=rounds)["arch"]]
                        except Exception:  # nothing predicted to fit: a miss
                            return None
                else:
                    def pick(b: float, picks: list[int] = picks) -> int | None:
                        ok = [i for i in dict.fromkeys(picks) if pred[i, j_lat] * (1 + margin) <= b]
                        return min(ok, key=lambda i: (pred[i, 0], pred[i, j_lat])) if ok else None
                rec.update(budget_picks(pick, acc, lat_true, valid))
            row["methods"][mname] = rec
        rows.append(row)
        _log(f"{name}: " + ", ".join(f"{k} {v['hv_ratio']:.4f}/{v['distinct']}" for k, v in row["methods"].items()))

    names = list(rows[0]["methods"])
    summary: dict[str, Any] = {
        "task": task, "objectives": objectives, "run": run_name, "scalarisation": scal,
        "train_devices": train, "held_out_units": held_units, "held_out_unit": unit, "held_out": held,
        "cost_source": source, "search_seconds": search_s, "epochs": cfg.epochs,
        "steps_per_epoch": cfg.benchmark.steps_per_epoch, "preferences": PREFERENCES, "torch_threads": 1, "methods": {}}
    for mname in names:
        recs = [r["methods"][mname] for r in rows]
        hv = np.array([x["hv_ratio"] for x in recs])
        s: dict[str, Any] = {"hv_ratio": float(hv.mean()), "hv_worst": float(hv.min()),
                             "worst_device": rows[int(np.argmin(hv))]["device"],
                             "igd_plus": float(np.mean([x["igd_plus"] for x in recs])),
                             "distinct": float(np.mean([x["distinct"] for x in recs])),
                             "true_nondominated": float(np.mean([x["true_nondominated"] for x in recs]))}
        if "regret_each" in recs[0]:
            reg = [v for x in recs for v in x["regret_each"]]
            over = [v for x in recs for v in x["over_each"]]
            s.update({"regret": float(np.mean(reg)) if reg else float("nan"),
                      "over_budget": float(np.mean(over)) if over else 0.0, "picks": len(reg),
                      "no_pick": float(np.mean([x["no_pick"] for x in recs]))})
        summary["methods"][mname] = s
    if args.supernet_epoch:
        summary["supernet_epoch"] = _time_supernet(train_costs["latency"][0][:2], out / "supernet_run", args.seed)
    if pool_sizes:
        summary["topk_pool_cells"] = float(np.mean(pool_sizes))
        summary["space_cells"] = n_all
    summary["benchmark_seconds"] = time.perf_counter() - t_bench
    tag = args.tag or f"{task}_{'-'.join(metrics)}_{Path(run_name).name}"
    md = markdown(summary)
    (out / f"{tag}.json").write_text(json.dumps({"summary": summary, "rows": rows}, indent=2, default=float) + "\n")
    (out / f"{tag}.md").write_text(md)
    print(md)
    print(json.dumps({k: v for k, v in summary.items() if k not in ("train_devices", "held_out")}, indent=1))


def markdown(summary: dict[str, Any]) -> str:
    """The table of means over the held-out devices (and the worst device's HV ratio)."""
    lines = [f"Task {summary['task']}, objectives {','.join(summary['objectives'])}, run `{summary['run']}` "
             f"({summary['scalarisation']}, {summary['epochs']} epochs, search {summary['search_seconds']:.0f} s); "
             f"{len(summary['train_devices'])} training devices, {len(summary['held_out'])} held out "
             f"({summary['held_out_unit']}: {', '.join(summary['held_out_units'])}).", "",
             "| method | HV / exhaustive | worst device | IGD+ | distinct picks | truly non-dominated | "
             "budget regret (points) | picks over budget | budgets with no pick |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, s in summary["methods"].items():
        budget = (f"{s['regret']:.2f} | {100 * s['over_budget']:.0f} % | {100 * s['no_pick']:.0f} %"
                  if "regret" in s else "- | - | -")
        lines.append(f"| {name} | {s['hv_ratio']:.4f} | {s['hv_worst']:.4f} | {s['igd_plus']:.4f} | "
                     f"{s['distinct']:.1f} | {s['true_nondominated']:.1f} | {budget} |")
    return "\n".join(lines) + "\n"


def _time_supernet(costs: list[Any], out: Path, seed: int) -> dict[str, Any]:
    from modnas.toolkit.search.api import run_search

    res = run_search(costs, accuracy="supernet", data_dir="digits", epochs=1, out=out, seed=seed,
                     batch_size=64, plots=False)
    return {"devices": len(costs), "images": "digits (1,797; 45 % weight half)", "channels": 16, "cells": 5,
            "batch": 64, "seconds_per_epoch": res["seconds"]}


if __name__ == "__main__":
    main()
