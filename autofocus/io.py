"""Atomic file writing: a file is either completely written or not there at all."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Literal

from autofocus.errors import InvalidInputError

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_text", "check_writable"]


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
        # mkstemp makes the file 0600: give it what a plain open() would (or keep the
        # permissions of the file it replaces)
        with contextlib.suppress(OSError):
            os.chmod(tmp_path, _mode_for(target))
        os.replace(tmp_path, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def _mode_for(target: Path) -> int:
    try:
        return stat.S_IMODE(target.stat().st_mode)
    except OSError:
        return 0o666 & ~_umask()


def _umask() -> int:
    """The process umask, read without changing it where the OS allows."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore at once
    os.umask(mask)
    return mask


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


def check_writable(path: str | os.PathLike[str], kind: Literal["file", "dir"] = "file") -> Path:
    """Fail early, before any work, when ``path`` cannot be written as a ``kind``.

    Raises :class:`~autofocus.errors.InvalidInputError` when the path exists as the
    other kind, when one of its existing parents is not a folder, or when the nearest
    existing parent is not writable.  Creates nothing.
    """
    target = Path(path)
    if target.exists():
        if kind == "file" and target.is_dir():
            raise InvalidInputError(f"cannot write the file {target}: it is a folder")
        if kind == "dir" and not target.is_dir():
            raise InvalidInputError(f"cannot write into {target}: it is a file, not a folder")
    parent = target if kind == "dir" and target.is_dir() else target.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise InvalidInputError(f"cannot write {target}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InvalidInputError(f"cannot write {target}: {parent} is not writable")
    return target
