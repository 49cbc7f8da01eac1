"""The ``posthog-callbacks`` command line: ``demo`` and ``show``."""

from .main import main

__all__ = ["main"]
