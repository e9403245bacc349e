"""MetaSchedule tuning of TVM builds with one tuning database per board, shared by every architecture.

The database lives in ``<MODNAS_HOME>/tune/<board>/<target digest>/``: MetaSchedule's JSON files
(``database_workload.json``, ``database_tuning_record.json``: every measured candidate, appended as it
is measured) and ``progress.json`` (trials spent per kernel, and whether its budget is spent).
A kernel (a fused TIR function, compared structurally) whose budget is spent is reused by every later
export for that board, so a second NB201 cell only tunes the kernels the first did not have. Tuning
is cut into chunks of trials; ``progress.json`` is written after each, so an interrupted tuning
resumes where it stopped (the candidates it measured stay in the database either way). Candidates are
timed on the board: MetaSchedule's local runner when the target runs here, its RPC runner through a
TVM RPC tracker otherwise. Kernels the database lacks keep the untuned ``parallel`` schedule.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, TextIO

from pydantic import BaseModel, ConfigDict, Field

from modnas.exporters.tvm import error_line
from modnas.profilers.errors import BadInput, NotAvailable

PROGRESS_FILE = "progress.json"
WORKLOADS_FILE = "database_workload.json"
RECORDS_FILE = "database_tuning_record.json"


class TvmRpcSettings(BaseModel):
    """A TVM RPC tracker where the board's server is registered, for timing tuning candidates on the board
    (``python -m tvm.exec.rpc_server --tracker=HOST:PORT --key=KEY`` there); a device file's ``tvm_rpc``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tracker_host: str
    tracker_port: int = Field(9190, ge=1, le=65535)
    tracker_key: str
    timeout_s: int = Field(60, ge=1, le=3600)


