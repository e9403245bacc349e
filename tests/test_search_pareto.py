"""Non-dominated sets, hypervolume and IGD+ on small hand-checked cases."""
from __future__ import annotations

import numpy as np
import pytest

from modnas.toolkit.pareto import hypervolume, igd_plus, nondominated, nondominated_mask, normalise


def test_nondominated_two_and_three_objectives() -> None:
    pts = np.array([[1, 5], [2, 3], [3, 4], [4, 1], [2, 3], [5, 5]], dtype=float)
    assert nondominated_mask(pts).tolist() == [True, True, False, True, True, False]
    assert nondominated(pts).tolist() == [[1, 5], [2, 3], [4, 1]]
    rng = np.random.default_rng(0)
    p3 = rng.random((200, 3))
    mask = nondominated_mask(p3)
    for i in np.flatnonzero(mask):
        dominated = np.all(p3 <= p3[i], axis=1) & np.any(p3 < p3[i], axis=1)
        assert not dominated.any()
    for i in np.flatnonzero(~mask):
        assert (np.all(p3 <= p3[i], axis=1) & np.any(p3 < p3[i], axis=1)).any()


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
