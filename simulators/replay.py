"""Replay of a recorded z-stack: the frames a camera would see at any stage z.

A :class:`ZStack` holds ``N >= 2`` planes of one shape and dtype, sorted by their
stage position ``z_um`` (strictly increasing).  :meth:`ZStack.plane_at` returns the
nearest plane or a linear interpolation between the two neighbouring planes, so a
replay camera can serve frames while a focus search moves the stage.

Loading (:meth:`ZStack.load`)
-----------------------------
``path`` is either

* a **folder** of single-plane images (``.tif``, ``.tiff``, ``.png``; hidden files
  and other extensions are ignored), or
* a single **multi-page TIFF** (plain, ImageJ or OME-TIFF) holding one stack: after
  dropping singleton axes it must have exactly one axis besides ``Y, X`` (``Z``, or
  tifffile's generic page axes ``I``/``Q``; a channel axis or interleaved colour
  ``Y, X, S`` is refused, but a leading planar ``S`` axis is read as z because
  tifffile stores a 3- or 4-plane array as planar RGB(A) unless told otherwise).

The z position of each plane comes from the first of these sources that applies:

1. ``z_csv``, a CSV file with a header row: ``file,z_um`` for a folder (``file`` is
   relative to the folder; only the listed files are loaded, each at most once) or
   ``index,z_um`` for a multi-page TIFF (0-based page index; every page listed exactly
   once).  Extra columns are ignored.
2. Information recorded with the images:

   * folder: a z position in **every** file name (see :func:`z_from_name`);
   * multi-page TIFF with a ``Z`` axis: the OME ``PhysicalSizeZ`` (with
     ``PhysicalSizeZUnit`` nm/um/mm, default um) or ImageJ ``spacing`` (unit um or
     micron); plane ``i`` is at ``i * step`` (the first plane at 0).
3. ``z_step_um``: plane ``i`` is at ``i * z_step_um``, the first plane at 0.  For a
   folder, ``i`` follows the natural sort of the file names (``img2`` before
   ``img10``); for a TIFF, the page order.

A lower-priority source that is also given is ignored (logged at INFO).  Frames are
then sorted by z.

Clamping
--------
A replay camera must answer at any stage position, so a z outside
``[z_um[0], z_um[-1]]`` is **clamped** to the end plane rather than refused.  The
clamping is reported by :meth:`ZStack.locate` (``PlaneLocation.clamped``), logged at
DEBUG by :meth:`ZStack.plane_at`, and can be checked up front with
:meth:`ZStack.contains`.

Errors: every problem with the data raises :class:`~autofocus.errors.ReplayError`
(a subclass of ``InvalidInputError``): missing path, empty folder, unreadable file,
no z information, CSV problems (missing header or columns, unknown or missing files,
bad indices), non-finite or duplicate z, inconsistent frame sizes or dtypes, fewer
than two planes, frames that are not 2-D numeric finite images.
"""

from __future__ import annotations

import csv
import logging
import math
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from autofocus.errors import InvalidFrameError, InvalidInputError, ReplayError
from autofocus.frames import as_frame

__all__ = ["IMAGE_SUFFIXES", "PlaneLocation", "ZStack", "z_from_name"]

logger = logging.getLogger(__name__)

#: File extensions read from a folder (case-insensitive).
IMAGE_SUFFIXES = (".tif", ".tiff", ".png")
_TIFF_SUFFIXES = (".tif", ".tiff")
#: Two planes closer than this (um) count as duplicates.
_DUPLICATE_TOL_UM = 1e-9

_NUM = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)"
_UNIT = r"(?:um|\u00b5m|\u03bcm)"
_Z_IN_NAME = re.compile(
    rf"(?<![A-Za-z0-9])z(?:(?:_um)?=(?P<eq>{_NUM}){_UNIT}?|_?(?P<unit>{_NUM}){_UNIT})(?![A-Za-z])",
    re.IGNORECASE,
)
_OME_UNITS_UM = {"nm": 1e-3, "um": 1.0, "\u00b5m": 1.0, "\u03bcm": 1.0, "mm": 1e3}
_IMAGEJ_UNITS_UM = {"um": 1.0, "micron": 1.0, "microns": 1.0, "\u00b5m": 1.0, "\u03bcm": 1.0}


