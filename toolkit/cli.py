"""The ``modnas`` command: argument parsing and wiring only; the work lives in the modules it calls."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable

from modnas.toolkit.errors import BadInput, BoardError, ModnasError, NotAvailable, exit_status

Handler = Callable[[argparse.Namespace], tuple[Any, str]]


# -- shared helpers ------------------------------------------------------------------------------
def check_run_dir(run: str | None) -> None:
    """One-line refusal of a damaged ``--run`` directory (see ``modnas.toolkit.search.run.check_run_dir``)."""
    from modnas.toolkit.search.run import check_run_dir as check

    check(run)


def open_store(args: argparse.Namespace) -> Any:
    from modnas.toolkit.config import default_db
    from modnas.toolkit.store import Store

    return Store(Path(os.path.expanduser(args.db)) if args.db else default_db())


def load_device_ref(ref: str, store: Any) -> Any:
    from modnas.toolkit.config import NAME_RE, load_device

    stored = store.get_device(ref) if NAME_RE.match(ref) else None
    if stored is not None and set(stored) == {"name"}:
        stored = None  # known only from imported measurements: no board to reach
    return load_device(ref, stored)


def device_name(ref: str) -> str:
    """A device given by name for commands that only need the store."""
    from modnas.toolkit.names import check_name

    return check_name(ref, "device name")


def table(rows: list[list[Any]], header: list[str]) -> str:
    """A plain-text table (rich's, no colour, never wrapped) for a command's report on stdout."""
    import io

    from rich.box import Box
    from rich.console import Console
    from rich.table import Table

    rule_under_header = Box("    \n    \n -- \n    \n    \n    \n    \n    \n", ascii=True)  # ASCII for logs and pipes
    grid = Table(*header, box=rule_under_header, show_edge=False, pad_edge=False, header_style="", highlight=False)
    for row in rows:
        grid.add_row(*(str(c) for c in row))
    buf = io.StringIO()
    Console(file=buf, width=100_000, color_system=None, force_terminal=False, highlight=False).print(grid)
    return "\n".join(line.rstrip() for line in buf.getvalue().splitlines() if line.strip())


def _fmt(x: Any, nd: int = 3) -> str:
    return "-" if x is None else f"{x:.{nd}f}"


# -- commands ------------------------------------------------------------------------------------
def cmd_doctor(args: argparse.Namespace) -> tuple[Any, str]:
    from modnas.toolkit.workflow.profiling import fingerprint_device

    with open_store(args) as store:
        cfg = load_device_ref(args.device, store)
        fingerprint, probe = fingerprint_device(cfg, store)
    energy = probe.get("energy") or {"sensor": cfg.energy.sensor, "readable": False, "detail": "not probed"}
    doc = {"device": cfg.name, "reachable": True, "fingerprint": fingerprint,
           "runtimes": probe.get("runtimes", {}), "energy": energy}
    if "sensors" in probe:
        doc["sensors"] = probe["sensors"]
    lines = [f"device {cfg.name} ({cfg.address}): reachable"]
    for key in ("cpu_model", "cores", "governor", "os", "kernel", "python"):
        if key in fingerprint:
            lines.append(f"  {key}: {fingerprint[key]}")
    for name, rt in doc["runtimes"].items():
        lines.append(f"  runtime {name}: {'ok ' if rt.get('available') else 'missing '}{rt.get('detail', '')}")
    lines.append(f"  energy {energy.get('sensor')}: {'readable' if energy.get('readable') else 'not readable'}"
                 f" {energy.get('detail', '')}")
    return doc, "\n".join(lines)


def cmd_profile(args: argparse.Namespace) -> tuple[Any, str]:
    from modnas.toolkit.workflow.profiling import profile_many, resolve_archs
    from modnas.toolkit.spaces import get_space

    space = get_space(args.space)
    archs = resolve_archs(space, args.archs, args.seed)
    with open_store(args) as store:
        cfgs = [load_device_ref(ref, store) for ref in args.devices]
        names = [c.name for c in cfgs]
        if len(set(names)) != len(names):
            raise BadInput("the same device is named twice")
        results, errors = profile_many(cfgs, store, space, archs, runtime=args.runtime, force=args.force,
                                       quiet=args.quiet)
    if errors:
        name, err = errors[0]
        raise BoardError(str(err) if name in str(err) else f"board {name}: {err}")
    doc: Any = results[0] if len(results) == 1 else sorted(results, key=lambda r: names.index(r["device"]))
    lines = []
    for res in results:
        rows = [[r["arch"], _fmt(r["latency_ms"]["median"]), _fmt(r["latency_ms"]["p90"]),
                 _fmt(r["energy_mj"]["gross"]) if r["energy_mj"] else "-"] for r in res["measured"]]
        lines.append(f"device {res['device']}: {len(res['measured'])} measured, {len(res['skipped'])} skipped, "
                     f"{len(res['failed'])} failed")
        if rows:
            lines.append(table(rows, ["arch", "median ms", "p90 ms", "energy mJ"]))
        lines += [f"  failed {f['arch']}: {f['error']}" for f in res["failed"]]
    return doc, "\n".join(lines)


def cmd_devices(args: argparse.Namespace) -> tuple[Any, str]:
    with open_store(args) as store:
        doc = store.devices()
    rows = [[d["name"], d["space"], d["measurements"]["latency"], d["measurements"]["energy"],
             "yes" if d["embedding"] else "no"] for d in doc]
    return doc, table(rows, ["device", "space", "latency", "energy", "embedding"]) if rows else "no devices yet"


def cmd_import(args: argparse.Namespace) -> tuple[Any, str]:
    from modnas.toolkit.data.importer import read_measurement_csv
    from modnas.toolkit.prediction.device_state import refresh_embedding
    from modnas.toolkit.spaces import get_space

    space = get_space(args.space)
    name = device_name(args.device)
    good, rejected = read_measurement_csv(Path(args.file), space)
    if not good:
        first = rejected[0] if rejected else {"line": "-", "error": "no data rows"}
        raise BadInput(f"{args.file}: nothing to import (line {first['line']}: {first['error']})")
    with open_store(args) as store:
        n = store.import_values(name, space.name, args.metric, good)
        refresh_embedding(store, name, space, args.metric)
    doc = {"device": name, "imported": n, "rejected": rejected}
    text = f"imported {n} {args.metric} values for {name}" + "".join(
        f"\n  rejected line {r['line']}: {r['error']}" for r in rejected)
    return doc, text


def cmd_space_refs(args: argparse.Namespace) -> tuple[Any, str]:
    from modnas.toolkit.spaces import get_space

    refs = get_space(args.space).reference_archs()
    return refs, "\n".join(refs)


def _space_of(args: argparse.Namespace) -> str:
    """``--space`` when given, else the space the ``--run`` searched, else nb201."""
    check_run_dir(args.run)
    if args.space:
        return str(args.space)
    if args.run:
        from modnas.toolkit.search.run import load_run

        return load_run(args.run).config.space
    return "nb201"


def _load_run(args: argparse.Namespace) -> Any:
    """``--run`` (or the run shipped for ``--space`` or ``--task``), checked to have searched them."""
    from modnas.toolkit.search.run import load_run

    check_run_dir(args.run)
    return load_run(args.run, args.space, getattr(args, "task", None))


def cmd_export(args: argparse.Namespace) -> tuple[Any, str]:
    from modnas.toolkit.workflow.exporting import export_arch

    formats = [f.strip() for f in args.format.split(",") if f.strip()]
    if args.task and not args.run:  # the run shipped for the task (checked to be that task's)
        args.run = str(_load_run(args).path)
    space = _space_of(args)
    with open_store(args) as store:
        cfg = load_device_ref(args.device, store) if args.device else None
        doc = export_arch(args.arch, space_name=space, formats=formats, out=Path(args.out), device=cfg,
                          run=args.run, tensorrt_precision=args.precision, target_preset=args.target_preset,
                          weights=args.weights, quantize=args.quantize, images=args.images,
                          tune=_tune_budget(args))
    lines = [f"{k}: {v}" for k, v in doc.items() if k not in ("max_abs_diff", "accuracy", "tvm_tuning")]
    if "tvm_tuning" in doc:
        t = doc["tvm_tuning"]
        lines.append(f"tvm tuning: {t['tasks']} kernels, {t['reused']} from the database, {t['tuned_now']} tuned now "
                     f"({t['trials_now']} trials, {t['seconds']:.0f} s)" + (f"; {t['pending']} left (time limit)"
                                                                           if t["pending"] else ""))
    lines += [f"max |diff| vs PyTorch ({k}): {v:.3g}" for k, v in doc.get("max_abs_diff", {}).items()
              if v is not None]
    lines += [f"held-out accuracy ({k}): {v:.4f}" for k, v in doc.get("accuracy", {}).items()]
    return doc, "\n".join(lines)


def _tune_budget(args: argparse.Namespace) -> Any:
    """``--tune [--tune-trials N] [--tune-minutes M]`` as a TuneBudget; None without --tune."""
    if not args.tune:
        if args.tune_trials is not None or args.tune_minutes is not None:
            raise BadInput("--tune-trials and --tune-minutes go with --tune")
        return None
    from pydantic import ValidationError

    from modnas.exporters.tvm_tune import TuneBudget

    given = {"trials": args.tune_trials, "minutes": args.tune_minutes}
    try:
        return TuneBudget(**{k: v for k, v in given.items() if v is not None})
    except ValidationError as exc:
        err = exc.errors()[0]
        raise BadInput(f"--tune-{err['loc'][0]}: {err['msg']}") from None


def cmd_train(args: argparse.Namespace) -> tuple[Any, str]:
    from modnas.toolkit.workflow.training import train_arch

    space = _space_of(args)
    doc = train_arch(args.arch, space_name=space, images=args.images, out=Path(args.out), epochs=args.epochs,
                     batch_size=args.batch_size, run=args.run, seed=args.seed, max_images=args.max_images,
                     quiet=args.quiet)
    acc = doc["accuracy"]
    return doc, (f"checkpoint: {doc['checkpoint']}\nepochs: {doc['epochs']}\n"
                 f"accuracy: train {acc['train']:.4f}, held-out {acc['heldout']:.4f}")


def _data_dir(value: str | None) -> Path:
    if not value:
        raise BadInput("give the measured tables with --data DIR (or set MODNAS_DATA)")
    path = Path(os.path.expanduser(value))
    if not path.is_dir():
        raise BadInput(f"--data {value!r}: not a directory")
    return path


def cmd_predict(args: argparse.Namespace) -> tuple[Any, str]:
    from modnas.toolkit.prediction import predictors
    from modnas.toolkit.prediction.device_cost import device_from_store
    from modnas.toolkit.workflow.profiling import resolve_archs
    from modnas.toolkit.spaces import get_space

    space = get_space(args.space)
    archs = resolve_archs(space, args.archs)
    pred = predictors.load(args.predictor) if args.predictor else None
    with open_store(args) as store:
        cost = device_from_store(store, device_name(args.device), space.name, args.metric, predictor=pred)
    values = cost.predict(archs)
    unit = "ms" if args.metric == "latency" else "mJ"
    doc = [{"arch": a, "value": float(v)} for a, v in zip(archs, values)]
    text = "\n".join(f"{v:10.4f} {unit}  {a}" for a, v in zip(archs[:50], values[:50]))
    if len(archs) > 50:
        text += f"\n... {len(archs) - 50} more (use --json)"
    return doc, text


def _store_extra(store: Any, space: str, metric: str) -> dict[str, dict[str, float]]:
    """Store devices with enough measurements join the predictor's training data."""
    out = {}
    for row in store.devices():
        if row.get("replayed"):  # a replay board's values are copies of tables, never real measurements
            continue
        if row["space"] == space and row["measurements"].get(metric, 0) >= 50:
            out[row["name"]] = store.values(row["name"], space, metric)
    return out


def cmd_predictor_fit(args: argparse.Namespace) -> tuple[Any, str]:
    from modnas.toolkit.prediction.predictors import fit_predictor

    data = _data_dir(args.data)
    out = args.out or str(Path(os.path.expanduser("~/.modnas")) / "predictors" / f"{args.space}-{args.metric}.safetensors")
    with open_store(args) as store:
        extra = _store_extra(store, args.space, args.metric)
    res = fit_predictor(data, out, metric=args.metric, space=args.space, seed=args.seed, extra=extra or None)
    doc = {"path": res["path"], "devices": res["devices"], "metrics": res["metrics"]}
    return doc, f"predictor written to {res['path']} ({len(res['devices'])} training devices)"


def cmd_predictor_eval(args: argparse.Namespace) -> tuple[Any, str]:
    from modnas.toolkit.prediction.evaluation import evaluate

    if args.folds < 2 or args.extra < 0:
        raise BadInput("--folds must be at least 2 and --extra not negative")
    res = evaluate(_data_dir(args.data), metric=args.metric, space=args.space, seed=args.seed,
                             folds=args.folds, n_extra=args.extra)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "predictor_eval.json").write_text(json.dumps(res, indent=2, default=str) + "\n")
        if res.get("markdown"):
            (out / "predictor_eval.md").write_text(res["markdown"])
    rows = [[d["device"], _fmt(d.get("spearman")), _fmt(d.get("kendall")), _fmt(d.get("mdape"), 1),
             _fmt(d.get("within_10pct"), 2)] for d in res["devices"]]
    return res, table(rows, ["held-out device", "spearman", "kendall", "MdAPE %", "within 10%"])


