"""Measured tables of our own for the gpt space: this machine under settings that behave like devices.

No published cross-device table exists here for the gpt space, so this script builds one the way
HELP and HW-NAS-Bench did: the 12 reference architectures plus ``--archs`` seeded random ones,
each measured through the campaign code (build, run on a ``host: local`` board, parse, store) under
every setting of :data:`SETTINGS` (threads, precision, decode context and prompt), one device per
setting, for decode latency (one token, ``context`` cached tokens) and prefill (``prompt`` tokens).
A second round re-measures ``--repeat`` of the architectures under every setting (the board's
repeatability, MAPE between rounds). With ``--passes K`` every setting is measured K times instead,
the passes taken in turn over the settings (a slow spell of the machine falls on different architectures
in each), each table value the lowest of its passes (contention only adds time) and the repeatability
that of passes 1 and 2 over all architectures; ``--base DIR`` takes the settings not measured in this run
from the tables in DIR. Writes, under ``--out``:

* ``gpt_latency.csv.gz`` and ``gpt_prefill.csv.gz``: ``arch`` then one column per device (ms);
* ``gpt_tables.json``: the settings, the board's fingerprint, the load while measuring, the
  repeatability per setting, the seconds it took and the command that rebuilds the tables.

    python benchmarks/gpt_tables.py --archs 188 --repeat 20 --out toolkit/assets/tables
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from load_sampler import sampled_load  # noqa: E402

SOURCE = "modnas"  # device keys are modnas:<setting>
SETTINGS: dict[str, dict[str, Any]] = {
    "cpu-th1-fp32": {"threads": 1, "precision": "fp32", "context": 128, "prompt": 128},
    "cpu-th2-fp32": {"threads": 2, "precision": "fp32", "context": 128, "prompt": 128},
    "cpu-th1-int8": {"threads": 1, "precision": "int8", "context": 128, "prompt": 128},
    "cpu-th2-int8": {"threads": 2, "precision": "int8", "context": 128, "prompt": 128},
    "cpu-th1-fp32-long": {"threads": 1, "precision": "fp32", "context": 224, "prompt": 32},
}
TIMING = {"warmup_s": 0.2, "min_runs": 20, "min_time_s": 0.2, "repeats": 2, "cooldown_s": 0.05, "timeout_s": 120.0}


def device_file(root: Path, setting: str, spec: dict[str, Any]) -> Path:
    import yaml

    doc = {"name": setting, "host": "local", "workdir": str(root / "work" / setting), "runtime": "onnxruntime",
           "threads": spec["threads"], "precision": spec["precision"],
           "measurement": dict(TIMING, context=spec["context"], prompt=spec["prompt"]), "energy": {"sensor": "none"}}
    path = root / f"{setting}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _order(key: str) -> int:
    names = list(SETTINGS)
    setting = key.split(":", 1)[1]
    return names.index(setting) if setting in names else len(names)


def _columns(keys: list[str], archs: list[str], passes: dict[str, dict[str, list[dict[str, float]]]], metric: str,
             base: dict[str, Any] | None) -> dict[str, list[float]]:
    """One table's columns: a measured setting's lowest value over its passes, any other the base's."""
    theirs = None
    cols = {}
    for key in keys:
        setting = key.split(":", 1)[1]
        if setting in passes:
            cols[key] = [min((p[a] for p in passes[setting][metric] if a in p), default=np.nan) for a in archs]
            continue
        if theirs is None:
            theirs = base[metric].set_index("arch")
            if list(theirs.index) != archs:
                sys.exit("--base: its tables measure other architectures than this run's (seed, --archs)")
        cols[key] = list(theirs[key])
    return cols


