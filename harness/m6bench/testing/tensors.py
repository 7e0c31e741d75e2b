"""Comparing tensors and modules the way the rules need: bitwise, or within a tolerance."""

from __future__ import annotations

import io
import math
from collections.abc import Iterator, Mapping
from typing import Any

import torch

from m6bench.testing.report import RuleBroken


def equal(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        if a.layout != torch.strided or b.layout != torch.strided:
            a, b = a.to_dense(), b.to_dense()
        return a.shape == b.shape and a.dtype == b.dtype and bool(torch.equal(a, b.to(a.device)))
    return bool(a == b)


def close(a: torch.Tensor, b: torch.Tensor, device: torch.device,
          tolerance: float = 1e-5) -> bool:
    """Bitwise equal on the CPU (the harness's promise); within a tolerance on GPUs."""
    if a.shape != b.shape:
        return False
    if device.type == "cpu" and tolerance <= 1e-5:
        return bool(torch.equal(a, b))
    return bool(torch.allclose(a.float(), b.float().to(a.device), rtol=tolerance,
                               atol=tolerance))


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    if a.shape != b.shape:
        return math.inf
    return float((a.float() - b.float().to(a.device)).abs().max())


def same_state(first: torch.nn.Module, second: torch.nn.Module, rule: str, how: str,
               fix: str) -> None:
    """Raise ``rule`` broken unless the two modules hold equal state_dicts."""
    a, b = first.state_dict(), second.state_dict()
    if set(a) != set(b):
        raise RuleBroken(rule, f"{how}, the state_dict keys differ: "
                         f"{sorted(set(a) ^ set(b))}", fix)
    differing = [k for k in a if not equal(a[k], b[k])]
    if differing:
        raise RuleBroken(rule, f"{how}, the tensors {differing[:5]} differ", fix)


def round_trip(state: Mapping[str, torch.Tensor]) -> Any:
    """``state`` saved with torch.save and loaded back, as a checkpoint would be."""
    buffer = io.BytesIO()
    torch.save(dict(state), buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def other_device(device: torch.device) -> torch.device | None:
    if device.type == "cpu":
        return torch.device("cuda") if torch.cuda.is_available() else None
    return torch.device("cpu")


def require_no_plain_tensors(module: torch.nn.Module) -> None:
    """Raise ``device-moves`` broken when the module holds tensors .to() would not move."""
    stray = sorted(_stray_tensors(module))
    if stray:
        raise RuleBroken(
            "device-moves",
            f"{', '.join(stray)} {'is a tensor' if len(stray) == 1 else 'are tensors'} "
            "held in plain attributes, which .to(device) does not move (and state_dict "
            "does not save)",
            "register state with self.register_buffer(name, tensor) (add persistent=False "
            "for caches rebuilt from the TrainSet), or recompute it from `train` inside "
            "fit_epoch.")


def _stray_tensors(module: torch.nn.Module) -> Iterator[str]:
    """Attribute paths of tensors a module holds outside its parameters and buffers."""
    internal = set(vars(torch.nn.Module()))
    for prefix, sub in module.named_modules():
        for attr, value in vars(sub).items():
            if attr in internal:
                continue
            path = f"{prefix}.{attr}" if prefix else attr
            yield from _tensors_in(value, f"self.{path}", depth=0)


def _tensors_in(value: Any, path: str, depth: int) -> Iterator[str]:
    # A Parameter held twice (RNNs' _flat_weights) is an alias that .to() updates in place.
    if isinstance(value, torch.nn.Parameter):
        return
    if isinstance(value, torch.Tensor):
        yield path
    elif depth < 3 and isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from _tensors_in(item, f"{path}[{i}]", depth + 1)
    elif depth < 3 and isinstance(value, dict):
        for key, item in value.items():
            yield from _tensors_in(item, f"{path}[{key!r}]", depth + 1)
