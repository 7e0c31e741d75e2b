"""What a sweep is: its spec (who, where, budget) and the trial attributes it keeps in Optuna."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# A trial that failed for a reason of its own (not a dead worker) carries this user attribute.
ERROR_ATTR = "m6bench_error"
# Trial 0 runs the recipe's defaults as they are, without asking the search space: defaults
# need not be points of it (weight decay 0 outside a log range, a list built from a choice).
DEFAULTS_ATTR = "m6bench_defaults"
# The config keys a trial set (fixed ones and sampled ones): Optuna's params are the search
# space's own names and values (a width from which a layer list is built), not config keys.
OVERRIDES_ATTR = "m6bench_overrides"
# A sampled config the study already evaluated (or is evaluating) is not run again: its trial
# is failed with this attribute (no error attribute, so it does not count against the
# budget, and it has no ledger record) and the sampler asked again.
DUPLICATE_ATTR = "m6bench_duplicate"
# A trial that gave way because other workers' trials already filled the budget: not run.
SKIPPED_ATTR = "m6bench_skipped"


@dataclass(frozen=True)
class SweepSpec:
    """What defines a study: who, where, and the budget every model gets."""

    plugin: str
    model: str
    benchmark: str
    trials: int | None
    timeout: float | None
    pruner: str = "median"
    sampler_seed: int = 0
    trial_seed: int = 0
    overrides: Mapping[str, Any] = field(default_factory=dict)

    @property
    def budget(self) -> dict[str, Any]:
        return {"trials": self.trials, "timeout_s": self.timeout, "sampler": "tpe",
                "sampler_seed": self.sampler_seed, "pruner": self.pruner}

    def study_name(self, benchmark_version: str) -> str:
        budget = f"t{self.trials}" if self.trials else "t-"
        if self.timeout:
            budget += f"s{int(self.timeout)}"
        return f"{self.plugin}.{self.model}@{self.benchmark}-{benchmark_version}:{budget}"

