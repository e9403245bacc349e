"""Median latency of the NB201 reference architectures on this machine: ONNX Runtime vs untuned TVM
(each schedule of ``modnas.exporters.tvm_schedule``), optionally MetaSchedule-tuned TVM. Timing uses the board
agent's own protocol (modnas.profilers.board.timing) and runtime modules.

    python benchmarks/runtimes.py [--threads 2] [--out DIR] [--archs N] [--schedules none,parallel]
                                  [--tuned-trials T] [--json PATH]

Prints one JSON document, then a Markdown table (ratios are ONNX Runtime median / TVM median, so > 1
means TVM is faster). Tuning takes minutes per architecture: it runs only with --tuned-trials.
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

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SETTINGS = {"warmup_s": 0.5, "min_runs": 50, "min_time_s": 1.0, "repeats": 3, "cooldown_s": 0.1}


def median_ms(run_once: Any) -> dict[str, float]:
    from modnas.profilers.board.timing import measure

    blocks = measure(run_once, SETTINGS)
    medians = [statistics.median(b) for b in blocks]
    samples = [s for b in blocks for s in b]
    return {"median": statistics.median(samples), "block_medians": medians, "n": len(samples)}


def run(threads: int, out_dir: Path, count: int, tuned_trials: int | None, schedules: list[str]) -> dict[str, Any]:
    os.environ["TVM_NUM_THREADS"] = str(threads)  # before TVM starts its thread pool
    from modnas.exporters.onnx import export_onnx
    from modnas.exporters.targets import resolve_target
    from modnas.exporters.tvm import compile_tvm
    from modnas.exporters.tvm_tune import TuneBudget, tune_and_build
    from modnas.toolkit.config import modnas_home
    from modnas.profilers.board.runtimes import get_runtime
    from modnas.toolkit.spaces import get_space

    space = get_space("nb201")
    target = resolve_target(None, "x86")
    ort, tvm_rt = get_runtime("onnxruntime"), get_runtime("tvm")
    rows = []
    for index, arch in enumerate(space.reference_archs()[:count]):
        shape = list(space.input_shape(arch))
        name = f"ref{index}"
        onnx = export_onnx(space.build(arch).eval(), shape, out_dir / f"{name}.onnx")
        row: dict[str, Any] = {"arch": arch, "onnx_sha256": onnx.sha256}
        row["onnxruntime"] = median_ms(ort.load(str(onnx.path), threads, shape, {}))
        row["tvm"], row["tvm_compile_s"], row["tvm_max_abs_diff"] = {}, {}, {}
        for schedule in schedules:
            started = time.perf_counter()
            lib = compile_tvm(onnx.path, target, out_dir, name=f"{name}-{schedule}", schedule=schedule)
            row["tvm_compile_s"][schedule] = round(time.perf_counter() - started, 2)
            row["tvm_max_abs_diff"][schedule] = lib.max_abs_diff
            row["tvm"][schedule] = median_ms(tvm_rt.load(str(lib.path), threads, shape, lib.meta))
        if tuned_trials:
            tuned = tune_and_build(onnx.path, target, out_dir / "tuned", board="local", home=modnas_home(),
                                   budget=TuneBudget(trials=tuned_trials), name=name)
            row["tvm_tuned"] = median_ms(tvm_rt.load(str(tuned.path), threads, shape, tuned.meta))
        rows.append(row)
        tvm_ms = ", ".join(f"tvm/{k} {v['median']:.3f} ms" for k, v in row["tvm"].items())
        print(f"[{index + 1}/{count}] ort {row['onnxruntime']['median']:.3f} ms, {tvm_ms}", file=sys.stderr)
    import onnxruntime
    import tvm

    return {
        "machine": {"cpu": cpu_name(), "arch": platform.machine(), "cores": os.cpu_count(), "threads": threads},
        "versions": {"onnxruntime": onnxruntime.__version__, "tvm": tvm.__version__},
        "target": target,
        "schedules": schedules,
        "settings": SETTINGS,
        "rows": rows,
    }


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def markdown(report: dict[str, Any]) -> str:
    """The table: one row per architecture, medians in ms and ONNX Runtime / TVM ratios per schedule."""
    schedules = list(report["schedules"]) + (["tuned"] if any("tvm_tuned" in r for r in report["rows"]) else [])
    head = "| # | architecture | ONNX Runtime ms |" + "".join(f" TVM {s} ms | ORT/TVM {s} |" for s in schedules)
    lines = [head, "|" + "---|" * (3 + 2 * len(schedules))]
    ratios: dict[str, list[float]] = {s: [] for s in schedules}
    for i, row in enumerate(report["rows"]):
        o = row["onnxruntime"]["median"]
        line = f"| {i} | `{row['arch']}` | {o:.3f} |"
        for s in schedules:
            t = (row.get("tvm_tuned") if s == "tuned" else row["tvm"].get(s)) or {}
            if t.get("median"):
                ratios[s].append(o / t["median"])
                line += f" {t['median']:.3f} | {o / t['median']:.2f} |"
            else:
                line += " - | - |"
        lines.append(line)
    geo = ", ".join(f"{s} {statistics.geometric_mean(r):.2f}" for s, r in ratios.items() if r)
    lines.append(f"\nGeometric mean ORT/TVM: {geo} ({report['machine']['cpu']}, {report['machine']['threads']} threads, "
                 f"ONNX Runtime {report['versions']['onnxruntime']}, TVM {report['versions']['tvm']} untuned, "
                 f"target {report['target']})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--archs", type=int, default=10, help="how many reference architectures (default all 10)")
    parser.add_argument("--out", type=Path, default=None, help="where artifacts go (default a temporary folder)")
    parser.add_argument("--tuned-trials", type=int, default=None, help="also MetaSchedule-tune with this trial budget")
    parser.add_argument("--json", type=Path, default=None, help="also write the JSON report here")
    parser.add_argument("--schedules", default="none,parallel", help="untuned TVM schedules to time (comma-separated)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="modnas-bench-") as tmp:
        out = args.out or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        report = run(args.threads, out, args.archs, args.tuned_trials, [x for x in args.schedules.split(",") if x])
    text = json.dumps(report, indent=2)
    if args.json:
        args.json.write_text(text + "\n")
    print(text)
    print()
    print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
