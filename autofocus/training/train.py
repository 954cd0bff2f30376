"""Training recipes for the classifier and the regressor (``autofocus train ...``).

Both recipes: render a fixed, seeded training set of fields with the simulator
(domain randomised, see :mod:`autofocus.training.data`), cut patches, and train with
AdamW and a one-cycle learning rate on normalised patches (the same
:func:`autofocus.tiling.normalise_patches` as inference, in its ``exact`` float64
rounding, which inference matches to ~1 float32 ulp), with random flips and 90
degree rotations (aberration targets transformed accordingly).  A held-out set
(disjoint seeds, plus specimen types never seen in training) is evaluated at the end,
and the state_dict and a model card with the exact recipe are written atomically.
"""

from __future__ import annotations

import json
import logging
import math
import shlex
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from autofocus.checks import finite_float
from autofocus.errors import InvalidInputError
from autofocus.io import atomic_path, atomic_write_text, check_writable
from autofocus.optics import check_blur_ray
from autofocus.tiling import normalise_patches
from autofocus.training.data import (
    EVAL_SEED_OFFSET,
    HELD_OUT_SPECIMENS,
    TRAIN_SPECIMENS,
    DomainConfig,
    check_condenser_fill,
)
from autofocus.training.dataset import PatchSet, build_patchset, n_patches_per_field

log = logging.getLogger(__name__)

__all__ = ["Recipe", "train"]

MODEL_VERSION = "1.0"
OPTICS_HIDDEN_FRACTION = 0.2


@dataclass(frozen=True)
class Recipe:
    """Everything that determines a trained model (recorded in its card)."""

    model: Literal["classifier", "regressor"]
    seed: int = 0
    n_fields: int = 6000
    n_eval_fields: int = 1200
    epochs: int = 12
    batch_size: int = 256
    lr: float = 4e-3
    weight_decay: float = 1e-4
    threads: int = 2
    workers: int = 2
    widths: tuple[int, ...] | None = None
    """Channel widths of the trunk (stem, then one stride-2 block each); None: the default."""
    hidden: int | None = None
    """Units of the head's hidden layer; None: the default."""
    depths: tuple[int, ...] | None = None
    """3x3 convolutions per block (the first strided, the rest stride 1); None: one each."""
    spectral_bins: int = 0
    """Rings of the radial log spectrum fed beside the trunk (0: none; see models)."""
    specimens: tuple[str, ...] | None = None
    """Specimen types rendered for training; None: ``TRAIN_SPECIMENS``.  The held-out
    evaluation set is always ``TRAIN_SPECIMENS + HELD_OUT_SPECIMENS``."""
    max_blur_px: float | None = None
    """Regressor only: the top of the blur range of the fields not drawn in [0, 30] px
    (see ``near_share``); None: ``DomainConfig.max_blur_px``."""
    near_share: float | None = None
    """Regressor only: share of the fields drawn in [0, 30] px (the rest up to
    ``max_blur_px``); None: ``DomainConfig.near_share`` (0.5)."""
    blur_ray: str | None = None
    """Regressor only: ``marginal`` or ``mean``, the blur diameter b is trained to read
    (see ``DomainConfig.blur_ray``); None: ``DomainConfig.blur_ray``."""
    condenser_fill: tuple[float, float] | None = None
    """Brightfield fields under Koehler illumination, condenser NA = fill x NA with fill
    uniform in this range; None: a point source (see ``DomainConfig.condenser_fill``)."""
    na_range: tuple[float, float] | None = None
    """NA drawn for each field (random optics); None: ``DomainConfig.na_range``."""
    sampling_range: tuple[float, float] | None = None
    """Pixel size as a multiple of lambda / (2 NA), drawn for each field; None:
    ``DomainConfig.sampling_range`` (0.5-1.4: in-focus spots of 0.71-2 px)."""
    immersion: str | None = None
    """``by_na`` or ``mixed`` (see ``DomainConfig.immersion``); None: ``by_na``."""
    optics_input: bool = False
    """The head is also told the frame's optics
    (:func:`autofocus.models.optics_features`); each training batch hides them (zeros)
    from ``OPTICS_HIDDEN_FRACTION`` of its patches, so the model also works without."""
    input_asinh: bool = False
    """The trunk reads ``asinh`` of the normalised patch (see :class:`autofocus.models.
    _PatchNet`): bright spots compressed, so faint structure beside them counts."""
    patch_px: int | None = None
    """Regressor only: patch size, 128 (DeepFocus's; 2x2 patches per 256 px field) or
    256 (the whole field: a wider view for large blur, whose transfer function's first
    zero ring, at about 1.22 / D cycles per px, a 128 px window barely resolves for D
    beyond 60 px); None: 128."""
    objective: str | None = None
    """Classifier only: an objective preset's name.  Every training and held-out field is
    seen through that objective, and the model is written as ``classifier-<name>`` for
    the scorer to use when it is told that objective (see :mod:`autofocus.registry`)."""


