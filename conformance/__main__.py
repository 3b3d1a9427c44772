"""``python -m conformance`` from the repository root: ``python -m engine.conformance``."""

import sys

from engine.conformance.__main__ import main

sys.exit(main())
