"""Onboarding strategies on every latency device of the shared tables, each as if it were a new board,
against how many measurements it took and beside each device's own ceiling.

Folds leave whole hardware groups out of the predictor's training (the folds of
``modnas.toolkit.prediction.evaluation.make_folds``); each held-out device is then onboarded from its 10
reference measurements plus 20 extra ones, measured on a replay board of its table column
(``host: replay``, ``--noise`` 1 %: the table's value times a reproducible log-normal factor; the
measurements go through the campaign code and the results store, as ``onboard`` takes them;
``--measure table`` applies the same noise model to the table directly), and all its other
architectures are predicted. Columns: zero-shot from the 10 references; 20 random extras
with calibration only and with the whole device model; 20 chosen extras
(``modnas.toolkit.prediction.device_model.choose_extras``) with calibration only, + per-op fixed cost, and the
whole device model (+ fine-tuning where cross-validation keeps it). Cells: Spearman / MdAPE % /
share within +-10 %. NB201 also gets budget picks without a board: at the 10/25/50/75th
percentiles of the device's true latency, the most accurate architecture (CIFAR-10, true
accuracy) whose predicted latency times (1 + margin) meets the budget, with the conformal margin
of ``modnas.toolkit.prediction.calibration.conformal_margin``; reported: share truly over budget and mean regret.

``--counts 10,30,60,120`` adds the learning curve: at each number of measurements (the references
plus chosen extras), calibration alone, the structural model alone
(``modnas.toolkit.prediction.structural``; replay boards have no kernels, so its prior is the
predictor's) and the whole device model (every part, each kept where leave-one-out says it helps);
and each device's ceiling: gradient-boosted trees on the cell's one-hot and kernel counts, fitted
on 80 % of the device's table and scored on the rest.

    python benchmarks/onboard_eval.py --data ../shared/data --epochs 60 --out benchmarks/results
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PERCENTILES = (10, 25, 50, 75)
VARIANTS = (("zero_shot", "10 refs, calibration"), ("random_cal", "+20 random, calibration"),
            ("random_model", "+20 random, device model"), ("chosen_cal", "+20 chosen, calibration"),
            ("chosen_fixed", "+20 chosen, + fixed cost"), ("chosen_model", "+20 chosen, device model"))


def _noisy(row: np.ndarray, idx: list[int], noise: float, seed: int) -> dict[int, float]:
    """The replay board's measurement: value times a log-normal factor drawn from (seed, column)."""
    out = {}
    for i in idx:
        rng = np.random.default_rng([seed, int(i)])
        out[int(i)] = float(row[i] * np.exp(rng.normal(0.0, noise))) if noise > 0 else float(row[i])
    return out


class ReplayBoards:
    """Each held-out device as a replay board (``host: replay``): its table column written as the board's
    table, every measurement taken through the campaign code (build, upload, run, parse, store) and read
    back from the store, so the benchmark measures what ``onboard`` on such a board would."""

    QUICK = {"warmup_s": 0.0, "min_runs": 5, "min_time_s": 0.0, "repeats": 1, "cooldown_s": 0.0}

    def __init__(self, root: Path, space: Any, archs: list[str], noise: float, seed: int) -> None:
        from modnas.toolkit.store import Store

        self.root, self.space, self.archs, self.noise, self.seed = root, space, archs, noise, seed
        self.store = Store(root / "replay.db")
        self.cfgs: dict[str, Any] = {}

    def _cfg(self, key: str, row: np.ndarray) -> Any:
        from modnas.toolkit.config import load_device
        from modnas.toolkit.data.replay_tables import device_name_for, write_device

        if key not in self.cfgs:
            name = device_name_for(key)
            values = {a: float(v) for a, v in zip(self.archs, row) if np.isfinite(v) and v > 0}
            path = write_device(self.root / name, name, values, noise=self.noise, seed=self.seed,
                                measurement=self.QUICK)
            self.cfgs[key] = load_device(str(path))
        return self.cfgs[key]

    def measure(self, key: str, row: np.ndarray, idx: list[int]) -> dict[int, float]:
        from modnas.toolkit.workflow.profiling import profile_device

        cfg = self._cfg(key, row)
        wanted = {self.space.canonical(self.archs[i]): int(i) for i in idx}
        profile_device(cfg, self.store, self.space, list(wanted), quiet=True)
        got = self.store.values(cfg.name, self.space.name, "latency")
        return {i: float(got[a]) for a, i in wanted.items() if a in got}


