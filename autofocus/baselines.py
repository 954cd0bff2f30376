"""What Micro-Manager users run today, re-implemented for side-by-side benchmarks.

Both baselines take the same ``measure(z_um) -> float`` callable as
:func:`autofocus.search.find_focus`, here returning a *sharpness* (higher = sharper,
any metric of :mod:`autofocus.metrics` applied to the frame imaged at ``z_um``).

* :func:`brent_focus` (OughtaFocus): Brent's bounded minimisation of ``-sharpness``
  over ``[z0 - R/2, z0 + R/2]`` (``R = search_range_um``, default 10 um) with absolute
  tolerance ``tolerance_um`` (default 1 um) and at most ``max_images`` evaluations.
* :func:`zstack_focus` (OughtaFocus "Z-stack" strategy): ``round(R / step) + 1``
  equally spaced slices; the peak is located by fitting ``a exp(-(z - mu)^2 / (2 s^2))
  + c`` to the slices; if that fit fails or lands outside the sampled range, a parabola
  through the best slice and its neighbours.

Each returns a :class:`BaselineResult` (final z, images used, trace).  Repeated z are
imaged once (a cache), and every z is clipped to the soft limits.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from autofocus.errors import InvalidInputError

__all__ = ["BaselineResult", "brent_focus", "zstack_focus"]


@dataclass(frozen=True)
class BaselineResult:
    """``z_um`` (final position), images used, the ``(z, sharpness)`` trace, compute s."""

    z_um: float
    images_used: int
    trace: tuple[tuple[float, float], ...]
    compute_s: float = 0.0


class _Counted:
    """Caches ``measure`` per z and records the trace and the time spent inside it."""

    def __init__(self, measure: Callable[[float], float], limits: tuple[float, float]) -> None:
        self.measure = measure
        self.limits = limits
        self.cache: dict[float, float] = {}
        self.trace: list[tuple[float, float]] = []
        self.inside_s = 0.0

    def __call__(self, z: float) -> float:
        lo, hi = self.limits
        z = float(min(max(z, lo), hi))
        key = round(z, 6)
        if key not in self.cache:
            t0 = time.perf_counter()
            v = float(self.measure(z))
            self.inside_s += time.perf_counter() - t0
            if not math.isfinite(v):
                v = -math.inf
            self.cache[key] = v
            self.trace.append((z, v))
        return self.cache[key]


def _check(range_um: float, z0: float, limits: tuple[float, float]) -> tuple[float, float]:
    if not (math.isfinite(range_um) and range_um > 0):
        raise InvalidInputError(f"search range must be > 0 um, got {range_um!r}")
    if not math.isfinite(z0):
        raise InvalidInputError("z_start_um must be finite")
    lo, hi = limits
    a, b = max(z0 - range_um / 2, lo), min(z0 + range_um / 2, hi)
    if not a < b:
        raise InvalidInputError("the search range does not overlap the soft limits")
    return a, b


def brent_focus(
    measure: Callable[[float], float],
    z_start_um: float,
    *,
    search_range_um: float = 10.0,
    tolerance_um: float = 1.0,
    max_images: int = 100,
    z_limits_um: tuple[float, float] = (-math.inf, math.inf),
) -> BaselineResult:
    """OughtaFocus-like Brent search for the sharpest z (see the module docstring).

    The final position is the best z Brent returns (OughtaFocus moves there).
    """
    from scipy.optimize import minimize_scalar

    if max_images < 1:
        raise InvalidInputError("max_images must be >= 1")
    if not (math.isfinite(tolerance_um) and tolerance_um > 0):
        raise InvalidInputError("tolerance_um must be > 0")
    t0 = time.perf_counter()
    a, b = _check(search_range_um, z_start_um, z_limits_um)
    f = _Counted(measure, (a, b))

    class _Budget(Exception):
        pass

    def neg(z: float) -> float:
        if len(f.cache) >= max_images and round(float(min(max(z, a), b)), 6) not in f.cache:
            raise _Budget
        return -f(z)

    try:
        opt = minimize_scalar(
            neg,
            bounds=(a, b),
            method="bounded",
            options={"xatol": tolerance_um, "maxiter": max_images},
        )
        z_best = float(opt.x)
    except _Budget:
        z_best = max(f.trace, key=lambda t: t[1])[0]
    total = time.perf_counter() - t0
    return BaselineResult(z_best, len(f.trace), tuple(f.trace), total - f.inside_s)


def _gauss(z: np.ndarray, a: float, mu: float, s: float, c: float) -> np.ndarray:
    return a * np.exp(-((z - mu) ** 2) / (2 * s * s)) + c


def zstack_focus(
    measure: Callable[[float], float],
    z_start_um: float,
    *,
    search_range_um: float = 10.0,
    step_um: float = 1.0,
    z_limits_um: tuple[float, float] = (-math.inf, math.inf),
) -> BaselineResult:
    """Z-stack sweep with a Gaussian peak fit (see the module docstring)."""
    from scipy.optimize import curve_fit

    if not (math.isfinite(step_um) and step_um > 0):
        raise InvalidInputError("step_um must be > 0")
    t0 = time.perf_counter()
    a, b = _check(search_range_um, z_start_um, z_limits_um)
    n = max(2, round((b - a) / step_um) + 1)
    zs = np.linspace(a, b, n)
    f = _Counted(measure, (a, b))
    v = np.array([f(z) for z in zs])
    finite = np.isfinite(v)
    if not finite.any():
        total = time.perf_counter() - t0
        return BaselineResult(float(z_start_um), n, tuple(f.trace), total - f.inside_s)
    k = int(np.nanargmax(np.where(finite, v, -np.inf)))
    z_best = float(zs[k])
    try:
        vf, zf = v[finite], zs[finite]
        p0 = (float(vf.max() - vf.min()), z_best, max((b - a) / 6, step_um), float(vf.min()))
        p, _ = curve_fit(_gauss, zf, vf, p0=p0, maxfev=2000)
        if a <= p[1] <= b and p[0] > 0:
            z_best = float(p[1])
        else:
            raise RuntimeError("peak outside the sweep")
    except Exception:
        if 0 < k < n - 1 and np.all(np.isfinite(v[k - 1 : k + 2])):
            y0, y1, y2 = v[k - 1], v[k], v[k + 1]
            den = y0 - 2 * y1 + y2
            if den < 0:
                z_best = float(zs[k] + 0.5 * (y0 - y2) / den * (zs[1] - zs[0]))
    total = time.perf_counter() - t0
    return BaselineResult(z_best, n, tuple(f.trace), total - f.inside_s)
