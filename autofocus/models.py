"""The two small networks, their losses and the certainty formulas (imports torch).

Both networks read per-patch normalised images (see :mod:`autofocus.tiling`) and start
with a strided 8x8 "patchify" convolution, which keeps them cheap on a CPU: the first
layer looks at every pixel once at full resolution and everything after it runs at 1/4
resolution or less (each later block halves it again).  Sizes were chosen so that
scoring a 2048x2048 frame with both models fits the 100 ms CPU budget (2 threads).
Yang et al.'s network (two 5x5 convolutions at full and half resolution and
a 1024-unit fully connected layer, ~28 M parameters) is reimplemented in
:class:`YangNet` only as the speed baseline of ``autofocus bench scoring``.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch
from torch import nn

from autofocus.optics import N_LEVELS, Objective

__all__ = [
    "CLASSIFIER_PATCH",
    "N_OPTICS_FEATURES",
    "REGRESSOR_OUTPUTS",
    "REGRESSOR_PATCH",
    "REGRESSOR_PATCHES",
    "DefocusClassifier",
    "YangNet",
    "ZernikeRegressor",
    "certainty",
    "fuse_for_inference",
    "median_level",
    "optics_features",
    "rps_loss",
]

CLASSIFIER_PATCH = 84
REGRESSOR_PATCH = 128
REGRESSOR_PATCHES = (128, 256)
"""Regressor patch sizes a model may be trained for (both tile the 256 px training
fields exactly: 2x2 or 1x1)."""
REGRESSOR_OUTPUTS = ("defocus_px", "astig_oblique_px", "astig_vertical_px", "spherical_px")
"""Regressed pupil coefficients, in pixels of blur diameter (see ``autofocus.scorer``)."""


def _block(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class _Trunk(nn.Module):
    """Patchify stem (8x8, stride 4) + stride-2 3x3 blocks + mean/max pooling."""

    def __init__(self, widths: tuple[int, ...], depths: tuple[int, ...] | None = None) -> None:
        super().__init__()
        depths = tuple(depths) if depths is not None else (1,) * (len(widths) - 1)
        if len(depths) != len(widths) - 1 or min(depths, default=1) < 1:
            raise ValueError("depths: one count >= 1 per block (len(widths) - 1 of them)")
        self.depths = depths
        self.stem = nn.Sequential(
            nn.Conv2d(1, widths[0], 8, stride=4, padding=2, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        )
        blocks: list[nn.Module] = []
        for (a, b), d in zip(itertools.pairwise(widths), depths, strict=True):
            blocks.append(_block(a, b, 2))
            blocks.extend(_block(b, b, 1) for _ in range(d - 1))
        self.blocks = nn.Sequential(*blocks)
        self.out_features = 2 * widths[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.blocks(self.stem(x))
        return torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1)


class RadialSpectrum(nn.Module):
    """Log radial power spectrum of each (normalised) patch, in ``bins`` rings.

    A defocused point spread function is close to a disc, whose transfer function has
    rings of zeros at spatial frequencies ~1.22/D, 2.23/D, ... for a blur diameter D.
    Those rings are the same for every specimen, so the ring-averaged log spectrum of a
    patch shows the blur directly, over the whole patch; the convolutional trunk's
    receptive field (32 px for the classifier) is smaller than the blur of the upper
    levels.  The patch is Hann-windowed first so that its borders do not leak power.
    Rings are linear in frequency, from 1/size (the DC term is dropped) to Nyquist.
    """

    def __init__(self, size: int, bins: int) -> None:
        super().__init__()
        if bins < 2:
            raise ValueError("spectral bins must be >= 2")
        self.size, self.bins = size, bins
        w = torch.hann_window(size, periodic=False, dtype=torch.float32)
        self.register_buffer("window", w[:, None] * w[None, :], persistent=False)
        fy = torch.fft.fftfreq(size)[:, None]
        fx = torch.fft.rfftfreq(size)[None, :]
        r = torch.sqrt(fx**2 + fy**2).reshape(-1)
        lo, hi = 1.0 / size, 0.5
        idx = torch.floor((r - lo) / (hi - lo) * bins).long()
        keep = (r >= lo) & (r <= hi)
        idx = idx.clamp(0, bins - 1)
        # an rfft column 0 < fx < 1/2 stands for itself and its mirror -fx: weight 2,
        # so that each ring averages the full plane (exactly invariant to 90 degrees)
        col = torch.full((size, size // 2 + 1), 2.0)
        col[:, 0] = 1.0
        if size % 2 == 0:
            col[:, -1] = 1.0
        m = torch.zeros(r.numel(), bins)
        rows = torch.nonzero(keep).squeeze(1)
        m[rows, idx[keep]] = col.reshape(-1)[rows]
        m /= m.sum(0, keepdim=True).clamp_min(1.0)
        self.register_buffer("rings", m, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = torch.fft.rfft2(x[:, 0] * self.window)
        power = (f.real**2 + f.imag**2).reshape(x.shape[0], -1)
        return torch.log(power @ self.rings + 1e-6)


def _spectral_branch(size: int, bins: int) -> nn.Sequential:
    """Radial spectrum -> batch norm -> Linear - ReLU (2 x bins features)."""
    return nn.Sequential(
        RadialSpectrum(size, bins),
        nn.BatchNorm1d(bins),
        nn.Linear(bins, 2 * bins),
        nn.ReLU(inplace=True),
    )


def _head(in_features: int, hidden: int, out_features: int) -> nn.Sequential:
    """Linear - ReLU - Linear on the trunk's pooled features."""
    return nn.Sequential(
        nn.Linear(in_features, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out_features)
    )


