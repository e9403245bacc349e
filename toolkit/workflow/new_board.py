"""The new-board workflow: onboard, validate predicted against measured, and the quickstart."""
from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from modnas.toolkit.config import DeviceConfig, load_device, modnas_home
from modnas.toolkit.errors import BadInput, BoardError
from modnas.toolkit.prediction.device_cost import device_cost
from modnas.toolkit.prediction.device_model import choose_extras
from modnas.toolkit.prediction.device_state import refresh_embedding
from modnas.toolkit.results import JsonDoc, omitted
from modnas.toolkit.spaces import Space, get_space
from modnas.toolkit.store import Store
from modnas.toolkit.threads import torch_threads
from modnas.toolkit.workflow.profiling import (Failure, MeasuredRow, fingerprint_device, latency_row, profile_device,
                                               resolve_archs)

if TYPE_CHECKING:
    from modnas.toolkit.search.readout import Front
    from modnas.toolkit.workflow.exporting import ExportReport
    from modnas.toolkit.workflow.verify import MeasuredLatency, VerifiedSelection

BUDGET_PERCENTILES = (25, 50, 75)
READOUT_PREFERENCES = 24
QUICKSTART_EXTRA = 20  # architectures measured beside the references, chosen by the device model (onboard --extra)


@dataclass
class OnboardResult(JsonDoc):
    """``modnas onboard``: the board's fingerprint, its reference rows, the extras chosen and measured, and
    the device model fitted to all of its measurements (``calibration``, ``fit``)."""

    device: str
    fingerprint: dict[str, Any]
    references: list[MeasuredRow]
    extra: int
    extra_archs: list[str]
    failed: list[Failure]
    calibration: dict[str, Any]  # the stored device model: slope, intercept, residuals, fit, ...
    fit: dict[str, Any]  # {"measurements", "loo_mdape", "loo_within_10pct", "parts", ...}; {} without a predictor
    embedding: list[float] | None
    kernels: KernelReport | None = omitted()  # with --kernels
    curve: list[CurvePoint] | None = omitted()  # with --minutes: the learning curve, one point per batch
    stopped: str | None = omitted()  # with --minutes: why onboarding ended


@dataclass
class KernelReport(JsonDoc):
    """``onboard --kernels``: the space's kernels measured on the board, and what that cost."""

    measured: int
    failed: int
    board_seconds: float  # the board's own time on them (sum of the agent's wall seconds)
    overhead_ms: float | None  # the empty network: the runtime's per-inference overhead
    note: str = ""


@dataclass
class CurvePoint(JsonDoc):
    """One step of onboarding by time: measurements so far, board seconds so far (kernels included), the
    model's leave-one-out error on the board's points (MAPE %, share within +-10 %) and the part it kept."""

    measurements: int
    board_seconds: float
    loo_mape: float | None
    loo_within_10pct: float | None
    model: str


@dataclass
class ValidationRow(JsonDoc):
    """One validated architecture: predicted and measured latency (ms, the median of its rounds)."""

    arch: str
    predicted: float
    measured: float
    error: float  # the run's predicted error (%; a language model's: its predicted loss, nats per token)
    rounds: list[float]  # the median of each round (ms)
    replayed: bool | None = omitted()
    in_fit: bool | None = omitted()  # a reference architecture: the device model keeps it (not in the figures)


@dataclass
class BudgetCheck(JsonDoc):
    """At a measured-latency percentile: the pick among the validated architectures, and whether it fits."""

    percentile: int
    budget_ms: float
    arch: str
    predicted_ms: float
    measured_ms: float
    meets: bool