def cmd_search(args: argparse.Namespace) -> tuple[Any, str]:
    from modnas.toolkit.search.api import search
    from modnas.toolkit.search.run import make_config
    from modnas.toolkit.search.supernets import search_space

    objectives = [o.strip() for o in args.objectives.split(",") if o.strip()]
    devices = [d.strip() for d in args.devices.split(",") if d.strip()] if args.devices else None
    accuracy = args.accuracy or ("benchmark" if search_space(args.space).benchmark_accuracy else "supernet")
    make_config({"space": args.space, "objectives": objectives, "accuracy": accuracy})  # bad pairs before --data
    if args.task and (args.space != "nb201" or accuracy != "benchmark"):
        raise BadInput("--task names an NB201 benchmark task: it needs --space nb201 and --accuracy benchmark")
    if accuracy == "benchmark" or not devices or any(":" in d for d in devices):
        data = str(_data_dir(args.data))
    else:
        data = args.data
    if not devices:  # every table device that has its reference measurements and every objective
        from modnas.toolkit.search.default_run import objective_keys

        devices, left_out = objective_keys(data, objectives, space=args.space)
        if left_out and not args.quiet:
            print(f"modnas: searching the {len(devices)} table devices with {', '.join(objectives[1:])}: "
                  f"{', '.join(devices)} ({len(left_out)} more have no {' or '.join(objectives[2:] or objectives[1:])})",
                  file=sys.stderr)
    config: dict[str, Any] = {"space": args.space, "objectives": objectives, "accuracy": accuracy,
                              "data_dir": data, "seed": args.seed, "devices": devices}
    if args.task:
        config["task"] = args.task
    if args.images:
        config["image_dir"] = args.images
    if args.max_images is not None:
        config["max_images"] = args.max_images
    if args.epochs is not None:
        if args.epochs < 1:
            raise BadInput("--epochs must be at least 1")
        config["epochs"] = args.epochs
    with open_store(args) as store:
        run = search(make_config(config), Path(args.out), store=store)
    doc = json.loads((Path(run) / "result.json").read_text()) if (Path(run) / "result.json").exists() else {
        "run": str(run), "devices": devices, "objectives": objectives, "epochs": config.get("epochs")}
    return doc, f"run written to {doc['run']} ({len(doc['devices'])} devices, {doc.get('seconds', 0):.0f} s)"


