"""How fast a replay board answers: seconds per measurement through the whole campaign path
(build_artifact -> Board.prepare/measure -> parse_reply -> store), on replay boards made from the shared tables.

    python benchmarks/replay_speed.py --data ../shared/data [--boards 5] [--archs 30]

Prints one JSON document on stdout and a Markdown table on stderr.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("MODNAS_DATA", "../shared/data"))
    parser.add_argument("--boards", type=int, default=5)
    parser.add_argument("--archs", type=int, default=30)
    parser.add_argument("--noise", type=float, default=0.01)
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    from modnas.toolkit.spaces.nb201 import tables as benchdata
    from modnas.toolkit.config import read_device_file
    from modnas.toolkit.workflow.profiling import profile_device
    from modnas.toolkit.data.replay_tables import device_name_for, table_values, write_device
    from modnas.toolkit.spaces import get_space
    from modnas.toolkit.store import Store

    space = get_space("nb201")
    table = benchdata.load_table(args.data, "latency")
    keys = table.keys_with_references()[: args.boards]
    archs = space.sample(args.archs, seed=0)
    rows = []
    with tempfile.TemporaryDirectory(prefix="replay-speed-") as tmp:
        os.environ["MODNAS_HOME"] = str(Path(tmp) / "home")
        store = Store(Path(tmp) / "store.db")
        for key in keys:
            t0 = time.perf_counter()
            dev = write_device(Path(tmp) / "boards", device_name_for(key), table_values(args.data, key, table=table),
                               noise=args.noise, measurement={"min_runs": 50, "repeats": 3})
            t1 = time.perf_counter()
            cfg = read_device_file(dev)  # reads and checks the 15,625-row table
            t2 = time.perf_counter()
            per: list[float] = []
            result = profile_device(cfg, store, space, archs, quiet=True,
                                    on_row=lambda row: per.append(time.perf_counter()))
            t3 = time.perf_counter()
            gaps = [b - a for a, b in zip(per, per[1:])]
            rows.append({"device": key, "write_s": t1 - t0, "load_s": t2 - t1, "campaign_s": t3 - t2,
                         "measured": len(result.measured), "failed": len(result.failed),
                         "per_measurement_s": statistics.median(gaps) if gaps else None,
                         "first_measurement_s": (per[0] - t2) if per else None})
        store.close()
    doc = {"boards": len(rows), "archs": len(archs), "noise": args.noise, "rows": rows,
           "median_per_measurement_s": statistics.median(r["per_measurement_s"] for r in rows if r["per_measurement_s"])}
    print(json.dumps(doc, indent=2))
    lines = ["| device | table load s | campaign s | measured | s per measurement | open + first s |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['device']} | {r['load_s']:.3f} | {r['campaign_s']:.2f} | {r['measured']} | "
                     f"{r['per_measurement_s']:.4f} | {r['first_measurement_s']:.3f} |")
    print("\n".join(lines), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