@dataclass
class ValidationResult(JsonDoc):
    """``modnas validate``: predicted against measured on the board, beside the board's repeatability."""

    device: str
    spearman: float
    kendall: float
    mape: float  # percent
    within_10pct: float  # a fraction
    n: int
    measured_as: str
    rounds: int
    repeatability: dict[str, Any]  # modnas.toolkit.workflow.report.repeatability
    repeatability_mape: float | None
    mape_to_repeatability: float | None
    rows: list[ValidationRow]
    failed: list[Failure]
    margin: float
    budgets: list[BudgetCheck]
    plot: str = ""
    front_plot: str = ""
    report: str = ""


def _stored_rows(store: Store, cfg: DeviceConfig, space: Space, archs: list[str],
                 runtime: str) -> dict[str, MeasuredRow]:
    """The newest stored result of each architecture as a ``profile`` row."""
    energy = {r["arch"]: r["summary"] for r in store.measurement_rows(cfg.name, space.name, "energy")
              if r["runtime"] == runtime}
    rows: dict[str, MeasuredRow] = {}
    for r in store.measurement_rows(cfg.name, space.name, "latency"):
        if r["arch"] in archs and r["runtime"] == runtime and r["summary"]:
            rows[r["arch"]] = latency_row(r["arch"], r["summary"], energy.get(r["arch"]))
    return rows


MINUTES_BATCH = 5  # onboard --minutes: architectures measured between two fits
MINUTES_PATIENCE = 3  # ... it stops after this many batches without a better leave-one-out error
MINUTES_GAIN = 0.03  # ... "better": by at least this share
MINUTES_CAP = 400  # ... and never measures more than this many architectures


KERNEL_TIMING = {"warmup_s": 0.2, "min_time_s": 0.15}  # kernels run in microseconds: shorter blocks (at most these)


def _board_seconds(store: Store, cfg: DeviceConfig, space_name: str) -> float:
    """The board's own time on every stored latency measurement of the space (the agent's wall seconds)."""
    return float(sum((r["summary"] or {}).get("wall_seconds") or 0.0
                     for r in store.measurement_rows(cfg.name, space_name, "latency")))


def measure_kernels(cfg: DeviceConfig, store: Store, space: Space, quiet: bool = False) -> KernelReport:
    """Every kernel of the space as a small network, measured through the campaign code (stored under
    ``<space>.kernels``). A replay board has no kernels to run: it is said, and nothing is measured."""
    from modnas.toolkit.spaces.kernels import EMPTY, KernelSpace

    if cfg.host == "replay":
        return KernelReport(0, 0, 0.0, None, "a replay board answers from its tables and has no kernels; "
                                              "the structural model uses the predictor's prior")
    kspace = KernelSpace(space)
    if not kspace.measurable:
        raise BadInput(f"the {space.name} space does not say how to build its kernels; onboard without --kernels",
                       param="kernels")
    quick = cfg.measurement.model_copy(update={k: min(getattr(cfg.measurement, k), v) for k, v in KERNEL_TIMING.items()})
    result = profile_device(cfg.model_copy(update={"measurement": quick}), store, kspace, kspace.all_archs(), quiet=quiet)
    values = store.values(cfg.name, kspace.name, "latency", runtime=cfg.runtime)
    return KernelReport(len(result.measured) + len(result.skipped), len(result.failed),
                        round(_board_seconds(store, cfg, kspace.name), 2), values.get(EMPTY))


def _curve_point(store: Store, cfg: DeviceConfig, space: Space, fit: dict[str, Any]) -> CurvePoint:
    parts = fit.get("parts", {})
    model = (f"structural ({fit.get('structural_prior')})" if parts.get("structural")
             else "+".join(p for p in ("fixed_cost", "finetune") if parts.get(p)) or "calibration")
    mape = fit.get("loo_mape")
    from modnas.toolkit.spaces.kernels import kernel_space_name

    spent = _board_seconds(store, cfg, space.name) + _board_seconds(store, cfg, kernel_space_name(space.name))
    return CurvePoint(len(store.values(cfg.name, space.name, "latency")), round(spent, 2),
                      None if mape is None else round(float(mape), 3),
                      fit.get("loo_within_10pct"), model)