def _budget_picks(pred: np.ndarray, true: np.ndarray, acc: np.ndarray, usable: np.ndarray,
                  margin: float) -> list[dict[str, Any]]:
    out = []
    for q in PERCENTILES:
        budget = float(np.percentile(true[usable], q))
        truly = usable & (true <= budget)
        best = float(np.max(acc[truly])) if truly.any() else float("nan")
        ok = np.flatnonzero(usable & (pred * (1 + margin) <= budget))
        if not len(ok):
            out.append({"percentile": q, "budget_ms": budget, "arch_index": None, "over": False, "regret": best})
            continue
        i = int(ok[np.argmax(acc[ok])])
        out.append({"percentile": q, "budget_ms": budget, "arch_index": i, "over": bool(true[i] > budget),
                    "regret": best - float(acc[i])})
    return out


CURVE_PARTS = (("calibration", "calibration"), ("structural", "structural model"),
               ("finetune", "calibration + fixed cost + fine-tune"), ("model", "device model"))


def ceiling(sp: Any, archs: list[str], onehot: np.ndarray, row: np.ndarray, seed: int) -> dict[str, Any]:
    """What the device's own table allows: boosted trees fitted on 80 % of it, scored on the other 20 %."""
    from sklearn.ensemble import HistGradientBoostingRegressor

    from modnas.toolkit.prediction.evaluation import scores

    ok = np.flatnonzero(np.isfinite(row) & (row > 0))
    x = np.hstack([onehot[ok], sp.kernel_counts([archs[i] for i in ok])])
    y = np.log(row[ok])
    perm = np.random.default_rng(seed).permutation(len(ok))
    cut = int(0.8 * len(ok))
    model = HistGradientBoostingRegressor(max_iter=400, learning_rate=0.08, random_state=seed)
    model.fit(x[perm[:cut]], y[perm[:cut]])
    return scores(np.exp(model.predict(x[perm[cut:]])), np.exp(y[perm[cut:]]))


def curve(key: str, sp: Any, pred: Any, base: Any, archs: list[str], onehot: np.ndarray, row: np.ndarray,
          ref_idx: list[int], counts: list[int], measure: Any, err_fn: Any, seed: int,
          metric: str = "latency") -> dict[str, Any]:
    """Each part's scores on all other architectures after ``n`` measurements, for every ``n`` of ``counts``."""
    from modnas.toolkit.prediction.device_cost import DeviceCost, device_cost
    from modnas.toolkit.prediction.device_model import _structural, choose_extras, fit_device
    from modnas.toolkit.prediction.evaluation import scores

    usable = np.isfinite(row)
    cand = [archs[i] for i in np.flatnonzero(usable)]
    pos = {a: i for i, a in enumerate(archs)}
    out: dict[str, Any] = {}
    for n in counts:
        picked = choose_extras(base, n - len(ref_idx), seed, err_fn, cand) if n > len(ref_idx) else []
        idx = list(ref_idx) + [pos[a] for a in picked]
        m = measure(key, row, idx)
        vals = {archs[i]: m[i] for i in idx}
        truth = np.where(usable, row, np.nan)
        truth[idx] = np.nan
        a_list = list(vals)
        meas = np.array([vals[a] for a in a_list])
        fitted = fit_device(pred, a_list, meas, base.embedding, seed=seed, fixed_cost=False, finetune=False)
        forced = _structural(pred, sp, a_list, meas, base.embedding,
                             np.exp(pred.predict_log_onehot(sp.encode(a_list), base.embedding)), None, seed)
        parts = {"calibration": device_cost(key, vals, sp, metric, pred, model=False),
                 "structural": DeviceCost(key, sp, metric, pred, base.embedding, fitted.calibration, vals,
                                          None, fitted.report, forced[0] if forced else None),
                 "finetune": device_cost(key, vals, sp, metric, pred, seed=seed, structural=False),
                 "model": device_cost(key, vals, sp, metric, pred, seed=seed)}
        row_out = {}
        for name, cost in parts.items():
            sc = scores(cost.predict(archs), truth)
            row_out[name] = sc
        row_out["kept"] = parts["model"].fit.get("parts", {})
        row_out["prior"] = parts["model"].fit.get("structural_prior")
        out[str(n)] = row_out
    return out


