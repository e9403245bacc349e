"""Does timing over SSH on the board agree with timing in-process, and what does the campaign cost?

For the 10 reference architectures on a loopback sshd board: the board-measured median against an
in-process onnxruntime median of the same file and thread count (ratio), the campaign's wall time
against the time the agent spent measuring (overhead), and the connection set-up time.
Prints JSON on stdout and a Markdown table on stderr.  Usage:
    python benchmarks/profile_fidelity.py [--threads 1] [--out results.json]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROUNDS = 3
sys.path.insert(0, str(ROOT / "tests"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    from sshd_fixture import loopback_sshd

    from modnas.profilers.board.runtimes import get_runtime
    from modnas.profilers.board.timing import measure
    from modnas.profilers.campaign import Board, MeasureJob
    from modnas.profilers.stats import summarize
    from modnas.toolkit.workflow.artifacts import build_artifact
    from modnas.toolkit.config import DeviceConfig, modnas_home
    from modnas.toolkit.workflow.profiling import profile_device
    from modnas.toolkit.spaces import get_space
    from modnas.toolkit.store import Store

    space = get_space("nb201")
    refs = space.reference_archs()
    settings = {"warmup_s": 1.0, "min_runs": 50, "min_time_s": 1.0, "repeats": 3, "cooldown_s": 0.1}
    with tempfile.TemporaryDirectory() as tmp, loopback_sshd(Path(tmp) / "sshd") as board:
        tmp_path = Path(tmp)
        cfg = DeviceConfig(name="loopback", host=board.host, port=board.port, user=board.user,
                           key_file=str(board.key_file), known_hosts=str(board.known_hosts), python=board.python,
                           workdir=str(tmp_path / "work"), threads=args.threads,
                           measurement=dict(settings, timeout_s=300))
        os.environ["MODNAS_HOME"] = str(tmp_path / "home")
        cache = modnas_home() / "artifacts" / space.name  # where the campaign looks for them
        arts = [build_artifact(space, a, "onnxruntime", cache) for a in refs]  # build cost kept out of the campaign

        t0 = time.perf_counter()
        with Board(cfg) as b:
            b.prepare()
        setup_s = time.perf_counter() - t0

        store = Store(tmp_path / "home" / "modnas.db")
        t0 = time.perf_counter()
        result = profile_device(cfg, store, space, refs, quiet=True)
        campaign_s = time.perf_counter() - t0
        rows = {r["arch"]: r for r in store.measurement_rows("loopback", "nb201")}
        agent_s = sum(r["summary"]["agent_seconds"] for r in rows.values())

        # fidelity: board and in-process timings of the same file, interleaved so that drifts of a
        # shared machine hit both alike; ROUNDS pairs per architecture, medians of the block medians
        ort = get_runtime("onnxruntime")
        table = []
        with Board(cfg) as b:
            b.prepare()
            for arch, art in zip(refs, arts):
                run_once = ort.load(str(art.path), args.threads, list(art.input_shape), {})
                board_meds, local_meds = [], []
                for _ in range(ROUNDS):
                    res = b.measure(MeasureJob(artifact=art.path, sha256=art.sha256, runtime="onnxruntime",
                                               threads=args.threads, input_shape=list(art.input_shape),
                                               measurement=settings, timeout_s=300, meta=art.meta))
                    board_meds.append(res.summary["median"])
                    local_meds.append(summarize(measure(run_once, settings))["median"])
                board_ms, local_ms = statistics.median(board_meds), statistics.median(local_meds)
                table.append({"arch": arch, "index": space.index(arch), "board_median_ms": board_ms,
                              "inprocess_median_ms": local_ms, "ratio": board_ms / local_ms,
                              "board_rounds": board_meds, "inprocess_rounds": local_meds})
    ratios = [r["ratio"] for r in table]
    doc = {"threads": args.threads, "settings": settings, "connection_setup_s": setup_s,
           "campaign_wall_s": campaign_s, "agent_measure_s": agent_s,
           "overhead_pct": 100 * (campaign_s - agent_s) / agent_s,
           "ratio_min": min(ratios), "ratio_max": max(ratios), "ratio_median": statistics.median(ratios),
           "rows": table, "failed": [f.to_json() for f in result.failed]}
    print(json.dumps(doc, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")
    md = ["| NB201 index | board median ms | in-process median ms | ratio |", "|---:|---:|---:|---:|"]
    md += [f"| {r['index']} | {r['board_median_ms']:.3f} | {r['inprocess_median_ms']:.3f} | {r['ratio']:.3f} |"
           for r in table]
    md += ["", f"connection set-up {setup_s:.2f} s; campaign {campaign_s:.1f} s of which the agent measured "
               f"{agent_s:.1f} s: overhead {doc['overhead_pct']:.1f} %"]
    print("\n".join(md), file=sys.stderr)


if __name__ == "__main__":
    main()
