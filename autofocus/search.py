"""The few-image autofocus search (DeepFocus, seed 003, done right).

:class:`FocusSearch` is a synchronous state machine, one object per autofocus: ask it
:meth:`~FocusSearch.next_z_um`, image there, hand the score back with
:meth:`~FocusSearch.observe`, repeat until ``next_z_um()`` is ``None``, then read
:attr:`~FocusSearch.result`.  :func:`find_focus` drives it with a ``measure(z_um)``
callable and applies the failure policy.  Nothing here touches hardware.

Algorithm (``B`` = the centred calibration curve, ``FWHM`` its width, ``h = k FWHM``)
--------------------------------------------------------------------------------
1. Image ``z1`` (the start) and ``z1 - h``, ``z1 + h`` with ``h = k FWHM`` (``k =
   bracket_fwhm``, 2 by default), capped at ``max_bracket_range_frac`` times the
   calibrated half-range (the curve is only known there), shifted as a whole to stay
   inside the soft limits.  With ``near_start_pair`` (the default), when ``z1`` is
   already near focus (its b at most the curve's at the flank distance ``d`` of step
   5, as when tracking a slowly drifting sample) the bracket is ``z1 -/+ d`` instead:
   its ends are then the flank pair, and a search can finish after three images.
2. Convexity test (:func:`convexity_test`): the minimum is bracketed when the lowest
   determined sample is interior and its dip below the lower of the highest samples
   on either side exceeds ``min_depth_sd`` noise SDs, and the least-squares parabola
   through the lowest sample and its two neighbours in z (far samples of a V-shaped,
   saturating curve would bend any parabola the wrong way) opens upwards with its
   vertex inside them and a coefficient of determination *of b* above the line's by
   ``min_r2_gain``: ``R^2 = 1 - sum (b - b_fit)^2 / sum (b - mean b)^2`` (waived for a
   dip above twice the noise threshold).
2b. A bracket whose sharpest sample is blurrier than ``max_focus_blur_px`` (40 px) is
   not focus (a specimen at focus reads far sharper; such a dip is a misread
   far-defocused frame, or a bracket too coarse to place focus; the cap is never below
   ``trusted_blur_px`` nor twice the curve's minimum): of the two positions the
   calibrated |dz| of that sample away, the one the samples match better is imaged
   (else the other, else step 3); with no image left, "failed".
3. Not bracketed: golden-ratio expansion downhill, ``z_new = z_end + phi (z_end -
   z_next)`` (``phi = 1.618``, at least ``h``), or - with ``model_jump`` - to just past
   the estimate matched on the unbracketed samples; the step is at most
   ``expand_reach`` (1.5) times the calibrated |dz| of the end sample's b, plus ``h``
   (b grows with |dz|, so the end sample bounds how far focus can be; a match pulled by
   saturated far samples once jumped into a featureless region); clipped to the soft
   limits.  At a limit the matched estimate between the last sample and the limit is
   imaged once; then the search fails ("minimum beyond the soft limit").
4. Bracketed: least-squares match (:func:`match_curve`) of the samples against
   ``g B(z - z*) + c`` over ``z*`` (a dense grid over the sampled span, then a bounded
   scalar refinement), with the gain ``g`` and offset ``c`` solved in closed form for
   each ``z*`` under weak Gaussian priors (``g ~ 1 +/- gain_prior_sd``, ``c ~ 0 +/-
   offset_prior_frac * amplitude``) and ``g`` clipped to ``gain_bounds``.
   The confidence is ``1 / (1 + (rms / good_match_sd)^2) * 1 / (1 + (sigma_z /
   precision)^2)`` with ``rms`` the normalised residual and ``sigma_z`` the ``z*``
   uncertainty from the curvature of the misfit (``Delta chi^2 = 1``).
5. Symmetric flank pair (``pair_refine``, the default).  Once any sample is within
   ``trusted_blur_px`` (where b(z) is the same for every specimen), focus is
   estimated from the trusted samples only (one trusted sample: its two mirror
   candidates ``z -/+ |dz|``, the impossible one rejected because a blurrier sample
   would have to rise faster than the steepest gain x calibration slope; when both
   are impossible the specimen is blurrier at focus than the slide, and the
   all-sample match of the curve's shape with gain and offset decides), matched
   locally (samples within ``2.5 d``), and the search finishes only when two samples
   at ``0.5 d .. 1.5 d`` on either side are symmetric about the estimate within
   ``pair_symmetry_frac * d``.  Otherwise the flank sample nearest ``d`` is mirrored
   about the estimate (one image), or both ``z* -/+ d`` are imaged.  ``d`` is where
   the curve has risen by ``flank_rise_frac`` of (trusted - min): b is steep there
   for every specimen, so the pair's difference measures the estimate's offset from
   focus almost independently of the specimen's gain and offset (the curve is even
   in dz).  Without ``pair_refine`` (or with no trusted sample yet) poor confidence
   adds a golden-section point in the larger half of the bracket around the lowest
   sample, up to ``max_images``.  A match of blurry (untrusted) samples only whose
   regions disagree by more than ``precision_um`` (``confirm_disputed``) first images
   its estimate, where a trusted image hands over to the flank pair.
6. Per ROI: with per-patch blur scores (``FocusScore.regressor_patches``), every
   textured patch is matched on its own and the estimates are combined by a median
   after rejecting outliers beyond 3 scaled MADs; too few ROIs -> the frame median.
7. Vanishing contrast (``vanishing_contrast``): an undetermined image within the
   trusted half-width of a sharp image marks a transparent specimen whose contrast
   vanishes in a zone symmetric about focus; the zone's edges are bracketed (the sharp
   image mirrored across it when needed) and bisected, and focus is their centre.
8. Signed contrast (``signed_contrast``): a phase object's low-pass contrast inverts
   through focus (:mod:`autofocus.contrast`).  Once two images' contrast signatures are
   anti-correlated (below ``-anticorrelation``; a fluorescent or absorbing specimen
   never is), each image's contrast projected on the pattern they share is a signed
   amplitude ~ ``z - z*``; focus is interpolated where it changes sign (regula falsi)
   and imaged, until an estimate lies within a quarter of ``precision_um`` of an
   image.  This takes precedence over steps 2-7, which see only the (flat,
   texture-less) blur of such a specimen.
9. The final position is the matched estimate ``z*`` (never just the best sample),
   clipped to the soft limits.  Empty fields (no texture) -> ``undetermined``, no move.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from autofocus.checks import finite_float
from autofocus.curve import BlurCurve
from autofocus.errors import (
    FocusSearchError,
    HardwareError,
    InvalidInputError,
    StageLimitError,
)
from autofocus.score import BlurScore, FocusScore

__all__ = [
    "ConvexityResult",
    "FocusResult",
    "FocusSearch",
    "MatchResult",
    "SearchConfig",
    "convexity_test",
    "find_focus",
    "match_curve",
]

logger = logging.getLogger(__name__)

PHI = (1.0 + math.sqrt(5.0)) / 2.0
"""Golden ratio (bracket expansion factor)."""
GOLDEN_FRACTION = 2.0 - PHI
"""0.381966...: golden-section step as a fraction of the larger bracket half."""

Status = Literal["converged", "undetermined", "failed"]


class SearchConfig(BaseModel):
    """Settings of one autofocus search (frozen; keyword-only)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    z_limits_um: tuple[float, float] = Field(
        default=(-math.inf, math.inf), description="soft limits of the focus drive, um"
    )
    bracket_fwhm: float = Field(default=2.0, gt=0, le=10, description="k in z1 +/- k FWHM")
    max_bracket_half_width_um: float | None = Field(default=None, gt=0)
    max_bracket_range_frac: float = Field(
        default=0.5, gt=0, le=2, description="bracket half-width cap, x calibrated half-range"
    )
    min_images: int = Field(default=3, ge=3, le=100)
    max_images: int = Field(default=8, ge=3, le=100)
    min_r2_gain: float = Field(default=0.1, ge=0, le=1)
    min_depth_sd: float = Field(default=3.0, ge=0)
    noise_floor_px: float = Field(default=0.25, gt=0, description="lowest b noise SD used")
    grid_points: int = Field(default=401, ge=21, le=20001)
    gain_bounds: tuple[float, float] = (0.5, 2.0)
    gain_prior_sd: float = Field(default=0.25, gt=0)
    offset_prior_frac: float = Field(default=0.25, gt=0)
    good_match_sd: float = Field(default=3.0, gt=0)
    precision_um: float | None = Field(
        default=None,
        gt=0,
        description="z* uncertainty counted as good [default min(FWHM, calibrated half-range)/20]",
    )
    min_confidence: float = Field(default=0.5, ge=0, le=1)
    trusted_blur_px: float | None = Field(
        default=20.0,
        gt=0,
        description="blur score (px) up to which b(z) is specimen-independent; blurrier "
        "samples are down-weighted in the match (None: all samples weigh the same)",
    )
    per_roi: bool = True
    roi_min_texture: float = Field(default=0.5, ge=0, le=1)
    min_rois: int = Field(default=3, ge=1)
    confirm: bool = Field(default=False, description="one extra image at z* to check it")
    pair_refine: bool = Field(
        default=True,
        description="finish only with a pair of flank samples symmetric about z* (step 5)",
    )
    flank_rise_frac: float = Field(
        default=0.3,
        gt=0,
        lt=1,
        description="flank distance d: the curve rises by this fraction of (trusted - min)",
    )
    pair_symmetry_frac: float = Field(
        default=0.1, gt=0, le=1, description="a pair is symmetric within this fraction of d"
    )
    model_jump: bool = Field(
        default=True, description="expand towards the curve-matched estimate, not blindly"
    )
    max_focus_blur_px: float | None = Field(
        default=40.0,
        gt=0,
        description="a bracket whose sharpest sample is blurrier than this (and than "
        "trusted_blur_px and twice the calibration's minimum) is not taken for focus "
        "(step 2b); None: any bracket is",
    )
    expand_reach: float = Field(
        default=1.5,
        ge=1,
        description="an expansion step goes at most this multiple of the calibrated |dz| "
        "of the downhill end sample's b, plus h (step 3)",
    )
    confirm_disputed: bool = Field(
        default=True,
        description="image the estimate once when only blurry samples were matched and "
        "their regions disagree by more than precision_um",
    )
    vanishing_contrast: bool = Field(
        default=True,
        description="undetermined images close to a sharp one mark focus (phase objects)",
    )
    signed_contrast: bool = Field(
        default=True,
        description="images whose contrast inverts (a phase object in brightfield) "
        "locate focus where the contrast changes sign (step 8)",
    )
    anticorrelation: float = Field(
        default=0.15,
        gt=0,
        lt=1,
        description="two images lie on opposite sides of focus when their contrast "
        "signatures correlate below minus this (and below -6 / sqrt(blocks), six noise "
        "SDs: 0.19 for 32 x 32 blocks)",
    )
    near_start_pair: bool = Field(
        default=True,
        description="a start already within d of focus is bracketed by z1 -/+ d (step 1)",
    )
    on_failure: Literal["raise", "warn", "keep_last"] = "warn"

    @model_validator(mode="after")
    def _check(self) -> SearchConfig:
        lo, hi = self.z_limits_um
        if math.isnan(lo) or math.isnan(hi) or not lo < hi:
            raise ValueError(f"z_limits_um must be (low, high) with low < high, got {lo}, {hi}")
        if self.min_images > self.max_images:
            raise ValueError("min_images must not exceed max_images")
        g0, g1 = self.gain_bounds
        if not 0 < g0 <= 1 <= g1:
            raise ValueError("gain_bounds must satisfy 0 < low <= 1 <= high")
        return self


