"""Atomic file writing: a file is either completely written or not there at all."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_text"]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` atomically.

    On any exception the temporary file is removed and ``path`` is left untouched.
    Parent folders are created.  Use for writers that want a filename (tifffile,
    matplotlib); ``suffix`` defaults to the target's so format sniffing still works.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{target.name}.",
        suffix=(target.suffix if suffix is None else suffix),
        dir=target.parent,
    )
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def _write(path: str | os.PathLike[str], data: bytes | str, mode: str) -> Path:
    target = Path(path)
    with atomic_path(target) as tmp:
        fh: IO
        with open(tmp, mode, encoding=None if "b" in mode else "utf-8") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    return target


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    return _write(path, data, "wb")


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    return _write(path, text, "w")
