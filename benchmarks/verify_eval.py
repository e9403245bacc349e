"""Verified picks on table devices: `select --verify` against a board that answers from the measured
tables with 1 % log-normal noise, budgets at the 10/25/50/75th percentiles of each device's latency.

For every NB201 latency device of the shared tables (with its references measured), the device model
is built from 10 references + 20 random extras (``device_from_table``), then for each budget:
the verified pick (truly over budget? regret against the most accurate candidate whose true latency
fits, in points of predicted error; board measurements taken) and, beside it, the unverified
``select`` pick (truly over budget?). The shipped predictor was trained on these devices, so its
predictions here are optimistic; the verification itself never relies on them. Prints JSON on stdout
and a Markdown table on stderr.  Usage:
    python benchmarks/verify_eval.py [--data DIR] [--per-group] [--devices N] [--noise 0.01] [--out results.json]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

PERCENTILES = (10, 25, 50, 75)


def table_measure(truth: dict[str, float], noise: float, seed: int):
    """A board that answers each architecture's table value times a reproducible log-normal factor."""
    from modnas.toolkit.workflow.verify import Measured

    def measure(arch: str):
        value = truth.get(arch)
        if value is None or not np.isfinite(value):
            return None
        digest = hashlib.sha256(f"{seed}:{arch}".encode()).digest()
        z = np.random.default_rng(int.from_bytes(digest[:8], "little")).standard_normal()
        return Measured(float(value * np.exp(noise * z)), 0.0, "board")

    return measure


def main() -> None:
    import torch

    torch.set_num_threads(1)
    from modnas.toolkit.spaces.nb201 import tables as benchdata
    from modnas.toolkit.data import groups as hwgroups
    from modnas.toolkit.prediction.device_cost import device_from_table
    from modnas.toolkit.search.run import load_run
    from modnas.toolkit.spaces import get_space
    from modnas.toolkit.workflow.verify import Measured, candidate_pool, verified_select

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.environ.get("MODNAS_DATA", str(Path(__file__).resolve().parents[2] /
                                                                        "shared" / "data")))
    ap.add_argument("--devices", type=int, default=0, help="at most N devices (0: all)")
    ap.add_argument("--per-group", action="store_true", help="one device per hardware group (the first)")
    ap.add_argument("--extra", type=int, default=20)
    ap.add_argument("--noise", type=float, default=0.01)
    ap.add_argument("--verify-max", type=int, default=8)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    t0 = time.perf_counter()
    space = get_space("nb201")
    table = benchdata.load_table(args.data, "latency")
    keys = table.keys_with_references("nb201")
    if args.per_group:
        keys = [members[0] for members in hwgroups.groups(keys).values()]
    if args.devices:
        keys = keys[: args.devices]
    run = load_run(None, "nb201")
    usable = benchdata.connected_mask()
    rows = []
    for key in keys:
        row = table.row(key)
        cost = device_from_table(args.data, key, space, "latency", n_extra=args.extra, seed=0, table=table)
        pool = candidate_pool(run, cost)
        archs = pool[0]
        truth = {a: float(row[space.index(a)]) for a in archs}
        err = dict(zip(archs, np.asarray(run.predict_error(archs), float)))
        measure = table_measure(truth, args.noise, seed=0)
        known = {a: Measured(float(v), 0.0, "stored") for a, v in cost.measured.items()}
        lat_all = row[usable & np.isfinite(row)]
        for q in PERCENTILES:
            budget = float(np.percentile(lat_all, q))
            doc = verified_select(run, cost, budget, measure, known, max_measurements=args.verify_max, pool=pool)
            fits = [a for a in archs if np.isfinite(truth[a]) and truth[a] <= budget]
            oracle = min((err[a] for a in fits), default=None)
            pick = doc.arch
            unv = doc.unverified["arch"] if doc.unverified else None
            rows.append({"device": key, "percentile": q, "budget_ms": budget, "arch": pick,
                         "measurements": doc.measurements,
                         "truly_over": bool(pick is not None and truth[pick] > budget),
                         "regret": (float(err[pick] - oracle) if pick is not None and oracle is not None else None),
                         "no_pick": pick is None, "oracle_exists": oracle is not None,
                         "unverified_arch": unv,
                         "unverified_truly_over": bool(unv is not None and truth.get(unv, np.inf) > budget),
                         "unverified_regret": (float(err[unv] - oracle) if unv is not None and oracle is not None
                                               and truth.get(unv, np.inf) <= budget else None)})
        print(f"{key}: done ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    picks = [r for r in rows if r["arch"] is not None]
    regrets = [r["regret"] for r in picks if r["regret"] is not None]
    unv = [r for r in rows if r["unverified_arch"] is not None]
    summary = {"devices": len(keys), "budgets": len(rows), "noise": args.noise, "extra": args.extra,
               "verified_picks": len(picks), "verified_truly_over": sum(r["truly_over"] for r in picks),
               "verified_no_pick": sum(r["no_pick"] for r in rows),
               "verified_no_pick_while_one_fits": sum(r["no_pick"] and r["oracle_exists"] for r in rows),
               "mean_regret": float(np.mean(regrets)) if regrets else None,
               "mean_measurements": float(np.mean([r["measurements"] for r in rows])) if rows else None,
               "unverified_picks": len(unv), "unverified_truly_over": sum(r["unverified_truly_over"] for r in unv),
               "seconds": time.perf_counter() - t0}
    by_q = {q: [r for r in rows if r["percentile"] == q] for q in PERCENTILES}
    result = {"summary": summary, "rows": rows}
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    md = ["| budget percentile | verified picks | truly over | no pick (one fits) | mean regret (points) | "
          "board measurements per pick | unverified truly over |", "|---:|---:|---:|---:|---:|---:|---:|"]
    for q, rs in list(by_q.items()) + [("all", rows)]:
        ps = [r for r in rs if r["arch"] is not None]
        rg = [r["regret"] for r in ps if r["regret"] is not None]
        uv = [r for r in rs if r["unverified_arch"] is not None]
        md.append(f"| {q} | {len(ps)}/{len(rs)} | {sum(r['truly_over'] for r in ps)} | "
                  f"{sum(r['no_pick'] and r['oracle_exists'] for r in rs)} | "
                  f"{np.mean(rg) if rg else float('nan'):.2f} | {np.mean([r['measurements'] for r in rs]):.1f} | "
                  f"{sum(r['unverified_truly_over'] for r in uv)}/{len(uv)} |")
    print("\n".join(md), file=sys.stderr)


if __name__ == "__main__":
    main()
