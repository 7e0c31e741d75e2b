"""``python -m m6bench.testing NAME``: run the conformance kit on a plugin or a model."""

from m6bench.testing.cli import main

raise SystemExit(main())
