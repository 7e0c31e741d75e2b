"""What a model recipe and a component are: the specs plugins register."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna
    import torch

    from m6bench.data.trainset import TrainSet
    from m6bench.training.recommender import Recommender


@dataclass(frozen=True)
class ComponentSpec:
    """One encoder, fusion or task head: ``build(**params) -> torch.nn.Module``.

    ``family`` is ``"encoder"``, ``"fusion"`` or ``"head"``.  ``defaults`` lists every
    parameter ``build`` accepts with its default; the caller's values override them.
    """

    family: str
    name: str
    build: Callable[..., torch.nn.Module]
    defaults: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""


@dataclass(frozen=True)
class ModelSpec:
    """A model recipe.

    ``build(train, config)`` returns a :class:`~m6bench.Recommender` for the training data;
    ``config`` holds every key of ``defaults`` (possibly overridden).  ``search_space(trial)``
    returns a partial config sampled from an Optuna trial.  ``tasks`` lists the tasks the
    model supports (``ranking``, ``rating``, ``binary``); ``protocols`` the protocols it
    supports (``None`` means all).  A plugin that registers several models marks one
    ``default=True``.  ``components`` names the encoders, fusions and heads the recipe
    composes (documentation and the ``models`` listing).  ``choices`` maps a config key to
    its allowed values (e.g. ``{"fusion": ("attention", "concat")}``); a value outside them
    is a configuration error before any data is loaded, as are the search space's samples.
    ``kit_overrides`` are config keys the conformance kit sets over the defaults and over
    every search-space sample: small settings that still run every code path, for a model
    too slow to fit the kit's dozen times on a CPU (a language model: a few tuning steps).
    """

    name: str
    build: Callable[[TrainSet, Mapping[str, Any]], Recommender]
    defaults: Mapping[str, Any] = field(default_factory=dict)
    search_space: Callable[[optuna.Trial], dict[str, Any]] | None = None
    tasks: tuple[str, ...] = ("ranking",)
    protocols: tuple[str, ...] | None = None
    default: bool = False
    description: str = ""
    paper: str = ""
    components: tuple[str, ...] = ()
    choices: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    kit_overrides: Mapping[str, Any] = field(default_factory=dict)
