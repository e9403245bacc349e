"""Pareto utilities for minimisation problems: non-dominated sets, hypervolume, IGD+.

All objectives are minimised. ``normalise`` maps points into [0, 1] per objective with given
bounds; the hypervolume of normalised points is taken against the reference point (1, ..., 1),
as in the method's scoring protocol.
"""
from __future__ import annotations

import numpy as np


def nondominated_mask(points: np.ndarray) -> np.ndarray:
    """Boolean mask of the points no other point dominates (duplicates all kept)."""
    f = np.asarray(points, dtype=np.float64)
    if f.ndim != 2:
        raise ValueError("points must be a 2-d array [n, m]")
    n, m = f.shape
    if n == 0:
        return np.zeros(0, dtype=bool)
    if m == 2:
        order = np.lexsort((f[:, 1], f[:, 0]))
        mask = np.zeros(n, dtype=bool)
        best = np.inf
        prev: tuple[float, float] | None = None
        for i in order:
            x, y = f[i]
            if y < best:
                mask[i] = True
                best = y
                prev = (x, y)
            elif prev is not None and x == prev[0] and y == prev[1]:
                mask[i] = True
        return mask
    mask = np.ones(n, dtype=bool)
    for start in range(0, n, 512):
        block = f[start:start + 512]
        le = np.all(f[None, :, :] <= block[:, None, :], axis=2)
        lt = np.any(f[None, :, :] < block[:, None, :], axis=2)
        mask[start:start + len(block)] = ~np.any(le & lt, axis=1)
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
    f = f[np.all(f < ref, axis=1)]
    if len(f) == 0:
        return 0.0
    front = nondominated(f)
    if f.shape[1] == 2:
        xs = np.append(front[1:, 0], ref[0])
        return float(np.sum((xs - front[:, 0]) * (ref[1] - front[:, 1])))
    from pymoo.indicators.hv import HV

    return float(HV(ref_point=ref)(front))


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
    z = np.asarray(reference_front, dtype=np.float64)
    if len(a) == 0:
        return float("inf")
    diff = np.maximum(a[None, :, :] - z[:, None, :], 0.0)
    return float(np.mean(np.min(np.sqrt(np.sum(diff ** 2, axis=2)), axis=1)))


__all__ = ["greedy_hv_subset", "hypervolume", "igd_plus", "nondominated", "nondominated_mask", "normalise"]
