"""What m6-rec-tuned trains and on what: soft prompts, LoRA adapters, the in-batch softmax,
and the tuning corpus (interaction pairs with each user's history, from the benchmark's
training part or from another dataset).

Soft prompts follow Lester et al. ("The Power of Scale for Parameter-Efficient Prompt
Tuning", EMNLP 2021), which M6-Rec's "option tuning" builds on: a few trainable input
vectors, initialised from the embeddings of random vocabulary words (closer to what the
frozen model has seen than random noise), while every weight of the encoder stays frozen.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from m6bench import ConfigError, Dataset, LoadContext, TrainSet, load_catalog
from m6bench_m6_rec.adapter import full_softmax
from m6bench_m6_rec.zero import histories, item_texts

# The words each prompt starts as: a task description, which Lester et al. found trains
# better than random vectors; the optimiser takes it from there.
USER_PROMPT_WORDS = "the interests of this user, shown by what they chose"
ITEM_PROMPT_WORDS = "an item this user may choose next"


class SoftPrompts(nn.Module):
    """Two trainable ``(tokens, hidden)`` prompts: one for user inputs, one for item inputs.

    :param word_embeddings: the encoder's ``(vocab, hidden)`` input embedding matrix.
    :param user_words: token ids the user prompt starts as (repeated or cut to ``tokens``).
    :param item_words: the same for the item prompt.
    """

    def __init__(self, tokens: int, word_embeddings: Tensor, user_words: list[int],
                 item_words: list[int]) -> None:
        super().__init__()
        if tokens < 1:
            raise ConfigError(f"m6-rec-tuned: prompt_tokens={tokens} must be at least 1 "
                              "(set --set prompt_tokens=8, for example).")
        self.user = nn.Parameter(self._start(word_embeddings, user_words, tokens))
        self.item = nn.Parameter(self._start(word_embeddings, item_words, tokens))

    @staticmethod
    def _start(word_embeddings: Tensor, words: list[int], tokens: int) -> Tensor:
        ids = torch.tensor([words[i % len(words)] for i in range(tokens)])
        return word_embeddings[ids.to(word_embeddings.device)].detach().clone().float()


def add_lora(model: nn.Module, rank: int) -> nn.ModuleDict:
    """Insert LoRA adapters of ``rank`` into ``model``'s attention query and value projections
    (Hu et al., ICLR 2022, via ``peft``), in place.

    :return: the adapters as one ``ModuleDict``, to register on the recommender so that its
        ``state_dict``, ``.to()`` and optimiser see them (they stay inside ``model`` too,
        where the forward pass uses them).  ``lora_alpha = 2 * rank`` scales them as peft's
        examples do; dropout is off, so training is deterministic.
    """
    from peft import LoraConfig, inject_adapter_in_model

    config = LoraConfig(r=int(rank), lora_alpha=2 * int(rank), lora_dropout=0.0,
                        target_modules=["query", "value"])
    try:
        inject_adapter_in_model(config, model)
    except ValueError as exc:
        raise ConfigError(
            f"m6-rec-tuned: lora={rank} needs attention projections named 'query' and "
            f"'value' in the encoder ({exc}); set lora=0 for this encoder."
        ) from exc
    adapters = nn.ModuleDict()
    for name, module in model.named_modules():
        if name.rsplit(".", 1)[-1] in ("lora_A", "lora_B"):
            adapters[name.replace(".", "__")] = module
    for parameter in adapters.parameters():
        parameter.requires_grad_(True)
    return adapters


def in_batch_softmax(user_vectors: Tensor, item_vectors: Tensor, temperature: float,
                     items: Tensor | None = None, log_q: Tensor | None = None) -> Tensor:
    """Mean cross-entropy of each user's own item among the batch's items.

    Row ``b`` of ``user_vectors`` ``(B, H)`` is paired with row ``b`` of ``item_vectors``;
    the other rows' items are its negatives (sampled softmax with in-batch negatives).
    ``items`` ``(B,)`` (optional) are the items' indices: a repeat of a row's own item in
    another row is not a negative, so its logit is dropped.  ``log_q`` ``(B,)`` (optional)
    is the log probability that each row's item is drawn into a batch; subtracting it from
    that item's column (the logQ correction of Yi et al., RecSys 2019) makes the logit
    estimate ``log p(i | u) - log q(i)`` explicitly rather than through the batch's
    popularity-skewed negatives.
    """
    rows = torch.arange(user_vectors.shape[0], device=user_vectors.device)
    bias = (-log_q if log_q is not None
            else torch.zeros(item_vectors.shape[0], device=item_vectors.device))
    repeats = (items[:, None] == items[None, :] if items is not None
               else torch.zeros(len(rows), len(rows), dtype=torch.bool, device=rows.device))
    repeats[rows, rows] = False
    return full_softmax(user_vectors, item_vectors, bias, temperature, rows, repeats)


@dataclass(frozen=True)
class Corpus:
    """What the prompts are tuned on: ``users``/``items`` int64 ``(n,)`` interaction pairs,
    ``histories[u]`` user ``u``'s items (most recent first) and ``item_texts[i]`` item
    ``i``'s text through the item template."""

    users: np.ndarray
    items: np.ndarray
    histories: list[list[int]]
    item_texts: list[str]