def _device_cost(store: Any, name: str, space: str, data: str | None = None, metric: str = "latency") -> Any:
    """A store device by name, or a benchmark-table device (``source:device[:setting]``, read from --data)."""
    from modnas.toolkit.search.api import resolve_device

    data_dir = str(_data_dir(data)) if ":" in name and data else None
    return resolve_device(name, space, metric, store=store, data_dir=data_dir)


def cmd_pareto(args: argparse.Namespace) -> tuple[Any, str]:
    from modnas.toolkit.search.readout import pareto

    if args.preferences < 1:
        raise BadInput("--preferences must be at least 1")
    if args.top_k is not None and args.top_k < 1:
        raise BadInput("--top-k must be at least 1")
    run = _load_run(args)
    with open_store(args) as store:
        cost = _device_cost(store, args.device, run.config.space, args.data)
        energy = None
        if "energy" in run.objectives:
            energy = _device_cost(store, args.device, run.config.space, args.data, "energy")
    front = pareto(run, cost, args.preferences, energy_cost=energy,
                   predictor_only=bool(getattr(args, "predictor_only", False)), top_k=args.top_k)
    with_energy = any("energy_mj" in r["predicted"] for r in front)
    rows = [[_fmt(r["predicted"].get("error"), 2), _fmt(r["predicted"].get("latency_ms"))]
            + ([_fmt(r["predicted"].get("energy_mj"))] if with_energy else []) + [r["arch"]] for r in front]
    return front, table(rows, ["error %", "latency ms"] + (["energy mJ"] if with_energy else []) + ["arch"])


