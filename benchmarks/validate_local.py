"""This machine as a board: the quickstart's wall time and the validation of its read-out front.

Runs `modnas quickstart` in a throw-away home (onboard this machine, read out its front from the
shipped run, export three picks to ONNX and TVM, validate the front here) and reports how long it
took and how predicted latency compares with measured: Spearman, Kendall, MAPE, share within
+-10 %, budget picks.  Prints JSON on stdout and a Markdown table on stderr.  Usage:
    python benchmarks/validate_local.py [--out results.json]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        home.mkdir()
        env = dict(os.environ, HOME=str(home), MODNAS_HOME=str(home / ".modnas"))
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "toolkit.cli", "quickstart", "--out", str(Path(tmp) / "qs"),
                               "--json", "--quiet"], env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            sys.exit(f"quickstart failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
        doc = json.loads(proc.stdout)
        validation = json.loads((Path(tmp) / "qs" / "validation" / "validation.json").read_text())
    result = {"quickstart_wall_s": wall, "front_size": len(doc["front"]),
              "spearman": validation["spearman"], "kendall": validation["kendall"], "mape": validation["mape"],
              "within_10pct": validation["within_10pct"], "budgets": validation["budgets"],
              "rows": validation["rows"], "fingerprint": {k: doc["fingerprint"].get(k) for k in
                                                          ("cpu_model", "cores", "os", "kernel", "python")}}
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    md = ["| quickstart s | front | Spearman | Kendall | MAPE % | within +-10 % | budget picks that meet |",
          "|---:|---:|---:|---:|---:|---:|---:|",
          f"| {wall:.0f} | {len(doc['front'])} | {validation['spearman']:.3f} | {validation['kendall']:.3f} | "
          f"{validation['mape']:.1f} | {100 * validation['within_10pct']:.0f} % | "
          f"{sum(b['meets'] for b in validation['budgets'])}/{len(validation['budgets'])} |"]
    print("\n".join(md), file=sys.stderr)


if __name__ == "__main__":
    main()