def evaluate_space(args: argparse.Namespace, space_name: str, log: Any) -> dict[str, Any]:
    import torch


    from modnas.toolkit.data import groups as hwgroups
    from modnas.toolkit.prediction import predictors
    from modnas.toolkit.prediction.device_model import choose_extras, fit_device
    from modnas.toolkit.workflow.new_board import shipped_error
    from modnas.toolkit.prediction.embedding import minmax
    from modnas.toolkit.prediction.device_cost import DeviceCost, device_cost
    from modnas.toolkit.prediction.evaluation import make_folds, scores
    from modnas.toolkit.spaces import get_space

    torch.set_num_threads(1)
    sp = get_space(space_name)
    metric = args.metric
    cfg = predictors._config({"epochs": args.epochs} if args.epochs else None, metric, space_name)
    raw = {metric: sp.load_table(args.data, metric)}
    acc = None
    if sp.tasks:  # a benchmark space: the budget picks are scored on its first task's accuracy
        acc = sp.accuracy_column(args.data, sp.task_column(sp.tasks[0]))
    st = predictors.space_tables(args.data, space_name, [metric], raw)
    table = st.tables[metric]
    ref_idx = st.ref_idx
    gmap = hwgroups.groups(table.keys)
    evaluable = sorted(g for g, ks in gmap.items() if any(np.all(np.isfinite(table.row(k)[ref_idx])) for k in ks))
    group_emb = {g: np.mean([minmax(table.row(k)[ref_idx]) for k in gmap[g]
                             if np.all(np.isfinite(table.row(k)[ref_idx]))], axis=0) for g in evaluable}
    folds = make_folds(evaluable, args.folds, args.seed, group_emb)[:args.max_folds]
    onehot = st.onehot
    archs = st.archs
    err_fn = shipped_error(space_name) if space_name == "nb201" else None
    err_cache: dict[str, float] = {}

    def error(pool: list[str]) -> np.ndarray:
        missing = [a for a in pool if a not in err_cache]
        if missing:
            err_cache.update(zip(missing, err_fn(missing)))
        return np.array([err_cache[a] for a in pool])

    if args.measure == "replay":  # every held-out device answers as a replay board
        import tempfile

        boards = ReplayBoards(Path(tempfile.mkdtemp(prefix=f"onboard-eval-{space_name}-")), sp, archs,
                              args.noise, args.seed)
        measure = boards.measure
    else:
        def measure(key: str, row: np.ndarray, idx: list[int]) -> dict[int, float]:
            return _noisy(row, idx, args.noise, args.seed)

    rows: list[dict[str, Any]] = []
    for f, held in enumerate(folds):
        t0 = time.time()
        pool, devices, _ = predictors.training_devices(args.data, space_name, metric, cfg, held_out=held,
                                                       tables=raw)
        cached = Path(args.cache) / f"{space_name}-fold{f}-of{args.folds}-e{cfg.epochs}-s{args.seed}" if args.cache else None
        if cached is not None and cached.with_suffix(".json").exists():
            pred = predictors.load(cached)
        else:
            pred, _ = predictors.train(pool, devices, space_name, metric, cfg, args.seed)
            if cached is not None:
                pred.save(cached)
        log(f"{space_name} fold {f}: trained on {len(devices)} devices in {time.time() - t0:.0f}s; held out {held}")
        keys = [k for g in held for k in gmap[g]]
        if space_name == "ofa_mbv3" and args.ofa_batch1:
            keys = [k for k in keys if k.endswith("_1")]
        for key in keys[:args.max_devices_per_fold]:
            row = table.row(key)
            if not np.all(np.isfinite(row[ref_idx])):
                continue
            t1 = time.time()
            usable = np.isfinite(row)
            meas = measure(key, row, ref_idx)
            values = {archs[i]: v for i, v in meas.items()}
            base = device_cost(key, values, sp, metric, pred)
            cand = [archs[i] for i in np.flatnonzero(usable)]
            entry: dict[str, Any] = {"device": key, "group": hwgroups.hardware_group(key), "fold": f}
            if args.counts:
                entry["ceiling"] = ceiling(sp, archs, onehot, row, args.seed)
                entry["curve"] = curve(key, sp, pred, base, archs, onehot, row, ref_idx, args.counts, measure,
                                       error if err_fn else None, args.seed, metric)
                c = entry["curve"]
                log(f"  {key}: ceiling {entry['ceiling']['within_10pct']:.2f}; within +-10 %: " + ", ".join(
                    f"{n}: cal {c[n]['calibration']['within_10pct']:.2f} / struct {c[n]['structural']['within_10pct']:.2f}"
                    f" / ft {c[n]['finetune']['within_10pct']:.2f} / model {c[n]['model']['within_10pct']:.2f}" for n in c))
                if args.curve_only:
                    rows.append(entry)
                    continue

            def scored(cost: DeviceCost, measured_idx: list[int]) -> dict[str, Any]:
                truth = np.where(usable, row, np.nan)
                truth[measured_idx] = np.nan
                p = cost.predict_onehot(onehot)
                out = scores(p, truth)
                out["margin"] = cost.margin()
                if acc is not None:
                    out["budgets"] = _budget_picks(p, row, acc, usable, cost.margin())
                return out

            entry["zero_shot"] = scored(base, ref_idx)
            chosen = choose_extras(base, args.extra, args.seed, error if err_fn else None, cand)
            pos = {a: i for i, a in enumerate(archs)}
            free = np.flatnonzero(usable)
            free = free[~np.isin(free, ref_idx)]
            rnd = [archs[int(i)] for i in np.random.default_rng(args.seed).choice(free, args.extra, replace=False)]
            for name, picked in (("random", rnd), ("chosen", chosen)):
                idx = list(ref_idx) + [pos[a] for a in picked]
                m = measure(key, row, idx)
                vals = {archs[i]: m[i] for i in idx}
                entry[f"{name}_cal"] = scored(device_cost(key, vals, sp, "latency", pred, model=False), idx)
                if name == "chosen":
                    a_list = list(vals)
                    fitted = fit_device(pred, a_list, np.array([vals[a] for a in a_list]), base.embedding,
                                        seed=args.seed, finetune=False)
                    c_fixed = DeviceCost(key, sp, "latency", pred, base.embedding, fitted.calibration, vals, fitted.fixed,
                                         fitted.report)
                    entry["chosen_fixed"] = scored(c_fixed, idx)
                full = device_cost(key, vals, sp, "latency", pred, seed=args.seed)
                entry[f"{name}_model"] = scored(full, idx)
                entry[f"{name}_fit"] = full.fit
            rows.append(entry)
            z, c = entry["zero_shot"], entry["chosen_model"]
            log(f"  {key}: zero-shot {z['spearman']:.3f}/{z['mdape']:.1f}%/{z['within_10pct']:.2f} -> chosen model "
                f"{c['spearman']:.3f}/{c['mdape']:.1f}%/{c['within_10pct']:.2f} parts {entry['chosen_fit']['parts']} "
                f"({time.time() - t1:.0f}s)")
    mean = {v: {k: float(np.nanmean([e[v][k] for e in rows])) for k in ("spearman", "mdape", "within_10pct", "margin")}
            for v, _ in VARIANTS if rows and all(v in e for e in rows)}
    curve_mean: dict[str, Any] = {}
    if args.counts and rows:
        keys = ("spearman", "mdape", "within_10pct")
        curve_mean["ceiling"] = {k: float(np.nanmean([e["ceiling"][k] for e in rows])) for k in keys}
        for n in map(str, args.counts):
            curve_mean[n] = {p: {k: float(np.nanmean([e["curve"][n][p][k] for e in rows])) for k in keys}
                             for p, _ in CURVE_PARTS}
    budgets = {}
    if acc is not None and rows and not args.curve_only:
        for v, _ in VARIANTS:
            picks = [b for e in rows for b in e[v]["budgets"]]
            budgets[v] = {"over_budget": float(np.mean([b["over"] for b in picks])),
                          "mean_regret": float(np.nanmean([b["regret"] for b in picks])),
                          "no_pick": float(np.mean([b["arch_index"] is None for b in picks]))}
    kept = {part: float(np.mean([e["chosen_fit"]["parts"][part] for e in rows])) for part in
            ("fixed_cost", "finetune")} if rows and not args.curve_only else {}
    return {"space": space_name, "folds": folds, "rows": rows, "mean": mean, "budgets": budgets, "kept": kept,
            "curve_mean": curve_mean}