def _augment(x: np.ndarray, aberr: np.ndarray | None, rng: np.random.Generator):
    """Random flips / 90 degree rotation of a batch; astigmatism targets follow.

    Z5 ~ sin(2 theta) changes sign under a mirror and under a 90 degree rotation;
    Z6 ~ cos(2 theta) changes sign under a 90 degree rotation only.
    """
    a = None if aberr is None else aberr.copy()
    if rng.random() < 0.5:
        x = x[:, :, ::-1]
        if a is not None:
            a[:, 0] *= -1
    if rng.random() < 0.5:
        x = x[:, ::-1, :]
        if a is not None:
            a[:, 0] *= -1
    if rng.random() < 0.5:
        x = np.swapaxes(x, 1, 2)[:, :, ::-1]  # rot90
        if a is not None:
            a[:, 0] *= -1
            a[:, 1] *= -1
    return np.ascontiguousarray(x), a


def _uniform_target(n: int, k: int) -> np.ndarray:
    return np.full((n, k), 1.0 / k, dtype=np.float32)


def _targets_classifier(ps: PatchSet, idx: np.ndarray) -> np.ndarray:
    """One-hot level for textured patches, uniform for empty ones (teaches low certainty)."""
    from autofocus.optics import N_LEVELS

    t = _uniform_target(idx.size, N_LEVELS)
    tex = ps.texture[idx]
    t[tex] = 0.0
    t[np.flatnonzero(tex), ps.cls[idx][tex]] = 1.0
    return t


def _make_model(
    kind: str,
    widths: tuple[int, ...] | None = None,
    hidden: int | None = None,
    depths: tuple[int, ...] | None = None,
    spectral_bins: int = 0,
    optics_input: bool = False,
    patch_px: int | None = None,
    input_asinh: bool = False,
):
    from autofocus.models import DefocusClassifier, ZernikeRegressor

    kwargs: dict[str, Any] = {}
    if input_asinh:
        kwargs["input_asinh"] = True
    if patch_px is not None:
        kwargs["patch"] = patch_px
    if depths is not None:
        kwargs["depths"] = tuple(depths)
    if widths is not None:
        kwargs["widths"] = tuple(widths)
    if hidden is not None:
        kwargs["hidden"] = hidden
    if spectral_bins:
        kwargs["spectral_bins"] = spectral_bins
    if optics_input:
        from autofocus.models import N_OPTICS_FEATURES

        kwargs["optics_features"] = N_OPTICS_FEATURES
    return DefocusClassifier(**kwargs) if kind == "classifier" else ZernikeRegressor(**kwargs)


def _loss(kind: str, out, batch: dict[str, Any]):
    import torch
    import torch.nn.functional as F

    from autofocus.models import rps_loss

    if kind == "classifier":
        return rps_loss(out, batch["target"])
    tex = batch["texture"]
    loss_t = F.binary_cross_entropy_with_logits(out[:, -1], tex)
    m = tex > 0.5
    if m.any():
        loss_b = F.smooth_l1_loss(out[m, 0], batch["blur"][m], beta=2.0)
        loss_a = F.smooth_l1_loss(out[m, 1:4], batch["aberr"][m], beta=2.0)
    else:
        loss_b = loss_a = torch.zeros((), dtype=out.dtype)
    return loss_b + 0.1 * loss_a + loss_t


