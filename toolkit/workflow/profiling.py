"""Profiling campaigns: Build -> Upload -> Run -> Parse for each architecture, stored as it completes."""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from modnas.toolkit.workflow.artifacts import build_artifact
from modnas.toolkit.config import DeviceConfig, modnas_home
from modnas.toolkit.errors import BadInput, BoardError
from modnas.toolkit.interrupts import Stop
from modnas.toolkit.progress import ProgressBar
from modnas.toolkit.results import DocList, JsonDoc, internal, omitted
from modnas.toolkit.spaces import Space
from modnas.toolkit.store import Store

MAX_PARALLEL_BOARDS = 4
STOP_WAIT_S = 3.0  # after Ctrl-C/SIGTERM: how long to wait for the other boards' campaigns to end


class Interrupted(KeyboardInterrupt):
    """A campaign in a worker thread was stopped because the command is being interrupted."""


def resolve_archs(space: Space, spec: str, seed: int = 0) -> list[str]:
    """``refs``, ``random:N`` (same N for the same seed) or a file with one architecture a line."""
    if spec == "refs":
        return space.reference_archs()
    if spec == "all":
        if not hasattr(space, "all_archs"):
            raise BadInput(f"`archs` all: the {space.name} space is too large to list; use random:N or a file",
                           param="archs")
        return space.all_archs()
    if spec.startswith("random:"):
        count = spec.split(":", 1)[1]
        if not count.isdigit() or int(count) < 1:
            raise BadInput(f"`archs` {spec!r}: random:N needs a positive whole number", param="archs")
        return space.sample(int(count), seed)
    path = Path(os.path.expanduser(spec))
    if not path.is_file():
        raise BadInput(f"`archs` {spec!r}: not 'refs', 'random:N' or an existing file", param="archs")
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise BadInput(f"{path}: cannot read architecture file: {err}") from None
    archs: list[str] = []
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        try:
            archs.append(space.canonical(text))
        except BadInput as err:
            raise BadInput(f"{path}:{number}: {err}") from None
    if not archs:
        raise BadInput(f"{path}: no architectures in the file")
    return list(dict.fromkeys(archs))


def energy_dict(cfg: DeviceConfig) -> dict[str, Any]:
    return cfg.energy.model_dump(exclude_none=True)


@dataclass
class LatencyStats(JsonDoc):
    """A latency measurement's statistics over its samples (ms)."""

    median: float
    p90: float
    iqr: float
    mean: float
    std: float
    n: int
    ci95: list[float] | None = omitted()  # the median's 95 % confidence interval, when taken
    blocks_disagree: bool | None = omitted()


@dataclass
class EnergyStats(JsonDoc):
    """An energy measurement per inference (mJ): gross, net of the idle power, and the idle power (W)."""

    gross: float
    net: float
    idle_w: float
    samples: int


@dataclass
class MeasuredRow(JsonDoc):
    """One measured architecture: ``ROW`` of ``modnas profile --json`` as the interface names it."""

    arch: str
    latency_ms: LatencyStats
    energy_mj: EnergyStats | None = None
    replayed: bool | None = omitted()  # True: drawn from a replay board's table, never a real measurement
    prefill_ms: LatencyStats | None = omitted()  # a language model: its prompt's time (latency_ms: one token)
    peak_rss_mb: float | None = omitted()  # a language model: the runtime's peak resident memory on the board


@dataclass
class Failure(JsonDoc):
    """An architecture that could not be built or measured, and why."""

    arch: str
    error: str


@dataclass
class ProfileResult(JsonDoc):
    """One board's campaign: what was measured, skipped (already stored) and failed."""

    device: str
    measured: list[MeasuredRow]
    skipped: list[str]
    failed: list[Failure]


@dataclass
class ProfileReport(DocList):
    """``modnas profile``: one campaign a board, in the order the boards were named; the document is the
    one campaign's when one board was named, else the list."""

    rows: list[ProfileResult]

    def to_json(self) -> Any:
        return self.rows[0].to_json() if len(self.rows) == 1 else [r.to_json() for r in self.rows]


def _stats(summary: dict[str, Any]) -> LatencyStats:
    return LatencyStats(**{k: summary[k] for k in ("median", "p90", "iqr", "mean", "std", "n")},
                        ci95=summary.get("ci95"), blocks_disagree=summary.get("blocks_disagree"))


