"""Drift of the focal plane over time.

A drift model answers one question: by how many micrometres has the plane that is in
focus moved, ``t_s`` seconds after the start of an experiment?  Every model is
deterministic (the same ``t_s`` always gives the same offset, whatever order times are
queried in) and is exactly 0 at ``t_s = 0``.  Negative or non-finite times are refused.

Models
------
* :class:`NoDrift`: ``offset(t) = 0``.
* :class:`LinearDrift`: ``offset(t) = rate_um_per_s * t`` (thermal creep).
* :class:`RandomWalkDrift`: a Wiener process sampled on a fixed grid ``t_k = k dt_s``
  with independent increments ``N(0, sigma^2 dt_s)`` (so ``Var offset(t) = sigma^2 t``),
  linearly interpolated between grid points.  Increments come in fixed-size blocks, each
  drawn from its own :class:`numpy.random.SeedSequence` ``(seed, block)``, so values never
  depend on query order.
* :class:`JumpDrift`: step changes ``offset(t) = sum(size_i for time_i <= t)`` (a bumped
  table, a refocused sample); every jump time must be > 0.
* :class:`CompositeDrift`: the sum of several models.

:func:`make_drift` builds a model from a short text spec or a dict (grammar in its
docstring).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from autofocus.checks import finite_float
from autofocus.errors import InvalidInputError

__all__ = [
    "CompositeDrift",
    "DriftModel",
    "JumpDrift",
    "LinearDrift",
    "NoDrift",
    "RandomWalkDrift",
    "make_drift",
]


@runtime_checkable
class DriftModel(Protocol):
    """Focal-plane displacement over time."""

    def offset_um(self, t_s: float) -> float:
        """Displacement (um) of the in-focus plane at time ``t_s`` (s, >= 0); 0 at t = 0."""
        ...


def _check_time(t_s: float) -> float:
    try:
        t = float(t_s)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"time must be a number of seconds, got {t_s!r}") from exc
    if not math.isfinite(t) or t < 0:
        raise InvalidInputError(f"time must be finite and >= 0 s, got {t_s!r}")
    return t


def _finite(value: Any, name: str, *, positive: bool = False, nonneg: bool = False) -> float:
    return finite_float(value, name, positive=positive, nonneg=nonneg)


class NoDrift:
    """No drift at all."""

    def offset_um(self, t_s: float) -> float:
        _check_time(t_s)
        return 0.0

    def __repr__(self) -> str:
        return "NoDrift()"


class LinearDrift:
    """Constant-rate drift: ``offset(t) = rate_um_per_s * t``."""

    def __init__(self, rate_um_per_s: float) -> None:
        self.rate_um_per_s = _finite(rate_um_per_s, "rate_um_per_s")

    def offset_um(self, t_s: float) -> float:
        return self.rate_um_per_s * _check_time(t_s)

    def __repr__(self) -> str:
        return f"LinearDrift(rate_um_per_s={self.rate_um_per_s!r})"


class RandomWalkDrift:
    """Seeded random walk (discretised Wiener process), linearly interpolated.

    ``offset(k dt) = sum_{i<k} e_i`` with ``e_i ~ N(0, sigma^2 dt)``; between grid points
    the offset is interpolated linearly.  The standard deviation of ``offset(t)`` at grid
    times is ``sigma_um_per_sqrt_s * sqrt(t)``.
    """

    _BLOCK = 1024  # grid steps per independently seeded block

    def __init__(self, sigma_um_per_sqrt_s: float, seed: int = 0, dt_s: float = 1.0) -> None:
        self.sigma_um_per_sqrt_s = _finite(sigma_um_per_sqrt_s, "sigma_um_per_sqrt_s", nonneg=True)
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
            raise InvalidInputError(f"seed must be an integer >= 0, got {seed!r}")
        self.seed = int(seed)
        self.dt_s = _finite(dt_s, "dt_s", positive=True)
        # _positions[k] = offset at t = k * dt_s; extended block by block on demand.
        self._positions = np.zeros(1, dtype=np.float64)
        self._lock = threading.Lock()

    def _block_increments(self, block: int) -> np.ndarray:
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, block]))
        step_sigma = self.sigma_um_per_sqrt_s * math.sqrt(self.dt_s)
        return rng.standard_normal(self._BLOCK) * step_sigma

    def _ensure(self, k_needed: int) -> np.ndarray:
        with self._lock:
            pos = self._positions
            while pos.size - 1 < k_needed:
                block = (pos.size - 1) // self._BLOCK
                inc = self._block_increments(block)
                pos = np.concatenate([pos, pos[-1] + np.cumsum(inc)])
            self._positions = pos
            return pos

    def offset_um(self, t_s: float) -> float:
        t = _check_time(t_s)
        u = t / self.dt_s
        k = math.floor(u)
        pos = self._ensure(k + 1)
        frac = u - k
        return float(pos[k] + frac * (pos[k + 1] - pos[k]))

    def __repr__(self) -> str:
        return (
            f"RandomWalkDrift(sigma_um_per_sqrt_s={self.sigma_um_per_sqrt_s!r}, "
            f"seed={self.seed!r}, dt_s={self.dt_s!r})"
        )


class JumpDrift:
    """Step changes: ``offset(t) = sum of sizes_um[i] for times_s[i] <= t``."""

    def __init__(self, times_s: Sequence[float], sizes_um: Sequence[float]) -> None:
        times = [_finite(t, "jump time") for t in times_s]
        sizes = [_finite(s, "jump size") for s in sizes_um]
        if len(times) != len(sizes):
            raise InvalidInputError(
                f"times_s and sizes_um must have the same length ({len(times)} != {len(sizes)})"
            )
        if any(t <= 0 for t in times):
            raise InvalidInputError("jump times must be > 0 s (the offset is 0 at t = 0)")
        order = np.argsort(times, kind="stable")
        self.times_s: tuple[float, ...] = tuple(times[i] for i in order)
        self.sizes_um: tuple[float, ...] = tuple(sizes[i] for i in order)
        self._cum = np.concatenate([[0.0], np.cumsum(self.sizes_um)])

    def offset_um(self, t_s: float) -> float:
        t = _check_time(t_s)
        n = int(np.searchsorted(np.asarray(self.times_s), t, side="right"))
        return float(self._cum[n])

    def __repr__(self) -> str:
        return f"JumpDrift(times_s={list(self.times_s)!r}, sizes_um={list(self.sizes_um)!r})"


class CompositeDrift:
    """The sum of several drift models."""

    def __init__(self, parts: Iterable[DriftModel]) -> None:
        self.parts: tuple[DriftModel, ...] = tuple(parts)
        for p in self.parts:
            if not callable(getattr(p, "offset_um", None)):
                raise InvalidInputError(f"{p!r} is not a drift model (no offset_um method)")

    def offset_um(self, t_s: float) -> float:
        t = _check_time(t_s)
        return float(sum(p.offset_um(t) for p in self.parts))

    def __repr__(self) -> str:
        return f"CompositeDrift({list(self.parts)!r})"


_DICT_KEYS = {"linear", "walk", "walk_dt_s", "jumps", "seed"}


def _parse_term(term: str, walk_seed: int) -> DriftModel:
    kind, sep, arg = term.partition(":")
    kind = kind.strip().lower()
    arg = arg.strip()
    if kind == "none" and not sep:
        return NoDrift()
    if not sep or not arg:
        raise InvalidInputError(f"drift term {term!r} must look like 'kind:value'")
    try:
        if kind == "linear":
            return LinearDrift(float(arg))
        if kind == "walk":
            return RandomWalkDrift(float(arg), seed=walk_seed)
        if kind == "jump":
            size, at, when = arg.partition("@")
            if not at:
                raise InvalidInputError(f"jump term {term!r} must look like 'jump:SIZE_UM@TIME_S'")
            return JumpDrift([float(when)], [float(size)])
    except ValueError as exc:  # float() failures (InvalidInputError is also a ValueError)
        if isinstance(exc, InvalidInputError):
            raise
        raise InvalidInputError(f"bad number in drift term {term!r}") from exc
    raise InvalidInputError(f"unknown drift kind {kind!r} in {term!r}; use linear, walk, jump")


def make_drift(spec: str | Mapping[str, Any] | DriftModel | None, *, seed: int = 0) -> DriftModel:
    """Build a drift model from a compact spec.

    Text grammar: comma-separated terms, summed::

        spec  := "none" | "" | term ("," term)*
        term  := "linear:" RATE_UM_PER_S
               | "walk:"   SIGMA_UM_PER_SQRT_S
               | "jump:"   SIZE_UM "@" TIME_S

    e.g. ``"linear:0.05,walk:0.02,jump:30@12.5"`` = 0.05 um/s creep + a random walk of
    0.02 um/sqrt(s) + a 30 um step at t = 12.5 s.  The i-th ``walk`` term uses seed
    ``seed + i``.

    Dict form (all keys optional): ``{"linear": 0.05, "walk": 0.02, "walk_dt_s": 1.0,
    "jumps": [{"size_um": 30, "time_s": 12.5}], "seed": 0}``.

    A :class:`DriftModel` is passed through; ``None`` gives :class:`NoDrift`.
    A single term gives that model; several give a :class:`CompositeDrift`.
    """
    if spec is None:
        return NoDrift()
    if isinstance(spec, str):
        text = spec.strip()
        if text == "" or text.lower() == "none":
            return NoDrift()
        terms = [t for t in (s.strip() for s in text.split(","))]
        if any(t == "" for t in terms):
            raise InvalidInputError(f"empty term in drift spec {spec!r}")
        parts: list[DriftModel] = []
        n_walk = 0
        for t in terms:
            parts.append(_parse_term(t, seed + n_walk))
            if t.strip().lower().startswith("walk"):
                n_walk += 1
        return parts[0] if len(parts) == 1 else CompositeDrift(parts)
    if isinstance(spec, Mapping):
        unknown = set(spec) - _DICT_KEYS
        if unknown:
            raise InvalidInputError(
                f"unknown drift spec keys {sorted(unknown)}; allowed: {sorted(_DICT_KEYS)}"
            )
        dseed = spec.get("seed", seed)
        parts = []
        if spec.get("linear") is not None:
            parts.append(LinearDrift(spec["linear"]))
        if spec.get("walk") is not None:
            parts.append(RandomWalkDrift(spec["walk"], seed=dseed, dt_s=spec.get("walk_dt_s", 1.0)))
        jumps = spec.get("jumps") or []
        if not isinstance(jumps, Sequence) or isinstance(jumps, str):
            raise InvalidInputError("'jumps' must be a list of {'size_um', 'time_s'} mappings")
        for j in jumps:
            if not isinstance(j, Mapping) or set(j) != {"size_um", "time_s"}:
                raise InvalidInputError(
                    f"each jump must be a mapping with keys 'size_um' and 'time_s', got {j!r}"
                )
            parts.append(JumpDrift([j["time_s"]], [j["size_um"]]))
        if not parts:
            return NoDrift()
        return parts[0] if len(parts) == 1 else CompositeDrift(parts)
    if callable(getattr(spec, "offset_um", None)):
        return spec
    raise InvalidInputError(f"cannot build a drift model from {type(spec).__name__}")
