"""``python -m posthog_callbacks.cli``."""

import logging
import sys

from .main import main

log = logging.getLogger(__name__)

sys.exit(main())
