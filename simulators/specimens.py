"""Synthetic specimens, defined in physical units and generated lazily, tile by tile.

A specimen is an infinite plane of structure in sample coordinates (micrometres).
:meth:`Specimen.patch` rasterises the part seen by a camera: pixel ``(i, j)`` of a patch
has its centre at ``(x0_um + j * pixel_size_um, y0_um + i * pixel_size_um)`` (row = y).
Values are fluorophore density (bright structures ~1.0) or phase in radians.

Determinism and tiling
----------------------
* Discrete objects (nuclei, cells, filaments, beads) belong to square tiles of
  :data:`TILE_UM` micrometres.  Tile ``(ix, iy)`` of layer ``l`` draws its objects from
  ``numpy.random.SeedSequence([seed, l, zigzag(ix), zigzag(iy), salt])``; a patch
  collects the objects of every tile whose objects can reach it (neighbouring tiles
  included), so objects crossing tile borders are drawn whole.
* Continuous textures are fractal value noise: octave ``k`` is a cubic B-spline over a
  lattice of spacing ``s_k = s_0 2^k`` um anchored at the sample origin, with lattice
  values from a 64-bit integer hash of ``(seed, layer, octave, ix, iy)``.  Octaves finer
  than two pixels are left out (the pixel integration would average them away).
* Hence any XY position works, overlapping requests at the same pixel size agree (up to
  float rounding), and different seeds give different specimens.

Rendering is vectorised: every object is splatted through a small fixed-size stencil
and all contributions are summed with one ``numpy.bincount``.  Thin lines use exact
area coverage along their minor axis (Wu-style anti-aliasing), sub-resolution beads are
pixel-integrated Gaussians, so the same specimen looks right at any pixel size.

Options of :func:`make_specimen`
--------------------------------
``density`` (1.0): relative number of objects per area (0 gives an empty field).
``brightness`` (1.0): scale of all values.
``tilt_x_um_per_um``, ``tilt_y_um_per_um`` (0): focal-surface slope.
``curvature_um`` (0): bowl depth: ``surface_um`` rises by this much 1 mm from the
sample origin.  Together: ``surface_um(x, y) = tx x + ty y + c (x^2 + y^2) / (1000 um)^2``.
``thickness_um`` (0) and ``n_layers`` (1 if thickness is 0, else ``1 + round(t / 2 um)``,
at least 2, at most 16): a thick sample made of ``n_layers`` independent layers at
``z_offset_um = linspace(-t/2, t/2, n_layers)``; each layer has the full density.
"""

from __future__ import annotations

import math
import threading
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

import numpy as np
from scipy.special import ndtr

from autofocus.errors import InvalidInputError, UnknownNameError

__all__ = [
    "SPECIMEN_NAMES",
    "TILE_UM",
    "Layer",
    "Specimen",
    "SpecimenOptions",
    "SpecimenPatch",
    "TiledSpecimen",
    "make_specimen",
]

TILE_UM = 128.0
"""Side of the square tiles that own discrete objects, in micrometres."""

_MAX_SIDE_PX = 16384
_Kind = Literal["fluorescence", "phase"]


# =====================================================================================
# Public data types
# =====================================================================================
@dataclass(frozen=True)
class Layer:
    """One plane of a specimen: ``values`` (H, W) float32 at ``z_offset_um``."""

    z_offset_um: float
    values: np.ndarray


@dataclass(frozen=True)
class SpecimenPatch:
    """What a specimen looks like over one field.

    ``surface_um`` (H, W) float32 is the local height of the specimen relative to its
    nominal plane (tilt, curvature), or None when flat.
    """

    kind: _Kind
    layers: list[Layer]
    surface_um: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, int]:
        h, w = self.layers[0].values.shape
        return int(h), int(w)


@runtime_checkable
class Specimen(Protocol):
    """Anything that can produce a :class:`SpecimenPatch` for a field of view."""

    @property
    def name(self) -> str: ...

    @property
    def kind(self) -> _Kind: ...

    @property
    def seed(self) -> int: ...

    def patch(
        self, x0_um: float, y0_um: float, shape: tuple[int, int], pixel_size_um: float
    ) -> SpecimenPatch:
        """Rasterise the specimen; ``(x0_um, y0_um)`` is the centre of pixel (0, 0)."""
        ...


@dataclass(frozen=True)
class SpecimenOptions:
    """Validated options shared by all specimens (see the module docstring)."""

    density: float = 1.0
    brightness: float = 1.0
    tilt_x_um_per_um: float = 0.0
    tilt_y_um_per_um: float = 0.0
    curvature_um: float = 0.0
    thickness_um: float = 0.0
    n_layers: int | None = None

    def __post_init__(self) -> None:
        def num(name: str, lo: float, hi: float, *, lo_open: bool = False) -> float:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float | np.integer | np.floating):
                raise InvalidInputError(f"specimen option {name} must be a number, got {v!r}")
            v = float(v)
            if not math.isfinite(v) or v < lo or v > hi or (lo_open and v == lo):
                bound = "(" if lo_open else "["
                raise InvalidInputError(
                    f"specimen option {name}={v!r} is outside {bound}{lo}, {hi}]"
                )
            object.__setattr__(self, name, v)
            return v

        num("density", 0.0, 20.0)
        num("brightness", 0.0, 1e4, lo_open=True)
        num("tilt_x_um_per_um", -1.0, 1.0)
        num("tilt_y_um_per_um", -1.0, 1.0)
        num("curvature_um", -1e4, 1e4)
        t = num("thickness_um", 0.0, 500.0)
        n = self.n_layers
        if n is None:
            n = 1 if t == 0 else int(min(16, max(2, 1 + round(t / 2.0))))
        elif isinstance(n, bool) or not isinstance(n, int | np.integer) or not 1 <= n <= 64:
            raise InvalidInputError(f"specimen option n_layers must be an int in 1..64, got {n!r}")
        n = int(n)
        if n > 1 and t == 0:
            raise InvalidInputError("n_layers > 1 needs thickness_um > 0")
        object.__setattr__(self, "n_layers", n)

    @property
    def z_offsets_um(self) -> np.ndarray:
        n = int(self.n_layers or 1)
        if n == 1:
            return np.zeros(1)
        return np.linspace(-self.thickness_um / 2, self.thickness_um / 2, n)


# =====================================================================================
# Pixel grid and accumulation canvas
# =====================================================================================
@dataclass
class _Grid:
    """A patch's pixel grid; pixel centres at ``x0 + j p``, ``y0 + i p``."""

    x0: float
    y0: float
    h: int
    w: int
    p: float

    @property
    def xs(self) -> np.ndarray:
        return self.x0 + np.arange(self.w) * self.p

    @property
    def ys(self) -> np.ndarray:
        return self.y0 + np.arange(self.h) * self.p

    def bounds_um(self, margin_um: float) -> tuple[float, float, float, float]:
        half = self.p / 2 + margin_um
        return (
            self.x0 - half,
            self.x0 + (self.w - 1) * self.p + half,
            self.y0 - half,
            self.y0 + (self.h - 1) * self.p + half,
        )


_FLUSH_ENTRIES = 6_000_000
_CHUNK_ENTRIES = 1_500_000


