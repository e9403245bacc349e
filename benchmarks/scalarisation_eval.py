"""Which scalarisation wins: short benchmark-mode runs, one per scalarisation, scored on held-out devices.

The training devices and the held-out hardware groups are the shipped default run's
(``modnas.toolkit.search.default_run.split_devices``: whole groups left out, drawn with the seed). For each
held-out device and each run: HV/exhaustive of the 24-pick read-out (``pareto --preferences 24``,
true error and latency, the exhaustive true front as in ``benchmarks/search_eval.py``), the number of
distinct picks and of those non-dominated under the true values, and the same for the exact
minimisers of the run's scalarisation at 24 preferences over all 15,625 cells with the same
predictors (the scalarisation's own limit, no hypernetwork), and the predictor-only read-out with the
run's scalarisation (``readout.predictor_candidates``: minimisers at 16 x 24 preferences, 24 chosen
by predicted hypervolume; ``pareto --predictor-only`` always uses Tchebycheff). Runs already in OUT/KIND are reused.

    python benchmarks/scalarisation_eval.py --data ../shared/data --epochs 6 --out benchmarks/results/scalarisation
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

KINDS = ("weighted_sum", "tchebycheff", "smooth_tchebycheff")


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="../shared/data")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--share", type=float, default=0.25)
    p.add_argument("--kinds", default=",".join(KINDS))
    p.add_argument("--preferences", type=int, default=24)
    p.add_argument("--out", default="benchmarks/results/scalarisation")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="a SearchConfig override for every run (repeatable), e.g. h_lr=0.03")
    p.add_argument("--train-only", action="store_true", help="train the runs, score nothing")
    return p.parse_args()


def train(kind: str, train_costs: list[Any], source: str, out: Path, args: argparse.Namespace) -> Path:
    from modnas.toolkit.search.api import run_search

    run_dir = out / kind
    if (run_dir / "config.json").exists():
        return run_dir
    overrides = {}
    for item in args.set:
        key, _, value = item.partition("=")
        overrides[key] = json.loads(value)
    run_search(train_costs, accuracy="benchmark", epochs=args.epochs, out=run_dir, seed=args.seed,
               steps_per_epoch=args.steps, cost_source=source, scalarisation=kind, plots=False, **overrides)
    return run_dir


def main() -> None:
    torch.set_num_threads(1)
    args = _args()
    from modnas.toolkit.spaces.nb201.tables import load_accuracy, load_table
    from modnas.toolkit.pareto import hypervolume, nondominated, nondominated_mask, normalise
    from modnas.toolkit.search.api import resolve_devices
    from modnas.toolkit.search.default_run import split_devices, usable_keys
    from modnas.toolkit.search.loop import error_range
    from modnas.toolkit.search.readout import pareto, predictor_candidates, preference_grid
    from modnas.toolkit.search.run import load_run
    from modnas.toolkit.search.scalarise import minimisers
    from modnas.toolkit.spaces import get_space

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table = load_table(args.data, "latency")
    train_keys, held, groups = split_devices(usable_keys(args.data, table), args.seed, args.share)
    train_costs, source = resolve_devices(train_keys, args.data, table=table)
    kinds = [k for k in args.kinds.split(",") if k]
    seconds = {}
    for kind in kinds:
        t0 = time.perf_counter()
        run_dir = train(kind, train_costs, source, out, args)
        seconds[kind] = json.loads((run_dir / "config.json").read_text())["seconds"]
        print(f"{kind}: run {run_dir} ({time.perf_counter() - t0:.0f} s here)", flush=True)
    if args.train_only:
        return
    held_costs, _ = resolve_devices(held, args.data, table=table)
    space = get_space("nb201")
    archs_all = space.all_archs()
    acc = np.asarray(load_accuracy(args.data).sort_index()["cifar10_test_200ep"], dtype=np.float64)
    true_err = 100.0 - acc
    index_of = {a: i for i, a in enumerate(archs_all)}

    def score(idx: list[int], lat_true: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple[float, int]:
        idx = [i for i in dict.fromkeys(idx) if np.isfinite(lat_true[i]) and true_err[i] < 90]
        if not idx:
            return 0.0, 0
        pts = normalise(np.stack([true_err[idx], lat_true[idx]], 1), lo, hi)
        return hypervolume(pts), int(nondominated_mask(pts).sum())

    rows: list[dict[str, Any]] = []
    for kind in kinds:
        run = load_run(out / kind)
        cfg = run.config
        with torch.no_grad():
            pred_err = run.surrogate.error(torch.as_tensor(space.encode(archs_all))).numpy().astype(np.float64)
        elo, ehi = error_range(run.surrogate, cfg.benchmark.error_quantile, run.space)
        prefs = preference_grid(2, args.preferences)
        for cost in held_costs:
            lat_true = table.row(cost.name)
            valid = np.isfinite(lat_true) & (true_err < 90)
            lo = np.array([true_err[valid].min(), lat_true[valid].min()])
            hi = np.array([true_err[valid].max(), lat_true[valid].max()])
            hv_exh = hypervolume(normalise(nondominated(np.stack([true_err[valid], lat_true[valid]], 1)), lo, hi))
            t0 = time.perf_counter()
            front = pareto(run, cost, preferences=args.preferences)
            t_read = time.perf_counter() - t0
            hv, nd = score([index_of[r["arch"]] for r in front], lat_true, lo, hi)
            lat_pred = np.asarray(cost.predict(archs_all), dtype=np.float64)
            llo, lhi = cost.minmax() if hasattr(cost, "minmax") else (lat_pred.min(), lat_pred.max())
            objs = np.stack([(pred_err - elo) / (ehi - elo), (lat_pred - llo) / (lhi - llo)], 1)
            sc = cfg.scalarisation
            exact = list(minimisers(objs, prefs, sc.kind, sc.smooth_mu, sc.ideal_point))
            hv_x, nd_x = score(exact, lat_true, lo, hi)
            po, _ = predictor_candidates(run, {"latency": cost}, cost.embedding,
                                         args.preferences, scalarisation=cfg.scalarisation.kind)
            hv_p, nd_p = score([index_of[a] for a in po], lat_true, lo, hi)
            rows.append({"predictor_only_hv": hv_p / hv_exh, "predictor_only_picks": len(po),
                         "predictor_only_true_nondominated": nd_p,
                         "scalarisation": kind, "device": cost.name, "readout_hv": hv / hv_exh,
                         "readout_picks": len(front), "readout_true_nondominated": nd,
                         "exact_hv": hv_x / hv_exh, "exact_distinct": len(set(exact)),
                         "exact_true_nondominated": nd_x, "readout_s": t_read})
    summary = []
    for kind in kinds:
        sel = [r for r in rows if r["scalarisation"] == kind]
        summary.append({"scalarisation": kind, "epochs": args.epochs, "search_s": seconds[kind],
                        "devices": len(sel),
                        **{f"{k}_mean": float(np.mean([r[k] for r in sel]))
                           for k in ("readout_hv", "readout_picks", "readout_true_nondominated", "exact_hv",
                                     "exact_distinct", "exact_true_nondominated", "predictor_only_hv",
                                     "predictor_only_picks")},
                        "readout_hv_min": float(np.min([r["readout_hv"] for r in sel]))})
    result = {"overrides": args.set, "held_out_groups": groups, "train_devices": len(train_keys), "rows": rows, "summary": summary}
    (out / "scalarisation_eval.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(summary))
    print("| scalarisation | search s | read-out HV/exh. mean | min | picks | true non-dominated | "
          "exact minimisers HV | exact distinct | predictor-only read-out HV | its picks |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for s in summary:
        print(f"| {s['scalarisation']} | {s['search_s']:.0f} | {s['readout_hv_mean']:.4f} | {s['readout_hv_min']:.4f} | "
              f"{s['readout_picks_mean']:.1f} | {s['readout_true_nondominated_mean']:.1f} | {s['exact_hv_mean']:.4f} | "
              f"{s['exact_distinct_mean']:.1f} | {s['predictor_only_hv_mean']:.4f} | {s['predictor_only_picks_mean']:.1f} |")


if __name__ == "__main__":
    main()
