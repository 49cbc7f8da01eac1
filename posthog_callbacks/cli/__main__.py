"""``python -m posthog_callbacks.cli``."""

import sys

from .main import main

sys.exit(main())
