"""``python -m m6bench.testing NAME``: print every finding of the kit; exit 1 if any failed."""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence

from m6bench import PluginFailureWarning, load_catalog
from m6bench.testing.kit import check_plugin


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m m6bench.testing NAME [--device D] [--model M]``.

    ``NAME`` is a plugin, as `m6bench plugins` lists it, or a model, as `m6bench models`
    lists it: a model's name checks the plugin that registers it, that model only.
    """
    parser = argparse.ArgumentParser(prog="python -m m6bench.testing",
                                     description="Run the conformance kit on a plugin.")
    parser.add_argument("plugin", metavar="NAME",
                        help="a plugin's name, as `m6bench plugins` lists it, or a model's, "
                             "as `m6bench models` lists it")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N")
    parser.add_argument("--model", action="append", dest="models", default=None,
                        help="check only this model (repeatable)")
    args = parser.parse_args(argv)
    with warnings.catch_warnings():
        # failures are findings here, not warnings
        warnings.simplefilter("ignore", PluginFailureWarning)
        catalog = load_catalog()
    plugin, models = args.plugin, args.models
    if plugin not in catalog.plugins and plugin in catalog.models:
        plugin, models = catalog.models.entry(plugin).plugin, [plugin]
    report = check_plugin(plugin, catalog=catalog, device=args.device, models=models,
                          raise_on_failure=False)
    sys.stdout.write(report.summary() + "\n")
    if report.failures:
        sys.stdout.write("\n" + report.failure_text() + "\n")
    return 1 if report.failures else 0
