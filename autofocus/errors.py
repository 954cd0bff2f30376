"""One error hierarchy for the whole project.

Every entry point (CLI, hooks, service, library calls) raises a subclass of
:class:`AutofocusError` for bad input or a failed operation, so callers can catch
one type.  Several subclasses also derive from the matching built-in exception
(``ValueError``, ``KeyError``, ``TimeoutError``) so generic handlers still work.
"""

from __future__ import annotations

__all__ = [
    "AutofocusError",
    "AutofocusTimeoutError",
    "CalibrationError",
    "FocusSearchError",
    "HardwareError",
    "InvalidFrameError",
    "InvalidInputError",
    "ModelWeightsError",
    "ProtocolError",
    "RemoteError",
    "ReplayError",
    "ServiceError",
    "StageLimitError",
    "UnknownNameError",
]


class AutofocusError(Exception):
    """Base class of every error this project raises on purpose."""


class InvalidInputError(AutofocusError, ValueError):
    """An argument or a file's content is not acceptable (wrong type, range, shape...)."""


class InvalidFrameError(InvalidInputError):
    """An image is unusable: wrong dtype or dimensionality, NaN/inf, too small."""


class UnknownNameError(AutofocusError, KeyError):
    """A named thing (objective, specimen, model, calibration) does not exist."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class HardwareError(AutofocusError):
    """A device refused a command or reported an unexpected state."""


class StageLimitError(HardwareError, InvalidInputError):
    """A requested stage position lies outside the soft limits."""


class ReplayError(InvalidInputError):
    """A recorded z-stack for replay is empty, inconsistent or unreadable."""


class ModelWeightsError(AutofocusError):
    """Shipped model weights are missing, corrupted or do not match their model card."""


class CalibrationError(AutofocusError):
    """A calibration could not be made, failed a quality gate, or does not apply."""


class FocusSearchError(AutofocusError):
    """The autofocus search could not find focus (raised under ``on_failure='raise'``)."""


class ServiceError(AutofocusError):
    """The ZMQ service answered with an error reply or broke the protocol."""


class AutofocusTimeoutError(ServiceError, TimeoutError):
    """A remote call did not answer within its timeout."""


class ProtocolError(ServiceError, InvalidInputError):
    """A service message is malformed or breaks the protocol.

    ``code`` is the error code of the reply (``bad_message``, ``invalid_request``...);
    ``request_id`` and ``cmd`` are filled in when the header could be read.
    """

    def __init__(
        self,
        message: str,
        code: str = "invalid_request",
        *,
        request_id: str | None = None,
        cmd: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.request_id = request_id
        self.cmd = cmd


class RemoteError(ServiceError):
    """The service answered a request with an error reply (``code``, message)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"[{code}] {message}")
        self.code = code