def _onboard_by_time(cfg: DeviceConfig, store: Store, space: Space, minutes: float, started: float, seed: int,
                     quiet: bool) -> tuple[list[str], list[Failure], list[CurvePoint], str, dict[str, Any] | None]:
    """Measure batches chosen with the current device model until its leave-one-out error stops
    improving, the time is spent, or nothing is left to choose."""
    from modnas.toolkit.prediction.device_cost import device_from_store

    extras: list[str] = []
    failed: list[Failure] = []
    calibration = store.get_calibration(cfg.name, space.name, "latency")
    curve = [_curve_point(store, cfg, space, (calibration or {}).get("fit", {}))]
    best = curve[0].loo_mape if curve[0].loo_mape is not None else float("inf")
    stale = 0
    batch = 0
    error_fn = shipped_error(space.name)
    last = 0.0  # how long the last batch took (measure and refit): one that would not end in time is not begun
    while True:
        if time.monotonic() - started + last >= 60.0 * minutes:
            return extras, failed, curve, "time spent", calibration
        begun = time.monotonic()
        room = MINUTES_CAP - len(store.values(cfg.name, space.name, "latency"))
        if room <= 0:
            return extras, failed, curve, f"{MINUTES_CAP} measurements", calibration
        batch += 1
        try:
            cost = device_from_store(store, cfg.name, space, "latency")
            picks = choose_extras(cost, MINUTES_BATCH, seed + batch, error_fn)
        except BadInput:  # no predictor for the space: random architectures
            have = set(store.values(cfg.name, space.name, "latency"))
            picks = [a for a in space.sample(MINUTES_BATCH * (batch + 2), seed + batch) if a not in have][:MINUTES_BATCH]
        broken = {f.arch for f in failed}  # failed once: not chosen again
        picks = [a for a in picks if a not in broken][:room]
        if not picks:
            return extras, failed, curve, "nothing left to measure", calibration
        result = profile_device(cfg, store, space, picks, quiet=quiet)
        failed += result.failed
        extras += [row.arch for row in result.measured]
        calibration = refresh_embedding(store, cfg.name, space, "latency")
        last = time.monotonic() - begun
        point = _curve_point(store, cfg, space, (calibration or {}).get("fit", {}))
        curve.append(point)
        if not quiet:
            print(f"onboard {cfg.name}: {point.measurements} measurements, {point.board_seconds:.0f} board s, "
                  f"leave-one-out MAPE {point.loo_mape if point.loo_mape is not None else float('nan'):.2f} % "
                  f"({point.model})", file=sys.stderr, flush=True)
        if point.loo_mape is None:  # no predictor for the space, so no error to follow: time or count ends it
            continue
        if point.loo_mape < (1 - MINUTES_GAIN) * best:
            best, stale = point.loo_mape, 0
        else:
            stale += 1
            if stale >= MINUTES_PATIENCE:
                return extras, failed, curve, f"no better leave-one-out error in {MINUTES_PATIENCE} batches", calibration


