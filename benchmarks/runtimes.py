"""Median latency of the NB201 reference architectures on this machine: ONNX Runtime vs untuned TVM
(each schedule of ``modnas.exporters.tvm_schedule``), optionally MetaSchedule-tuned TVM, and ExecuTorch
(XNNPACK) fp32 and INT8 when it is installed. Timing uses the board agent's own protocol
(modnas.profilers.board.timing) and runtime modules; ONNX Runtime and ExecuTorch are timed in
``--rounds`` interleaved rounds (median of the rounds' medians), so drifts of a shared machine hit them alike.

    python benchmarks/runtimes.py [--threads 2] [--out DIR] [--archs N] [--schedules none,parallel]
                                  [--tuned-trials T] [--rounds R] [--no-executorch] [--digits-epochs E]
                                  [--sshd] [--json PATH]

``--digits-epochs E`` also trains the largest reference on the digits for E epochs and reports the held-out
accuracy of PyTorch, ONNX, INT8 ONNX, ExecuTorch and INT8 ExecuTorch (``modnas export --quantize int8``).
``--sshd`` also times every ExecuTorch program on a loopback sshd board (the agent, over SSH) against the
same program in this process, interleaved, and reports the board/direct ratios.

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


def run(threads: int, out_dir: Path, count: int, tuned_trials: int | None, schedules: list[str],
        executorch: bool = True, rounds: int = 1) -> dict[str, Any]:
    os.environ["TVM_NUM_THREADS"] = str(threads)  # before TVM starts its thread pool
    load_before = os.getloadavg()
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
        model = space.build(arch).eval()
        onnx = export_onnx(model, shape, out_dir / f"{name}.onnx")
        row: dict[str, Any] = {"arch": arch, "onnx_sha256": onnx.sha256, "onnx_max_abs_diff": onnx.max_abs_diff}
        timed = {"onnxruntime": ort.load(str(onnx.path), threads, shape, {})}
        if executorch:
            timed.update(executorch_programs(model, shape, out_dir, name, threads, row))
        for key, rounds_ms in interleaved(timed, rounds).items():
            row[key] = {"median": statistics.median(r["median"] for r in rounds_ms),
                        "rounds": [r["median"] for r in rounds_ms], "n": sum(r["n"] for r in rounds_ms)}
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
        et_ms = "".join(f", {k} {row[k]['median']:.3f} ms" for k in ("executorch", "executorch_int8") if k in row)
        print(f"[{index + 1}/{count}] ort {row['onnxruntime']['median']:.3f} ms, {tvm_ms}{et_ms}", file=sys.stderr)
    import onnxruntime
    import tvm

    versions = {"onnxruntime": onnxruntime.__version__, "tvm": tvm.__version__}
    if executorch:
        versions["executorch"] = get_runtime("executorch").version()
    return {
        "machine": {"cpu": cpu_name(), "arch": platform.machine(), "cores": os.cpu_count(), "threads": threads},
        "versions": versions,
        "target": target,
        "schedules": schedules,
        "settings": SETTINGS,
        "rounds": rounds,
        "loadavg": {"before": list(load_before), "after": list(os.getloadavg())},
        "rows": rows,
    }


def executorch_programs(model: Any, shape: list[int], out_dir: Path, name: str, threads: int,
                        row: dict[str, Any]) -> dict[str, Any]:
    """The fp32 and INT8 ExecuTorch programs of ``model`` (INT8 calibrated on the seeded random set that
    profiling uses), loaded by the board's executorch runtime; export times and differences go into ``row``."""
    import numpy as np

    from modnas.exporters.executorch import export_executorch, quantize_executorch
    from modnas.profilers.board.runtimes import get_runtime
    from modnas.toolkit.workflow.artifacts import INT8_CALIBRATION_IMAGES

    et = get_runtime("executorch")
    started = time.perf_counter()
    fp32 = export_executorch(model, shape, out_dir / f"{name}.pte")
    row["executorch_export_s"] = round(time.perf_counter() - started, 2)
    row["executorch_max_abs_diff"] = fp32.max_abs_diff
    with torch_no_grad():
        row["output_scale"] = float(model(torch_randn(shape)).abs().max())
    images = np.random.default_rng(0).standard_normal((INT8_CALIBRATION_IMAGES, *shape[1:])).astype(np.float32)
    started = time.perf_counter()
    int8 = quantize_executorch(model, shape, images, out_dir / f"{name}-int8.pte")
    row["executorch_int8_export_s"] = round(time.perf_counter() - started, 2)
    row["executorch_int8_max_abs_diff"] = int8.max_abs_diff
    row["executorch_sha256"], row["executorch_int8_sha256"] = fp32.sha256, int8.sha256
    return {"executorch": et.load(str(fp32.path), threads, shape, fp32.meta),
            "executorch_int8": et.load(str(int8.path), threads, shape, int8.meta)}


