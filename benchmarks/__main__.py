"""``python -m benchmarks``: see ``benchmarks.runner``."""

import sys

from .runner import main

sys.exit(main())
