"""bpp and Bjøntegaard deltas (ssb.metrics) against analytic cases and scipy's pchip."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ssb.errors import MalformedFieldError
from ssb.metrics import bd_metric, bd_or_nan, bd_rate, bpp, pchip_integral

RATES = [0.05, 0.1, 0.2, 0.4, 0.8]
MAP = [20.0, 31.0, 38.0, 42.0, 44.0]  # saturating, like mAP against rate


def test_bpp():
    assert bpp(1000, 100, 80) == 1.0
    assert bpp(0, 1, 1) == 0.0
    for bad in ((-1, 10, 10), (10, 0, 10), (10, 10, 2.5), (True, 1, 1)):
        with pytest.raises(MalformedFieldError):
            bpp(*bad)


@pytest.mark.parametrize("method", ["pchip", "polyfit"])
def test_identical_curves_give_zero(method):
    assert bd_rate(RATES, MAP, RATES, MAP, method=method) == pytest.approx(0.0, abs=1e-9)
    assert bd_metric(RATES, MAP, RATES, MAP, method=method) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("method", ["pchip", "polyfit"])
@pytest.mark.parametrize("factor, expected", [(0.5, -50.0), (2.0, 100.0), (0.1, -90.0)])
def test_constant_rate_factor(method, factor, expected):
    """B reaches every accuracy at `factor` times A's rate: BD-rate is (factor - 1) * 100 %."""
    assert bd_rate(RATES, MAP, [r * factor for r in RATES], MAP, method=method) == pytest.approx(expected, abs=1e-7)


def test_sign_convention_and_swap():
    better = bd_rate(RATES, MAP, [r * 0.5 for r in RATES], MAP)
    worse = bd_rate([r * 0.5 for r in RATES], MAP, RATES, MAP)
    assert better < 0 < worse
    assert (1 + better / 100) * (1 + worse / 100) == pytest.approx(1.0)


def test_half_rate_with_different_sampling_and_partial_overlap():
    """metric = 10 ln(r) for A and 10 ln(2 r) for B, sampled at unrelated points: B needs half the rate."""
    ra = np.array([0.03, 0.07, 0.2, 0.5, 1.1])
    rb = np.array([0.02, 0.05, 0.09, 0.3, 0.45, 0.7])
    assert bd_rate(ra, 10 * np.log(ra), rb, 10 * np.log(2 * rb)) == pytest.approx(-50.0, abs=1e-9)
    # At equal rate, B is 10 ln 2 more accurate.
    assert bd_metric(ra, 10 * np.log(ra), rb, 10 * np.log(2 * rb)) == pytest.approx(10 * math.log(2), abs=1e-9)


def test_unsorted_input_and_rate_units_do_not_matter():
    order = [3, 0, 4, 1, 2]
    shuffled_r = [RATES[i] for i in order]
    shuffled_m = [MAP[i] for i in order]
    b_r, b_m = [0.04, 0.09, 0.15, 0.5, 0.9], [21.0, 30.0, 37.0, 42.5, 44.5]
    ref = bd_rate(RATES, MAP, b_r, b_m)
    assert bd_rate(shuffled_r, shuffled_m, b_r, b_m) == pytest.approx(ref)
    # bytes instead of bpp: a common scale factor cancels.
    assert bd_rate([r * 1e5 for r in RATES], MAP, [r * 1e5 for r in b_r], b_m) == pytest.approx(ref)


def test_bd_metric_constant_offset():
    assert bd_metric(RATES, MAP, RATES, [m + 1.5 for m in MAP]) == pytest.approx(1.5)
    assert bd_metric(RATES, MAP, RATES, [m - 2.0 for m in MAP], method="polyfit") == pytest.approx(-2.0)


def test_pchip_integral_matches_scipy():
    interpolate = pytest.importorskip("scipy.interpolate")
    rng = np.random.default_rng(3)
    for n in (2, 3, 4, 7):
        x = np.cumsum(rng.uniform(0.1, 2.0, n))
        y = rng.normal(size=n)
        lo, hi = x[0] + 0.3 * (x[-1] - x[0]), x[-1] - 0.1 * (x[-1] - x[0])
        expected = interpolate.PchipInterpolator(x, y).integrate(lo, hi)
        assert pchip_integral(x, y, lo, hi) == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_pchip_integral_exact_on_lines():
    x = [0.0, 1.0, 3.0, 3.5]
    y = [2 * v + 1 for v in x]
    assert pchip_integral(x, y, 0.5, 3.2) == pytest.approx((3.2**2 + 3.2) - (0.5**2 + 0.5))


def test_non_monotone_curve_is_refused_or_reduced_to_its_pareto_front():
    noisy = [20.0, 31.0, 30.0, 42.0, 41.0]  # two points less accurate than a cheaper one
    with pytest.raises(MalformedFieldError) as err:
        bd_rate(RATES, MAP, RATES, noisy)
    assert err.value.field == "metric_b" and "pareto=True" in str(err.value)
    front_r = [RATES[0], RATES[1], RATES[3]]
    front_m = [noisy[0], noisy[1], noisy[3]]
    assert bd_rate(RATES, MAP, RATES, noisy, pareto=True) == pytest.approx(bd_rate(RATES, MAP, front_r, front_m))
    # bd_metric only needs distinct rates.
    assert math.isfinite(bd_metric(RATES, MAP, RATES, noisy))


def test_refusals_name_the_problem():
    cases = [
        ((RATES, MAP[:-1], RATES, MAP), {}, "metric_a"),  # length mismatch
        (([0.1], [30.0], RATES, MAP), {}, "rate_a"),  # one point
        ((RATES[:3], MAP[:3], RATES, MAP), {"method": "polyfit"}, "rate_a"),  # polyfit needs 4
        ((RATES, MAP, [0.0] + RATES[1:], MAP), {}, "rate_b"),  # rate 0
        ((RATES, MAP, RATES, [math.nan] + MAP[1:]), {}, "metric_b"),
        ((RATES, MAP, RATES, [m + 100 for m in MAP]), {}, "metric"),  # no overlap
        ((RATES, MAP, RATES, MAP), {"method": "spline"}, "method"),
    ]
    for args, kwargs, field in cases:
        with pytest.raises(MalformedFieldError) as err:
            bd_rate(*args, **kwargs)
        assert err.value.field == field, (args, kwargs, err.value)


def test_bd_or_nan_keeps_the_reason():
    value, reason = bd_or_nan(bd_rate, RATES, MAP, RATES, [m + 100 for m in MAP])
    assert math.isnan(value) and "do not overlap" in reason
    value, reason = bd_or_nan(bd_rate, RATES, MAP, [r / 2 for r in RATES], MAP)
    assert value == pytest.approx(-50.0) and reason is None
