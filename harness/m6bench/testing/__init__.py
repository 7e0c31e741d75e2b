"""The plugin conformance kit: ``check_plugin("NAME")`` checks everything a plugin registers.

Like scikit-learn's ``check_estimator`` or Optuna's sampler test suite, the kit turns the
harness's unwritten assumptions about plugins into named rules and checks each one on a
tiny synthetic benchmark (60 users x 40 items, seconds on a CPU), so a plugin author learns
about a broken contract from a test, not from a leaderboard row that is silently wrong.

For every model the plugin registers, the kit builds it from its defaults, trains one
epoch, and checks output shapes, determinism under a seed, that every search-space sample
builds and trains, that ``.to(device)`` reaches every tensor, that a trained model survives a
``state_dict`` save/load round trip, and that its scores do not depend on held-out
(validation/test) interactions.  For every encoder, fusion and head it checks that the
component builds from its defaults, is deterministic, moves with ``.to()`` and, where the
family has a conventional input, produces the conventional shape.

Use it from a plugin's own tests::

    from m6bench.testing import assert_plugin_conforms

    def test_plugin_conforms():
        assert_plugin_conforms("my-plugin")

``check_plugin`` raises :class:`ConformanceError` listing every broken rule, each as
``plugin X, model Y: rule Z broken: what happened. Fix: what to change``.  The rules are
listed in :data:`RULES` (and in ``docs/writing-a-plugin.md``).

The kit is built on the public API only (``m6bench``), like the plugins it checks: its
benchmarks are prepared with :func:`m6bench.prepare_split`.  Its modules: ``rules``
(one :class:`Rule` per rule, and :data:`RULES`), ``kit`` (running them), ``specs``,
``model_checks``, ``component_checks``, ``package_checks`` (the checks), ``training`` and
``tensors`` (what the checks share), ``bench`` (the tiny benchmark), ``report`` (findings),
``cli`` (``python -m m6bench.testing``).
"""

from __future__ import annotations

from m6bench.testing.bench import KIT_BENCHMARK
from m6bench.testing.cli import main
from m6bench.testing.kit import assert_plugin_conforms, check_plugin
from m6bench.testing.real_data import real_data_folder
from m6bench.testing.report import ConformanceError, ConformanceReport, Finding
from m6bench.testing.rules import ALL_RULES, RULES, Rule

__all__ = [
    "ALL_RULES",
    "KIT_BENCHMARK",
    "RULES",
    "ConformanceError",
    "ConformanceReport",
    "Finding",
    "Rule",
    "assert_plugin_conforms",
    "check_plugin",
    "main",
    "real_data_folder",
]