def corpus_of_train(train: TrainSet, item_template: str) -> Corpus:
    """The benchmark's own training interactions as a corpus."""
    return Corpus(train.users.cpu().numpy(), train.items.cpu().numpy(), histories(train),
                  item_texts(train, item_template))


def corpus_of_dataset(dataset: Dataset, item_template: str) -> Corpus:
    """Another dataset's interactions as a corpus (zero-shot transfer): read through the same
    functions as a TrainSet, so both sides write items and histories identically."""
    side = SimpleNamespace(
        users=torch.from_numpy(np.asarray(dataset.users, dtype=np.int64)),
        items=torch.from_numpy(np.asarray(dataset.items, dtype=np.int64)),
        timestamps=(None if dataset.timestamps is None
                    else torch.from_numpy(np.asarray(dataset.timestamps))),
        n_users=dataset.n_users, n_items=dataset.n_items, item_text=None,
        item_features=dataset.item_features, item_feature_kinds=dataset.item_feature_kinds)
    return Corpus(side.users.numpy(), side.items.numpy(), histories(side),
                  item_texts(side, item_template))


def popularity_of(corpus: Corpus, item_texts: list[str]) -> Tensor:
    """How often the corpus has each of ``item_texts`` as a positive, float32 ``(len,)``.

    Items are matched by their text, so counts from another dataset transfer to the items it
    shares with the benchmark (ML-1M and ML-100K write a film identically); an item the corpus
    lacks counts 0.  Given the corpus's own ``item_texts`` list, items are counted by index.
    """
    per_item = np.bincount(corpus.items, minlength=len(corpus.item_texts))
    if item_texts is corpus.item_texts:  # the benchmark's own items: exact, even for twins
        return torch.tensor(per_item, dtype=torch.float32)
    by_text: dict[str, int] = {}
    for text, count in zip(corpus.item_texts, per_item.tolist()):
        by_text[text] = by_text.get(text, 0) + count
    return torch.tensor([by_text.get(text, 0) for text in item_texts], dtype=torch.float32)


def load_tune_dataset(name: str, options: Mapping[str, Any] | None = None) -> Dataset:
    """Load the registered dataset ``name`` through m6bench's public catalog, as the harness
    would (``M6BENCH_DATA_DIR`` for real data, ``M6BENCH_CACHE_DIR`` for downloads)."""
    catalog = load_catalog()
    try:
        spec = catalog.datasets.get(name)
    except Exception as exc:
        raise ConfigError(
            f"m6-rec-tuned: tune_dataset={name!r} is not a registered dataset ({exc}); use "
            "`m6bench datasets` to list them, or leave tune_dataset empty to tune on the "
            "benchmark's training part."
        ) from exc
    cache = (os.environ.get("M6BENCH_CACHE_DIR")
             or str(Path.home() / ".cache" / "m6bench"))
    context = LoadContext(data_dir=os.environ.get("M6BENCH_DATA_DIR") or None,
                          cache_dir=cache)
    return spec.load({**spec.defaults, **dict(options or {})}, context)


def sample_pairs(corpus: Corpus, batch: int, generator: torch.Generator) -> np.ndarray:
    """``batch`` interaction rows of the corpus drawn uniformly from ``generator``."""
    rows = torch.randint(0, len(corpus.users), (batch,), generator=generator,
                         device=generator.device)
    return rows.cpu().numpy()