def _batches(
    ps: PatchSet,
    kind: str,
    bs: int,
    rng: np.random.Generator,
    augment: bool,
    *,
    optics: bool = False,
):
    import torch

    order = rng.permutation(len(ps))
    for s in range(0, order.size - bs + 1, bs):
        idx = order[s : s + bs]
        x, _ = normalise_patches(ps.patches[idx], exact=True)
        aberr = ps.aberr_px[idx]
        if augment:
            x, aberr = _augment(x, aberr, rng)
        b: dict[str, Any] = {"x": torch.from_numpy(x)[:, None]}
        if optics:
            o = ps.optics[idx].copy()
            o[rng.random(idx.size) < OPTICS_HIDDEN_FRACTION] = 0.0
            b["optics"] = torch.from_numpy(o)
        if kind == "classifier":
            b["target"] = torch.from_numpy(_targets_classifier(ps, idx))
        else:
            b["texture"] = torch.from_numpy(ps.texture[idx].astype(np.float32))
            b["blur"] = torch.from_numpy(ps.blur_px[idx])
            b["aberr"] = torch.from_numpy(aberr.astype(np.float32))
        yield b


def predict(model, patches: np.ndarray, bs: int = 512, optics: np.ndarray | None = None):
    """Raw outputs for raw patches (``optics``: rows of optics features, for a model
    built with them)."""
    import torch

    outs = []
    model.eval()
    with torch.inference_mode():
        for s in range(0, patches.shape[0], bs):
            x, _ = normalise_patches(patches[s : s + bs], exact=True)
            o = None if optics is None else torch.from_numpy(optics[s : s + bs])
            outs.append(model(torch.from_numpy(x)[:, None], o).numpy())
    return np.concatenate(outs)