@dataclass(frozen=True)
class FocusResult:
    """Outcome of one autofocus.

    ``z_um`` is where the stage should go (inside the soft limits): the matched
    estimate when converged, the start when undetermined or under ``keep_last``.
    ``trace`` holds every imaged ``(z_um, b_px)`` in order (``b`` NaN when
    undetermined); ``z_estimate_um`` is the matched estimate even when not applied.
    ``focus_b_px`` is this specimen's b at focus as matched (``gain B(0) + offset``):
    hand it to the next search of the same field (``FocusSearch(focus_b_px=...)``).
    """

    z_um: float
    images_used: int
    trace: tuple[tuple[float, float], ...]
    confidence: float
    status: Status
    reason: str
    z_start_um: float
    z_estimate_um: float | None = None
    bracketed: bool = False
    n_rois: int = 0
    roi_spread_um: float | None = None
    gain: float | None = None
    offset_px: float | None = None
    compute_s: float = 0.0
    focus_b_px: float | None = None

    @property
    def converged(self) -> bool:
        return self.status == "converged"

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["trace"] = [[z, None if not math.isfinite(b) else b] for z, b in self.trace]
        return d


# ----------------------------------------------------------------- building blocks
@dataclass(frozen=True)
class ConvexityResult:
    """Whether samples bracket a minimum (see :func:`convexity_test`)."""

    bracketed: bool
    r2_linear: float
    r2_quadratic: float
    curvature: float
    vertex_um: float | None
    depth_px: float
    reason: str


def _r2(b: np.ndarray, fit: np.ndarray) -> float:
    ss_tot = float(np.sum((b - b.mean()) ** 2))
    if ss_tot <= 0:
        return 0.0
    return 1.0 - float(np.sum((b - fit) ** 2)) / ss_tot


def convexity_test(
    z_um: Sequence[float] | np.ndarray,
    b_px: Sequence[float] | np.ndarray,
    *,
    noise_sd_px: float = 0.0,
    min_r2_gain: float = 0.1,
    min_depth_sd: float = 3.0,
    window: int | None = None,
) -> ConvexityResult:
    """Is the minimum of ``b(z)`` bracketed by these samples?

    Fits ``b`` (not ``z``) with a line and a parabola by least squares over z (centred
    and scaled for conditioning) and compares their ``R^2`` computed on ``b``.  The
    minimum is bracketed when all of these hold: the lowest sample is interior; its
    dip ``min(max b left, max b right) - b_min`` exceeds ``min_depth_sd * noise_sd_px``;
    the parabola opens upwards (``a > 0``) with its vertex inside the sampled span; and
    ``R^2_quadratic - R^2_linear >= min_r2_gain`` (waived when the dip exceeds twice
    the noise threshold: uneven spacing can make three clearly bracketing samples
    nearly collinear).  ``window``: fit the polynomials to
    the lowest sample and its ``window`` nearest neighbours in z on each side only
    (``None``: all samples); the dip is always measured against all samples.
    """
    z = np.asarray(z_um, dtype=np.float64)
    b = np.asarray(b_px, dtype=np.float64)
    if z.shape != b.shape or z.ndim != 1:
        raise InvalidInputError("z_um and b_px must be 1-D arrays of one length")
    if z.size < 3:
        raise InvalidInputError(f"the convexity test needs >= 3 samples, got {z.size}")
    if not (np.all(np.isfinite(z)) and np.all(np.isfinite(b))):
        raise InvalidInputError("the convexity test needs finite samples")
    order = np.argsort(z)
    z, b = z[order], b[order]
    if float(z[-1] - z[0]) <= 0:
        raise InvalidInputError("the samples must cover more than one z")
    m = int(np.argmin(b))
    depth = 0.0
    if 0 < m < b.size - 1:
        depth = float(min(b[:m].max(), b[m + 1 :].max()) - b[m])
    z_all = z
    if window is not None:
        w0, w1 = max(0, m - window), min(z.size, m + window + 1)
        if w1 - w0 < 3:
            w0, w1 = (0, 3) if w0 == 0 else (z.size - 3, z.size)
        z, b = z[w0:w1], b[w0:w1]
    span = float(z[-1] - z[0])
    u = (z - z.mean()) / span
    lin = np.polyval(np.polyfit(u, b, 1), u)
    quad_c = np.polyfit(u, b, 2)
    quad = np.polyval(quad_c, u)
    r2_lin, r2_quad = _r2(b, lin), _r2(b, quad)
    a = float(quad_c[0]) / span**2
    vertex = None
    if quad_c[0] != 0:
        vertex = float(-quad_c[1] / (2 * quad_c[0]) * span + z.mean())

    def res(ok: bool, why: str) -> ConvexityResult:
        return ConvexityResult(ok, r2_lin, r2_quad, a, vertex, depth, why)

    if m == 0 or m == z_all.size - 1:
        side = "low" if m == 0 else "high"
        return res(False, f"lowest blur at the {side}-z end of the samples")
    if depth <= min_depth_sd * noise_sd_px:
        return res(False, f"dip {depth:.3g} px is within the noise ({noise_sd_px:.3g} px SD)")
    if a <= 0 or vertex is None or not z[0] < vertex < z[-1]:
        return res(False, "the quadratic fit does not open upwards inside the samples")
    if r2_quad - r2_lin < min_r2_gain and depth <= 2 * min_depth_sd * noise_sd_px:
        return res(False, f"quadratic R^2 {r2_quad:.3f} is not above linear R^2 {r2_lin:.3f}")
    return res(True, "minimum bracketed")


