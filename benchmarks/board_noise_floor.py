"""This machine as an sshd board: how close predicted comes to measured, beside the board's own noise.

Starts sshd on loopback (the test suite's fixture), then, in a throw-away home, as a user would:
``modnas onboard BOARD --minutes M [--kernels]`` (references, kernels, then batches chosen by the
device model until its leave-one-out error stops improving or the time is spent), and
``modnas validate BOARD --archs FILE --rounds R`` on architectures it never measured (seeded random
usable ones). Reports the onboarding's learning curve (measurements, board seconds, leave-one-out
error), the validation (MAPE, share within +-10 %, Spearman) beside the board's repeatability (MAPE
between rounds), and, for the same architectures, what the references alone predicted (zero-shot).
Prints JSON on stdout and Markdown on stderr.

    python benchmarks/board_noise_floor.py --minutes 5 --kernels --validate 30 --out benchmarks/results
"""
from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import time
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from load_sampler import sampled_load  # noqa: E402
from sshd_fixture import loopback_sshd  # noqa: E402

BOARD_TIMING = {"warmup_s": 0.5, "min_runs": 50, "min_time_s": 0.5, "repeats": 3, "cooldown_s": 0.1,
                "timeout_s": 120.0}  # as device_configs/local.yaml


def _cli(*argv: str) -> dict[str, Any]:
    from modnas.toolkit.cli import main

    buf = io.StringIO()
    with redirect_stdout(buf):
        code = main([*argv, "--json", "--quiet"])
    if code != 0:
        sys.exit(f"modnas {' '.join(argv)} failed with exit code {code}")
    return json.loads(buf.getvalue())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--kernels", action="store_true")
    ap.add_argument("--validate", type=int, default=30, help="architectures validated (never measured before)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="noise-floor-"))
    os.environ["MODNAS_HOME"] = str(tmp / "home")
    from modnas.toolkit.prediction.device_cost import device_cost
    from modnas.toolkit.spaces import get_space
    from modnas.toolkit.store import Store

    space = get_space("nb201")
    with loopback_sshd(tmp / "sshd") as board, sampled_load() as load:
        device = board.device_yaml(tmp, name="sshd-board", measurement=BOARD_TIMING)
        t0 = time.monotonic()
        onboarded = _cli("onboard", str(device), "--minutes", f"{args.minutes:g}", *(["--kernels"] if args.kernels else []))
        onboard_s = time.monotonic() - t0
        with Store(Path(os.environ["MODNAS_HOME"]) / "modnas.db") as store:
            measured = store.values("sshd-board", space.name, "latency")
        pool = [a for a in space.candidates(0) if a not in measured]
        picks = [pool[i] for i in np.random.default_rng(args.seed).choice(len(pool), args.validate, replace=False)]
        arch_file = tmp / "validate.txt"
        arch_file.write_text("\n".join(picks) + "\n")
        t1 = time.monotonic()
        validated = _cli("validate", "sshd-board", "--archs", str(arch_file), "--rounds", str(args.rounds),
                         "--out", str(tmp / "validation"))
        validate_s = time.monotonic() - t1
    refs = [space.canonical(r) for r in space.reference_archs()]
    zero = device_cost("refs-only", {r: measured[r] for r in refs}, space)
    rows = validated["rows"]
    truth = np.array([r["measured"] for r in rows])
    zp = zero.predict([r["arch"] for r in rows])
    from modnas.toolkit.prediction.evaluation import scores

    z = scores(zp, truth)
    result = {"machine": onboarded["fingerprint"].get("cpu_model"), "cores": onboarded["fingerprint"].get("cores"),
              "load": dict(load), "onboard_seconds": round(onboard_s, 1), "validate_seconds": round(validate_s, 1),
              "minutes": args.minutes, "kernels": onboarded.get("kernels"), "curve": onboarded.get("curve"),
              "stopped": onboarded.get("stopped"), "fit": onboarded.get("fit"),
              "validation": {k: validated[k] for k in ("n", "spearman", "kendall", "mape", "within_10pct", "rounds",
                                                       "repeatability_mape", "mape_to_repeatability")},
              "zero_shot_same_archs": {"mape": float(np.mean(np.abs(zp - truth) / truth) * 100),
                                       "within_10pct": z["within_10pct"], "spearman": z["spearman"]},
              "rows": rows}
    print(json.dumps(result, indent=1))
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "board_noise_floor.json").write_text(json.dumps(result, indent=1) + "\n")
    v = result["validation"]
    md = [f"This machine ({result['machine']}, {result['cores']} cores) as an sshd board, load {result['load']}:",
          "", "| step | measurements | board s | leave-one-out MAPE % | within +-10 % | model |", "|---|---:|---:|---:|---:|---|"]
    for i, c in enumerate(result["curve"] or []):
        md.append(f"| {i} | {c['measurements']} | {c['board_seconds']:.0f} | {c['loo_mape']} | "
                  f"{100 * (c['loo_within_10pct'] or 0):.0f} % | {c['model']} |")
    md += ["", f"onboarding {onboard_s:.0f} s ({result['stopped']}); kernels: {result['kernels']}", "",
           "| validated | Spearman | MAPE % | within +-10 % | repeatability % | MAPE / repeatability | zero-shot MAPE % | zero-shot within +-10 % |",
           "|---:|---:|---:|---:|---:|---:|---:|---:|",
           f"| {v['n']} | {v['spearman']:.3f} | {v['mape']:.2f} | {100 * v['within_10pct']:.0f} % | "
           f"{v['repeatability_mape']:.2f} | {v['mape_to_repeatability']:.2f} | "
           f"{result['zero_shot_same_archs']['mape']:.2f} | {100 * result['zero_shot_same_archs']['within_10pct']:.0f} % |"]
    print("\n".join(md), file=sys.stderr)
    if args.out:
        (Path(args.out) / "board_noise_floor.md").write_text("\n".join(md) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