def _read_base(path: Path) -> dict[str, Any]:
    """An earlier run's tables and metadata (``--base``)."""
    import pandas as pd

    try:
        meta = json.loads((path / "gpt_tables.json").read_text())
        return {"meta": meta, **{m: pd.read_csv(path / f"gpt_{m}.csv.gz") for m in ("latency", "prefill")}}
    except (OSError, ValueError) as exc:
        sys.exit(f"--base {path}: not a directory of gpt tables ({exc})")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--archs", type=int, default=188, help="random architectures beside the 12 references")
    ap.add_argument("--repeat", type=int, default=20, help="architectures measured in a second round")
    ap.add_argument("--settings", default=",".join(SETTINGS), help="comma-separated names of SETTINGS")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "toolkit" / "assets" / "tables"))
    ap.add_argument("--artifacts", default=None, help="keep the exported graphs here and reuse them on a rerun")
    ap.add_argument("--passes", type=int, default=1, help="measure each setting this many times, keep the lowest")
    ap.add_argument("--base", default=None, help="tables (a directory like --out) giving the settings not measured here")
    args = ap.parse_args(argv)
    if args.passes < 1:
        ap.error("--passes must be at least 1")
    base = _read_base(Path(args.base)) if args.base else None
    root = Path(tempfile.mkdtemp(prefix="gpt-tables-"))
    os.environ["MODNAS_HOME"] = str(root / "home")
    if args.artifacts:  # the graphs' cache is MODNAS_HOME/artifacts: shared with earlier runs
        (root / "home").mkdir(parents=True)
        Path(args.artifacts).mkdir(parents=True, exist_ok=True)
        (root / "home" / "artifacts").symlink_to(Path(args.artifacts).resolve(), target_is_directory=True)
    from modnas.toolkit.config import load_device
    from modnas.toolkit.spaces import get_space
    from modnas.toolkit.store import Store
    from modnas.toolkit.workflow.profiling import profile_device

    space = get_space("gpt")
    refs = [space.canonical(a) for a in space.reference_archs()]
    archs = refs + [a for a in space.sample(args.archs + len(refs), args.seed) if a not in refs][:args.archs]
    settings = [s.strip() for s in args.settings.split(",") if s.strip()]
    store = Store(root / "home" / "modnas.db")
    t0 = time.time()
    repeat_rounds: dict[str, dict[str, list[float]]] = {}
    passes: dict[str, dict[str, list[dict[str, float]]]] = {s: {"latency": [], "prefill": []} for s in settings}
    with sampled_load(30.0) as load:
        for k in range(args.passes):
            for setting in settings:
                cfg = load_device(str(device_file(root, setting, SETTINGS[setting])))
                t1 = time.time()
                profile_device(cfg, store, space, archs, force=k > 0)
                first = store.values(setting, space.name, "latency")
                if len(first) < 0.9 * len(archs):
                    failure = (store.failures(setting) or [{}])[0].get("error", "?")
                    sys.exit(f"{setting}: only {len(first)} of {len(archs)} architectures measured; "
                             f"first failure: {failure}")
                if args.passes == 1:
                    again = archs[:args.repeat]
                    profile_device(cfg, store, space, again, force=True)
                    second = store.values(setting, space.name, "latency")
                    repeat_rounds[setting] = {a: [first[a], second[a]] for a in again if a in first and a in second}
                for metric in ("latency", "prefill"):  # with one pass: the second round's, for the re-measured ones
                    passes[setting][metric].append(store.values(setting, space.name, metric))
                print(f"{setting}: {len(first)} architectures in {time.time() - t1:.0f}s (pass {k + 1} of "
                      f"{args.passes})", file=sys.stderr, flush=True)
    if args.passes > 1:
        for setting in settings:
            one, two = passes[setting]["latency"][:2]
            repeat_rounds[setting] = {a: [one[a], two[a]] for a in archs if a in one and a in two}
    seconds = time.time() - t0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    import pandas as pd

    kept = [k for k in (base["meta"]["devices"] if base else []) if k.split(":", 1)[1] not in settings]
    keys = sorted([f"{SOURCE}:{s}" for s in settings] + kept, key=_order)  # the columns, in SETTINGS order
    for metric in ("latency", "prefill"):
        frame = pd.DataFrame({"arch": archs, **_columns(keys, archs, passes, metric, base)})
        frame.to_csv(out / f"gpt_{metric}.csv.gz", index=False, float_format="%.6g")
    repeatability = {}
    for setting, pairs in repeat_rounds.items():
        diffs = [abs(a - b) / np.median([a, b]) for a, b in pairs.values()]
        repeatability[setting] = {"mape": float(np.mean(diffs) * 100), "pairs": len(diffs), "passes": args.passes}
    fingerprint = store.latest_fingerprint(settings[0]) or {}
    for key in kept:
        repeatability[key.split(":", 1)[1]] = dict(base["meta"]["repeatability"][key.split(":", 1)[1]], base=True)
    devices = {k: base["meta"]["devices"][k] if k in kept else SETTINGS[k.split(":", 1)[1]] for k in keys}
    meta = {"what": "decode latency (latency) and prefill (prefill) in ms of gpt architectures on this machine, "
                    "one device per setting", "devices": devices,
            "timing": TIMING, "archs": len(archs), "references": len(refs), "seed": args.seed,
            "fingerprint": {k: fingerprint.get(k) for k in ("cpu_model", "cores", "os", "kernel", "python")},
            "runtime_version": (store.measurement_rows(settings[0], space.name, "latency")[0]["summary"] or {}).get(
                "runtime_version"),
            "load": dict(load), "repeatability": repeatability, "seconds": round(seconds, 1),
            "rebuild": f"python benchmarks/gpt_tables.py --archs {args.archs} --repeat {args.repeat} "
                       f"--settings {','.join(settings)} --seed {args.seed}"
                       + (f" --passes {args.passes}" if args.passes > 1 else "")}
    if base:  # the settings taken from an earlier run, with how that run was taken
        meta["rebuild"] = f"{base['meta']['rebuild']} --out BASE, then {meta['rebuild']} --base BASE"
        meta["base"] = {"settings": [k.split(":", 1)[1] for k in kept],
                        **{k: base["meta"].get(k) for k in ("load", "seconds", "timing")}}
    (out / "gpt_tables.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(json.dumps(meta, indent=1))
    md = ["| device | threads | precision | context / prompt | repeatability (MAPE between rounds) |",
          "|---|---:|---|---|---:|"]
    for key in meta["devices"]:
        s, spec = key.split(":", 1)[1], meta["devices"][key]
        md.append(f"| {SOURCE}:{s} | {spec['threads']} | {spec['precision']} | {spec['context']} / {spec['prompt']} | "
                  f"{repeatability.get(s, {}).get('mape', float('nan')):.2f} % |")
    print("\n".join(md), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
