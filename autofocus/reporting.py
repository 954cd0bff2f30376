"""Benchmark and evaluation reports: one rich table on the terminal plus a JSON file."""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from autofocus.io import atomic_write_text

__all__ = ["finite_json", "machine_info", "markdown_table", "write_json"]


def machine_info() -> dict[str, Any]:
    """Where a figure was measured: enough to compare runs honestly."""
    import os

    info: dict[str, Any] = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    try:
        import numpy

        info["numpy"] = numpy.__version__
    except ImportError:  # pragma: no cover
        pass
    return info


def write_json(path: str | Path, payload: dict[str, Any]) -> Path:
    """Atomically write ``payload`` (plus machine info) as indented JSON."""
    body = finite_json({"machine": machine_info(), **payload})
    text = json.dumps(body, indent=2, default=_default, allow_nan=False)
    return atomic_write_text(path, text + "\n")


def finite_json(obj: Any) -> Any:
    """``obj`` with NaN and infinities replaced by ``None`` (``null``), recursively, and
    numpy scalars and arrays as Python values: bare ``NaN`` is not JSON (strict parsers,
    JavaScript, jq reject it)."""
    import math

    import numpy as np

    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite_json(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return finite_json(obj.tolist())
    return obj


def _default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj)!r}")


def markdown_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured markdown table; floats to 4 significant digits.  A ``|`` inside
    a cell (``H(Z|S)``, ``|z|``) is escaped, so it does not split the cell."""

    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v).replace("|", "\\|")

    out = ["| " + " | ".join(fmt(c) for c in columns) + " |", "|" + "---|" * len(columns)]
    out += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(out) + "\n"


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for c in columns:
        table.add_column(c)
    for row in rows:
        table.add_row(*(f"{v:.4g}" if isinstance(v, float) else str(v) for v in row))
    Console(width=160).print(table)
