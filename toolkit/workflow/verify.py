"""Verified selection: predict as ``select`` does, then measure the best candidates on the board and
return the most accurate one whose measured latency meets the budget with a repeatability margin.

The candidates are the read-out pool ``select`` ranks (24- and 201-preference read-outs plus the
one-edit refinement), kept when ``predicted * (1 - margin) <= budget`` (looser than ``select``'s
``predicted * (1 + margin) <= budget``: the board has the last word) and taken most accurate first.
A candidate with a stored measurement on the board is judged on it without measuring again. One
whose latency, rescaled by the measured/predicted ratio of the nearest measured candidates, is
clearly over the budget is skipped without a measurement. When none does, the fastest few of the rest of the pool (by that rescaled estimate) are measured
as well, so a pick comes back whenever the pool holds an architecture that meets the budget. A
pick is accepted only when
``measured * (1 + r) <= budget``, ``r`` the board's repeatability when it is known (given, e.g. from
``validate``'s rounds), else the measurement's own 95 % CI of the median above it; at least
``MIN_VERIFY_MARGIN`` either way.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from modnas.toolkit.errors import BadInput, BoardError
from modnas.toolkit.results import JsonDoc, omitted

DEFAULT_VERIFY_MAX = 8
MIN_VERIFY_MARGIN = 0.02   # the least margin a measured pick keeps below the budget
SKIP_TOLERANCE = 0.05      # a rescaled estimate this far over the accept line is still measured
ANCHORS = 3                # nearest measured candidates whose measured/predicted ratio rescales a prediction
ANCHOR_RANGE = 1.5         # ... when predicted within this factor of the candidate
MAX_LOOSE_MARGIN = 0.5
# when no candidate met the budget: the fastest few of the rest, judged too (measured with what is left of
# max_measurements; stored ones judged without measuring)
FALLBACK_MEASUREMENTS = 3
# (beyond --verify-max; none when it is 0, which judges stored measurements only)


@dataclass(frozen=True)
class Measured:
    """One latency measurement of a candidate: median ms, relative CI half-width above it, its source."""

    latency_ms: float
    ci_rel: float = 0.0
    source: str = "board"   # board (measured now) | stored (an earlier measurement in the store)


Measure = Callable[[str], "Measured | None"]


@dataclass
class MeasuredLatency(JsonDoc):
    """A candidate's latency as judged on the board (ms); ``source`` where the pick's came from."""

    latency_ms: float
    source: str | None = omitted()   # board | stored: on the pick only
    replayed: bool | None = omitted()  # True: drawn from a replay board's table


@dataclass
class Candidate(JsonDoc):
    """One candidate judged on the board, most accurate first: predicted, measured, and whether it meets."""

    arch: str
    predicted: dict[str, float]  # {"error" (or "loss"), "latency_ms"}
    measured: MeasuredLatency | None  # None: the measurement failed
    source: str
    meets: bool
    failed: bool | None = omitted()  # True when the board could not measure it
    verify_margin: float | None = omitted()


@dataclass
class VerifiedSelection(JsonDoc):
    """``modnas select --verify``: the most accurate candidate measured to meet the budget (``arch`` None and
    ``reason`` when none does), the candidates judged, and what plain ``select`` would have picked."""

    arch: str | None
    predicted: dict[str, float] | None
    margin: float
    margin_ms: float
    budget_ms: float
    preference: list[float] | None
    verified: bool
    measured: MeasuredLatency | None
    verify_margin: float
    measurements: int
    skipped_by_estimate: int
    not_measured_verify_max: int
    candidates: list[Candidate]
    unverified: dict[str, Any] | None  # {"arch", "margin", "predicted"}: plain select's pick
    reason: str | None = omitted()
    replayed: bool | None = omitted()
    # a language model's pick in the quickstart: each exported file's held-out loss, and a sample of its text
    loss: dict[str, float] | None = omitted()
    sample: dict[str, Any] | None = omitted()  # {"text", "tokens_per_s"}


def candidate_pool(run: Any, cost: Any, preferences: int = 24, dense: int = 201) -> tuple[list[str], dict[str, Any]]:
    """The distinct architectures ``select`` ranks, with the preference each was first read out at."""
    from modnas.toolkit.search.readout import candidates, refine

    archs_a, prefs_a = candidates(run, cost.embedding, preferences)
    archs_b, prefs_b = candidates(run, cost.embedding, dense)
    pool: dict[str, Any] = dict(zip(archs_a, prefs_a))
    for a, p in zip(archs_b, prefs_b):
        pool.setdefault(a, p)
    archs = list(pool)
    if run.surrogate is not None:  # as select: two refinement rounds when accuracy is cheap
        archs = list(dict.fromkeys(archs + refine(run, {"latency": cost}, archs, 2)))
    return archs, pool


def _ci_rel(summary: dict[str, Any] | None) -> float:
    if not summary or not summary.get("ci95") or not summary.get("median"):
        return 0.0
    return max(0.0, float(summary["ci95"][1]) / float(summary["median"]) - 1.0)


def stored_measurements(store: Any, device: str, space: str, runtime: str) -> dict[str, Measured]:
    """The newest stored board measurement of each architecture (same runtime; imports excluded)."""
    out: dict[str, Measured] = {}
    for r in store.measurement_rows(device, space, "latency"):
        if r["runtime"] == runtime and r["summary"] and r["value"] > 0:
            out[r["arch"]] = Measured(float(r["value"]), _ci_rel(r["summary"]), "stored")
    return out


def board_measure(cfg: Any, store: Any, space: Any, run: str | None = None, quiet: bool = True) -> Measure:
    """Measure one architecture on the board (stored as usual); None when it fails there."""
    from modnas.toolkit.workflow.profiling import profile_device

    def measure(arch: str) -> Measured | None:
        res = profile_device(cfg, store, space, [arch], quiet=quiet, run=run)
        if res.measured:
            lat = res.measured[0].latency_ms
            return Measured(float(lat.median), _ci_rel(lat.to_json()), "board")
        if res.skipped:  # stored with the same artifact and settings after all
            return stored_measurements(store, cfg.name, space.name, cfg.runtime).get(arch)
        return None

    return measure


def _estimate(pred: float, anchors: list[tuple[float, float]]) -> float | None:
    """``pred`` rescaled by the median measured/predicted ratio of the nearest anchors in log latency,
    those within ``ANCHOR_RANGE`` of it; None without any (the candidate is then measured)."""
    near = sorted((a for a in anchors if abs(np.log(a[0] / pred)) <= np.log(ANCHOR_RANGE)),
                  key=lambda a: abs(np.log(a[0] / pred)))[:ANCHORS]
    if not near:
        return None
    return pred * float(np.median([m / p for p, m in near]))


def verified_select(run: Any, cost: Any, budget_ms: float, measure: Measure, known: dict[str, Measured] | None = None,
                    *, max_measurements: int = DEFAULT_VERIFY_MAX, repeatability: float | None = None,
                    margin: float | None = None,
                    pool: tuple[list[str], dict[str, Any]] | None = None) -> VerifiedSelection:
    """The most accurate candidate measured to meet ``budget_ms``; ``"arch": None`` and a reason when none does.

    ``measure`` takes a board measurement (at most ``max_measurements`` of them for the most accurate
    candidates, and what is left of them on ``FALLBACK_MEASUREMENTS`` of the fastest when none of those met);
    ``known`` holds
    measurements already stored, judged without measuring. Board loss propagates as ``BoardError``.
    ``pool``: ``candidate_pool(run, cost)`` when the caller already has it (several budgets, one device).
    """
    from modnas.toolkit.search.readout import resolve_margin

    if not budget_ms > 0:
        raise BadInput(f"`budget_ms` must be a positive number of ms, got {budget_ms}", param="budget_ms")
    if max_measurements < 0:
        raise BadInput(f"`max_measurements` must not be negative, got {max_measurements}", param="max_measurements")
    if repeatability is not None and not 0 <= repeatability < 1:
        raise BadInput(f"`repeatability` must be a fraction in [0, 1), got {repeatability}", param="repeatability")
    if "latency" not in run.objectives:
        raise BadInput("this run does not optimise latency; select needs a latency objective")
    known = dict(known or {})
    loose = min(resolve_margin(cost, margin), MAX_LOOSE_MARGIN)
    floor = max(MIN_VERIFY_MARGIN, repeatability or 0.0)
    archs, prefs = pool if pool is not None else candidate_pool(run, cost)
    q = run.space.quality  # "error" (%) or, for language models, "loss"
    lat = np.asarray(cost.predict(archs), dtype=np.float64)
    err = np.asarray(run.predict_error(archs), dtype=np.float64)
    strict = resolve_margin(cost, None)
    fits = np.flatnonzero(lat * (1.0 + strict) <= budget_ms)  # what select, unverified, would pick
    unverified = int(fits[np.lexsort((lat[fits], err[fits]))[0]]) if len(fits) else None
    eligible = np.flatnonzero(lat * (1.0 - loose) <= budget_ms)
    order = eligible[np.lexsort((lat[eligible], err[eligible]))]
    anchors = [(float(p), known[a].latency_ms) for a, p in zip(archs, lat) if a in known]
    tried: list[Candidate] = []
    taken = skipped = 0
    unmeasured: set[str] = set()  # passed over at the --verify-max limit
    pick: int | None = None
    pick_margin = floor
    def judge(i: int) -> Candidate | None:
        """Candidate ``i`` judged on its stored measurement or a new one (listed in ``tried`` either way);
        None when its measurement failed."""
        nonlocal taken
        arch, pred = archs[i], float(lat[i])
        got = known.get(arch)
        if got is None:
            taken += 1
            try:
                got = measure(arch)
            except BoardError as exc:
                raise BoardError(f"{str(exc).splitlines()[0]} (lost during --verify after {taken - 1} "
                                 f"measurement(s); what was measured is stored)") from None
            if got is None:
                tried.append(Candidate(arch, {q: float(err[i]), "latency_ms": pred}, None, "board", False,
                                       failed=True))
                return None
            known[arch] = got
            anchors.append((pred, got.latency_ms))
        r = floor if repeatability is not None else max(floor, got.ci_rel)
        judged = Candidate(arch, {q: float(err[i]), "latency_ms": pred}, MeasuredLatency(got.latency_ms),
                           got.source, bool(got.latency_ms * (1 + r) <= budget_ms), verify_margin=r)
        tried.append(judged)
        return judged

    for i in order:
        if archs[i] not in known:
            est = _estimate(float(lat[i]), anchors)
            if est is not None and est * (1 + floor) > budget_ms * (1 + SKIP_TOLERANCE):
                skipped += 1
                continue
            if taken >= max_measurements:  # out of board measurements: only stored ones are judged from here
                unmeasured.add(archs[i])
                continue
        got = judge(int(i))
        if got is not None and got.meets:
            pick, pick_margin = int(i), float(got.verify_margin)
            break
    if pick is None and max_measurements > 0:  # never empty while one meets: the fastest of the rest, rescaled
        seen = {c.arch for c in tried}
        guess = {i: _estimate(float(lat[i]), anchors) or float(lat[i]) for i in range(len(archs))
                 if archs[i] not in seen}
        rest = sorted((i for i, g in guess.items() if g * (1 + floor) <= budget_ms * (1 + SKIP_TOLERANCE)),
                      key=lambda i: (guess[i], err[i]))  # only those that may meet it
        for i in rest[:FALLBACK_MEASUREMENTS]:
            if archs[i] not in known and taken >= max_measurements:  # never past max_measurements in all
                continue
            unmeasured.discard(archs[i])
            got = judge(i)
            if got is not None and got.meets:
                pick, pick_margin = i, float(got.verify_margin)
                break
    doc = VerifiedSelection(
        arch=None, predicted=None, margin=loose, margin_ms=0.0, budget_ms=float(budget_ms), preference=None,
        verified=True, measured=None, verify_margin=pick_margin, measurements=taken, skipped_by_estimate=skipped,
        not_measured_verify_max=len(unmeasured), candidates=tried,
        unverified=({"arch": archs[unverified], "margin": strict,
                     "predicted": {q: float(err[unverified]), "latency_ms": float(lat[unverified])}}
                    if unverified is not None else None))
    if pick is not None:
        a = archs[pick]
        doc.arch = a
        doc.predicted = {q: float(err[pick]), "latency_ms": float(lat[pick])}
        doc.measured = MeasuredLatency(known[a].latency_ms, known[a].source)
        doc.preference = [float(v) for v in prefs[a]] if a in prefs else None
        return doc
    if not len(eligible) and not tried:
        reason = (f"no architecture is predicted within {loose:.1%} of {budget_ms:g} ms; the fastest predicted is "
                  f"{float(lat.min()):.4g} ms")
    else:
        reason = (f"none of the {len(tried)} candidate(s) judged on the board meets {budget_ms:g} ms with a "
                  f"{floor:.1%} repeatability margin")
        if skipped:
            reason += (f"; {skipped} more are over it once rescaled by the measured/predicted ratio of "
                       f"measured neighbours")
        if unmeasured:
            reason += f"; {len(unmeasured)} more not measured (at most {max_measurements} board measurement(s))"
    doc.reason = reason
    return doc


def verify_on_board(cfg: Any, store: Any, space: Any, run_obj: Any, cost: Any, budget_ms: float, *,
                    run: str | None = None, max_measurements: int = DEFAULT_VERIFY_MAX,
                    repeatability: float | None = None, quiet: bool = True) -> VerifiedSelection:
    """``verified_select`` on a configured board, with its stored measurements counted."""
    known = stored_measurements(store, cfg.name, space.name, cfg.runtime)
    doc = verified_select(run_obj, cost, budget_ms, board_measure(cfg, store, space, run, quiet), known,
                          max_measurements=max_measurements, repeatability=repeatability)
    if cfg.is_replay:  # drawn from a replay board's table: never a real measurement
        for measured in [c.measured for c in doc.candidates] + [doc.measured]:
            if measured is not None:
                measured.replayed = True
        doc.replayed = True
    return doc


def verify_select(device: str, store: Any, run_obj: Any, budget_ms: float, *, run: str | None = None,
                  max_measurements: int = DEFAULT_VERIFY_MAX, repeatability: float | None = None,
                  quiet: bool = True) -> VerifiedSelection:
    """``modnas select --verify``: :func:`verify_on_board` on the board ``device`` names (a device file or a
    stored device with a board, as :func:`modnas.toolkit.config.device_ref` takes it), with its device model
    from the store."""
    from modnas.toolkit.config import device_ref
    from modnas.toolkit.search.api import resolve_device
    from modnas.toolkit.spaces import get_space

    if max_measurements < 0:
        raise BadInput(f"`max_measurements` must not be negative, got {max_measurements}", param="max_measurements")
    space = get_space(run_obj.config.space)
    cfg = device_ref(device, store)
    cost = resolve_device(cfg.name, space.name, store=store)
    return verify_on_board(cfg, store, space, run_obj, cost, budget_ms, run=run, max_measurements=max_measurements,
                           repeatability=repeatability, quiet=quiet)


__all__ = ["DEFAULT_VERIFY_MAX", "MIN_VERIFY_MARGIN", "Candidate", "Measured", "MeasuredLatency", "VerifiedSelection",
           "board_measure", "candidate_pool", "stored_measurements", "verified_select", "verify_on_board",
           "verify_select"]
