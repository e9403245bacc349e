"""gpt on a board: do the board's decode and prefill timings agree with in-process ones, and how far apart
are the reference architectures?

For the gpt reference architectures (the first ``--refs`` of them, spread over the list) on a loopback sshd
board: a campaign (``profile_device``) measures decode latency (one token, ``--context`` cached tokens) and
prefill (``--prompt`` tokens); then, interleaved round by round so that drifts of a shared machine hit both
alike, the board's medians against a direct in-process onnxruntime timing of the same two graphs (sessions
opened here from the artifact's members, inputs built here from the cache layout; same protocol). Goals: board
/ direct within 0.95-1.05, decode span over the references (slowest / fastest) at least 4x. Prints JSON on
stdout (with the load average before and after) and a Markdown table on stderr.  Usage:
    python benchmarks/gpt_profile.py [--refs 12] [--threads 1] [--context 128] [--prompt 128] [--out FILE]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROUNDS = 2
sys.path.insert(0, str(ROOT / "tests"))


def direct_runners(art, threads: int, context: int, prompt: int):
    """(decode, prefill) run_once callables on onnxruntime sessions opened here from the artifact's graphs."""
    import numpy as np
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    with tarfile.open(art.path) as tar:
        sess = {g: ort.InferenceSession(tar.extractfile(m).read(), sess_options=opts,
                                        providers=["CPUExecutionProvider"]) for g, m in art.meta["graphs"].items()}
    rng = np.random.default_rng(1)
    vocab = int(art.meta["vocab_size"])
    dec_feeds = {"token": rng.integers(0, vocab, size=(1, 1)).astype(np.int64)}
    for i, (heads, head_dim) in enumerate(art.meta["layers"]):
        for kv in ("k", "v"):
            dec_feeds[f"past_{kv}_{i}"] = rng.standard_normal((1, heads, context, head_dim)).astype(np.float32)
    pre_feeds = {"idx": rng.integers(0, vocab, size=(1, prompt)).astype(np.int64)}
    return (lambda: sess["decode"].run(None, dec_feeds)), (lambda: sess["prefill"].run(None, pre_feeds))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--refs", type=int, default=12, help="how many reference architectures (spread over the list)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--context", type=int, default=128)
    ap.add_argument("--prompt", type=int, default=128)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    from sshd_fixture import loopback_sshd

    from modnas.profilers.board.timing import measure
    from modnas.profilers.campaign import Board, MeasureJob
    from modnas.profilers.stats import summarize
    from modnas.toolkit.config import DeviceConfig, modnas_home
    from modnas.toolkit.spaces import get_space
    from modnas.toolkit.store import Store
    from modnas.toolkit.workflow.artifacts import build_artifact
    from modnas.toolkit.workflow.profiling import profile_device

    load_before = os.getloadavg()
    space = get_space("gpt")
    all_refs = space.reference_archs()
    n = max(2, min(args.refs, len(all_refs)))
    refs = [all_refs[round(i * (len(all_refs) - 1) / (n - 1))] for i in range(n)]
    settings = {"warmup_s": 0.5, "min_runs": 20, "min_time_s": 0.5, "repeats": 3, "cooldown_s": 0.1}
    lm = {"context": args.context, "prompt": args.prompt}
    with tempfile.TemporaryDirectory() as tmp, loopback_sshd(Path(tmp) / "sshd") as board:
        tmp_path = Path(tmp)
        os.environ["MODNAS_HOME"] = str(tmp_path / "home")
        cfg = DeviceConfig(name="loopback", host=board.host, port=board.port, user=board.user,
                           key_file=str(board.key_file), known_hosts=str(board.known_hosts), python=board.python,
                           workdir=str(tmp_path / "work"), threads=args.threads,
                           measurement=dict(settings, timeout_s=600, **lm))
        cache = modnas_home() / "artifacts" / space.name
        t0 = time.perf_counter()
        arts = [build_artifact(space, a, "onnxruntime", cache) for a in refs]
        build_s = time.perf_counter() - t0

        store = Store(tmp_path / "home" / "modnas.db")
        t0 = time.perf_counter()
        result = profile_device(cfg, store, space, refs, quiet=True)
        campaign_s = time.perf_counter() - t0
        rows = {r.arch: r for r in result.measured}

        table = []
        with Board(cfg) as b:
            b.prepare()
            for arch, art in zip(refs, arts):
                decode, prefill = direct_runners(art, args.threads, args.context, args.prompt)
                rounds = {"board_decode": [], "direct_decode": [], "board_prefill": [], "direct_prefill": []}
                for _ in range(ROUNDS):
                    res = b.measure(MeasureJob(artifact=art.path, sha256=art.sha256, runtime="onnxruntime",
                                               threads=args.threads, input_shape=list(art.input_shape),
                                               measurement=dict(settings, **lm), timeout_s=600, meta=art.meta))
                    rounds["board_decode"].append(res.summary["median"])
                    rounds["board_prefill"].append(res.prefill_summary["median"])
                    rounds["direct_decode"].append(summarize(measure(decode, settings))["median"])
                    rounds["direct_prefill"].append(summarize(measure(prefill, settings))["median"])
                med = {k: statistics.median(v) for k, v in rounds.items()}
                row = rows.get(arch)
                table.append({"arch": arch, **{f"{k}_ms": v for k, v in med.items()},
                              "decode_ratio": med["board_decode"] / med["direct_decode"],
                              "prefill_ratio": med["board_prefill"] / med["direct_prefill"],
                              "campaign_decode_ms": row.latency_ms.median if row else None,
                              "campaign_prefill_ms": row.prefill_ms.median if row and row.prefill_ms else None,
                              "peak_rss_mb": row.peak_rss_mb if row else None, "rounds": rounds})
        store.close()
    campaign_decode = [r["campaign_decode_ms"] for r in table if r["campaign_decode_ms"]]
    ratios = [r["decode_ratio"] for r in table] + [r["prefill_ratio"] for r in table]
    doc = {"threads": args.threads, "settings": dict(settings, **lm), "refs": len(refs), "build_s": build_s,
           "campaign_wall_s": campaign_s, "ratio_min": min(ratios), "ratio_max": max(ratios),
           "ratio_median": statistics.median(ratios),
           "decode_span": max(campaign_decode) / min(campaign_decode) if campaign_decode else None,
           "loadavg_before": list(load_before), "loadavg_after": list(os.getloadavg()), "cpus": os.cpu_count(),
           "rows": table, "failed": [f.to_json() for f in result.failed]}
    print(json.dumps(doc, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")
    md = ["| arch | decode board / direct ms | ratio | prefill board / direct ms | ratio | peak RSS MB |",
          "|---|---:|---:|---:|---:|---:|"]
    md += [f"| `{r['arch']}` | {r['board_decode_ms']:.3f} / {r['direct_decode_ms']:.3f} | {r['decode_ratio']:.3f} | "
           f"{r['board_prefill_ms']:.2f} / {r['direct_prefill_ms']:.2f} | {r['prefill_ratio']:.3f} | "
           f"{r['peak_rss_mb']} |" for r in table]
    md += ["", f"decode span over {len(refs)} references: {doc['decode_span']:.2f}x; ratios "
               f"{doc['ratio_min']:.3f}-{doc['ratio_max']:.3f}; load average {load_before[0]:.2f} -> "
               f"{doc['loadavg_after'][0]:.2f} on {os.cpu_count()} CPUs"]
    print("\n".join(md), file=sys.stderr)


if __name__ == "__main__":
    main()
