"""Latency prediction in the ofa_mbv3 space: leave-GPUs-out on HELP's OFA table, plus this machine.

    python benchmarks/ofa_latency.py [--data DIR] [--epochs N] [--seed S] [--random N] [--threads T]
                                     [--skip-predictor] [--skip-onnx] [--skip-tvm] [--json PATH]

Part 1. For every GPU of ``help_ofa`` (all its batch sizes held out together) the predictor
(``modnas.toolkit.prediction.predictors``: MLP over the one-hot + hardware branch, trained on the other GPUs' settings
through ``training_devices(data_dir, "ofa_mbv3", ...)``/``train``, the path of ``modnas predictor fit``) is onboarded from the
held-out setting's 10 reference latencies only and predicts the other 4,990 architectures.
Baselines get the same 10 values: MACs (w1.2) calibrated on them, and the predictor without
calibration. The Note10 lookup table (defined only at r in 160/176/192/208/224, 1,013 archs) is
compared on that subset, calibrated on 10 seeded architectures of the subset that are then not scored.
Part 2. ONNX Runtime latency on this machine (``--threads``, default 1) of the 10 reference
architectures and ``--random`` random subnets (compared by each one's best block median, as other
processes may share the cores), with the predictor (trained on every GPU setting)
onboarded from the 10 references and compared on the random subnets beside MACs.
Unless ``--skip-tvm``, every one of these ONNX files is also compiled with TVM as ``modnas export
--format tvm`` does on this host (``modnas.exporters.tvm.compile_tvm`` for the ``x86`` target preset: untuned,
the toolkit's default ``parallel`` schedule, checked against ONNX Runtime), loaded with the board's
``tvm`` runtime and timed the same way with the same thread count. A failed build is recorded in its row.

Prints one JSON document, then Markdown tables on stderr.
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

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SPACE = "ofa_mbv3"
TIMING = {"warmup_s": 0.3, "min_runs": 10, "min_time_s": 0.3, "repeats": 3, "cooldown_s": 0.05}


def _data_dir(arg: str | None) -> Path:
    if arg:
        return Path(arg)
    env = os.environ.get("MODNAS_DATA")
    return Path(env) if env else ROOT.parent / "shared" / "data"


def _train(data_dir: Path, held: list[str], cfg: Any, seed: int, table: Any = None) -> Any:
    """The predictor trained on the data directory's OFA table minus ``held`` (keys or GPU groups)."""
    from modnas.toolkit.prediction import predictors

    pool, devices, _ = predictors.training_devices(data_dir, SPACE, "latency", cfg, held_out=held,
                                                   tables={"latency": table} if table is not None else None)
    pred, _ = predictors.train(pool, devices, SPACE, "latency", cfg, seed)
    return pred


def _config(epochs: int | None) -> Any:
    from modnas.toolkit.prediction.predictors import PredictorConfig

    return PredictorConfig(**({"epochs": epochs} if epochs else {}))


def _calibrated(values: np.ndarray, fit_idx: np.ndarray, measured: np.ndarray) -> np.ndarray:
    from modnas.toolkit.prediction import calibration

    return calibration.fit(values[fit_idx], measured).apply(values)


