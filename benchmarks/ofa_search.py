"""The MODNAS search over ofa_mbv3 in supernet mode: wall time per epoch, what the read-out gives on
seen and held-out GPU settings, and how well the distilled accuracy surrogate stands in.

    python benchmarks/ofa_search.py [--data DIR] [--run DIR] [--epochs N] [--json PATH]

Without ``--run`` the run is built the way the shipped one is (``modnas.toolkit.search.default_run``,
``--space ofa_mbv3``: HELP's OFA settings minus the titan_xp GPU, the digits, warm-up then search,
supernet kept) in a temporary directory. Prints one JSON document, then a Markdown table on stderr.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _data_dir(arg: str | None) -> Path:
    if arg:
        return Path(arg)
    env = os.environ.get("MODNAS_DATA")
    return Path(env) if env else ROOT.parent / "shared" / "data"


def _readout(run: Any, data_dir: Path, keys: list[str], table: Any, refine: int = 0) -> list[dict[str, Any]]:
    from modnas.toolkit.search.api import resolve_devices
    from modnas.toolkit.search.readout import candidates, pareto

    models, _ = resolve_devices(keys, data_dir, table=table, space="ofa_mbv3")
    rows = []
    for key, model in zip(keys, models):
        t0 = time.perf_counter()
        front = pareto(run, model, preferences=24, refine_rounds=refine)
        distinct = len(candidates(run, model.embedding, 24)[0])
        lat = [r["predicted"]["latency_ms"] for r in front]
        err = [r["predicted"]["error"] for r in front]
        rows.append({"device": key, "distinct_archs": distinct, "front": len(front),
                     "latency_ms": [min(lat), max(lat)], "error_pct": [min(err), max(err)],
                     "resolutions": sorted({int(r["arch"].rsplit("r=", 1)[1]) for r in front}),
                     "seconds": round(time.perf_counter() - t0, 2)})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None)
    ap.add_argument("--run", default=None, help="an existing ofa_mbv3 run with its supernet (default: build one)")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)

    import torch

    from modnas.toolkit.spaces.ofa_mbv3.tables import gpu_group, load_latency
    from modnas.toolkit.search.default_run import OFA_HELD_OUT, build_ofa_run
    from modnas.toolkit.search.run import load_run, read_metrics

    torch.set_num_threads(1)
    data = _data_dir(args.data)
    table = load_latency(data)
    tmp = None
    if args.run:
        run_dir = Path(args.run)
    else:
        tmp = tempfile.TemporaryDirectory()
        run_dir = Path(tmp.name) / "run"
        build_ofa_run(data, run_dir, epochs=args.epochs, keep_supernet=True)
    run = load_run(run_dir, "ofa_mbv3")
    metrics = read_metrics(run_dir)
    n_dev = len(run.config.devices)
    warm = [m["seconds"] for m in metrics if m.get("warmup")]
    search = [m["seconds"] for m in metrics if not m.get("warmup")]
    held = [k for k in table.keys if gpu_group(k) == OFA_HELD_OUT]
    res: dict[str, Any] = {
        "machine": {"processor": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "torch_threads": 1},
        "run": str(run_dir), "devices": run.config.devices, "images": "digits (1,797, 32 px, 10 % held back)",
        "epochs": len(metrics), "warmup_epochs": len(warm), "batch_size": run.config.supernet.batch_size,
        "epoch_seconds": {"warmup_mean": float(np.mean(warm)) if warm else None,
                          "search_mean": float(np.mean(search)) if search else None,
                          "search_per_device": float(np.mean(search)) / n_dev if search else None},
        "ce_train_last": metrics[-1].get("ce_train"),
        "total_seconds": run.meta.get("seconds"),
        "readout_seen": _readout(run, data, run.config.devices[:3], table),
        "readout_held_out": _readout(run, data, held, table),
        # the shipped run (supernet replaced by the distilled surrogate), with one refinement round
        "shipped_refined_held_out": _readout(load_run(None, "ofa_mbv3"), data, held, table, refine=1),
        "distilled_surrogate": run.meta.get("distilled_surrogate"),
    }
    if run.supernet is not None:  # is the read-out's pick better than other subnets on these images?
        from modnas.toolkit.spaces.ofa_mbv3.supernet import largest_arch
        from modnas.toolkit.search.readout import candidates

        emb = np.asarray(run.meta["devices"][0]["embedding"], dtype=np.float32)
        chosen = candidates(run, emb, 24)[0]
        randoms = run.space.sample(16, seed=11)
        res["supernet_error_pct"] = {
            "readout": [float(v) for v in run.predict_error(chosen)],
            "largest": float(run.predict_error([largest_arch(run.space)])[0]),
            "random_16": {"median": float(np.median(run.predict_error(randoms))),
                          "min": float(np.min(run.predict_error(randoms))),
                          "max": float(np.max(run.predict_error(randoms)))},
            "validation_images": int(len(run._val[1])) if run._val is not None else None,
        }
    if tmp is not None:
        tmp.cleanup()
    text = json.dumps(res, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    e = res["epoch_seconds"]
    lines = [f"{n_dev} devices, batch {res['batch_size']}, {res['epochs']} epochs ({res['warmup_epochs']} warm-up): "
             f"warm-up epoch {e['warmup_mean'] or float('nan'):.0f} s, search epoch {e['search_mean'] or float('nan'):.0f} s "
             f"({e['search_per_device'] or float('nan'):.1f} s per device)", "",
             "| device | seen | distinct archs (24 prefs) | front | latency ms | error % | resolutions |",
             "|---|---|---|---|---|---|---|"]
    for seen, rows in (("yes", res["readout_seen"]), ("no", res["readout_held_out"]),
                       ("no, shipped + refine 1", res["shipped_refined_held_out"])):
        for r in rows:
            lines.append(f"| {r['device']} | {seen} | {r['distinct_archs']} | {r['front']} | "
                         f"{r['latency_ms'][0]:.2f}–{r['latency_ms'][1]:.2f} | {r['error_pct'][0]:.1f}–{r['error_pct'][1]:.1f} "
                         f"| {', '.join(map(str, r['resolutions']))} |")
    if "supernet_error_pct" in res:
        se = res["supernet_error_pct"]
        lines.append(f"\nSupernet error on the held-back digits: read-out {', '.join(f'{v:.1f}' for v in se['readout'])} %, "
                     f"largest subnet {se['largest']:.1f} %, 16 random subnets {se['random_16']['min']:.1f}–"
                     f"{se['random_16']['max']:.1f} % (median {se['random_16']['median']:.1f} %)")
    d = res["distilled_surrogate"] or {}
    if "holdout" in d:
        lines.append(f"\nDistilled surrogate on {d['holdout']['rows']} held-back subnets: Spearman "
                     f"{d['holdout']['spearman']:.3f}, RMSE {d['holdout']['rmse']:.2f} points")
    print("\n".join(lines), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
