"""Leave-hardware-groups-out evaluation of the latency (and energy) predictor on the NB201 tables.

Every fold trains the predictor without some hardware groups (all runtimes, tasks, batch sizes
and copies of one board leave together), onboards each held-out device from its 10 reference
measurements only, and predicts all its other connected architectures. Baselines get the same
10 values. Writes ``predictor_eval_<metric>.json`` and ``.md`` and prints both.

    python benchmarks/predictor_eval.py --data ../shared/data --folds 4 --extra 30 --out benchmarks/results
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.environ.get("MODNAS_DATA", str(ROOT.parent / "shared" / "data")))
    ap.add_argument("--metric", action="append", choices=["latency", "energy"],
                    help="repeat for several (default: latency and energy)")
    ap.add_argument("--folds", type=int, default=4)
    ap.add_argument("--max-folds", type=int, default=None, help="stop after this many folds")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=None, help="override the training epochs")
    ap.add_argument("--extra", type=int, default=30,
                    help="also score re-calibration and fine-tuning on the references plus N random measurements")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = ap.parse_args(argv)

    from modnas.toolkit.prediction.evaluation import leave_groups_out

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for metric in args.metric or ["latency", "energy"]:
        t0 = time.time()
        config = {"epochs": args.epochs} if args.epochs else None
        res = leave_groups_out(args.data, metric=metric, seed=args.seed, folds=args.folds, config=config,
                                 max_folds=args.max_folds, n_extra=args.extra, log=lambda s: print(s, file=sys.stderr, flush=True))
        res["seconds"] = round(time.time() - t0, 1)
        (out / f"predictor_eval_{metric}.json").write_text(json.dumps(res, indent=1) + "\n")
        (out / f"predictor_eval_{metric}.md").write_text(res["markdown"])
        print(json.dumps({"metric": metric, "mean": res["mean"], "seconds": res["seconds"]}, indent=1))
        print(res["markdown"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
