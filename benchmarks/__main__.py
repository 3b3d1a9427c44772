"""``python -m benchmarks``: the one benchmark command (see :mod:`benchmarks.run`)."""

from benchmarks.run import main

raise SystemExit(main())
