"""Patch datasets cut from rendered fields (in memory), built in parallel processes."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np

from autofocus.tiling import TileGrid, extract_patches
from autofocus.training.data import (
    DomainConfig,
    FieldSample,
    level_class,
    render_field_sample,
    texture_label,
)

__all__ = ["PatchSet", "build_patchset"]


@dataclass
class PatchSet:
    """Raw camera patches and their labels (row i of every array is patch i)."""

    patches: np.ndarray  # (N, s, s) uint16 raw camera ADU
    level: np.ndarray  # (N,) continuous level of the field
    cls: np.ndarray  # (N,) int class 0..10
    blur_px: np.ndarray  # (N,)
    aberr_px: np.ndarray  # (N, 3)
    texture: np.ndarray  # (N,) bool
    specimen: np.ndarray  # (N,) str
    field: np.ndarray  # (N,) int field index
    pixel_size_um: np.ndarray  # (N,)
    optics: np.ndarray  # (N, N_OPTICS_FEATURES) autofocus.models.optics_features

    def __len__(self) -> int:
        return int(self.patches.shape[0])


def _build_chunk(args: tuple[int, int, int, DomainConfig, int]) -> PatchSet:
    start, count, seed, cfg, patch = args
    rows: dict[str, list] = {f: [] for f in PatchSet.__dataclass_fields__}
    from autofocus.models import optics_features

    grid = TileGrid.for_shape((cfg.field_px, cfg.field_px), patch)
    for k, fs in enumerate(_fields_range(start, count, seed, cfg)):
        raw = extract_patches(fs.frame, grid)
        exp = extract_patches(fs.expected_e, grid)
        optics = optics_features(fs.objective)
        for j in range(raw.shape[0]):
            rows["patches"].append(raw[j])
            rows["level"].append(fs.level)
            rows["cls"].append(level_class(fs.level))
            rows["blur_px"].append(fs.blur_px)
            rows["aberr_px"].append(fs.aberrations_px)
            rows["texture"].append(texture_label(exp[j], fs.read_noise_e))
            rows["specimen"].append(fs.specimen)
            rows["field"].append(start + k)
            rows["pixel_size_um"].append(fs.objective.pixel_size_um)
            rows["optics"].append(optics)
    return PatchSet(
        patches=np.stack(rows["patches"]).astype(np.uint16),
        level=np.asarray(rows["level"], np.float32),
        cls=np.asarray(rows["cls"], np.int64),
        blur_px=np.asarray(rows["blur_px"], np.float32),
        aberr_px=np.asarray(rows["aberr_px"], np.float32).reshape(-1, 3),
        texture=np.asarray(rows["texture"], bool),
        specimen=np.asarray(rows["specimen"]),
        field=np.asarray(rows["field"], np.int64),
        pixel_size_um=np.asarray(rows["pixel_size_um"], np.float32),
        optics=np.asarray(rows["optics"], np.float32).reshape(len(rows["level"]), -1),
    )


def _fields_range(start: int, count: int, seed: int, cfg: DomainConfig) -> Iterator[FieldSample]:
    for i in range(start, start + count):
        yield render_field_sample(i, seed, cfg)


def build_patchset(
    n_fields: int,
    seed: int,
    cfg: DomainConfig,
    patch: int,
    workers: int = 2,
    chunk: int = 64,
) -> PatchSet:
    """Render ``n_fields`` fields (in ``workers`` processes) and cut ``patch`` px tiles."""
    jobs = [(s, min(chunk, n_fields - s), seed, cfg, patch) for s in range(0, n_fields, chunk)]
    n_total = n_fields * n_patches_per_field(cfg, patch)
    if workers <= 1:
        return _assemble((_build_chunk(j) for j in jobs), n_total)
    with ProcessPoolExecutor(max_workers=workers) as ex:
        return _assemble(ex.map(_build_chunk, jobs), n_total)


def _assemble(parts: Iterable[PatchSet], n_total: int) -> PatchSet:
    """Join chunks as they arrive, copying the patches into one buffer allocated once:
    peak memory is the set itself, not the set plus its chunks."""
    patches: np.ndarray | None = None
    small: dict[str, list[np.ndarray]] = {
        f: [] for f in PatchSet.__dataclass_fields__ if f != "patches"
    }
    k = 0
    for part in parts:
        n = len(part)
        if patches is None:
            patches = np.empty((n_total, *part.patches.shape[1:]), part.patches.dtype)
        patches[k : k + n] = part.patches
        for name, acc in small.items():
            acc.append(getattr(part, name))
        k += n
    if patches is None or k != n_total:
        raise RuntimeError(f"expected {n_total} patches, assembled {k}")
    return PatchSet(patches=patches, **{name: np.concatenate(acc) for name, acc in small.items()})


def n_patches_per_field(cfg: DomainConfig, patch: int) -> int:
    n = math.ceil(cfg.field_px / patch)
    return n * n
