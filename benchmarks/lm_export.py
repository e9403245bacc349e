"""Language-model export for the board: nanoGPT's CPU baseline as prefill and decode ONNX graphs, INT8, TVM.

Trains ``e=128;l=4;h=4-4-4-4;m=4-4-4-4`` briefly on Tiny Shakespeare (``--steps``, context 64, batch 12)
or loads ``--checkpoint``; exports both graphs (``modnas.exporters.lm_onnx``, checked against PyTorch,
64 greedy tokens compared), quantises them dynamically to INT8 with int8 and with uint8 weights, scores
each prefill graph's held-out loss (nats per character, every held-out window of the checkpoint's
context), compiles the decode graph with TVM for this CPU at a ``--cache``-token cache, then times one
decode step at that cache (ms per token, batch 1, ``--threads`` threads) in PyTorch, onnxruntime fp32,
onnxruntime INT8 and TVM with the board agent's protocol, interleaved round by round.

    python benchmarks/lm_export.py [--checkpoint CKPT] [--data DIR] [--steps 600] [--cache 128]
                                   [--threads 1] [--rounds 5] [--no-tvm] [--json PATH] [--md PATH]

Prints one JSON document on stdout and a Markdown table on stderr; the load average is sampled every
5 seconds (other work on the machine slows every runtime alike, which interleaving spreads evenly).
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
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.load_sampler import sampled_load  # noqa: E402

BASELINE = "e=128;l=4;h=4-4-4-4;m=4-4-4-4"
SETTINGS = {"warmup_s": 0.3, "min_runs": 100, "min_time_s": 0.5, "repeats": 1, "cooldown_s": 0.05}
WEIGHT_TYPES = ("qint8", "quint8")


def _model(args: argparse.Namespace, tmp: Path) -> tuple[Any, Any, dict[str, Any], str]:
    from modnas.toolkit.spaces.gpt.train import load_lm, train_lm

    ckpt = args.checkpoint
    if ckpt is None:
        ckpt = train_lm(BASELINE, "shakespeare", context=64, batch=12, steps=args.steps, out=tmp / "ckpt",
                        data_dir=args.data, threads=args.threads, save_every=args.steps, quiet=True)["checkpoint"]
    model, vocab, meta = load_lm(ckpt)
    return model, vocab, meta, str(ckpt)


def _heldout(vocab: Any, meta: dict[str, Any], data: str) -> tuple[Any, Any]:
    from modnas.toolkit.spaces.gpt.text import eval_windows, read_text, split_heldout

    corpus = read_text(meta["text"], data)
    if corpus.digest != meta["text_digest"]:
        raise SystemExit(f"the text {meta['text']} is not the checkpoint's (digest differs)")
    _, held = split_heldout(vocab.encode(corpus.text))
    return eval_windows(held, int(meta["context"]))


def _timers(model: Any, files: dict[str, Path], tvm_lib: Path | None, prompt: list[int],
            threads: int) -> dict[str, Callable[[], Any]]:
    """One decode step after a ``len(prompt)``-token cache, per runtime (the cache is the same each call)."""
    import torch

    from modnas.exporters.lm_onnx import LMRuntime

    with torch.no_grad():
        _, cache = model.prefill(torch.tensor([prompt]))
    token = torch.tensor([[prompt[-1]]])

    def torch_step() -> None:
        with torch.no_grad():
            model.decode(token, cache)

    runs: dict[str, Callable[[], Any]] = {"pytorch": torch_step}
    flat = [t.numpy() for kv in cache for t in kv]
    for key, path in files.items():
        runtime = LMRuntime(decode=path, threads=threads)
        runs[key] = (lambda rt: lambda: rt.decode(prompt[-1], flat))(runtime)
    if tvm_lib is not None:
        import numpy as np
        import tvm

        from modnas.exporters.lm_tvm import load_lm_vm

        vm = load_lm_vm(tvm_lib)
        args = [tvm.runtime.tensor(np.array([[prompt[-1]]], dtype=np.int64), tvm.cpu())]
        args += [tvm.runtime.tensor(a, tvm.cpu()) for a in flat]
        runs["tvm"] = lambda: vm["main"](*args)
    return runs


def run(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    import torch

    from modnas.exporters.lm_onnx import export_lm_onnx, lm_loss_onnx, quantize_lm_int8
    from modnas.profilers.board.timing import measure
    from modnas.toolkit.spaces.gpt.train import mean_loss

    started = time.perf_counter()
    model, vocab, meta, ckpt = _model(args, out)
    x, y = _heldout(vocab, meta, args.data)
    exported = export_lm_onnx(model, out, "baseline", prompt=int(meta["context"]), past=args.cache)
    pre, dec = exported["onnx_prefill"], exported["onnx"]
    loss = {"pytorch": mean_loss(model, x, y), "onnx": lm_loss_onnx(pre.path, x, y)}
    int8: dict[str, dict[str, Any]] = {}
    decode_files = {"onnx_fp32": dec.path}
    for wt in WEIGHT_TYPES:
        q_pre = quantize_lm_int8(pre.path, out / f"baseline-prefill-int8-{wt}.onnx", weight_type=wt)
        q_dec = quantize_lm_int8(dec.path, out / f"baseline-decode-int8-{wt}.onnx", weight_type=wt)
        loss[f"onnx_int8_{wt}"] = lm_loss_onnx(q_pre.path, x, y)
        int8[wt] = {"prefill_logit_diff_vs_fp32": q_pre.max_abs_diff, "decode_logit_diff_vs_fp32": q_dec.max_abs_diff,
                    "bytes": q_dec.path.stat().st_size}
        decode_files[f"onnx_int8_{wt}"] = q_dec.path
    diffs: dict[str, float | None] = {"onnx_prefill": pre.max_abs_diff, "onnx_decode": dec.max_abs_diff,
                                      "onnx_prefill_cache": pre.meta["cache_max_abs_diff"],
                                      "onnx_decode_cache": dec.meta["cache_max_abs_diff"]}
    tvm_lib = None
    if not args.no_tvm:
        from modnas.exporters.lm_tvm import compile_lm_tvm
        from modnas.exporters.targets import resolve_target

        lib = compile_lm_tvm(dec.path, resolve_target(None, None), out, length=args.cache)
        diffs["tvm_decode_vs_onnxruntime"] = lib.max_abs_diff
        tvm_lib = lib.path
    prompt = x.reshape(-1)[: args.cache].tolist()
    with torch.no_grad():
        torch.set_num_threads(args.threads)
        runs = _timers(model, decode_files, tvm_lib, prompt, args.threads)
        samples: dict[str, list[float]] = {k: [] for k in runs}
        for r in range(args.rounds):
            for key in (list(runs) if r % 2 == 0 else list(reversed(list(runs)))):
                samples[key] += [s for block in measure(runs[key], SETTINGS) for s in block]
    ms = {k: round(statistics.median(v), 4) for k, v in samples.items()}
    return {"arch": meta["arch"], "checkpoint": ckpt, "steps": meta["steps"], "text": meta["text"],
            "heldout_windows": int(len(x)), "context": int(meta["context"]), "cache": args.cache,
            "threads": args.threads, "max_abs_diff": diffs, "greedy_tokens_equal": dec.meta.get("greedy_tokens_equal"),
            "loss": {k: round(v, 5) for k, v in loss.items()},
            "int8_loss_delta": {wt: round(loss[f"onnx_int8_{wt}"] - loss["onnx"], 5) for wt in WEIGHT_TYPES},
            "int8": int8, "decode_ms": ms,
            "int8_speedup": {wt: round(ms["onnx_fp32"] / ms[f"onnx_int8_{wt}"], 3) for wt in WEIGHT_TYPES},
            "bytes": {"onnx_decode_fp32": dec.path.stat().st_size},
            "seconds": round(time.perf_counter() - started, 1)}


def markdown(doc: dict[str, Any]) -> str:
    lines = [f"{doc['arch']}, {doc['steps']} steps; decode at a {doc['cache']}-token cache, {doc['threads']} thread; "
             f"held-out loss over {doc['heldout_windows']} windows of {doc['context']}",
             "", "| runtime | held-out nats/char | loss - onnx fp32 | decode ms/token | speed-up vs onnx fp32 |",
             "|---|---:|---:|---:|---:|"]
    fp32_ms = doc["decode_ms"]["onnx_fp32"]
    for key in ("pytorch", "onnx_fp32", *(f"onnx_int8_{wt}" for wt in WEIGHT_TYPES), "tvm"):
        if key not in doc["decode_ms"]:
            continue
        loss = doc["loss"].get("onnx" if key == "onnx_fp32" else key)
        delta = "" if loss is None else f"{loss - doc['loss']['onnx']:+.5f}"
        lines.append(f"| {key} | {'' if loss is None else f'{loss:.5f}'} | {delta} | {doc['decode_ms'][key]:.4f} | "
                     f"{fp32_ms / doc['decode_ms'][key]:.2f} |")
    diffs = ", ".join(f"{k} {v:.2g}" for k, v in doc["max_abs_diff"].items() if v is not None)
    lines.append(f"\nmax |diff|: {diffs}; greedy tokens equal: {doc['greedy_tokens_equal']}; "
                 f"load average {doc['load_average']['mean']} (max {doc['load_average']['max']}, "
                 f"{doc['load_average']['cpus']} CPUs)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None, help="a modnas train checkpoint (default: train one)")
    parser.add_argument("--data", default=os.environ.get("MODNAS_DATA", str(ROOT.parent / "shared" / "data")))
    parser.add_argument("--steps", type=int, default=600, help="training steps without --checkpoint")
    parser.add_argument("--cache", type=int, default=128, help="cached tokens of the timed decode step")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-tvm", action="store_true", help="skip the TVM decode library")
    parser.add_argument("--json", default=None, help="also write the JSON document here")
    parser.add_argument("--md", default=None, help="also write the table here")
    args = parser.parse_args(argv)
    os.environ.setdefault("TVM_NUM_THREADS", str(args.threads))
    import torch

    torch.set_num_threads(args.threads)
    with sampled_load() as load, tempfile.TemporaryDirectory(prefix="lm-export-") as tmp:
        doc = run(args, Path(tmp))
    doc["load_average"] = load
    import onnxruntime as ort

    doc["machine"] = {"python": platform.python_version(), "torch": torch.__version__, "onnxruntime": ort.__version__,
                      "processor": platform.processor() or platform.machine()}
    text, table = json.dumps(doc, indent=2), markdown(doc)
    print(text)
    print(table, file=sys.stderr)
    if args.json:
        Path(args.json).write_text(text + "\n")
    if args.md:
        Path(args.md).write_text(table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
