"""Shipped model weights: a state_dict (``NAME.pt``) plus a JSON model card (``NAME.json``)
inside the package, loaded with ``importlib.resources``, checked against the card's
sha256 and read with ``torch.load(weights_only=True)`` and ``strict=True``.

A classifier may also be trained for one objective preset (``autofocus train classifier
--objective 20X``); it is stored as ``classifier-20X.pt/.json`` beside the general one,
and :class:`autofocus.scorer.LocalScorer` uses it for frames taken with that preset.
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from autofocus.errors import ModelWeightsError, UnknownNameError

__all__ = [
    "MODEL_NAMES",
    "ModelCard",
    "has_model",
    "load_card",
    "load_model",
    "model_stem",
    "sha256_file",
]

MODEL_NAMES = ("classifier", "regressor")


class ModelCard(BaseModel):
    """What a shipped model is and how it was made (JSON beside the weights)."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    name: Literal["classifier", "regressor"]
    version: str
    architecture: dict[str, Any]
    input_size: int = Field(gt=0)
    normalisation: str
    outputs: list[str]
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    n_parameters: int
    training: dict[str, Any]
    data: dict[str, Any]
    evaluation: dict[str, Any] = Field(default_factory=dict)

    @property
    def model_id(self) -> str:
        """Stable identifier: name, version and the first 12 hex digits of the checksum."""
        return f"{self.name}-{self.version}-{self.sha256[:12]}"

    @model_validator(mode="after")
    def _known_blur_ray(self) -> ModelCard:
        from autofocus.optics import check_blur_ray

        check_blur_ray(self.blur_ray)  # a ValueError: load_card reports the card
        return self

    @property
    def blur_ray(self) -> str:
        """Regressor: the blur diameter its b reads (``marginal`` for cards before the
        choice was recorded; see :func:`autofocus.optics.blur_px_per_um`)."""
        domain = self.data.get("domain")
        return domain.get("blur_ray", "marginal") if isinstance(domain, dict) else "marginal"


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def model_stem(name: str, objective: str | None = None) -> str:
    """File stem of a model: ``classifier``, ``regressor`` or ``classifier-<preset>``."""
    return name if objective is None else f"{name}-{objective}"


def _weights_dir() -> Path:
    return Path(str(resources.files("autofocus") / "weights"))


def _paths(name: str, weights_dir: Path | None, objective: str | None = None) -> tuple[Path, Path]:
    if name not in MODEL_NAMES:
        raise UnknownNameError(f"unknown model {name!r}; known: {', '.join(MODEL_NAMES)}")
    d = weights_dir or _weights_dir()
    stem = model_stem(name, objective)
    return d / f"{stem}.pt", d / f"{stem}.json"


def has_model(
    name: str, weights_dir: str | Path | None = None, objective: str | None = None
) -> bool:
    """Whether a model card exists (e.g. a classifier trained for one objective preset)."""
    _, card_path = _paths(name, Path(weights_dir) if weights_dir else None, objective)
    return card_path.is_file()


def load_card(
    name: str, weights_dir: Path | None = None, objective: str | None = None
) -> ModelCard:
    _, card_path = _paths(name, weights_dir, objective)
    if not card_path.is_file():
        raise ModelWeightsError(
            f"model card {card_path} is missing; reinstall the package or retrain with "
            f"'autofocus train {name}'"
        )
    try:
        card = ModelCard.model_validate(json.loads(card_path.read_text("utf-8")))
    except (json.JSONDecodeError, ValidationError) as exc:
        raise ModelWeightsError(f"model card {card_path} is invalid: {exc}") from exc
    if card.data.get("objective") != objective:
        raise ModelWeightsError(
            f"model card {card_path} was trained for objective "
            f"{card.data.get('objective')!r}, not {objective!r}"
        )
    return card


def build_model(card: ModelCard) -> Any:
    from autofocus import models

    arch = dict(card.architecture)
    cls_name = arch.pop("class")
    cls = {
        "DefocusClassifier": models.DefocusClassifier,
        "ZernikeRegressor": models.ZernikeRegressor,
    }.get(cls_name)
    if cls is None:
        raise ModelWeightsError(f"model card names an unknown architecture {cls_name!r}")
    for key in ("widths", "depths"):
        if key in arch:
            arch[key] = tuple(arch[key])
    size = (
        models.CLASSIFIER_PATCH
        if cls is models.DefocusClassifier
        else arch.get("patch", models.REGRESSOR_PATCH)
    )
    if card.input_size != size:
        raise ModelWeightsError(
            f"model card input_size {card.input_size} does not match its architecture's "
            f"{size} px patch"
        )
    try:
        return cls(**arch)
    except (TypeError, ValueError) as e:
        raise ModelWeightsError(
            f"model card architecture {card.architecture} is invalid: {e}"
        ) from e


@lru_cache(maxsize=16)
def _load_cached(
    name: str, weights_dir: str | None, objective: str | None
) -> tuple[Any, ModelCard]:
    import torch

    wd = Path(weights_dir) if weights_dir else None
    card = load_card(name, wd, objective)
    pt, _ = _paths(name, wd, objective)
    if not pt.is_file():
        raise ModelWeightsError(f"weights file {pt} is missing")
    digest = sha256_file(pt)
    if digest != card.sha256:
        raise ModelWeightsError(
            f"weights file {pt} is corrupted: sha256 {digest[:16]}... does not match the "
            f"model card's {card.sha256[:16]}..."
        )
    try:
        state = torch.load(pt, map_location="cpu", weights_only=True)
        model = build_model(card)
        model.load_state_dict(state, strict=True)
    except ModelWeightsError:
        raise
    except Exception as exc:  # torch raises several kinds for a bad file
        raise ModelWeightsError(f"could not load weights {pt}: {exc}") from exc
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, card


def load_model(
    name: str, weights_dir: str | Path | None = None, objective: str | None = None
) -> tuple[Any, ModelCard]:
    """Return ``(model in eval mode, card)``; cached per process.  Raises ModelWeightsError.

    ``objective``: the preset a classifier was trained for (``classifier-<preset>``);
    its card must say so.
    """
    return _load_cached(name, str(weights_dir) if weights_dir else None, objective)
