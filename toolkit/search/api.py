"""The functions the command line calls: ``run_search``, ``search``, ``resolve_devices``."""
from __future__ import annotations

import json
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from modnas.toolkit.errors import BadInput
from modnas.toolkit.results import JsonDoc, omitted
from modnas.toolkit.search.costs import CostModel, LinearCost, linear_costs_from_table
from modnas.toolkit.search.ddp import init_from_env
from modnas.toolkit.threads import torch_threads
from modnas.toolkit.search.run import (SearchConfig, append_metrics, image_source, make_config, save_tensors,
                                       shipped_surrogate_dir)

if TYPE_CHECKING:
    from modnas.toolkit.search.readout import Front, Selection
    from modnas.toolkit.search.run import Run


def resolve_devices(names: list[str], data_dir: str | Path | None = None, store: Any = None,
                    metric: str = "latency", allow_standin: bool = True, table: Any = None,
                    space: str = "nb201") -> tuple[list[Any], str]:
    """Cost models for device names: ``source:device`` keys of the benchmark tables or store names,
    through ``modnas.toolkit.prediction.device_cost`` (shipped predictor + calibration). When no predictor is shipped,
    table devices fall back to the log-linear stand-in fitted to their column (said in the result).
    Returns the models and a word for where they came from."""
    from modnas.toolkit.spaces import get_space

    sp = get_space(space)
    from modnas.toolkit.prediction import predictors, device_cost as prediction

    if predictors.has_default(space, metric):
        out: list[Any] = []
        for name in names:
            if ":" in name and (data_dir is not None or sp.ships_tables):  # gpt ships its own tables
                if table is None and metric in sp.table_metrics:
                    table = sp.load_table(data_dir, metric)
                out.append(prediction.device_from_table(data_dir, name, space, metric, table=table))
            elif store is not None:
                out.append(prediction.device_from_store(store, name, space, metric))
            else:
                raise BadInput(f"device {name!r}: give `data_dir` for table devices or a store for measured ones",
                               param="data_dir")
        return out, "DeviceCost (shipped predictor, calibrated on the reference measurements)"
    if metric not in sp.table_metrics:
        raise BadInput(f"no {space} {metric} predictor: fit one with `modnas predictor fit --space {space} "
                       f"--metric {metric} --data DIR`")
    if not allow_standin or data_dir is None or not all(":" in n for n in names):
        raise BadInput(f"no shipped {metric} predictor: only benchmark-table devices (with `data_dir`) can be searched",
                       param="data_dir")
    return (linear_costs_from_table(data_dir, names, metric, table=table, space=space),
            "stand-in: log-linear cost model fitted per table column (modnas.toolkit.search.costs.LinearCost)")


# a benchmark-table device key: ``source:device[:setting]`` (lower-case source, then letters, digits, '_', '.', '+', '-')
TABLE_KEY_RE = re.compile(r"^[a-z0-9_]{1,32}(:[A-Za-z0-9_.+-]{1,96}){1,2}$")


def resolve_device(name: str, space: str = "nb201", metric: str = "latency", store: Any = None,
                   data_dir: str | Path | None = None, table: Any = None) -> Any:
    """The cost model of one device named as ``search --devices`` takes it: a benchmark-table key
    (``source:device[:setting]``, needs ``data_dir``) or a store device name (checked as every store
    name is). A table key that names no device of the table is bad input."""
    from modnas.toolkit.names import check_name

    if ":" in name:
        if not TABLE_KEY_RE.match(name):
            raise BadInput(f"invalid device name {name!r}: a table device is source:device[:setting]")
        from modnas.toolkit.spaces import get_space

        if data_dir is None and not get_space(space).ships_tables:
            raise BadInput(f"device {name!r} is a benchmark-table device: give the tables with `data_dir` DIR "
                           "(or set MODNAS_DATA)", param="data_dir")
        models, _ = resolve_devices([name], data_dir, metric=metric, allow_standin=False, table=table, space=space)
        return models[0]
    check_name(name, "device name")
    if store is None:
        raise BadInput(f"device {name!r}: no results store to read it from")
    from modnas.toolkit.prediction.device_cost import device_from_store

    return device_from_store(store, name, space, metric)