def _select_verified(args: argparse.Namespace, run: Any) -> tuple[Any, str]:
    """``select --verify``: the pick measured on the board (DEVICE: a device file or a stored device)."""
    from modnas.toolkit.spaces import get_space
    from modnas.toolkit.workflow.verify import verify_on_board

    if args.verify_max < 0:
        raise BadInput(f"--verify-max must not be negative, got {args.verify_max}")
    space = get_space(run.config.space)
    with open_store(args) as store:
        cfg = load_device_ref(args.device, store)
        cost = _device_cost(store, cfg.name, space.name)
        doc = verify_on_board(cfg, store, space, run, cost, args.budget_ms, run=args.run,
                              max_measurements=args.verify_max, repeatability=args.verify_margin,
                              quiet=args.quiet)
    lines = [f"{c['arch']}: predicted {c['predicted']['latency_ms']:.3f} ms, measured "
             + (f"{c['measured']['latency_ms']:.3f} ms ({c['source']}) {'meets' if c['meets'] else 'over'}"
                if c["measured"] else "failed") for c in doc["candidates"]]
    if doc["arch"] is None:
        head = f"no verified pick for {args.budget_ms:g} ms: {doc['reason']}"
    else:
        head = (f"{doc['arch']}\n  predicted error {doc['predicted']['error']:.2f} %, latency "
                f"{doc['predicted']['latency_ms']:.3f} ms; measured {doc['measured']['latency_ms']:.3f} ms "
                f"(budget {args.budget_ms:g} ms, margin {100 * doc['verify_margin']:.1f} %, "
                f"{doc['measurements']} board measurement(s))")
    return doc, "\n".join([head] + ["  candidates:"] * bool(lines) + ["    " + x for x in lines])


