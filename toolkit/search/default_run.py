"""Rebuild the run shipped in ``toolkit/assets/runs/default``: a benchmark-mode search on the
table devices minus held-out hardware groups (drawn with the seed, so evaluations can use them).

    python -m toolkit.search.default_run --data ../shared/data --out toolkit/assets/runs/default
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np


def split_devices(keys: list[str], seed: int = 0, share: float = 0.25) -> tuple[list[str], list[str], list[str]]:
    """(training keys, held-out keys, held-out groups): whole hardware groups are held out."""
    from toolkit.benchdata import groups

    grp = groups(keys)
    names = sorted(grp)
    n_hold = min(len(names) - 1, max(3, int(round(share * len(names)))))
    held_groups = sorted(np.random.default_rng(seed).choice(names, size=n_hold, replace=False).tolist())
    held = [k for g in held_groups for k in grp[g]]
    return [k for k in keys if k not in held], held, held_groups


def usable_keys(data_dir: str | Path, table: Any = None) -> list[str]:
    """Table devices with (nearly) every architecture and all reference measurements."""
    from toolkit.benchdata import load_table
    from toolkit.spaces import get_space

    space = get_space("nb201")
    table = load_table(data_dir, "latency") if table is None else table
    refs = [space.index(a) for a in space.reference_archs()]
    out = []
    for key in table.keys:
        row = table.row(key)
        if np.isfinite(row).sum() >= 15000 and np.all(np.isfinite(row[refs])):
            out.append(key)
    return out


def build_default_run(data_dir: str | Path, out: str | Path, epochs: int = 20, seed: int = 0,
                      share: float = 0.25, cost: str = "auto") -> dict[str, Any]:
    from toolkit.benchdata import load_table
    from toolkit.search.api import resolve_devices, run_search
    from toolkit.search.costs import linear_costs_from_table

    table = load_table(data_dir, "latency")
    train, held, held_groups = split_devices(usable_keys(data_dir, table), seed, share)
    if cost == "standin":
        models = linear_costs_from_table(data_dir, train, table=table)
        source = "stand-in: log-linear cost model fitted per table column (toolkit.search.costs.LinearCost)"
    else:
        models, source = resolve_devices(train, data_dir, allow_standin=(cost == "auto"), table=table)
    note = (f"default run: benchmark mode on {len(train)} table devices; held-out hardware groups "
            f"{held_groups} (seed {seed}, share {share}) are kept for evaluation. Rebuild: python -m "
            f"toolkit.search.default_run --data DATA --out OUT --epochs {epochs} --seed {seed} --cost {cost}")
    res = run_search(models, accuracy="benchmark", data_dir=None, epochs=epochs, out=out, seed=seed,
                     cost_source=source, note=note)
    meta_path = Path(out) / "config.json"
    meta = json.loads(meta_path.read_text())
    meta["held_out"] = {"groups": held_groups, "devices": held, "seed": seed, "share": share}
    meta_path.write_text(json.dumps(meta, indent=2))
    return res


def main() -> None:
    import torch

    torch.set_num_threads(1)
    p = argparse.ArgumentParser(description="rebuild the shipped default search run")
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--share", type=float, default=0.25)
    p.add_argument("--cost", choices=["auto", "standin", "predictor"], default="auto")
    a = p.parse_args()
    print(json.dumps(build_default_run(a.data, a.out, a.epochs, a.seed, a.share, a.cost)))


if __name__ == "__main__":
    main()
