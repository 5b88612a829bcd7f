"""Rate and rate-accuracy metrics: bits per pixel and Bjøntegaard deltas (numpy only).

Bjøntegaard deltas compare two rate-accuracy curves over the accuracy (or rate)
interval where both are measured.  Two interpolators are offered:

``"pchip"`` (default)
    Piecewise cubic Hermite interpolation with Fritsch-Carlson/Butland
    monotone slopes, the same shape-preserving interpolant as
    ``scipy.interpolate.PchipInterpolator`` (its end-point rule included) and as
    the "piecewise cubic" BD variant of the JVET/VCEG common test conditions.
    Works from 2 points per curve (2 points: a straight line) and never
    overshoots the data, so noisy curves give sane numbers.
``"polyfit"``
    The classic Bjøntegaard (VCEG-M33) least-squares cubic in log-rate; needs
    at least 4 points per curve and may oscillate on irregular data.

Both integrate exactly (two-point Gauss-Legendre per Hermite segment is exact for
cubics; the polynomial is integrated in closed form).

Conventions
-----------
*A is the anchor (reference), B is the test.*  :func:`bd_rate` returns the
average rate difference of B relative to A at equal accuracy, in percent:
``-50.0`` means B needs half the bits of A (B saves 50 %), ``+100.0`` means B
needs twice the bits.  :func:`bd_metric` returns the average accuracy gain of B
over A at equal rate, in the metric's own units (positive = B more accurate).

Curves are given as parallel sequences (any order: they are sorted by rate).
:func:`bd_rate` uses accuracy as the abscissa, so accuracy must increase strictly
with rate; a curve that does not is refused with
:class:`~ssb.errors.MalformedFieldError` naming the curve, unless ``pareto=True``
keeps only its Pareto-optimal points (each point must be more accurate than
every cheaper one), which is the operational rate-accuracy curve.
:func:`bd_or_nan` turns any such refusal into ``(nan, reason)`` for tables.
"""

from __future__ import annotations

from typing import Callable, Literal, Sequence

import numpy as np

from ssb.errors import MalformedFieldError, SSBError

__all__ = ["bpp", "bd_rate", "bd_metric", "bd_or_nan", "pchip_integral", "Method"]

Method = Literal["pchip", "polyfit"]

# Abscissae and weights of 2-point Gauss-Legendre quadrature on [0, 1]; exact for cubics.
_GL_X = np.array([0.5 - 0.5 / np.sqrt(3.0), 0.5 + 0.5 / np.sqrt(3.0)])
_GL_W = np.array([0.5, 0.5])