class _Canvas:
    """A padded image that sums splatted contributions.

    Large dense stencils are added slice by slice (:meth:`add_block`); many small sparse
    ones as (flat index, value) lists summed with ``bincount`` (:meth:`add`).
    """

    def __init__(self, grid: _Grid, pad: int) -> None:
        self.g = grid
        self.pad = int(pad)
        self.hc = grid.h + 2 * self.pad
        self.wc = grid.w + 2 * self.pad
        self._idx: list[np.ndarray] = []
        self._val: list[np.ndarray] = []
        self._n = 0
        self._acc: np.ndarray | None = None
        self._dense: np.ndarray | None = None

    def add(self, idx: np.ndarray, val: np.ndarray) -> None:
        """Add values at flat indices of the padded image (zeros are dropped)."""
        val = val.ravel()
        nz = val != 0
        self._idx.append(idx.ravel()[nz])
        self._val.append(val[nz])
        self._n += self._idx[-1].size
        if self._n > _FLUSH_ENTRIES:
            self._flush()

    def add_blocks(self, rows0: np.ndarray, cols0: np.ndarray, blocks: np.ndarray) -> None:
        """Add ``blocks[i]`` (K x K) with its top-left corner at padded-image pixel
        ``(rows0[i] + pad, cols0[i] + pad)``."""
        if self._dense is None:
            self._dense = np.zeros((self.hc, self.wc), dtype=np.float32)
        d = self._dense
        k0, k1 = blocks.shape[1], blocks.shape[2]
        r0 = (rows0 + self.pad).tolist()
        c0 = (cols0 + self.pad).tolist()
        for i in range(len(r0)):
            d[r0[i] : r0[i] + k0, c0[i] : c0[i] + k1] += blocks[i]

    def _flush(self) -> None:
        if not self._idx:
            return
        idx = np.concatenate(self._idx) if len(self._idx) > 1 else self._idx[0]
        val = np.concatenate(self._val) if len(self._val) > 1 else self._val[0]
        part = np.bincount(idx, weights=val, minlength=self.hc * self.wc)
        self._acc = part if self._acc is None else self._acc + part
        self._idx, self._val, self._n = [], [], 0

    def image(self) -> np.ndarray:
        self._flush()
        g, pad = self.g, self.pad
        crop = (slice(pad, pad + g.h), slice(pad, pad + g.w))
        out = np.zeros((g.h, g.w), dtype=np.float32)
        if self._acc is not None:
            out += self._acc.reshape(self.hc, self.wc)[crop]
        if self._dense is not None:
            out += self._dense[crop]
        return out


