"""``python -m engine``: the command line, :func:`engine.cli.main` (also ``ai-engine``)."""

from __future__ import annotations

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m engine"))
