"""CurveZMQ key files for a service reachable beyond loopback."""

from __future__ import annotations

from pathlib import Path

from autofocus.errors import InvalidInputError

__all__ = ["create_curve_keys"]


def create_curve_keys(folder: str | Path, name: str = "server") -> tuple[Path, Path]:
    """Write ``NAME.key`` (public, give it to clients) and ``NAME.key_secret`` (keep it
    on the server) in ``folder``; returns both paths.  Refuses to overwrite keys."""
    import zmq.auth

    folder = Path(folder)
    public, secret = folder / f"{name}.key", folder / f"{name}.key_secret"
    if public.exists() or secret.exists():
        raise InvalidInputError(f"{public} or {secret} already exists; not overwriting keys")
    folder.mkdir(parents=True, exist_ok=True)
    pub, sec = zmq.auth.create_certificates(str(folder), name)
    Path(sec).chmod(0o600)
    return Path(pub), Path(sec)