def _chunks(n: int, per_item: int) -> list[slice]:
    step = max(1, _CHUNK_ENTRIES // max(1, per_item))
    return [slice(i, min(n, i + step)) for i in range(0, n, step)]


def _splat_ellipses(
    cv: _Canvas,
    cx: np.ndarray,
    cy: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    theta: np.ndarray,
    amp: np.ndarray,
    power: float,
) -> None:
    """Add ``amp (1 - rho^2)^power`` (0 outside) for ellipses with semi-axes ``a`` (along
    ``theta``) and ``b``, ``rho^2 = (x'/a)^2 + (y'/b)^2``; sampled at pixel centres.

    ``power = 0.5`` is the projected thickness of an ellipsoid (a nucleus in widefield),
    ``1.5`` a smooth bump (a cell's optical path length).
    """
    g = cv.g
    if cx.size == 0:
        return
    p = g.p
    u = (cx - g.x0) / p
    v = (cy - g.y0) / p
    r = np.maximum(a, b) / p
    jc = np.rint(u).astype(np.int64)
    ic = np.rint(v).astype(np.int64)
    rr = np.ceil(r).astype(np.int64) + 1
    keep = (jc + rr >= 0) & (jc - rr < g.w) & (ic + rr >= 0) & (ic - rr < g.h) & (amp != 0)
    if not np.any(keep):
        return
    u, v, jc, ic = u[keep], v[keep], jc[keep], ic[keep]
    a, b, theta, amp = a[keep] / p, b[keep] / p, theta[keep], amp[keep]
    h = int(np.ceil(np.max(np.maximum(a, b)))) + 1
    if 2 * h + 1 > cv.pad:  # pragma: no cover - specimens declare their extents
        raise RuntimeError("ellipse larger than the canvas padding")
    c, s = np.cos(theta), np.sin(theta)
    qa = c * c / (a * a) + s * s / (b * b)
    qc = s * s / (a * a) + c * c / (b * b)
    qb = c * s * (1.0 / (a * a) - 1.0 / (b * b))
    offs = np.arange(-h, h + 1, dtype=np.int64)
    k = offs.size
    for sl in _chunks(u.size, k * k):
        cols = jc[sl, None] + offs  # (n, K)
        rows = ic[sl, None] + offs
        dx = (cols - u[sl, None]).astype(np.float32)
        dy = (rows - v[sl, None]).astype(np.float32)
        t = (
            qa[sl, None, None].astype(np.float32) * (dx * dx)[:, None, :]
            + (2 * qb[sl, None, None]).astype(np.float32) * (dy[:, :, None] * dx[:, None, :])
            + qc[sl, None, None].astype(np.float32) * (dy * dy)[:, :, None]
        )
        np.subtract(1.0, t, out=t)
        np.maximum(t, 0.0, out=t)
        if power == 0.5:
            np.sqrt(t, out=t)
        elif power == 1.5:
            t *= np.sqrt(t)
        elif power != 1.0:
            np.power(t, power, out=t)
        t *= amp[sl, None, None].astype(np.float32)
        cv.add_blocks(rows[:, 0], cols[:, 0], t)


def _splat_segments(
    cv: _Canvas,
    xa: np.ndarray,
    ya: np.ndarray,
    xb: np.ndarray,
    yb: np.ndarray,
    width_um: np.ndarray,
    amp: np.ndarray,
) -> None:
    """Add straight line segments of full width ``width_um`` and density ``amp``.

    Along its major axis a segment owns the pixel columns (rows) whose centres lie in
    ``[start, end)``, so consecutive segments of a polyline join without double counting.
    Across, each pixel gets the exact fraction of its extent covered by the line's
    cross-section (``width / cos(angle)``), so a line thinner than a pixel deposits
    ``width * length`` of density in total, anti-aliased.
    """
    g = cv.g
    if xa.size == 0:
        return
    p = g.p
    ua, va = (xa - g.x0) / p, (ya - g.y0) / p
    ub, vb = (xb - g.x0) / p, (yb - g.y0) / p
    wpx = width_um / p
    xmajor = np.abs(ub - ua) >= np.abs(vb - va)
    for transposed in (False, True):
        sel = ~xmajor if transposed else xmajor
        if not np.any(sel):
            continue
        if transposed:  # major axis = rows (y), minor = columns (x)
            ma, mb, na, nb = va[sel], vb[sel], ua[sel], ub[sel]
            n_major, n_minor = g.h, g.w
        else:
            ma, mb, na, nb = ua[sel], ub[sel], va[sel], vb[sel]
            n_major, n_minor = g.w, g.h
        wp, am = wpx[sel], amp[sel]
        swap = mb < ma
        ma, mb = np.where(swap, mb, ma), np.where(swap, ma, mb)
        na, nb = np.where(swap, nb, na), np.where(swap, na, nb)
        span = mb - ma
        ok = span > 0
        c0 = np.ceil(ma).astype(np.int64)
        ncol = np.ceil(mb).astype(np.int64) - c0
        slope = np.where(ok, (nb - na) / np.where(ok, span, 1.0), 0.0)
        hv = 0.5 * wp * np.sqrt(1.0 + slope * slope)
        lo_m = np.minimum(na, nb) - hv - 1
        hi_m = np.maximum(na, nb) + hv + 1
        keep = (
            ok
            & (ncol > 0)
            & (c0 + ncol > 0)
            & (c0 < n_major)
            & (hi_m >= 0)
            & (lo_m < n_minor)
            & (am != 0)
        )
        if not np.any(keep):
            continue
        ma, na, c0, ncol = ma[keep], na[keep], c0[keep], ncol[keep]
        slope, hv, am = slope[keep], hv[keep], am[keep]
        kc = int(ncol.max())
        kr = int(np.ceil(2 * hv.max())) + 2
        if kc + kr + 2 > cv.pad:  # pragma: no cover - specimens declare their extents
            raise RuntimeError("segment larger than the canvas padding")
        kcol = np.arange(kc, dtype=np.int64)
        krow = np.arange(kr, dtype=np.int64)
        for sl in _chunks(ma.size, kc * kr):
            col = c0[sl, None] + kcol  # (n, Kc)
            valid = kcol[None, :] < ncol[sl, None]
            mc = na[sl, None] + (col - ma[sl, None]) * slope[sl, None]
            top = mc - hv[sl, None]
            bot = mc + hv[sl, None]
            rbase = np.floor(top + 0.5).astype(np.int64)
            row = rbase[:, :, None] + krow  # (n, Kc, Kr)
            cov = np.minimum(bot[:, :, None], row + 0.5) - np.maximum(top[:, :, None], row - 0.5)
            np.maximum(cov, 0.0, out=cov)
            cov *= (valid * am[sl, None])[:, :, None]
            if transposed:
                idx = (col + cv.pad)[:, :, None] * cv.wc + (row + cv.pad)
            else:
                idx = (row + cv.pad) * cv.wc + (col + cv.pad)[:, :, None]
            cv.add(idx, cov.astype(np.float32))


def _splat_points(
    cv: _Canvas,
    cx: np.ndarray,
    cy: np.ndarray,
    sigma_um: np.ndarray,
    flux_um2: np.ndarray,
) -> None:
    """Add pixel-integrated Gaussians of total ``flux_um2`` (density x um^2) each."""
    g = cv.g
    if cx.size == 0:
        return
    p = g.p
    u = (cx - g.x0) / p
    v = (cy - g.y0) / p
    s = np.maximum(sigma_um / p, 1e-3)
    h = int(np.ceil(3.5 * s.max())) + 1
    jc = np.rint(u).astype(np.int64)
    ic = np.rint(v).astype(np.int64)
    keep = (jc + h >= 0) & (jc - h < g.w) & (ic + h >= 0) & (ic - h < g.h)
    if not np.any(keep):
        return
    u, v, jc, ic, s, f = u[keep], v[keep], jc[keep], ic[keep], s[keep], flux_um2[keep]
    offs = np.arange(-h, h + 1, dtype=np.int64)
    cols = jc[:, None] + offs
    rows = ic[:, None] + offs
    wx = ndtr((cols + 0.5 - u[:, None]) / s[:, None]) - ndtr((cols - 0.5 - u[:, None]) / s[:, None])
    wy = ndtr((rows + 0.5 - v[:, None]) / s[:, None]) - ndtr((rows - 0.5 - v[:, None]) / s[:, None])
    val = (f / (p * p))[:, None, None] * wy[:, :, None] * wx[:, None, :]
    idx = (rows + cv.pad)[:, :, None] * cv.wc + (cols + cv.pad)[:, None, :]
    cv.add(idx, val.astype(np.float32))


# =====================================================================================
# Fractal value noise in physical coordinates
# =====================================================================================
_K1 = np.uint64(0x9E3779B97F4A7C15)
_K2 = np.uint64(0xC2B2AE3D27D4EB4F)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def _mix64(z: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser (wrapping uint64 arithmetic)."""
    z = z ^ (z >> np.uint64(30))
    z = z * _M1
    z ^= z >> np.uint64(27)
    z *= _M2
    z ^= z >> np.uint64(31)
    return z


def _lattice_values(key: int, ix: np.ndarray, iy: np.ndarray) -> np.ndarray:
    """Uniform values in [-1, 1) for lattice points ``iy[:, None], ix[None, :]``."""
    base = np.uint64(key & 0xFFFFFFFFFFFFFFFF)
    zx = _mix64(ix.astype(np.int64).astype(np.uint64) * _K1 + base)
    zy = iy.astype(np.int64).astype(np.uint64) * _K2
    z = _mix64(zy[:, None] ^ zx[None, :])
    return ((z >> np.uint64(40)).astype(np.float32) * np.float32(2.0**-23)) - np.float32(1.0)


def _upsample2(c: np.ndarray, c_lo: int, f_lo: int, f_hi: int, axis: int) -> np.ndarray:
    """Exact cubic B-spline subdivision (mask (1, 4, 6, 4, 1)/8) along ``axis``:
    coefficients on lattice indices ``c_lo..`` -> fine indices ``f_lo..f_hi``."""
    f = np.arange(f_lo, f_hi + 1)
    i = np.floor_divide(f, 2)
    li = i - c_lo
    even = (f % 2) == 0
    c0 = np.take(c, li, axis=axis)
    c1 = np.take(c, li + 1, axis=axis)
    cm = np.take(c, np.maximum(li - 1, 0), axis=axis)
    shape = [1, 1]
    shape[axis] = f.size
    ev = even.reshape(shape)
    return np.where(ev, (cm + 6 * c0 + c1) * 0.125, (c0 + c1) * 0.5).astype(np.float32)


def _bspline_weights(t: np.ndarray) -> list[np.ndarray]:
    t2, t3 = t * t, t * t * t
    return [
        ((1 - t) ** 3 / 6).astype(np.float32),
        ((3 * t3 - 6 * t2 + 4) / 6).astype(np.float32),
        ((-3 * t3 + 3 * t2 + 3 * t + 1) / 6).astype(np.float32),
        (t3 / 6).astype(np.float32),
    ]


def _fbm(
    key: int,
    grid: _Grid,
    base_spacing_um: float,
    n_octaves: int,
    slope: float = 0.5,
) -> np.ndarray:
    """Fractal value noise, roughly zero-mean and unit-variance, float32 (H, W).

    Octave ``k`` has lattice spacing ``base * 2^k`` and amplitude ``2^(k slope)``; octaves
    with spacing below two pixels are omitted (the total is still normalised by all
    octaves, so the texture is the same physical object seen through bigger pixels).
    """
    gains = [2.0 ** (k * slope) for k in range(n_octaves)]
    norm = 1.0 / (0.38 * math.sqrt(sum(gg * gg for gg in gains)))
    k_min = 0
    while k_min < n_octaves and base_spacing_um * 2**k_min < 2 * grid.p:
        k_min += 1
    if k_min >= n_octaves:
        return np.zeros((grid.h, grid.w), dtype=np.float32)
    s_f = base_spacing_um * 2**k_min
    ux = grid.xs / s_f
    uy = grid.ys / s_f
    iux = np.floor(ux).astype(np.int64)
    iuy = np.floor(uy).astype(np.int64)
    # index ranges per level, finest first
    ranges = [(int(iux.min()) - 1, int(iux.max()) + 2, int(iuy.min()) - 1, int(iuy.max()) + 2)]
    for _ in range(k_min + 1, n_octaves):
        ax, bx, ay, by = ranges[-1]
        ranges.append(
            (-((2 - ax) // 2), (bx + 2) // 2, -((2 - ay) // 2), (by + 2) // 2)
        )  # ceil((a-2)/2), floor((b+2)/2)
    coef: np.ndarray | None = None
    for lvl in range(n_octaves - 1, k_min - 1, -1):
        ax, bx, ay, by = ranges[lvl - k_min]
        vals = _lattice_values(
            key * 64 + lvl, np.arange(ax, bx + 1), np.arange(ay, by + 1)
        ) * np.float32(gains[lvl])
        if coef is not None:
            pax, _pbx, pay, _pby = ranges[lvl - k_min + 1]
            up = _upsample2(coef, pay, ay, by, axis=0)
            up = _upsample2(up, pax, ax, bx, axis=1)
            vals += up
        coef = vals
    assert coef is not None
    ax, _bx, ay, _by = ranges[0]
    wx = _bspline_weights(ux - iux)
    wy = _bspline_weights(uy - iuy)
    lx = iux - ax  # index of tap 1 (the lattice point at floor(u))
    ly = iuy - ay
    tmp = np.zeros((coef.shape[0], grid.w), dtype=np.float32)
    for t in range(4):
        tmp += coef[:, lx + t - 1] * wx[t][None, :]
    out = np.empty((grid.h, grid.w), dtype=np.float32)
    buf = np.empty_like(out)
    for t in range(4):
        np.take(tmp, ly + t - 1, axis=0, out=buf)
        buf *= wy[t][:, None]
        if t == 0:
            out[...] = buf
        else:
            out += buf
    out *= np.float32(norm)
    return out


# =====================================================================================
# Tiled specimen base
# =====================================================================================
def _zigzag(i: int) -> int:
    return 2 * i if i >= 0 else -2 * i - 1


_Objects = dict[str, np.ndarray]


class TiledSpecimen(ABC):
    """Base class: layers, surface, tiling and caching; subclasses draw and render."""

    name: ClassVar[str] = ""
    kind: ClassVar[_Kind] = "fluorescence"
    extent_um: ClassVar[float] = 0.0
    """Largest distance from a tile's border that its objects can reach (um)."""
    splat_um: ClassVar[float] = 0.0
    """Largest stencil reach in um: ellipse semi-axis, or segment length + width."""
    lod_step_um: ClassVar[float] = 0.0
    """Vertex spacing of curved filaments; polylines are decimated to about 2 px per
    segment (``lod = floor(2 p / step)``), 0 = never."""

    _CACHE_TILES = 4096

    def __init__(self, seed: int = 0, options: SpecimenOptions | None = None) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
            raise InvalidInputError(f"specimen seed must be an integer >= 0, got {seed!r}")
        self.seed = int(seed)
        self.options = options or SpecimenOptions()
        self._cache: OrderedDict[tuple[int, int, int, int], _Objects] = OrderedDict()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, seed={self.seed}, {self.options})"

    @property
    def z_offsets_um(self) -> np.ndarray:
        return self.options.z_offsets_um

    # ---- public -------------------------------------------------------------
    def patch(
        self, x0_um: float, y0_um: float, shape: tuple[int, int], pixel_size_um: float
    ) -> SpecimenPatch:
        grid = _check_grid(x0_um, y0_um, shape, pixel_size_um)
        layers = []
        for li, z in enumerate(self.z_offsets_um):
            vals = self._render_layer(grid, li) if self.options.density > 0 else None
            if vals is None:
                vals = np.zeros((grid.h, grid.w), dtype=np.float32)
            vals = np.asarray(vals, dtype=np.float32)
            np.maximum(vals, 0.0, out=vals)
            if self.options.brightness != 1.0:
                vals *= np.float32(self.options.brightness)
            layers.append(Layer(z_offset_um=float(z), values=vals))
        return SpecimenPatch(kind=self.kind, layers=layers, surface_um=self._surface(grid))

    # ---- helpers for subclasses --------------------------------------------
    def _surface(self, grid: _Grid) -> np.ndarray | None:
        o = self.options
        if o.tilt_x_um_per_um == 0 and o.tilt_y_um_per_um == 0 and o.curvature_um == 0:
            return None
        xs, ys = grid.xs, grid.ys
        s = (o.tilt_x_um_per_um * xs)[None, :] + (o.tilt_y_um_per_um * ys)[:, None]
        if o.curvature_um != 0:
            s = s + o.curvature_um * ((xs * xs)[None, :] + (ys * ys)[:, None]) / 1e6
        return np.ascontiguousarray(s, dtype=np.float32)

    def _canvas(self, grid: _Grid) -> _Canvas:
        # an object kept because it touches the frame reaches at most two stencils out
        return _Canvas(grid, pad=2 * math.ceil(self.splat_um / grid.p) + 8)

    def _noise_key(self, layer: int, salt: int) -> int:
        return (self.seed * 1_000_003 + layer * 7919 + salt * 104_729) & 0x3FFFFFFFFFFFFFF

    def _rng(self, layer: int, ix: int, iy: int, salt: int = 0) -> np.random.Generator:
        ss = np.random.SeedSequence([self.seed, layer, _zigzag(ix), _zigzag(iy), salt])
        return np.random.default_rng(ss)

    def _objects(self, grid: _Grid, layer: int) -> _Objects:
        """Concatenated objects of every tile that can reach the patch."""
        x_lo, x_hi, y_lo, y_hi = grid.bounds_um(self.extent_um)
        ix0, ix1 = math.floor(x_lo / TILE_UM), math.floor(x_hi / TILE_UM)
        iy0, iy1 = math.floor(y_lo / TILE_UM), math.floor(y_hi / TILE_UM)
        parts: list[_Objects] = []
        lod = max(1, math.floor(2 * grid.p / self.lod_step_um)) if self.lod_step_um else 1
        for iy in range(iy0, iy1 + 1):
            for ix in range(ix0, ix1 + 1):
                parts.append(self._tile(layer, ix, iy, lod))
        keys = parts[0].keys() if parts else ()
        return {k: np.concatenate([pt[k] for pt in parts]) for k in keys}

    def _tile(self, layer: int, ix: int, iy: int, lod: int = 1) -> _Objects:
        key = (layer, ix, iy, lod)
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit
        objs = self._draw_tile(self._rng(layer, ix, iy), ix * TILE_UM, iy * TILE_UM, lod)
        with self._lock:
            self._cache[key] = objs
            while len(self._cache) > self._CACHE_TILES:
                self._cache.popitem(last=False)
        return objs

    def _n(self, rng: np.random.Generator, mean_per_tile: float) -> int:
        return int(rng.poisson(mean_per_tile * self.options.density))

    # ---- to implement -------------------------------------------------------
    def _draw_tile(
        self, rng: np.random.Generator, tx_um: float, ty_um: float, lod: int = 1
    ) -> _Objects:
        """Objects owned by the tile with lower-left corner ``(tx_um, ty_um)``.

        ``lod`` >= 1 lets curved filaments keep every ``lod``-th vertex (fewer, longer
        segments when pixels are big); it must not change any random draw.
        Object-based specimens override this; pure textures (calibration slide,
        empty) keep this default: no objects."""
        return {}

    @abstractmethod
    def _render_layer(self, grid: _Grid, layer: int) -> np.ndarray | None:
        """Rasterise one layer of the field (None: nothing in it)."""


def _check_grid(x0_um: Any, y0_um: Any, shape: Any, pixel_size_um: Any) -> _Grid:
    try:
        x0, y0, p = float(x0_um), float(y0_um), float(pixel_size_um)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError("x0_um, y0_um and pixel_size_um must be numbers") from exc
    if not (math.isfinite(x0) and math.isfinite(y0)) or abs(x0) > 1e7 or abs(y0) > 1e7:
        raise InvalidInputError(f"patch origin ({x0_um!r}, {y0_um!r}) um is not usable")
    if not math.isfinite(p) or not 0.01 <= p <= 100:
        raise InvalidInputError(f"pixel_size_um must be in [0.01, 100], got {pixel_size_um!r}")
    try:
        h, w = (int(shape[0]), int(shape[1]))
        if len(shape) != 2 or h != shape[0] or w != shape[1]:
            raise ValueError
    except (TypeError, ValueError, IndexError) as exc:
        raise InvalidInputError(f"shape must be (height, width) in pixels, got {shape!r}") from exc
    if not (1 <= h <= _MAX_SIDE_PX and 1 <= w <= _MAX_SIDE_PX):
        raise InvalidInputError(f"shape {shape!r} must be within 1..{_MAX_SIDE_PX} px per side")
    return _Grid(x0=x0, y0=y0, h=h, w=w, p=p)


def _tnorm(rng: np.random.Generator, size: Any) -> np.ndarray:
    """Standard normal truncated to [-3, 3] (keeps objects within a tile's reach)."""
    return np.clip(rng.standard_normal(size), -3.0, 3.0)


def _cat(*arrays: np.ndarray) -> np.ndarray:
    return np.concatenate(arrays) if arrays else np.zeros(0)


def _polylines(
    x: np.ndarray,
    y: np.ndarray,
    valid: np.ndarray,
    width: np.ndarray,
    amp: np.ndarray,
    lod: int = 1,
) -> _Objects:
    """Segments between consecutive vertices ``x[:, k] -> x[:, k+1]`` where both valid
    (keeping every ``lod``-th vertex)."""
    if lod > 1:
        x, y, valid = x[:, ::lod], y[:, ::lod], valid[:, ::lod]
    ok = valid[:, :-1] & valid[:, 1:]
    w = np.broadcast_to(width[:, None], ok.shape)[ok]
    am = np.broadcast_to(amp[:, None], ok.shape)[ok]
    return {
        "xa": x[:, :-1][ok],
        "ya": y[:, :-1][ok],
        "xb": x[:, 1:][ok],
        "yb": y[:, 1:][ok],
        "w": w,
        "amp": am,
    }


def _merge(parts: list[_Objects]) -> _Objects:
    keys = parts[0].keys()
    return {k: np.concatenate([p[k] for p in parts]) for k in keys}


def _prefixed(prefix: str, objs: _Objects) -> _Objects:
    return {f"{prefix}{k}": v for k, v in objs.items()}


def _take(objs: _Objects, prefix: str) -> _Objects:
    n = len(prefix)
    return {k[n:]: v for k, v in objs.items() if k.startswith(prefix)}


def _scattered_ellipses(
    rng: np.random.Generator,
    tx_um: float,
    ty_um: float,
    d_um: np.ndarray,
    aspect: np.ndarray,
    amp_range: tuple[float, float],
) -> _Objects:
    """Ellipses of diameter ``d_um`` and ``aspect`` placed uniformly in a tile, random
    orientation, amplitude uniform in ``amp_range`` (draws: x, y, angle, amplitude)."""
    n = d_um.size
    return {
        "cx": tx_um + rng.uniform(0, TILE_UM, n),
        "cy": ty_um + rng.uniform(0, TILE_UM, n),
        "a": d_um / 2 * np.sqrt(aspect),
        "b": d_um / 2 / np.sqrt(aspect),
        "th": rng.uniform(0, np.pi, n),
        "amp": rng.uniform(*amp_range, n),
    }


def _random_headings(
    rng: np.random.Generator, length_um: np.ndarray, step_um: float, wiggle_rad: float
) -> np.ndarray:
    """(m, n_steps) headings of random walks: a uniform start plus cumulative normal
    turns of ``wiggle_rad`` per step, enough steps for the longest (draws: start, turns)."""
    m = length_um.size
    n_steps = int(np.ceil(length_um.max() / step_um)) if m else 1
    return rng.uniform(0, 2 * np.pi, m)[:, None] + np.cumsum(
        rng.normal(0, wiggle_rad, (m, n_steps)), axis=1
    )


def _walk_vertices(
    ox: np.ndarray, oy: np.ndarray, heading: np.ndarray, length_um: np.ndarray, step_um: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vertices (x, y) of walks from origins (m, 1) along ``heading``, and which of them
    lie within each walk's length (no draws)."""
    x = np.concatenate([ox, ox + np.cumsum(np.cos(heading), axis=1) * step_um], axis=1)
    y = np.concatenate([oy, oy + np.cumsum(np.sin(heading), axis=1) * step_um], axis=1)
    valid = np.arange(heading.shape[1] + 1)[None, :] * step_um <= length_um[:, None]
    return x, y, valid


def _splat_fibres_and_fills(cv: _Canvas, objs: _Objects, fill_power: float) -> None:
    """Segments under ``s_`` keys, then ellipse fills under ``e_`` keys (``amp (1 -
    rho^2)^fill_power``): the filament specimens' objects."""
    s = _take(objs, "s_")
    _splat_segments(cv, s["xa"], s["ya"], s["xb"], s["yb"], s["w"], s["amp"])
    e = _take(objs, "e_")
    _splat_ellipses(cv, e["cx"], e["cy"], e["a"], e["b"], e["th"], e["amp"], fill_power)


# =====================================================================================
# Specimens
# =====================================================================================
class EmptySpecimen(TiledSpecimen):
    """Nothing at all (a flat black fluorescence field)."""

    name = "empty"

    def _render_layer(self, grid: _Grid, layer: int) -> np.ndarray | None:
        return None


class NucleiSpecimen(TiledSpecimen):
    """Hoechst-like nuclei: ellipsoids 8-15 um across with chromatin texture, in clusters
    separated by empty background; a few isolated nuclei too.

    Profile: projected ellipsoid thickness ``sqrt(1 - rho^2)``, times a per-nucleus
    brightness (0.6-1.1), softly saturated where nuclei overlap (``1.4 tanh(s / 1.4)``),
    times ``1 + 0.35 n(x, y)`` with fractal noise ``n`` of 0.6-5 um
    grain (chromatin).
    """

    name = "nuclei"
    extent_um = 80.0
    splat_um = 10.0
    SATURATION = 1.4

    def _draw_tile(
        self, rng: np.random.Generator, tx_um: float, ty_um: float, lod: int = 1
    ) -> _Objects:
        n_cl = self._n(rng, 2.4)
        ccx = tx_um + rng.uniform(0, TILE_UM, n_cl)
        ccy = ty_um + rng.uniform(0, TILE_UM, n_cl)
        spread = rng.uniform(10.0, 22.0, n_cl)
        counts = rng.poisson(14.0, n_cl)
        cx = np.repeat(ccx, counts) + _tnorm(rng, counts.sum()) * np.repeat(spread, counts)
        cy = np.repeat(ccy, counts) + _tnorm(rng, counts.sum()) * np.repeat(spread, counts)
        n_iso = self._n(rng, 2.0)
        cx = _cat(cx, tx_um + rng.uniform(0, TILE_UM, n_iso))
        cy = _cat(cy, ty_um + rng.uniform(0, TILE_UM, n_iso))
        n = cx.size
        d = rng.uniform(8.0, 15.0, n)
        aspect = rng.uniform(1.0, 1.45, n)
        return {
            "cx": cx,
            "cy": cy,
            "a": d / 2 * np.sqrt(aspect),
            "b": d / 2 / np.sqrt(aspect),
            "th": rng.uniform(0, np.pi, n),
            "amp": rng.uniform(0.6, 1.1, n),
        }

    def _render_layer(self, grid: _Grid, layer: int) -> np.ndarray | None:
        o = self._objects(grid, layer)
        cv = self._canvas(grid)
        _splat_ellipses(cv, o["cx"], o["cy"], o["a"], o["b"], o["th"], o["amp"], 0.5)
        img = cv.image()
        if not np.any(img):
            return img
        # overlapping nuclei in a cluster: soft saturation instead of a plain sum
        img = np.float32(self.SATURATION) * np.tanh(img / np.float32(self.SATURATION))
        tex = _fbm(self._noise_key(layer, 1), grid, 0.6, 4, slope=0.3)
        tex *= np.float32(0.35)
        tex += np.float32(1.0)
        img *= tex
        return img


class BeadsSpecimen(TiledSpecimen):
    """Sparse sub-resolution beads (0.1-0.2 um) on black; log-normal brightness, a few
    doublets.  Each bead is a point emitter of integrated density ``F`` (density x um^2),
    ``F ~ 1 um^2 x brightness``: pixel values exceed 1 at fine pixel sizes, as real beads
    are much brighter than their size suggests."""

    name = "beads"
    extent_um = 1.0
    splat_um = 2.0

    def _draw_tile(
        self, rng: np.random.Generator, tx_um: float, ty_um: float, lod: int = 1
    ) -> _Objects:
        n = self._n(rng, 12.0)
        cx = tx_um + rng.uniform(0, TILE_UM, n)
        cy = ty_um + rng.uniform(0, TILE_UM, n)
        flux = rng.lognormal(0.0, 0.35, n)
        flux *= np.where(rng.uniform(size=n) < 0.06, 2.0, 1.0)  # doublets
        return {"cx": cx, "cy": cy, "sigma": rng.uniform(0.1, 0.2, n) / 4, "flux": flux}

    def _render_layer(self, grid: _Grid, layer: int) -> np.ndarray | None:
        o = self._objects(grid, layer)
        cv = self._canvas(grid)
        _splat_points(cv, o["cx"], o["cy"], o["sigma"], o["flux"])
        return cv.image()


def _cells(
    spec: TiledSpecimen, rng: np.random.Generator, tx: float, ty: float, mean: float
) -> tuple[np.ndarray, ...]:
    """Cell centres (clustered a little), radii (um) and orientations for one tile."""
    n = spec._n(rng, mean)
    cx = tx + rng.uniform(0, TILE_UM, n)
    cy = ty + rng.uniform(0, TILE_UM, n)
    r = rng.uniform(12.0, 22.0, n)
    elong = rng.uniform(1.0, 1.6, n)
    th = rng.uniform(0, np.pi, n)
    return cx, cy, r, elong, th


class MicrotubuleSpecimen(TiledSpecimen):
    """Microtubules: curved 0.25 um filaments radiating from a centrosome in each cell
    and meandering out to the cell edge (heading random walk, 0.1 rad per 1 um step),
    plus a faint cytoplasmic haze (0.04)."""

    name = "microtubules"
    extent_um = 40.0
    splat_um = 30.0
    STEP_UM = 1.0
    lod_step_um = STEP_UM

    def _draw_tile(
        self, rng: np.random.Generator, tx_um: float, ty_um: float, lod: int = 1
    ) -> _Objects:
        cx, cy, r, elong, th = _cells(self, rng, tx_um, ty_um, 3.5)
        n_mt = rng.integers(35, 70, cx.size)
        m = int(n_mt.sum())
        cell = np.repeat(np.arange(cx.size), n_mt)
        length = rng.uniform(0.45, 1.2, m) * r[cell]
        heading = _random_headings(rng, length, self.STEP_UM, 0.1)
        ox = np.repeat(cx, n_mt)[:, None] + _tnorm(rng, (m, 1))
        oy = np.repeat(cy, n_mt)[:, None] + _tnorm(rng, (m, 1))
        x, y, valid = _walk_vertices(ox, oy, heading, length, self.STEP_UM)
        seg = _polylines(x, y, valid, np.full(m, 0.25), rng.uniform(0.7, 1.0, m), lod)
        haze = {"cx": cx, "cy": cy, "a": r * np.sqrt(elong), "b": r / np.sqrt(elong), "th": th}
        haze["amp"] = np.full(cx.size, 0.04)
        return {**_prefixed("s_", seg), **_prefixed("e_", haze)}

    def _render_layer(self, grid: _Grid, layer: int) -> np.ndarray | None:
        cv = self._canvas(grid)
        _splat_fibres_and_fills(cv, self._objects(grid, layer), 1.0)
        return cv.image()


class ActinSpecimen(TiledSpecimen):
    """Actin: per cell a wobbly cortex outline (0.5 um, ~0.8), stress fibres across the
    cell along a dominant direction, often in bundles of 2-3 parallel fibres 0.4 um apart
    (0.2-0.4 um wide, 0.5-1.0), and a faint cytoplasmic fill (0.06)."""

    name = "actin"
    extent_um = 45.0
    splat_um = 30.0
    FIBRE_SEG_UM = 6.0
    CORTEX_STEP_UM = 1.5

    def _draw_tile(
        self, rng: np.random.Generator, tx_um: float, ty_um: float, lod: int = 1
    ) -> _Objects:
        cx, cy, r, elong, th = _cells(self, rng, tx_um, ty_um, 4.0)
        nc = cx.size
        a_ax, b_ax = r * np.sqrt(elong), r / np.sqrt(elong)
        parts: list[_Objects] = []
        # cortex: closed polylines with low-order radial wobble
        nv = 96
        phi = np.linspace(0, 2 * np.pi, nv + 1)[None, :]
        wob = 1 + sum(
            0.05 * _tnorm(rng, (nc, 1)) * np.cos(k * phi + rng.uniform(0, 6.3, (nc, 1)))
            for k in (2, 3, 5)
        )
        ex = a_ax[:, None] * np.cos(phi) * wob
        ey = b_ax[:, None] * np.sin(phi) * wob
        c, s = np.cos(th)[:, None], np.sin(th)[:, None]
        x = cx[:, None] + ex * c - ey * s
        y = cy[:, None] + ex * s + ey * c
        parts.append(
            _polylines(x, y, np.ones_like(x, bool), np.full(nc, 0.5), rng.uniform(0.6, 1.0, nc))
        )
        # stress fibres: chords of the (unwobbled, 0.9x) ellipse along th + jitter
        nf = rng.integers(5, 12, nc)
        f_cell = np.repeat(np.arange(nc), nf)
        m = f_cell.size
        ang = th[f_cell] + rng.normal(0, 0.2, m)
        off = rng.uniform(-0.8, 0.8, m)  # perpendicular offset, fraction of the minor axis
        bundle = rng.integers(1, 4, m)
        f_id = np.repeat(np.arange(m), bundle)
        k_in = np.concatenate([np.arange(b) for b in bundle]) if m else np.zeros(0, int)
        cell = f_cell[f_id]
        a_e, b_e = 0.9 * a_ax[cell], 0.9 * b_ax[cell]
        # centre line: point p0 + t d, in the ellipse frame of its cell
        rel = ang[f_id] - th[cell]
        dxe, dye = np.cos(rel), np.sin(rel)
        perp = off[f_id] * b_e + (k_in - (bundle[f_id] - 1) / 2) * 0.4
        pxe, pye = -dye * perp, dxe * perp
        qa = (dxe / a_e) ** 2 + (dye / b_e) ** 2
        qb = 2 * (pxe * dxe / a_e**2 + pye * dye / b_e**2)
        qc = (pxe / a_e) ** 2 + (pye / b_e) ** 2 - 1
        disc = qb * qb - 4 * qa * qc
        hit = disc > 0
        sq = np.sqrt(np.where(hit, disc, 0))
        t0, t1 = (-qb - sq) / (2 * qa), (-qb + sq) / (2 * qa)
        cc, ss = np.cos(th[cell]), np.sin(th[cell])
        wid = rng.uniform(0.2, 0.4, f_id.size)
        amp = rng.uniform(0.5, 1.0, m)[f_id]
        if np.any(hit):
            n_seg = int(np.ceil((t1 - t0)[hit].max() / self.FIBRE_SEG_UM))
            tt = t0[:, None] + (t1 - t0)[:, None] * np.linspace(0, 1, n_seg + 1)[None, :]
            xe = pxe[:, None] + tt * dxe[:, None]
            ye = pye[:, None] + tt * dye[:, None]
            x = cx[cell][:, None] + xe * cc[:, None] - ye * ss[:, None]
            y = cy[cell][:, None] + xe * ss[:, None] + ye * cc[:, None]
            valid = np.broadcast_to(hit[:, None], x.shape)
            parts.append(_polylines(x, y, valid, wid, amp))
        seg = _merge(parts)
        fill = {"cx": cx, "cy": cy, "a": a_ax, "b": b_ax, "th": th, "amp": np.full(nc, 0.06)}
        return {**_prefixed("s_", seg), **_prefixed("e_", fill)}

    def _render_layer(self, grid: _Grid, layer: int) -> np.ndarray | None:
        cv = self._canvas(grid)
        _splat_fibres_and_fills(cv, self._objects(grid, layer), 0.3)
        return cv.image()


class TissueSpecimen(TiledSpecimen):
    """Tissue-like section: a dense multi-scale extracellular-matrix texture
    (0.1-0.45, grain 1-32 um) everywhere, densely packed small nuclei (5-10 um, 0.5-0.9)
    and wavy ECM fibres (0.5-1 um wide, 0.3-0.5)."""

    name = "tissue"
    extent_um = 80.0
    splat_um = 8.0
    STEP_UM = 2.0
    lod_step_um = STEP_UM

    def _draw_tile(
        self, rng: np.random.Generator, tx_um: float, ty_um: float, lod: int = 1
    ) -> _Objects:
        n = self._n(rng, 110.0)
        d = rng.uniform(5.0, 10.0, n)
        aspect = rng.uniform(1.0, 1.8, n)
        nuc = _scattered_ellipses(rng, tx_um, ty_um, d, aspect, (0.5, 0.9))
        m = self._n(rng, 8.0)
        length = rng.uniform(30.0, 75.0, m)
        heading = _random_headings(rng, length, self.STEP_UM, 0.12)
        ox = tx_um + rng.uniform(0, TILE_UM, (m, 1))
        oy = ty_um + rng.uniform(0, TILE_UM, (m, 1))
        x, y, valid = _walk_vertices(ox, oy, heading, length, self.STEP_UM)
        seg = _polylines(x, y, valid, rng.uniform(0.5, 1.0, m), rng.uniform(0.3, 0.5, m), lod)
        return {**_prefixed("s_", seg), **_prefixed("e_", nuc)}

    def _render_layer(self, grid: _Grid, layer: int) -> np.ndarray | None:
        cv = self._canvas(grid)
        _splat_fibres_and_fills(cv, self._objects(grid, layer), 0.5)
        img = cv.image()
        ecm = _fbm(self._noise_key(layer, 2), grid, 1.0, 6, slope=0.6)
        img *= np.float32(1.0) + np.float32(0.25) * ecm  # texture inside nuclei and fibres
        # 0.25 +- 0.1: always positive in practice; clipped at 0.02 for safety
        ecm *= np.float32(0.1)
        ecm += np.float32(0.25)
        np.maximum(ecm, 0.02, out=ecm)
        img += ecm * np.float32(self.options.density if self.options.density < 1 else 1.0)
        return img


class CalibrationSlideSpecimen(TiledSpecimen):
    """A flat, uniformly textured slide: ``0.55 + 0.2 n(x, y)`` with fractal noise of
    0.5-32 um grain everywhere (clipped to >= 0.05).  No empty regions by design."""

    name = "calibration_slide"

    def _render_layer(self, grid: _Grid, layer: int) -> np.ndarray | None:
        tex = _fbm(self._noise_key(layer, 3), grid, 0.5, 7, slope=0.25)
        tex *= np.float32(0.2)
        tex += np.float32(0.55)
        np.maximum(tex, 0.05, out=tex)
        return tex


class PhaseSpecimen(TiledSpecimen):
    """Brightfield phase object: mostly transparent, with cells as smooth optical-path
    bumps ``phi (1 - rho^2)^1.5`` (phi 0.5-1.2 rad, 16-40 um across), each with a
    nucleus bump (+0.3-0.5 rad), softly saturated where cells overlap
    (``2 tanh(s / 2)``), with granular texture (+-15 %, 0.8-6 um grain)."""

    name = "phase"
    kind: ClassVar[_Kind] = "phase"
    extent_um = 100.0
    splat_um = 22.0
    SATURATION = 2.0

    def _draw_tile(
        self, rng: np.random.Generator, tx_um: float, ty_um: float, lod: int = 1
    ) -> _Objects:
        n_cl = self._n(rng, 1.2)
        counts = rng.poisson(3.5, n_cl)
        spread = np.repeat(rng.uniform(12, 25, n_cl), counts)
        cx = np.repeat(tx_um + rng.uniform(0, TILE_UM, n_cl), counts)
        cy = np.repeat(ty_um + rng.uniform(0, TILE_UM, n_cl), counts)
        cx = cx + _tnorm(rng, cx.size) * spread
        cy = cy + _tnorm(rng, cy.size) * spread
        n_iso = self._n(rng, 1.0)
        cx = _cat(cx, tx_um + rng.uniform(0, TILE_UM, n_iso))
        cy = _cat(cy, ty_um + rng.uniform(0, TILE_UM, n_iso))
        n = cx.size
        r = rng.uniform(8.0, 18.0, n)
        elong = rng.uniform(1.0, 1.5, n)
        th = rng.uniform(0, np.pi, n)
        cell = {
            "cx": cx,
            "cy": cy,
            "a": np.minimum(r * np.sqrt(elong), 20.5),
            "b": r / np.sqrt(elong),
            "th": th,
            "amp": rng.uniform(0.5, 1.2, n),
        }
        rn = rng.uniform(0.25, 0.4, n) * r
        shift = rng.uniform(0, 0.3, n) * r
        phi = rng.uniform(0, 2 * np.pi, n)
        nuc = {
            "cx": cx + shift * np.cos(phi),
            "cy": cy + shift * np.sin(phi),
            "a": rn * 1.1,
            "b": rn / 1.1,
            "th": th,
            "amp": rng.uniform(0.3, 0.5, n),
        }
        return {**_prefixed("c_", cell), **_prefixed("n_", nuc)}

    def _render_layer(self, grid: _Grid, layer: int) -> np.ndarray | None:
        o = self._objects(grid, layer)
        cv = self._canvas(grid)
        for pre in ("c_", "n_"):
            e = _take(o, pre)
            _splat_ellipses(cv, e["cx"], e["cy"], e["a"], e["b"], e["th"], e["amp"], 1.5)
        img = cv.image()
        if not np.any(img):
            return img
        img = np.float32(self.SATURATION) * np.tanh(img / np.float32(self.SATURATION))
        tex = _fbm(self._noise_key(layer, 4), grid, 0.8, 3, slope=0.3)
        tex *= np.float32(0.15)
        tex += np.float32(1.0)
        img *= tex
        return img


class ProceduralSpecimen(TiledSpecimen):
    """Domain-randomisation texture (for training the focus models, not a real sample).

    Each seed draws its own recipe from three generic primitives, each present with
    probability 0.7 (at least one always):

    * curved filaments: random walks in 1 um steps with heading noise 0.01-0.4 rad per
      step, 0.1-1.2 um wide, 3-60 um long, starting uniformly or, for half the seeds, in
      clusters of 2-15 um spread;
    * blobs: ellipses 0.4-24 um across, aspect 1-3, profile ``(1 - rho^2)^q`` with
      ``q`` in {0.25, 0.5, 1, 2};
    * points: sub-resolution emitters (0.05-0.3 um) of log-normal flux (median 0.22 um^2);

    at per-seed densities spread over two decades, on a fractal background of 0-0.3
    (grain 0.5-8 um, slope 0-0.8), optionally modulated by a multiplicative texture.
    The aim is texture statistics no single named specimen covers, so that the focus
    models learn blur rather than specimens.
    """

    name = "procedural"
    extent_um = 110.0
    splat_um = 22.0
    STEP_UM = 1.0
    lod_step_um = STEP_UM

    def __init__(self, seed: int = 0, options: SpecimenOptions | None = None) -> None:
        super().__init__(seed, options)
        r = np.random.default_rng([self.seed, 0x70726F63])
        on = r.random(3) < 0.7
        if not on.any():
            on[int(r.integers(0, 3))] = True

        def lu(lo: float, hi: float) -> float:  # log-uniform
            return float(np.exp(r.uniform(np.log(lo), np.log(hi))))

        self._p = {
            "fibres": lu(10.0, 600.0) if on[0] else 0.0,
            "wiggle": lu(0.01, 0.4),
            "width": sorted(r.uniform(0.1, 1.2, 2)),
            "length": sorted(r.uniform(3.0, 60.0, 2)),
            "cluster_um": r.uniform(2.0, 15.0) if r.random() < 0.5 else 0.0,
            "blobs": lu(5.0, 400.0) if on[1] else 0.0,
            "blob_um": sorted(np.exp(r.uniform(np.log(0.4), np.log(24.0), 2))),
            "blob_power": float(r.choice([0.25, 0.5, 1.0, 2.0])),
            "points": lu(20.0, 2000.0) if on[2] else 0.0,
            "background": r.uniform(0.0, 0.3) * (r.random() < 0.6),
            "grain_um": lu(0.5, 8.0),
            "slope": r.uniform(0.0, 0.8),
            "modulation": r.uniform(0.0, 0.4) * (r.random() < 0.5),
        }

    def _draw_tile(
        self, rng: np.random.Generator, tx_um: float, ty_um: float, lod: int = 1
    ) -> _Objects:
        q = self._p
        # filaments
        m = self._n(rng, q["fibres"])
        length = rng.uniform(*q["length"], m)
        heading = _random_headings(rng, length, self.STEP_UM, q["wiggle"])
        if q["cluster_um"] > 0 and m:
            k = max(1, m // 12)
            ccx = tx_um + rng.uniform(0, TILE_UM, k)
            ccy = ty_um + rng.uniform(0, TILE_UM, k)
            which = rng.integers(0, k, m)
            ox = (ccx[which] + _tnorm(rng, m) * q["cluster_um"])[:, None]
            oy = (ccy[which] + _tnorm(rng, m) * q["cluster_um"])[:, None]
        else:
            ox = tx_um + rng.uniform(0, TILE_UM, (m, 1))
            oy = ty_um + rng.uniform(0, TILE_UM, (m, 1))
        x, y, valid = _walk_vertices(ox, oy, heading, length, self.STEP_UM)
        seg = _polylines(x, y, valid, rng.uniform(*q["width"], m), rng.uniform(0.3, 1.0, m), lod)
        # blobs
        n = self._n(rng, q["blobs"])
        d = np.exp(rng.uniform(np.log(q["blob_um"][0]), np.log(q["blob_um"][1]), n))
        aspect = rng.uniform(1.0, 3.0, n)
        blobs = _scattered_ellipses(rng, tx_um, ty_um, d, aspect, (0.2, 1.0))
        # points
        k = self._n(rng, q["points"])
        pts = {
            "cx": tx_um + rng.uniform(0, TILE_UM, k),
            "cy": ty_um + rng.uniform(0, TILE_UM, k),
            "sigma": rng.uniform(0.05, 0.3, k) / 2,
            "flux": rng.lognormal(-1.5, 0.6, k),
        }
        return {**_prefixed("s_", seg), **_prefixed("e_", blobs), **_prefixed("p_", pts)}

    def _render_layer(self, grid: _Grid, layer: int) -> np.ndarray | None:
        q = self._p
        o = self._objects(grid, layer)
        cv = self._canvas(grid)
        s = _take(o, "s_")
        _splat_segments(cv, s["xa"], s["ya"], s["xb"], s["yb"], s["w"], s["amp"])
        e = _take(o, "e_")
        _splat_ellipses(cv, e["cx"], e["cy"], e["a"], e["b"], e["th"], e["amp"], q["blob_power"])
        pt = _take(o, "p_")
        _splat_points(cv, pt["cx"], pt["cy"], pt["sigma"], pt["flux"])
        img = cv.image()
        if q["modulation"] > 0:
            mod = _fbm(self._noise_key(layer, 5), grid, q["grain_um"], 4, slope=q["slope"])
            img *= np.float32(1.0) + np.float32(q["modulation"]) * mod
        if q["background"] > 0:
            bg = _fbm(self._noise_key(layer, 6), grid, q["grain_um"], 5, slope=q["slope"])
            bg *= np.float32(0.4 * q["background"])
            bg += np.float32(q["background"])
            img += bg
        return img


_REGISTRY: dict[str, Callable[..., TiledSpecimen]] = {
    "nuclei": NucleiSpecimen,
    "actin": ActinSpecimen,
    "microtubules": MicrotubuleSpecimen,
    "beads": BeadsSpecimen,
    "tissue": TissueSpecimen,
    "calibration_slide": CalibrationSlideSpecimen,
    "phase": PhaseSpecimen,
    "procedural": ProceduralSpecimen,
    "empty": EmptySpecimen,
}

SPECIMEN_NAMES: tuple[str, ...] = tuple(_REGISTRY)
"""Names accepted by :func:`make_specimen`."""

_OPTION_NAMES = frozenset(f for f in SpecimenOptions.__dataclass_fields__)


def make_specimen(name: str, seed: int = 0, **options: Any) -> TiledSpecimen:
    """Build a named specimen (see :data:`SPECIMEN_NAMES` and the module docstring).

    Raises :class:`UnknownNameError` for an unknown name and :class:`InvalidInputError`
    for an unknown or out-of-range option or a bad seed.
    """
    if not isinstance(name, str):
        raise InvalidInputError(f"specimen name must be a string, got {type(name).__name__}")
    key = name.strip().lower()
    if key not in _REGISTRY:
        raise UnknownNameError(f"unknown specimen {name!r}; known: {', '.join(SPECIMEN_NAMES)}")
    unknown = set(options) - _OPTION_NAMES
    if unknown:
        raise InvalidInputError(
            f"unknown specimen option(s) {sorted(unknown)}; allowed: {sorted(_OPTION_NAMES)}"
        )
    return _REGISTRY[key](seed=seed, options=SpecimenOptions(**options))