def cmd_select(args: argparse.Namespace) -> tuple[Any, str]:
    from modnas.toolkit.search.readout import select

    run = _load_run(args)
    if getattr(args, "verify", False):
        return _select_verified(args, run)
    with open_store(args) as store:
        cost = _device_cost(store, args.device, run.config.space, args.data)
    doc = select(run, cost, args.budget_ms)
    p = doc["predicted"]
    return doc, (f"{doc['arch']}\n  predicted error {p.get('error', float('nan')):.2f} %, latency "
                 f"{p.get('latency_ms', float('nan')):.3f} ms (margin {100 * doc['margin']:.1f} %, budget "
                 f"{args.budget_ms:g} ms)")


def cmd_onboard(args: argparse.Namespace) -> tuple[Any, str]:
    from modnas.toolkit.spaces import get_space
    from modnas.toolkit.workflow.new_board import onboard

    space = get_space(args.space)
    with open_store(args) as store:
        cfg = load_device_ref(args.device, store)
        doc = onboard(cfg, store, space, extra=args.extra, seed=args.seed, quiet=args.quiet)
    fp = doc["fingerprint"]
    lines = [f"board {doc['device']}: {fp.get('cpu_model', '?')}, {fp.get('cores', '?')} cores, "
             f"{fp.get('os', '?')}, governor {fp.get('governor') or 'n/a'}"]
    lines += [f"  {r['latency_ms']['median']:9.3f} ms  {r['arch']}" for r in doc["references"]]
    cal = doc["calibration"]
    if cal:
        res = cal.get("residuals") or []
        spread = f", residuals |max| {max(abs(x) for x in res):.3f} (log)" if res else ""
        lines.append(f"calibration: slope {cal.get('slope', float('nan')):.3f}, intercept "
                     f"{cal.get('intercept', float('nan')):.3f}{spread}")
    fit = doc.get("fit") or {}
    if fit.get("measurements"):
        kept = [p for p, on in fit.get("parts", {}).items() if on]
        lines.append(f"device model ({' + '.join(kept)}): {fit['measurements']} measurements, leave-one-out "
                     f"MdAPE {fit['loo_mdape']:.1f} %, {100 * fit['loo_within_10pct']:.0f} % within +-10 %")
    return doc, "\n".join(lines)


def cmd_validate(args: argparse.Namespace) -> tuple[Any, str]:
    from modnas.toolkit.spaces import get_space
    from modnas.toolkit.workflow.new_board import validate

    space = get_space(_space_of(args))
    with open_store(args) as store:
        cfg = load_device_ref(args.device, store)
        doc = validate(cfg, store, space, args.run, args.archs,
                       Path(args.out) if args.out else None, quiet=args.quiet, rounds=args.rounds)
    rep = doc["repeatability_mape"]
    return doc, (f"{doc['device']}: {len(doc['rows'])} architectures, Spearman {doc['spearman']:.3f}, "
                 f"Kendall {doc['kendall']:.3f}, MAPE {doc['mape']:.1f} %, within +-10 % "
                 f"{100 * doc['within_10pct']:.0f} %"
                 + (f"\n  the board's repeatability over {doc['rounds']} rounds: {rep:.1f} % (MAPE between rounds)"
                    if rep is not None else "")
                 + f"\n  plot: {doc['plot']}\n  report: {doc['report']}")


