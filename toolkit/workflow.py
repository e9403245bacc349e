"""The new-board workflow: onboard, validate predicted against measured, and the quickstart."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from toolkit.config import DeviceConfig, load_device, modnas_home
from toolkit.errors import BadInput, BoardError
from toolkit.onboarding import refresh_embedding
from toolkit.profiling import fingerprint_device, latency_row, profile_device, resolve_archs
from toolkit.spaces import Space, get_space
from toolkit.store import Store

BUDGET_PERCENTILES = (25, 50, 75)
READOUT_PREFERENCES = 24
QUICKSTART_EXTRA = 20  # random architectures measured beside the references: calibration with a fixed-cost term


def _stored_rows(store: Store, cfg: DeviceConfig, space: Space, archs: list[str], runtime: str) -> dict[str, dict]:
    """The newest stored result of each architecture as a ``profile`` row."""
    energy = {r["arch"]: r["summary"] for r in store.measurement_rows(cfg.name, space.name, "energy")
              if r["runtime"] == runtime}
    rows: dict[str, dict] = {}
    for r in store.measurement_rows(cfg.name, space.name, "latency"):
        if r["arch"] in archs and r["runtime"] == runtime and r["summary"]:
            rows[r["arch"]] = latency_row(r["arch"], r["summary"], energy.get(r["arch"]))
    return rows


def onboard(cfg: DeviceConfig, store: Store, space: Space, extra: int = 0, seed: int = 0,
            quiet: bool = False) -> dict[str, Any]:
    """Doctor, profile the references (and ``extra`` random architectures), embedding and calibration."""
    if extra < 0:
        raise BadInput(f"--extra must not be negative, got {extra}")
    fingerprint, probe = fingerprint_device(cfg, store, runtimes=[cfg.runtime])
    runtime = cfg.runtime
    if not probe.get("runtimes", {}).get(runtime, {}).get("available", True):
        raise BoardError(f"board {cfg.name}: runtime {runtime} is not usable there: "
                         f"{probe['runtimes'][runtime].get('detail', '')}")
    refs = space.reference_archs()
    extras = [a for a in space.sample(extra + len(refs), seed) if a not in refs][:extra]
    result = profile_device(cfg, store, space, refs + extras, quiet=quiet)
    failed_refs = [f for f in result["failed"] if f["arch"] in refs]
    if failed_refs:
        raise BoardError(f"board {cfg.name}: {len(failed_refs)} reference architecture(s) failed, first: "
                         f"{failed_refs[0]['error']}")
    calibration = refresh_embedding(store, cfg.name, space, "latency")
    if cfg.energy.sensor != "none":
        refresh_embedding(store, cfg.name, space, "energy")
    rows = _stored_rows(store, cfg, space, refs, runtime)
    return {"device": cfg.name, "fingerprint": fingerprint, "references": [rows[a] for a in refs if a in rows],
            "extra": len(extras), "failed": result["failed"], "calibration": calibration or {},
            "embedding": store.get_embedding(cfg.name, space.name, "latency")}


def _cost_without(store: Store, name: str, space: Space, exclude: set[str]) -> Any:
    """The device's cost model calibrated without the architectures being validated."""
    from toolkit.prediction import device_cost

    values = {a: v for a, v in store.values(name, space.name, "latency").items() if a not in exclude}
    if not values:
        raise BadInput(f"device {name} has no latency measurements; run `modnas onboard {name}` first")
    return device_cost(name, values, space, "latency")


def _budget_checks(archs: list[str], error: np.ndarray, predicted: np.ndarray, measured: np.ndarray,
                   margin: float) -> list[dict[str, Any]]:
    """At measured-latency percentiles: the pick among these architectures, and whether it truly fits."""
    out = []
    for q in BUDGET_PERCENTILES:
        budget = float(np.percentile(measured, q))
        ok = np.flatnonzero(predicted * (1 + margin) <= budget)
        if not len(ok):
            continue
        best = ok[np.lexsort((predicted[ok], error[ok]))[0]]
        out.append({"percentile": q, "budget_ms": budget, "arch": archs[best], "predicted_ms": float(predicted[best]),
                    "measured_ms": float(measured[best]), "meets": bool(measured[best] <= budget)})
    return out


MIN_VALIDATED = 3  # a read-out with fewer distinct architectures is widened by one refinement round


