"""Profiling campaigns: Build -> Upload -> Run -> Parse for each architecture, stored as it completes."""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

from toolkit.artifacts import build_artifact
from toolkit.config import DeviceConfig, modnas_home
from toolkit.errors import BadInput, BoardError
from toolkit.progress import Progress
from toolkit.spaces import Space
from toolkit.store import Store

MAX_PARALLEL_BOARDS = 4


def resolve_archs(space: Space, spec: str, seed: int = 0) -> list[str]:
    """``refs``, ``random:N`` (same N for the same seed) or a file with one architecture a line."""
    if spec == "refs":
        return space.reference_archs()
    if spec == "all":
        if not hasattr(space, "all_archs"):
            raise BadInput(f"--archs all: the {space.name} space is too large to list; use random:N or a file")
        return space.all_archs()
    if spec.startswith("random:"):
        count = spec.split(":", 1)[1]
        if not count.isdigit() or int(count) < 1:
            raise BadInput(f"--archs {spec!r}: random:N needs a positive whole number")
        return space.sample(int(count), seed)
    path = Path(os.path.expanduser(spec))
    if not path.is_file():
        raise BadInput(f"--archs {spec!r}: not 'refs', 'random:N' or an existing file")
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


def latency_row(arch: str, summary: dict[str, Any], energy: dict[str, Any] | None) -> dict[str, Any]:
    """One row of ``modnas profile --json`` as the interface names it."""
    lat = {k: summary[k] for k in ("median", "p90", "iqr", "mean", "std", "n")}
    row: dict[str, Any] = {"arch": arch, "latency_ms": lat, "energy_mj": None}
    if energy and "gross_mj" in energy:
        row["energy_mj"] = {"gross": energy["gross_mj"], "net": energy["net_mj"], "idle_w": energy["idle_w"],
                            "samples": energy["samples"]}
    for key in ("ci95", "blocks_disagree"):
        if key in summary:
            row["latency_ms"][key] = summary[key]
    return row


def open_board(cfg: DeviceConfig) -> Any:
    from profilers.campaign import Board

    return Board(cfg)


def fingerprint_device(cfg: DeviceConfig, store: Store,
                       runtimes: list[str] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Connect, fingerprint the board and probe its runtimes (default: all) and energy sensor."""
    with open_board(cfg) as board:
        board.prepare()
        fingerprint = board.fingerprint()
        probe = board.probe(energy_dict(cfg), runtimes=runtimes)
    store.upsert_device(cfg.name, cfg.model_dump(mode="json"))
    store.add_fingerprint(cfg.name, fingerprint)
    return fingerprint, probe


def profile_device(cfg: DeviceConfig, store: Store, space: Space, archs: list[str], *, runtime: str | None = None,
                   force: bool = False, quiet: bool = False, run: str | None = None,
                   on_row: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Measure ``archs`` on one board; every result is committed as soon as it completes."""
    from profilers.campaign import MeasureJob

    runtime = runtime or cfg.runtime
    settings = cfg.measurement
    settings_key = f"{settings.key()}-th{cfg.threads}"
    energy = energy_dict(cfg)
    if energy.get("sensor", "none") != "none":
        settings_key += f"-e{energy['sensor']}"
    cache = modnas_home() / "artifacts" / space.name
    measured: list[dict[str, Any]] = []
    skipped: list[str] = []
    failed: list[dict[str, Any]] = []
    store.upsert_device(cfg.name, cfg.model_dump(mode="json"))
    progress = Progress(len(archs), f"profile {cfg.name}", quiet=quiet)
    campaign = None
    try:
        with open_board(cfg) as board:
            board.prepare()
            fp_id = store.add_fingerprint(cfg.name, board.fingerprint())
            campaign = store.start_campaign(cfg.name, {"space": space.name, "runtime": runtime,
                                                       "settings_key": settings_key, "archs": len(archs)}, fp_id)
            for arch in archs:
                try:
                    art = build_artifact(space, arch, runtime, cache, cfg.target, run=run)
                except BadInput:
                    raise
                except Exception as err:  # one architecture that cannot be built never ends the campaign
                    msg = f"build failed: {str(err).splitlines()[0] if str(err) else type(err).__name__}"
                    store.add_failure(campaign, cfg.name, space.name, arch, "build", msg)
                    failed.append({"arch": arch, "error": msg})
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
                    input_shape=list(art.input_shape), measurement=settings.model_dump(), energy=energy,
                    timeout_s=settings.timeout_s, meta=art.meta))
                if not result.ok:
                    msg = f"{result.error_code}: {result.error}"
                    store.add_failure(campaign, cfg.name, space.name, arch, result.error_code or "error", msg)
                    if result.error_code == "bad_reply":  # the board broke the protocol: trust none of its replies
                        raise BoardError(f"board {cfg.name}: the agent's reply broke the protocol: {msg}")
                    failed.append({"arch": arch, "error": msg})
                    progress.step("failed")
                    continue
                extra = []
                if result.energy and "gross_mj" in result.energy:
                    extra.append({"metric": "energy", "value": result.energy["gross_mj"], "summary": result.energy})
                summary = dict(result.summary, runtime_version=result.runtime_version,
                               agent_seconds=result.agent_seconds, wall_seconds=result.wall_seconds)
                store.add_measurement(device=cfg.name, space=space.name, arch=arch, metric="latency",
                                      value=result.summary["median"], runtime=runtime, settings_key=settings_key,
                                      artifact_sha=art.sha256, campaign_id=campaign, summary=summary,
                                      samples=result.blocks, extra=extra)
                row = latency_row(arch, result.summary, result.energy)
                measured.append(row)
                if on_row:
                    on_row(row)
                progress.step(f"{result.summary['median']:.3f} ms")
    except BoardError:
        if campaign is not None:
            store.finish_campaign(campaign, "lost")
        raise
    finally:
        progress.close()
    store.finish_campaign(campaign, "done")
    return {"device": cfg.name, "measured": measured, "skipped": skipped, "failed": failed}


def profile_many(cfgs: list[DeviceConfig], store: Store, space: Space, archs: list[str],
                 **kwargs: Any) -> tuple[list[dict[str, Any]], list[tuple[str, BoardError]]]:
    """Several boards at once in a bounded pool; a lost board does not stop the others."""
    results: list[dict[str, Any]] = []
    errors: list[tuple[str, BoardError]] = []
    with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL_BOARDS, len(cfgs))) as pool:
        futures = {pool.submit(profile_device, cfg, store, space, archs, **kwargs): cfg.name for cfg in cfgs}
        for future, name in futures.items():
            try:
                results.append(future.result())
            except BoardError as err:
                errors.append((name, err))
    return results, errors