def onboard(cfg: DeviceConfig, store: Store, space: Space, extra: int = 0, seed: int = 0,
            quiet: bool = False, kernels: bool = False, minutes: float | None = None) -> OnboardResult:
    """Doctor, profile the references, then ``extra`` architectures chosen with the device model so far
    (modnas.toolkit.prediction.device_model.choose_extras), and fit the device model to all of them.

    ``kernels``: also measure the space's kernels (the structural model's prior). ``minutes``: onboard by
    time instead of by count: batches chosen with the model so far until its leave-one-out error on the
    board's points stops improving or the time (counted from the start, references included) is spent."""
    started = time.monotonic()
    if extra < 0:
        raise BadInput(f"`extra` must not be negative, got {extra}", param="extra")
    if minutes is not None and not (minutes > 0 and np.isfinite(minutes)):
        raise BadInput(f"`minutes` must be a positive number, got {minutes}", param="minutes")
    if minutes is not None and extra:
        raise BadInput("give either --extra or --minutes, not both", param=("extra", "minutes"))
    fingerprint, probe = fingerprint_device(cfg, store, runtimes=[cfg.runtime])
    runtime = cfg.runtime
    if not probe.get("runtimes", {}).get(runtime, {}).get("available", True):
        raise BoardError(f"board {cfg.name}: runtime {runtime} is not usable there: "
                         f"{probe['runtimes'][runtime].get('detail', '')}")

    refs = space.reference_archs()
    result = profile_device(cfg, store, space, refs, quiet=quiet)  # phase 1: the references
    failed_refs = [f for f in result.failed if f.arch in refs]
    if failed_refs:
        raise BoardError(f"board {cfg.name}: {len(failed_refs)} reference architecture(s) failed, first: "
                         f"{failed_refs[0].error}")
    kernel_report = measure_kernels(cfg, store, space, quiet=quiet) if kernels else None
    calibration = refresh_embedding(store, cfg.name, space, "latency")
    extras: list[str] = []
    failed = list(result.failed)
    curve: list[CurvePoint] | None = None
    stopped: str | None = None
    if extra:  # phase 2: where they cut the error that matters, chosen with the device model so far
        extras = extras_for(store, cfg.name, space, extra, seed)
        failed += profile_device(cfg, store, space, extras, quiet=quiet).failed
        calibration = refresh_embedding(store, cfg.name, space, "latency")
    elif minutes is not None:
        extras, more, curve, stopped, calibration = _onboard_by_time(cfg, store, space, minutes, started, seed, quiet)
        failed += more
    if cfg.energy.sensor != "none":
        refresh_embedding(store, cfg.name, space, "energy")
    rows = _stored_rows(store, cfg, space, refs, runtime)
    return OnboardResult(cfg.name, fingerprint, [rows[a] for a in refs if a in rows], len(extras), extras, failed,
                         calibration or {}, (calibration or {}).get("fit", {}),
                         store.get_embedding(cfg.name, space.name, "latency"), kernel_report, curve, stopped)


def _cost_without(store: Store, name: str, space: Space, exclude: set[str]) -> Any:
    """The device's cost model calibrated without the architectures being validated (the stored device
    model itself when none of them is among its measurements: nothing to refit). The reference
    architectures stay: they are the device's embedding."""
    from modnas.toolkit.prediction.device_cost import device_cost, device_from_store

    exclude = exclude - set(_references(space))
    measured = store.values(name, space.name, "latency")
    values = {a: v for a, v in measured.items() if a not in exclude}
    if not values:
        raise BadInput(f"device {name} has no latency measurements; run `modnas onboard {name}` first")
    if len(values) == len(measured):
        return device_from_store(store, name, space, "latency")
    return device_cost(name, values, space, "latency")


def _references(space: Space) -> list[str]:
    return [space.canonical(a) for a in space.reference_archs()]


def _budget_checks(archs: list[str], error: np.ndarray, predicted: np.ndarray, measured: np.ndarray,
                   margin: float) -> list[BudgetCheck]:
    """At measured-latency percentiles: the pick among these architectures, and whether it truly fits."""
    out = []
    for q in BUDGET_PERCENTILES:
        budget = float(np.percentile(measured, q))
        ok = np.flatnonzero(predicted * (1 + margin) <= budget)
        if not len(ok):
            continue
        best = ok[np.lexsort((predicted[ok], error[ok]))[0]]
        out.append(BudgetCheck(q, budget, archs[best], float(predicted[best]), float(measured[best]),
                               bool(measured[best] <= budget)))
    return out


MIN_VALIDATED = 3  # a read-out with fewer distinct architectures is widened by one refinement round
MIN_GRID = 8  # a preference grid with fewer distinct arg-maxes is widened by the spreading read-out (`pareto`'s)
SPREAD_VALIDATED = 12  # ... at most this many of its architectures
VALIDATE_ROUNDS = 3  # interleaved rounds: every architecture measured once per round, order rotated
MAX_ROUNDS = 20