def leave_gpus_out(data_dir: Path, epochs: int | None, seed: int, log: Any) -> dict[str, Any]:
    from modnas.toolkit.spaces.ofa_mbv3 import tables as bd
    from modnas.toolkit.prediction.embedding import minmax
    from modnas.toolkit.prediction.evaluation import scores
    from modnas.toolkit.spaces import get_space

    space = get_space(SPACE)
    table = bd.load_latency(data_dir)
    archs_df = bd.load_archs(data_dir)
    lut = bd.load_lut(data_dir)
    archs = table.archs
    pos = {a: i for i, a in enumerate(archs)}
    refs = space.reference_archs()
    ref_idx = np.array([pos[r] for r in refs])
    onehot = space.encode(archs)
    macs = archs_df["macs_m_w12"].to_numpy(np.float64)
    lut_ms = np.array([bd.lut_latency(a, lut) for a in archs])
    lut_rows = np.flatnonzero(np.isfinite(lut_ms))
    rng = np.random.default_rng(seed)
    lut_fit = rng.choice(np.setdiff1d(lut_rows, ref_idx), size=10, replace=False)
    lut_score = np.setdiff1d(lut_rows, np.concatenate([lut_fit, ref_idx]))
    not_ref = np.ones(len(archs), bool)
    not_ref[ref_idx] = False

    cfg = _config(epochs)
    groups: dict[str, list[str]] = {}
    for k in table.keys:
        groups.setdefault(bd.gpu_group(k), []).append(k)
    rows: list[dict[str, Any]] = []
    for gpu, held in groups.items():
        started = time.perf_counter()
        pred = _train(data_dir, held, cfg, seed, table)
        train_s = time.perf_counter() - started
        for key in held:
            row = table.row(key)
            r = row[ref_idx]
            emb = minmax(r).astype(np.float32)
            raw = np.exp(pred.predict_log_onehot(onehot, emb))
            cal = _calibrated(raw, ref_idx, r)
            truth = np.where(not_ref, row, np.nan)
            sub = np.full(len(archs), np.nan)
            sub[lut_score] = row[lut_score]
            entry = {
                "device": key, "gpu": gpu, "batch": bd.batch_size(key), "train_s": round(train_s, 1),
                "predictor": scores(cal, truth),
                "uncalibrated": scores(raw, truth),
                "macs": scores(_calibrated(macs, ref_idx, r), truth),
                "lut_subset": {
                    "predictor": scores(cal, sub),
                    "macs": scores(_calibrated(macs, ref_idx, r), sub),
                    "note10_lut": scores(_calibrated(lut_ms, lut_fit, row[lut_fit]), sub),
                },
            }
            rows.append(entry)
            log(f"{key}: predictor spearman {entry['predictor']['spearman']:.3f} "
                f"mdape {entry['predictor']['mdape']:.1f}% within10 {entry['predictor']['within_10pct']:.2f} | "
                f"macs spearman {entry['macs']['spearman']:.3f} mdape {entry['macs']['mdape']:.1f}%")

    def mean(sel: list[dict[str, Any]], path: tuple[str, ...]) -> dict[str, float]:
        out = {}
        for k in ("spearman", "kendall", "mdape", "within_10pct"):
            vals = []
            for e in sel:
                x: Any = e
                for p in path:
                    x = x[p]
                vals.append(x[k])
            out[k] = float(np.nanmean(vals)) if vals else float("nan")
        return out

    summary = {}
    for name, sel in (("batch_1", [e for e in rows if e["batch"] == 1]),
                      ("batch_gt_1", [e for e in rows if e["batch"] != 1]), ("all", rows)):
        summary[name] = {"n_settings": len(sel),
                         **{m: mean(sel, (m,)) for m in ("predictor", "uncalibrated", "macs")},
                         **{f"lut_subset.{m}": mean(sel, ("lut_subset", m)) for m in ("predictor", "macs", "note10_lut")}}
    return {"devices": table.keys, "digest": table.digest, "config": cfg.model_dump(), "seed": seed,
            "lut_subset": {"n_scored": int(len(lut_score)), "calibration_archs": [archs[i] for i in lut_fit]},
            "rows": rows, "summary": summary}