def bpp(num_bytes: int, height: int, width: int) -> float:
    """Bits per pixel of ``num_bytes`` bytes coding a ``height`` x ``width`` image."""
    for name, value, minimum in (("num_bytes", num_bytes, 0), ("height", height, 1), ("width", width, 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
            raise MalformedFieldError(f"{name} must be an integer >= {minimum}, got {value!r}", field=name)
    return 8.0 * int(num_bytes) / (int(height) * int(width))


# ---------------------------------------------------------------------------------------------
# Monotone cubic Hermite interpolation
# ---------------------------------------------------------------------------------------------


def _pchip_slopes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Node derivatives of the monotone piecewise cubic Hermite interpolant (scipy's rule)."""
    h = np.diff(x)
    m = np.diff(y) / h
    n = x.size
    if n == 2:
        return np.array([m[0], m[0]])
    d = np.zeros(n)
    # Interior: weighted harmonic mean of the neighbouring secants, zero at local extrema.
    w1 = 2.0 * h[1:] + h[:-1]
    w2 = h[1:] + 2.0 * h[:-1]
    same_sign = (np.sign(m[:-1]) * np.sign(m[1:])) > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        harmonic = (w1 + w2) / (w1 / m[:-1] + w2 / m[1:])
    d[1:-1] = np.where(same_sign, harmonic, 0.0)
    # Ends: non-centred three-point formula, limited so the end segments stay shape-preserving.
    d[0] = _pchip_end(h[0], h[1], m[0], m[1])
    d[-1] = _pchip_end(h[-1], h[-2], m[-1], m[-2])
    return d


def _pchip_end(h0: float, h1: float, m0: float, m1: float) -> float:
    d = ((2.0 * h0 + h1) * m0 - h0 * m1) / (h0 + h1)
    if np.sign(d) != np.sign(m0):
        return 0.0
    if np.sign(m0) != np.sign(m1) and abs(d) > abs(3.0 * m0):
        return 3.0 * m0
    return d


def _hermite_eval(x: np.ndarray, y: np.ndarray, d: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Evaluate the Hermite interpolant with node values ``y`` and slopes ``d`` at ``t`` (inside [x0, xn])."""
    k = np.clip(np.searchsorted(x, t, side="right") - 1, 0, x.size - 2)
    h = x[k + 1] - x[k]
    s = (t - x[k]) / h
    h00 = (1 + 2 * s) * (1 - s) ** 2
    h10 = s * (1 - s) ** 2
    h01 = s * s * (3 - 2 * s)
    h11 = s * s * (s - 1)
    return h00 * y[k] + h10 * h * d[k] + h01 * y[k + 1] + h11 * h * d[k + 1]


def pchip_integral(x: Sequence[float], y: Sequence[float], lo: float, hi: float) -> float:
    """Exact integral over ``[lo, hi]`` of the monotone cubic interpolant through ``(x, y)``.

    ``x`` must be strictly increasing with at least 2 points and ``x[0] <= lo <= hi <= x[-1]``.
    """
    xa = np.asarray(x, dtype=np.float64)
    ya = np.asarray(y, dtype=np.float64)
    if xa.ndim != 1 or xa.shape != ya.shape or xa.size < 2 or np.any(np.diff(xa) <= 0):
        raise MalformedFieldError("pchip needs >= 2 points with strictly increasing x", field="x")
    if not (xa[0] <= lo <= hi <= xa[-1]):
        raise MalformedFieldError(f"integration interval [{lo}, {hi}] is outside [{xa[0]}, {xa[-1]}]", field="lo")
    d = _pchip_slopes(xa, ya)
    # Split [lo, hi] at the nodes so each piece is one cubic; 2-point Gauss-Legendre is then exact.
    cuts = np.concatenate(([lo], xa[(xa > lo) & (xa < hi)], [hi]))
    a, b = cuts[:-1], cuts[1:]
    widths = b - a
    t = a[:, None] + widths[:, None] * _GL_X[None, :]
    values = _hermite_eval(xa, ya, d, t.ravel()).reshape(t.shape)
    return float(np.sum(widths * (values @ _GL_W)))


def _polyfit_integral(x: np.ndarray, y: np.ndarray, lo: float, hi: float) -> float:
    poly = np.polyint(np.polyfit(x, y, 3))
    return float(np.polyval(poly, hi) - np.polyval(poly, lo))


# ---------------------------------------------------------------------------------------------
# Curve validation
# ---------------------------------------------------------------------------------------------


def _curve(rate, metric, name: str, *, pareto: bool, need_monotone_metric: bool, min_points: int):
    """Validated (log-rate, metric) of one curve, sorted by rate."""
    r = np.asarray(rate, dtype=np.float64).ravel() if np.ndim(rate) else np.array([rate], dtype=np.float64)
    m = np.asarray(metric, dtype=np.float64).ravel() if np.ndim(metric) else np.array([metric], dtype=np.float64)
    if r.shape != m.shape:
        raise MalformedFieldError(f"curve {name}: {r.size} rates but {m.size} metric values", field=f"metric_{name}")
    if not np.all(np.isfinite(r)) or np.any(r <= 0):
        raise MalformedFieldError(f"curve {name}: rates must be finite and > 0", field=f"rate_{name}")
    if not np.all(np.isfinite(m)):
        raise MalformedFieldError(f"curve {name}: metric values must be finite", field=f"metric_{name}")
    order = np.lexsort((-m, r))  # by rate, the most accurate first among equal rates
    r, m = r[order], m[order]
    if pareto:
        # Keep a point only if it beats every cheaper (or equally cheap) point.
        best = np.maximum.accumulate(m)
        keep = np.concatenate(([True], m[1:] > best[:-1])) if m.size else np.zeros(0, dtype=bool)
        r, m = r[keep], m[keep]
    if np.any(np.diff(r) <= 0):
        raise MalformedFieldError(f"curve {name}: two points have the same rate", field=f"rate_{name}")
    if need_monotone_metric and np.any(np.diff(m) <= 0):
        raise MalformedFieldError(
            f"curve {name}: the metric does not increase strictly with rate ({np.round(m, 6).tolist()} "
            "sorted by rate); pass pareto=True to keep only its Pareto-optimal points",
            field=f"metric_{name}",
        )
    if r.size < min_points:
        raise MalformedFieldError(
            f"curve {name}: {r.size} usable point(s), the interpolator needs at least {min_points}",
            field=f"rate_{name}",
        )
    return np.log(r), m


def _integrate(method: str, x: np.ndarray, y: np.ndarray, lo: float, hi: float) -> float:
    if method == "pchip":
        return pchip_integral(x, y, lo, hi)
    return _polyfit_integral(x, y, lo, hi)


def _check_method(method: str) -> int:
    if method not in ("pchip", "polyfit"):
        raise MalformedFieldError(f"unknown BD interpolation method {method!r}; use 'pchip' or 'polyfit'", field="method")
    return 2 if method == "pchip" else 4


def _overlap(xa: np.ndarray, xb: np.ndarray, what: str) -> tuple[float, float]:
    lo = max(xa.min(), xb.min())
    hi = min(xa.max(), xb.max())
    if not hi > lo:
        raise MalformedFieldError(
            f"the two curves' {what} ranges do not overlap ([{xa.min():.6g}, {xa.max():.6g}] vs "
            f"[{xb.min():.6g}, {xb.max():.6g}])",
            field=what,
        )
    return float(lo), float(hi)


def bd_rate(
    rate_a: Sequence[float],
    metric_a: Sequence[float],
    rate_b: Sequence[float],
    metric_b: Sequence[float],
    *,
    method: Method = "pchip",
    pareto: bool = False,
) -> float:
    """Bjøntegaard delta rate of B against anchor A, in percent (negative = B saves bits).

    Log-rate is interpolated as a function of the metric on each curve, the two
    interpolants are averaged over the metric interval both curves cover, and
    the mean log-rate difference ``D`` is reported as ``100 * (exp(D) - 1)``.
    Rates may be in any positive unit (bpp, bytes, kbit/s), the same for both curves.

    Raises :class:`~ssb.errors.MalformedFieldError` for mismatched lengths,
    non-finite values, rates <= 0, too few points (pchip: 2, polyfit: 4), a metric
    that does not increase with rate (unless ``pareto=True``) or disjoint metric ranges.
    """
    min_points = _check_method(method)
    xa, ya = _curve(rate_a, metric_a, "a", pareto=pareto, need_monotone_metric=True, min_points=min_points)
    xb, yb = _curve(rate_b, metric_b, "b", pareto=pareto, need_monotone_metric=True, min_points=min_points)
    lo, hi = _overlap(ya, yb, "metric")
    int_a = _integrate(method, ya, xa, lo, hi)
    int_b = _integrate(method, yb, xb, lo, hi)
    return float((np.exp((int_b - int_a) / (hi - lo)) - 1.0) * 100.0)


def bd_metric(
    rate_a: Sequence[float],
    metric_a: Sequence[float],
    rate_b: Sequence[float],
    metric_b: Sequence[float],
    *,
    method: Method = "pchip",
    pareto: bool = False,
) -> float:
    """Bjøntegaard delta metric: mean ``metric_b - metric_a`` at equal rate (positive = B better).

    The metric is interpolated as a function of log-rate over the log-rate interval
    both curves cover (BD-PSNR style).  The metric need not be monotone here, but
    rates must be distinct within a curve; other refusals as in :func:`bd_rate`.
    """
    min_points = _check_method(method)
    xa, ya = _curve(rate_a, metric_a, "a", pareto=pareto, need_monotone_metric=False, min_points=min_points)
    xb, yb = _curve(rate_b, metric_b, "b", pareto=pareto, need_monotone_metric=False, min_points=min_points)
    lo, hi = _overlap(xa, xb, "rate")
    return float((_integrate(method, xb, yb, lo, hi) - _integrate(method, xa, ya, lo, hi)) / (hi - lo))


def bd_or_nan(fn: Callable[..., float], *args, **kwargs) -> tuple[float, str | None]:
    """``(fn(*args, **kwargs), None)``, or ``(nan, reason)`` when the curves are refused.

    For result tables that must keep a row for a pair of curves that cannot be compared.
    """
    try:
        return fn(*args, **kwargs), None
    except SSBError as exc:
        return float("nan"), str(exc)
