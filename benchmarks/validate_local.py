"""This machine as a board: the quickstart's wall time and the validation of its read-out front.

Runs `modnas quickstart` in a throw-away home (onboard this machine, validate its read-out front in
interleaved rounds, pick for three budgets with `select --verify`, export the picks to ONNX and TVM)
and reports how long it took and how predicted latency compares with measured: Spearman, Kendall,
MAPE against the median of rounds, share within +-10 %, the board's own repeatability (MAPE between
rounds), the verified picks (measured to meet their budgets, board measurements per pick) and the
picks from predictions alone.  Prints JSON on stdout and a Markdown table on stderr.  Usage:
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
        load = os.getloadavg()
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "modnas.toolkit.cli", "quickstart", "--out", str(Path(tmp) / "qs"),
                               "--json", "--quiet"], env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            sys.exit(f"quickstart failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
        doc = json.loads(proc.stdout)
        validation = json.loads((Path(tmp) / "qs" / "validation" / "validation.json").read_text())
    picks = doc.get("picks", [])
    verified = [p for p in picks if p["arch"] is not None]
    result = {"quickstart_wall_s": wall, "front_size": len(doc["front"]),
              "spearman": validation["spearman"], "kendall": validation["kendall"], "mape": validation["mape"],
              "within_10pct": validation["within_10pct"], "rounds": validation.get("rounds"),
              "repeatability_mape": validation.get("repeatability_mape"),
              "repeatability": validation.get("repeatability"), "budgets": validation["budgets"],
              "verified_picks": [{k: p.get(k) for k in ("budget_ms", "arch", "predicted", "measured", "verify_margin",
                                                        "measurements", "reason", "unverified")} for p in picks],
              "verified_meeting": sum(p["measured"]["latency_ms"] <= p["budget_ms"] for p in verified),
              "board_measurements_per_pick": (sum(p["measurements"] for p in picks) / len(picks) if picks else None),
              "rows": validation["rows"], "fingerprint": {k: doc["fingerprint"].get(k) for k in
                                                          ("cpu_model", "cores", "os", "kernel", "python")},
              "loadavg_at_start": load}
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    rep, per_pick = result["repeatability_mape"], result["board_measurements_per_pick"]
    md = ["| quickstart s | front | Spearman | Kendall | MAPE % | repeatability % | within +-10 % | "
          "verified picks that meet | board measurements per pick | unverified picks that meet |",
          "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
          f"| {wall:.0f} | {len(doc['front'])} | {validation['spearman']:.3f} | {validation['kendall']:.3f} | "
          f"{validation['mape']:.1f} | {'-' if rep is None else f'{rep:.1f}'} | "
          f"{100 * validation['within_10pct']:.0f} % | {result['verified_meeting']}/{len(picks)} | "
          f"{'-' if per_pick is None else f'{per_pick:.1f}'} | "
          f"{sum(b['meets'] for b in validation['budgets'])}/{len(validation['budgets'])} |"]
    print("\n".join(md), file=sys.stderr)


if __name__ == "__main__":
    main()