def curve_markdown(res: dict[str, Any]) -> str:
    """Per device: each part after n measurements, and the device's ceiling."""
    rows = [e for e in res["rows"] if "curve" in e]
    if not rows:
        return ""
    counts = list(rows[0]["curve"])

    def cell(d: dict[str, Any]) -> str:
        return f"{d['spearman']:.3f} / {d['mdape']:.1f} / {100 * d['within_10pct']:.0f}%"

    head = ["device", "ceiling"] + [f"{n}: {label}" for n in counts for _, label in CURVE_PARTS]
    lines = [f"### {res['space']}: learning curve on {len(rows)} held-out devices (cells: Spearman / MdAPE % / "
             "within +-10 % over all other architectures; ceiling: boosted trees on 80 % of the device's table)", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for e in rows:
        lines.append(f"| {e['device']} | {cell(e['ceiling'])} | "
                     + " | ".join(cell(e["curve"][n][p]) for n in counts for p, _ in CURVE_PARTS) + " |")
    cm = res["curve_mean"]
    lines.append(f"| **mean** | **{cell(cm['ceiling'])}** | "
                 + " | ".join(f"**{cell(cm[n][p])}**" for n in counts for p, _ in CURVE_PARTS) + " |")
    share = {n: cm[n]["model"]["within_10pct"] / cm["ceiling"]["within_10pct"] for n in counts}
    lines += ["", "Device model's within +-10 % as a share of the ceiling's: "
              + ", ".join(f"{n} measurements {100 * v:.0f} %" for n, v in share.items()) + "."]
    return "\n".join(lines) + "\n"


def markdown(res: dict[str, Any]) -> str:
    if not res.get("mean"):
        return curve_markdown(res)

    def cell(d: dict[str, Any] | None) -> str:
        return "-" if not d else f"{d['spearman']:.3f} / {d['mdape']:.1f} / {100 * d['within_10pct']:.0f}%"

    lines = [f"### {res['space']}: {len(res['rows'])} held-out devices, {len(res['folds'])} folds; "
             "cells: Spearman / MdAPE % / within +-10 % over all other architectures", "",
             "| device | fold | " + " | ".join(label for _, label in VARIANTS) + " | kept |",
             "|" + "---|" * (3 + len(VARIANTS))]
    for e in res["rows"]:
        parts = e["chosen_fit"]["parts"]
        kept = "+".join(p for p in ("fixed_cost", "finetune") if parts[p]) or "calibration"
        lines.append(f"| {e['device']} | {e['fold']} | " + " | ".join(cell(e.get(v)) for v, _ in VARIANTS)
                     + f" | {kept} |")
    lines.append("| **mean** | | " + " | ".join(f"**{cell(res['mean'].get(v))}**" for v, _ in VARIANTS) + " | |")
    if res.get("budgets"):
        lines += ["", "Budget picks without a board (10/25/50/75th percentiles of true latency, conformal margin):", "",
                  "| variant | mean margin | truly over budget | mean regret (points) | no pick |", "|---|---|---|---|---|"]
        for v, label in VARIANTS:
            b = res["budgets"][v]
            lines.append(f"| {label} | {100 * res['mean'][v]['margin']:.1f} % | {100 * b['over_budget']:.1f} % | "
                         f"{b['mean_regret']:.2f} | {100 * b['no_pick']:.0f} % |")
    if res.get("kept"):
        lines.append("")
        lines.append(f"Parts kept by cross-validation (chosen extras): fixed cost on {100 * res['kept']['fixed_cost']:.0f} %"
                     f" of devices, fine-tuning on {100 * res['kept']['finetune']:.0f} %.")
    return "\n".join(lines) + "\n\n" + curve_markdown(res)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.environ.get("MODNAS_DATA", str(ROOT.parent / "shared" / "data")))
    ap.add_argument("--space", action="append", choices=["nb201", "ofa_mbv3", "gpt"], help="default: nb201 and ofa_mbv3")
    ap.add_argument("--metric", default="latency", help="latency, or prefill (gpt)")
    ap.add_argument("--folds", type=int, default=4)
    ap.add_argument("--max-folds", type=int, default=None)
    ap.add_argument("--max-devices-per-fold", type=int, default=None)
    ap.add_argument("--epochs", type=int, default=None, help="predictor training epochs per fold (default: shipped)")
    ap.add_argument("--extra", type=int, default=20)
    ap.add_argument("--counts", type=lambda t: [int(v) for v in t.split(",")], default=None,
                    help="learning curve at these numbers of measurements, e.g. 10,30,60,120 (with the ceilings)")
    ap.add_argument("--curve-only", action="store_true", help="only the learning curve and the ceilings")
    ap.add_argument("--noise", type=float, default=0.01, help="relative log-normal noise of each measurement")
    ap.add_argument("--ofa-batch1", action="store_true", help="OFA: evaluate batch-1 settings only")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", default=None, help="keep each fold's predictor here and reuse it on a rerun")
    ap.add_argument("--measure", choices=["replay", "table"], default="replay",
                    help="replay: every device answers as a replay board through the campaign code (default); "
                         "table: the same noise model applied to the table directly (faster)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = ap.parse_args(argv)
    if args.measure == "replay" and "MODNAS_HOME" not in os.environ:  # the boards' artifacts and work dirs
        import tempfile

        os.environ["MODNAS_HOME"] = tempfile.mkdtemp(prefix="onboard-eval-home-")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    doc: dict[str, Any] = {"args": {k: v for k, v in vars(args).items() if k != "out"}, "spaces": []}
    md = []
    for space in args.space or ["nb201", "ofa_mbv3"]:
        res = evaluate_space(args, space, lambda s: print(s, file=sys.stderr, flush=True))
        doc["spaces"].append(res)
        md.append(markdown(res))
        doc["seconds"] = round(time.time() - t0, 1)
        (out / "onboard_eval.json").write_text(json.dumps(doc, indent=1) + "\n")
        (out / "onboard_eval.md").write_text("\n".join(md))
    print(json.dumps({"seconds": doc["seconds"], "mean": {r["space"]: r["mean"] for r in doc["spaces"]},
                      "budgets": {r["space"]: r["budgets"] for r in doc["spaces"]}}, indent=1))
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
