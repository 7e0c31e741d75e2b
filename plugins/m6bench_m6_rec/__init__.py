"""m6-rec: the language-model recommender of M6-Rec (behaviour and items as text).

Cui et al., "M6-Rec: Generative Pretrained Language Models are Open-Ended Recommender
Systems" (arXiv:2205.08084, 2022) write a user's behaviour and each item as plain text and
score them with a pretrained language model, with no id embedding per item.  This package
registers two models:

* ``m6-rec-zero`` (:mod:`m6bench_m6_rec.zero`): nothing trained on interactions; a frozen
  encoder (default all-MiniLM-L6-v2, offline) scores items by bi-encoder cosine or
  late-interaction MaxSim, plus a popularity prior.
* ``m6-rec-tuned`` (:mod:`m6bench_m6_rec.tuned`): the same frozen encoder with a few
  trained tensors: LoRA-shaped residual adapters on its cached pooled vectors (the default,
  :mod:`~m6bench_m6_rec.adapter`), or soft prompts (optionally LoRA adapters in the
  encoder), or both; its score adds m6-rec-zero's frozen MaxSim and a popularity prior
  estimated from item text for items without a count (:mod:`~m6bench_m6_rec.prior`).

Modules: :mod:`~m6bench_m6_rec.text` (templates), :mod:`~m6bench_m6_rec.encoder` (the frozen
transformer, early exit, soft-prompt input), :mod:`~m6bench_m6_rec.scoring` (bi, MaxSim,
int8 item vectors), :mod:`~m6bench_m6_rec.cache` (vectors on disk by content hash).
This package uses only m6bench's public API.
"""

from __future__ import annotations

from typing import Any

from m6bench import hookimpl
from m6bench_m6_rec.tuned import TUNED_SPEC
from m6bench_m6_rec.zero import ZERO_SPEC, ZeroShotRecommender

__all__ = ["TUNED_SPEC", "ZERO_SPEC", "ZeroShotRecommender"]


@hookimpl
def m6bench_register_models(register: Any) -> None:
    register(ZERO_SPEC)
    register(TUNED_SPEC)