def _round_rows(store: Store, cfg: DeviceConfig, space: Space, archs: set[str]) -> dict[str, dict]:
    """The stored latency row of each architecture taken in the device's latest campaign."""
    campaign = store.campaigns(cfg.name)[-1]["id"]
    return {r["arch"]: r for r in store.measurement_rows(cfg.name, space.name, "latency")
            if r["arch"] in archs and r["campaign_id"] == campaign and r["runtime"] == cfg.runtime}


def _store_rounds(store: Store, cfg: DeviceConfig, space: Space, taken: dict[str, list[dict]]) -> None:
    """Each architecture measured in several rounds is stored once: its value the median of the round
    medians, its samples every round's blocks (``summary.rounds`` keeps the round medians)."""
    from modnas.profilers.stats import summarize

    for arch, rows in taken.items():
        if len(rows) < 2 or any(not r["samples"] for r in rows):
            continue
        last = rows[-1]
        blocks = [block for r in rows for block in r["samples"]]
        medians = [float(r["value"]) for r in rows]
        pooled = summarize(blocks)
        summary = {**(last["summary"] or {}), **pooled, "pooled_median": pooled["median"],
                   "median": float(np.median(medians)), "rounds": medians}
        store.add_measurement(device=cfg.name, space=space.name, arch=arch, metric="latency",
                              value=summary["median"], runtime=last["runtime"], settings_key=last["settings_key"],
                              artifact_sha=last["artifact_sha"], campaign_id=last["campaign_id"],
                              source=last["source"], summary=summary, samples=blocks)


def measure_rounds(cfg: DeviceConfig, store: Store, space: Space, archs: list[str], rounds: int,
                   quiet: bool = False, run: str | None = None) -> tuple[dict[str, list[float]], list[Failure]]:
    """Measure every architecture once per round, each round in a rotated order (round i starts i*n/rounds
    further along), each measurement taken afresh; the per-round medians, and what failed. The store
    then holds one measurement per architecture: the median of its rounds, with every round's samples."""
    values: dict[str, list[float]] = {a: [] for a in archs}
    taken: dict[str, list[dict]] = {a: [] for a in archs}
    failed: dict[str, Failure] = {}
    n = len(archs)
    for i in range(rounds):
        shift = (i * n) // rounds
        order = archs[shift:] + archs[:shift]
        result = profile_device(cfg, store, space, order, quiet=quiet, run=run, force=True)
        measured = {row.arch for row in result.measured}
        for row in result.measured:
            values[row.arch].append(float(row.latency_ms.median))
        for arch, stored in _round_rows(store, cfg, space, measured).items():
            taken[arch].append(stored)
        for f in result.failed:
            failed.setdefault(f.arch, f)
    _store_rounds(store, cfg, space, taken)
    return values, [f for a, f in failed.items() if not values[a]]


