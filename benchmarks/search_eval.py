"""Evaluate a benchmark-mode MODNAS search on held-out table devices.

Held-out devices are whole hardware groups (``toolkit.benchdata.hardware_group``) drawn with the
seed, never a fixed list. For each held-out device: HV ratio of the read-out front against the
exhaustive true front (error >= 90 % dropped, min-max normalised over the remaining
architectures, reference (1, 1)), IGD+, and budget regret at the 10/25/50/75th latency
percentiles with the share of picks over budget. Baselines on the same predictors: random search
and NSGA-II (pymoo) at equal wall time, and the device-blind front (cross-device mean of
normalised predicted latency).

    python benchmarks/search_eval.py --data ../shared/data --epochs 30 --out benchmarks/results/search
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch


METHODS = ("modnas", "modnas+refine", "random", "nsga2", "blind")


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="../shared/data")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--holdout-share", type=float, default=0.25)
    p.add_argument("--out", default="benchmarks/results/search")
    p.add_argument("--run", default=None, help="evaluate this run instead of training one")
    p.add_argument("--cost", choices=["auto", "standin", "predictor"], default="auto")
    p.add_argument("--supernet-epoch", action="store_true", help="also time one supernet-mode epoch")
    p.add_argument("--max-devices", type=int, default=0, help="cap on held-out devices (0 = all)")
    return p.parse_args()


def _costs(data: str, keys: list[str], mode: str, table: Any) -> tuple[list[Any], str]:
    from toolkit.search.api import resolve_devices
    from toolkit.search.costs import linear_costs_from_table

    if mode == "standin":
        return linear_costs_from_table(data, keys, table=table), "stand-in log-linear per table column"
    models, source = resolve_devices(keys, data, allow_standin=(mode == "auto"), table=table)
    return models, source


def _pick(archs: list[str], err: np.ndarray, lat: np.ndarray, budget: float, margin: float) -> int | None:
    ok = np.flatnonzero(lat * (1 + margin) <= budget)
    if len(ok) == 0:
        return None
    return int(ok[np.lexsort((lat[ok], err[ok]))[0]])


def _score_front(idx: list[int], true_err: np.ndarray, true_lat: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                 ref_front: np.ndarray) -> tuple[float, float]:
    from toolkit.pareto import hypervolume, igd_plus, normalise

    idx = [i for i in idx if np.isfinite(true_lat[i]) and true_err[i] < 90]
    pts = normalise(np.stack([true_err[idx], true_lat[idx]], axis=1), lo, hi) if idx else np.zeros((0, 2))
    return hypervolume(pts), igd_plus(pts, ref_front)


def _random_search(seconds: float, score: Callable[[list[str]], tuple[np.ndarray, np.ndarray]], seed: int
                   ) -> list[str]:
    from toolkit.pareto import nondominated_mask
    from toolkit.spaces import get_space

    space = get_space("nb201")
    rng = np.random.default_rng(seed)
    archs: list[str] = []
    errs, lats = np.zeros(0), np.zeros(0)
    t0 = time.perf_counter()
    seen: set[str] = set()
    while time.perf_counter() - t0 < seconds and len(seen) < 15625:
        batch = [space.from_indices(list(rng.integers(0, 5, 6))) for _ in range(64)]
        batch = [a for a in dict.fromkeys(batch) if a not in seen]
        if not batch:
            continue
        seen.update(batch)
        e, l = score(batch)
        archs += batch
        errs, lats = np.append(errs, e), np.append(lats, l)
    mask = nondominated_mask(np.stack([errs, lats], axis=1))
    return [a for a, m in zip(archs, mask) if m]


def _nsga2(seconds: float, score: Callable[[list[str]], tuple[np.ndarray, np.ndarray]], seed: int) -> list[str]:
    from pymoo.algorithms.moo.nsga2 import NSGA2
    from pymoo.core.problem import Problem
    from pymoo.operators.crossover.sbx import SBX
    from pymoo.operators.mutation.pm import PM
    from pymoo.operators.repair.rounding import RoundingRepair
    from pymoo.operators.sampling.rnd import IntegerRandomSampling
    from pymoo.optimize import minimize
    from pymoo.termination.max_time import TimeBasedTermination

    from toolkit.pareto import nondominated_mask
    from toolkit.spaces import get_space

    space = get_space("nb201")

    class P(Problem):
        def __init__(self) -> None:
            super().__init__(n_var=6, n_obj=2, xl=0, xu=4, vtype=int)

        def _evaluate(self, x: np.ndarray, out: dict[str, Any], *args: Any, **kwargs: Any) -> None:
            archs = [space.from_indices([int(v) for v in row]) for row in np.round(x).astype(int)]
            e, l = score(archs)
            out["F"] = np.stack([e, l], axis=1)

    algo = NSGA2(pop_size=24, sampling=IntegerRandomSampling(),
                 crossover=SBX(prob=0.9, eta=15, vtype=float, repair=RoundingRepair()),
                 mutation=PM(eta=20, vtype=float, repair=RoundingRepair()), eliminate_duplicates=True)
    res = minimize(P(), algo, TimeBasedTermination(max_time=seconds), seed=seed, verbose=False)
    x = np.atleast_2d(res.pop.get("X")).astype(int)
    f = np.atleast_2d(res.pop.get("F"))
    mask = nondominated_mask(f)
    return list(dict.fromkeys(space.from_indices(list(map(int, row))) for row in x[mask]))


def main() -> None:
    torch.set_num_threads(1)
    args = _args()
    from toolkit.benchdata import load_accuracy, load_table
    from toolkit.pareto import hypervolume, nondominated, normalise
    from toolkit.search.api import run_search
    from toolkit.search.readout import pareto, resolve_margin, select
    from toolkit.search.run import load_run
    from toolkit.spaces import get_space

    space = get_space("nb201")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table = load_table(args.data, "latency")
    acc = np.asarray(load_accuracy(args.data).sort_index()["cifar10_test_200ep"], dtype=np.float64)
    true_err = 100.0 - acc
    all_archs = space.all_archs()
    from toolkit.search.default_run import split_devices, usable_keys

    train, held, held_groups = split_devices(usable_keys(args.data, table), args.seed, args.holdout_share)
    if args.max_devices:
        held = held[: args.max_devices]
    print(f"{len(train)} training devices, held-out groups {held_groups} ({len(held)} devices)", flush=True)

    train_costs, source = _costs(args.data, train, args.cost, table)
    held_costs, _ = _costs(args.data, held, args.cost, table)
    if args.run:
        run_dir, search_s = Path(args.run), float(json.loads((Path(args.run) / "config.json").read_text())["seconds"])
    else:
        t0 = time.perf_counter()
        res = run_search(train_costs, accuracy="benchmark", data_dir=args.data, epochs=args.epochs,
                         out=out / "run", seed=args.seed, steps_per_epoch=args.steps, cost_source=source)
        search_s = time.perf_counter() - t0
        run_dir = Path(res["run"])
    run = load_run(run_dir)
    onehot_all = space.encode(all_archs)
    with torch.no_grad():
        pred_err_all = run.surrogate.error(torch.as_tensor(onehot_all)).numpy().astype(np.float64)
    err_of = dict(zip(all_archs, pred_err_all))
    index_of = {a: i for i, a in enumerate(all_archs)}

    # device-blind: cross-device mean of normalised predicted latency over the training devices
    blind_lat = np.zeros(len(all_archs))
    for m in train_costs:
        v = np.asarray(m.predict(all_archs), dtype=np.float64)
        blind_lat += (v - v.min()) / max(v.max() - v.min(), 1e-12)
    blind_lat /= len(train_costs)
    blind_mask_front = nondominated(np.stack([pred_err_all, blind_lat], axis=1))
    from toolkit.pareto import nondominated_mask

    blind_archs = [a for a, m in zip(all_archs, nondominated_mask(np.stack([pred_err_all, blind_lat], 1))) if m]
    del blind_mask_front

    rows = []
    for cost in held_costs:
        lat_true = table.row(cost.name)
        valid = np.isfinite(lat_true) & (true_err < 90)
        lo = np.array([true_err[valid].min(), lat_true[valid].min()])
        hi = np.array([true_err[valid].max(), lat_true[valid].max()])
        ref_front = normalise(nondominated(np.stack([true_err[valid], lat_true[valid]], 1)), lo, hi)
        hv_exh = hypervolume(ref_front)
        t0 = time.perf_counter()
        front = pareto(run, cost, preferences=24)
        t_read = time.perf_counter() - t0
        margin = resolve_margin(cost, None)
        cache: dict[str, float] = {}

        def score(archs: list[str]) -> tuple[np.ndarray, np.ndarray]:
            new = [a for a in archs if a not in cache]
            if new:
                cache.update(zip(new, np.asarray(cost.predict(new), dtype=np.float64)))
            return np.array([err_of[a] for a in archs]), np.array([cache[a] for a in archs])

        # equal wall time: the amortised per-device search cost plus the read-out
        t_equal = search_s / max(1, len(train_costs)) + t_read
        methods: dict[str, list[str]] = {"modnas": [r["arch"] for r in front],
                                         "modnas+refine": [r["arch"] for r in pareto(run, cost, 24, refine_rounds=2)]}
        t1 = time.perf_counter()
        methods["random"] = _random_search(t_equal, score, args.seed)
        methods["nsga2"] = _nsga2(t_equal, score, args.seed)
        methods["blind"] = blind_archs
        row: dict[str, Any] = {"device": cost.name, "hv_exhaustive": hv_exh, "readout_s": t_read,
                               "equal_time_s": t_equal, "margin": margin}
        percentiles = (10, 25, 50, 75)
        budgets = [float(np.percentile(lat_true[valid], q)) for q in percentiles]
        for name, archs in methods.items():
            idx = [index_of[a] for a in archs]
            hv, igd = _score_front(idx, true_err, lat_true, lo, hi, ref_front)
            regrets, over, missed = [], [], 0
            for b in budgets:
                feasible = valid & (lat_true <= b)
                best = acc[feasible].max()
                if name.startswith("modnas"):
                    try:
                        arch = select(run, cost, b, refine_rounds=0 if name == "modnas" else 2)["arch"]
                    except Exception:  # nothing predicted to fit: count as a miss at full regret
                        arch = None
                else:
                    e, l = score(archs)
                    k = _pick(archs, e, l, b, margin)
                    arch = None if k is None else archs[k]
                if arch is None:   # nothing predicted to fit with the margin: reported as a miss
                    missed += 1
                    continue
                i = index_of[arch]
                regrets.append(float(best - acc[i]))
                over.append(bool(lat_true[i] > b))
            row[name] = {"hv_ratio": hv / hv_exh, "igd_plus": igd,
                         "regret": float(np.mean(regrets)) if regrets else float("nan"),
                         "regret_each": regrets, "over_budget": float(np.mean(over)) if over else 0.0,
                         "no_pick": missed / len(budgets), "n": len(archs)}
        row["baseline_s"] = time.perf_counter() - t1
        rows.append(row)
        print(json.dumps({k: (v if not isinstance(v, dict) else {kk: vv for kk, vv in v.items() if kk != "regret_each"})
                          for k, v in row.items()}), flush=True)

    summary: dict[str, Any] = {"train_devices": train, "held_out_groups": held_groups, "held_out": held,
                               "cost_source": source, "search_seconds": search_s, "epochs": run.config.epochs,
                               "steps_per_epoch": run.config.steps_per_epoch, "torch_threads": 1}
    for name in METHODS:
        summary[name] = {k: float(np.mean([r[name][k] for r in rows])) for k in ("hv_ratio", "igd_plus", "no_pick")}
        picks = [(reg, r[name]["over_budget"]) for r in rows for reg in r[name]["regret_each"]]
        summary[name]["regret"] = float(np.mean([p[0] for p in picks])) if picks else float("nan")
        n_over = sum(round(r[name]["over_budget"] * len(r[name]["regret_each"])) for r in rows)
        summary[name]["over_budget"] = n_over / max(1, len(picks))
        summary[name]["picks"] = len(picks)
    if args.supernet_epoch:
        summary["supernet_epoch"] = _time_supernet(train_costs[:2], out / "supernet_run", args.seed)
    (out / "rows.json").write_text(json.dumps(rows, indent=2))
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    lines = ["| method | HV / exhaustive | IGD+ | budget regret (acc. points, over picks) | picks over budget | budgets with no pick |",
             "|---|---:|---:|---:|---:|---:|"]
    for name in METHODS:
        s = summary[name]
        lines.append(f"| {name} | {s['hv_ratio']:.4f} | {s['igd_plus']:.4f} | {s['regret']:.3f} | "
                     f"{100 * s['over_budget']:.1f} % | {100 * s['no_pick']:.1f} % |")
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(json.dumps({k: v for k, v in summary.items() if k not in ("train_devices", "held_out")}, indent=1))


def _time_supernet(costs: list[Any], out: Path, seed: int) -> dict[str, Any]:
    from toolkit.search.api import run_search

    res = run_search(costs, accuracy="supernet", data_dir="digits", epochs=1, out=out, seed=seed,
                     batch_size=64, plots=False)
    return {"devices": len(costs), "images": "digits (1,797; 45 % weight half)", "channels": 16, "cells": 5,
            "batch": 64, "seconds_per_epoch": res["seconds"]}


if __name__ == "__main__":
    main()