def validate(cfg: DeviceConfig, store: Store, space: Space, run: str | None = None, archs: str = "pareto",
             out: Path | None = None, quiet: bool = False) -> dict[str, Any]:
    """Measure the chosen architectures on the board and compare them with the predictions."""
    from toolkit.report import agreement, markdown_report, plot_fronts, plot_predicted_vs_measured
    from toolkit.search.readout import candidates
    from toolkit.search.run import load_run

    run_obj = load_run(run, space.name)
    if archs == "pareto":  # every distinct architecture of the 24-preference read-out
        cost = _cost_without(store, cfg.name, space, set())
        chosen = candidates(run_obj, cost.emb, READOUT_PREFERENCES)[0]
        if len(chosen) < MIN_VALIDATED and run_obj.surrogate is not None:
            # a front of one or two: add the one-edit refinement's front (cheap with a surrogate)
            from toolkit.search.readout import refine

            chosen = list(dict.fromkeys(chosen + refine(run_obj, {"latency": cost}, chosen, 1)))
        if len(chosen) < 2:
            raise BadInput(f"the run's read-out for {cfg.name} has {len(chosen)} architecture; validating needs "
                           "at least 2: give --archs FILE")
    else:
        chosen = resolve_archs(space, archs)
    cost = _cost_without(store, cfg.name, space, set(chosen))
    predicted_all = dict(zip(chosen, cost.predict(chosen)))
    result = profile_device(cfg, store, space, chosen, quiet=quiet, run=run)
    stored = _stored_rows(store, cfg, space, chosen, cfg.runtime)
    ok = [a for a in chosen if a in stored]
    if len(ok) < 2:
        raise BoardError(f"board {cfg.name}: only {len(ok)} of {len(chosen)} architectures could be measured")
    measured = np.array([stored[a]["latency_ms"]["median"] for a in ok])
    predicted = np.array([predicted_all[a] for a in ok])
    error = run_obj.predict_error(ok)
    stats = agreement(predicted, measured)
    out = Path(out) if out else modnas_home() / "validation" / cfg.name
    out.mkdir(parents=True, exist_ok=True)
    doc: dict[str, Any] = {"device": cfg.name, **stats,
                           "rows": [{"arch": a, "predicted": float(p), "measured": float(m), "error": float(e)}
                                    for a, p, m, e in zip(ok, predicted, measured, error)],
                           "failed": result["failed"], "margin": cost.margin(),
                           "budgets": _budget_checks(ok, error, predicted, measured, cost.margin())}
    doc["plot"] = str(plot_predicted_vs_measured(predicted, measured, out / "predicted_vs_measured.png",
                                                 f"{cfg.name}: Spearman {stats['spearman']:.3f}, "
                                                 f"MAPE {stats['mape']:.1f} %"))
    doc["front_plot"] = str(plot_fronts(error, predicted, measured, out / "fronts.png",
                                        f"{cfg.name}: predicted and measured front"))
    (out / "report.md").write_text(markdown_report(doc))
    doc["report"] = str(out / "report.md")
    (out / "validation.json").write_text(json.dumps(doc, indent=2) + "\n")
    return doc


def local_device(out: Path) -> DeviceConfig:
    """This machine as the board, with its work directory kept under ``out``."""
    cfg = load_device("local")
    return cfg.model_copy(update={"workdir": str((out / "board").resolve())})


def pick_across(front: list[dict[str, Any]], k: int = 3) -> list[dict[str, Any]]:
    """``k`` architectures spread over the trade-off: fastest, most accurate, and between."""
    if len(front) <= k:
        return list(front)
    idx = np.unique(np.round(np.linspace(0, len(front) - 1, k)).astype(int))
    return [front[i] for i in idx]


def quickstart(store: Store, out: Path, quiet: bool = False, space_name: str = "nb201") -> dict[str, Any]:
    """Onboard this machine, read its front from the run shipped for the space, export three picks, validate."""
    from toolkit.exporting import export_arch
    from toolkit.prediction import device_from_store
    from toolkit.search.readout import pareto
    from toolkit.search.run import load_run

    start = time.monotonic()
    out.mkdir(parents=True, exist_ok=True)
    space = get_space(space_name)
    cfg = local_device(out)
    say = (lambda msg: None) if quiet else (lambda msg: print(f"[{time.monotonic() - start:5.1f}s] {msg}",
                                                              file=sys.stderr))
    say(f"onboarding this machine as board {cfg.name!r} (10 reference and {QUICKSTART_EXTRA} random architectures)")
    onboarded = onboard(cfg, store, space, extra=QUICKSTART_EXTRA, quiet=quiet)
    say("reading out its front from the shipped search run")
    front = pareto(load_run(None, space.name), device_from_store(store, cfg.name, space.name, "latency"))
    picks = pick_across(front)
    exported = []
    for pick in picks:
        say(f"exporting {pick['arch']} (ONNX, TVM)")
        doc = export_arch(pick["arch"], space_name=space.name, formats=["onnx", "tvm"], out=out / "exports",
                          device=cfg)
        exported.append({"arch": pick["arch"], "predicted": pick["predicted"], **doc})
    say("validating the read-out front on this machine")
    validation = validate(cfg, store, space, None, "pareto", out / "validation", quiet=quiet)
    say("done")
    return {"device": cfg.name, "fingerprint": onboarded["fingerprint"], "front": front, "exported": exported,
            "validation": {k: validation[k] for k in ("spearman", "kendall", "mape", "within_10pct", "plot",
                                                      "front_plot", "report")},
            "seconds": time.monotonic() - start, "out": str(out)}
