"""Calibration files: one schema-versioned JSON per (microscope, objective).

A :class:`Calibration` holds the objective, the fitted :class:`~autofocus.curve.BlurCurve`
(centred at its minimum) with the fit report, the raw samples, the identity of the blur
regressor that scored them (model id + sha256), the microscope name and the creation
time.  :class:`CalibrationStore` keeps them in a folder (default: the per-user data
folder from ``platformdirs``, ``.../autofocus/calibrations``): save (atomic), list, load
(with compatibility checks), delete.  Files are parsed by pydantic with
``extra="forbid"``; nothing is ever unpickled.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from autofocus.curve import BlurCurve
from autofocus.errors import CalibrationError, UnknownNameError
from autofocus.io import atomic_write_text
from autofocus.optics import Objective, get_objective

__all__ = [
    "SCHEMA_VERSION",
    "Calibration",
    "CalibrationSample",
    "CalibrationStore",
    "FitReport",
    "ScorerIdentity",
    "default_store_dir",
    "load_calibration_file",
    "now_utc",
    "scorer_identity",
]

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1


class CalibrationSample(BaseModel):
    """One slice of the calibration stack."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    z_um: float
    dz_um: float = Field(description="z relative to the stack's start position")
    b_px: float | None = Field(description="blur score (None: undetermined slice)")
    spread_px: float | None = None
    textured_fraction: float = Field(ge=0, le=1)