def torch_no_grad() -> Any:
    import torch

    return torch.no_grad()


def torch_randn(shape: list[int]) -> Any:
    import torch

    return torch.randn(*shape, generator=torch.Generator().manual_seed(0))


def interleaved(timed: dict[str, Any], rounds: int) -> dict[str, list[dict[str, float]]]:
    """Each runtime timed once per round, in turn, ``rounds`` times."""
    out: dict[str, list[dict[str, float]]] = {key: [] for key in timed}
    for _ in range(max(1, rounds)):
        for key, run_once in timed.items():
            out[key].append(median_ms(run_once))
    return out


def digits_accuracy(out_dir: Path, epochs: int, threads: int) -> dict[str, Any]:
    """The largest reference trained on the digits, exported with INT8 to ONNX and ExecuTorch: every
    file's held-out accuracy, as ``modnas train`` and ``modnas export --weights --quantize int8`` give them."""
    import torch

    from modnas.toolkit.spaces import get_space
    from modnas.toolkit.workflow.exporting import export_arch
    from modnas.toolkit.workflow.training import train_arch

    torch.set_num_threads(threads)
    arch = get_space("nb201").reference_archs()[9]
    started = time.perf_counter()
    trained = train_arch(arch, space_name="nb201", images="digits", out=out_dir / "digits-ckpt", epochs=epochs,
                         quiet=True)
    train_s = time.perf_counter() - started
    started = time.perf_counter()
    doc = export_arch(arch, space_name="nb201", formats=["onnx", "executorch"], out=out_dir / "digits-export",
                      weights=trained.checkpoint, quantize="int8")
    return {"arch": arch, "epochs": epochs, "heldout_images": trained.images["heldout"],
            "accuracy": doc.accuracy, "train_s": round(train_s, 1),
            "export_s": round(time.perf_counter() - started, 1)}


def board_ratios(rows: list[dict[str, Any]], out_dir: Path, threads: int, rounds: int) -> dict[str, Any]:
    """Every ExecuTorch program timed on a loopback sshd board (runtime executorch, the agent over SSH)
    and in this process, interleaved, ``rounds`` pairs each: the board/direct ratio of the medians."""
    sys.path.insert(0, str(ROOT / "tests"))
    from sshd_fixture import loopback_sshd

    from modnas.exporters.result import read_sidecar
    from modnas.profilers.board.runtimes import get_runtime
    from modnas.profilers.campaign import Board, MeasureJob
    from modnas.toolkit.config import DeviceConfig

    et = get_runtime("executorch")
    table = []
    with tempfile.TemporaryDirectory() as tmp, loopback_sshd(Path(tmp) / "sshd") as board:
        cfg = DeviceConfig(name="loopback-et", host=board.host, port=board.port, user=board.user,
                           key_file=str(board.key_file), known_hosts=str(board.known_hosts), python=board.python,
                           workdir=str(Path(tmp) / "work"), runtime="executorch", threads=threads,
                           measurement=dict(SETTINGS, timeout_s=300))
        with Board(cfg) as b:
            b.prepare()
            for index, row in enumerate(rows):
                for key in ("executorch", "executorch_int8"):
                    path = out_dir / f"ref{index}{'' if key == 'executorch' else '-int8'}.pte"
                    meta, shape = read_sidecar(path), [1, 3, 32, 32]
                    run_once = et.load(str(path), threads, shape, meta)
                    board_ms, direct_ms = [], []
                    for _ in range(rounds):
                        res = b.measure(MeasureJob(artifact=path, sha256=row[f"{key}_sha256"], runtime="executorch",
                                                   threads=threads, input_shape=shape, measurement=SETTINGS,
                                                   timeout_s=300, meta=meta))
                        if not res.ok:
                            raise RuntimeError(f"{path.name} on the board: {res.error_code}: {res.error}")
                        board_ms.append(res.summary["median"])
                        direct_ms.append(median_ms(run_once)["median"])
                    table.append({"ref": index, "program": key, "board_ms": statistics.median(board_ms),
                                  "direct_ms": statistics.median(direct_ms),
                                  "ratio": statistics.median(board_ms) / statistics.median(direct_ms),
                                  "board_rounds": board_ms, "direct_rounds": direct_ms})
                    print(f"[sshd] ref{index} {key}: board/direct {table[-1]['ratio']:.3f}", file=sys.stderr)
    ratios = [r["ratio"] for r in table]
    return {"rows": table, "ratio_min": min(ratios), "ratio_max": max(ratios),
            "ratio_median": statistics.median(ratios), "rounds": rounds,
            "within_5pct": sum(0.95 <= r <= 1.05 for r in ratios)}


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
    if any("executorch" in r for r in report["rows"]):
        lines += ["", executorch_markdown(report)]
    return "\n".join(lines)


