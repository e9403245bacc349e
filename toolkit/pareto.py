"""Pareto utilities for minimisation problems: non-dominated sets, hypervolume, IGD+.

All objectives are minimised. ``normalise`` maps points into [0, 1] per objective with given
bounds; the hypervolume of normalised points is taken against the reference point (1, ..., 1),
as in the method's scoring protocol. The non-dominated filter, the hypervolume and IGD+ are
pymoo's (moocore underneath); this module fixes the conventions (minimisation, the default
reference point, duplicates kept) for the toolkit and the benchmarks alike.
"""
from __future__ import annotations

import numpy as np
from pymoo.indicators.hv import HV
from pymoo.indicators.igd_plus import IGDPlus
from pymoo.util.nds.non_dominated_sorting import find_non_dominated


def nondominated_mask(points: np.ndarray) -> np.ndarray:
    """Boolean mask of the points no other point dominates (duplicates all kept)."""
    f = np.asarray(points, dtype=np.float64)
    if f.ndim != 2:
        raise ValueError("points must be a 2-d array [n, m]")
    mask = np.zeros(len(f), dtype=bool)
    if len(f):
        mask[find_non_dominated(f)] = True
    return mask


def nondominated(points: np.ndarray) -> np.ndarray:
    """The non-dominated points, unique rows, sorted by the first objective."""
    f = np.asarray(points, dtype=np.float64)
    front = np.unique(f[nondominated_mask(f)], axis=0)
    return front[np.argsort(front[:, 0], kind="stable")]


def normalise(points: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Min-max scale each objective with the given bounds (a zero span maps to 0)."""
    lo = np.asarray(lo, dtype=np.float64)
    span = np.asarray(hi, dtype=np.float64) - lo
    span = np.where(span > 0, span, 1.0)
    return (np.asarray(points, dtype=np.float64) - lo) / span


def hypervolume(points: np.ndarray, ref: np.ndarray | None = None) -> float:
    """Hypervolume dominated by ``points`` and bounded by ``ref`` (default all ones)."""
    f = np.asarray(points, dtype=np.float64)
    if f.size == 0:
        return 0.0
    ref = np.ones(f.shape[1]) if ref is None else np.asarray(ref, dtype=np.float64)
    return float(HV(ref_point=ref)(f))  # points not strictly below ``ref`` add nothing


def greedy_hv_subset(points: np.ndarray, k: int, ref: np.ndarray | None = None) -> list[int]:
    """Indices of at most ``k`` of ``points`` chosen greedily by hypervolume contribution against
    ``ref`` (default all ones): each step adds the point that raises the subset's hypervolume most
    (ties: the lowest index). Points that add nothing are never chosen, so fewer than ``k`` may come back."""
    f = np.asarray(points, dtype=np.float64)
    if f.ndim != 2:
        raise ValueError("points must be a 2-d array [n, m]")
    chosen: list[int] = []
    best_hv = 0.0
    left = list(range(len(f)))
    while left and len(chosen) < k:
        gains = [hypervolume(f[chosen + [i]], ref) - best_hv for i in left]
        j = int(np.argmax(gains))
        if gains[j] <= 1e-15:
            break
        best_hv += gains[j]
        chosen.append(left.pop(j))
    return chosen


def igd_plus(points: np.ndarray, reference_front: np.ndarray) -> float:
    """Inverted generational distance plus: mean over the reference front of the modified
    distance max(a - z, 0) to the closest obtained point (lower is better)."""
    a = np.asarray(points, dtype=np.float64)
    if len(a) == 0:
        return float("inf")
    return float(IGDPlus(np.asarray(reference_front, dtype=np.float64))(a))


__all__ = ["greedy_hv_subset", "hypervolume", "igd_plus", "nondominated", "nondominated_mask", "normalise"]
