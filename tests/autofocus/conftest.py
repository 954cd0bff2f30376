"""Fixtures for scorer tests: a tiny, randomly initialised model pair in a weights folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


def _save_tiny(folder: Path, stem: str, model, size: int, data: dict) -> None:
    """Write ``model``'s state_dict and a model card as ``<stem>.pt/.json``."""
    import torch

    from autofocus.registry import sha256_file

    model.eval()
    pt = folder / f"{stem}.pt"
    torch.save(model.state_dict(), pt)
    card = {
        "name": stem.split("-")[0],
        "version": "test",
        "architecture": {
            "class": type(model).__name__,
            "widths": list(model.widths),
            "hidden": model.head[0].out_features,
        },
        "input_size": size,
        "normalisation": "per patch",
        "outputs": [f"o{i}" for i in range(model.head[-1].out_features)],
        "sha256": sha256_file(pt),
        "n_parameters": sum(p.numel() for p in model.parameters()),
        "training": {"command": "tests"},
        "data": data,
    }
    (folder / f"{stem}.json").write_text(json.dumps(card))


def write_tiny_weights(folder: Path, seed: int = 0) -> Path:
    import torch

    from autofocus.models import DefocusClassifier, ZernikeRegressor

    torch.manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    _save_tiny(folder, "classifier", DefocusClassifier(widths=(4, 4, 8, 8), hidden=8), 84, {})
    reg = ZernikeRegressor(widths=(4, 4, 8, 8, 8), hidden=8)
    _save_tiny(folder, "regressor", reg, 128, {})
    return folder


def write_objective_classifier(folder: Path, objective: str, seed: int = 7) -> Path:
    """A tiny classifier stored as trained for one preset (``classifier-<objective>``)."""
    import torch

    from autofocus.models import DefocusClassifier

    torch.manual_seed(seed)
    model = DefocusClassifier(widths=(4, 4, 8, 8), hidden=8)
    _save_tiny(folder, f"classifier-{objective}", model, 84, {"objective": objective})
    return folder


@pytest.fixture
def tiny_weights(tmp_path: Path) -> Path:
    return write_tiny_weights(tmp_path / "weights")


@pytest.fixture
def add_objective_classifier():
    """``add(folder, objective)``: store a tiny classifier trained 'for' that preset."""
    return write_objective_classifier