def validate(cfg: DeviceConfig, store: Store, space: Space, run: str | None = None, archs: str = "pareto",
             out: Path | None = None, quiet: bool = False, rounds: int = VALIDATE_ROUNDS) -> ValidationResult:
    """Measure the chosen architectures on the board in interleaved rounds and compare the median of
    rounds with the predictions, beside the board's own repeatability between rounds."""
    from modnas.toolkit.workflow.report import (agreement, markdown_report, plot_fronts,
                                                plot_predicted_vs_measured, repeatability)
    from modnas.toolkit.search.readout import candidates, pareto as readout_pareto
    from modnas.toolkit.search.run import load_run

    if not 1 <= rounds <= MAX_ROUNDS:
        raise BadInput(f"`rounds` must be between 1 and {MAX_ROUNDS}, got {rounds}", param="rounds")
    run_obj = load_run(run, space.name)
    if archs == "pareto":  # every distinct architecture of the 24-preference read-out
        cost = _cost_without(store, cfg.name, space, set())
        chosen = candidates(run_obj, cost.embedding, READOUT_PREFERENCES)[0]
        if len(chosen) < MIN_GRID:  # the grid collapsed to a few networks (gpt): validate the front `pareto` shows
            try:
                chosen = list(dict.fromkeys(chosen + [r["arch"] for r in readout_pareto(run_obj, cost,
                                                                                        SPREAD_VALIDATED)]))
            except BadInput:  # the run optimises an objective this board has no model of (energy): keep the grid's
                pass
        if len(chosen) < MIN_VALIDATED and run_obj.surrogate is not None:
            # a front of one or two: add the one-edit refinement's front (cheap with a surrogate)
            from modnas.toolkit.search.readout import refine

            chosen = list(dict.fromkeys(chosen + refine(run_obj, {"latency": cost}, chosen, 1)))
        if len(chosen) < 2:
            raise BadInput(f"the run's read-out for {cfg.name} has {len(chosen)} architecture; validating needs "
                           "at least 2: give `archs` FILE", param="archs")
    else:
        chosen = resolve_archs(space, archs)
    cost = _cost_without(store, cfg.name, space, set(chosen))
    predicted_all = dict(zip(chosen, cost.predict(chosen)))
    per_round, failed = measure_rounds(cfg, store, space, chosen, rounds, quiet=quiet, run=run)
    ok = [a for a in chosen if per_round[a]]
    if len(ok) < 2:
        raise BoardError(f"board {cfg.name}: only {len(ok)} of {len(chosen)} architectures could be measured")
    measured = np.array([np.median(per_round[a]) for a in ok])
    predicted = np.array([predicted_all[a] for a in ok])
    error = run_obj.predict_error(ok)
    in_fit = set(ok) & set(_references(space))  # predicted in sample: left out of the figures where others remain
    scored = np.array([a not in in_fit for a in ok]) if len(ok) - len(in_fit) >= 2 else np.ones(len(ok), bool)
    stats = agreement(predicted[scored], measured[scored])
    rep = repeatability({a: per_round[a] for a in ok})
    out = Path(out) if out else modnas_home() / "validation" / cfg.name
    out.mkdir(parents=True, exist_ok=True)
    doc = ValidationResult(
        cfg.name, stats["spearman"], stats["kendall"], stats["mape"], stats["within_10pct"], stats["n"],
        measured_as="median of rounds", rounds=rounds, repeatability=rep, repeatability_mape=rep["mape"],
        mape_to_repeatability=(stats["mape"] / rep["mape"] if rep["mape"] else None),
        rows=[ValidationRow(a, float(p), float(m), float(e), per_round[a], True if cfg.is_replay else None,
                            True if a in in_fit else None)
              for a, p, m, e in zip(ok, predicted, measured, error)],
        failed=failed, margin=cost.margin(), budgets=_budget_checks(ok, error, predicted, measured, cost.margin()))
    doc.plot = str(plot_predicted_vs_measured(predicted, measured, out / "predicted_vs_measured.png",
                                                 f"{cfg.name}: Spearman {stats['spearman']:.3f}, "
                                                 f"MAPE {stats['mape']:.1f} %"
                                                 + (f" (repeatability {rep['mape']:.1f} %)"
                                                    if rep["mape"] is not None else "")))
    doc.front_plot = str(plot_fronts(error, predicted, measured, out / "fronts.png",
                                     f"{cfg.name}: predicted and measured front",
                                     "predicted loss (nats/token)" if space.quality == "loss" else "predicted error (%)"))
    (out / "report.md").write_text(markdown_report(doc.to_json()))
    doc.report = str(out / "report.md")
    (out / "validation.json").write_text(json.dumps(doc.to_json(), indent=2) + "\n")
    return doc


