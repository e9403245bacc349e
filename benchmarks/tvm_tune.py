"""MetaSchedule-tuned TVM on the 10 NB201 reference architectures, one tuning database shared by all:
median latency of ONNX Runtime vs untuned TVM (``parallel`` schedule) vs tuned TVM, same thread count,
and the tuning time per architecture (later ones reuse the kernels earlier ones tuned) and in total.

    python benchmarks/tvm_tune.py [--threads 2] [--trials 16] [--minutes M] [--archs 10]
                                  [--home DIR] [--json PATH]

``--home`` holds the database (``DIR/tune/<board>/<target>/``); by default a fresh temporary one, so
the figures include tuning from nothing. Prints one JSON document, then a Markdown table.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from runtimes import SETTINGS, cpu_name, median_ms  # the sibling benchmark's timing protocol and helpers

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

BOARD = "benchmark-host"


def run(threads: int, trials: int, minutes: float | None, count: int, home: Path, out: Path) -> dict[str, Any]:
    os.environ["TVM_NUM_THREADS"] = str(threads)  # before TVM starts its thread pool
    from modnas.exporters.onnx import export_onnx
    from modnas.exporters.targets import resolve_target
    from modnas.exporters.tvm import compile_tvm
    from modnas.exporters.tvm_tune import TuneBudget, cost_model_name, tune_and_build
    from modnas.profilers.board.runtimes import get_runtime
    from modnas.toolkit.spaces import get_space

    space = get_space("nb201")
    target = resolve_target(None, "x86")
    budget = TuneBudget(trials=trials, minutes=minutes)
    ort, tvm_rt = get_runtime("onnxruntime"), get_runtime("tvm")
    rows = []
    started = time.perf_counter()
    for index, arch in enumerate(space.reference_archs()[:count]):
        shape = list(space.input_shape(arch))
        onnx = export_onnx(space.build(arch).eval(), shape, out / f"ref{index}.onnx")
        untuned = compile_tvm(onnx.path, target, out, name=f"ref{index}-parallel")
        t0 = time.perf_counter()
        tuned = tune_and_build(onnx.path, target, out, board=BOARD, home=home, budget=budget,
                               name=f"ref{index}-tuned", threads=threads)
        row = {"arch": arch, "onnxruntime_ms": median_ms(ort.load(str(onnx.path), threads, shape, {}))["median"],
               "tvm_untuned_ms": median_ms(tvm_rt.load(str(untuned.path), threads, shape, untuned.meta))["median"],
               "tvm_tuned_ms": median_ms(tvm_rt.load(str(tuned.path), threads, shape, tuned.meta))["median"],
               "tuned_max_abs_diff": tuned.max_abs_diff, "tune_and_build_s": round(time.perf_counter() - t0, 2),
               "tuning": tuned.meta["tuning"]}
        rows.append(row)
        print(f"[{index + 1}/{count}] ort {row['onnxruntime_ms']:.3f} ms, untuned {row['tvm_untuned_ms']:.3f} ms, "
              f"tuned {row['tvm_tuned_ms']:.3f} ms; kernels {row['tuning']['tasks']} "
              f"({row['tuning']['reused']} reused), {row['tune_and_build_s']:.0f} s", file=sys.stderr, flush=True)
    import onnxruntime
    import tvm

    return {
        "machine": {"cpu": cpu_name(), "arch": platform.machine(), "cores": os.cpu_count(), "threads": threads,
                    "loadavg_at_end": list(os.getloadavg())},
        "versions": {"onnxruntime": onnxruntime.__version__, "tvm": tvm.__version__},
        "target": target, "trials_per_kernel": trials, "minutes_per_arch": minutes, "cost_model": cost_model_name(),
        "settings": SETTINGS, "total_s": round(time.perf_counter() - started, 1), "rows": rows,
    }


def markdown(report: dict[str, Any]) -> str:
    """One row per architecture; ratios are TVM median / ONNX Runtime median (< 1.5 is the goal)."""
    lines = ["| # | ORT ms | TVM untuned ms | TVM tuned ms | untuned/ORT | tuned/ORT | kernels (reused) | tune+build s |",
             "|---|---|---|---|---|---|---|---|"]
    untuned, tuned = [], []
    for i, row in enumerate(report["rows"]):
        o, u, t = row["onnxruntime_ms"], row["tvm_untuned_ms"], row["tvm_tuned_ms"]
        untuned.append(u / o)
        tuned.append(t / o)
        lines.append(f"| {i} | {o:.3f} | {u:.3f} | {t:.3f} | {u / o:.2f} | {t / o:.2f} | "
                     f"{row['tuning']['tasks']} ({row['tuning']['reused']}) | {row['tune_and_build_s']:.0f} |")
    lines.append(f"\nGeometric mean TVM/ORT: untuned {statistics.geometric_mean(untuned):.2f}, tuned "
                 f"{statistics.geometric_mean(tuned):.2f}; {report['trials_per_kernel']} trials per kernel, cost model "
                 f"{report['cost_model']}; whole run {report['total_s']:.0f} s ({report['machine']['cpu']}, "
                 f"{report['machine']['threads']} threads, ONNX Runtime {report['versions']['onnxruntime']}, "
                 f"TVM {report['versions']['tvm']})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--trials", type=int, default=16, help="trials per kernel (default 16)")
    parser.add_argument("--minutes", type=float, default=None, help="wall-clock limit per architecture's tuning")
    parser.add_argument("--archs", type=int, default=10)
    parser.add_argument("--home", type=Path, default=None, help="where the tuning database lives (default: fresh)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="modnas-tune-bench-") as tmp:
        home = args.home or Path(tmp) / "home"
        out = Path(tmp) / "out"
        out.mkdir(parents=True)
        report = run(args.threads, args.trials, args.minutes, args.archs, home, out)
    text = json.dumps(report, indent=2)
    if args.json:
        args.json.write_text(text + "\n")
    print(text)
    print()
    print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