def latency_row(arch: str, summary: dict[str, Any], energy: dict[str, Any] | None,
                prefill: dict[str, Any] | None = None) -> MeasuredRow:
    """One row of ``modnas profile --json`` from a stored summary and energy record (and, for a language
    model, its prefill summary: the row then has ``prefill_ms`` and the latency summary's ``peak_rss_mb``)."""
    row = MeasuredRow(arch, _stats(summary))
    if prefill:
        row.prefill_ms = _stats(prefill)
        row.peak_rss_mb = summary.get("peak_rss_mb")
    if energy and "gross_mj" in energy:
        row.energy_mj = EnergyStats(energy["gross_mj"], energy["net_mj"], energy["idle_w"], energy["samples"])
    if summary.get("replayed"):
        row.replayed = True
    return row


def board_runtime(cfg: DeviceConfig, runtime: str | None = None) -> str:
    """The runtime a campaign uses: the device's unless another is asked for; a replay board has only ``replay``."""
    chosen = runtime or cfg.runtime
    if cfg.host == "replay" and chosen != "replay":
        raise BadInput(f"device {cfg.name} is a replay board: it has only the replay runtime, not {chosen!r}")
    if cfg.host != "replay" and chosen == "replay":
        raise BadInput(f"runtime replay is only on replay boards (host: replay); {cfg.name} is {cfg.host}")
    return chosen


def connect(cfg: DeviceConfig) -> Any:
    """The connection to a board: a replay board answers from its tables, any other through ``profilers``."""
    if cfg.host == "replay":
        from modnas.toolkit.data.replay_tables import replay_connection

        return replay_connection(cfg)
    from modnas.profilers.connection import open_connection

    return open_connection(cfg)


def open_board(cfg: DeviceConfig) -> Any:
    from modnas.profilers.campaign import Board

    connection = connect(cfg)
    try:
        return Board(cfg, connection=connection)
    except BaseException:
        connection.close()
        raise


