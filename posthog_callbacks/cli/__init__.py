"""The ``posthog-callbacks`` command line: ``demo`` and ``show``."""

import logging

from .main import main

__all__ = ["main"]

log = logging.getLogger(__name__)
