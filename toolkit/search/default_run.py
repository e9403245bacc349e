"""Rebuild the runs shipped in ``toolkit/assets/runs``.

``default`` (nb201): a benchmark-mode search on the table devices minus held-out hardware groups
(drawn with the seed, so evaluations can use them).
``ofa_mbv3``: a supernet-mode search on the digits for HELP's OFA GPU settings (batch 1 and 64) minus
one held-out GPU; its supernet (37 MB) is not shipped: an accuracy surrogate distilled from it is.

    python -m modnas.toolkit.search.default_run --data ../shared/data --out toolkit/assets/runs/default
    python -m modnas.toolkit.search.default_run --task cifar100 --data ../shared/data --out toolkit/assets/runs/nb201_cifar100
    python -m modnas.toolkit.search.default_run --space ofa_mbv3 --data ../shared/data --out toolkit/assets/runs/ofa_mbv3
    python -m modnas.toolkit.search.default_run --space gpt --supernet CKPT --out toolkit/assets/runs/gpt

``gpt``: a surrogate-mode search on the settings of the gpt tables (two held out) with a loss surrogate
fitted to a sandwich-trained supernet's held-out losses (:mod:`modnas.toolkit.search.lm_run`).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np


def split_devices(keys: list[str], seed: int = 0, share: float = 0.25) -> tuple[list[str], list[str], list[str]]:
    """(training keys, held-out keys, held-out groups): whole hardware groups are held out."""
    from modnas.toolkit.data.groups import groups

    grp = groups(keys)
    names = sorted(grp)
    n_hold = min(len(names) - 1, max(3, int(round(share * len(names)))))
    held_groups = sorted(np.random.default_rng(seed).choice(names, size=n_hold, replace=False).tolist())
    held = [k for g in held_groups for k in grp[g]]
    return [k for k in keys if k not in held], held, held_groups


def usable_keys(data_dir: str | Path, table: Any = None, space: str = "nb201") -> list[str]:
    """Table devices with (nearly) every architecture and all reference measurements."""
    from modnas.toolkit.spaces import get_space

    sp = get_space(space)
    return sp.usable_table_keys(sp.load_table(data_dir, "latency") if table is None else table)


def objective_keys(data_dir: str | Path, objectives: list[str] | tuple[str, ...], space: str = "nb201",
                   table: Any = None) -> tuple[list[str], list[str]]:
    """Table devices usable for every cost objective (latency, and energy when asked): the devices
    kept, and the latency devices left out because a table of another objective lacks them."""
    from modnas.toolkit.errors import BadInput
    from modnas.toolkit.spaces import get_space

    sp = get_space(space)
    keys = usable_keys(data_dir, table, space)
    kept = list(keys)
    for obj in objectives[1:]:
        if obj == "latency":
            continue
        have = set(usable_keys(data_dir, sp.load_table(data_dir, obj), space))
        kept = [k for k in kept if k in have]
    if not kept:
        raise BadInput(f"no table device has every objective ({', '.join(objectives[1:])}) under {data_dir}")
    return kept, [k for k in keys if k not in kept]


def build_default_run(data_dir: str | Path, out: str | Path, epochs: int = 20, seed: int = 0,
                      share: float = 0.25, cost: str = "auto", task: str = "cifar10") -> dict[str, Any]:
    """A shipped nb201 run for a benchmark ``task``: benchmark mode on the table devices minus the
    held-out hardware groups (the same split for every task)."""
    from modnas.toolkit.spaces.nb201.tables import load_table
    from modnas.toolkit.search.api import resolve_devices, run_search
    from modnas.toolkit.search.costs import linear_costs_from_table
    from modnas.toolkit.spaces.nb201.tasks import task_column

    task_column(task)
    table = load_table(data_dir, "latency")
    train, held, held_groups = split_devices(usable_keys(data_dir, table), seed, share)
    if cost == "standin":
        models = linear_costs_from_table(data_dir, train, table=table)
        source = "stand-in: log-linear cost model fitted per table column (modnas.toolkit.search.costs.LinearCost)"
    else:
        models, source = resolve_devices(train, data_dir, allow_standin=(cost == "auto"), table=table)
    note = (f"{'default' if task == 'cifar10' else 'shipped ' + task} run: benchmark mode ({task} accuracy) on "
            f"{len(train)} table devices; held-out hardware groups {held_groups} (seed {seed}, share {share}) are "
            f"kept for evaluation. Rebuild: python -m modnas.toolkit.search.default_run --task {task} --data DATA --out OUT "
            f"--epochs {epochs} --seed {seed} --cost {cost}")
    # cifar10 reads the shipped surrogate; another task fits its own on the table (copied into the run)
    res = run_search(models, accuracy="benchmark", data_dir=None if task == "cifar10" else data_dir, epochs=epochs,
                     out=out, seed=seed, cost_source=source, note=note, task=task)
    meta_path = Path(out) / "config.json"
    meta = json.loads(meta_path.read_text())
    meta["config"]["data_dir"] = None  # the tables are not shipped; the run carries its surrogate
    meta["held_out"] = {"groups": held_groups, "devices": held, "seed": seed, "share": share}
    meta_path.write_text(json.dumps(meta, indent=2))
    return res


OFA_HELD_OUT = "titan_xp"


OFA_BATCHES = (1, 64)  # the settings searched for: batch 1 and 64 of each GPU kept (32 sits between them)


def build_ofa_run(data_dir: str | Path, out: str | Path, epochs: int = 10, seed: int = 0,
                  held_out: str = OFA_HELD_OUT, distil: int = 250, keep_supernet: bool = False,
                  warmup: int = 3, h_lr: float = 3e-3, prefs: int = 4, random_subnets: int = 1) -> dict[str, Any]:
    """The shipped ofa_mbv3 run: HELP's OFA settings at batch 1 and 64 except the ``held_out`` GPU's,
    supernet mode on the digits (``warmup`` epochs on random subnets, then ``prefs`` preferences per
    device per step and ``random_subnets`` extra random subnets per weight step), then the accuracy
    surrogate distilled from the supernet."""
    from modnas.toolkit.spaces.ofa_mbv3.tables import batch_size
    from modnas.toolkit.spaces.ofa_mbv3.tables import gpu_group, load_latency
    from modnas.toolkit.search.api import resolve_devices, run_search
    from modnas.toolkit.search.run import load_run
    from modnas.toolkit.search.surrogate import distil_surrogate

    table = load_latency(data_dir)
    train = [k for k in table.keys if gpu_group(k) != held_out and batch_size(k) in OFA_BATCHES]
    held = [k for k in table.keys if gpu_group(k) == held_out]
    models, source = resolve_devices(train, data_dir, table=table, space="ofa_mbv3")
    note = (f"shipped ofa_mbv3 run: supernet mode on the digits for {len(train)} HELP OFA settings; the "
            f"{held_out} GPU ({len(held)} settings) is held out. Rebuild: python -m modnas.toolkit.search.default_run "
            f"--space ofa_mbv3 --data DATA --out OUT --epochs {epochs} --seed {seed} (warm-up {warmup} epochs, "
            f"h_lr {h_lr}, {prefs} preferences per step, {random_subnets} random subnet(s) per weight step)")
    res = run_search(models, accuracy="supernet", data_dir="digits", epochs=epochs, out=out, seed=seed,
                     space="ofa_mbv3", cost_source=source, note=note, warmup_epochs=warmup, h_lr=h_lr,
                     supernet_prefs=prefs, random_subnets=random_subnets)
    t0 = time.perf_counter()
    stats = distil_surrogate(load_run(out), distil, seed=seed)
    stats["seconds"] = round(time.perf_counter() - t0, 1)
    meta_path = Path(out) / "config.json"
    meta = json.loads(meta_path.read_text())
    meta["held_out"] = {"groups": [held_out], "devices": held, "seed": seed}
    meta["distilled_surrogate"] = stats
    meta_path.write_text(json.dumps(meta, indent=2))
    if not keep_supernet:
        (Path(out) / "supernet.safetensors").unlink()
    return {**res, "distilled": stats}


def main() -> None:
    import torch

    torch.set_num_threads(1)
    p = argparse.ArgumentParser(description="rebuild the shipped default search run")
    from modnas.toolkit.spaces import get_space, space_names

    p.add_argument("--space", choices=space_names(), default="nb201")
    p.add_argument("--keep-supernet", action="store_true", help="ofa_mbv3: keep supernet.safetensors in OUT")
    p.add_argument("--data", default=None, help="the shared data (nb201, ofa_mbv3; gpt: the text, else $MODNAS_DATA)")
    p.add_argument("--supernet", default=None, help="gpt: the trained supernet checkpoint")
    p.add_argument("--evaluations", type=int, default=400, help="gpt: inherited losses the surrogate is fitted to")
    p.add_argument("--out", required=True)
    p.add_argument("--epochs", type=int, default=None, help="default: 20 (nb201), 10 (ofa_mbv3)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--share", type=float, default=0.25)
    p.add_argument("--cost", choices=["auto", "standin", "predictor"], default="auto")
    p.add_argument("--task", choices=["cifar10", "cifar100", "imagenet16-120"], default="cifar10",
                   help="nb201: the benchmark task whose accuracy is searched")
    a = p.parse_args()
    if get_space(a.space).default_accuracy == "surrogate":  # a language model: a supernet's losses, then the search
        from modnas.toolkit.search.lm_run import build_gpt_run

        if not a.supernet:
            p.error(f"--space {a.space} needs --supernet CKPT")
        print(json.dumps(build_gpt_run(a.supernet, a.out, a.evaluations, a.epochs or 20, a.seed, data_dir=a.data)))
        return
    if not a.data:
        p.error("--data is needed for nb201 and ofa_mbv3")
    if not get_space(a.space).benchmark_accuracy:  # searched on images: the supernet-mode recipe
        print(json.dumps(build_ofa_run(a.data, a.out, a.epochs or 10, a.seed, keep_supernet=a.keep_supernet)))
    else:
        print(json.dumps(build_default_run(a.data, a.out, a.epochs or 20, a.seed, a.share, a.cost, a.task)))


if __name__ == "__main__":
    main()