def _surrogate(cfg: SearchConfig, run_dir: Path) -> Any:
    """The run's accuracy surrogate, copied into it (surrogate mode: its ``surrogate_dir``, checked by
    :func:`check_surrogate_dir` before the run began, so the first source matches)."""
    from modnas.toolkit.search.surrogate import SURROGATE_FILES, build_surrogate, load_surrogate
    from modnas.toolkit.spaces import get_space

    bench = cfg.benchmark
    space = get_space(cfg.space)
    sources = [Path(bench.surrogate_dir)] if bench.surrogate_dir else [shipped_surrogate_dir()]
    if not bench.surrogate_dir and bench.task in space.shipped_runs:  # the surrogate of the run shipped for the task
        sources.append(space.shipped_run(bench.task) / "surrogate")
    target = run_dir / "surrogate"
    for src in sources:
        if not all((src / f).exists() for f in SURROGATE_FILES):
            continue
        info = json.loads((src / SURROGATE_FILES[1]).read_text())
        dim = space.onehot_dim  # a surrogate of another space never fits
        if info.get("column", bench.accuracy_column) == bench.accuracy_column and info.get("in_dim", dim) == dim:
            target.mkdir(parents=True, exist_ok=True)
            if src.resolve() != target.resolve():
                for f in SURROGATE_FILES:
                    shutil.copyfile(src / f, target / f)
            return load_surrogate(target)
    if cfg.data_dir is None:
        raise BadInput("benchmark accuracy needs the accuracy table: give `data_dir` DIR", param="data_dir")
    build_surrogate(cfg.data_dir, target, bench.accuracy_column, seed=cfg.seed, space=cfg.space)
    return load_surrogate(target)


def check_surrogate_dir(cfg: SearchConfig) -> None:
    """Surrogate mode's ``surrogate_dir`` holds a surrogate of the config's space and quality, or one line of bad input."""
    from modnas.toolkit.search.surrogate import SURROGATE_FILES
    from modnas.toolkit.spaces import get_space

    space = get_space(cfg.space)
    where = cfg.benchmark.surrogate_dir
    if not where:
        raise BadInput(f"`accuracy` surrogate needs `surrogate_dir`: a surrogate fitted to the {space.name} space's "
                       "own measurements", param="surrogate_dir")
    path = Path(where)
    if not all((path / f).is_file() for f in SURROGATE_FILES):
        raise BadInput(f"`surrogate_dir` {where}: no surrogate there ({', '.join(SURROGATE_FILES)})", param="surrogate_dir")
    info = json.loads((path / SURROGATE_FILES[1]).read_text())
    if info.get("in_dim") != space.onehot_dim or info.get("column") != cfg.benchmark.accuracy_column:
        raise BadInput(f"`surrogate_dir` {where}: a surrogate of another space or quality ({info.get('column')}), not "
                       f"the {space.name} space's {cfg.benchmark.accuracy_column}", param="surrogate_dir")


