"""Acquisition-time autofocus and focus-quality flagging for Micro-Manager.

Importing this package is light: torch, zmq and the acquisition libraries are only
imported by the modules that use them.
"""

from autofocus.errors import AutofocusError
from autofocus.optics import OBJECTIVE_PRESETS, Objective, get_objective

__version__ = "0.1.0"

__all__ = ["OBJECTIVE_PRESETS", "AutofocusError", "Objective", "__version__", "get_objective"]