def fingerprint_device(cfg: DeviceConfig, store: Store,
                       runtimes: list[str] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Connect, fingerprint the board and probe its runtimes (default: all) and energy sensor."""
    with open_board(cfg) as board:
        board.prepare()
        fingerprint = board.fingerprint()
        probe = board.probe(energy_dict(cfg), runtimes=runtimes)
    store.upsert_device(cfg.name, cfg.for_store())
    store.add_fingerprint(cfg.name, fingerprint)
    return fingerprint, probe


@dataclass
class DoctorReport(JsonDoc):
    """``modnas doctor``: the board reached, its fingerprint, its runtimes and its energy sensor."""

    device: str
    reachable: bool
    fingerprint: dict[str, Any]
    runtimes: dict[str, dict[str, Any]]  # runtime -> {"available", "detail", ...}
    energy: dict[str, Any]  # {"sensor", "readable", "detail"}
    sensors: dict[str, Any] | None = omitted()
    address: str = internal("")  # where the board was reached (user@host:port, local, replay)


def doctor(cfg: DeviceConfig, store: Store) -> DoctorReport:
    """Connect, fingerprint the board, probe every runtime and the energy sensor (recorded in the store)."""
    fingerprint, probe = fingerprint_device(cfg, store)
    energy = probe.get("energy") or {"sensor": cfg.energy.sensor, "readable": False, "detail": "not probed"}
    return DoctorReport(cfg.name, True, fingerprint, probe.get("runtimes", {}), energy, probe.get("sensors"),
                        address=cfg.address)


def check_precision(store: Store, cfg: DeviceConfig, space: str, runtime: str | None = None) -> None:
    """A device's predictor reads all its measurements, so one device name measures at one precision
    and with one runtime: profiling int8 on a device with fp32 campaign measurements (or the reverse),
    or with another runtime than its stored ones, is bad input."""
    int8 = cfg.precision == "int8"
    for row in store.measurement_rows(cfg.name, space):
        if row.get("source") != "profile":
            continue
        key = row.get("settings_key") or ""
        if key and key.endswith("-int8") != int8:
            have = "int8" if not int8 else "fp32"
            raise BadInput(f"device {cfg.name} already has {have} measurements: profile precision "
                           f"{cfg.precision} under another device name (e.g. {cfg.name}-{cfg.precision})")
        if runtime is not None and row.get("runtime") and row["runtime"] != runtime:
            raise BadInput(f"device {cfg.name} already has {row['runtime']} measurements: profile runtime "
                           f"{runtime} under another device name (e.g. {cfg.name}-{runtime})")


def profile_device(cfg: DeviceConfig, store: Store, space: Space, archs: list[str], *, runtime: str | None = None,
                   force: bool = False, quiet: bool = False, run: str | None = None,
                   on_row: Callable[[MeasuredRow], None] | None = None,
                   stop: Stop | None = None) -> ProfileResult:
    """Measure ``archs`` on one board; every result is committed as soon as it completes.

    Ctrl-C or SIGTERM (in this thread), or ``stop`` set from another, ends the campaign at once: the running
    measurement is aborted on the board, the campaign is recorded as interrupted, finished results stay."""
    from modnas.profilers.campaign import MeasureJob

    runtime = board_runtime(cfg, runtime)
    settings = cfg.measurement
    lm = space.board_export() is not None  # a language model: decode at `context`, prefill of `prompt` tokens
    measurement = settings.model_dump() if lm else settings.model_dump(exclude={"context", "prompt"})
    settings_key = f"{settings.key()}-th{cfg.threads}"
    if lm:
        settings_key += f"-{settings.lm_key()}"
    energy = energy_dict(cfg)
    if energy.get("sensor", "none") != "none":
        settings_key += f"-e{energy['sensor']}"
    if cfg.precision != "fp32":  # int8 and fp32 measurements of one board never mix
        settings_key += f"-{cfg.precision}"
    check_precision(store, cfg, space.name, runtime)
    cache = modnas_home() / "artifacts" / space.name
    measured: list[MeasuredRow] = []
    skipped: list[str] = []
    failed: list[Failure] = []
    store.upsert_device(cfg.name, cfg.for_store())
    progress = ProgressBar(len(archs), f"profile {cfg.name}", quiet=quiet)
    campaign = None
    board = None
    try:
        with open_board(cfg) as board:
            if stop is not None:
                stop.register(board)
            board.prepare()
            fp_id = store.add_fingerprint(cfg.name, board.fingerprint())
            campaign = store.start_campaign(cfg.name, {"space": space.name, "runtime": runtime,
                                                       "settings_key": settings_key, "archs": len(archs)}, fp_id)
            for arch in archs:
                if stop is not None and stop.is_set():
                    raise Interrupted()
                try:
                    art = build_artifact(space, arch, runtime, cache, cfg.target, run=run, precision=cfg.precision)
                except BadInput:
                    raise
                except Exception as err:  # one architecture that cannot be built never ends the campaign
                    msg = f"build failed: {str(err).splitlines()[0] if str(err) else type(err).__name__}"
                    store.add_failure(campaign, cfg.name, space.name, arch, "build", msg)
                    failed.append(Failure(arch, msg))
                    progress.step("build failed")
                    continue
                store.add_artifact(art.sha256, art.kind, space.name, arch, art.meta)
                if not force and store.has_measurement(cfg.name, space.name, arch, "latency", runtime,
                                                       settings_key, art.sha256):
                    skipped.append(arch)
                    progress.step("skipped")
                    continue
                result = board.measure(MeasureJob(
                    artifact=art.path, sha256=art.sha256, runtime=runtime, threads=cfg.threads,
                    input_shape=list(art.input_shape), measurement=measurement, energy=energy,
                    timeout_s=settings.timeout_s, meta=art.meta))
                if not result.ok:
                    msg = f"{result.error_code}: {result.error}"
                    store.add_failure(campaign, cfg.name, space.name, arch, result.error_code or "error", msg)
                    if result.error_code == "bad_reply":  # the board broke the protocol: trust none of its replies
                        raise BoardError(f"board {cfg.name}: the agent's reply broke the protocol: {msg}")
                    failed.append(Failure(arch, msg))
                    progress.step("failed")
                    continue
                extra = []
                if result.energy and "gross_mj" in result.energy:
                    extra.append({"metric": "energy", "value": result.energy["gross_mj"], "summary": result.energy})
                summary = dict(result.summary, runtime_version=result.runtime_version,
                               agent_seconds=result.agent_seconds, wall_seconds=result.wall_seconds)
                prefill = None
                if lm:  # the settings each number was taken at, and what the runtime held in memory
                    summary.update(context=settings.context, prompt=settings.prompt)
                    if result.peak_rss_mb is not None:
                        summary["peak_rss_mb"] = result.peak_rss_mb
                    if result.prefill_summary is not None:
                        prefill = dict(result.prefill_summary, context=settings.context, prompt=settings.prompt,
                                       runtime_version=result.runtime_version)
                        extra.append({"metric": "prefill", "value": prefill["median"], "summary": prefill,
                                      "samples": result.prefill_blocks})
                if result.replayed:  # marked in the store (source) and in every row built from it
                    summary["replayed"] = True
                    for item in extra:
                        item["summary"] = dict(item["summary"], replayed=True)
                store.add_measurement(device=cfg.name, space=space.name, arch=arch, metric="latency",
                                      value=result.summary["median"], runtime=runtime, settings_key=settings_key,
                                      artifact_sha=art.sha256, campaign_id=campaign, summary=summary,
                                      samples=result.blocks, extra=extra,
                                      source="replay" if result.replayed else "profile")
                row = latency_row(arch, summary, result.energy, prefill)
                measured.append(row)
                if on_row:
                    on_row(row)
                progress.step(f"{result.summary['median']:.3f} ms")
    except BaseException as err:
        stopped = isinstance(err, KeyboardInterrupt) or (stop is not None and stop.is_set())
        if campaign is not None:
            _finish_quietly(store, campaign, "interrupted" if stopped else "lost")
        if stopped and not isinstance(err, KeyboardInterrupt):
            raise Interrupted() from None  # a command aborted under an interruption is not a board failure
        raise
    finally:
        if stop is not None and board is not None:
            stop.unregister(board)
        progress.close()
    store.finish_campaign(campaign, "done")
    return ProfileResult(cfg.name, measured, skipped, failed)


def _finish_quietly(store: Store, campaign: int, status: str) -> None:
    """Record how a campaign ended, even while an interruption unwinds (a second one must not hide the first)."""
    try:
        store.finish_campaign(campaign, status)
    except Exception:  # the store is already closed or locked: the measurements themselves are committed
        pass


def profile_many(cfgs: list[DeviceConfig], store: Store, space: Space, archs: list[str],
                 **kwargs: Any) -> tuple[list[ProfileResult], list[tuple[str, BoardError]]]:
    """Several boards at once in a bounded pool; a lost board does not stop the others.

    One board is profiled in the calling thread. With several, Ctrl-C or SIGTERM stops every campaign within
    about STOP_WAIT_S (their running commands are aborted on the boards) and is raised again."""
    results: list[ProfileResult] = []
    errors: list[tuple[str, BoardError]] = []
    if len(cfgs) == 1:
        try:
            results.append(profile_device(cfgs[0], store, space, archs, **kwargs))
        except BoardError as err:
            errors.append((cfgs[0].name, err))
        return results, errors
    stop = Stop()
    pool = ThreadPoolExecutor(max_workers=min(MAX_PARALLEL_BOARDS, len(cfgs)))
    futures = {pool.submit(profile_device, cfg, store, space, archs, stop=stop, **kwargs): cfg.name for cfg in cfgs}
    try:
        for future, name in futures.items():
            try:
                results.append(future.result())
            except BoardError as err:
                errors.append((name, err))
    except BaseException:
        stop.set()
        pool.shutdown(wait=False, cancel_futures=True)
        wait(list(futures), timeout=STOP_WAIT_S)
        raise
    pool.shutdown(wait=True)
    return results, errors


def profile_boards(cfgs: list[DeviceConfig], store: Store, space: Space, archs: list[str], *,
                   runtime: str | None = None, force: bool = False, quiet: bool = False) -> ProfileReport:
    """``modnas profile``: measure ``archs`` on every board (several at once), the campaigns in the order
    the boards are given. A board named twice is bad input; a lost board is the ``BoardError`` of the
    first one lost, once every other campaign has ended (what they measured is stored)."""
    names = [c.name for c in cfgs]
    if len(set(names)) != len(names):
        raise BadInput("the same device is named twice")
    results, errors = profile_many(cfgs, store, space, archs, runtime=runtime, force=force, quiet=quiet)
    if errors:
        name, err = errors[0]
        raise BoardError(str(err) if name in str(err) else f"board {name}: {err}")
    return ProfileReport(sorted(results, key=lambda r: names.index(r.device)))