@torch_threads(1)
def run_search(devices: list[Any], objectives: list[str] | tuple[str, ...] = ("error", "latency"),
               accuracy: str = "benchmark", data_dir: str | Path | None = None, epochs: int | None = None,
               out: str | Path = "run", seed: int = 0, energy_devices: list[Any] | None = None,
               cost_source: str | None = None, plots: bool = True, **overrides: Any) -> dict[str, Any]:
    """One MODNAS search over ``devices`` (DeviceCost-like latency models; ``energy_devices`` in the
    same order when ``energy`` is an objective). Runs data-parallel under torchrun, on one torch
    thread (the caller's count is back when it returns). ``overrides`` set more of the configuration,
    flat as runs saved before its sections (``h_lr=0.01``) or by section (``hypernet={"lr": 0.01}``)."""
    from modnas.toolkit.search.loop import SearchDevice, Trainer

    t_start = time.perf_counter()
    if not devices:
        raise BadInput("search needs at least one device")
    lat: list[CostModel] = list(devices)
    names = [m.name for m in lat]
    if len(set(names)) != len(names):
        raise BadInput("device names must be distinct")
    if epochs is not None:
        overrides["epochs"] = epochs
    cfg = make_config(dict(objectives=list(objectives), accuracy=accuracy,
                           data_dir=None if data_dir is None else str(data_dir), seed=seed,
                           devices=names, cost_source=cost_source or "DeviceCost", **overrides))
    costs = [{"latency": m} for m in lat]
    if "energy" in cfg.objectives:
        if energy_devices is None or len(energy_devices) != len(devices):
            raise BadInput("energy is an objective: give one energy cost model per device")
        for c, e in zip(costs, energy_devices):
            c["energy"] = e
    if cfg.accuracy == "surrogate":  # checked before anything is written
        check_surrogate_dir(cfg)
    sdevs = [SearchDevice(m.name, np.asarray(m.embedding, dtype=np.float32),
                          {o: c[o] for o in cfg.objectives[1:]}) for m, c in zip(lat, costs)]
    ctx = init_from_env()
    run_dir = Path(out)
    if ctx.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "metrics.jsonl").write_text("")
    ctx.barrier()
    surrogate, images = None, None
    if cfg.accuracy in ("benchmark", "surrogate"):
        surrogate = _surrogate(cfg, run_dir) if ctx.is_main else None
        ctx.barrier()
        if surrogate is None:
            from modnas.toolkit.search.surrogate import load_surrogate

            surrogate = load_surrogate(run_dir / "surrogate")
    else:
        from modnas.toolkit.data.datasets import load_images

        images = load_images(image_source(cfg), max_images=cfg.supernet.max_images, seed=cfg.seed)
    trainer = Trainer(cfg, sdevs, ctx, surrogate=surrogate, images=images)
    history = trainer.train(on_epoch=(lambda row: append_metrics(run_dir / "metrics.jsonl", row))
                            if ctx.is_main else None)
    seconds = time.perf_counter() - t_start
    if ctx.is_main:
        save_tensors(trainer.hypernet, run_dir / "hypernet.safetensors")
        meta: dict[str, Any] = {
            "format": "modnas-run/1",
            "config": cfg.model_dump(),
            "hypernet_args": trainer.hypernet_args,
            "devices": [{"name": d.name, "embedding": [float(v) for v in d.embedding],
                         "ranges": {o: list(r) for o, r in d.ranges.items()},
                         **({"standin_cost": c["latency"].to_json()} if isinstance(c["latency"], LinearCost) else {})}
                        for d, c in zip(sdevs, costs)],
            "world_size": ctx.world,
            "seconds": seconds,
            "final": history[-1],
            "torch": torch.__version__,
            "rebuild": ("modnas.toolkit.search.api.run_search(devices, objectives, accuracy, data_dir, epochs, out, seed, "
                        "**overrides) with the config above; the device cost models named in config.devices"),
        }
        if trainer.supernet is not None:
            save_tensors(trainer.supernet, run_dir / "supernet.safetensors")
            meta["supernet_args"] = trainer.supernet.config()
        (run_dir / "config.json").write_text(json.dumps(meta, indent=2))
        if plots:
            _plots(run_dir, history, lat, costs, cfg)
    result = {"run": str(run_dir), "devices": names, "objectives": list(cfg.objectives), "task": cfg.benchmark.task,
              "epochs": cfg.epochs,
              "seconds": seconds, "hypernet_sha256": params_digest(trainer.hypernet), "rank": ctx.rank,
              "world_size": ctx.world}
    if ctx.is_main:
        (run_dir / "result.json").write_text(json.dumps(result, indent=2))
    ctx.barrier()
    ctx.close()
    return result


def params_digest(module: torch.nn.Module) -> str:
    """SHA-256 of the parameters' bytes: equal digests mean bit-identical weights."""
    import hashlib

    h = hashlib.sha256()
    for name, p in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(p.detach().contiguous().numpy().tobytes())
    return h.hexdigest()