def _error_text(exc: BaseException, limit: int = 300) -> str:
    """``Type: message`` on one line; for a TVM traceback the message is its last line."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    text = lines[-1] if lines[0].startswith("Traceback") else lines[0]
    return f"{type(exc).__name__}: {text}"[:limit]


def _timed(blocks: list[list[float]]) -> dict[str, Any]:
    """Median of all samples, each block's median and the least disturbed block's, and the sample count."""
    samples = [s for b in blocks for s in b]
    medians = [statistics.median(b) for b in blocks]
    return {"median_ms": statistics.median(samples), "block_medians_ms": medians,
            "best_block_ms": min(medians), "n": len(samples)}


def _tvm_row(onnx_path: Path, shape: list[int], target: dict[str, Any], out_dir: Path, name: str,
             threads: int, tvm_rt: Any) -> dict[str, Any]:
    """Compile ``onnx_path`` as ``modnas export --format tvm`` does, load it with the board's runtime and time
    it; the ``tvm_*`` fields of a row. Any failure is kept as ``tvm_error`` instead of being raised."""
    from modnas.exporters.tvm import compile_tvm
    from modnas.profilers.board.timing import measure

    row: dict[str, Any] = {"tvm_median_ms": None, "tvm_block_medians_ms": None, "tvm_best_block_ms": None,
                           "tvm_n": None, "tvm_compile_s": None, "tvm_max_abs_diff": None, "tvm_error": None}
    started = time.perf_counter()
    try:
        built = compile_tvm(onnx_path, target, out_dir, name=name)
    except Exception as exc:
        row["tvm_error"] = _error_text(exc)
        row["tvm_failed_after_s"] = round(time.perf_counter() - started, 1)
        return row
    # the exporter's own figure: ONNX import, Relax build and export_library, not the ORT check
    row["tvm_compile_s"] = built.meta.get("compile_seconds")
    row["tvm_max_abs_diff"] = built.max_abs_diff
    try:
        timed = _timed(measure(tvm_rt.load(str(built.path), threads, shape, built.meta), TIMING))
    except Exception as exc:
        row["tvm_error"] = _error_text(exc)
        return row
    row.update({f"tvm_{k}": v for k, v in timed.items()})
    return row


def _geomean(values: np.ndarray) -> float:
    return float(np.exp(np.mean(np.log(values)))) if len(values) else float("nan")


def _spearman(a: np.ndarray, b: np.ndarray) -> float | None:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b)[0]) if len(a) >= 3 else None


def this_machine(data_dir: Path | None, n_random: int, threads: int, seed: int, epochs: int | None,
                 log: Any, tvm: bool = True) -> dict[str, Any]:
    from modnas.exporters.onnx import export_onnx
    from modnas.profilers.board.runtimes import get_runtime
    from modnas.profilers.board.timing import measure
    from modnas.toolkit.spaces import get_space

    space = get_space(SPACE)
    ort_rt = get_runtime("onnxruntime")
    tvm_rt = target = None
    if tvm:
        # TVM sizes its thread pool once per process from TVM_NUM_THREADS, at the first parallel kernel:
        # here that is compile_tvm's check, before the runtime's load() would set it
        os.environ["TVM_NUM_THREADS"] = str(int(threads))
        from modnas.exporters.targets import resolve_target

        tvm_rt = get_runtime("tvm")
        target = resolve_target(None, None)  # what ``modnas export --format tvm`` uses without --device/--target
    refs = space.reference_archs()
    randoms = [a for a in space.sample(n_random + 10, seed=seed + 1) if a not in refs][:n_random]
    out: list[dict[str, Any]] = []
    import torch

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        for i, arch in enumerate(refs + randoms):
            torch.manual_seed(i)
            shape = list(space.input_shape(arch))
            res = export_onnx(space.build(arch).eval(), shape, Path(tmp) / f"net{i}.onnx")
            timed = _timed(measure(ort_rt.load(str(res.path), threads, shape, {}), TIMING))
            out.append({"arch": arch, "kind": "reference" if i < len(refs) else "random", "r": shape[-1],
                        "macs_m": round(space.flops(arch), 2), **timed, "max_abs_diff": res.max_abs_diff})
            msg = (f"{out[-1]['kind']} {i}: r={shape[-1]} {out[-1]['macs_m']:.0f} MMACs "
                   f"onnxruntime {timed['median_ms']:.2f} ms")
            if tvm:
                row = _tvm_row(res.path, shape, target, Path(tmp), f"net{i}-tvm", threads, tvm_rt)
                out[-1].update(row)
                msg += (f" | TVM failed: {row['tvm_error']}" if row["tvm_error"] else
                        f" | TVM {row['tvm_median_ms']:.2f} ms (compile {row['tvm_compile_s']:.1f} s)")
                for suffix in (".so", ".so.json", ".tar", ".tar.json"):
                    (Path(tmp) / f"net{i}-tvm{suffix}").unlink(missing_ok=True)
            log(msg)
    result: dict[str, Any] = {"threads": threads, "runtime": ort_rt.version(), "machine": platform.machine(),
                              "processor": platform.processor() or platform.machine(), "rows": out}
    # the least disturbed block: other processes share this machine's cores
    ms = np.array([r["best_block_ms"] for r in out])
    mac = np.array([r["macs_m"] for r in out])
    result["spearman_macs_all"] = _spearman(ms, mac)
    if tvm:
        from modnas.exporters.tvm_schedule import DEFAULT_SCHEDULE

        ok = [i for i, r in enumerate(out) if r["tvm_error"] is None]
        tvm_ms = np.array([out[i]["tvm_best_block_ms"] for i in ok])
        compile_s = [r["tvm_compile_s"] for r in out if r["tvm_compile_s"] is not None]
        result["tvm"] = {
            "runtime": tvm_rt.version(), "target": target, "schedule": DEFAULT_SCHEDULE, "tuned": False,
            "n_ok": len(ok), "n_failed": len(out) - len(ok),
            "errors": {str(i): r["tvm_error"] for i, r in enumerate(out) if r["tvm_error"] is not None},
            # ratios and ranks over the architectures both runtimes ran, on each one's best block
            "geomean_ort_over_tvm": _geomean(ms[ok] / tvm_ms) if ok else None,
            "spearman_macs_all": _spearman(tvm_ms, mac[ok]),
            "spearman_ort_tvm": _spearman(ms[ok], tvm_ms),
            "spearman_macs_ort_same_archs": _spearman(ms[ok], mac[ok]),
            "compile_s_total": round(float(sum(compile_s)), 1),
            "compile_s_median": round(float(statistics.median(compile_s)), 1) if compile_s else None,
        }
    if data_dir is not None and randoms:
        from modnas.toolkit.spaces.ofa_mbv3 import tables as bd
        from modnas.toolkit.prediction import calibration
        from modnas.toolkit.prediction.embedding import minmax
        from modnas.toolkit.prediction.evaluation import scores

        table = bd.load_latency(data_dir)
        pred = _train(data_dir, [], _config(epochs), seed, table)
        ref_ms = ms[:len(refs)]
        raw = pred.predict(refs + randoms, minmax(ref_ms).astype(np.float32))
        cal = calibration.fit(raw[:len(refs)], ref_ms)
        mac_cal = calibration.fit(mac[:len(refs)], ref_ms)
        truth = ms[len(refs):]
        result["random_subnets"] = {
            "predictor_from_gpus": scores(cal.apply(raw[len(refs):]), truth),
            "macs": scores(mac_cal.apply(mac[len(refs):]), truth),
        }
    return result


def _num(value: float | None, fmt: str) -> str:
    return "–" if value is None else format(value, fmt)


def _markdown(res: dict[str, Any]) -> str:
    lines = []
    if "leave_gpus_out" in res:
        lines += ["| held-out setting | predictor spearman | MdAPE % | within 10 % | uncal. spearman | MACs spearman "
                  "| MACs MdAPE % | MACs within 10 % | LUT-subset: pred / MACs / LUT spearman | LUT-subset MdAPE % pred / LUT |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for e in res["leave_gpus_out"]["rows"]:
            p, m, u, ls = e["predictor"], e["macs"], e["uncalibrated"], e["lut_subset"]
            lines.append(f"| {e['device']} | {p['spearman']:.3f} | {p['mdape']:.1f} | {p['within_10pct']:.2f} "
                         f"| {u['spearman']:.3f} | {m['spearman']:.3f} | {m['mdape']:.1f} | {m['within_10pct']:.2f} "
                         f"| {ls['predictor']['spearman']:.3f} / {ls['macs']['spearman']:.3f} / "
                         f"{ls['note10_lut']['spearman']:.3f} | {ls['predictor']['mdape']:.1f} / "
                         f"{ls['note10_lut']['mdape']:.1f} |")
        for name, s in res["leave_gpus_out"]["summary"].items():
            lines.append(f"| **mean {name}** ({s['n_settings']}) | {s['predictor']['spearman']:.3f} "
                         f"| {s['predictor']['mdape']:.1f} | {s['predictor']['within_10pct']:.2f} "
                         f"| {s['uncalibrated']['spearman']:.3f} | {s['macs']['spearman']:.3f} "
                         f"| {s['macs']['mdape']:.1f} | {s['macs']['within_10pct']:.2f} "
                         f"| {s['lut_subset.predictor']['spearman']:.3f} / {s['lut_subset.macs']['spearman']:.3f} / "
                         f"{s['lut_subset.note10_lut']['spearman']:.3f} | {s['lut_subset.predictor']['mdape']:.1f} / "
                         f"{s['lut_subset.note10_lut']['mdape']:.1f} |")
    if "this_machine" in res:
        t = res["this_machine"]
        tv = t.get("tvm")
        if tv is None:
            lines += ["", f"ONNX Runtime {t['runtime']}, {t['threads']} thread(s), {t['processor']}:", "",
                      "| kind | r | MMACs | median ms | best block median ms |", "|---|---|---|---|---|"]
            lines += [f"| {r['kind']} | {r['r']} | {r['macs_m']:.0f} | {r['median_ms']:.2f} "
                      f"| {r['best_block_ms']:.2f} |" for r in t["rows"]]
        else:
            lines += ["", f"ONNX Runtime {t['runtime']} and TVM {tv['runtime']} (untuned, `{tv['schedule']}` schedule, "
                      f"target {json.dumps(tv['target'])}), {t['threads']} thread(s), {t['processor']}:", "",
                      "| # | kind | r | MMACs | ORT median ms | ORT best block ms | TVM median ms | TVM best block ms "
                      "| ORT/TVM | TVM compile s |", "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
            for i, r in enumerate(t["rows"]):
                if r["tvm_error"] is None:
                    cells = (f"{r['tvm_median_ms']:.2f} | {r['tvm_best_block_ms']:.2f} "
                             f"| {r['best_block_ms'] / r['tvm_best_block_ms']:.2f} | {r['tvm_compile_s']:.1f}")
                else:
                    cells = f"failed | – | – | {_num(r['tvm_compile_s'], '.1f')}"
                lines.append(f"| {i} | {r['kind']} | {r['r']} | {r['macs_m']:.0f} | {r['median_ms']:.2f} "
                             f"| {r['best_block_ms']:.2f} | {cells} |")
        lines.append(f"\nSpearman(ms, MACs) over all {len(t['rows'])}: {_num(t['spearman_macs_all'], '.3f')} (ONNX Runtime)")
        if tv is not None:
            lines.append(f"TVM: {tv['n_ok']} of {len(t['rows'])} built and timed; geometric mean ORT/TVM (best blocks) "
                         f"{_num(tv['geomean_ort_over_tvm'], '.3f')}; Spearman(TVM ms, MACs) "
                         f"{_num(tv['spearman_macs_all'], '.3f')}; Spearman(ORT ms, TVM ms) "
                         f"{_num(tv['spearman_ort_tvm'], '.3f')}; compile {tv['compile_s_total']:.0f} s in all "
                         f"(median {_num(tv['compile_s_median'], '.1f')} s per architecture)")
            for i, err in tv["errors"].items():
                lines.append(f"TVM failed on #{i}: {err}")
        if "random_subnets" in t:
            p, m = t["random_subnets"]["predictor_from_gpus"], t["random_subnets"]["macs"]
            lines.append(f"Random subnets, onboarded from the 10 references: predictor spearman {p['spearman']:.3f} "
                         f"MdAPE {p['mdape']:.1f}% | MACs spearman {m['spearman']:.3f} MdAPE {m['mdape']:.1f}%")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None, help="data directory laid out as shared/data")
    ap.add_argument("--epochs", type=int, default=None, help="predictor epochs (default: the predictor's own)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--random", type=int, default=10, help="random subnets timed on this machine")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--skip-predictor", action="store_true")
    ap.add_argument("--skip-onnx", action="store_true", help="skip part 2 (this machine: ONNX Runtime and TVM)")
    ap.add_argument("--skip-tvm", action="store_true", help="time part 2 with ONNX Runtime only")
    ap.add_argument("--json", default=None, help="also write the JSON document here")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    data = _data_dir(args.data)
    have_data = (data / "help_ofa" / "help_ofa_latency.csv.gz").exists()
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    started = time.perf_counter()
    res: dict[str, Any] = {"space": SPACE, "data": str(data)}
    if not args.skip_predictor:
        if not have_data:
            log(f"no help_ofa data under {data}: skipping the leave-GPUs-out part")
        else:
            res["leave_gpus_out"] = leave_gpus_out(data, args.epochs, args.seed, log)
    if not args.skip_onnx:
        res["this_machine"] = this_machine(data if have_data and not args.skip_predictor else None, args.random,
                                           args.threads, args.seed, args.epochs, log, tvm=not args.skip_tvm)
    res["seconds"] = round(time.perf_counter() - started, 1)
    text = json.dumps(res, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    print(_markdown(res), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
