"""INT8 against fp32 in this machine's onnxruntime: the NB201 reference architectures (and optionally N
random ones), each exported to ONNX (seeded untrained weights: speed does not depend on them) and
quantised statically as ``modnas export --quantize int8`` does (QDQ, Conv/Gemm, uint8 activations,
per-channel int8 weights; ``--all-ops`` adds a column with every operator onnxruntime can quantise),
then timed with the
board agent's protocol, the two files interleaved round by round, one thread each.

    python benchmarks/int8_speedup.py [--threads 1] [--extra N] [--rounds 3] [--all-ops] [--out DIR] [--json PATH]

Prints one JSON document, then a Markdown table (speed-up = fp32 median / int8 median, so > 1 means
INT8 is faster).
"""
from __future__ import annotations

import argparse
import json
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

SETTINGS = {"warmup_s": 0.3, "min_runs": 30, "min_time_s": 0.5, "repeats": 1, "cooldown_s": 0.05}


def _session(path: Path, threads: int) -> Any:
    import numpy as np
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)}
    return lambda: session.run(None, feed)


def run(threads: int, extra: int, rounds: int, out_dir: Path, all_ops: bool = False) -> dict[str, Any]:
    import numpy as np
    import onnxruntime as ort

    from modnas.exporters.onnx import export_onnx
    from modnas.exporters.quantize import quantize_int8
    from modnas.profilers.board.timing import measure
    from modnas.toolkit.workflow.artifacts import build_model
    from modnas.toolkit.spaces import get_space

    space = get_space("nb201")
    archs = [("ref", i, a) for i, a in enumerate(space.reference_archs())]
    archs += [("random", i, a) for i, a in enumerate(space.sample(extra, seed=11))] if extra else []
    calib = np.random.default_rng(0).standard_normal((32, 3, 32, 32)).astype(np.float32)
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    for kind, i, arch in archs:
        stem = f"nb201-{space.index(arch)}"
        fp32 = export_onnx(build_model(space, arch), (1, 3, 32, 32), out_dir / f"{stem}.onnx").path
        t0 = time.perf_counter()
        int8 = quantize_int8(fp32, calib, out_dir / f"{stem}-int8.onnx").path
        quant_s = time.perf_counter() - t0
        runs = {"fp32": _session(fp32, threads), "int8": _session(int8, threads)}
        if all_ops:  # every operator onnxruntime can quantise (Add, pooling, ReLU too)
            runs["int8_all"] = _session(quantize_int8(fp32, calib, out_dir / f"{stem}-int8-all.onnx", op_types=None).path,
                                        threads)
        samples: dict[str, list[float]] = {k: [] for k in runs}
        per_round: dict[str, list[float]] = {k: [] for k in runs}
        for r in range(rounds):
            order = list(runs) if r % 2 == 0 else list(reversed(list(runs)))
            for key in order:
                blocks = measure(runs[key], SETTINGS)
                flat = [s for b in blocks for s in b]
                samples[key] += flat
                per_round[key].append(statistics.median(flat))
        med = {k: statistics.median(v) for k, v in samples.items()}
        rows.append({"kind": kind, "i": i, "arch": arch, "index": space.index(arch), "fp32_ms": med["fp32"],
                     "int8_ms": med["int8"], "speedup": med["fp32"] / med["int8"],
                     "int8_all_ops_ms": med.get("int8_all"),
                     "round_medians": per_round, "quantize_s": round(quant_s, 2),
                     "bytes": {"fp32": fp32.stat().st_size, "int8": int8.stat().st_size}})
        print(f"{stem}: fp32 {med['fp32']:.3f} ms, int8 {med['int8']:.3f} ms, x{med['fp32'] / med['int8']:.2f}",
              file=sys.stderr, flush=True)
    speedups = [r["speedup"] for r in rows]
    return {"threads": threads, "rounds": rounds, "settings": SETTINGS, "onnxruntime": ort.__version__,
            "machine": {"cpu": platform.processor() or platform.machine(), "python": platform.python_version()},
            "rows": rows, "geomean_speedup": float(np.exp(np.mean(np.log(speedups)))),
            "slower": [r["index"] for r in rows if r["speedup"] < 1.0],
            "seconds": round(time.perf_counter() - started, 1)}


def markdown(doc: dict[str, Any]) -> str:
    extra = doc["rows"] and doc["rows"][0].get("int8_all_ops_ms") is not None
    lines = ["| arch | NB201 index | fp32 ms | int8 ms | speed-up |" + (" int8 all ops ms |" if extra else ""),
             "|---|---:|---:|---:|---:|" + ("---:|" if extra else "")]
    for r in doc["rows"]:
        name = f"ref {r['i']}" if r["kind"] == "ref" else f"random {r['i']}"
        lines.append(f"| {name} | {r['index']} | {r['fp32_ms']:.3f} | {r['int8_ms']:.3f} | {r['speedup']:.2f} |"
                     + (f" {r['int8_all_ops_ms']:.3f} |" if extra else ""))
    lines.append(f"\nGeometric-mean speed-up {doc['geomean_speedup']:.2f} ({doc['threads']} thread); "
                 f"INT8 slower for: {', '.join(map(str, doc['slower'])) or 'none'}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--extra", type=int, default=0, help="also N random architectures")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--all-ops", action="store_true", help="also time INT8 with every quantisable operator")
    parser.add_argument("--out", default=None, help="where the ONNX files go (default: a temporary folder)")
    parser.add_argument("--json", default=None, help="also write the JSON document here")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out) if args.out else Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        doc = run(args.threads, args.extra, args.rounds, out, args.all_ops)
    text = json.dumps(doc, indent=2)
    if args.json:
        Path(args.json).write_text(text + "\n")
    print(text)
    print(markdown(doc))


if __name__ == "__main__":
    main()