def _plots(run_dir: Path, history: list[dict[str, Any]], lat: list[Any], costs: list[dict[str, Any]],
           cfg: SearchConfig) -> None:
    from modnas.toolkit.search.plots import plot_fronts, plot_losses
    from modnas.toolkit.search.readout import pareto
    from modnas.toolkit.search.run import load_run

    plot_losses(history, run_dir / "loss.png")
    run = load_run(run_dir)
    limit = 2 if cfg.accuracy == "supernet" else 12
    fronts = {}
    for m, c in list(zip(lat, costs))[:limit]:
        fronts[m.name] = pareto(run, m, energy_cost=c.get("energy"))
    plot_fronts(fronts, run_dir / "fronts.png")


@dataclass
class SearchResult(JsonDoc):
    """``modnas search``: the run written, what it searched, and how long it took (``result.json`` of the run)."""

    run: str
    devices: list[str]
    objectives: list[str]
    task: str | None
    epochs: int | None
    seconds: float
    hypernet_sha256: str | None = omitted()
    rank: int | None = omitted()
    world_size: int | None = omitted()


def search(config: SearchConfig | dict[str, Any], out: str | Path = "modnas-run", store: Any = None) -> SearchResult:
    """``modnas search``: resolve the config's devices by name, then :func:`run_search`."""
    from modnas.toolkit.spaces import get_space

    cfg = config if isinstance(config, SearchConfig) else make_config(dict(config))
    if not cfg.devices:
        raise BadInput("the search config names no devices")
    lat, source = resolve_devices(cfg.devices, cfg.data_dir, store, "latency", space=cfg.space)
    energy = None
    if "energy" in cfg.objectives:
        energy, _ = resolve_devices(cfg.devices, cfg.data_dir, store, "energy", space=cfg.space)
    fields = cfg.model_dump(exclude={"objectives", "accuracy", "data_dir", "epochs", "seed", "devices", "cost_source"})
    result = run_search(lat, cfg.objectives, cfg.accuracy, cfg.data_dir, cfg.epochs, out, cfg.seed,
                        energy_devices=energy, cost_source=source, **fields)
    if cfg.accuracy == "surrogate" and cfg.benchmark.surrogate_dir and not result.get("rank"):  # once, main rank
        carry_run_files(Path(cfg.benchmark.surrogate_dir).parent, Path(out), get_space(cfg.space).run_carries)
    return SearchResult(**result)


def carry_run_files(source_run: Path, run: Path, names: tuple[str, ...]) -> list[str]:
    """Copy the files ``names`` that ``source_run`` holds into ``run`` (gpt: the supernet a loss surrogate was
    fitted to and its held-out text, so the new run exports and samples); the names copied."""
    if not names or source_run.resolve() == run.resolve():
        return []
    copied = [n for n in names if (source_run / n).is_file()]
    for name in copied:
        shutil.copyfile(source_run / name, run / name)
    return copied


def open_run(run: str | Path | None, space: str | None = None, task: str | None = None) -> Run:
    """A run by its directory (checked for damage first), or the run shipped for ``space`` or ``task``;
    one that searched another space or task is bad input."""
    from modnas.toolkit.search.run import check_run_dir, load_run

    check_run_dir(None if run is None else str(run))
    return load_run(run, space, task)


def space_of(space: str | None, run: str | Path | None) -> str:
    """The space a command works in: ``space`` when given, else the one ``run`` searched, else nb201."""
    from modnas.toolkit.search.run import check_run_dir, load_run

    check_run_dir(None if run is None else str(run))
    if space:
        return str(space)
    return load_run(run).config.space if run else "nb201"


def check_cost_metric(space: str, metric: str) -> None:
    """``latency`` anywhere; ``prefill`` (a language model's prompt time) only where the space's boards
    time one."""
    from modnas.toolkit.spaces import get_space

    if metric == "latency":
        return
    if metric != "prefill" or get_space(space).board_export() is None:
        raise BadInput(f"`metric` {metric}: the {space} space's read-outs take latency"
                       + (" (prefill is a language model's prompt time, e.g. --space gpt)" if metric == "prefill" else ""),
                       param="metric")


