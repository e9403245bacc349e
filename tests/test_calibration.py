"""Per-device log-space calibration: fits, fall-backs, margins, JSON round trip, bad input."""
from __future__ import annotations

import json

import numpy as np
import pytest

from modnas.toolkit.prediction import calibration
from modnas.toolkit.prediction.calibration import Calibration
from modnas.toolkit.errors import BadInput


def test_recovers_power_law() -> None:
    rng = np.random.default_rng(0)
    pred = rng.uniform(1, 50, size=40)
    measured = 3.0 * pred ** 1.4
    cal = calibration.fit(pred, measured)
    assert cal.slope == pytest.approx(1.4, rel=1e-6)
    assert cal.intercept == pytest.approx(np.log(3.0), rel=1e-6)
    assert cal.n == 40
    np.testing.assert_allclose(cal.apply(pred), measured, rtol=1e-9)
    assert cal.margin(0.9) == pytest.approx(0.0, abs=1e-9)


def test_few_points_keep_slope_one() -> None:
    cal = calibration.fit([2.0, 4.0], [5.0, 20.0])
    assert cal.slope == 1.0
    # offset is the geometric mean ratio
    assert np.exp(cal.intercept) == pytest.approx(np.sqrt(2.5 * 5.0))


def test_degenerate_predictions_fall_back_to_offset() -> None:
    cal = calibration.fit([3.0] * 10, np.linspace(1, 10, 10))
    assert cal.slope == 1.0
    assert np.isfinite(cal.intercept)


def test_implausible_slope_falls_back() -> None:
    pred = np.array([1.0, 1.01, 1.02, 1.03, 1.04, 1.05])
    measured = np.array([1.0, 50.0, 2.0, 80.0, 3.0, 90.0])
    assert calibration.fit(pred, measured).slope == 1.0


def test_margin_covers_under_prediction() -> None:
    rng = np.random.default_rng(1)
    pred = rng.uniform(1, 10, size=200)
    measured = pred * np.exp(rng.normal(0, 0.05, size=200))
    cal = calibration.fit(pred, measured)
    m = cal.margin(0.9)
    assert 0.02 < m < 0.15
    covered = np.mean(measured <= cal.apply(pred) * (1 + m))
    assert covered >= 0.85
    assert cal.margin(0.99) >= m


def test_round_trip_through_the_stores_json() -> None:
    cal = calibration.fit([1.0, 2.0, 4.0, 8.0, 16.0], [2.1, 3.9, 8.3, 15.7, 33.0])
    back = Calibration.from_dict(json.loads(json.dumps(cal.to_dict())))
    assert back == cal
    np.testing.assert_allclose(back.apply([3.0, 5.0]), cal.apply([3.0, 5.0]))


@pytest.mark.parametrize("pred, measured", [
    ([1.0, -2.0], [1.0, 2.0]),
    ([1.0, 2.0], [1.0, float("nan")]),
    ([1.0, 2.0], [1.0, float("inf")]),
    ([1.0, 2.0, 3.0], [1.0, 2.0]),
    ([], []),
])
def test_bad_input_is_one_line(pred: list[float], measured: list[float]) -> None:
    with pytest.raises(BadInput) as err:
        calibration.fit(pred, measured)
    assert "\n" not in str(err.value)


def test_bad_record_and_quantile() -> None:
    with pytest.raises(BadInput):
        Calibration.from_dict({"slope": 1.0})
    with pytest.raises(BadInput):
        Calibration().margin(0.0)


def test_fixed_cost_offset_only_when_the_points_show_it() -> None:
    """A per-inference fixed cost (dispatch overhead) is found with enough points, never invented."""
    import numpy as np

    from modnas.toolkit.prediction.calibration import MIN_POINTS_FOR_OFFSET, fit

    rng = np.random.default_rng(3)
    pred = np.exp(rng.uniform(-1.5, 3.0, 30))
    with_cost = 0.6 + 0.9 * pred * np.exp(rng.normal(0, 0.02, 30))
    cal = fit(pred, with_cost)
    assert 0.3 < cal.offset < 0.9
    assert np.max(np.abs(cal.apply(pred) / with_cost - 1)) < 0.08
    plain = fit(pred, 0.9 * pred * np.exp(rng.normal(0, 0.02, 30)))
    assert plain.offset < 0.05 * plain.apply(pred).min()
    few = fit(pred[: MIN_POINTS_FOR_OFFSET - 1], with_cost[: MIN_POINTS_FOR_OFFSET - 1])
    assert few.offset == 0.0
    # apply_log agrees with apply, and the JSON round trip keeps the offset
    assert np.allclose(np.exp(cal.apply_log(np.log(pred))), cal.apply(pred))
    from modnas.toolkit.prediction.calibration import Calibration

    assert Calibration.from_dict(json.loads(json.dumps(cal.to_dict()))).offset == cal.offset
