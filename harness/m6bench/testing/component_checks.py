"""The checks of a registered encoder, fusion or head, one function per rule."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from m6bench import ComponentSpec
from m6bench.testing.cases import ComponentCase
from m6bench.testing.report import NotChecked, RuleBroken, describe, short
from m6bench.testing.tensors import equal, require_no_plain_tensors, round_trip, same_state

_BATCH = 5
Probe = Callable[[torch.nn.Module], Any]


def build_component(spec: ComponentSpec, seed: int, **params: Any) -> torch.nn.Module:
    torch.manual_seed(seed)
    try:
        module = spec.build(**{**spec.defaults, **params})
    except Exception as exc:
        raise RuleBroken(
            "component-builds",
            f"build(**{short(dict(spec.defaults))}) raised {describe(exc)}",
            "make build() work with the defaults alone: list every parameter build takes "
            "in ComponentSpec.defaults with a value that works.") from exc
    if not isinstance(module, torch.nn.Module):
        raise RuleBroken(
            "component-builds", f"build() returned {short(module)}, not a torch.nn.Module",
            "return an nn.Module so the model owning it registers its parameters and "
            "moves them with .to().")
    return module


def check_builds(case: ComponentCase) -> str:
    case.module = build_component(case.spec, case.kit.seed)
    return type(case.module).__name__


def check_shapes(case: ComponentCase) -> str:
    """Run the family's conventional input through the module, where the family has one.

    Encoders of ids (``num`` and ``dim`` parameters), fusions of two vectors and heads
    of two score vectors have a convention; anything else is exercised through the
    models that compose it, so the probe is not checked, with the reason, rather than failed.
    """
    assert case.module is not None
    probe, expected, width = _conventional_input(case)
    try:
        with torch.no_grad():
            out = probe(case.module.eval())
    except Exception as exc:
        raise NotChecked(f"its conventional {case.family} input raised {describe(exc)}; it "
                         "is exercised through the models that use it") from exc
    if not isinstance(out, torch.Tensor):
        raise RuleBroken("component-shapes", f"it returned {short(out)}, not a tensor",
                         f"return a tensor from the {case.family}'s forward().")
    if expected is not None and tuple(out.shape) != expected:
        raise RuleBroken(
            "component-shapes",
            f"ids of shape ({_BATCH},) gave shape {tuple(out.shape)}, expected "
            f"{expected} (batch, dim)",
            "return one dim-sized vector per id: shape (len(ids), dim).")
    if case.family == "fusion" and (out.dim() == 0 or out.shape[0] != _BATCH):
        raise RuleBroken(
            "component-shapes",
            f"two ({_BATCH}, {width}) inputs gave shape {tuple(out.shape)}; the "
            f"batch dimension {_BATCH} was lost",
            "keep the batch as the first dimension of a fusion's output.")
    if out.is_floating_point() and not bool(torch.isfinite(out).all()):
        raise RuleBroken("component-shapes", "its output has NaN or infinite values",
                         "keep the forward pass finite for finite inputs (guard "
                         "divisions and logs).")
    case.probe = probe
    return f"output {tuple(out.shape)}"


def _conventional_input(case: ComponentCase) -> tuple[Probe, tuple[int, ...] | None, int]:
    """The family's probe, the output shape it must give (None: any with the batch first)
    and the width of a fusion's inputs."""
    generator = torch.Generator().manual_seed(case.kit.seed)
    defaults = case.spec.defaults
    if case.family == "encoder":
        if not {"num", "dim"} <= set(defaults):
            raise NotChecked("only id encoders (parameters num and dim) have a conventional "
                             "input; this one is exercised through the models that use it")
        index = torch.arange(_BATCH) % max(1, int(defaults["num"]))
        return (lambda m: m(index)), (_BATCH, int(defaults["dim"])), 0
    if case.family == "fusion":
        width = int(defaults["in_dim"]) // 2 if "in_dim" in defaults else 8
        left = torch.randn(_BATCH, width, generator=generator)
        right = torch.randn(_BATCH, width, generator=generator)
        return (lambda m: m(left, right)), None, width
    scores = torch.randn(2, _BATCH, generator=generator)
    return (lambda m: m(scores[0], scores[1])), None, 0


def check_determinism(case: ComponentCase) -> None:
    assert case.module is not None
    twin = build_component(case.spec, case.kit.seed)
    same_state(case.module, twin, "determinism",
               f"built twice after torch.manual_seed({case.kit.seed})",
               "draw all randomness of build() from torch's global generator "
               "(which the harness seeds) and nothing else: no time, os.urandom "
               "or unseeded numpy generators.")


def check_device_moves(case: ComponentCase) -> None:
    assert case.module is not None
    require_no_plain_tensors(case.module)


def check_save_load(case: ComponentCase) -> None:
    module = case.module
    assert module is not None
    fresh = build_component(case.spec, case.kit.seed + 1)
    try:
        fresh.load_state_dict(round_trip(module.state_dict()))
    except Exception as exc:
        raise RuleBroken("save-load", f"loading its saved state_dict into a freshly "
                         f"built one raised {describe(exc)}",
                         "give every parameter and buffer its final shape in build(), "
                         "so a saved state loads into a fresh module.") from exc
    if case.probe is not None:
        with torch.no_grad():
            same = equal(case.probe(module.eval()), case.probe(fresh.eval()))
        if not same:
            raise RuleBroken(
                "save-load", "after loading the saved state_dict into a module built "
                "under another seed, the outputs differ",
                "keep all state the forward pass reads in parameters or buffers "
                "(register_buffer), not in plain attributes.")