def executorch_markdown(report: dict[str, Any]) -> str:
    """ExecuTorch beside ONNX Runtime and TVM: medians in ms, ExecuTorch/ORT and INT8/fp32 time ratios."""
    tvm_s = report["schedules"][-1] if report["schedules"] else None
    lines = [f"| # | ONNX Runtime ms | TVM {tvm_s} ms | ExecuTorch fp32 ms | ExecuTorch INT8 ms | ET fp32 / ORT | "
             "ET INT8 / fp32 | ET max abs diff (|output|) |", "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    vs_ort, int8_fp32 = [], []
    for i, row in enumerate(report["rows"]):
        o, e, q = row["onnxruntime"]["median"], row["executorch"]["median"], row["executorch_int8"]["median"]
        t = row["tvm"].get(tvm_s, {}).get("median") if tvm_s else None
        vs_ort.append(e / o)
        int8_fp32.append(q / e)
        lines.append(f"| {i} | {o:.3f} | {'-' if t is None else f'{t:.3f}'} | {e:.3f} | {q:.3f} | {e / o:.2f} | "
                     f"{q / e:.2f} | {row['executorch_max_abs_diff']:.2g} ({row['output_scale']:.3g}) |")
    load = report.get("loadavg", {})
    lines.append(f"\nGeometric mean time ExecuTorch fp32 / ONNX Runtime {statistics.geometric_mean(vs_ort):.3f}, "
                 f"ExecuTorch INT8 / fp32 {statistics.geometric_mean(int8_fp32):.3f} (ExecuTorch "
                 f"{report['versions'].get('executorch')}, {report['machine']['threads']} threads, "
                 f"{report.get('rounds', 1)} interleaved rounds; load average {load.get('before')} -> "
                 f"{load.get('after')})")
    digits = report.get("digits")
    if digits:
        acc = ", ".join(f"{k} {v:.4f}" for k, v in digits["accuracy"].items())
        lines.append(f"\nDigits, ref 9, {digits['epochs']} epochs, {digits['heldout_images']} held-out images: {acc}")
    sshd = report.get("sshd")
    if sshd:
        lines.append(f"\nBoard (loopback sshd) / direct: median {sshd['ratio_median']:.3f}, range "
                     f"{sshd['ratio_min']:.3f}-{sshd['ratio_max']:.3f}, {sshd['within_5pct']} of {len(sshd['rows'])} "
                     "within 0.95-1.05")
    return "\n".join(lines)


def save(report: dict[str, Any], path: Path | None) -> None:
    if path is not None:
        path.write_text(json.dumps(report, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--archs", type=int, default=10, help="how many reference architectures (default all 10)")
    parser.add_argument("--out", type=Path, default=None, help="where artifacts go (default a temporary folder)")
    parser.add_argument("--tuned-trials", type=int, default=None, help="also MetaSchedule-tune with this trial budget")
    parser.add_argument("--json", type=Path, default=None, help="also write the JSON report here")
    parser.add_argument("--schedules", default="none,parallel", help="untuned TVM schedules to time (comma-separated)")
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds of ONNX Runtime and ExecuTorch")
    parser.add_argument("--no-executorch", action="store_true",
                        help="leave ExecuTorch out (it is timed when installed)")
    parser.add_argument("--digits-epochs", type=int, default=0, help="also the INT8 and fp32 accuracy on the digits")
    parser.add_argument("--sshd", action="store_true", help="also the board/direct ratio of ExecuTorch on a loopback "
                        "sshd board")
    args = parser.parse_args(argv)
    from modnas.exporters.executorch import executorch_version

    executorch = not args.no_executorch and executorch_version() is not None
    with tempfile.TemporaryDirectory(prefix="modnas-bench-") as tmp:
        out = args.out or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        report = run(args.threads, out, args.archs, args.tuned_trials, [x for x in args.schedules.split(",") if x],
                     executorch=executorch, rounds=args.rounds)
        save(report, args.json)  # each phase is kept as it ends: a later one that fails loses nothing
        if executorch and args.sshd:
            report["sshd"] = board_ratios(report["rows"], out, args.threads, max(1, args.rounds))
            save(report, args.json)
        if executorch and args.digits_epochs:
            report["digits"] = digits_accuracy(out, args.digits_epochs, args.threads)
        report["loadavg"]["end"] = list(os.getloadavg())
        save(report, args.json)
    text = json.dumps(report, indent=2)
    print(text)
    print()
    print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
