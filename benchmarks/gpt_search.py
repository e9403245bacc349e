"""The gpt space's search on held-out settings: MODNAS against random search and NSGA-II at the same
number of supernet loss evaluations, every front scored with latency measured on this machine.

The settings of the gpt tables (``benchmarks/gpt_tables.py``: this machine under threads, precision
and decode context, one device each) split into training settings and the held-out ``--settings``
(default :data:`modnas.toolkit.search.lm_run.GPT_HELD_OUT`). Protocol, for a budget of ``N``
(``--evaluations``) loss evaluations per method (one evaluation: the inherited held-out loss of one
distinct architecture on the trained supernet, ``--windows`` windows; a repeat is free):

1. Predictor fold: ``fit_predictor(..., space="gpt", held_out=settings)``; a held-out key takes its
   hardware group with it (``modnas:cpu-th2-int8`` takes ``modnas:cpu-th2-fp32``), so the fold may
   train on fewer settings than the search; the JSON lists them. Every cost model below uses this
   fold: the training settings' and each held-out setting's, each calibrated from its 12 reference
   measurements only (``device_from_table``; zero-shot for a held-out setting).
2. MODNAS: ``build_gpt_run(..., evaluations=N, devices=<training cost models>, ship=False)`` (N
   inherited losses of a seeded sample plus the largest and the smallest network, a loss surrogate
   fitted to them, ``--epochs`` of hypernetwork training over the training settings), then the
   read-out ``pareto(run, <held-out cost model>, preferences=24)`` on each held-out setting; and
   ``modnas+refine``, the same read-out with ``REFINE_ROUNDS`` rounds of one-edit refinement on the
   surrogate and the cost model (``readout.refine``; no loss evaluation), cut to 24 by predicted
   hypervolume.
3. Random search: the seeded ``space.sample(N, seed)`` (the same draw the MODNAS surrogate was
   fitted on, bar the two extremes), the inherited loss of each; front by (inherited loss, predicted
   latency on the held-out setting), at most 24 chosen by predicted hypervolume
   (``search_eval.spread_picks``).
4. NSGA-II (pymoo, integer genome over ``space.decisions``, SBX + polynomial mutation with
   rounding, as ``search_eval``): objectives (inherited loss, predicted latency on the held-out
   setting), population ``--nsga-pop`` (default about 2 sqrt N) for as many generations as N distinct
   evaluations allow; in the generation that reaches N, the individuals past the budget get a
   penalty instead of a loss (never evaluated, never chosen). Its front: the non-dominated set of
   every architecture it evaluated, at most 24 chosen as for random search. One run per held-out
   setting, N evaluations each.
5. Scoring, per held-out setting: every architecture on any method's front is measured once (decode
   latency, ms, median) under the setting through the campaign code (``profile_device`` on a
   ``host: local`` board, the device file and timing protocol of ``gpt_tables.py``), in a seeded
   shuffled order, then ``--repeat`` of them again for the board's repeatability (reported, not
   used in the scores); its inherited loss comes from the supernet (these evaluations are not
   counted in N). Hypervolume of each
   method's measured points (loss, measured ms), normalised by the bounds of all the setting's scored
   points with the reference point 1.05 in each objective (one reference for all methods of a
   setting), and its ratio to the pooled front of all methods; the predicted hypervolume (loss,
   predicted ms) the same way, for reference; front sizes, measured non-dominated counts, MODNAS's
   distinct arg-maxes of the plain 24-preference grid and how many of them are predicted
   non-dominated; the zero-shot cost model's error on the measured networks.

The loss evaluations share one cache: an architecture two methods asked for is evaluated on the
supernet once, but counted in each method's N (so wall times per method are not comparable; the
counts are). Torch runs on one thread; nothing of this script runs while a setting is measured.
Prints one JSON document, then a Markdown table on stderr; writes ``--out``.json/.md.

    MODNAS_DATA=../shared/data python benchmarks/gpt_search.py --supernet /work/sup/run/checkpoint.safetensors
    python benchmarks/gpt_search.py --quick --supernet CKPT   # N=40, 2 epochs, 1 setting, fronts of 6

The whole default run is meant to take about 15 minutes on this 2-core machine (``seconds`` and
``load`` in the JSON say what it took and how busy the machine was).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from gpt_tables import SETTINGS, TIMING, device_file
from load_sampler import sampled_load
from ofa_search import _data_dir

DEFAULT_SUPERNET = "/work/sup/run/checkpoint.safetensors"
HV_REF = 1.05  # reference point per objective after normalising by the setting's common bounds
PENALTY = 1e9  # NSGA-II individuals past the budget


REFINE_ROUNDS = 2  # the refined read-out's one-edit rounds (readout.refine)

def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class Counted:
    """One method's view of the shared :class:`SupernetLosses`: the distinct architectures it asked for
    are its evaluations (the values come from the shared cache)."""

    def __init__(self, losses: Any) -> None:
        from modnas.toolkit.spaces.gpt.arch import canonical

        self.losses, self.canonical = losses, canonical
        self.meta = losses.meta  # what build_gpt_run reads besides loss()
        self.seen: dict[str, float] = {}
        self.fresh = 0  # evaluations the supernet actually ran for this method (not cached before)

    def loss(self, archs: list[str]) -> np.ndarray:
        before = self.losses.evaluations
        values = self.losses.loss(archs)
        self.fresh += self.losses.evaluations - before
        for a, v in zip(archs, values):
            self.seen[self.canonical(a)] = float(v)
        return values

    @property
    def evaluations(self) -> int:
        return len(self.seen)


def _front(archs: list[str], loss: np.ndarray, lat: np.ndarray, k: int) -> list[str]:
    """At most ``k`` architectures of the non-dominated set of (loss, predicted latency), by predicted HV."""
    from search_eval import spread_picks

    return [archs[i] for i in spread_picks(np.column_stack([loss, lat]), k)]


def random_search(space: Any, counter: Counted, n: int, seed: int) -> list[str]:
    archs = [space.canonical(a) for a in space.sample(n, seed)]
    counter.loss(archs)
    return archs


def nsga2(space: Any, counter: Counted, cost: Any, n: int, seed: int, pop_size: int) -> dict[str, Any]:
    """NSGA-II until ``counter`` holds ``n`` evaluations; the evaluated architectures and the generations."""
    from pymoo.algorithms.moo.nsga2 import NSGA2
    from pymoo.core.evaluator import Evaluator
    from pymoo.core.problem import Problem
    from pymoo.operators.crossover.sbx import SBX
    from pymoo.operators.mutation.pm import PM
    from pymoo.operators.repair.rounding import RoundingRepair
    from pymoo.operators.sampling.rnd import IntegerRandomSampling
    from pymoo.problems.static import StaticProblem
    from pymoo.termination.max_gen import MaximumGenerationTermination

    sizes = np.array([len(d.choices) for d in space.decisions])
    problem = Problem(n_var=len(sizes), n_obj=2, xl=np.zeros(len(sizes)), xu=sizes - 1, vtype=int)
    algo = NSGA2(pop_size=pop_size, sampling=IntegerRandomSampling(),
                 crossover=SBX(prob=0.9, eta=15, vtype=float, repair=RoundingRepair()),
                 mutation=PM(eta=20, vtype=float, repair=RoundingRepair()), eliminate_duplicates=True)
    algo.setup(problem, seed=seed, termination=MaximumGenerationTermination(10 ** 6))
    generations, penalised, stalled = 0, 0, 0
    while counter.evaluations < n and stalled < 20:
        pop = algo.ask()
        x = np.round(np.atleast_2d(pop.get("X"))).astype(int)
        archs = [space.from_indices(row) for row in x]
        lat = np.asarray(cost.predict(archs), dtype=np.float64)
        f = np.full((len(archs), 2), PENALTY)
        before = counter.evaluations
        for i, a in enumerate(archs):
            if a in counter.seen or counter.evaluations < n:
                f[i] = (float(counter.loss([a])[0]), lat[i])
            else:
                penalised += 1
        stalled = stalled + 1 if counter.evaluations == before else 0
        Evaluator().eval(StaticProblem(problem, F=f), pop)
        algo.tell(infills=pop)
        generations += 1
    return {"archs": list(counter.seen), "generations": generations, "pop_size": pop_size,
            "penalised": penalised}


def measure(setting: str, archs: list[str], root: Path, store: Any, space: Any, repeat: int, seed: int
            ) -> dict[str, Any]:
    """Decode latency (ms, median) of ``archs`` under ``setting`` through the campaign code, in a seeded
    shuffled order (no method's networks all fall in one stretch of load); the store keeps what was
    measured, so an architecture is measured once per setting. Then the first ``repeat`` of that order
    are measured again: the board's repeatability (MAPE between the rounds, as ``gpt_tables.py``);
    the scores use the first round only."""
    from modnas.toolkit.config import load_device
    from modnas.toolkit.workflow.profiling import profile_device

    cfg = load_device(str(device_file(root, setting, SETTINGS[setting])))
    order = [archs[i] for i in np.random.default_rng(seed).permutation(len(archs))]
    t0 = time.perf_counter()
    with sampled_load(5.0) as load:
        profile_device(cfg, store, space, order, quiet=True)
        first = dict(store.values(setting, space.name, "latency"))
        again = [a for a in order if a in first][:repeat]
        if again:
            profile_device(cfg, store, space, again, force=True, quiet=True)
    second = store.values(setting, space.name, "latency")
    pairs = {a: (first[a], second[a]) for a in again if a in second}
    diffs = [abs(x - y) / float(np.median([x, y])) for x, y in pairs.values()]
    failures = [f.get("error", "?") for f in (store.failures(setting) or [])][:3]
    return {"values": {a: float(first[a]) for a in archs if a in first}, "missing": [a for a in archs if a not in first],
            "failures": failures, "seconds": round(time.perf_counter() - t0, 1), "load": dict(load),
            "repeatability": {"mape_pct": round(float(np.mean(diffs)) * 100, 1) if diffs else None,
                              "pairs": len(diffs), "rounds": {a: [round(x, 5), round(y, 5)]
                                                              for a, (x, y) in pairs.items()}}}


def score(methods: dict[str, list[str]], loss: dict[str, float], measured: dict[str, float],
          predicted: dict[str, float]) -> dict[str, dict[str, Any]]:
    """Hypervolume (measured and predicted latency) of each method's picks, one reference per setting."""
    from modnas.toolkit.pareto import hypervolume, nondominated_mask, normalise

    ref = np.full(2, HV_REF)
    out: dict[str, dict[str, Any]] = {m: {} for m in methods}
    for kind, lat in (("measured", measured), ("predicted", predicted)):
        pts = {m: np.array([[loss[a], lat[a]] for a in archs if a in lat]).reshape(-1, 2)
               for m, archs in methods.items()}
        pooled = np.vstack(list(pts.values()))
        lo, hi = pooled.min(axis=0), pooled.max(axis=0)
        hv_pool = hypervolume(normalise(pooled, lo, hi), ref)
        pool_nd = {tuple(p) for p in pooled[nondominated_mask(pooled)]}
        for m, p in pts.items():
            hv = hypervolume(normalise(p, lo, hi), ref) if len(p) else 0.0
            nd = int(nondominated_mask(p).sum()) if len(p) else 0
            out[m][kind] = {"hv": round(hv, 5), "hv_ratio_pooled": round(hv / hv_pool, 4) if hv_pool > 0 else None,
                            "scored": len(p), "nondominated": nd,
                            "on_pooled_front": int(sum(tuple(q) in pool_nd for q in p)),
                            "loss": [round(float(p[:, 0].min()), 4), round(float(p[:, 0].max()), 4)] if len(p) else None,
                            "latency_ms": [round(float(p[:, 1].min()), 4), round(float(p[:, 1].max()), 4)]
                            if len(p) else None}
        out.setdefault("_pooled", {})[kind] = {"hv": round(hv_pool, 5), "bounds": {"loss": [float(lo[0]), float(hi[0])],
                                                                                  "latency_ms": [float(lo[1]), float(hi[1])]},
                                               "nondominated": len(pool_nd)}
    return out


def _markdown(res: dict[str, Any]) -> str:
    lines = [(f"gpt search on held-out settings: N = {res['evaluations']} loss evaluations per method, "
              f"{res['epochs']} epochs, fronts of at most {res['front_size']}; supernet "
              f"{Path(res['supernet']['path']).name} ({res['supernet']['steps']} steps); "
              f"{res['seconds']['total']:.0f} s, load {res['load']['mean']} (max {res['load']['max']}) "
              f"on {res['load']['cpus']} CPUs"), "",
             ("| setting | method | evaluations | front | measured ND | HV measured | / pooled | HV predicted | "
              "/ pooled | loss | measured ms |"), "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|"]
    for setting, s in res["settings"].items():
        for m, r in s["methods"].items():
            me, pr = r["measured"], r["predicted"]
            extra = (f" (grid of {res['front_size']} preferences: {r['grid_distinct']} distinct, "
                     f"{r['grid_nondominated_predicted']} predicted non-dominated)" if "grid_distinct" in r else "")
            lo = me["loss"] or [float("nan")] * 2
            ms = me["latency_ms"] or [float("nan")] * 2
            lines.append(f"| {setting} | {m} | {r['evaluations']} | {r['front']}{extra} | {me['nondominated']} | "
                         f"{me['hv']:.4f} | {me['hv_ratio_pooled']} | {pr['hv']:.4f} | {pr['hv_ratio_pooled']} | "
                         f"{lo[0]:.3f}–{lo[1]:.3f} | {ms[0]:.3f}–{ms[1]:.3f} |")
    lines.append("")
    for setting, s in res["settings"].items():
        pv = s["predicted_vs_measured"] or {}
        lines.append(f"{setting}: {s['measured_archs']} networks measured in {s['measure_seconds']:.0f} s, load "
                     f"{s['measure_load']['mean']} (max {s['measure_load']['max']}); repeatability "
                     f"{s['repeatability']['mape_pct']} % MAPE over {s['repeatability']['pairs']} re-measured; "
                     f"zero-shot cost model vs measured: MAPE {pv.get('mape_pct')} %, Spearman {pv.get('spearman')}")
    lines.append("")
    lines.append("HV: (inherited loss, latency) min-max normalised over all of a setting's scored points, reference "
                 f"{HV_REF} per objective; '/ pooled': ratio to the front of all methods' points together. "
                 "measured ND: picks non-dominated among the method's own (measured latency).")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--supernet", default=DEFAULT_SUPERNET, help="a trained gpt supernet checkpoint")
    ap.add_argument("--data", default=None, help="data directory (default: MODNAS_DATA or ../shared/data)")
    ap.add_argument("--evaluations", type=int, default=None, help="loss evaluations per method (default 400)")
    ap.add_argument("--epochs", type=int, default=None, help="MODNAS search epochs (default 20)")
    ap.add_argument("--settings", default=None, help="comma-separated held-out settings (default: GPT_HELD_OUT)")
    ap.add_argument("--front", type=int, default=None, help="read-out preferences / front size (default 24)")
    ap.add_argument("--nsga-pop", type=int, default=None, help="NSGA-II population (default about 2 sqrt N)")
    ap.add_argument("--windows", type=int, default=None, help="held-out windows per loss evaluation")
    ap.add_argument("--repeat", type=int, default=None,
                    help="architectures measured in a second round per setting, for the repeatability (default 8)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="smoke run: N=40, 2 epochs, 1 setting, fronts of 6")
    ap.add_argument("--out", default=None, help="file stem for .json/.md (default benchmarks/results/gpt_search; "
                                                "with --quick nothing is written unless given)")
    ap.add_argument("--artifacts", default=None, help="keep the exported graphs here and reuse them on a rerun")
    args = ap.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="gpt-search-"))
    try:
        return bench(args, root)
    finally:  # the store and the exported graphs (GBs for a full run; --artifacts keeps the graphs)
        shutil.rmtree(root, ignore_errors=True)