@dataclass(frozen=True)
class MatchResult:
    """Best shift ``z*`` (um) of the calibration curve onto samples, per column of b."""

    z_um: np.ndarray
    gain: np.ndarray
    offset_px: np.ndarray
    chi2: np.ndarray
    rms_norm: np.ndarray
    sigma_z_um: np.ndarray
    n_points: np.ndarray


@dataclass
class _MatchSetup:
    curve: BlurCurve
    noise_sd_px: float
    gain_bounds: tuple[float, float]
    gain_prior_sd: float
    offset_prior_px: float


def _solve(
    bb: np.ndarray, w: np.ndarray, b: np.ndarray, s: _MatchSetup
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Closed-form gain/offset for model values ``bb`` (G, P) against b, w (P, R).

    Minimises ``sum w (b - g B - c)^2 / s^2 + (g - 1)^2 / sg^2 + c^2 / sc^2`` for each
    of the G candidate shifts and R columns; returns g, c, chi2 (data part) and the
    full objective, each (G, R).
    """
    inv_s2 = 1.0 / s.noise_sd_px**2
    ig, ic = 1.0 / s.gain_prior_sd**2, 1.0 / s.offset_prior_px**2
    wb = w * b
    swbb = (w * b * b).sum(0)[None, :] * inv_s2  # (1, R)
    s_b2 = (bb * bb) @ w * inv_s2  # (G, R)
    s_b = bb @ w * inv_s2
    s_bb = bb @ wb * inv_s2
    s_1 = w.sum(0)[None, :] * inv_s2
    s_y = wb.sum(0)[None, :] * inv_s2
    a11, a12, a22 = s_b2 + ig, s_b, s_1 + ic
    r1, r2 = s_bb + ig, s_y
    det = a11 * a22 - a12 * a12
    det = np.where(det > 0, det, np.inf)
    g = (r1 * a22 - a12 * r2) / det
    g = np.clip(g, *s.gain_bounds)
    c = (r2 - g * s_b) / a22
    chi2 = swbb - 2 * g * s_bb - 2 * c * s_y + g * g * s_b2 + 2 * g * c * s_b + c * c * s_1
    chi2 = np.maximum(chi2, 0.0)
    obj = chi2 + (g - 1.0) ** 2 * ig + c * c * ic
    return g, c, chi2, obj


def match_curve(
    z_um: Sequence[float] | np.ndarray,
    b_px: Sequence[float] | np.ndarray,
    curve: BlurCurve,
    *,
    z_grid_um: np.ndarray | None = None,
    noise_sd_px: float | None = None,
    gain_bounds: tuple[float, float] = (0.5, 2.0),
    gain_prior_sd: float = 0.25,
    offset_prior_frac: float = 0.25,
    grid_points: int = 401,
    refine: bool = True,
    trusted_blur_px: float | None = None,
) -> MatchResult:
    """Least-squares shift of ``curve`` onto samples: ``b_i ~ g B(z_i - z*) + c``.

    ``b_px`` is ``(P,)`` or ``(P, R)`` (one column per ROI; NaN = no sample).  For every
    candidate ``z*`` on ``z_grid_um`` (default: ``grid_points`` over the sampled span)
    the gain and offset are solved in closed form (see the module docstring); the
    best grid point is then refined: by a bounded scalar minimisation for a single
    column, by the vertex of a parabola through the grid neighbours for several.
    ``sigma_z_um = 1 / sqrt(a)`` from the misfit's curvature ``a`` at the minimum.
    With ``trusted_blur_px``, samples blurrier than that weigh ``(trusted / b)^4``: far
    from focus the blur score depends on the specimen (it saturates earlier on smooth,
    dense specimens), so those samples say where to go but not where focus is.
    """
    from scipy.optimize import minimize_scalar

    z = np.asarray(z_um, dtype=np.float64)
    b = np.asarray(b_px, dtype=np.float64)
    squeeze = b.ndim == 1
    if squeeze:
        b = b[:, None]
    if b.ndim != 2 or b.shape[0] != z.size or z.ndim != 1:
        raise InvalidInputError("b_px must be (P,) or (P, R) with P = len(z_um)")
    if not np.all(np.isfinite(z)):
        raise InvalidInputError("z_um must be finite")
    curve = curve.centred()
    w = np.isfinite(b).astype(np.float64)
    b = np.where(w > 0, b, 0.0)
    if trusted_blur_px is not None:
        t = float(trusted_blur_px)
        w = w * np.where(b <= t, 1.0, (t / np.maximum(b, t)) ** 4)
    sd = max(curve.residual_sd_px, 1e-6) if noise_sd_px is None else float(noise_sd_px)
    setup = _MatchSetup(
        curve, sd, gain_bounds, gain_prior_sd, offset_prior_frac * curve.amplitude_px
    )
    if z_grid_um is None:
        z_grid_um = np.linspace(z.min(), z.max(), grid_points)
    grid = np.asarray(z_grid_um, dtype=np.float64)
    bb = curve(z[None, :] - grid[:, None])  # (G, P)
    _g, _c, _chi2, obj = _solve(bb, w, b, setup)
    k = np.argmin(obj, axis=0)  # (R,)
    cols = np.arange(b.shape[1])
    z_best = grid[k].copy()
    step = float(grid[1] - grid[0]) if grid.size > 1 else 1.0
    # curvature of the objective (chi2 units) around the grid minimum
    kl, kr = np.clip(k - 1, 0, grid.size - 1), np.clip(k + 1, 0, grid.size - 1)
    o0, ol, orr = obj[k, cols], obj[kl, cols], obj[kr, cols]
    curv = (ol + orr - 2 * o0) / (2 * step * step)
    interior = (k > 0) & (k < grid.size - 1) & (curv > 0)
    if refine and squeeze:
        lo, hi = grid[kl[0]], grid[kr[0]]
        if hi > lo:

            def f(zs: float) -> float:
                row = curve(z - zs)[None, :]
                return float(_solve(row, w, b, setup)[3][0, 0])

            opt = minimize_scalar(f, bounds=(lo, hi), method="bounded", options={"xatol": 1e-4})
            if opt.fun <= o0[0]:
                z_best[0] = float(opt.x)
    elif refine:
        shift = np.where(interior, (ol - orr) / (4 * np.where(curv > 0, curv, 1) * step), 0.0)
        z_best = z_best + np.clip(shift, -step, step)
    row = curve(z[None, :] - z_best[:, None])  # (R, P)
    gf, cf, chi2f, _ = _solve_rows(row, w, b, setup)
    n = w.sum(0)
    sigma = np.where(curv > 0, 1.0 / np.sqrt(np.maximum(curv, 1e-300)), np.inf)
    return MatchResult(
        z_um=z_best,
        gain=gf,
        offset_px=cf,
        chi2=chi2f,
        rms_norm=np.sqrt(chi2f / np.maximum(n, 1)),
        sigma_z_um=sigma,
        n_points=n.astype(int),
    )


def _solve_rows(
    rows: np.ndarray, w: np.ndarray, b: np.ndarray, s: _MatchSetup
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Like :func:`_solve` but with one model row per column (R, P) -> (R,) each."""
    out = [_solve(rows[r][None, :], w[:, r : r + 1], b[:, r : r + 1], s) for r in range(len(rows))]
    return tuple(np.array([o[i][0, 0] for o in out]) for i in range(4))  # type: ignore[return-value]


# ----------------------------------------------------------------- the state machine
@dataclass
class _Obs:
    z_um: float
    b_px: float
    roi_b: np.ndarray | None  # flattened per-patch b, NaN where untextured
    signature: np.ndarray | None = None  # low-pass contrast (autofocus.contrast)


@dataclass
class _State:
    pending: list[float] = field(default_factory=list)
    obs: list[_Obs] = field(default_factory=list)
    result: FocusResult | None = None
    confirmed: bool = False
    last_estimate_um: float | None = None
    pair_blocked_at_um: float | None = None
    bracket: tuple[float, float] | None = None
    agreed_tried: bool = False
    compute_s: float = 0.0


class FocusSearch:
    """One autofocus, step by step (see the module docstring for the algorithm).

    ``calibration`` is a :class:`~autofocus.curve.BlurCurve` or anything with a
    ``curve`` attribute holding one (a stored calibration).
    """

    def __init__(
        self,
        z_start_um: float,
        calibration: Any,
        config: SearchConfig | None = None,
        *,
        focus_b_px: float | None = None,
    ) -> None:
        """``focus_b_px``: the b this field showed at focus last time (a previous
        result's ``focus_b_px``), so that a start near focus is recognised whatever the
        specimen's offset from the calibration; default the calibration's minimum."""
        t0 = time.perf_counter()
        self.config = config or SearchConfig()
        curve = getattr(calibration, "curve", calibration)
        if not isinstance(curve, BlurCurve):
            raise InvalidInputError(
                f"calibration must be a BlurCurve or have a .curve, got {type(calibration)!r}"
            )
        self.curve = curve.centred()
        z0 = _finite(z_start_um, "z_start_um")
        lo, hi = self.config.z_limits_um
        if not lo <= z0 <= hi:
            raise StageLimitError(
                f"start z = {z0:g} um is outside the soft limits [{lo:g}, {hi:g}] um"
            )
        self.z_start_um = z0
        self.focus_b_px = None if focus_b_px is None else _finite(focus_b_px, "focus_b_px")
        self.noise_sd_px = max(self.curve.residual_sd_px, self.config.noise_floor_px)
        h = self.config.bracket_fwhm * self.curve.fwhm_um
        if self.config.max_bracket_half_width_um is not None:
            h = min(h, self.config.max_bracket_half_width_um)
        if self.curve.dz_range_um is not None:  # stay where the calibration has data
            r_lo, r_hi = self.curve.dz_range_um
            h = min(h, max(min(-r_lo, r_hi), 0.0) * self.config.max_bracket_range_frac or h)
        dz_t = self._trusted_half_width()
        if dz_t is not None:  # keep the first bracket where b(z) is specimen-independent
            h = min(h, dz_t)
        h = min(h, (hi - lo) / 2)
        self.half_width_um = h
        scale = self.curve.fwhm_um
        if self.curve.dz_range_um is not None:
            scale = min(scale, max(-self.curve.dz_range_um[0], self.curve.dz_range_um[1]))
        self.precision_um = self.config.precision_um or scale / 20
        self.flank_um = self._flank_distance()
        # the start first (the paper's z1), then the bracket ends, all inside the limits
        a, c = self._bracket_around(z0, h)
        if a < z0 < c and self.config.near_start_pair:
            # the bracket ends wait for the first image: near focus they become z1 -/+ d
            self._s = _State(pending=[z0], bracket=(a, c))
        else:
            self._s = _State(pending=[z0 if a < z0 < c else (a + c) / 2, a, c])
        self._s.compute_s += time.perf_counter() - t0

    def _bracket_around(self, z0: float, h: float) -> tuple[float, float]:
        """``(z0 - h, z0 + h)`` shifted as a whole to lie inside the soft limits."""
        lo, hi = self.config.z_limits_um
        a, c = z0 - h, z0 + h
        if a < lo:
            a, c = lo, lo + 2 * h
        if c > hi:
            a, c = hi - 2 * h, hi
        return a, c

    # ---- public protocol -------------------------------------------------------
    @property
    def finished(self) -> bool:
        return self._s.result is not None

    @property
    def images_used(self) -> int:
        return len(self._s.obs)

    def next_z_um(self) -> float | None:
        """Where to image next, or ``None`` when the search has finished."""
        t0 = time.perf_counter()
        try:
            while self._s.result is None and not self._s.pending:
                self._decide()
                if self._s.result is None and not self._s.pending:
                    # a decision that neither queued a position nor finished: stop
                    # rather than loop (e.g. the only useful z was already imaged)
                    self._finish_stalled()
            if self._s.result is not None:
                return None
            return self._s.pending[0]
        finally:
            self._s.compute_s += time.perf_counter() - t0

    def observe(self, z_um: float, score: float | FocusScore | BlurScore) -> None:
        """Record the blur score measured at ``z_um`` (a float b in px, or a FocusScore).

        A NaN score or an undetermined :class:`FocusScore` counts as an empty field.
        """
        t0 = time.perf_counter()
        if self._s.result is not None:
            raise FocusSearchError("this search has finished; start a new FocusSearch")
        z = _finite(z_um, "z_um")
        lo, hi = self.config.z_limits_um
        if not lo <= z <= hi:
            raise StageLimitError(f"observed z = {z:g} um lies outside the soft limits")
        b, roi = _parse_score(score, self.config.roi_min_texture)
        sig = _signature(getattr(score, "contrast_signature", None))
        if self._s.pending and abs(self._s.pending[0] - z) <= 1e-6 * max(1.0, abs(z)):
            self._s.pending.pop(0)
        elif self._s.pending:
            logger.debug("observed z %.4f differs from requested %.4f", z, self._s.pending[0])
            self._s.pending.pop(0)
        self._s.obs.append(_Obs(z, b, roi, sig))
        self._s.compute_s += time.perf_counter() - t0

    def abort(self, reason: str) -> FocusResult:
        """Finish now as failed (e.g. a hardware error), keeping the start position."""
        if self._s.result is None:
            self._finish("failed", reason, z=self.z_start_um, estimate=None)
        assert self._s.result is not None
        return self._s.result

    @property
    def result(self) -> FocusResult:
        if self._s.result is None:
            raise FocusSearchError("the search has not finished; call next_z_um() until None")
        return self._s.result

    # ---- decisions ---------------------------------------------------------------
    def _valid(self) -> tuple[np.ndarray, np.ndarray, list[_Obs]]:
        good = [o for o in self._s.obs if math.isfinite(o.b_px)]
        good.sort(key=lambda o: o.z_um)
        z = np.array([o.z_um for o in good], dtype=np.float64)
        b = np.array([o.b_px for o in good], dtype=np.float64)
        return z, b, good

    def _finish(
        self,
        status: Status,
        reason: str,
        *,
        z: float,
        estimate: float | None,
        confidence: float = 0.0,
        bracketed: bool = False,
        n_rois: int = 0,
        roi_spread: float | None = None,
        gain: float | None = None,
        offset: float | None = None,
    ) -> None:
        lo, hi = self.config.z_limits_um
        focus_b = None
        if gain is not None and offset is not None:
            focus_b = float(gain * float(self.curve(0.0)) + offset)
        self._s.result = FocusResult(
            z_um=float(min(max(z, lo), hi)),
            images_used=len(self._s.obs),
            trace=tuple((o.z_um, o.b_px) for o in self._s.obs),
            confidence=float(confidence),
            status=status,
            reason=reason,
            z_start_um=self.z_start_um,
            z_estimate_um=estimate,
            bracketed=bracketed,
            n_rois=n_rois,
            roi_spread_um=roi_spread,
            gain=gain,
            offset_px=offset,
            compute_s=self._s.compute_s,
            focus_b_px=focus_b,
        )

    def _can_image(self) -> bool:
        return len(self._s.obs) < self.config.max_images

    def _imaged_at(self, z_um: float) -> list[_Obs]:
        """The images taken at ``z_um`` (within a thousandth of the precision)."""
        tol = 1e-3 * max(self.precision_um, 1e-6)
        return [o for o in self._s.obs if abs(o.z_um - z_um) <= tol]

    def _new_z(self, z_new: float, z_list: np.ndarray) -> bool:
        """Queue ``z_new`` unless it duplicates a sample; returns whether queued."""
        if self._imaged_at(z_new):
            return False
        self._s.pending.append(float(z_new))
        return True

    def _image_estimate_once(self, z_est: float, z: np.ndarray) -> bool:
        """Queue the estimate itself (clipped to the limits), at most once per search."""
        if self._s.confirmed or not self._can_image():
            return False
        self._s.confirmed = True
        lo, hi = self.config.z_limits_um
        return self._new_z(min(max(z_est, lo), hi), z)

    def _queue_first_bracket(self) -> None:
        """After the first image: the pair z1 -/+ d when it is already near focus (its
        b at most the curve's at ``d``), else the planned ``z1 -/+ h``."""
        assert self._s.bracket is not None
        a, c = self._s.bracket
        self._s.bracket = None
        b0 = self._s.obs[0].b_px
        d = self.flank_um
        b_min = float(self.curve(0.0))
        near = (self.focus_b_px if self.focus_b_px is not None else b_min) + (
            float(self.curve(d)) - b_min
        )
        if math.isfinite(b0) and b0 <= near and d < self.half_width_um:
            a, c = self._bracket_around(self.z_start_um, d)
            logger.debug("start within d = %.3g um of focus: bracketing with the pair", d)
        for zq in (a, c):
            self._new_z(zq, np.array([self.z_start_um]))

    def _decide(self) -> None:
        cfg = self.config
        if self._s.bracket is not None:
            self._queue_first_bracket()
            return
        if cfg.signed_contrast and self._signed_contrast():
            return
        z, b, good = self._valid()
        n_bad = len(self._s.obs) - len(good)
        if len(good) == 0:
            self._finish(
                "undetermined",
                "no texture in the field (every image undetermined); not moving",
                z=self.z_start_um,
                estimate=None,
            )
            return
        if n_bad and cfg.vanishing_contrast and self._vanishing_contrast(z, b):
            return
        if len(good) < 3:
            if not self._can_image():
                self._finish(
                    "undetermined",
                    f"only {len(good)} of {len(self._s.obs)} images had texture",
                    z=self.z_start_um,
                    estimate=None,
                )
                return
            # replace missing samples half-way between the best sample and empty ones
            best = good[int(np.argmin([o.b_px for o in good]))].z_um
            empties = [o.z_um for o in self._s.obs if not math.isfinite(o.b_px)]
            target = min(empties, key=lambda e: abs(e - best))
            if not self._new_z((best + target) / 2, z):
                self._finish(
                    "undetermined", "too few images with texture", z=self.z_start_um, estimate=None
                )
            logger.debug("%d undetermined images; sampling closer", n_bad)
            return
        t = cfg.trusted_blur_px
        if cfg.pair_refine and t is not None and bool(np.any(b <= t)):
            # near focus: the calibration places focus; symmetric flank samples pin it
            self._refine_with_pair(z, b, good)
            return
        conv = convexity_test(
            z,
            b,
            window=1,
            noise_sd_px=self.noise_sd_px,
            min_r2_gain=cfg.min_r2_gain,
            min_depth_sd=cfg.min_depth_sd,
        )
        if not conv.bracketed:
            self._expand(z, b, conv)
            return
        cap = self._focus_blur_cap()
        if cap is not None and float(b.min()) > cap:
            self._implausible_bracket(z, b, conv)
            return
        self._match_and_maybe_refine(z, b, good)

    def _focus_blur_cap(self) -> float | None:
        """``max_focus_blur_px``, never below ``trusted_blur_px`` nor twice the curve's
        minimum (a calibration blurrier than that at focus would refuse every bracket)."""
        cap = self.config.max_focus_blur_px
        if cap is None:
            return None
        return max(cap, self.config.trusted_blur_px or 0.0, 2.0 * self.curve.min_px)

    def _implausible_bracket(self, z: np.ndarray, b: np.ndarray, conv: ConvexityResult) -> None:
        """Step 2b: a dip whose sharpest sample is blurrier than ``max_focus_blur_px``.

        A specimen at focus reads far sharper than that, so such a dip is the regressor
        misreading far-defocused frames (seen once in 368 bead searches: b 65, 60, 72 at
        -54, -71, -88 um from focus) or a bracket too coarse to place focus.  Focus then
        lies about the calibrated |dz| of the sharpest sample away from it: image the
        candidate (clipped to the limits) that the samples match better, else the other
        one, else expand as if unbracketed; with no image left the search fails rather
        than report the dip as focus.
        """
        m = int(np.argmin(b))
        lo, hi = self.config.z_limits_um
        why = (
            f"the sharpest of {len(self._s.obs)} images has b = {b[m]:.1f} px, blurrier than "
            f"max_focus_blur_px {self._focus_blur_cap():g}: none is near focus"
        )
        if not self._can_image():
            # as for any failure: the best-effort estimate (a coarse but real bracket
            # often holds focus; 2 of 2 such budget-limited bench searches did)
            est = self._best_effort(z, b)
            self._finish("failed", why, z=est, estimate=est)
            return
        dz = self.curve.abs_dz_um(float(b[m]))
        if math.isfinite(dz) and dz > 0:
            cands = sorted({min(max(float(z[m] + s * dz), lo), hi) for s in (-1.0, 1.0)})
            # the candidate the samples' shape fits better (both sides are matched)
            fit = self._match(z, b[:, None], np.asarray(cands), refine=False)
            first = float(fit.z_um[0])
            for c in sorted(cands, key=lambda c: abs(c - first)):
                if self._new_z(c, z):
                    logger.debug("implausible bracket at b = %.1f px; probing %.1f um", b[m], c)
                    return
        self._expand(z, b, replace(conv, bracketed=False, reason=why))

    def _expand(self, z: np.ndarray, b: np.ndarray, conv: ConvexityResult) -> None:
        lo, hi = self.config.z_limits_um
        m = int(np.argmin(b))
        if m == 0:
            direction = -1
        elif m == z.size - 1:
            direction = 1
        else:  # flat or shallow: go towards the lower end
            direction = -1 if b[0] <= b[-1] else 1
        end = 0 if direction < 0 else z.size - 1
        nbr = 1 if direction < 0 else z.size - 2
        step = max(PHI * abs(z[end] - z[nbr]), self.half_width_um)
        t = self.config.trusted_blur_px
        near = t is not None and b[end] <= t
        if near:  # already close to focus: one bracket step finds the other side
            step = self.half_width_um
        z_new = z[end] + direction * step
        if self.config.model_jump and not near:
            # the calibration says how far downhill focus is: land just beyond it
            est = self._best_effort(z, b)
            if (est - z[end]) * direction > 0:
                z_new = est + direction * self.half_width_um / 2
                self._s.last_estimate_um = est
        # the end sample's own blur bounds how far focus can be: a match pulled by
        # blurry, saturated samples (or a blind golden step) must not overshoot into
        # a featureless region far beyond it
        reach = self.curve.abs_dz_um(float(b[end]))
        if math.isfinite(reach):
            bound = z[end] + direction * (self.config.expand_reach * reach + self.half_width_um)
            z_new = min(z_new, bound) if direction > 0 else max(z_new, bound)
        z_new = min(max(z_new, lo), hi)
        limit = lo if direction < 0 else hi
        at_limit = math.isfinite(limit) and abs(z[end] - limit) <= 1e-9 * max(1.0, abs(limit))
        if at_limit and self._can_image():
            # focus may still lie between the last samples and the limit: look there once
            est = self._best_effort(z, b)
            inner = z[nbr]
            gap = np.min(np.abs(z - est))
            if min(inner, limit) < est < max(inner, limit) and gap > 0.05 * self.precision_um:
                self._new_z(est, z)
                return
        if at_limit or not self._can_image():
            why = (
                f"minimum lies beyond the soft limit {limit:g} um"
                if self._can_image()
                else f"no bracket after {len(self._s.obs)} images ({conv.reason})"
            )
            est = self._best_effort(z, b)
            self._finish("failed", why, z=est, estimate=est)
            return
        if self._new_z(z_new, z):
            return
        if any(not math.isfinite(o.b_px) for o in self._imaged_at(z_new)):
            # the jump landed on an image without texture (a transparent specimen
            # near focus): look one flank distance further on, for a sharp image
            beyond = min(max(z_new + direction * self.flank_um, lo), hi)
            if self._new_z(beyond, z):
                return
        if not self._s.agreed_tried and self._can_image():
            # downhill ran into a field without texture: the direction came from far
            # samples whose b no longer rises with distance (sparse beads); image the
            # focus that their calibrated distances agree on instead, once
            self._s.agreed_tried = True
            agreed = self._agreed_focus(z, b)
            if agreed is not None and self._new_z(agreed, z):
                logger.debug("expansion stalled; probing the agreed focus %.1f um", agreed)
                return
        self._finish(
            "failed", "bracket expansion stalled", z=self._best_effort(z, b), estimate=None
        )

    def _agreed_focus(self, z: np.ndarray, b: np.ndarray) -> float | None:
        """Where the textured samples' distances from focus agree, ignoring the sign.

        Each sample ``i`` puts focus at ``z_i - d_i`` or ``z_i + d_i`` with ``d_i`` the
        calibrated |dz| of its b (:meth:`BlurCurve.abs_dz_um`, no gain or offset, so
        saturated far samples cannot stretch it).  The candidate with the least summed
        distance to each sample's nearer one wins.  Left out: candidates at an image
        already taken, and candidates nearer to an image without texture than to the
        farthest textured one (a specimen that shows texture that far from focus shows
        it nearer too), which rules out the mirror of the true focus beyond samples on
        one side, and candidates outside the soft limits.  None when there is no such
        candidate.
        """
        d = np.array([self.curve.abs_dz_um(float(v)) for v in b])
        ok = np.isfinite(d)
        if ok.sum() < 2:
            return None
        lo_c, hi_c = z[ok] - d[ok], z[ok] + d[ok]
        cands = np.concatenate([lo_c, hi_c])
        z_lo, z_hi = self.config.z_limits_um
        cands = cands[(cands >= z_lo) & (cands <= z_hi)]
        if not cands.size:
            return None
        empty = np.array([o.z_um for o in self._s.obs if not math.isfinite(o.b_px)])
        taken = np.array([o.z_um for o in self._s.obs])
        keep = np.ones(cands.size, bool)
        if taken.size:
            keep &= np.min(np.abs(cands[:, None] - taken[None, :]), axis=1) > self.precision_um
        if empty.size:
            farthest = np.max(np.abs(cands[:, None] - z[None, :]), axis=1)
            keep &= np.min(np.abs(cands[:, None] - empty[None, :]), axis=1) > farthest
        if not keep.any():
            return None
        cands = cands[keep]
        cost = np.minimum(
            np.abs(cands[:, None] - lo_c[None, :]), np.abs(cands[:, None] - hi_c[None, :])
        ).sum(axis=1)
        return float(cands[int(np.argmin(cost))])

    # ---- symmetric flank pair (step 5) --------------------------------------------
    def _flank_distance(self) -> float:
        """``d``: where the curve has risen by ``flank_rise_frac`` of (trusted - min).

        There b(z) is steep for every specimen (beads included) yet still
        specimen-independent, so a pair of samples at ``z* -/+ d`` measures the offset
        of ``z*`` from focus through their difference, whatever the specimen's gain.
        """
        c = self.curve
        top = self.config.trusted_blur_px
        if top is None or top <= c.min_px:
            top = c.min_px + c.amplitude_px / 2
        d = c.abs_dz_um(c.min_px + self.config.flank_rise_frac * (top - c.min_px))
        return d if d > 0 else c.fwhm_um / 4

    def _flank_samples(
        self, z: np.ndarray, b: np.ndarray, est: float
    ) -> tuple[list[int], list[int]]:
        d, t = self.flank_um, self.config.trusted_blur_px
        t = math.inf if t is None else t
        left = [i for i in range(z.size) if 0.5 * d <= est - z[i] <= 1.5 * d and b[i] <= t]
        right = [i for i in range(z.size) if 0.5 * d <= z[i] - est <= 1.5 * d and b[i] <= t]
        return left, right

    def _pair_asymmetry(self, z: np.ndarray, b: np.ndarray, est: float) -> float:
        """Smallest ``|(z* - zL) - (zR - z*)|`` over flank pairs (inf: no pair)."""
        left, right = self._flank_samples(z, b, est)
        if not left or not right:
            return math.inf
        return min(abs((est - z[i]) - (z[j] - est)) for i in left for j in right)

    def _coarse_estimate(self, z: np.ndarray, b: np.ndarray) -> float:
        """Focus from the trusted samples only (b <= trusted: specimen-independent).

        Blurrier samples only said which way to go; matching them as well pulls the
        estimate by the specimen's own saturation.  One trusted sample gives two
        candidates ``z -/+ |dz|`` (calibration inverse); the one nearer the previous
        estimate (the search aimed there) wins, else the all-sample match decides.
        """
        t = self.config.trusted_blur_px
        near = b <= (math.inf if t is None else t)
        if int(near.sum()) >= 2:
            zn, bn = z[near], b[near]
            lo, hi = self.config.z_limits_um
            w = 2 * self.flank_um
            grid = np.linspace(
                max(zn.min() - w, lo), min(zn.max() + w, hi), self.config.grid_points
            )
            return float(self._match(zn, bn[:, None], grid, refine=False).z_um[0])
        if int(near.sum()) == 1:
            i = int(np.argmax(near))
            dz = self.curve.abs_dz_um(float(b[i]))
            ref = self._s.last_estimate_um
            if ref is None:
                ref = self._best_effort(z, b)
            # b rises with |dz| no faster than the steepest gain x calibration slope:
            # a candidate that needs a blurrier sample to rise faster is impossible
            zf, bf = z[~near], b[~near]
            rate = self.config.gain_bounds[1] * self._max_slope()

            def key(c: float) -> tuple[float, float]:
                if zf.size == 0:
                    return 0.0, abs(c - ref)
                rise = (bf - b[i]) - rate * (np.abs(zf - c) - abs(z[i] - c))
                return max(float(rise.max()), 0.0), abs(c - ref)

            best = min((z[i] - dz, z[i] + dz), key=key)
            if key(best)[0] > 3 * self.noise_sd_px:
                # neither mirror candidate is possible: this specimen is blurrier at focus
                # than the slide (an offset), so |dz| from b is wrong; match the shape
                return self._best_effort(z, b)
            return float(best)
        return self._best_effort(z, b)

    def _confidence(self, m: MatchResult) -> float:
        """``1 / (1 + (rms / good_match_sd)^2) * 1 / (1 + (sigma_z / precision)^2)``."""
        fit = 1.0 / (1.0 + (float(m.rms_norm[0]) / self.config.good_match_sd) ** 2)
        return fit / (1.0 + (float(m.sigma_z_um[0]) / self.precision_um) ** 2)

    def _max_slope(self) -> float:
        """Steepest |db/dz| of the calibration curve over its range, px/um."""
        c = self.curve
        r = c.dz_range_um or (-3 * c.fwhm_um, 3 * c.fwhm_um)
        return float(np.max(np.abs(c.slope(np.linspace(r[0], r[1], 2001)))))

    def _local_samples(
        self, z: np.ndarray, b: np.ndarray, est: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Trusted samples within ``2.5 d`` of ``est`` -> (z, b, selection mask); the
        sample nearest ``est`` alone when there is none."""
        t = self.config.trusted_blur_px
        sel = (np.abs(z - est) <= 2.5 * self.flank_um) & (b <= (math.inf if t is None else t))
        if not sel.any():
            sel = np.abs(z - z[np.argmin(np.abs(z - est))]) == 0
        return z[sel], b[sel], sel

    def _queue_pair_step(self, z: np.ndarray, b: np.ndarray, est: float) -> bool:
        """Mirror the flank sample nearest to distance d about ``est`` (or image both
        ``est -/+ d`` when there is none); returns whether anything was queued."""
        lo, hi = self.config.z_limits_um
        d = self.flank_um
        left, right = self._flank_samples(z, b, est)
        flank = left + right
        if flank:
            i = min(flank, key=lambda k: abs(abs(z[k] - est) - d))
            targets = [2 * est - float(z[i])]
        else:
            targets = [est - d, est + d]
        room = self.config.max_images - len(self._s.obs)
        queued = False
        for zt in targets[: max(room, 0)]:
            zc = min(max(zt, lo), hi)
            if abs(zc - est) < 0.5 * d:  # the soft limit leaves no room for a flank sample
                self._s.pair_blocked_at_um = zc
                continue
            queued = self._new_z(zc, z) or queued
        return queued

    def _refine_with_pair(self, z: np.ndarray, b: np.ndarray, good: list[_Obs]) -> None:
        cfg = self.config
        lo, hi = cfg.z_limits_um
        est = self._coarse_estimate(z, b)
        zl, bl, sel = self._local_samples(z, b, est)
        span = (
            min(float(zl.min()), est - self.flank_um),
            max(float(zl.max()), est + self.flank_um),
        )
        grid = np.linspace(max(span[0], lo), min(span[1], hi), cfg.grid_points)
        loc = self._match(zl, bl, grid, refine=True)
        if zl.size >= 2:
            est = float(loc.z_um[0])
        self._s.last_estimate_um = est
        asym = self._pair_asymmetry(z, b, est)
        paired = asym <= cfg.pair_symmetry_frac * self.flank_um
        if not paired and self._can_image() and self._queue_pair_step(z, b, est):
            return
        if (
            paired
            and len(self._s.obs) < cfg.min_images
            and self._can_image()
            and self._new_z(min(max(est, lo), hi), z)
        ):
            return
        conf = self._confidence(loc)
        z_est, n_rois, spread = est, 0, None
        if cfg.per_roi:
            kept = [o for o, k in zip(good, sel, strict=True) if k]
            roi = self._roi_estimate(zl, kept, grid, min_points=2)
            if roi is not None:
                z_est, n_rois, spread = roi
        if paired:
            reason = "matched calibration curve; symmetric flank pair"
        else:
            conf = min(conf, 0.5 * cfg.min_confidence)
            reason = f"no symmetric flank pair after {len(self._s.obs)} images"
            if self._s.pair_blocked_at_um is not None:
                reason += (
                    f" (focus is within {self.flank_um:.3g} um of the soft limit "
                    f"{self._s.pair_blocked_at_um:g} um)"
                )
        self._finish(
            "converged",
            reason,
            z=z_est,
            estimate=z_est,
            confidence=conf,
            bracketed=math.isfinite(asym),
            n_rois=n_rois,
            roi_spread=spread,
            gain=float(loc.gain[0]),
            offset=float(loc.offset_px[0]),
        )

    def _vanishing_contrast(self, z: np.ndarray, b: np.ndarray) -> bool:
        """A transparent (phase) specimen in brightfield loses all contrast at focus.

        An undetermined image within the trusted half-width of a sharp (trusted)
        image cannot be a blurred-out fluorescent field: b rises smoothly with |dz| and
        is still low there.  Its z marks the zone ``|dz| < w`` where contrast vanishes,
        which is symmetric about focus.  Images with texture on one side only: the sharp
        one is mirrored across the zone to find its other edge.  Then each edge lies
        between an image with texture and one without; the wider of the two intervals
        is bisected until both are within ``2 precision_um`` (or images run out), and
        focus is the centre of the two edge intervals.
        Returns whether it queued an image or finished.
        """
        t, reach = self.config.trusted_blur_px, self._trusted_half_width()
        if t is None or reach is None or not bool(np.any(b <= t)):
            return False
        zt = z[b <= t]
        gone = sorted(
            o.z_um
            for o in self._s.obs
            if not math.isfinite(o.b_px) and float(np.min(np.abs(zt - o.z_um))) <= reach
        )
        if not gone:
            return False
        lo_e, hi_e = gone[0], gone[-1]
        below, above = z[z < lo_e], z[z > hi_e]
        lo, hi = self.config.z_limits_um
        if below.size == 0 or above.size == 0:
            if self._can_image():
                # find the zone's other edge: mirror the sharp image across the zone
                zs = float(zt[np.argmin(np.abs(zt - 0.5 * (lo_e + hi_e)))])
                z_new = hi_e + (hi_e - zs) if zs < lo_e else lo_e - (zs - lo_e)
                if self._new_z(min(max(z_new, lo), hi), z):
                    return True
            est, two_sided, pinned = 0.5 * (lo_e + hi_e), False, False
        else:
            # each edge of the zone lies between an image with texture and one
            # without; bisect the wider edge interval until both are within precision
            z_l, z_r = float(below.max()), float(above.min())
            est, two_sided = 0.25 * (z_l + lo_e + hi_e + z_r), True
            gap_l, gap_r = lo_e - z_l, z_r - hi_e
            pinned = max(gap_l, gap_r) <= 2 * self.precision_um
            if not pinned and self._can_image():
                mid = 0.5 * (z_l + lo_e) if gap_l >= gap_r else 0.5 * (hi_e + z_r)
                if self._new_z(mid, z):
                    return True
        reason = (
            f"contrast vanishes near focus ({len(gone)} undetermined images next to "
            "sharp ones: a transparent specimen); focus at the centre of that zone"
        )
        unpinned = f"its edges not pinned within {2 * self.precision_um:.3g} um"
        self._finish_transparent(reason, est, 0.5, None if pinned else unpinned, two_sided)
        return True

    def _finish_transparent(
        self, reason: str, est: float, confidence: float, unpinned: str | None, bracketed: bool
    ) -> None:
        """Converged on a transparent specimen (steps 7, 8); ``unpinned`` says why the
        estimate could not be pinned before images ran out (confidence then below
        ``min_confidence``)."""
        if unpinned is not None:
            reason += "; " + unpinned
            confidence = 0.5 * self.config.min_confidence
        self._finish(
            "converged", reason, z=est, estimate=est, confidence=confidence, bracketed=bracketed
        )

    def _signed_contrast(self) -> bool:
        """Phase objects: focus where the low-pass contrast changes sign (step 8).

        Active once two images' signatures are anti-correlated (opposite sides of
        focus; never the case for fluorescent or absorbing specimens).  Every image's
        contrast is projected on the pattern they share (a signed amplitude ~ z - z*),
        focus is interpolated between the closest neighbours of opposite sign, and the
        estimate is imaged until the interpolation moves it by less than a quarter of
        ``precision_um`` from an image.  Returns whether it queued an image or finished.
        """
        from autofocus.contrast import contrast_amplitudes, signature_correlation

        last = next((o.signature for o in reversed(self._s.obs) if o.signature is not None), None)
        if last is None:
            return False
        obs = sorted(
            (o for o in self._s.obs if o.signature is not None and o.signature.shape == last.shape),
            key=lambda o: o.z_um,
        )
        # significance floor: noise alone correlates with an SD of 1 / sqrt(blocks)
        thr = -max(self.config.anticorrelation, 6.0 / math.sqrt(last.size))
        inverted = [
            (p, q)
            for i, p in enumerate(obs)
            for q in obs[i + 1 :]
            if q.z_um > p.z_um and signature_correlation(p.signature, q.signature) < thr
        ]
        if not inverted:
            return False
        z = np.array([o.z_um for o in obs])
        c = contrast_amplitudes(np.stack([o.signature for o in obs]), z)
        changes = [i for i in range(z.size - 1) if c[i] <= 0 < c[i + 1] and z[i + 1] > z[i]]
        if not changes:
            return False
        i = min(changes, key=lambda k: z[k + 1] - z[k])
        est = float(z[i] - c[i] * (z[i + 1] - z[i]) / (c[i + 1] - c[i]))
        lo, hi = self.config.z_limits_um
        est = min(max(est, lo), hi)
        tol = 0.25 * self.precision_um
        done = min(est - z[i], z[i + 1] - est) <= tol
        if not done and self._can_image() and self._new_z(est, z):
            return True
        p, q = min(inverted, key=lambda pq: pq[1].z_um - pq[0].z_um)
        reason = (
            f"contrast inverts through focus (signatures at {p.z_um:.4g} and {q.z_um:.4g} "
            "um anti-correlated: a transparent specimen); focus where it changes sign"
        )
        self._finish_transparent(
            reason, est, 0.9, None if done else f"not pinned within {tol:.3g} um", True
        )
        return True

    def _trusted_half_width(self) -> float | None:
        """Smallest |dz| at which the calibration curve reaches ``trusted_blur_px``."""
        t = self.config.trusted_blur_px
        if t is None:
            return None
        r = self.curve.dz_range_um or (-3 * self.curve.fwhm_um, 3 * self.curve.fwhm_um)
        reach = max(-r[0], r[1])
        dz = np.linspace(0.0, reach, 2001)
        above = (self.curve(dz) >= t) | (self.curve(-dz) >= t)
        if not above.any() or not above[1:].any():
            return None
        i = int(np.argmax(above))
        return float(dz[i]) if dz[i] > 0 else None

    def _finish_stalled(self) -> None:
        z, b, _ = self._valid()
        est = self._best_effort(z, b) if z.size >= 2 else self.z_start_um
        self._finish("failed", "search stalled: no new position to image", z=est, estimate=est)

    def _best_effort(self, z: np.ndarray, b: np.ndarray) -> float:
        """Unbracketed estimate: match over the sampled span widened by 2 FWHM."""
        lo, hi = self.config.z_limits_um
        w = 2 * self.curve.fwhm_um
        grid = np.linspace(max(z.min() - w, lo), min(z.max() + w, hi), self.config.grid_points)
        r = self._match(z, b[:, None], grid, refine=False)
        return float(r.z_um[0])

    def _match(self, z: np.ndarray, b: np.ndarray, grid: np.ndarray, refine: bool) -> MatchResult:
        cfg = self.config
        return match_curve(
            z,
            b,
            self.curve,
            z_grid_um=grid,
            noise_sd_px=self.noise_sd_px,
            gain_bounds=cfg.gain_bounds,
            gain_prior_sd=cfg.gain_prior_sd,
            offset_prior_frac=cfg.offset_prior_frac,
            refine=refine,
            trusted_blur_px=cfg.trusted_blur_px,
        )

    def _match_and_maybe_refine(self, z: np.ndarray, b: np.ndarray, good: list[_Obs]) -> None:
        cfg = self.config
        grid = np.linspace(z[0], z[-1], cfg.grid_points)
        glob = self._match(z, b, grid, refine=True)
        z_glob = float(glob.z_um[0])
        conf = self._confidence(glob)
        z_est, n_rois, spread = z_glob, 0, None
        if cfg.per_roi:
            roi = self._roi_estimate(z, good, grid)
            if roi is not None:
                z_est, n_rois, spread = roi
        untrusted = cfg.trusted_blur_px is not None and not bool(np.any(b <= cfg.trusted_blur_px))
        disputed = spread is not None and spread > self.precision_um
        if cfg.pair_refine and cfg.confirm_disputed and untrusted and disputed:
            # only blurry samples, and their regions disagree about focus: look at the
            # estimate itself, so that the flank pair (step 5) can take over
            if self._image_estimate_once(z_est, z):
                return
        if conf < cfg.min_confidence and self._can_image():
            if self._golden_point(z, b):
                return
        if len(self._s.obs) < cfg.min_images and self._can_image() and self._golden_point(z, b):
            return
        if cfg.confirm and self._image_estimate_once(z_est, z):
            return
        reason = "matched calibration curve"
        if conf < cfg.min_confidence:
            reason = f"maximum image count reached with low confidence {conf:.2f}"
        self._finish(
            "converged",
            reason,
            z=z_est,
            estimate=z_est,
            confidence=conf,
            bracketed=True,
            n_rois=n_rois,
            roi_spread=spread,
            gain=float(glob.gain[0]),
            offset=float(glob.offset_px[0]),
        )

    def _roi_estimate(
        self, z: np.ndarray, good: list[_Obs], grid: np.ndarray, min_points: int = 3
    ) -> tuple[float, int, float] | None:
        rois = [o.roi_b for o in good if o.roi_b is not None]
        if len(rois) != len(good):
            return None
        sizes = {r.size for r in rois}
        if len(sizes) != 1:
            return None
        bm = np.stack(rois)  # (P, R)
        keep = np.isfinite(bm).sum(0) >= min_points
        if keep.sum() < self.config.min_rois:
            return None
        bm = bm[:, keep]
        # an ROI must itself bracket: finite samples on both sides of its lowest one
        r = self._match(z, bm, grid, refine=True)
        est = r.z_um[np.isfinite(r.sigma_z_um)]
        if est.size < self.config.min_rois:
            return None
        med = float(np.median(est))
        mad = 1.4826 * float(np.median(np.abs(est - med)))
        inl = est[np.abs(est - med) <= 3 * max(mad, 1e-9)] if mad > 0 else est
        return float(np.median(inl)), int(est.size), mad

    def _golden_point(self, z: np.ndarray, b: np.ndarray) -> bool:
        """Queue a golden-section point in the larger half around the lowest sample."""
        m = int(np.argmin(b))
        m = min(max(m, 1), z.size - 2)
        left, right = z[m] - z[m - 1], z[m + 1] - z[m]
        if right >= left:
            z_new = z[m] + GOLDEN_FRACTION * right
        else:
            z_new = z[m] - GOLDEN_FRACTION * left
        return self._new_z(z_new, z)


# ----------------------------------------------------------------- driver
def find_focus(
    measure: Callable[[float], float | FocusScore | BlurScore],
    z_start_um: float,
    calibration: Any,
    config: SearchConfig | None = None,
    *,
    focus_b_px: float | None = None,
) -> FocusResult:
    """Run a :class:`FocusSearch` with ``measure(z_um) -> b or FocusScore``.

    ``focus_b_px``: a previous result's ``focus_b_px`` for the same field (tracking).

    ``measure`` images at ``z_um`` (moving the stage is its business) and may raise
    :class:`~autofocus.errors.HardwareError`; the search then stops as failed.
    Failure policy (``config.on_failure``) for a result that is not converged:
    ``raise`` -> :class:`~autofocus.errors.FocusSearchError` (``.result`` attached);
    ``warn`` -> a warning is logged and ``z_um`` is the best-effort estimate (the start
    for an undetermined field or a hardware error); ``keep_last`` -> ``z_um`` is the
    start position (the stage goes back where it was).
    """
    cfg = config or SearchConfig()
    search = FocusSearch(z_start_um, calibration, cfg, focus_b_px=focus_b_px)
    hw_error: HardwareError | None = None
    while (z := search.next_z_um()) is not None:
        try:
            score = measure(z)
        except HardwareError as exc:
            hw_error = exc
            search.abort(f"hardware error at z = {z:g} um: {exc}")
            break
        search.observe(z, score)
    res = search.result
    if res.status == "converged":
        logger.info(
            "autofocus: z %.3f -> %.3f um, %d images, confidence %.2f, %.1f ms compute",
            res.z_start_um,
            res.z_um,
            res.images_used,
            res.confidence,
            res.compute_s * 1e3,
        )
        return res
    if cfg.on_failure == "raise":
        err = FocusSearchError(f"autofocus {res.status}: {res.reason}")
        err.result = res  # type: ignore[attr-defined]
        raise err from hw_error
    if cfg.on_failure == "keep_last" or res.status == "undetermined" or hw_error is not None:
        res = _with_z(res, res.z_start_um)
    if cfg.on_failure == "warn":
        logger.warning("autofocus %s: %s; stage to z = %.3f um", res.status, res.reason, res.z_um)
    return res


def _with_z(res: FocusResult, z: float) -> FocusResult:
    from dataclasses import replace

    return replace(res, z_um=float(z))


# ----------------------------------------------------------------- helpers
def _finite(value: Any, name: str) -> float:
    return finite_float(value, name)


def _signature(sig: Any) -> np.ndarray | None:
    """A usable contrast signature (2-D, finite, 16+ blocks) or None."""
    if sig is None:
        return None
    a = np.asarray(sig)
    if a.ndim != 2 or a.size < 16 or a.dtype.kind not in "if" or not np.all(np.isfinite(a)):
        return None
    return a.astype(np.float32, copy=False)


def _parse_score(score: Any, min_texture: float) -> tuple[float, np.ndarray | None]:
    """(b, per-ROI b or None) from a float or a FocusScore; NaN b = undetermined."""
    if isinstance(score, (FocusScore, BlurScore)):
        if not score.determined:
            return math.nan, None
        b = float(score.blur_px)
        roi = None
        grid = score.regressor_patches
        if grid is not None and "blur_px" in grid.values:
            vals = np.asarray(grid.values["blur_px"], dtype=np.float64).ravel()
            tex = grid.values.get("texture")
            if tex is not None:
                vals = np.where(
                    np.asarray(tex, dtype=np.float64).ravel() >= min_texture, vals, np.nan
                )
            roi = vals
        return (b if math.isfinite(b) else math.nan), roi
    if isinstance(score, bool) or not isinstance(score, (int, float, np.floating, np.integer)):
        raise InvalidInputError(
            f"measure must return a float blur score, a FocusScore or a BlurScore, "
            f"got {type(score)!r}"
        )
    b = float(score)
    return (b if math.isfinite(b) else math.nan), None
