"""Non-dominated sets, hypervolume and IGD+: hand-checked cases, and the definitions on random points."""
from __future__ import annotations

import numpy as np
import pytest

from modnas.toolkit.pareto import hypervolume, igd_plus, nondominated, nondominated_mask, normalise


def test_nondominated_keeps_duplicates_and_sorts_the_unique_front() -> None:
    pts = np.array([[1, 5], [2, 3], [3, 4], [4, 1], [2, 3], [5, 5]], dtype=float)
    assert nondominated_mask(pts).tolist() == [True, True, False, True, True, False]
    assert nondominated(pts).tolist() == [[1, 5], [2, 3], [4, 1]]


def _dominated_by_any(f: np.ndarray, i: int) -> bool:
    """The definition: some point is no worse in every objective and better in one."""
    return bool((np.all(f <= f[i], axis=1) & np.any(f < f[i], axis=1)).any())


@pytest.mark.parametrize("m", [2, 3, 4])
def test_nondominated_mask_is_the_definition_on_random_points(m: int) -> None:
    rng = np.random.default_rng(m)
    f = np.round(rng.random((300, m)), 2)                 # rounding makes ties in single objectives
    f = np.vstack([f, f[:20]])                            # and exact duplicates, which are all kept
    mask = nondominated_mask(f)
    assert mask.dtype == bool and mask.shape == (len(f),)
    assert mask.tolist() == [not _dominated_by_any(f, i) for i in range(len(f))]
    assert 0 < mask.sum() < len(f)


def _hv_by_grid(f: np.ndarray, ref: np.ndarray) -> float:
    """Hypervolume by the definition: the union of the boxes [point, ref], summed over the grid
    the points' coordinates cut the space into (each cell in or out as a whole)."""
    axes = [np.unique(np.append(f[:, j][f[:, j] < ref[j]], ref[j])) for j in range(f.shape[1])]
    lows = np.stack(np.meshgrid(*[a[:-1] for a in axes], indexing="ij"), axis=-1).reshape(-1, f.shape[1])
    sizes = np.stack(np.meshgrid(*[np.diff(a) for a in axes], indexing="ij"), axis=-1).reshape(-1, f.shape[1])
    covered = np.any(np.all(f[None, :, :] <= lows[:, None, :], axis=2), axis=1)
    return float(np.sum(np.prod(sizes, axis=1)[covered]))


@pytest.mark.parametrize("m", [2, 3])
def test_hypervolume_is_the_definition_on_random_points(m: int) -> None:
    rng = np.random.default_rng(10 + m)
    for _ in range(5):
        f = rng.random((12, m)) * 1.2                     # some points lie past the reference point
        ref = np.ones(m)
        assert hypervolume(f) == pytest.approx(_hv_by_grid(f, ref))
        ref = np.full(m, 0.9)
        assert hypervolume(f, ref) == pytest.approx(_hv_by_grid(f, ref))


def test_igd_plus_is_the_definition_on_random_points() -> None:
    rng = np.random.default_rng(7)
    for m in (2, 3):
        a, z = rng.random((15, m)), rng.random((25, m))
        want = np.mean([min(np.linalg.norm(np.maximum(ai - zi, 0.0)) for ai in a) for zi in z])
        assert igd_plus(a, z) == pytest.approx(want)
    assert igd_plus(np.zeros((0, 2)), z[:, :2]) == float("inf")


def test_hypervolume_rectangles() -> None:
    assert hypervolume(np.array([[0.0, 0.0]])) == pytest.approx(1.0)
    assert hypervolume(np.array([[0.5, 0.5]])) == pytest.approx(0.25)
    # two points: union of [0.2,1]x[0.6,1] and [0.6,1]x[0.2,1]
    assert hypervolume(np.array([[0.2, 0.6], [0.6, 0.2]])) == pytest.approx(0.32 + 0.32 - 0.16)
    assert hypervolume(np.array([[1.5, 0.1]])) == 0.0
    assert hypervolume(np.array([[0.5, 0.5, 0.5]])) == pytest.approx(0.125)


def test_igd_plus_zero_on_the_front_and_positive_off_it() -> None:
    front = np.array([[0.0, 1.0], [0.5, 0.5], [1.0, 0.0]])
    assert igd_plus(front, front) == 0.0
    worse = front + 0.1
    assert igd_plus(worse, front) == pytest.approx(np.sqrt(0.02))
    assert igd_plus(front - 0.1, front) == 0.0  # dominating points cost nothing


def test_normalise() -> None:
    out = normalise(np.array([[2.0, 10.0]]), np.array([0.0, 10.0]), np.array([4.0, 10.0]))
    assert out.tolist() == [[0.5, 0.0]]
