"""``python -m m6bench.testing NAME``: run the conformance kit on a registered model."""

from m6bench.testing import main

raise SystemExit(main())