def cmd_quickstart(args: argparse.Namespace) -> tuple[Any, str]:
    from modnas.toolkit.workflow.new_board import quickstart

    out = Path(args.out) if args.out else Path("modnas-quickstart")
    with open_store(args) as store:
        doc = quickstart(store, out.resolve(), quiet=args.quiet, space_name=args.space)
    v = doc["validation"]
    lines = [f"this machine is board {doc['device']!r}; front of {len(doc['front'])} architectures",
             "verified picks (measured here):"]
    for p in doc.get("picks", []):
        if p["arch"] is None:
            lines.append(f"  budget {p['budget_ms']:.3f} ms: none ({p['reason']})")
        else:
            lines.append(f"  budget {p['budget_ms']:.3f} ms: measured {p['measured']['latency_ms']:.3f} ms, predicted "
                         f"{p['predicted']['latency_ms']:.3f} ms, {p['predicted']['error']:.2f} % error")
    lines.append("exported:")
    for e in doc["exported"]:
        lines.append(f"  {e['predicted'].get('latency_ms', 0):.3f} ms, {e['predicted'].get('error', 0):.2f} % error:"
                     f" {e['onnx']}  {e['tvm']}")
    rep = v.get("repeatability_mape")
    lines.append(f"validation: Spearman {v['spearman']:.3f}, MAPE {v['mape']:.1f} %, within +-10 % "
                 f"{100 * v['within_10pct']:.0f} %"
                 + (f"; the board's repeatability {rep:.1f} %" if rep is not None else ""))
    lines.append(f"  report {v['report']}\n  plots {v['plot']}, {v['front_plot']}")
    lines.append(f"done in {doc['seconds']:.0f} s; everything is under {doc['out']}")
    return doc, "\n".join(lines)


def not_yet(command: str) -> Handler:
    def handler(args: argparse.Namespace) -> tuple[Any, str]:
        raise NotAvailable(f"`modnas {command}` is not available yet in this version")
    return handler


# -- parser --------------------------------------------------------------------------------------
def _common(p: argparse.ArgumentParser, top: bool) -> None:
    d = None if top else argparse.SUPPRESS
    p.add_argument("--db", default=d, help="results store (default $MODNAS_HOME/modnas.db)")
    p.add_argument("--json", action="store_true", default=False if top else argparse.SUPPRESS,
                   help="print one JSON document on stdout")
    p.add_argument("--quiet", action="store_true", default=False if top else argparse.SUPPRESS,
                   help="no progress on stderr")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, as for every bad input
        command = self.prog.removeprefix("modnas").strip()  # main() prefixes "modnas: " once
        raise BadInput(f"{command}: {message}" if command else message)