def bench(args: argparse.Namespace, root: Path) -> int:
    t_start = time.perf_counter()
    load_start = os.getloadavg()
    os.environ["MODNAS_HOME"] = str(root / "home")  # a fresh store and graph cache (gpt_tables.py's way)
    (root / "home").mkdir(parents=True)
    if args.artifacts:
        Path(args.artifacts).mkdir(parents=True, exist_ok=True)
        (root / "home" / "artifacts").symlink_to(Path(args.artifacts).resolve(), target_is_directory=True)

    import torch
    from modnas.toolkit.pareto import nondominated_mask
    from modnas.toolkit.prediction.device_cost import device_from_table
    from modnas.toolkit.prediction.predictors import fit_predictor
    from modnas.toolkit.search.lm_run import (
        GPT_HELD_OUT,
        LOSS_WINDOWS,
        SupernetLosses,
        build_gpt_run,
        gpt_train_devices,
    )
    from modnas.toolkit.search.readout import candidates, pareto
    from modnas.toolkit.search.run import load_run
    from modnas.toolkit.spaces import get_space
    from modnas.toolkit.store import Store

    torch.set_num_threads(1)
    n = args.evaluations or (40 if args.quick else 400)
    epochs = args.epochs or (2 if args.quick else 20)
    k = args.front or (6 if args.quick else 24)
    windows = args.windows or LOSS_WINDOWS
    repeat = args.repeat if args.repeat is not None else (3 if args.quick else 8)
    held = [s.strip() for s in args.settings.split(",")] if args.settings else list(GPT_HELD_OUT)
    pop_size = args.nsga_pop or int(np.clip(round(2 * np.sqrt(n)), 8, 64))
    data = _data_dir(args.data)
    space = get_space("gpt")
    train, held_keys = gpt_train_devices(held, data)
    scored_keys = held_keys[:1] if args.quick and not args.settings else held_keys  # quick: the split stays
    seconds: dict[str, Any] = {}

    with sampled_load(10.0) as load_all:
        # 1. the fold predictor and the cost models
        t0 = time.perf_counter()
        fold = fit_predictor(data, None, "latency", space="gpt", seed=args.seed, held_out=held_keys)
        pred = fold["predictor"]
        train_costs = [device_from_table(data, key, space, "latency", predictor=pred) for key in train]
        held_costs = {key: device_from_table(data, key, space, "latency", predictor=pred) for key in held_keys}
        seconds["predictor_and_costs"] = round(time.perf_counter() - t0, 1)
        _log(f"fold predictor trained on {', '.join(fold['devices'])}; search over {', '.join(train)}; "
             f"held out {', '.join(held_keys)} ({seconds['predictor_and_costs']} s)")

        losses = SupernetLosses(args.supernet, data, windows)

        # 2. MODNAS
        t0 = time.perf_counter()
        modnas_count = Counted(losses)
        built = build_gpt_run(args.supernet, root / "run", evaluations=n, epochs=epochs, seed=args.seed,
                              held_out=held_keys, data_dir=data, windows=windows, devices=train_costs, ship=False,
                              losses=modnas_count, plots=False)
        run = load_run(root / "run", "gpt")
        seconds["modnas_search"] = round(time.perf_counter() - t0, 1)
        _log(f"MODNAS: {modnas_count.evaluations} evaluations, {epochs} epochs ({seconds['modnas_search']} s)")

        # 3. random search (one draw serves every setting)
        t0 = time.perf_counter()
        random_count = Counted(losses)
        random_archs = random_search(space, random_count, n, args.seed)
        seconds["random_search"] = round(time.perf_counter() - t0, 1)

        fronts: dict[str, dict[str, list[str]]] = {}
        info: dict[str, dict[str, dict[str, Any]]] = {}
        for key in scored_keys:
            cost = held_costs[key]
            t0 = time.perf_counter()
            rows = pareto(run, cost, preferences=k)
            # the read-out with two rounds of one-edit refinement on the surrogate and the cost model (no loss
            # evaluation), cut to k by predicted hypervolume as the other fronts are
            refined = [r["arch"] for r in pareto(run, cost, preferences=k, refine_rounds=REFINE_ROUNDS)]
            refined = _front(refined, run.predict_error(refined), cost.predict(refined), k)
            grid = candidates(run, cost.embedding, k)[0]  # the plain grid's distinct arg-maxes
            grid_nd = int(nondominated_mask(np.column_stack([run.predict_error(grid), cost.predict(grid)])).sum())
            t_read = time.perf_counter() - t0
            r_loss = np.array([random_count.seen[a] for a in random_archs])
            r_front = _front(random_archs, r_loss, cost.predict(random_archs), k)
            t0 = time.perf_counter()
            nsga_count = Counted(losses)
            ga = nsga2(space, nsga_count, cost, n, args.seed, pop_size)
            g_loss = np.array([nsga_count.seen[a] for a in ga["archs"]])
            g_front = _front(ga["archs"], g_loss, cost.predict(ga["archs"]), k)
            seconds[f"nsga2 {key}"] = round(time.perf_counter() - t0, 1)
            fronts[key] = {"modnas": [r["arch"] for r in rows], "modnas+refine": refined, "random": r_front,
                           "nsga2": g_front}
            info[key] = {"modnas": {"evaluations": modnas_count.evaluations, "front": len(rows),
                                    "grid_distinct": len(grid), "grid_nondominated_predicted": grid_nd,
                                    "readout_seconds": round(t_read, 2),
                                    "fresh_supernet_evaluations": modnas_count.fresh},
                         "modnas+refine": {"evaluations": modnas_count.evaluations, "front": len(refined),
                                           "refine_rounds": REFINE_ROUNDS},
                         "random": {"evaluations": random_count.evaluations, "front": len(r_front),
                                    "fresh_supernet_evaluations": random_count.fresh},
                         "nsga2": {"evaluations": nsga_count.evaluations, "front": len(g_front),
                                   "generations": ga["generations"], "pop_size": ga["pop_size"],
                                   "penalised": ga["penalised"], "fresh_supernet_evaluations": nsga_count.fresh}}
            _log(f"{key}: fronts modnas {len(rows)}, random {len(r_front)}, nsga2 {len(g_front)} "
                 f"(NSGA-II {nsga_count.evaluations} evaluations, {ga['generations']} generations, "
                 f"{seconds[f'nsga2 {key}']} s)")
        search_evaluations = losses.evaluations

        # 5. scoring: inherited losses of the fronts (not counted), then the measurements (nothing else running)
        t0 = time.perf_counter()
        union = {key: list(dict.fromkeys(a for m in fronts[key].values() for a in m)) for key in scored_keys}
        to_score = list(dict.fromkeys(a for archs in union.values() for a in archs))
        scored_loss = dict(zip(to_score, losses.loss(to_score).tolist()))
        seconds["scoring_losses"] = round(time.perf_counter() - t0, 1)
        store = Store(root / "home" / "modnas.db")
        measurements = {}
        for key in scored_keys:
            setting = key.split(":", 1)[1]
            _log(f"{key}: measuring {len(union[key])} architectures ...")
            measurements[key] = measure(setting, union[key], root, store, space, repeat, args.seed)
            seconds[f"measure {key}"] = measurements[key]["seconds"]
            _log(f"{key}: {len(measurements[key]['values'])} measured in {measurements[key]['seconds']} s "
                 f"(load {measurements[key]['load']['mean']}, repeatability "
                 f"{measurements[key]['repeatability']['mape_pct']} % MAPE)")
    seconds["total"] = round(time.perf_counter() - t_start, 1)

    from scipy.stats import spearmanr

    settings_out: dict[str, Any] = {}
    for key in scored_keys:
        cost = held_costs[key]
        meas = measurements[key]["values"]
        predicted = dict(zip(union[key], cost.predict(union[key]).tolist()))
        scores = score(fronts[key], scored_loss, meas, predicted)
        pooled = scores.pop("_pooled")
        pairs = np.array([[predicted[a], meas[a]] for a in union[key] if a in meas])
        settings_out[key] = {
            "spec": SETTINGS[key.split(":", 1)[1]],
            "methods": {m: {**info[key][m], **scores[m], "archs": fronts[key][m]} for m in fronts[key]},
            "pooled": pooled,
            "measured_archs": len(meas), "unmeasured": measurements[key]["missing"],
            "failures": measurements[key]["failures"],
            "measure_seconds": measurements[key]["seconds"], "measure_load": measurements[key]["load"],
            "repeatability": measurements[key]["repeatability"],
            # how far off the zero-shot cost model was on these networks
            "predicted_vs_measured": {"mape_pct": round(float(np.mean(np.abs(pairs[:, 0] - pairs[:, 1]) / pairs[:, 1]))
                                                        * 100, 1),
                                      "spearman": round(float(spearmanr(pairs[:, 0], pairs[:, 1]).statistic), 3)}
            if len(pairs) > 2 else None,
            "archs": {a: {"loss": round(scored_loss[a], 5), "measured_ms": meas.get(a),
                          "predicted_ms": round(predicted[a], 5)} for a in union[key]},
        }

    res: dict[str, Any] = {
        "what": "MODNAS vs random search vs NSGA-II on held-out gpt settings at equal supernet loss evaluations; "
                "fronts scored with decode latency measured on this machine and the inherited held-out loss",
        "quick": bool(args.quick), "evaluations": n, "epochs": epochs, "front_size": k, "seed": args.seed,
        "windows": windows, "held_out": held_keys, "scored_settings": scored_keys, "search_settings": train,
        "supernet": {"path": str(args.supernet), "steps": losses.meta.get("steps"), "loss": losses.meta.get("loss")},
        "fold_predictor": {"training_devices": fold["devices"], "held_out": held_keys, "metrics": fold["metrics"]},
        "loss_surrogate": {k2: v for k2, v in built.get("loss_surrogate", {}).items() if k2 != "fit"},
        "supernet_evaluations": {"search": search_evaluations, "scoring": losses.evaluations - search_evaluations},
        "timing_protocol": {**TIMING, "note": "gpt_tables.py's protocol and device files (host: local, onnxruntime); "
                                              "decode latency = median over the blocks, one fresh worker per block"},
        "machine": {"processor": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "torch_threads": 1},
        "load": {**dict(load_all), "start_1_5_15": [round(v, 2) for v in load_start],
                 "end_1_5_15": [round(v, 2) for v in os.getloadavg()]},
        "seconds": seconds,
        "settings": settings_out,
        "rebuild": "MODNAS_DATA=DIR python benchmarks/gpt_search.py --supernet CKPT"
                   + (" --quick" if args.quick else "")
                   + f" --evaluations {n} --epochs {epochs} --front {k} --repeat {repeat} --seed {args.seed}"
                   + ("" if args.quick and not args.settings else f" --settings {','.join(held_keys)}"),
    }
    text = json.dumps(res, indent=1)
    print(text)
    md = _markdown(res)
    print(md, file=sys.stderr)
    out = args.out or (None if args.quick else str(ROOT / "benchmarks" / "results" / "gpt_search"))
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out + ".json").write_text(text + "\n")
        Path(out + ".md").write_text(md + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