# a language model's quickstart times two graphs per architecture (decode and prefill): shorter blocks keep
# it within minutes (each block still at least 20 runs; the blocks' spread is the reported repeatability)
LM_QUICK_TIMING = {"warmup_s": 0.2, "min_runs": 20, "min_time_s": 0.2, "repeats": 3, "cooldown_s": 0.05}
QUICKSTART_EXTRA_LM = 8


def local_device(out: Path, space: Space | None = None) -> DeviceConfig:
    """This machine as the board, with its work directory kept under ``out`` (a language model's with
    ``LM_QUICK_TIMING``)."""
    cfg = load_device("local")
    update: dict[str, Any] = {"workdir": str((out / "board").resolve())}
    if space is not None and space.inputs == "tokens":
        update["measurement"] = cfg.measurement.model_copy(update=LM_QUICK_TIMING)
    return cfg.model_copy(update=update)


def quickstart_budgets(validation: ValidationResult) -> list[float]:
    """Budgets spread over the validated front: its measured latency at ``BUDGET_PERCENTILES``."""
    measured = np.array([r.measured for r in validation.rows])
    return sorted({float(np.percentile(measured, q)) for q in BUDGET_PERCENTILES})


@dataclass
class ValidationSummary(JsonDoc):
    """The quickstart's validation, in short (the whole of it is ``validation.json`` beside the report)."""

    spearman: float
    kendall: float
    mape: float
    within_10pct: float
    rounds: int
    repeatability_mape: float | None
    plot: str
    front_plot: str
    report: str


@dataclass
class QuickstartExport(JsonDoc):
    """A verified pick exported: the pick's predicted and measured latency and budget, then the export's reply."""

    arch: str
    predicted: dict[str, float]
    measured: MeasuredLatency | None
    budget_ms: float
    export: ExportReport

    def to_json(self) -> dict[str, Any]:
        doc = {"arch": self.arch, "predicted": self.predicted,
               "measured": None if self.measured is None else self.measured.to_json(), "budget_ms": self.budget_ms}
        doc.update(self.export.to_json())
        return doc


@dataclass
class QuickstartResult(JsonDoc):
    """``modnas quickstart``: this machine onboarded as a board, its front, the verified picks, their exports
    and the validation."""

    device: str
    fingerprint: dict[str, Any]
    front: Front
    exported: list[QuickstartExport]
    picks: list[VerifiedSelection]
    validation: ValidationSummary
    seconds: float
    out: str