# --------------------------------------------------------------------------- z from names


def z_from_name(name: str) -> float | None:
    """The z position (um) written in a file name, or None when there is none.

    Only the name's stem is searched (the extension(s) ``.tif``, ``.tiff``, ``.png``,
    ``.ome`` are removed first).  A z position is the letter ``z`` (either case, not
    preceded by a letter or digit) followed by a signed decimal number, which must be
    EITHER introduced by ``=`` or ``_um=`` (``z=3.0``, ``z_um=-2``, unit optional) OR
    followed by the unit ``um``/``µm`` (``z-12.5um``, ``z_3um``, ``z12.5um``; the
    ``-`` is the number's sign).  Bare numbers are NOT positions: ``_z012_`` is a
    plane index, ``12.5um`` without ``z`` could be a pixel size.  Two or more
    positions in one name raise :class:`ReplayError` (ambiguous).
    """
    stem = name
    lowered = stem.lower()
    for suffix in (*IMAGE_SUFFIXES, ".ome"):
        if lowered.endswith(suffix):
            stem = stem[: -len(suffix)]
            lowered = lowered[: -len(suffix)]
    matches = list(_Z_IN_NAME.finditer(stem))
    if not matches:
        return None
    if len(matches) > 1:
        found = ", ".join(m.group(0) for m in matches)
        raise ReplayError(f"file name {name!r} holds several z positions ({found})")
    match = matches[0]
    text = match.group("eq") if match.group("eq") is not None else match.group("unit")
    return float(text)


def _natural_key(name: str) -> list[Any]:
    return [int(tok) if tok.isdigit() else tok.lower() for tok in re.split(r"(\d+)", name)]


# --------------------------------------------------------------------------- reading


def _read_plane_file(path: Path) -> np.ndarray:
    suffix = path.suffix.lower()
    try:
        if suffix in _TIFF_SUFFIXES:
            import tifffile

            data = tifffile.imread(path)
        elif suffix == ".png":
            import imagecodecs

            data = imagecodecs.png_decode(path.read_bytes())
        else:
            raise ReplayError(
                f"{path}: unsupported image type {suffix!r}; expected one of {IMAGE_SUFFIXES}"
            )
    except ReplayError:
        raise
    except Exception as exc:
        raise ReplayError(f"cannot read image {path}: {exc}") from exc
    data = np.asarray(data)
    while data.ndim > 2 and data.shape[0] == 1:
        data = data[0]
    if data.ndim != 2:
        raise ReplayError(
            f"{path} is not a single 2-D grayscale plane (shape {data.shape}); a folder "
            "must hold one plane per file"
        )
    return data


