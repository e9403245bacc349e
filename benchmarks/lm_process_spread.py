"""Do repeated campaigns agree on a language model's decode latency, with its blocks timed in one worker
process (before) or each block in its own fresh worker process (after)?

A gpt decode graph's latency depends on the process that times it (memory layout): blocks in one process
agree with each other while two processes differ by up to ~40 %. For ``--archs`` gpt reference architectures
(spread over the list) on a local board, ``--campaigns`` independent campaigns per mode, run in pairs
(campaign k of each mode side by side, each architecture measured by the two back to back, the order
alternating) so drifts of a shared machine hit both modes alike. Each campaign measures every architecture
once through ``Board.measure`` (a fresh agent process per job, as a campaign runs it): ``before`` with
``processes=1`` (the old single-worker protocol), ``after`` with the agent's default for a language model
(one fresh worker per block, median of the block medians). Reported per mode:
the spread between campaigns of each architecture's median (max/min - 1) and the MAPE between campaigns
(mean over pairs of campaigns of |m_i - m_j| / median of the campaigns, in percent), with the load average.
Prints JSON on stdout and a Markdown table on stderr; writes ``benchmarks/results/lm_process_spread.{json,md}``.
Usage:  python benchmarks/lm_process_spread.py [--archs 4] [--campaigns 4] [--repeats 5] [--threads 1]
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
MODES = {"before": 1, "after": None}  # processes per job: 1 = one worker for every block; None = the agent's choice
sys.path.insert(0, str(ROOT / "benchmarks"))


def pick_archs(count: int) -> list[str]:
    """``count`` gpt reference architectures spread over the list (the smallest and the largest included)."""
    from modnas.toolkit.spaces import get_space

    refs = get_space("gpt").reference_archs()
    count = max(2, min(count, len(refs)))
    return [refs[round(i * (len(refs) - 1) / (count - 1))] for i in range(count)]


def build(archs: list[str], cache: Path) -> list[Any]:
    """The archs' board artifacts (decode and prefill graphs in one tar), built once."""
    from modnas.toolkit.spaces import get_space
    from modnas.toolkit.workflow.artifacts import build_artifact

    space = get_space("gpt")
    return [build_artifact(space, arch, "onnxruntime", cache) for arch in archs]


def measure_one(board: Any, art: Any, settings: dict, threads: int, processes: int | None) -> dict:
    """One job of a campaign: the artifact's decode median, block medians and worker-process count."""
    from modnas.profilers.campaign import MeasureJob

    result = board.measure(MeasureJob(artifact=art.path, sha256=art.sha256, runtime="onnxruntime", threads=threads,
                                      input_shape=list(art.input_shape), measurement=settings, timeout_s=600,
                                      meta=art.meta, processes=processes))
    if not result.ok:
        raise SystemExit(f"{art.meta.get('arch')}: {result.error_code}: {result.error}")
    return {"median_ms": result.summary["median"], "block_medians": result.summary["block_medians"],
            "processes": result.processes, "agent_s": round(result.agent_seconds or 0.0, 2)}


def campaign_pair(index: int, arts: list[Any], settings: dict, threads: int, workdir: Path) -> dict[str, list[dict]]:
    """Campaign ``index`` of each mode, run side by side: each architecture is measured by the two campaigns
    back to back (the order alternating with ``index``), so a drift of the shared machine hits both alike."""
    from modnas.profilers.campaign import Board

    modes = list(MODES) if index % 2 == 0 else list(reversed(MODES))
    boards = {mode: Board(SimpleNamespace(name=f"{mode}-{index}", host="local", python=sys.executable,
                                          workdir=str(workdir))) for mode in modes}
    rows: dict[str, list[dict]] = {mode: [] for mode in MODES}
    try:
        for art in arts:
            for mode in modes:
                rows[mode].append(measure_one(boards[mode], art, settings, threads, MODES[mode]))
    finally:
        for board in boards.values():
            board.close()
    return rows


def spread(medians: list[float]) -> dict:
    """Agreement of one architecture's medians over campaigns: max/min - 1 and the MAPE between pairs (%)."""
    centre = statistics.median(medians)
    pairs = [abs(a - b) / centre for a, b in itertools.combinations(medians, 2)]
    return {"max_over_min_pct": 100.0 * (max(medians) / min(medians) - 1.0),
            "mape_pct": 100.0 * statistics.mean(pairs) if pairs else 0.0}


def within_job(jobs: list[list[dict]]) -> float:
    """Mean over jobs of max/min - 1 of a job's block medians (%): how far its blocks disagree. Before, that is
    the drift within one process; after, drift plus the differences between processes."""
    spreads = [max(job["block_medians"]) / min(job["block_medians"]) - 1.0 for rows in jobs for job in rows]
    return 100.0 * statistics.mean(spreads)


