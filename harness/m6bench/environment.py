"""Where m6bench looks, read from the environment and package metadata alone.

The entry-point group plugins are found by, the switch that turns some off, and the cache
folder are needed both by commands that must answer before torch loads (``m6bench --help``,
``plugins``, a plugin typo) and by the catalog and data layers; this module imports nothing
heavy so that all of them read the same rule.
"""

from __future__ import annotations

import importlib.metadata
import os
from pathlib import Path

ENTRY_POINT_GROUP = "m6bench"
DISABLE_ENV = "M6BENCH_DISABLE_PLUGINS"
CACHE_DIR_ENV = "M6BENCH_CACHE_DIR"


def disabled_plugins() -> set[str]:
    """The plugin names listed (comma-separated) in ``M6BENCH_DISABLE_PLUGINS``."""
    return {name.strip() for name in os.environ.get(DISABLE_ENV, "").split(",")
            if name.strip()}


def plugin_entry_points() -> list[importlib.metadata.EntryPoint]:
    """The installed ``m6bench`` entry points by name, the disabled ones left out; nothing
    is imported."""
    disabled = disabled_plugins()
    return [ep for ep in sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP),
                                key=lambda e: e.name)
            if ep.name not in disabled]


def cache_dir() -> Path:
    """m6bench's cache folder: ``$M6BENCH_CACHE_DIR``, else ``$XDG_CACHE_HOME/m6bench``, else
    ``~/.cache/m6bench``.  Plugins keep their own caches in a subfolder of it."""
    configured = os.environ.get(CACHE_DIR_ENV)
    if configured:
        return Path(configured).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "m6bench"
