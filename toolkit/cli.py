"""The ``modnas`` command: wiring only. Each handler parses its arguments, calls the library function that
does the command's job, and renders the typed result it gets back: ``to_json()`` for ``--json``, a text
report from its fields otherwise. Library errors speak of parameters; :func:`error_line` names the flags."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable

from modnas.toolkit.errors import BadInput, ModnasError, exit_status

Handler = Callable[[argparse.Namespace], tuple[Any, str]]  # -> (typed result, text report)

# a library parameter -> the flag that sets it, where the flag is not ``--`` + the name with '-' for '_'
FLAGS: dict[str, str] = {
    "data_dir": "--data",
    "formats": "--format",
    "image_dir": "--images",
    "max_measurements": "--verify-max",
    "n_extra": "--extra",
    "repeatability": "--verify-margin",
}


def flag(param: str) -> str:
    """The command-line flag that sets a library parameter."""
    return FLAGS.get(param, "--" + param.replace("_", "-"))


def error_line(err: ModnasError) -> str:
    """The one line an error is reported as: its first line, each parameter it names (`` `name` ``, listed in
    ``err.params``) written as the flag that sets it."""
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    for param in getattr(err, "params", ()):
        text = text.replace(f"`{param}`", flag(param))
    return text


# -- shared helpers ------------------------------------------------------------------------------
def open_store(args: argparse.Namespace) -> Any:
    from modnas.toolkit.config import default_db
    from modnas.toolkit.store import Store

    return Store(Path(os.path.expanduser(args.db)) if args.db else default_db())


def as_document(result: Any) -> Any:
    """The JSON document of a handler's result (a typed result's ``to_json()``)."""
    return result.to_json() if hasattr(result, "to_json") else result


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


def _nan(x: float | None) -> float:
    return float("nan") if x is None else x


# -- commands ------------------------------------------------------------------------------------
def cmd_doctor(args: argparse.Namespace) -> tuple[Any, str]:
    from modnas.toolkit.config import device_ref
    from modnas.toolkit.workflow.profiling import doctor

    with open_store(args) as store:
        res = doctor(device_ref(args.device, store), store)
    lines = [f"device {res.device} ({res.address}): reachable"]
    for key in ("cpu_model", "cores", "governor", "os", "kernel", "python"):
        if key in res.fingerprint:
            lines.append(f"  {key}: {res.fingerprint[key]}")
    for name, rt in res.runtimes.items():
        lines.append(f"  runtime {name}: {'ok ' if rt.get('available') else 'missing '}{rt.get('detail', '')}")
    energy = res.energy
    lines.append(f"  energy {energy.get('sensor')}: {'readable' if energy.get('readable') else 'not readable'}"
                 f" {energy.get('detail', '')}")
    return res, "\n".join(lines)


def cmd_profile(args: argparse.Namespace) -> tuple[Any, str]:
    from modnas.toolkit.config import device_ref
    from modnas.toolkit.spaces import get_space
    from modnas.toolkit.workflow.profiling import profile_boards, resolve_archs

    space = get_space(args.space)
    archs = resolve_archs(space, args.archs, args.seed)
    with open_store(args) as store:
        res = profile_boards([device_ref(ref, store) for ref in args.devices], store, space, archs,
                             runtime=args.runtime, force=args.force, quiet=args.quiet)
    lines = []
    for board in res.rows:
        rows = [[r.arch, _fmt(r.latency_ms.median), _fmt(r.latency_ms.p90),
                 _fmt(r.energy_mj.gross) if r.energy_mj else "-"] for r in board.measured]
        lines.append(f"device {board.device}: {len(board.measured)} measured, {len(board.skipped)} skipped, "
                     f"{len(board.failed)} failed")
        if rows:
            lines.append(table(rows, ["arch", "median ms", "p90 ms", "energy mJ"]))
        lines += [f"  failed {f.arch}: {f.error}" for f in board.failed]
    return res, "\n".join(lines)


def cmd_devices(args: argparse.Namespace) -> tuple[Any, str]:
    from modnas.toolkit.results import DocList

    with open_store(args) as store:
        res = DocList(store.devices())
    rows = [[d.name, d.space, d.measurements["latency"], d.measurements["energy"], "yes" if d.embedding else "no"]
            for d in res.rows]
    return res, table(rows, ["device", "space", "latency", "energy", "embedding"]) if rows else "no devices yet"


def cmd_import(args: argparse.Namespace) -> tuple[Any, str]:
    from modnas.toolkit.data.importer import import_measurements
    from modnas.toolkit.spaces import get_space

    space = get_space(args.space)
    with open_store(args) as store:
        res = import_measurements(store, args.file, args.device, space, args.metric)
    text = f"imported {res.imported} {args.metric} values for {res.device}" + "".join(
        f"\n  rejected line {r.line}: {r.error}" for r in res.rejected)
    return res, text


def cmd_space_refs(args: argparse.Namespace) -> tuple[Any, str]:
    from modnas.toolkit.results import DocList
    from modnas.toolkit.spaces import get_space

    refs = get_space(args.space).reference_archs()
    return DocList(refs), "\n".join(refs)


def cmd_export(args: argparse.Namespace) -> tuple[Any, str]:
    from modnas.toolkit.config import device_ref
    from modnas.toolkit.workflow.exporting import export_arch

    formats = [f.strip() for f in args.format.split(",") if f.strip()]
    with open_store(args) as store:
        res = export_arch(args.arch, space_name=args.space, task=args.task, formats=formats, out=Path(args.out),
                          device=device_ref(args.device, store) if args.device else None, run=args.run,
                          tensorrt_precision=args.precision, target_preset=args.target_preset,
                          weights=args.weights, quantize=args.quantize, images=args.images, tune=_tune_budget(args),
                          data_dir=args.data)
    lines = [f"arch: {res.arch}"] + [f"{k}: {v}" for k, v in res.files.items()]
    if res.accuracy_note is not None:
        lines.append(f"accuracy_note: {res.accuracy_note}")
    if res.tvm_tuning is not None:
        t = res.tvm_tuning
        lines.append(f"tvm tuning: {t['tasks']} kernels, {t['reused']} from the database, {t['tuned_now']} tuned now "
                     f"({t['trials_now']} trials, {t['seconds']:.0f} s)" + (f"; {t['pending']} left (time limit)"
                                                                           if t["pending"] else ""))
    lines += [f"max |diff| vs PyTorch ({k}): {v:.3g}" for k, v in res.max_abs_diff.items() if v is not None]
    lines += [f"held-out accuracy ({k}): {v:.4f}" for k, v in (res.accuracy or {}).items()]
    lines += [f"held-out loss ({k}): {v:.4f} nats/token" for k, v in (res.loss or {}).items()]
    return res, "\n".join(lines)


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

    res = train_arch(args.arch, space_name=args.space, images=args.images, out=Path(args.out), epochs=args.epochs,
                     batch_size=args.batch_size, run=args.run, seed=args.seed, max_images=args.max_images,
                     quiet=args.quiet, text=args.text, context=args.context, batch=args.batch, steps=args.steps,
                     data_dir=args.data)
    if hasattr(res, "loss"):  # a language model
        return res, (f"checkpoint: {res.checkpoint}\nsteps: {res.steps}\n"
                     f"loss: train {res.loss.train:.4f}, held-out {res.loss.heldout:.4f} nats/token")
    return res, (f"checkpoint: {res.checkpoint}\nepochs: {res.epochs}\n"
                 f"accuracy: train {res.accuracy.train:.4f}, held-out {res.accuracy.heldout:.4f}")


def cmd_sample(args: argparse.Namespace) -> tuple[Any, str]:
    from modnas.toolkit.spaces import get_space
    from modnas.toolkit.workflow.lm import sample_lm

    res = sample_lm(get_space(args.space), args.arch, weights=args.weights, run=args.run, prompt=args.prompt,
                    tokens=args.tokens, fmt=args.format)
    return res, f"{res.text}\n\n({res.tokens} tokens, {res.tokens_per_s:.1f} tokens/s, {res.runtime})"


def cmd_predict(args: argparse.Namespace) -> tuple[Any, str]:
    from modnas.toolkit.prediction.device_cost import predict_on_device
    from modnas.toolkit.spaces import get_space
    from modnas.toolkit.workflow.profiling import resolve_archs

    space = get_space(args.space)
    archs = resolve_archs(space, args.archs)
    if args.metric == "loss":
        from modnas.toolkit.prediction.device_cost import Prediction, Predictions
        from modnas.toolkit.search.api import open_run

        if space.quality != "loss":
            raise BadInput(f"--metric loss is a language model's (e.g. --space gpt); the {space.name} space's "
                           "quality is its error")
        values = open_run(args.run, space.name).predict_error(archs)
        res = Predictions([Prediction(a, float(v)) for a, v in zip(archs, values)], unit="nats")
    else:
        if args.device is None:
            raise BadInput(f"--device is needed for --metric {args.metric}")
        with open_store(args) as store:
            res = predict_on_device(store, args.device, space, args.metric, archs, predictor_path=args.predictor)
    text = "\n".join(f"{p.value:10.4f} {res.unit}  {p.arch}" for p in res.rows[:50])
    if len(res.rows) > 50:
        text += f"\n... {len(res.rows) - 50} more (use --json)"
    return res, text


def cmd_predictor_fit(args: argparse.Namespace) -> tuple[Any, str]:
    from modnas.toolkit.prediction.predictors import fit_with_store

    with open_store(args) as store:
        res = fit_with_store(args.data, store, args.out, metric=args.metric, space=args.space, seed=args.seed)
    return res, f"predictor written to {res.path} ({len(res.devices)} training devices)"


def cmd_predictor_eval(args: argparse.Namespace) -> tuple[Any, str]:
    from modnas.toolkit.prediction.evaluation import evaluate_predictor

    res = evaluate_predictor(args.data, metric=args.metric, space=args.space, seed=args.seed, folds=args.folds,
                             n_extra=args.extra, out=args.out)
    rows = [[d.device, _fmt(d.spearman), _fmt(d.kendall), _fmt(d.mdape, 1), _fmt(d.within_10pct, 2)]
            for d in res.devices]
    return res, table(rows, ["held-out device", "spearman", "kendall", "MdAPE %", "within 10%"])


def cmd_search(args: argparse.Namespace) -> tuple[Any, str]:
    from modnas.toolkit.search.api import search
    from modnas.toolkit.search.plan import plan_search

    objectives = [o.strip() for o in args.objectives.split(",") if o.strip()]
    devices = [d.strip() for d in args.devices.split(",") if d.strip()] if args.devices else None
    plan = plan_search(space=args.space, objectives=objectives, devices=devices, accuracy=args.accuracy,
                       data_dir=args.data, task=args.task, seed=args.seed, image_dir=args.images,
                       max_images=args.max_images, epochs=args.epochs)
    if plan.left_out and not args.quiet:
        costs = plan.objectives[1:]
        print(f"modnas: searching the {len(plan.devices)} table devices with {', '.join(costs)}: "
              f"{', '.join(plan.devices)} ({len(plan.left_out)} more have no {' or '.join(costs[1:] or costs)})",
              file=sys.stderr)
    with open_store(args) as store:
        res = search(plan.config, Path(args.out), store=store)
    return res, f"run written to {res.run} ({len(res.devices)} devices, {res.seconds:.0f} s)"


def cmd_pareto(args: argparse.Namespace) -> tuple[Any, str]:
    from modnas.toolkit.search.api import device_front, open_run

    run = open_run(args.run, args.space, args.task)
    with open_store(args) as store:
        front = device_front(run, args.device, store=store, data_dir=args.data, preferences=args.preferences,
                             predictor_only=args.predictor_only, top_k=args.top_k, metric=args.metric)
    with_energy = any("energy_mj" in r.predicted for r in front.rows)
    q, cost = run.space.quality, f"{args.metric}_ms"
    rows = [[_fmt(r.predicted.get(q), 4 if q == "loss" else 2), _fmt(r.predicted.get(cost))]
            + ([_fmt(r.predicted.get("energy_mj"))] if with_energy else []) + [r.arch] for r in front.rows]
    return front, table(rows, [f"{q} {run.space.quality_unit}", f"{args.metric} ms"]
                        + (["energy mJ"] if with_energy else []) + ["arch"])


def _quality(space: Any, predicted: dict[str, float] | None) -> str:
    """``4.56 % error`` or, for a language model, ``1.2345 nats loss``."""
    q = space.quality
    value = _nan((predicted or {}).get(q))
    return f"{value:.4f} nats loss" if q == "loss" else f"{value:.2f} % error"


def cmd_select(args: argparse.Namespace) -> tuple[Any, str]:
    from modnas.toolkit.search.api import device_select, open_run

    run = open_run(args.run, args.space, args.task)
    if args.verify:
        return _select_verified(args, run)
    with open_store(args) as store:
        res = device_select(run, args.device, args.budget_ms, store=store, data_dir=args.data, metric=args.metric)
    p = res.predicted
    return res, (f"{res.arch}\n  predicted {_quality(run.space, p)}, {args.metric} "
                 f"{_nan(p.get(args.metric + '_ms')):.3f} ms (margin {100 * res.margin:.1f} %, budget "
                 f"{args.budget_ms:g} ms)")


def _select_verified(args: argparse.Namespace, run: Any) -> tuple[Any, str]:
    """``select --verify``: the pick measured on the board (DEVICE: a device file or a stored device)."""
    from modnas.toolkit.workflow.verify import verify_select

    if args.metric != "latency":
        raise BadInput(f"`select --verify` measures latency on the board; --metric {args.metric} is predicted only",
                       param=("verify", "metric"))
    with open_store(args) as store:
        res = verify_select(args.device, store, run, args.budget_ms, run=args.run, max_measurements=args.verify_max,
                            repeatability=args.verify_margin, quiet=args.quiet)
    lines = [f"{c.arch}: predicted {c.predicted['latency_ms']:.3f} ms, measured "
             + (f"{c.measured.latency_ms:.3f} ms ({c.source}) {'meets' if c.meets else 'over'}"
                if c.measured else "failed") for c in res.candidates]
    if res.arch is None or res.predicted is None or res.measured is None:
        head = f"no verified pick for {args.budget_ms:g} ms: {res.reason}"
    else:
        head = (f"{res.arch}\n  predicted {_quality(run.space, res.predicted)}, latency "
                f"{res.predicted['latency_ms']:.3f} ms; measured {res.measured.latency_ms:.3f} ms "
                f"(budget {args.budget_ms:g} ms, margin {100 * res.verify_margin:.1f} %, "
                f"{res.measurements} board measurement(s))")
    return res, "\n".join([head] + ["  candidates:"] * bool(lines) + ["    " + x for x in lines])


def cmd_onboard(args: argparse.Namespace) -> tuple[Any, str]:
    from modnas.toolkit.config import device_ref
    from modnas.toolkit.spaces import get_space
    from modnas.toolkit.workflow.new_board import onboard

    space = get_space(args.space)
    with open_store(args) as store:
        res = onboard(device_ref(args.device, store), store, space, extra=args.extra, seed=args.seed, quiet=args.quiet,
                      kernels=args.kernels, minutes=args.minutes)
    fp = res.fingerprint
    lines = [f"board {res.device}: {fp.get('cpu_model', '?')}, {fp.get('cores', '?')} cores, "
             f"{fp.get('os', '?')}, governor {fp.get('governor') or 'n/a'}"]
    lines += [f"  {r.latency_ms.median:9.3f} ms  {r.arch}" for r in res.references]
    cal = res.calibration
    if cal:
        residuals = cal.get("residuals") or []
        spread = f", residuals |max| {max(abs(x) for x in residuals):.3f} (log)" if residuals else ""
        lines.append(f"calibration: slope {_nan(cal.get('slope')):.3f}, intercept "
                     f"{_nan(cal.get('intercept')):.3f}{spread}")
    fit = res.fit
    if fit.get("measurements"):
        kept = [part for part, on in fit.get("parts", {}).items() if on]
        prior = f", prior: {fit['structural_prior']}" if fit.get("structural_prior") else ""
        lines.append(f"device model ({' + '.join(kept)}{prior}): {fit['measurements']} measurements, leave-one-out "
                     f"MdAPE {fit['loo_mdape']:.1f} %, {100 * fit['loo_within_10pct']:.0f} % within +-10 %")
    if res.kernels is not None:
        k = res.kernels
        lines.append(f"kernels: {k.measured} measured, {k.failed} failed, {k.board_seconds:.1f} board s"
                     + (f", overhead {k.overhead_ms:.4f} ms" if k.overhead_ms is not None else "")
                     + (f" ({k.note})" if k.note else ""))
    if res.curve:
        lines.append("learning curve: measurements, board seconds, leave-one-out MAPE %, within +-10 %, model")
        lines += [f"  {c.measurements:4d}  {c.board_seconds:8.1f}  "
                  f"{'-' if c.loo_mape is None else f'{c.loo_mape:6.2f}'}  "
                  f"{'-' if c.loo_within_10pct is None else f'{100 * c.loo_within_10pct:4.0f} %'}  {c.model}"
                  for c in res.curve]
        lines.append(f"stopped: {res.stopped}")
    return res, "\n".join(lines)


def cmd_validate(args: argparse.Namespace) -> tuple[Any, str]:
    from modnas.toolkit.config import device_ref
    from modnas.toolkit.search.api import space_of
    from modnas.toolkit.spaces import get_space
    from modnas.toolkit.workflow.new_board import validate

    space = get_space(space_of(args.space, args.run))
    with open_store(args) as store:
        res = validate(device_ref(args.device, store), store, space, args.run, args.archs,
                       Path(args.out) if args.out else None, quiet=args.quiet, rounds=args.rounds)
    rep = res.repeatability_mape
    return res, (f"{res.device}: {len(res.rows)} architectures, Spearman {res.spearman:.3f}, "
                 f"Kendall {res.kendall:.3f}, MAPE {res.mape:.1f} %, within +-10 % {100 * res.within_10pct:.0f} %"
                 + (f"\n  the board's repeatability over {res.rounds} rounds: {rep:.1f} % (MAPE between rounds)"
                    if rep is not None else "")
                 + f"\n  plot: {res.plot}\n  report: {res.report}")


def cmd_quickstart(args: argparse.Namespace) -> tuple[Any, str]:
    from modnas.toolkit.spaces import get_space
    from modnas.toolkit.workflow.new_board import quickstart

    space = get_space(args.space)
    with open_store(args) as store:
        res = quickstart(store, Path(args.out), quiet=args.quiet, space_name=args.space)
    v = res.validation
    lines = [f"this machine is board {res.device!r}; front of {len(res.front.rows)} architectures",
             "verified picks (measured here):"]
    for p in res.picks:
        if p.arch is None or p.predicted is None or p.measured is None:
            lines.append(f"  budget {p.budget_ms:.3f} ms: none ({p.reason})")
        else:
            lines.append(f"  budget {p.budget_ms:.3f} ms: measured {p.measured.latency_ms:.3f} ms, predicted "
                         f"{p.predicted['latency_ms']:.3f} ms, {_quality(space, p.predicted)}")
    lines.append("exported:")
    for e in res.exported:
        files = "  ".join(str(f) for k, f in e.export.files.items() if k in ("onnx", "onnx_int8", "tvm"))
        losses = (" (loss " + ", ".join(f"{k} {v:.4f}" for k, v in e.export.loss.items()) + ")") if e.export.loss else ""
        lines.append(f"  {e.predicted.get('latency_ms', 0):.3f} ms, {_quality(space, e.predicted)}: {files}{losses}")
    for p in {p.arch: p for p in reversed(res.picks) if p.sample}.values():  # one sample per architecture
        lines.append(f"sample of {p.arch} ({p.sample['tokens_per_s']:.0f} tokens/s):")
        lines += ["  | " + line for line in p.sample["text"].splitlines()]
    rep = v.repeatability_mape
    lines.append(f"validation: Spearman {v.spearman:.3f}, MAPE {v.mape:.1f} %, within +-10 % "
                 f"{100 * v.within_10pct:.0f} %"
                 + (f"; the board's repeatability {rep:.1f} %" if rep is not None else ""))
    lines.append(f"  report {v.report}\n  plots {v.plot}, {v.front_plot}")
    lines.append(f"done in {res.seconds:.0f} s; everything is under {res.out}")
    return res, "\n".join(lines)


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
        if name in handlers:  # a command with subcommands has its handlers on them
            p.set_defaults(handler=handlers[name])
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
    from modnas.profilers.board.runtimes import RUNTIMES

    p.add_argument("--runtime", choices=[*RUNTIMES, "replay"], default=None)
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
    refs.set_defaults(handler=handlers["space refs"])
    p = add("predict", "predicted latency or energy on a device, calibrated on its measurements")
    p.add_argument("--device", default=None, help="a stored device (not needed for --metric loss)")
    space_arg(p)
    p.add_argument("--metric", choices=["latency", "energy", "prefill", "loss"], default="latency",
                   help="loss: a language model's held-out loss as the search run estimates it (gpt; no device)")
    p.add_argument("--run", default=None, help="--metric loss: the search run (default: the shipped one)")
    p.add_argument("--archs", required=True, help="all | refs | random:N | FILE")
    p.add_argument("--predictor", default=None, help="predictor file (default: the one shipped)")
    p = add("predictor", "train or evaluate the hardware-conditioned predictor")
    pred_sub = p.add_subparsers(dest="predictor_command", metavar="WHAT", parser_class=_Parser, required=True)
    for what, text in (("fit", "train on tabular data and the store"), ("eval", "leave-devices-out evaluation")):
        q = pred_sub.add_parser(what, help=text)
        _common(q, top=False)
        space_arg(q)
        q.add_argument("--data", default=os.environ.get("MODNAS_DATA"), help="data directory (or $MODNAS_DATA)")
        q.add_argument("--metric", choices=["latency", "energy", "prefill"], default="latency",
                       help="prefill: a language model's prompt time (the gpt space)")
        q.add_argument("--seed", type=int, default=0)
        if what == "fit":
            q.add_argument("--out", default=None, help="where to write the predictor (.safetensors)")
        else:
            q.add_argument("--out", default=None, help="directory for the JSON and Markdown results")
            q.add_argument("--folds", type=int, default=4, help="hardware-group folds")
            q.add_argument("--extra", type=int, default=0, help="also calibrate on N random measurements")
        q.set_defaults(handler=handlers[f"predictor {what}"])
    p = add("search", "one MODNAS search for all the given devices")
    space_arg(p)
    p.add_argument("--devices", default=None, help="D1,D2,... (store devices or table devices); default: the tables")
    p.add_argument("--objectives", default="error,latency")
    p.add_argument("--accuracy", choices=["supernet", "benchmark", "surrogate"], default=None,
                   help="default: benchmark for nb201 (its accuracy table), supernet for ofa_mbv3, surrogate for gpt (the loss surrogate of its shipped run)")
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
    p.add_argument("--metric", choices=["latency", "prefill"], default="latency",
                   help="the cost on the front's axis: latency, or prefill (a language model's prompt time, gpt)")
    p.add_argument("--top-k", type=int, default=None, metavar="K",
                   help="pool the K most probable cells of the hypernetwork at each preference (default: 1024 "
                        "for two objectives, 2048 for three, on NB201 runs with an accuracy surrogate; 1: arg-maxes)")
    p = add("select", "the most accurate architecture predicted to meet a latency budget")
    p.add_argument("--device", required=True, help="store device, or table device source:device[:setting] with --data")
    space_arg(p, from_run=True)
    p.add_argument("--budget-ms", type=float, required=True)
    p.add_argument("--metric", choices=["latency", "prefill"], default="latency",
                   help="what the budget bounds: latency (ms per token for gpt), or prefill (gpt's prompt time)")
    p.add_argument("--run", default=None)
    task_arg(p, "without --run: the run shipped for this benchmark task")
    p.add_argument("--data", default=os.environ.get("MODNAS_DATA"), help="the measured tables (table devices)")
    p.add_argument("--verify", action="store_true",
                   help="measure the best candidates on the board and return one measured to meet the budget "
                        "(DEVICE: a device file or a stored device)")
    p.add_argument("--verify-max", type=int, default=8,
                   help="at most N board measurements in all (default 8): the most accurate candidates first, then, "
                        "when none of those met, up to 3 of the fastest with what is left; 0: stored measurements only")
    p.add_argument("--verify-margin", type=float, default=None,
                   help="the board's repeatability as a fraction, e.g. validate's repeatability_mape / 100 "
                        "(a pick needs measured * (1 + m) <= budget; default: the measurement's CI; at least 0.02)")
    p = add("export", "build a subnet and export it (ONNX, TVM, TensorRT) for a device")
    p.add_argument("arch")
    space_arg(p, from_run=True)
    p.add_argument("--run", default=None)
    task_arg(p, "without --run: the run shipped for this benchmark task")
    p.add_argument("--format", default="onnx", help="onnx[,tvm][,tensorrt][,executorch]")
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
    p.add_argument("--data", default=os.environ.get("MODNAS_DATA"),
                   help="data directory of a gpt checkpoint's --text shakespeare (or $MODNAS_DATA)")
    p.add_argument("--tune", action="store_true", help="MetaSchedule-tune the TVM build, with the board's tuning "
                   "database ($MODNAS_HOME/tune/BOARD/TARGET/), shared by every architecture; resumable")
    p.add_argument("--tune-trials", type=int, default=None, help="measured candidates per kernel (default 64)")
    p.add_argument("--tune-minutes", type=float, default=None, help="wall-clock limit of the tuning; "
                   "kernels left untuned keep the untuned schedule and a later call continues")
    p = add("train", "train an architecture on images (or, --space gpt, on text), with a held-back split; resumable")
    p.add_argument("arch")
    space_arg(p, from_run=True)
    p.add_argument("--run", default=None, help="start from this run's supernet weights when it has them "
                   "(--space gpt: a supernet checkpoint)")
    p.add_argument("--images", default=None, help="CIFAR-10 python layout, ImageFolder, .npz (x, y) or 'digits'")
    p.add_argument("--text", default=None, help="--space gpt: FILE | DIR (its *.txt) | shakespeare")
    p.add_argument("--context", type=int, default=None, help="--space gpt: tokens per window (default 64, at most 256)")
    p.add_argument("--batch", type=int, default=None, help="--space gpt: windows per step (default 12)")
    p.add_argument("--steps", type=int, default=None,
                   help="--space gpt: total steps (default 2000; a second call with more continues)")
    p.add_argument("--data", default=os.environ.get("MODNAS_DATA"), help="data directory of --text shakespeare")
    p.add_argument("--epochs", type=int, default=None,
                   help="total epochs (default 8; a second call with more continues)")
    p.add_argument("--batch-size", type=int, default=None, help="default 256, smaller for small image sets")
    p.add_argument("--max-images", type=int, default=None, help="use at most N images")
    p.add_argument("--seed", type=int, default=0, help="the held-back split and the shuffling")
    p.add_argument("--out", required=True, help="directory of the checkpoint")
    p = add("sample", "generate text with a trained language model (--space gpt)")
    p.add_argument("arch")
    p.add_argument("--space", default="gpt", help="a language-model space (default gpt)")
    p.add_argument("--weights", default=None, help="a `modnas train --space gpt` checkpoint")
    p.add_argument("--run", default=None, help="a gpt supernet checkpoint (the architecture's slice of it)")
    p.add_argument("--prompt", default=None, help="text to continue (default a newline)")
    p.add_argument("--tokens", type=int, default=None, help="new tokens to generate (default 200)")
    p.add_argument("--format", choices=["pytorch", "onnx"], default=None,
                   help="run PyTorch (default) or the ONNX prefill and decode graphs with the cache")
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
    p.add_argument("--minutes", type=float, default=None,
                   help="onboard by time: measure where the model is least sure until its leave-one-out error "
                        "stops improving or M minutes are spent")
    p.add_argument("--kernels", action="store_true",
                   help="also measure each kernel of the space as a small network (the structural model's prior)")
    p.add_argument("--seed", type=int, default=0)
    p = add("quickstart", "the main job on this machine as the board, end to end")
    space_arg(p)
    p.add_argument("--out", default="modnas-quickstart", help="where everything is written (default modnas-quickstart)")
    return parser


HANDLERS: dict[str, Handler] = {
    "doctor": cmd_doctor,
    "profile": cmd_profile,
    "devices": cmd_devices,
    "import": cmd_import,
    "space refs": cmd_space_refs,
    "export": cmd_export,
    "train": cmd_train,
    "sample": cmd_sample,
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
            result, text = args.handler(args)
    except ModnasError as err:
        print(f"modnas: {error_line(err)}", file=sys.stderr)
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
        sys.stdout.write(json.dumps(as_document(result), indent=None, default=str) + "\n")
    elif text:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