def _read_csv(path: Path, key: str) -> list[tuple[str, float, int]]:
    """Rows ``(key value, z_um, line number)`` of a z CSV whose header names ``key`` and
    ``z_um``."""
    if not path.is_file():
        raise ReplayError(f"z CSV {path} does not exist")
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            rows = [row for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ReplayError(f"cannot read z CSV {path}: {exc}") from exc
    rows_numbered = [(i + 1, r) for i, r in enumerate(rows) if any(c.strip() for c in r)]
    if not rows_numbered:
        raise ReplayError(f"z CSV {path} is empty; expected a header row '{key},z_um'")
    _, header = rows_numbered[0]
    columns = [c.strip().lower() for c in header]
    if key not in columns or "z_um" not in columns:
        raise ReplayError(
            f"z CSV {path} must start with a header row naming the columns '{key},z_um' "
            f"(got {header!r})"
        )
    k_col, z_col = columns.index(key), columns.index("z_um")
    out: list[tuple[str, float, int]] = []
    for line, row in rows_numbered[1:]:
        if len(row) <= max(k_col, z_col):
            raise ReplayError(f"z CSV {path}, line {line}: missing values in {row!r}")
        k_val, z_text = row[k_col].strip(), row[z_col].strip()
        try:
            z = float(z_text)
        except ValueError:
            raise ReplayError(
                f"z CSV {path}, line {line}: z_um {z_text!r} is not a number"
            ) from None
        if not math.isfinite(z):
            raise ReplayError(f"z CSV {path}, line {line}: z_um must be finite, got {z_text!r}")
        if not k_val:
            raise ReplayError(f"z CSV {path}, line {line}: empty '{key}'")
        out.append((k_val, z, line))
    if not out:
        raise ReplayError(f"z CSV {path} has a header but no rows")
    return out


def _check_step(z_step_um: float | None) -> float | None:
    if z_step_um is None:
        return None
    try:
        step = float(z_step_um)
    except (TypeError, ValueError):
        raise ReplayError(f"z_step_um must be a number, got {z_step_um!r}") from None
    if not math.isfinite(step) or step == 0.0:
        raise ReplayError(f"z_step_um must be finite and non-zero, got {z_step_um!r}")
    return step


def _load_folder(
    folder: Path, z_csv: Path | None, z_step_um: float | None
) -> tuple[list[np.ndarray], list[float], list[str]]:
    if z_csv is not None:
        rows = _read_csv(z_csv, "file")
        seen: dict[str, int] = {}
        files: list[Path] = []
        z_list: list[float] = []
        for name, z, line in rows:
            if name in seen:
                raise ReplayError(
                    f"z CSV {z_csv}: file {name!r} is listed twice (lines {seen[name]}, {line})"
                )
            seen[name] = line
            file = folder / name
            if not file.is_file():
                raise ReplayError(
                    f"z CSV {z_csv}, line {line}: file {name!r} does not exist in {folder}"
                )
            files.append(file)
            z_list.append(z)
        if z_step_um is not None:
            logger.info("z_step_um ignored: z positions come from %s", z_csv)
    else:
        files = sorted(
            (
                f
                for f in folder.iterdir()
                if f.is_file() and not f.name.startswith(".") and f.suffix.lower() in IMAGE_SUFFIXES
            ),
            key=lambda f: _natural_key(f.name),
        )
        if not files:
            raise ReplayError(f"folder {folder} holds no image files ({', '.join(IMAGE_SUFFIXES)})")
        z_names = [z_from_name(f.name) for f in files]
        missing = [f.name for f, z in zip(files, z_names, strict=True) if z is None]
        if len(missing) < len(files):
            if missing:
                raise ReplayError(
                    f"some file names in {folder} carry a z position and some do not "
                    f"(without: {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}); "
                    "rename them or give a z CSV"
                )
            z_list = [float(z) for z in z_names if z is not None]
            if z_step_um is not None:
                logger.info("z_step_um ignored: z positions come from the file names")
        elif z_step_um is not None:
            z_list = [i * z_step_um for i in range(len(files))]
        else:
            raise ReplayError(
                f"no z information for {folder}: give a z CSV (file,z_um), put 'z<number>um' "
                "or 'z=<number>' in every file name, or give z_step_um"
            )
    frames = [_read_plane_file(f) for f in files]
    return frames, z_list, [f.name for f in files]


def _recorded_step_um(tf: Any, axis: str) -> float | None:
    """z step from OME ``PhysicalSizeZ`` or ImageJ ``spacing``, when the axis is Z."""
    if axis != "Z":
        return None
    ome = tf.ome_metadata
    if ome:
        try:
            root = ET.fromstring(ome)
        except ET.ParseError:
            root = None
        if root is not None:
            for elem in root.iter():
                if elem.tag.endswith("Pixels") and "PhysicalSizeZ" in elem.attrib:
                    unit = elem.attrib.get("PhysicalSizeZUnit", "um").strip().lower()
                    if unit not in _OME_UNITS_UM:
                        raise ReplayError(f"OME PhysicalSizeZUnit {unit!r} is not supported")
                    return float(elem.attrib["PhysicalSizeZ"]) * _OME_UNITS_UM[unit]
    ij = tf.imagej_metadata
    if ij and "spacing" in ij:
        unit = str(ij.get("unit", "um")).strip().lower()
        if unit in _IMAGEJ_UNITS_UM:
            return float(ij["spacing"])
    return None


def _load_tiff_stack(
    path: Path, z_csv: Path | None, z_step_um: float | None
) -> tuple[list[np.ndarray], list[float], list[str]]:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tf:
            series = tf.series[0]
            data = np.asarray(series.asarray())
            axes = series.axes
            keep = [i for i, n in enumerate(data.shape) if n != 1 or axes[i] in "YX"]
            data = data.reshape([data.shape[i] for i in keep])
            axes = "".join(axes[i] for i in keep)
            if data.ndim == 2:
                raise ReplayError(f"{path} holds a single plane; a z-stack needs at least 2")
            n_pages = data.shape[0]
            if data.ndim != 3 or not axes.endswith("YX"):
                raise ReplayError(
                    f"{path} has axes {axes!r} (shape {data.shape}); expected one z axis "
                    "besides Y and X"
                )
            if axes[0] == "C":
                raise ReplayError(f"{path}: the non-image axis is 'C' (channels), not z")
            if axes[0] == "S":
                # tifffile stores a 3- or 4-plane array as planar RGB(A) by default
                logger.info("%s: reading %d planar colour samples as z planes", path, n_pages)
            recorded_step = None if z_csv is not None else _recorded_step_um(tf, axes[0])
    except ReplayError:
        raise
    except Exception as exc:
        raise ReplayError(f"cannot read TIFF {path}: {exc}") from exc
    n = data.shape[0]
    if z_csv is not None:
        rows = _read_csv(z_csv, "index")
        z_by_index: dict[int, float] = {}
        for text, z, line in rows:
            try:
                index = int(text)
            except ValueError:
                raise ReplayError(
                    f"z CSV {z_csv}, line {line}: index {text!r} is not an integer"
                ) from None
            if not 0 <= index < n:
                raise ReplayError(
                    f"z CSV {z_csv}, line {line}: index {index} outside the {n} pages of {path}"
                )
            if index in z_by_index:
                raise ReplayError(f"z CSV {z_csv}, line {line}: index {index} listed twice")
            z_by_index[index] = z
        if len(z_by_index) != n:
            absent = sorted(set(range(n)) - set(z_by_index))
            raise ReplayError(
                f"z CSV {z_csv} must list every page of {path} once; missing indices {absent}"
            )
        z_list = [z_by_index[i] for i in range(n)]
        if z_step_um is not None:
            logger.info("z_step_um ignored: z positions come from %s", z_csv)
    elif recorded_step is not None:
        if not math.isfinite(recorded_step) or recorded_step == 0.0:
            raise ReplayError(f"{path}: recorded z spacing {recorded_step!r} is not usable")
        z_list = [i * recorded_step for i in range(n)]
        if z_step_um is not None:
            logger.info("z_step_um ignored: %s records a z spacing of %g um", path, recorded_step)
    elif z_step_um is not None:
        z_list = [i * z_step_um for i in range(n)]
    else:
        raise ReplayError(f"no z information for {path}: give a z CSV (index,z_um) or z_step_um")
    return list(data), z_list, [f"page {i}" for i in range(n)]


# --------------------------------------------------------------------------- ZStack


@dataclass(frozen=True)
class PlaneLocation:
    """Where a requested z falls in a stack.

    ``z_used_um`` is the requested z clamped to ``[z_um[0], z_um[-1]]`` and
    ``clamped`` says whether that changed it.  The used z lies between planes
    ``index_below`` and ``index_below + 1`` with ``weight_above`` in ``[0, 1]``
    (0: exactly on ``index_below``).  ``nearest_index`` is the closer of the two
    (ties go to the lower-z plane).
    """

    z_requested_um: float
    z_used_um: float
    clamped: bool
    index_below: int
    weight_above: float
    nearest_index: int


class ZStack:
    """A recorded z-stack, sorted by z, immutable once made.

    Parameters
    ----------
    frames:
        ``N x H x W`` array or a sequence of ``N`` equally shaped 2-D arrays of one
        dtype (integer or float, finite), ``N >= 2``.
    z_um:
        Stage position of each frame (um), finite and distinct (any order).
    true_focus_um:
        The known in-focus stage position, when there is one (ground truth for
        benchmarks); not required to lie inside the stack.
    names:
        A label per frame (file names); defaults to ``"plane i"``.
    source:
        Where the stack came from (for messages).

    Attributes are read-only; the arrays returned by :attr:`frames` and :attr:`z_um`
    are non-writeable views.  All planes are held in memory.
    """

    __slots__ = ("_frames", "_names", "_source", "_true_focus_um", "_z_um")

    def __init__(
        self,
        frames: np.ndarray | Sequence[np.ndarray],
        z_um: Sequence[float] | np.ndarray,
        *,
        true_focus_um: float | None = None,
        names: Sequence[str] | None = None,
        source: str | os.PathLike[str] | None = None,
    ) -> None:
        label = f" ({source})" if source is not None else ""
        if isinstance(frames, np.ndarray) and frames.ndim != 3:
            raise ReplayError(
                f"frames must be an N x H x W array or a sequence of 2-D planes, "
                f"got shape {frames.shape}{label}"
            )
        planes = list(frames)
        if len(planes) < 2:
            raise ReplayError(f"a z-stack needs at least 2 planes, got {len(planes)}{label}")
        names_list = [f"plane {i}" for i in range(len(planes))] if names is None else list(names)
        if len(names_list) != len(planes):
            raise ReplayError(f"{len(names_list)} names for {len(planes)} planes{label}")
        checked: list[np.ndarray] = []
        for name, plane in zip(names_list, planes, strict=True):
            try:
                arr = as_frame(plane, name=f"plane {name!r}")
            except InvalidFrameError as exc:
                raise ReplayError(f"{exc}{label}") from exc
            if checked and arr.shape != checked[0].shape:
                raise ReplayError(
                    f"plane {name!r} is {arr.shape[0]}x{arr.shape[1]} px but "
                    f"{names_list[0]!r} is {checked[0].shape[0]}x{checked[0].shape[1]} px{label}"
                )
            if checked and arr.dtype != checked[0].dtype:
                raise ReplayError(
                    f"plane {name!r} has dtype {arr.dtype} but {names_list[0]!r} has "
                    f"{checked[0].dtype}{label}"
                )
            checked.append(arr)
        try:
            z = np.asarray(z_um, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ReplayError(f"z positions are not numbers: {exc}{label}") from exc
        if z.ndim != 1 or z.size != len(checked):
            raise ReplayError(
                f"need one z position per plane: {len(checked)} planes, z shape {z.shape}{label}"
            )
        if not np.all(np.isfinite(z)):
            bad = [names_list[i] for i in np.flatnonzero(~np.isfinite(z))]
            raise ReplayError(f"non-finite z positions for {', '.join(bad)}{label}")
        order = np.argsort(z, kind="stable")
        z_sorted = z[order]
        gaps = np.diff(z_sorted)
        if np.any(gaps <= _DUPLICATE_TOL_UM):
            i = int(np.flatnonzero(gaps <= _DUPLICATE_TOL_UM)[0])
            raise ReplayError(
                f"duplicate z position {z_sorted[i]:g} um for planes "
                f"{names_list[order[i]]!r} and {names_list[order[i + 1]]!r}{label}"
            )
        if true_focus_um is not None:
            try:
                focus = float(true_focus_um)
            except (TypeError, ValueError):
                raise ReplayError(
                    f"true_focus_um must be a number, got {true_focus_um!r}"
                ) from None
            if not math.isfinite(focus):
                raise ReplayError(f"true_focus_um must be finite, got {true_focus_um!r}")
            true_focus_um = focus
        stack = np.stack([checked[i] for i in order])
        stack.setflags(write=False)
        z_sorted.setflags(write=False)
        self._frames = stack
        self._z_um = z_sorted
        self._names = tuple(names_list[i] for i in order)
        self._true_focus_um = true_focus_um
        self._source = None if source is None else str(source)

    # ----------------------------------------------------------------- loading

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        z_csv: str | os.PathLike[str] | None = None,
        z_step_um: float | None = None,
        *,
        true_focus_um: float | None = None,
    ) -> ZStack:
        """Load a folder of planes or a multi-page TIFF (see the module docstring for
        the z sources, their priority and every error)."""
        p = Path(path)
        csv_path = None if z_csv is None else Path(z_csv)
        step = _check_step(z_step_um)
        if not p.exists():
            raise ReplayError(f"z-stack path {p} does not exist")
        if p.is_dir():
            frames, z_list, names = _load_folder(p, csv_path, step)
        elif p.suffix.lower() in _TIFF_SUFFIXES:
            frames, z_list, names = _load_tiff_stack(p, csv_path, step)
        else:
            raise ReplayError(f"{p} is neither a folder nor a multi-page TIFF (.tif/.tiff)")
        stack = cls(frames, z_list, true_focus_um=true_focus_um, names=names, source=p)
        logger.debug(
            "loaded z-stack %s: %d planes %s, z %.3f..%.3f um",
            p,
            len(stack),
            stack.shape,
            stack.z_um[0],
            stack.z_um[-1],
        )
        return stack

    # ----------------------------------------------------------------- attributes

    @property
    def frames(self) -> np.ndarray:
        """All planes, ``N x H x W``, sorted by z (read-only)."""
        return self._frames

    @property
    def z_um(self) -> np.ndarray:
        """Plane positions (um), strictly increasing (read-only float64 array)."""
        return self._z_um

    @property
    def shape(self) -> tuple[int, int]:
        """``(H, W)`` of one plane."""
        return (int(self._frames.shape[1]), int(self._frames.shape[2]))

    @property
    def dtype(self) -> np.dtype:
        """dtype of the planes as recorded."""
        return self._frames.dtype

    @property
    def names(self) -> tuple[str, ...]:
        """Label of each plane (file name or ``"page i"``), in z order."""
        return self._names

    @property
    def true_focus_um(self) -> float | None:
        """The known in-focus z (um), or None."""
        return self._true_focus_um

    @property
    def source(self) -> str | None:
        return self._source

    @property
    def z_range_um(self) -> tuple[float, float]:
        """``(z_um[0], z_um[-1])``."""
        return float(self._z_um[0]), float(self._z_um[-1])

    def __len__(self) -> int:
        return int(self._frames.shape[0])

    def __repr__(self) -> str:
        lo, hi = self.z_range_um
        return (
            f"ZStack({len(self)} planes of {self.shape[0]}x{self.shape[1]} {self.dtype}, "
            f"z {lo:g}..{hi:g} um, source={self._source!r})"
        )

    # ----------------------------------------------------------------- lookup

    def contains(self, z_um: float) -> bool:
        """Whether ``z_um`` lies inside the recorded range (no clamping needed)."""
        z = _as_z(z_um)
        return bool(self._z_um[0] <= z <= self._z_um[-1])

    def locate(self, z_um: float) -> PlaneLocation:
        """Where ``z_um`` falls: clamped z, bracketing planes, weight, nearest plane."""
        z = _as_z(z_um)
        zs = self._z_um
        z_used = min(max(z, float(zs[0])), float(zs[-1]))
        i = int(np.searchsorted(zs, z_used, side="right")) - 1
        i = min(max(i, 0), len(zs) - 2)
        weight = (z_used - float(zs[i])) / (float(zs[i + 1]) - float(zs[i]))
        weight = min(max(weight, 0.0), 1.0)
        nearest = i + 1 if weight > 0.5 else i
        return PlaneLocation(
            z_requested_um=z,
            z_used_um=z_used,
            clamped=z_used != z,
            index_below=i,
            weight_above=weight,
            nearest_index=nearest,
        )

    def plane_at(self, z_um: float, interpolate: bool = False) -> np.ndarray:
        """The frame at stage position ``z_um`` (a new, writeable array).

        ``interpolate=False``: the nearest plane, in the recorded dtype (ties between
        two planes go to the lower z).  ``interpolate=True``: float32
        ``(1 - t) P[i] + t P[i+1]`` with ``t = (z - z[i]) / (z[i+1] - z[i])``; exact
        recorded values on a plane (integers above 2**24 lose precision in float32).
        A z outside the recorded range is clamped to the end plane (see
        :meth:`locate`; logged at DEBUG).
        """
        loc = self.locate(z_um)
        if loc.clamped:
            logger.debug(
                "z %.3f um outside the recorded %.3f..%.3f um: clamped",
                loc.z_requested_um,
                *self.z_range_um,
            )
        if not interpolate:
            return self._frames[loc.nearest_index].copy()
        t = loc.weight_above
        below = self._frames[loc.index_below].astype(np.float32)
        if t == 0.0:
            return below
        above = self._frames[loc.index_below + 1].astype(np.float32)
        if t == 1.0:
            return above
        below *= np.float32(1.0 - t)
        above *= np.float32(t)
        below += above
        return below


def _as_z(z_um: Any) -> float:
    try:
        z = float(z_um)
    except (TypeError, ValueError):
        raise InvalidInputError(f"z_um must be a number, got {z_um!r}") from None
    if not math.isfinite(z):
        raise InvalidInputError(f"z_um must be finite, got {z_um!r}")
    return z