def build_parser(handlers: dict[str, Handler]) -> argparse.ArgumentParser:
    parser = _Parser(prog="modnas", description="Profile edge boards, predict their latency and energy, "
                     "search one network family for every device, export and validate.")
    _common(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        _common(p, top=False)
        p.set_defaults(handler=handlers.get(name) or not_yet(name))
        return p

    def space_arg(p: argparse.ArgumentParser, from_run: bool = False) -> None:
        if from_run:
            p.add_argument("--space", default=None,
                           help="search space (default: the --run's; without --run, nb201's shipped run)")
        else:
            p.add_argument("--space", default="nb201", help="search space (default nb201)")

    def task_arg(p: argparse.ArgumentParser, help_text: str) -> None:
        p.add_argument("--task", choices=["cifar10", "cifar100", "imagenet16-120"], default=None, help=help_text)

    p = add("doctor", "connect, fingerprint the board, check its runtimes and energy sensor")
    p.add_argument("device", help="device YAML, stored device name, or a name in device_configs/")
    p = add("profile", "measure architectures on one or more boards and store every result")
    p.add_argument("devices", nargs="+", metavar="DEVICE")
    space_arg(p)
    p.add_argument("--archs", default="refs", help="refs | random:N | FILE (one architecture a line)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--runtime", choices=["onnxruntime", "tvm", "tensorrt", "replay"], default=None)
    p.add_argument("--force", action="store_true", help="measure again what is already stored")
    add("devices", "list the devices in the store")
    p = add("import", "store measurements taken elsewhere (CSV with header arch,value)")
    p.add_argument("file")
    p.add_argument("--device", required=True)
    space_arg(p)
    p.add_argument("--metric", choices=["latency", "energy"], default="latency")
    p = add("space", "facts about a search space")
    space_sub = p.add_subparsers(dest="space_command", metavar="WHAT", parser_class=_Parser, required=True)
    refs = space_sub.add_parser("refs", help="the reference architectures of the hardware embedding")
    _common(refs, top=False)
    space_arg(refs)
    refs.set_defaults(handler=handlers.get("space refs") or not_yet("space refs"))
    p = add("predict", "predicted latency or energy on a device, calibrated on its measurements")
    p.add_argument("--device", required=True)
    space_arg(p)
    p.add_argument("--metric", choices=["latency", "energy"], default="latency")
    p.add_argument("--archs", required=True, help="all | refs | random:N | FILE")
    p.add_argument("--predictor", default=None, help="predictor file (default: the one shipped)")
    p = add("predictor", "train or evaluate the hardware-conditioned predictor")
    pred_sub = p.add_subparsers(dest="predictor_command", metavar="WHAT", parser_class=_Parser, required=True)
    for what, text in (("fit", "train on tabular data and the store"), ("eval", "leave-devices-out evaluation")):
        q = pred_sub.add_parser(what, help=text)
        _common(q, top=False)
        space_arg(q)
        q.add_argument("--data", default=os.environ.get("MODNAS_DATA"), help="data directory (or $MODNAS_DATA)")
        q.add_argument("--metric", choices=["latency", "energy"], default="latency")
        q.add_argument("--seed", type=int, default=0)
        if what == "fit":
            q.add_argument("--out", default=None, help="where to write the predictor (.safetensors)")
        else:
            q.add_argument("--out", default=None, help="directory for the JSON and Markdown results")
            q.add_argument("--folds", type=int, default=4, help="hardware-group folds")
            q.add_argument("--extra", type=int, default=0, help="also calibrate on N random measurements")
        q.set_defaults(handler=handlers.get(f"predictor {what}") or not_yet(f"predictor {what}"))
    p = add("search", "one MODNAS search for all the given devices")
    space_arg(p)
    p.add_argument("--devices", default=None, help="D1,D2,... (store devices or table devices); default: the tables")
    p.add_argument("--objectives", default="error,latency")
    p.add_argument("--accuracy", choices=["supernet", "benchmark"], default=None,
                   help="default: benchmark for nb201 (its accuracy table), supernet for ofa_mbv3")
    p.add_argument("--data", default=os.environ.get("MODNAS_DATA"), help="the measured tables")
    p.add_argument("--images", default=None,
                   help="supernet mode: images (CIFAR-10 python layout, ImageFolder, .npz, or 'digits')")
    p.add_argument("--max-images", type=int, default=None, help="supernet mode: use at most N images")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    task_arg(p, "benchmark mode on nb201: the task whose accuracy is searched (default cifar10)")
    p = add("pareto", "the front of a search run read out for a device, seen or unseen")
    p.add_argument("--device", required=True, help="store device, or table device source:device[:setting] with --data")
    space_arg(p, from_run=True)
    p.add_argument("--run", default=None)
    task_arg(p, "without --run: the run shipped for this benchmark task")
    p.add_argument("--data", default=os.environ.get("MODNAS_DATA"), help="the measured tables (table devices)")
    p.add_argument("--preferences", type=int, default=24, help="at most this many distinct non-dominated picks")
    p.add_argument("--predictor-only", action="store_true",
                   help="minimise the run's scalarisation over candidates with the predictors instead of "
                        "taking the hypernetwork's arg-maxes (shows the trade-off where the run collapsed)")
    p.add_argument("--top-k", type=int, default=None, metavar="K",
                   help="pool the K most probable cells of the hypernetwork at each preference (default: 1024 "
                        "for two objectives, 2048 for three, on NB201 runs with an accuracy surrogate; 1: arg-maxes)")
    p = add("select", "the most accurate architecture predicted to meet a latency budget")
    p.add_argument("--device", required=True, help="store device, or table device source:device[:setting] with --data")
    space_arg(p, from_run=True)
    p.add_argument("--budget-ms", type=float, required=True)
    p.add_argument("--run", default=None)
    task_arg(p, "without --run: the run shipped for this benchmark task")
    p.add_argument("--data", default=os.environ.get("MODNAS_DATA"), help="the measured tables (table devices)")
    p.add_argument("--verify", action="store_true",
                   help="measure the best candidates on the board and return one measured to meet the budget "
                        "(DEVICE: a device file or a stored device)")
    p.add_argument("--verify-max", type=int, default=8, help="at most N board measurements (default 8)")
    p.add_argument("--verify-margin", type=float, default=None,
                   help="the board's repeatability as a fraction, e.g. validate's repeatability_mape / 100 "
                        "(a pick needs measured * (1 + m) <= budget; default: the measurement's CI; at least 0.02)")
    p = add("export", "build a subnet and export it (ONNX, TVM, TensorRT) for a device")
    p.add_argument("arch")
    space_arg(p, from_run=True)
    p.add_argument("--run", default=None)
    task_arg(p, "without --run: the run shipped for this benchmark task")
    p.add_argument("--format", default="onnx", help="onnx[,tvm][,tensorrt]")
    p.add_argument("--precision", choices=["fp32", "fp16", "int8"], default="fp32", help="TensorRT precision")
    p.add_argument("--target-preset", default=None, help="TVM target when the device file has none: "
                   "x86 | cortex-a72 | cortex-a76 | cortex-a78ae")
    p.add_argument("--device", default=None)
    p.add_argument("--out", required=True)
    p.add_argument("--weights", default=None, help="a `modnas train` checkpoint: export its trained weights "
                   "and measure each file's accuracy on its held-back images")
    p.add_argument("--quantize", choices=["int8"], default=None,
                   help="also write a static INT8 (QDQ) ONNX model calibrated on training images")
    p.add_argument("--images", default=None, help="calibration images for --quantize without --weights "
                   "(with --weights: where the checkpoint's images are, when moved)")
    p.add_argument("--tune", action="store_true", help="MetaSchedule-tune the TVM build, with the board's tuning "
                   "database ($MODNAS_HOME/tune/BOARD/TARGET/), shared by every architecture; resumable")
    p.add_argument("--tune-trials", type=int, default=None, help="measured candidates per kernel (default 64)")
    p.add_argument("--tune-minutes", type=float, default=None, help="wall-clock limit of the tuning; "
                   "kernels left untuned keep the untuned schedule and a later call continues")
    p = add("train", "train an architecture on images, with a held-back split; resumable")
    p.add_argument("arch")
    space_arg(p, from_run=True)
    p.add_argument("--run", default=None, help="start from this run's supernet weights when it has them")
    p.add_argument("--images", required=True, help="CIFAR-10 python layout, ImageFolder, .npz (x, y) or 'digits'")
    p.add_argument("--epochs", type=int, default=8, help="total epochs (a second call with more continues)")
    p.add_argument("--batch-size", type=int, default=None, help="default 256, smaller for small image sets")
    p.add_argument("--max-images", type=int, default=None, help="use at most N images")
    p.add_argument("--seed", type=int, default=0, help="the held-back split and the shuffling")
    p.add_argument("--out", required=True, help="directory of the checkpoint")
    p = add("validate", "measure chosen architectures on the board and compare with predictions")
    p.add_argument("device")
    space_arg(p, from_run=True)
    p.add_argument("--run", default=None)
    p.add_argument("--archs", default="pareto", help="pareto | FILE")
    p.add_argument("--out", default=None)
    p.add_argument("--rounds", type=int, default=3,
                   help="interleaved rounds: each measures every architecture once (default 3)")
    p = add("onboard", "doctor, profile the references (and N more), build embedding and calibration")
    p.add_argument("device")
    space_arg(p)
    p.add_argument("--extra", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p = add("quickstart", "the main job on this machine as the board, end to end")
    space_arg(p)
    p.add_argument("--out", default=None)
    return parser


HANDLERS: dict[str, Handler] = {
    "doctor": cmd_doctor,
    "profile": cmd_profile,
    "devices": cmd_devices,
    "import": cmd_import,
    "space refs": cmd_space_refs,
    "export": cmd_export,
    "train": cmd_train,
    "predict": cmd_predict,
    "predictor fit": cmd_predictor_fit,
    "predictor eval": cmd_predictor_eval,
    "search": cmd_search,
    "pareto": cmd_pareto,
    "select": cmd_select,
    "onboard": cmd_onboard,
    "validate": cmd_validate,
    "quickstart": cmd_quickstart,
}


def main(argv: list[str] | None = None) -> int:
    import logging

    # the SSH library logs a reset socket itself; the command reports the lost board in its own one line
    ssh_log = logging.getLogger("paramiko")
    if not ssh_log.handlers:
        ssh_log.addHandler(logging.NullHandler())
    parser = build_parser(HANDLERS)
    as_json = False
    try:
        args = parser.parse_args(argv)
        as_json = bool(getattr(args, "json", False))
        if not getattr(args, "command", None):
            parser.print_help(sys.stderr)
            return 2
        from modnas.toolkit.interrupts import signals_raise

        with signals_raise():  # Ctrl-C and SIGTERM stop the command where it is (exit 130 / 143)
            doc, text = args.handler(args)
    except ModnasError as err:
        print(f"modnas: {str(err).splitlines()[0] if str(err) else type(err).__name__}", file=sys.stderr)
        return exit_status(err)
    except KeyboardInterrupt as err:  # Ctrl-C, or SIGTERM (modnas.toolkit.interrupts.Terminated)
        from modnas.toolkit.interrupts import MESSAGE, exit_code

        print(f"modnas: {MESSAGE}", file=sys.stderr)
        if argv is None:  # we are the process (console script, python -m): everything is stored and closed, so
            sys.stdout.flush()  # leave now rather than wait for the interpreter's tear-down (seconds with torch
            sys.stderr.flush()  # loaded on a busy machine) or for other boards' threads still unwinding
            os._exit(exit_code(err))
        return exit_code(err)
    except SystemExit as err:  # --help
        return int(err.code or 0)
    except Exception as err:  # anything unforeseen: one line, the trace only on request
        if os.environ.get("MODNAS_DEBUG"):
            raise
        print(f"modnas: internal error: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
              f" (set MODNAS_DEBUG=1 for the trace)", file=sys.stderr)
        return 1
    if as_json:
        sys.stdout.write(json.dumps(doc, indent=None, default=str) + "\n")
    elif text:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
