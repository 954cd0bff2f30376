"""Writing rendered series: OME-TIFF stacks and PNG montages with z labels (atomically)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from autofocus.errors import InvalidInputError
from autofocus.io import atomic_path
from simulators.series import ThroughFocusSeries

__all__ = ["montage_png", "write_series"]


def write_series(series: ThroughFocusSeries, path: str | Path) -> Path:
    """Write ``series`` as an OME-TIFF (``.ome.tif``) or plain TIFF with a z axis.

    Physical pixel sizes and the z positions (``dz_um``) travel in the OME metadata;
    a plain ``.tif`` gets ImageJ-style metadata instead.
    """
    import tifffile

    target = Path(path)
    name = target.name.lower()
    if not name.endswith((".tif", ".tiff")):
        raise InvalidInputError(f"output must end in .ome.tif, .tif or .tiff, got {target.name}")
    px = series.objective.pixel_size_um
    dz = series.dz_um
    step = float(np.median(np.diff(dz))) if dz.size > 1 else 1.0
    with atomic_path(target) as tmp:
        if ".ome." in name:
            tifffile.imwrite(
                tmp,
                series.frames,
                ome=True,
                photometric="minisblack",
                metadata={
                    "axes": "ZYX",
                    "PhysicalSizeX": px,
                    "PhysicalSizeXUnit": "µm",
                    "PhysicalSizeY": px,
                    "PhysicalSizeYUnit": "µm",
                    "PhysicalSizeZ": abs(step),
                    "PhysicalSizeZUnit": "µm",
                    "Description": f"specimen={series.specimen_name} "
                    f"objective={series.objective.name} dz_um={dz.round(4).tolist()}",
                },
            )
        else:
            tifffile.imwrite(
                tmp,
                series.frames,
                imagej=True,
                resolution=(1 / px, 1 / px),
                metadata={"axes": "ZYX", "spacing": abs(step), "unit": "um"},
            )
    return target


def montage_png(series: ThroughFocusSeries, path: str | Path, *, max_panels: int = 25) -> Path:
    """A grid of the frames (each contrast-stretched on its own) labelled with dz in um."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    n = series.frames.shape[0]
    idx = np.unique(np.linspace(0, n - 1, min(n, max_panels)).round().astype(int))
    cols = math.ceil(math.sqrt(idx.size))
    rows = math.ceil(idx.size / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.3 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, i in zip(axes.ravel(), idx, strict=False):
        img = series.frames[i].astype(np.float32)
        lo, hi = np.percentile(img, [0.5, 99.8])
        ax.imshow(img, cmap="gray", vmin=lo, vmax=max(hi, lo + 1))
        ax.set_title(f"dz = {series.dz_um[i]:+.2f} µm", fontsize=8)
    fig.suptitle(
        f"{series.specimen_name} · {series.objective.name} "
        f"(NA {series.objective.na}, DOF {series.objective.dof_um:.2f} µm)",
        fontsize=9,
    )
    fig.tight_layout()
    target = Path(path)
    with atomic_path(target) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
    return target