class FitReport(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    centre_um: float = Field(description="dz of best focus relative to the start position")
    focus_z_um: float = Field(description="stage z of best focus during calibration")
    fwhm_um: float
    amplitude_px: float
    baseline_px: float
    r2: float
    residual_rms_px: float
    residuals_px: list[float]


class ScorerIdentity(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())

    model_id: str = Field(min_length=1)
    sha256: str = ""


class Calibration(BaseModel):
    """A stored objective calibration (see the module docstring)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = 1  # SCHEMA_VERSION
    microscope: str = Field(default="default", min_length=1)
    objective: Objective
    curve: BlurCurve
    fit: FitReport
    samples: list[CalibrationSample]
    scorer: ScorerIdentity
    created_utc: datetime
    settle_ms: float = 0.0
    notes: str = ""

    def check_compatible(self, objective: Objective | str, scorer: Any) -> None:
        """Raise :class:`CalibrationError` unless made with this objective and regressor.

        ``objective``: an Objective (compared field by field) or a name.  ``scorer``: a
        scorer object, a :class:`ScorerIdentity` or a model-id string.
        """
        if isinstance(objective, str):
            if objective.strip().lower() != self.objective.name.lower():
                raise CalibrationError(
                    f"this calibration is for objective {self.objective.name!r}, "
                    f"not {objective!r}; calibrate {objective!r} first"
                )
        elif objective != self.objective:
            diff = [
                f"{k}: {getattr(self.objective, k)!r} != {getattr(objective, k)!r}"
                for k in type(objective).model_fields
                if getattr(self.objective, k) != getattr(objective, k)
            ]
            raise CalibrationError(
                f"this calibration was made with a different objective ({'; '.join(diff)}); "
                "recalibrate"
            )
        ident = scorer if isinstance(scorer, ScorerIdentity) else scorer_identity(scorer)
        if ident.model_id != self.scorer.model_id or (
            ident.sha256 and self.scorer.sha256 and ident.sha256 != self.scorer.sha256
        ):
            raise CalibrationError(
                f"this calibration was made with blur model {self.scorer.model_id!r} but the "
                f"scorer uses {ident.model_id!r}; blur scores are not comparable - recalibrate"
            )


def scorer_identity(scorer: Any) -> ScorerIdentity:
    """The blur regressor behind a scorer: its card's model id and sha256 when known.

    ``LocalScorer`` exposes ``regressor_card``; any other scorer is identified by the
    regressor part of ``model_version`` (``"classifier-id+regressor-id"``) or all of it.
    A plain string is taken as the model id.
    """
    if isinstance(scorer, ScorerIdentity):
        return scorer
    if isinstance(scorer, str):
        return ScorerIdentity(model_id=scorer)
    card = getattr(scorer, "regressor_card", None)
    if card is not None:
        return ScorerIdentity(model_id=str(card.model_id), sha256=str(card.sha256))
    version = str(getattr(scorer, "model_version", "") or "")
    if not version:
        raise CalibrationError(f"cannot identify the blur model of {type(scorer).__name__}")
    return ScorerIdentity(model_id=version.split("+")[-1])


def default_store_dir() -> Path:
    """``<user data dir>/autofocus/calibrations`` (platformdirs)."""
    import platformdirs

    return Path(platformdirs.user_data_dir("autofocus", appauthor=False)) / "calibrations"


def _slug(text: str) -> str:
    """A file-name-safe form of ``text``; names it had to change (``a/b``, ``a:b``,
    ``顕微鏡``) get a hash of the original, so that two names never share a file."""
    name = text.strip()
    s = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")
    if s == name:
        return s
    digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:8]
    return f"{s or 'unnamed'}-{digest}"


def _legacy_slug(text: str) -> str:
    """The name files had before ``_slug`` added its hash (read, never written)."""
    s = re.sub(r"[^A-Za-z0-9._-]+", "_", text.strip()).strip("._")
    return s or "unnamed"


class CalibrationStore:
    """A folder of calibration JSON files named ``<microscope>__<objective>.json``."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_store_dir()

    def path_for(self, objective: Objective | str, microscope: str = "default") -> Path:
        if isinstance(objective, str):
            try:
                name = get_objective(objective).name  # preset names are case-insensitive
            except UnknownNameError:
                name = objective.strip()
        else:
            name = objective.name
        return self.root / f"{_slug(microscope)}__{_slug(name)}.json"

    def _legacy_path(self, objective: Objective | str, microscope: str) -> Path:
        new = self.path_for(objective, microscope)
        obj = new.stem.split("__", 1)[1]
        return self.root / f"{_legacy_slug(microscope)}__{obj}.json"

    def save(self, calibration: Calibration) -> Path:
        """Write atomically (a crash never leaves a half-written file); returns the path."""
        path = self.path_for(calibration.objective, calibration.microscope)
        atomic_write_text(path, calibration.model_dump_json(indent=2) + "\n")
        logger.info("saved calibration %s", path)
        return path

    def list(self) -> list[Calibration]:
        """Every readable calibration in the folder (unreadable files are logged)."""
        out: list[Calibration] = []
        if not self.root.is_dir():
            return out
        for p in sorted(self.root.glob("*.json")):
            try:
                out.append(load_calibration_file(p))
            except CalibrationError as exc:
                logger.warning("skipping %s: %s", p, exc)
        return out

    def load(
        self,
        objective: Objective | str,
        microscope: str = "default",
        *,
        scorer: Any = None,
    ) -> Calibration:
        """Load the calibration of ``objective``; checked against it (and ``scorer``).

        Raises :class:`UnknownNameError` when there is none and
        :class:`CalibrationError` when it does not apply.
        """
        path = self.path_for(objective, microscope)
        if not path.is_file():
            path = self._legacy_path(objective, microscope)
        if not path.is_file():
            raise UnknownNameError(
                f"no calibration for objective "
                f"{objective if isinstance(objective, str) else objective.name!r} on "
                f"microscope {microscope!r} in {self.root}; run 'autofocus calibrate'"
            )
        cal = load_calibration_file(path)
        if cal.microscope.strip() != microscope.strip():
            raise CalibrationError(
                f"{path} holds the calibration of microscope {cal.microscope!r}, not {microscope!r}"
            )
        if isinstance(objective, Objective) or scorer is not None:
            cal.check_compatible(objective, scorer if scorer is not None else cal.scorer)
        elif cal.objective.name.lower() != objective.strip().lower():
            raise CalibrationError(f"{path} holds objective {cal.objective.name!r}")
        return cal

    def delete(self, objective: Objective | str, microscope: str = "default") -> Path:
        path = self.path_for(objective, microscope)
        if not path.is_file():
            path = self._legacy_path(objective, microscope)
        if not path.is_file():
            raise UnknownNameError(f"no calibration file {path}")
        path.unlink()
        png = path.with_suffix(".png")
        if png.is_file():
            png.unlink()
        return path


def load_calibration_file(path: str | Path) -> Calibration:
    """Parse one calibration file (CalibrationError for any problem with it)."""
    p = Path(path)
    try:
        data = json.loads(p.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CalibrationError(f"cannot read calibration {p}: {exc}") from exc
    if isinstance(data, dict) and data.get("schema_version") not in (None, SCHEMA_VERSION):
        raise CalibrationError(
            f"{p} has schema version {data.get('schema_version')!r}; this version reads "
            f"{SCHEMA_VERSION}"
        )
    try:
        return Calibration.model_validate(data)
    except ValidationError as exc:
        raise CalibrationError(f"calibration {p} is invalid: {exc}") from exc


def now_utc() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)