class TuneBudget(BaseModel):
    """How much tuning one export may do: trials per kernel, and a wall-clock limit for the whole call."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    trials: int = Field(64, ge=1, le=100_000, description="measured candidates per kernel")
    minutes: float | None = Field(None, gt=0, description="stop starting new chunks after this long")
    chunk: int = Field(32, ge=1, le=1024, description="trials per MetaSchedule call (progress is saved after each)")
    runner_timeout_s: float = Field(30.0, gt=0)


@dataclass
class TuneSummary:
    """What one tuning call did; ``reused`` kernels were tuned earlier (by any architecture)."""

    database: str
    tasks: int
    reused: int
    tuned_now: int
    trials_now: int
    seconds: float
    stopped_by_clock: bool
    pending: int
    kernels: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def target_digest(target: dict[str, Any]) -> str:
    """A short, stable name for a target dict (the database folder below the board's)."""
    text = json.dumps(target, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def tuning_dir(board: str, target: dict[str, Any], home: Path) -> Path:
    """``<home>/tune/<board>/<target digest>``; the board name must be a plain file name."""
    if not board or "/" in board or board in (".", "..") or "\0" in board:
        raise BadInput(f"board name {board!r} cannot name a tuning folder")
    return home / "tune" / board / target_digest(target)


class TuneProgressFile:
    """``progress.json``: per kernel key, its task name, trials spent and whether its budget is spent."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.kernels: dict[str, dict[str, Any]] = {}
        if path.is_file():
            try:
                doc = json.loads(path.read_text())
            except ValueError:
                raise BadInput(f"{path}: not a tuning progress file (corrupt JSON)") from None
            if not isinstance(doc, dict) or not isinstance(doc.get("kernels"), dict):
                raise BadInput(f"{path}: not a tuning progress file")
            self.kernels = doc["kernels"]

    def trials(self, key: str) -> int:
        return int(self.kernels.get(key, {}).get("trials", 0))

    def done(self, key: str, budget: int) -> bool:
        entry = self.kernels.get(key, {})
        return bool(entry.get("exhausted")) or int(entry.get("trials", 0)) >= budget

    def add(self, key: str, name: str, trials: int, exhausted: bool) -> None:
        entry = self.kernels.setdefault(key, {"name": name, "trials": 0, "exhausted": False})
        entry["trials"] = int(entry["trials"]) + trials
        entry["exhausted"] = bool(entry.get("exhausted")) or exhausted

    def save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"kernels": self.kernels}, indent=1, sort_keys=True) + "\n")
        os.replace(tmp, self.path)


def prepare_module(onnx_path: str | Path, target: Any) -> Any:
    """The Relax module both tuning and the tuned build start from (the same passes, so kernels match)."""
    import onnx
    import tvm
    from tvm.relax.frontend.onnx import from_onnx

    from modnas.exporters.tvm import onnx_input

    input_name, input_shape = onnx_input(onnx_path)
    mod = from_onnx(onnx.load(str(onnx_path)), shape_dict={input_name: input_shape}, dtype_dict="float32")
    with target:
        return tvm.transform.Sequential([
            tvm.relax.transform.DecomposeOpsForInference(),
            tvm.relax.transform.CanonicalizeBindings(),
            tvm.relax.pipeline.zero_pipeline(),
        ])(mod)


def open_database(db_dir: Path) -> Any:
    """The board's MetaSchedule JSON database (created empty when new)."""
    from tvm.s_tir import meta_schedule as ms

    db_dir.mkdir(parents=True, exist_ok=True)
    try:
        return ms.database.JSONDatabase(str(db_dir / WORKLOADS_FILE), str(db_dir / RECORDS_FILE),
                                        allow_missing=True, module_equality="structural")
    except Exception as exc:  # a truncated or foreign file
        raise BadInput(f"{db_dir}: cannot read the tuning database ({error_line(exc)})") from None


def _kernel_key(mod: Any) -> str:
    """The structural hash MetaSchedule's database files a kernel under."""
    from tvm.s_tir import meta_schedule as ms

    return str(ms.database.Workload(mod).as_json()[0])


def _best_ms(database: Any, mod: Any) -> float | None:
    if not database.has_workload(mod):
        return None
    top = database.get_top_k(database.commit_workload(mod), 1)
    if not top or not top[0].run_secs:
        return None
    secs = [float(s) for s in top[0].run_secs]
    return 1000.0 * sum(secs) / len(secs)


def _flops(mod: Any) -> float:
    """Estimated FLOPs of a kernel (tuning order: largest first, so a clock limit cuts the cheap ones)."""
    try:
        from tvm.s_tir.analysis import estimate_tir_flops

        return float(estimate_tir_flops(mod))
    except Exception:
        return 0.0


def in_process_builder(cc: str | None = None) -> Any:
    """A MetaSchedule builder that compiles candidates in this process, one after another.

    MetaSchedule's LocalBuilder starts a fresh pool of worker processes for every batch, and each worker
    imports TVM first: on a loaded 2-core host that cost about 100 s per batch of 8 candidates here."""
    from tvm.s_tir.meta_schedule.builder import BuilderResult, PyBuilder
    from tvm.s_tir.meta_schedule.builder.local_builder import default_build, default_export
    from tvm.ir.utils import derived_object

    export = _exporter_with(cc) if cc else default_export

    @derived_object
    class _InProcessBuilder(PyBuilder):
        def build(self, build_inputs: list[Any]) -> list[Any]:
            results = []
            for item in build_inputs:
                try:
                    results.append(BuilderResult(export(default_build(item.mod, item.target, None)), None))
                except Exception as exc:  # a candidate that does not build counts as failed, not fatal
                    results.append(BuilderResult(None, f"build failed: {error_line(exc)}"))
            return results

    return _InProcessBuilder()


def cost_model_name() -> str:
    """MetaSchedule's XGBoost cost model when xgboost is installed, else random ranking of candidates."""
    try:
        import xgboost  # noqa: F401  # pylint: disable=unused-import
    except ImportError:
        return "random"
    return "xgb"


def _strategy() -> Any:
    """Random sampling of schedules without a cost model to rank them (MetaSchedule's evolution would
    only reshuffle at random, at ~20 s a batch here); a smaller evolutionary search with XGBoost."""
    from tvm.s_tir import meta_schedule as ms

    if cost_model_name() == "random":
        return ms.search_strategy.ReplayTrace()
    return ms.search_strategy.EvolutionarySearch(population_size=128, genetic_num_iters=2)


def make_cost_model() -> Any:
    """The cost model that ranks candidates before they are measured (see :func:`cost_model_name`)."""
    from tvm.s_tir import meta_schedule as ms

    name = cost_model_name()
    if name == "xgb":
        return ms.cost_model.XGBModel(num_tuning_cores=os.cpu_count() or 1)
    return ms.cost_model.CostModel.create(name)


def make_runner(runner: TvmRpcSettings | None, budget: TuneBudget) -> Any:
    """MetaSchedule's local runner (``None``) or its RPC runner on the tracker's board."""
    from tvm.s_tir import meta_schedule as ms

    config = ms.runner.EvaluatorConfig(number=3, repeat=1, min_repeat_ms=50, enable_cpu_cache_flush=False)
    if runner is None:
        return ms.runner.LocalRunner(timeout_sec=budget.runner_timeout_s, evaluator_config=config)
    rpc = ms.runner.RPCConfig(tracker_host=runner.tracker_host, tracker_port=runner.tracker_port,
                              tracker_key=runner.tracker_key, session_timeout_sec=runner.timeout_s)
    return ms.runner.RPCRunner(rpc_config=rpc, evaluator_config=config)


@contextmanager
def _threads(threads: int | None) -> Iterator[None]:
    """``TVM_NUM_THREADS`` for the runner's worker processes (inherited when they start), restored after."""
    old = os.environ.get("TVM_NUM_THREADS")
    if threads:
        os.environ["TVM_NUM_THREADS"] = str(threads)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("TVM_NUM_THREADS", None)
        else:
            os.environ["TVM_NUM_THREADS"] = old


def tune_module(mod: Any, target: Any, db_dir: Path, budget: TuneBudget, *, runner: TvmRpcSettings | None = None,
                cc: str | None = None, threads: int | None = None, log: TextIO | None = sys.stderr,
                clock: Callable[[], float] = time.monotonic) -> TuneSummary:
    """Tune the kernels of ``mod`` the board's database lacks, within ``budget``; progress lines on ``log``."""
    from tvm.s_tir import meta_schedule as ms

    started = clock()
    deadline = started + 60.0 * budget.minutes if budget.minutes else math.inf
    database = open_database(db_dir)
    progress = TuneProgressFile(db_dir / PROGRESS_FILE)
    tasks = ms.relax_integration.extract_tasks(mod, target)
    tasks = [t for t in tasks if not t.dispatched[0].attrs or not t.dispatched[0].attrs.get("tirx.is_scheduled", False)]
    entries = [(t, _kernel_key(t.dispatched[0])) for t in tasks]
    reused = [key for _, key in entries if progress.done(key, budget.trials)]
    pending = sorted([(t, key) for t, key in entries if not progress.done(key, budget.trials)],
                     key=lambda tk: -_flops(tk[0].dispatched[0]))
    _say(log, f"tune: {len(entries)} kernels, {len(reused)} from the database {db_dir}, {len(pending)} to tune "
              f"({budget.trials} trials each)")
    trials_now, tuned_now, stopped = 0, 0, False
    kernels: list[dict[str, Any]] = []
    if pending:
        with _threads(threads):
            builder = in_process_builder(cc)
            ms_runner = make_runner(runner, budget)
            cost_model = make_cost_model()  # one for all kernels, so it learns across them
            for number, (task, key) in enumerate(pending, 1):
                kernel_mod = task.dispatched[0]
                spent_before = progress.trials(key)
                while not progress.done(key, budget.trials):
                    if clock() >= deadline:
                        stopped = True
                        break
                    chunk = min(budget.chunk, budget.trials - progress.trials(key))
                    measured = _tune_chunk(task, chunk, db_dir, database, builder, ms_runner, cost_model)
                    # fewer candidates than asked: the search space is used up, more trials find nothing new
                    progress.add(key, task.task_name, measured, exhausted=measured < chunk)
                    progress.save()
                    trials_now += measured
                    best = _best_ms(database, kernel_mod)
                    _say(log, f"tune [{number}/{len(pending)}] {task.task_name}: {progress.trials(key)}/{budget.trials} "
                              f"trials, best {'-' if best is None else f'{best:.4f} ms'}, {clock() - started:.0f} s")
                if progress.trials(key) > spent_before:
                    tuned_now += 1
                kernels.append({"task": task.task_name, "trials": progress.trials(key),
                                "best_ms": _best_ms(database, kernel_mod)})
                if stopped:
                    break
    left = sum(1 for _, key in pending if not progress.done(key, budget.trials))
    if stopped:
        _say(log, f"tune: wall-clock limit ({budget.minutes:g} min) reached; {left} kernels left for a later call")
    return TuneSummary(database=str(db_dir), tasks=len(entries), reused=len(reused), tuned_now=tuned_now,
                       trials_now=trials_now, seconds=round(clock() - started, 2), stopped_by_clock=stopped,
                       pending=left, kernels=kernels)


def _tune_chunk(task: Any, trials: int, db_dir: Path, database: Any, builder: Any, runner: Any,
                cost_model: Any) -> int:
    """One MetaSchedule call on one kernel; the number of candidates it measured."""
    from tvm.s_tir import meta_schedule as ms

    before = len(database)
    context = _tune_context(task, db_dir / "logs")
    ms.tune.tune_tasks(tasks=[context], task_weights=[float(task.weight)], work_dir=str(db_dir / "logs"),
                       max_trials_global=trials, max_trials_per_task=trials, num_trials_per_iter=trials,
                       builder=builder, runner=runner, database=database, task_scheduler="round-robin",
                       cost_model=cost_model)
    return len(database) - before


def _tune_context(task: Any, log_dir: Path) -> Any:
    """MetaSchedule's tuning context for one kernel, its log in ``log_dir`` and none on the console
    (MetaSchedule's own set-up prints its tables on stdout, where the command's JSON goes)."""
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.meta_schedule.logging import create_loggers, get_logger
    from tvm.s_tir.meta_schedule.utils import fork_seed

    log_dir.mkdir(parents=True, exist_ok=True)
    name = f"tvm.s_tir.meta_schedule.modnas.{task.task_name[:100]}"
    create_loggers(log_dir=str(log_dir), params=[{"log_dir": str(log_dir), "logger_name": name}],
                   logger_config={"handlers": {"tvm.s_tir.meta_schedule.console": {"class": "logging.NullHandler"}}})
    return ms.TuneContext(mod=task.dispatched[0], target=task.target, space_generator="post-order-apply",
                          search_strategy=_strategy(), task_name=task.task_name, logger=get_logger(name),
                          rand_state=fork_seed(None, n=1)[0], num_threads="physical").clone()


def build_tuned(mod: Any, target: Any, db_dir: Path) -> Any:
    """Compile ``mod`` with the database's best schedules; kernels it lacks get the ``parallel`` schedule."""
    import tvm
    from tvm import relax
    from tvm.relax import pipeline as rp
    from tvm.relax.backend import cpu_generic
    from tvm.relax.transform import MetaScheduleApplyDatabase
    from tvm.s_tir import dlight

    from modnas.exporters.tvm_schedule import parallel_rule

    database = open_database(db_dir)

    @tvm.transform.module_pass(opt_level=3)
    def _pipeline(module: Any, _ctx: Any) -> Any:
        passes = [*rp.library_dispatch_passes(target), relax.transform.LegalizeOps(),
                  relax.transform.AnnotateTIROpPattern(), relax.transform.FoldConstant(),
                  relax.transform.FuseOps(), relax.transform.FuseTIR(), MetaScheduleApplyDatabase(),
                  dlight.ApplyDefaultSchedule(parallel_rule()),
                  *cpu_generic.pipeline.dataflow_lower_passes(target), *cpu_generic.finalize_passes(target)]
        return tvm.transform.Sequential(passes)(module)

    with target, database, tvm.transform.PassContext(opt_level=3):
        return tvm.compile(mod, target=target, relax_pipeline=_pipeline)


def tune_and_build(onnx_path: str | Path, target: dict[str, Any], out_dir: str | Path, *, board: str, home: Path,
                   budget: TuneBudget, runner: TvmRpcSettings | None = None, name: str | None = None,
                   threads: int | None = None, check: bool = True, log: TextIO | None = sys.stderr) -> Any:
    """Tune (what the board's database lacks) and build one ONNX file; an ExportResult whose meta says
    ``tuned``, the trial budget, and kernels reused from the database vs tuned now."""
    import tvm

    from modnas.exporters.result import ExportResult, sha256_file, write_sidecar
    from modnas.exporters.targets import runs_here, target_arch, validate_target
    from modnas.exporters.tvm import build_paths, cross_compiler, verify_tvm

    target = validate_target(dict(target))
    here = runs_here(target)
    cc = cross_compiler(target)
    if runner is None and not here:
        raise BadInput(f"tuning for {target_arch(target)} needs the board's timings: name a TVM RPC tracker "
                       "(tvm_rpc in the device file); this machine cannot time another CPU's code")
    if not here and not cc:
        raise NotAvailable(f"tuning for {target_arch(target)} needs its cross compiler here")
    onnx_path, input_name, input_shape, out, stem = build_paths(onnx_path, out_dir, name)
    tvm_target = tvm.target.Target(target)
    db_dir = tuning_dir(board, target, home)
    mod = prepare_module(onnx_path, tvm_target)
    summary = tune_module(mod, tvm_target, db_dir, budget, runner=runner, cc=cc, threads=threads, log=log)
    started = time.perf_counter()
    executable = build_tuned(mod, tvm_target, db_dir)
    artifact = out / f"{stem}.so"
    if cc:
        executable.export_library(str(artifact), cc=cc)
    else:
        executable.export_library(str(artifact))
    diff = verify_tvm(artifact, onnx_path) if check and here else None
    meta: dict[str, Any] = {
        "format": "tvm", "tvm_version": str(tvm.__version__), "target": target, "arch": target_arch(target),
        "linked": "so", "cc": cc, "input_name": input_name, "input_shape": input_shape, "dtype": "float32",
        "onnx_sha256": sha256_file(onnx_path), "compile_seconds": round(time.perf_counter() - started, 3),
        "max_abs_diff": diff, "tuned": True, "schedule": "metaschedule+parallel",
        "tuning": {"board": board, "trials_per_kernel": budget.trials, "minutes": budget.minutes,
                   "runner": "rpc" if runner else "local", **summary.as_dict()},
    }
    meta["tuning"].pop("kernels")
    write_sidecar(artifact, meta)
    return ExportResult(path=artifact, sha256=sha256_file(artifact), max_abs_diff=diff, meta=meta)


def _exporter_with(cc: str) -> Any:
    """An ``f_export`` for MetaSchedule's builder that links candidates with ``cc``."""
    import tempfile

    def export(module: Any) -> str:
        path = os.path.join(tempfile.mkdtemp(prefix="modnas-tune-"), "candidate.so")
        module.export_library(path, cc=cc)
        return path

    return export


def _say(log: TextIO | None, line: str) -> None:
    if log is not None:
        print(line, file=log, flush=True)