class _PatchNet(nn.Module):
    """Trunk (+ optional spectrum branch) -> head; the two models differ in size only."""

    def __init__(
        self,
        patch: int,
        n_outputs: int,
        widths: tuple[int, ...],
        hidden: int,
        depths: tuple[int, ...] | None,
        spectral_bins: int,
        optics_features: int = 0,
        input_asinh: bool = False,
    ) -> None:
        super().__init__()
        self.input_asinh = bool(input_asinh)
        if optics_features not in (0, N_OPTICS_FEATURES):
            raise ValueError(f"optics_features must be 0 or {N_OPTICS_FEATURES}")
        self.widths = tuple(widths)
        self.spectral_bins = int(spectral_bins)
        self.optics_features = int(optics_features)
        self.trunk = _Trunk(self.widths, depths)
        self.depths = self.trunk.depths
        self.spectrum = _spectral_branch(patch, spectral_bins) if spectral_bins else None
        n_features = self.trunk.out_features + (2 * spectral_bins if spectral_bins else 0)
        self.head = _head(n_features + self.optics_features, hidden, n_outputs)

    def forward(self, x: torch.Tensor, optics: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` (B, 1, s, s) normalised patches; ``optics`` (B, :data:`N_OPTICS_FEATURES`)
        rows of :func:`optics_features` for a model built with them (None: unknown
        optics, zeros); a model built without them refuses it."""
        # asinh compresses the normalised patch's bright outliers (linear below about
        # 1 SD, logarithmic above), so faint structure beside a bright spot reaches the trunk;
        # the spectrum branch keeps the linear patch, whose transfer-function zeros it reads
        h = self.trunk(torch.asinh(x) if self.input_asinh else x)
        if self.spectrum is not None:
            h = torch.cat([h, self.spectrum(x)], dim=1)
        if self.optics_features:
            if optics is None:
                optics = h.new_zeros((h.shape[0], self.optics_features))
            h = torch.cat([h, optics.to(h.dtype)], dim=1)
        elif optics is not None:
            raise ValueError("this model was built without optics features")
        return self.head(h)


class DefocusClassifier(_PatchNet):
    """84x84 normalised patch -> logits over the 11 ordered defocus levels.

    ``optics_features=N_OPTICS_FEATURES`` also feeds the head the frame's optics
    (:func:`optics_features`; zeros when they are not known).
    """

    def __init__(
        self,
        widths: tuple[int, ...] = (24, 48, 96),
        hidden: int = 96,
        depths: tuple[int, ...] | None = None,
        spectral_bins: int = 0,
        optics_features: int = 0,
        input_asinh: bool = False,
    ) -> None:
        super().__init__(
            CLASSIFIER_PATCH,
            N_LEVELS,
            widths,
            hidden,
            depths,
            spectral_bins,
            optics_features,
            input_asinh,
        )


class ZernikeRegressor(_PatchNet):
    """``patch`` x ``patch`` normalised patch (128 px: DeepFocus's size) -> (4 pupil
    coefficients in px, texture logit).

    ``optics_features=N_OPTICS_FEATURES``: the head is also told the frame's optics, as
    the classifier's can be.  ``patch`` is one of :data:`REGRESSOR_PATCHES`; the trunk
    pools over the whole patch, so only the spectral branch's rings depend on it.
    """

    def __init__(
        self,
        widths: tuple[int, ...] = (16, 32, 64, 96),
        hidden: int = 96,
        depths: tuple[int, ...] | None = None,
        spectral_bins: int = 0,
        optics_features: int = 0,
        patch: int = REGRESSOR_PATCH,
        input_asinh: bool = False,
    ) -> None:
        n_out = len(REGRESSOR_OUTPUTS) + 1
        if patch not in REGRESSOR_PATCHES:
            raise ValueError(f"patch must be one of {REGRESSOR_PATCHES}, got {patch}")
        super().__init__(
            patch, n_out, widths, hidden, depths, spectral_bins, optics_features, input_asinh
        )
        self.patch = int(patch)


class YangNet(nn.Module):
    """Yang et al. (2018) architecture, for the speed baseline only (never trained here).

    conv 5x5x32 -> maxpool 2 -> conv 5x5x64 -> maxpool 2 -> fc 1024 -> dropout -> fc 11.
    """

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.fc = nn.Sequential(
            nn.Flatten(),
            nn.Linear(64 * 21 * 21, 1024),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.Linear(1024, N_LEVELS),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


N_OPTICS_FEATURES = 4


def optics_features(objective: Objective | None) -> np.ndarray:
    """What a model (classifier or regressor) built with optics features is told of the
    frame's objective.

    ``[known, ln(spot px), NA, NA / n]`` with the spot ``lambda / (2 NA)`` in sample
    pixels (:attr:`Objective.spot_px`, binning included; the in-focus resolution in
    pixels), float32; all zeros when the objective is unknown (the training shows 20 %
    of its patches that way, so the model also works without it).  The shipped recipes
    cover spots of 0.71-2.0 px and NA 0.2-1.35 (n 1.0 below NA 0.95, 1.33 to 1.2, 1.515
    above); optics outside that are extrapolation.
    """
    from autofocus.errors import InvalidInputError

    if objective is None:
        return np.zeros(N_OPTICS_FEATURES, np.float32)
    try:
        spot_px = objective.spot_px
        ln_spot = math.log(spot_px)
    except (ArithmeticError, ValueError):
        ln_spot = math.nan
    if not math.isfinite(ln_spot):
        raise InvalidInputError(
            f"objective {objective.name!r}: its optics give no finite spot size"
        )
    return np.array(
        [1.0, ln_spot, objective.na, objective.na / objective.immersion_index], np.float32
    )


def fuse_for_inference(net: nn.Module) -> nn.Module:
    """An eval-mode copy of ``net`` with each Conv2d -> BatchNorm2d pair folded into one
    convolution (with bias), so that inference makes one pass less over every feature
    map.  Same outputs to float32 rounding (tests/autofocus/test_models.py); for
    inference only: the copy is never trained or saved (the card's sha256 is of the
    unfolded state_dict).
    """
    import copy

    from torch.nn.utils.fusion import fuse_conv_bn_eval

    out = copy.deepcopy(net).eval()
    for seq in [m for m in out.modules() if isinstance(m, nn.Sequential)]:
        for i in range(len(seq) - 1):
            conv, bn = seq[i], seq[i + 1]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                seq[i] = fuse_conv_bn_eval(conv, bn)
                seq[i + 1] = nn.Identity()
    for p in out.parameters():
        p.requires_grad_(False)
    return out


def rps_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Ranked probability score, mean over the batch.

    ``RPS = sum_k (CDF_p(k) - CDF_y(k))^2`` with ``p = softmax(logits)`` and ``y`` the
    one-hot (or soft) target distribution over ordered levels.  ``target`` may be class
    indices ``(B,)`` or distributions ``(B, K)``.
    """
    p = torch.softmax(logits, dim=1)
    if target.dim() == 1:
        target = torch.nn.functional.one_hot(target.long(), p.shape[1]).to(p.dtype)
    return ((p.cumsum(1) - target.cumsum(1)) ** 2).sum(1).mean()


def certainty(p: np.ndarray, axis: int = -1) -> np.ndarray:
    """Yang et al.'s certainty ``1 - H(p) / ln K`` (1: one-hot, 0: uniform)."""
    p = np.asarray(p, dtype=np.float64)
    k = p.shape[axis]
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -np.sum(np.where(p > 0, p * np.log(p), 0.0), axis=axis)
    return 1.0 - h / math.log(k)


def median_level(p: np.ndarray) -> int:
    """Median of an ordered level distribution: the smallest k with ``CDF(k) >= 1/2``.

    The image's predicted level.  The classifier is trained on the CDF (RPS loss), and
    the median is the point estimate with the least expected |error| in levels; on
    validation renders (seeds apart from the held-out set) it was within one level more
    often than the argmax for the general and every preset's classifier (+1.3 to +4.6
    points) at a cost of up to 2.8 points of exact accuracy.
    """
    cdf = np.cumsum(np.asarray(p, dtype=np.float64))
    return int(min(np.searchsorted(cdf, 0.5 * cdf[-1] * (1 - 1e-12)), cdf.size - 1))