@torch_threads(1)  # the controller's own torch work (fits, exports) stays off the cores the board times on
def quickstart(store: Store, out: Path, quiet: bool = False, space_name: str = "nb201") -> QuickstartResult:
    """Onboard this machine, validate its read-out front in rounds, pick for three budgets with the
    board verifying each pick, export the picks; everything is written under ``out``."""
    from modnas.toolkit.workflow.exporting import export_arch
    from modnas.toolkit.prediction.device_cost import device_from_store
    from modnas.toolkit.workflow.report import markdown_report
    from modnas.toolkit.search.readout import Front, pareto
    from modnas.toolkit.search.run import load_run
    from modnas.toolkit.workflow.verify import verify_on_board

    start = time.monotonic()
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    space = get_space(space_name)
    cfg = local_device(out, space)
    say = (lambda msg: None) if quiet else (lambda msg: print(f"[{time.monotonic() - start:5.1f}s] {msg}",
                                                              file=sys.stderr))
    extra = QUICKSTART_EXTRA_LM if space.inputs == "tokens" else QUICKSTART_EXTRA
    say(f"onboarding this machine as board {cfg.name!r} ({len(space.reference_archs())} reference and {extra} more "
        "architectures)")
    onboarded = onboard(cfg, store, space, extra=extra, quiet=quiet)
    say(f"validating the read-out front on this machine ({VALIDATE_ROUNDS} interleaved rounds)")
    validation = validate(cfg, store, space, None, "pareto", out / "validation", quiet=quiet)
    run_obj = load_run(None, space.name)
    cost = device_from_store(store, cfg.name, space.name, "latency")
    front = Front.of(pareto(run_obj, cost))
    rep = validation.repeatability_mape
    picks = []
    for budget in quickstart_budgets(validation):
        say(f"picking for {budget:.3f} ms, verified on this machine")
        picks.append(verify_on_board(cfg, store, space, run_obj, cost, budget, quiet=True,
                                     repeatability=rep / 100 if rep is not None else None))
    exported: list[QuickstartExport] = []
    for pick in picks:
        if pick.arch is None or pick.predicted is None:
            continue
        first = next(p for p in picks if p.arch == pick.arch)
        if first is not pick:  # exported (and sampled) already for another budget
            pick.loss, pick.sample = first.loss, first.sample
            continue
        if space.inputs == "tokens":  # a language model: ONNX and INT8 with each file's loss, and a sample
            say(f"exporting {pick.arch} (ONNX, INT8) with each file's held-out loss, and a sample of its text")
            files = export_arch(pick.arch, space_name=space.name, formats=["onnx"], quantize="int8",
                                out=out / "exports", run=str(run_obj.path))
            pick.loss = files.loss
            pick.sample = lm_sample(space, pick.arch, str(run_obj.path))
        else:
            say(f"exporting {pick.arch} (ONNX, TVM)")
            files = export_arch(pick.arch, space_name=space.name, formats=["onnx", "tvm"], out=out / "exports",
                                device=cfg)
        exported.append(QuickstartExport(pick.arch, pick.predicted, pick.measured, pick.budget_ms, files))
    report = Path(validation.report)
    report.write_text(markdown_report(validation.to_json(), [p.to_json() for p in picks]))
    (report.parent / "picks.json").write_text(json.dumps([p.to_json() for p in picks], indent=2) + "\n")
    say("done")
    summary = ValidationSummary(validation.spearman, validation.kendall, validation.mape, validation.within_10pct,
                                validation.rounds, validation.repeatability_mape, validation.plot,
                                validation.front_plot, validation.report)
    return QuickstartResult(cfg.name, onboarded.fingerprint, front, exported, picks, summary,
                            time.monotonic() - start, str(out))


QUICKSTART_SAMPLE_CHARS = 200  # characters of each language-model pick's sample


def lm_sample(space: Space, arch: str, run: str) -> dict[str, Any]:
    """A ``QUICKSTART_SAMPLE_CHARS``-character sample of ``arch`` (greedy, the run's supernet weights), decoded
    by onnxruntime with its key/value cache, and its tokens per second."""
    from modnas.toolkit.workflow.lm import sample_lm

    res = sample_lm(space, arch, run=run, tokens=QUICKSTART_SAMPLE_CHARS, fmt="onnx")
    return {"text": res.text, "tokens_per_s": round(float(res.tokens_per_s), 1)}


def shipped_error(space_name: str) -> Callable[[list[str]], np.ndarray] | None:
    """The shipped run's predicted error, where it comes from a surrogate (cheap for thousands)."""
    try:
        from modnas.toolkit.search.run import load_run

        run = load_run(None, space_name)
        return run.predict_error if run.surrogate is not None else None
    except (BadInput, OSError):
        return None


def extras_for(store: Any, name: str, space: Any, n: int, seed: int = 0) -> list[str]:
    """The ``n`` architectures to measure after the references on a stored device.

    Chosen from the reference measurements alone, so an interrupted onboarding chooses the same
    ones again and measures only what is missing; random where no predictor fits the space.
    """
    values = store.values(name, space.name, "latency")
    refs = [space.canonical(r) for r in space.reference_archs()]
    try:
        cost = device_cost(name, {r: values[r] for r in refs if r in values}, space, "latency")
    except BadInput:
        return [a for a in space.sample(n + len(refs), seed) if a not in refs][:n]
    return choose_extras(cost, n, seed, shipped_error(space.name))