def evaluate_patches(kind: str, model, ps: PatchSet) -> dict[str, Any]:
    """Patch-level figures on a held-out set (textured patches; per specimen too)."""
    optics = ps.optics if getattr(model, "optics_features", 0) else None
    out = predict(model, ps.patches, optics=optics)
    res: dict[str, Any] = {"n_patches": len(ps), "n_textured": int(ps.texture.sum())}
    tex = ps.texture
    if kind == "classifier":
        from autofocus.models import certainty

        p = np.exp(out - out.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        pred = p.argmax(1)
        err = np.abs(pred - ps.cls)
        res["exact_accuracy"] = float((err[tex] == 0).mean())
        res["within_one_accuracy"] = float((err[tex] <= 1).mean())
        cert = certainty(p)
        res["mean_certainty_textured"] = float(cert[tex].mean())
        res["mean_certainty_empty"] = float(cert[~tex].mean()) if (~tex).any() else None
        res["per_specimen_within_one"] = {
            str(s): float((err[tex & (ps.specimen == s)] <= 1).mean())
            for s in np.unique(ps.specimen[tex])
        }
    else:
        prob = 1 / (1 + np.exp(-out[:, -1]))
        res["texture_accuracy"] = float(((prob >= 0.5) == tex).mean())
        e = out[tex, 0] - ps.blur_px[tex]
        res["blur_mae_px"] = float(np.abs(e).mean())
        res["blur_mae_px_below_30"] = float(np.abs(e[ps.blur_px[tex] < 30]).mean())
        res["per_specimen_blur_mae_px"] = {
            str(s): float(np.abs(out[m, 0] - ps.blur_px[m]).mean())
            for s in np.unique(ps.specimen[tex])
            for m in [tex & (ps.specimen == s)]
        }
    return res


def train(recipe: Recipe, out_dir: Path, *, command: str | None = None) -> dict[str, Any]:
    """Run a recipe; writes ``<model>.pt`` and ``<model>.json`` into ``out_dir``."""
    import torch

    from autofocus.models import CLASSIFIER_PATCH, REGRESSOR_PATCH, REGRESSOR_PATCHES
    from autofocus.optics import get_objective
    from autofocus.registry import model_stem, sha256_file

    torch.manual_seed(recipe.seed)
    torch.set_num_threads(recipe.threads)
    kind = recipe.model
    patch = CLASSIFIER_PATCH if kind == "classifier" else REGRESSOR_PATCH
    if recipe.patch_px is not None:
        if kind != "regressor":
            raise InvalidInputError("patch_px applies to the regressor only")
        if recipe.patch_px not in REGRESSOR_PATCHES:
            raise InvalidInputError(
                f"patch_px must be one of {', '.join(map(str, REGRESSOR_PATCHES))}, "
                f"got {recipe.patch_px!r}"
            )
        patch = int(recipe.patch_px)
    # fields tile exactly into patches: 3x3 of 84 px; 2x2 of 128 px (or one of 256)
    train_specimens = _check_specimens(recipe.specimens)
    if recipe.objective is not None and kind != "classifier":
        raise InvalidInputError("objective applies to the classifier only")
    cfg = DomainConfig(
        defocus=kind,
        field_px=3 * patch if kind == "classifier" else 2 * REGRESSOR_PATCH,
        specimens=train_specimens,
        # the preset's own spelling ("20x" -> "20X"), or a clear error for an unknown one
        objective=None if recipe.objective is None else get_objective(recipe.objective).name,
    )
    cfg = replace(cfg, condenser_fill=check_condenser_fill(recipe.condenser_fill))
    if cfg.condenser_fill is not None and kind != "classifier":
        raise InvalidInputError(
            "condenser_fill applies to the classifier only (the regressor's b is the "
            "objective's blur)"
        )
    if recipe.max_blur_px is not None:
        if kind != "regressor":
            raise InvalidInputError("max_blur_px applies to the regressor only")
        if not (30.0 < recipe.max_blur_px <= 2 * REGRESSOR_PATCH):
            raise InvalidInputError(
                f"max_blur_px must be in (30, {2 * REGRESSOR_PATCH}] px (the training field), "
                f"got {recipe.max_blur_px}"
            )
        cfg = replace(cfg, max_blur_px=float(recipe.max_blur_px))
    if recipe.near_share is not None:
        if kind != "regressor":
            raise InvalidInputError("near_share applies to the regressor only")
        # a number here; DomainConfig checks its range
        cfg = replace(cfg, near_share=finite_float(recipe.near_share, "near_share"))
    optics_domain = {
        k: getattr(recipe, k)
        for k in ("na_range", "sampling_range", "immersion")
        if getattr(recipe, k) is not None
    }
    varied = [*optics_domain, *(["optics_input"] if recipe.optics_input else [])]
    if varied and recipe.objective is not None:
        raise InvalidInputError(
            f"{', '.join(varied)} need varied optics; a preset's classifier sees only its own"
        )
    cfg = replace(cfg, **optics_domain)  # DomainConfig checks them
    if recipe.blur_ray is not None:
        if kind != "regressor":
            raise InvalidInputError("blur_ray applies to the regressor only")
        cfg = replace(cfg, blur_ray=check_blur_ray(recipe.blur_ray))
    per_field = n_patches_per_field(cfg, patch)
    min_fields = math.ceil(recipe.batch_size / per_field)
    if recipe.n_fields < min_fields:
        raise InvalidInputError(
            f"n_fields = {recipe.n_fields} gives less than one batch of {recipe.batch_size} "
            f"patches ({per_field} per field); use at least {min_fields}"
        )
    if recipe.n_eval_fields < 1 or recipe.epochs < 1:
        raise InvalidInputError("n_eval_fields and epochs must be >= 1")
    if recipe.widths is not None and (
        len(recipe.widths) < 2 or any(int(w) < 1 for w in recipe.widths)
    ):
        raise InvalidInputError("widths needs at least two positive channel counts")
    if recipe.hidden is not None and recipe.hidden < 1:
        raise InvalidInputError("hidden must be >= 1")
    if recipe.depths is not None:
        n_blocks = len(recipe.widths or _make_model(kind).widths) - 1
        if len(recipe.depths) != n_blocks or any(int(d) < 1 for d in recipe.depths):
            raise InvalidInputError(f"depths needs {n_blocks} counts >= 1, one per block")
    if recipe.spectral_bins and not 2 <= recipe.spectral_bins <= patch // 2:
        raise InvalidInputError(f"spectral_bins must be 0 or 2..{patch // 2}")
    check_writable(out_dir, "dir")
    t0 = time.time()
    train_set = build_patchset(recipe.n_fields, recipe.seed, cfg, patch, workers=recipe.workers)
    eval_cfg = replace(cfg, specimens=TRAIN_SPECIMENS + HELD_OUT_SPECIMENS)
    eval_set = build_patchset(
        recipe.n_eval_fields,
        EVAL_SEED_OFFSET + recipe.seed,
        eval_cfg,
        patch,
        workers=recipe.workers,
    )
    t_data = time.time() - t0
    log.info("rendered %d train / %d eval patches in %.0f s", len(train_set), len(eval_set), t_data)

    model = _make_model(
        kind,
        recipe.widths,
        recipe.hidden,
        recipe.depths,
        recipe.spectral_bins,
        recipe.optics_input,
        recipe.patch_px,
        recipe.input_asinh,
    )
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    steps_per_epoch = len(train_set) // recipe.batch_size
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=recipe.lr, total_steps=recipe.epochs * steps_per_epoch, pct_start=0.15
    )
    rng = np.random.default_rng(recipe.seed)
    history = []
    for epoch in range(recipe.epochs):
        model.train()
        tot, n = 0.0, 0
        batches = _batches(
            train_set,
            kind,
            recipe.batch_size,
            rng,
            augment=True,
            optics=recipe.optics_input,
        )
        for b in batches:
            out = model(b["x"], b.get("optics"))
            loss = _loss(kind, out, b)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            tot += float(loss.detach())
            n += 1
        history.append(round(tot / max(n, 1), 5))
        log.info(
            "epoch %d/%d loss %.4f (%.0f s)",
            epoch + 1,
            recipe.epochs,
            history[-1],
            time.time() - t0,
        )
    model.eval()
    evaluation = evaluate_patches(kind, model, eval_set)
    duration = time.time() - t0

    out_dir.mkdir(parents=True, exist_ok=True)
    stem = model_stem(kind, cfg.objective)
    pt = out_dir / f"{stem}.pt"
    with atomic_path(pt) as tmp:
        torch.save(model.state_dict(), tmp)
    arch = {"class": type(model).__name__, "widths": list(model.widths)}
    arch["hidden"] = model.head[0].out_features
    arch["depths"] = list(model.depths)
    if model.spectral_bins:
        arch["spectral_bins"] = model.spectral_bins
    if model.optics_features:
        arch["optics_features"] = model.optics_features
    if kind == "regressor" and patch != REGRESSOR_PATCH:
        arch["patch"] = patch
    if model.input_asinh:
        arch["input_asinh"] = True
    from autofocus.models import REGRESSOR_OUTPUTS
    from autofocus.optics import N_LEVELS

    card = {
        "name": kind,
        "version": MODEL_VERSION,
        "architecture": arch,
        "input_size": patch,
        "normalisation": "per patch: (x - mean) / std (autofocus.tiling.normalise_patches)",
        "outputs": (
            [f"logit_level_{k}" for k in range(N_LEVELS)]
            if kind == "classifier"
            else [*REGRESSOR_OUTPUTS, "texture_logit"]
        ),
        "sha256": sha256_file(pt),
        "n_parameters": int(sum(p.numel() for p in model.parameters())),
        "training": {
            "command": command or "autofocus train " + kind,
            "recipe": asdict(recipe),
            "duration_s": round(duration, 1),
            "data_render_s": round(t_data, 1),
            "loss_per_epoch": history,
            "torch": torch.__version__,
            "device": "cpu",
        },
        "data": {
            "generator": "autofocus.training.data.render_field_sample",
            "domain": {k: v for k, v in asdict(cfg).items()},
            "train_specimens": list(train_specimens),
            "held_out_specimens": list(HELD_OUT_SPECIMENS),
            "train_seed": recipe.seed,
            "eval_seed": EVAL_SEED_OFFSET + recipe.seed,
            "n_train_patches": len(train_set),
            "n_eval_patches": len(eval_set),
            "objective": cfg.objective,
        },
        "evaluation": {"held_out_patches": evaluation},
    }
    atomic_write_text(out_dir / f"{stem}.json", json.dumps(card, indent=2) + "\n")
    return card


def _check_specimens(names: tuple[str, ...] | None) -> tuple[str, ...]:
    """The training specimen list: known names, no held-out or empty type, no repeats."""
    from simulators.specimens import SPECIMEN_NAMES

    if names is None:
        return TRAIN_SPECIMENS
    names = tuple(names)
    held = sorted(set(names) & set(HELD_OUT_SPECIMENS))
    if held:
        raise InvalidInputError(f"{held} are held out for evaluation and cannot be trained on")
    allowed = [n for n in SPECIMEN_NAMES if n != "empty" and n not in HELD_OUT_SPECIMENS]
    if not names or any(n not in allowed for n in names):
        raise InvalidInputError(
            f"specimens must be names from {', '.join(allowed)}; got {list(names)}"
        )
    if len(set(names)) != len(names):
        raise InvalidInputError(f"specimens repeated: {list(names)}")
    return names


def default_command(argv: list[str] | None = None) -> str:
    return "autofocus " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))


def _fmt_eta(seconds: float) -> str:
    return f"{math.floor(seconds / 60)} min {seconds % 60:.0f} s"
