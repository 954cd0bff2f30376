"""In-process focus scoring with the two shipped models (:class:`LocalScorer`).

Pipeline (identical in training and inference): validate the frame -> tile it so every
pixel is covered (84 px patches for the classifier; for the regressor its card's
``input_size``, 128 px or 256 px) -> normalise each patch to zero mean and unit
variance (gain/offset invariant) -> run the networks in batches under
``torch.inference_mode`` -> aggregate.  Frames taken with an objective preset that has
its own classifier (``classifier-<preset>``, trained for that objective's optics only)
are scored by it; all others by the general one.
Each network whose card says it was built with optics features (the general classifier
and the regressor) is told the objective's (:func:`autofocus.models.optics_features`;
zeros when no objective is given).

Aggregation
-----------
* A regressor patch is *textured* when its texture probability is >= ``texture_threshold``
  and it is not constant.  Each classifier patch inherits the texture probability of
  the regressor patch under its centre.
* Classifier patch weight ``w = certainty * texture``; the image distribution is the
  ``w``-weighted mean of patch distributions (Yang et al. weight by certainty alone; the
  texture factor keeps empty background from moving the verdict even when the classifier
  is over-confident on noise).
* b = median regressed blur over textured regressor patches.
* Blank fields: a frame that is only illumination and noise (vignetting, a ramp, a dark
  frame with hot pixels; :func:`autofocus.blank.is_blank_field`) has no textured patch,
  whatever the networks say of its patches (they read a normalised smooth gradient as
  extreme blur, and hot pixels as in-focus points).
* Verdict: undetermined when no regressor patch is textured or the summed weight is
  negligible (``undetermined_reason`` says which, and whether the frame had no signal
  at all or was a blank field); else in focus when ``P(level <= in_focus_max_level) >=
  0.5``.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from autofocus.blank import is_blank_field
from autofocus.checks import bounded_int, finite_float
from autofocus.errors import InvalidFrameError, InvalidInputError
from autofocus.optics import (
    IN_FOCUS_MAX_LEVEL,
    N_LEVELS,
    Objective,
    get_objective,
    ray_blur_slope,
)
from autofocus.score import BlurScore, FocusScore, PatchGrid, UndeterminedReason, Verdict
from autofocus.tiling import TileGrid, extract_patches, normalise_patches, prepare_frame

__all__ = ["LocalScorer", "aggregate_distribution", "image_certainties"]

CLASSIFIER_PATCH = 84
"""Classifier tile size in px: :data:`autofocus.models.CLASSIFIER_PATCH`, repeated here so
that importing the scorer does not import torch (a test checks they agree)."""


class LocalScorer:
    """Scores frames with the shipped classifier and regressor, in this process.

    Thread-safe (one lock around the forward passes).  ``num_threads`` sets torch's
    intra-op threads once at construction when given.
    """

    def __init__(
        self,
        *,
        weights_dir: str | None = None,
        device: str = "cpu",
        texture_threshold: float = 0.5,
        in_focus_max_level: int = IN_FOCUS_MAX_LEVEL,
        min_weight: float = 0.05,
        batch_size: int = 256,
        num_threads: int | None = None,
        detect_blank_fields: bool = True,
    ) -> None:
        # settings first: a typo fails at once, before any model is loaded
        self.texture_threshold = finite_float(texture_threshold, "texture_threshold", nonneg=True)
        if self.texture_threshold > 1:
            raise InvalidInputError(f"texture_threshold must be <= 1, got {texture_threshold!r}")
        self.in_focus_max_level = bounded_int(
            in_focus_max_level, "in_focus_max_level", 0, N_LEVELS - 1
        )
        self.min_weight = finite_float(min_weight, "min_weight", nonneg=True)
        self.batch_size = bounded_int(batch_size, "batch_size", 1)
        threads = None if num_threads is None else bounded_int(num_threads, "num_threads", 1)
        import torch

        from autofocus.models import fuse_for_inference
        from autofocus.registry import load_model

        if threads is not None:
            torch.set_num_threads(threads)
        self._torch = torch
        self._device = _torch_device(torch, device)
        cls, self.classifier_card = load_model("classifier", weights_dir)
        reg, self.regressor_card = load_model("regressor", weights_dir)
        self.regressor_patch = int(self.regressor_card.input_size)
        """Regressor tile size in px (its card's ``input_size``: 128, or 256)."""
        # Conv/BatchNorm pairs folded: same outputs to float32 rounding, ~8 % faster;
        # channels-last feature maps: oneDNN's faster convolutions on CPU (see _run)
        self._cls = self._prepared(fuse_for_inference(cls))
        self._reg = self._prepared(fuse_for_inference(reg))
        self._weights_dir = weights_dir
        # objective preset name -> its own classifier, or None: use the general one
        self._per_objective: dict[str, tuple[Any, Any] | None] = {}
        self._load_lock = threading.Lock()
        self.detect_blank_fields = bool(detect_blank_fields)
        self._lock = threading.Lock()

    @property
    def model_version(self) -> str:
        """The general classifier and the regressor (see :meth:`model_version_for`)."""
        return self.model_version_for(None)

    def classifier_for(self, objective: Objective | None) -> tuple[Any, Any]:
        """``(network, card)`` of the classifier for frames taken with ``objective``.

        A classifier trained for one objective preset (``classifier-<preset>`` beside the
        general one) is used when ``objective`` *is* that preset (same name and optics);
        any other objective, or none, gets the general classifier.
        """
        from autofocus.models import fuse_for_inference
        from autofocus.optics import OBJECTIVE_PRESETS
        from autofocus.registry import has_model, load_model

        objective = _objective(objective)
        if objective is None or OBJECTIVE_PRESETS.get(objective.name) != objective:
            return self._cls, self.classifier_card
        name = objective.name
        with self._load_lock:
            if name not in self._per_objective:
                found = None
                if has_model("classifier", self._weights_dir, name):
                    net, card = load_model("classifier", self._weights_dir, name)
                    found = (self._prepared(fuse_for_inference(net)), card)
                self._per_objective[name] = found
            found = self._per_objective[name]
        return found if found is not None else (self._cls, self.classifier_card)

    def model_version_for(self, objective: Objective | None) -> str:
        """``model_version`` of the pair that scores frames taken with ``objective``."""
        return f"{self.classifier_for(objective)[1].model_id}+{self.regressor_card.model_id}"

    # ---- forward passes ------------------------------------------------------
    def _prepared(self, net: Any) -> Any:
        """``net`` on the scorer's device with channels-last weights: with a
        channels-last input every feature map stays channels-last, for which oneDNN's
        CPU convolutions are 25-40 % faster here (same outputs to float32 rounding)."""
        return net.to(self._device).to(memory_format=self._torch.channels_last)

    def _run(self, net: Any, x: np.ndarray, optics: np.ndarray | None = None) -> np.ndarray:
        """``net`` on patches ``x`` in batches; ``optics``: one row of optics features
        (:func:`autofocus.models.optics_features`) for every patch, given to a net built
        to take them."""
        torch = self._torch
        outs = []
        with self._lock, torch.inference_mode():
            for i in range(0, x.shape[0], self.batch_size):
                t = torch.from_numpy(np.ascontiguousarray(x[i : i + self.batch_size]))
                t = t[:, None].to(self._device).contiguous(memory_format=torch.channels_last)
                args = [t]
                if optics is not None:
                    args.append(torch.from_numpy(optics[i : i + self.batch_size]).to(self._device))
                outs.append(net(*args).float().cpu().numpy())
        return np.concatenate(outs) if outs else np.zeros((0, 0), np.float32)

    # ---- public API ------------------------------------------------------------
    def score(
        self,
        frame: np.ndarray,
        objective: Objective | str | None = None,
        *,
        with_patches: bool = False,
    ) -> FocusScore:
        return self.score_batch([frame], objective, with_patches=with_patches)[0]

    def blur_score(
        self,
        frame: np.ndarray,
        objective: Objective | str | None = None,
        *,
        with_patches: bool = False,
    ) -> BlurScore:
        """Only the blur regressor (b, texture, per-patch blur): what the search needs.

        Same pre-processing and the same ``b`` as :meth:`score` (tested), without the
        classifier's forward pass.
        """
        objective = _objective(objective)
        f = prepare_frame(frame, CLASSIFIER_PATCH)
        fr = _pad_to(f, self.regressor_patch)
        rg = TileGrid.for_shape(fr.shape, self.regressor_patch)
        rp, rs = normalise_patches(extract_patches(fr, rg))
        rs, reason = self._signal(f, rs)
        reg = self._run(self._reg, rp, self._optics_rows(self._reg, objective, rp.shape[0]))
        tex_r, textured_r, blur, astig = self._regressor_values(reg, rs)
        b, spread, _ = _blur_stats(blur, astig, textured_r)
        if reason is None and not textured_r.any():
            reason = "no_texture"
        return BlurScore(
            blur_px=b,
            blur_spread_px=spread,
            textured_fraction=float(textured_r.mean()),
            model_version=self.model_version_for(objective),
            undetermined_reason=reason,
            regressor_patches=_regressor_grid(rg, blur, tex_r, astig) if with_patches else None,
        )

    @staticmethod
    def _optics_rows(net: Any, objective: Objective | None, n: int) -> np.ndarray | None:
        """``n`` rows of the objective's optics features for a net built with them
        (zeros when the objective is unknown), else None."""
        if not getattr(net, "optics_features", 0):
            return None
        from autofocus.models import optics_features

        return np.tile(optics_features(objective), (n, 1))

    def _signal(
        self, frame: np.ndarray, sig: np.ndarray
    ) -> tuple[np.ndarray, UndeterminedReason | None]:
        """The regressor patches with signal (``sig``; none when ``frame`` is a blank
        field), and the reason when none has: ``no_signal`` (a constant frame) or
        ``blank_field``.  Constant patches in a frame that is not constant (a step
        on a tile seam) get no reason here; the score calls them ``no_texture``."""
        if not sig.any():
            return sig, "no_signal" if float(frame.min()) == float(frame.max()) else None
        if self.detect_blank_fields and is_blank_field(frame):
            return np.zeros_like(sig), "blank_field"
        return sig, None

    def _regressor_values(
        self, reg: np.ndarray, r_sig: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        tex_r = 1.0 / (1.0 + np.exp(-reg[:, -1].astype(np.float64)))
        tex_r = np.where(r_sig, tex_r, 0.0)
        textured_r = r_sig & (tex_r >= self.texture_threshold)
        blur = np.maximum(reg[:, 0].astype(np.float64), 0.0)
        astig = np.hypot(reg[:, 1], reg[:, 2]).astype(np.float64)
        return tex_r, textured_r, blur, astig

    def score_batch(
        self,
        frames: Sequence[np.ndarray],
        objective: Objective | str | None = None,
        *,
        with_patches: bool = False,
    ) -> list[FocusScore]:
        if isinstance(frames, np.ndarray) and frames.ndim == 2:
            raise InvalidFrameError("score_batch takes a sequence of frames; use score()")
        objective = _objective(objective)
        prepared = [prepare_frame(f, CLASSIFIER_PATCH) for f in frames]
        net, _ = self.classifier_for(objective)
        version = self.model_version_for(objective)
        c_grids, r_grids, c_parts, r_parts, c_sig, r_sig = [], [], [], [], [], []
        reasons: list[UndeterminedReason | None] = []
        for f in prepared:
            cg = TileGrid.for_shape(f.shape, CLASSIFIER_PATCH)
            fr = _pad_to(f, self.regressor_patch)
            rg = TileGrid.for_shape(fr.shape, self.regressor_patch)
            cp, cs = normalise_patches(extract_patches(f, cg))
            rp, rs = normalise_patches(extract_patches(fr, rg))
            rs, reason = self._signal(f, rs)
            reasons.append(reason)
            c_grids.append(cg)
            r_grids.append(rg)
            c_parts.append(cp)
            r_parts.append(rp)
            c_sig.append(cs)
            r_sig.append(rs)
        cx, rx = _joined(c_parts), _joined(r_parts)
        logits = self._run(net, cx, self._optics_rows(net, objective, cx.shape[0]))
        reg_out = self._run(self._reg, rx, self._optics_rows(self._reg, objective, rx.shape[0]))
        results = []
        ci = ri = 0
        for k in range(len(prepared)):
            nc, nr = c_parts[k].shape[0], r_parts[k].shape[0]
            results.append(
                self._aggregate(
                    logits[ci : ci + nc],
                    reg_out[ri : ri + nr],
                    c_grids[k],
                    r_grids[k],
                    c_sig[k],
                    r_sig[k],
                    reasons[k],
                    objective,
                    with_patches,
                    version,
                )
            )
            ci += nc
            ri += nr
        return results

    # ---- aggregation -------------------------------------------------------------
    def _aggregate(
        self,
        logits: np.ndarray,
        reg: np.ndarray,
        cg: TileGrid,
        rg: TileGrid,
        c_sig: np.ndarray,
        r_sig: np.ndarray,
        reason: UndeterminedReason | None,
        objective: Objective | None,
        with_patches: bool,
        model_version: str,
    ) -> FocusScore:
        from autofocus.models import certainty, median_level

        z = logits - logits.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        cert = certainty(p)
        tex_r, textured_r, blur, astig = self._regressor_values(reg, r_sig)

        # texture of the regressor patch under each classifier patch centre
        cy = cg.ys + cg.size / 2
        cx = cg.xs + cg.size / 2
        iy = _nearest_index(cy, rg.ys, rg.size)
        ix = _nearest_index(cx, rg.xs, rg.size)
        tex_grid = tex_r.reshape(rg.shape)
        tex_c = tex_grid[iy[:, None], ix[None, :]].ravel()
        w = cert * tex_c * c_sig
        wsum = float(w.sum())
        determined = bool(textured_r.any()) and wsum >= self.min_weight
        probs = aggregate_distribution(p, w)
        levels = np.arange(N_LEVELS)
        expected = float((probs * levels).sum())
        c_mean, c_max, c_weighted = image_certainties(cert, w > 0)
        b, spread, ast = _blur_stats(blur, astig, textured_r)
        p_in = float(probs[: self.in_focus_max_level + 1].sum())
        verdict: Verdict
        if not determined:
            verdict = "undetermined"
            if reason is None:
                reason = "low_certainty" if textured_r.any() else "no_texture"
        else:
            verdict = "in_focus" if p_in >= 0.5 else "out_of_focus"
        dz_b = dz_l = None
        if objective is not None and determined:
            slope = ray_blur_slope(objective, self.regressor_card.blur_ray)
            dz_b = float(b * objective.pixel_size_um / (2 * slope))
            dz_l = float(objective.level_to_dz_um(expected))
        cgrid = rgrid = None
        if with_patches:
            cgrid = PatchGrid(
                cg.ys,
                cg.xs,
                cg.size,
                {
                    "level": (p * levels).sum(1).reshape(cg.shape),
                    "certainty": cert.reshape(cg.shape),
                    "weight": w.reshape(cg.shape),
                },
            )
            rgrid = _regressor_grid(rg, blur, tex_r, astig)
        return FocusScore(
            probabilities=probs,
            expected_level=expected,
            predicted_level=median_level(probs),
            certainty_aggregate=float(certainty(probs)),
            certainty_mean=c_mean,
            certainty_max=c_max,
            certainty_weighted=c_weighted,
            in_focus_probability=p_in,
            blur_px=b,
            blur_spread_px=spread,
            astigmatism_px=ast,
            textured_fraction=float(textured_r.mean()),
            verdict=verdict,
            abs_dz_um=dz_b,
            abs_dz_um_from_level=dz_l,
            model_version=model_version,
            undetermined_reason=reason if verdict == "undetermined" else None,
            classifier_patches=cgrid,
            regressor_patches=rgrid,
        )


def aggregate_distribution(p: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted mean of patch distributions ``sum_i w_i p_i / sum_i w_i`` (uniform if all 0)."""
    w = np.asarray(weights, dtype=np.float64)
    total = float(w.sum())
    if total <= 0:
        return np.full(p.shape[1], 1.0 / p.shape[1])
    return (w[:, None] * np.asarray(p, dtype=np.float64)).sum(0) / total


def image_certainties(cert: np.ndarray, used: np.ndarray) -> tuple[float, float, float]:
    """Yang et al.'s image certainties over the used patches: mean, max and
    ``weighted = sum c^2 / sum c``; zeros when no patch is used."""
    c = np.asarray(cert, dtype=np.float64)[np.asarray(used, dtype=bool)]
    if c.size == 0:
        return 0.0, 0.0, 0.0
    return float(c.mean()), float(c.max()), float((c**2).sum() / max(c.sum(), 1e-12))


def _torch_device(torch: Any, device: str) -> Any:
    """``torch.device(device)``, refusing names torch does not know or cannot use here."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise InvalidInputError(f"unknown torch device {device!r} (cpu, cuda, cuda:1...)") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InvalidInputError(f"device {device!r}: CUDA is not available to this torch")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise InvalidInputError(f"device {device!r}: only {torch.cuda.device_count()} GPU(s)")
    if dev.type not in ("cpu", "cuda"):
        raise InvalidInputError(f"device {device!r}: only cpu and cuda are supported")
    return dev


def _blur_stats(
    blur: np.ndarray, astig: np.ndarray, textured: np.ndarray
) -> tuple[float, float, float]:
    """b = median blur over textured patches, its median absolute spread, astigmatism."""
    if not textured.any():
        return math.nan, math.nan, math.nan
    b = float(np.median(blur[textured]))
    return b, float(np.median(np.abs(blur[textured] - b))), float(np.median(astig[textured]))


def _regressor_grid(
    rg: TileGrid, blur: np.ndarray, tex: np.ndarray, astig: np.ndarray
) -> PatchGrid:
    values = {"blur_px": blur, "texture": tex, "astigmatism_px": astig}
    return PatchGrid(rg.ys, rg.xs, rg.size, {k: v.reshape(rg.shape) for k, v in values.items()})


def _objective(objective: Any) -> Objective | None:
    """None, an :class:`Objective`, or a preset's name (``"20X"``) resolved to it."""
    return None if objective is None else get_objective(objective)


def _joined(parts: list[np.ndarray]) -> np.ndarray:
    """The frames' patches as one array (a single frame's are used as they are, uncopied)."""
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _nearest_index(centres: np.ndarray, starts: np.ndarray, size: int) -> np.ndarray:
    """Index of the tile (given by its starts) whose centre is closest to each centre."""
    tile_c = starts + size / 2
    return np.abs(centres[:, None] - tile_c[None, :]).argmin(axis=1)


def _pad_to(frame: np.ndarray, size: int) -> np.ndarray:
    """Reflect-pad a frame smaller than ``size`` in either axis up to ``size``."""
    h, w = frame.shape
    ph, pw = max(0, size - h), max(0, size - w)
    if ph == 0 and pw == 0:
        return frame
    return np.pad(frame, ((0, ph), (0, pw)), mode="reflect" if min(h, w) > 1 else "edge")
