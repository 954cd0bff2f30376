"""Fixtures for scorer tests: a tiny, randomly initialised model pair in a weights folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


def write_tiny_weights(folder: Path, seed: int = 0, *, context: bool = False) -> Path:
    import torch

    from autofocus.models import DefocusClassifier, ZernikeRegressor
    from autofocus.registry import sha256_file

    torch.manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    cls = DefocusClassifier(widths=(4, 4, 8, 8), hidden=8)
    if context:  # drawn aside, so that the regressor is the same with or without context
        with torch.random.fork_rng():
            cls = DefocusClassifier(widths=(4, 4, 8, 8), hidden=8, context=True)
    for name, model, size, outputs in (
        ("classifier", cls, 84, 11),
        ("regressor", ZernikeRegressor(widths=(4, 4, 8, 8, 8), hidden=8), 128, 5),
    ):
        model.eval()
        pt = folder / f"{name}.pt"
        torch.save(model.state_dict(), pt)
        card = {
            "name": name,
            "version": "test",
            "architecture": {
                "class": type(model).__name__,
                "widths": list(model.widths),
                "hidden": model.head[0].out_features,
                **({"context": True} if getattr(model, "context", False) else {}),
            },
            "input_size": size,
            "normalisation": "per patch",
            "outputs": [f"o{i}" for i in range(outputs)],
            "sha256": sha256_file(pt),
            "n_parameters": sum(p.numel() for p in model.parameters()),
            "training": {"command": "tests"},
            "data": {},
        }
        (folder / f"{name}.json").write_text(json.dumps(card))
    return folder


def write_objective_classifier(folder: Path, objective: str, seed: int = 7) -> Path:
    """A tiny classifier stored as trained for one preset (``classifier-<objective>``)."""
    import torch

    from autofocus.models import DefocusClassifier
    from autofocus.registry import sha256_file

    torch.manual_seed(seed)
    model = DefocusClassifier(widths=(4, 4, 8, 8), hidden=8).eval()
    pt = folder / f"classifier-{objective}.pt"
    torch.save(model.state_dict(), pt)
    card = {
        "name": "classifier",
        "version": "test",
        "architecture": {"class": "DefocusClassifier", "widths": [4, 4, 8, 8], "hidden": 8},
        "input_size": 84,
        "normalisation": "per patch",
        "outputs": [f"o{i}" for i in range(11)],
        "sha256": sha256_file(pt),
        "n_parameters": sum(p.numel() for p in model.parameters()),
        "training": {"command": "tests"},
        "data": {"objective": objective},
    }
    (folder / f"classifier-{objective}.json").write_text(json.dumps(card))
    return folder


@pytest.fixture
def tiny_weights(tmp_path: Path) -> Path:
    return write_tiny_weights(tmp_path / "weights")


@pytest.fixture
def make_tiny_weights(tmp_path: Path):
    """``make(context=False) -> folder``: tiny weights, with a context classifier or not."""

    def make(context: bool = False) -> Path:
        return write_tiny_weights(tmp_path / f"weights-{int(context)}", context=context)

    return make


@pytest.fixture
def add_objective_classifier():
    """``add(folder, objective)``: store a tiny classifier trained 'for' that preset."""
    return write_objective_classifier
