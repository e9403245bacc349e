"""The language-model training anchor: nanoGPT's CPU baseline on Tiny Shakespeare.

``e=128;l=4;h=4-4-4-4;m=4-4-4-4`` (4 layers, 4 heads, 128 wide), context 64, batch 12, 2000 steps,
through ``modnas.toolkit.spaces.gpt.train.train_lm``; nanoGPT's README gives 1.88 nats per character
held out for this model and token budget (about 3 minutes on a laptop CPU).

    python benchmarks/gpt_train.py --data ../shared/data [--threads 1] [--steps 2000] [--out DIR]
                                   [--json PATH] [--md PATH]

Prints one JSON document on stdout and a Markdown table on stderr; the machine's load average is
sampled every 5 seconds while it trains (other work on the machine slows the steps).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.load_sampler import sampled_load  # noqa: E402

ANCHOR = "e=128;l=4;h=4-4-4-4;m=4-4-4-4"
PUBLISHED_HELDOUT = 1.88  # nanoGPT README, shakespeare_char on CPU with these settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("MODNAS_DATA", "../shared/data"))
    parser.add_argument("--arch", default=ANCHOR)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--context", type=int, default=64)
    parser.add_argument("--batch", type=int, default=12)
    parser.add_argument("--out", default=None, help="checkpoint directory (default: a temporary one)")
    parser.add_argument("--json", default=None, help="write the JSON document here too")
    parser.add_argument("--md", default=None, help="write the table here too")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from modnas.toolkit.spaces.gpt.train import train_lm

    with sampled_load() as load, tempfile.TemporaryDirectory(prefix="gpt-train-") as tmp:
        out = Path(args.out) if args.out else Path(tmp) / "ckpt"
        result = train_lm(args.arch, "shakespeare", context=args.context, batch=args.batch, steps=args.steps,
                          out=out, data_dir=args.data, threads=args.threads, save_every=500)
    steps_run = result["steps"]
    doc = {"arch": result["arch"], "text": "shakespeare", "context": args.context, "batch": args.batch,
           "steps": steps_run, "seconds": result["seconds"],
           "steps_per_s": round(steps_run / result["seconds"], 2) if result["seconds"] else None,
           "threads": args.threads, "loss": result["loss"], "published_heldout": PUBLISHED_HELDOUT,
           "vocab_size": result["vocab_size"], "tokens": result["tokens"],
           "load_average": load,
           "machine": {"python": platform.python_version(), "torch": torch.__version__,
                       "processor": platform.processor() or platform.machine()}}
    text = json.dumps(doc, indent=2)
    print(text)
    lines = ["| arch | steps | held-out nats/char | train | published | seconds | steps/s | threads | load avg |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
             f"| {doc['arch']} | {steps_run} | {doc['loss']['heldout']:.4f} | {doc['loss']['train']:.4f} | "
             f"{PUBLISHED_HELDOUT} | {doc['seconds']:.1f} | {doc['steps_per_s']} | {args.threads} | "
             f"{doc['load_average']['mean']} (max {doc['load_average']['max']}, {os.cpu_count()} CPUs) |"]
    table = "\n".join(lines)
    print(table, file=sys.stderr)
    if args.json:
        Path(args.json).write_text(text + "\n")
    if args.md:
        Path(args.md).write_text(table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