def device_costs(name: str, space: str, objectives: list[str] | tuple[str, ...] = ("error", "latency"), *,
                 store: Any = None, data_dir: str | Path | None = None, metric: str = "latency") -> tuple[Any, Any]:
    """The latency cost model of a device named as :func:`resolve_device` takes it (``metric`` prefill: its
    prefill model in latency's place), and its energy model when ``energy`` is among the ``objectives``
    (else None)."""
    from modnas.toolkit.config import data_dir as tables_dir

    check_cost_metric(space, metric)
    tables = str(tables_dir(data_dir)) if ":" in name and data_dir else None
    latency = resolve_device(name, space, metric, store=store, data_dir=tables)
    energy = resolve_device(name, space, "energy", store=store, data_dir=tables) if "energy" in objectives else None
    return latency, energy


def _search_embedding(run: Run, device: str, store: Any, data_dir: str | Path | None, metric: str) -> Any:
    """The embedding the run's hypernetwork is conditioned on: the device's latency one (None for latency,
    whose cost model carries it), also when the read-out's costs are another metric's (prefill)."""
    if metric == "latency":
        return None
    latency, _ = device_costs(device, run.config.space, store=store, data_dir=data_dir)
    return latency.embedding


def _renamed(predicted: dict[str, float], metric: str) -> dict[str, float]:
    """``latency_ms`` called ``<metric>_ms`` (a read-out on the prefill model)."""
    if metric == "latency":
        return predicted
    return {(f"{metric}_ms" if k == "latency_ms" else k): v for k, v in predicted.items()}


def device_front(run: Run, device: str, *, store: Any = None, data_dir: str | Path | None = None,
                 preferences: int = 24, predictor_only: bool = False, top_k: int | None = None,
                 metric: str = "latency") -> Front:
    """``modnas pareto``: the run's front read out for a device, seen in training or not (a store device,
    or a table device ``source:device[:setting]`` of ``data_dir``), as a :class:`readout.Front`.
    ``metric`` prefill (gpt): the front of loss against predicted prefill (``prefill_ms``), the run's
    hypernetwork read out with the device's prefill model in place of its decode latency."""
    from modnas.toolkit.search.readout import Front, pareto

    if preferences < 1:
        raise BadInput("`preferences` must be at least 1", param="preferences")
    if top_k is not None and top_k < 1:
        raise BadInput("`top_k` must be at least 1", param="top_k")
    latency, energy = device_costs(device, run.config.space, run.objectives, store=store, data_dir=data_dir,
                                   metric=metric)
    rows = pareto(run, latency, preferences, energy_cost=energy, predictor_only=predictor_only, top_k=top_k,
                  embedding=_search_embedding(run, device, store, data_dir, metric))
    return Front.of([{**r, "predicted": _renamed(r["predicted"], metric)} for r in rows])


def device_select(run: Run, device: str, budget_ms: float, *, store: Any = None,
                  data_dir: str | Path | None = None, metric: str = "latency") -> Selection:
    """``modnas select``: the most accurate architecture of the run predicted to meet ``budget_ms`` on the
    device with its calibrated margin, as a :class:`readout.Selection`; ``metric`` prefill (gpt): the
    budget bounds the predicted prefill (``prefill_ms``) instead of the decode latency."""
    from modnas.toolkit.search.readout import Selection, select

    latency, _ = device_costs(device, run.config.space, store=store, data_dir=data_dir, metric=metric)
    doc = select(run, latency, budget_ms, embedding=_search_embedding(run, device, store, data_dir, metric))
    return Selection.of({**doc, "predicted": _renamed(doc["predicted"], metric)})


__all__ = ["TABLE_KEY_RE", "SearchResult", "carry_run_files", "device_costs", "device_front", "device_select", "open_run", "params_digest",
           "resolve_device", "resolve_devices", "run_search", "search", "space_of"]