def summarise(archs: list[str], medians: dict[str, list[list[float]]], jobs: dict[str, list[list[dict]]]) -> dict:
    """Per mode: each architecture's campaign medians and spread, the mean / worst over architectures, and how
    far the blocks within a job disagree."""
    out = {}
    for mode, per_campaign in medians.items():
        rows = []
        for index, arch in enumerate(archs):
            values = [campaign_rows[index] for campaign_rows in per_campaign]
            rows.append({"arch": arch, "campaign_medians_ms": values, **spread(values)})
        out[mode] = {"rows": rows,
                     "mean_max_over_min_pct": statistics.mean(r["max_over_min_pct"] for r in rows),
                     "worst_max_over_min_pct": max(r["max_over_min_pct"] for r in rows),
                     "mean_mape_pct": statistics.mean(r["mape_pct"] for r in rows),
                     "within_job_block_spread_pct": within_job(jobs[mode])}
    return out


def markdown(doc: dict) -> str:
    """The before/after table, one row per architecture, and the load."""
    lines = ["| arch | before: campaign medians (ms) | spread | MAPE | after: campaign medians (ms) | spread | MAPE |",
             "|---|---|---:|---:|---|---:|---:|"]
    for before, after in zip(doc["modes"]["before"]["rows"], doc["modes"]["after"]["rows"]):
        cells = []
        for row in (before, after):
            cells += [" ".join(f"{v:.3f}" for v in row["campaign_medians_ms"]),
                      f"{row['max_over_min_pct']:.1f} %", f"{row['mape_pct']:.1f} %"]
        lines.append(f"| `{before['arch']}` | " + " | ".join(cells) + " |")
    b, a = doc["modes"]["before"], doc["modes"]["after"]
    mean = (f"| **mean** | | {b['mean_max_over_min_pct']:.1f} % | {b['mean_mape_pct']:.1f} % | | "
            f"{a['mean_max_over_min_pct']:.1f} % | {a['mean_mape_pct']:.1f} % |")
    within = (f"Within one job, block medians disagree by {b['within_job_block_spread_pct']:.1f} % (before, one "
              f"process: drift) and {a['within_job_block_spread_pct']:.1f} % (after: drift and process to process), "
              f"max/min - 1 averaged over jobs.")
    setup = (f"{doc['campaigns']} campaigns per mode, run in pairs; decode latency, context "
             f"{doc['settings']['context']}, {doc['threads']} thread(s), {doc['settings']['repeats']} blocks per job "
             f"(after: {doc['processes_after']} worker processes per job). Spread = max/min - 1 of an "
             f"architecture's campaign medians; MAPE = mean over pairs of campaigns of |m_i - m_j| / median. Load "
             f"average (1 min) {doc['loadavg_before'][0]:.2f} before, {doc['loadavg_after'][0]:.2f} after, mean "
             f"{doc['load']['mean']} / max {doc['load']['max']} sampled during the run, on {doc['load']['cpus']} "
             f"CPUs; wall {doc['wall_s']:.0f} s.")
    lines += [mean, "", within, "", setup]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--archs", type=int, default=4, help="how many gpt reference architectures")
    ap.add_argument("--campaigns", type=int, default=4, help="independent campaigns per mode")
    ap.add_argument("--repeats", type=int, default=5, help="blocks per job (after: one worker process each)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--context", type=int, default=128)
    ap.add_argument("--prompt", type=int, default=16, help="prefill tokens (timed by every job, not reported)")
    ap.add_argument("--no-write", action="store_true", help="do not write benchmarks/results/")
    args = ap.parse_args()

    from load_sampler import sampled_load

    settings = {"warmup_s": 0.3, "min_runs": 50, "min_time_s": 0.3, "repeats": args.repeats, "cooldown_s": 0.0,
                "context": args.context, "prompt": args.prompt}
    archs = pick_archs(args.archs)
    load_before = list(os.getloadavg())
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="lm-spread-") as tmp, sampled_load() as load:
        arts = build(archs, Path(tmp) / "cache")
        medians: dict[str, list[list[float]]] = {mode: [] for mode in MODES}
        raw: dict[str, list[list[dict]]] = {mode: [] for mode in MODES}
        for index in range(args.campaigns):
            pair = campaign_pair(index, arts, settings, args.threads, Path(tmp) / "work")
            for mode, rows in pair.items():
                raw[mode].append(rows)
                medians[mode].append([row["median_ms"] for row in rows])
                print(f"campaign {index + 1} {mode}: " + " ".join(f"{m:.3f}" for m in medians[mode][-1]),
                      file=sys.stderr)
    doc = {"archs": archs, "campaigns": args.campaigns, "threads": args.threads, "settings": settings,
           "processes_after": raw["after"][0][0]["processes"], "modes": summarise(archs, medians, raw),
           "jobs": raw, "loadavg_before": load_before, "loadavg_after": list(os.getloadavg()), "load": dict(load),
           "wall_s": time.monotonic() - start}
    md = markdown(doc)
    print(json.dumps(doc, indent=2))
    print(md, file=sys.stderr)
    if not args.no_write:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "lm_process_spread.json").write_text(json.dumps(doc, indent=2) + "\n")
        (RESULTS / "lm_process_spread.md").write_text(md + "\n")


if __name__ == "__main__":
    main()
