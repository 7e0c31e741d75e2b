"""m6-rec-tuned: the frozen text encoder with trainable soft prompts (optionally LoRA).

A user is the text of their training history (most recent first), an item the text of its
side data; both go through the same frozen encoder, each with its own soft prompt inserted
after [CLS], and are pooled into unit vectors whose dot product is the score.  Only the
prompts (and LoRA adapters when ``lora > 0``) train, with an in-batch sampled softmax over
(user, positive item) pairs; the harness stops early on validation.

Why a popularity prior: the in-batch softmax takes its negatives from the batch's positives,
so in proportion to popularity, and the trained logit estimates ``log p(i | u) - log q(i)``
(Yi et al., "Sampling-bias-corrected neural modeling", RecSys 2019).  Scores add
``popularity_prior * log(1 + n_i)`` back (1 = the full correction), ``n_i`` counting the
tuning corpus's positives of item ``i``, matched by item text.  On cold items every candidate
counts 0, and the ranking is purely textual.

The score adds two frozen terms to the prompted logit (``prompt_weight`` times the cosine
over ``temperature``): ``late_weight`` times m6-rec-zero's behaviour MaxSim (the full-depth
encoder's item vectors: the best cosine of an item with any item of the user's history), and
the prior, whose uncounted items get their ``log(1 + n)`` estimated from their text
(``text_prior``, :mod:`m6bench_m6_rec.prior`).  Why: on ``ml-100k-cold-items`` (seed 0) the
untuned prompted cosine alone scores test NDCG@10 0.193, MaxSim with the text prior 0.269,
and both with 60 tuned steps 0.280 (0.284 at ``prompt_weight`` 0.8); the tuned cosine alone
falls to 0.126, as the in-batch softmax takes popularity out of it, which is exactly what
makes it a complement to the prior.

``tune_dataset`` (a registered dataset name, e.g. ``"ml-1m"``) tunes on that dataset's
interactions instead of the benchmark's: the benchmark's training part is then read only as
each user's history text (zero-shot cross-domain transfer through text).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from m6bench import ConfigError, ModelSpec, Recommender, TrainSet
from m6bench_m6_rec.cache import VectorCache
from m6bench_m6_rec.encoder import DEFAULT_ENCODER, TextEncoder
from m6bench_m6_rec.prior import fit_text_popularity, prior_with_text
from m6bench_m6_rec.prompts import (
    ITEM_PROMPT_WORDS,
    USER_PROMPT_WORDS,
    Corpus,
    SoftPrompts,
    add_lora,
    corpus_of_dataset,
    corpus_of_train,
    in_batch_softmax,
    load_tune_dataset,
    popularity_of,
    sample_pairs,
)
from m6bench_m6_rec.scoring import ITEM_VECTOR_TYPES, dequantise, quantise_item_vectors
from m6bench_m6_rec.text import DEFAULT_ITEM_TEMPLATE, DEFAULT_USER_TEMPLATE, user_text
from m6bench_m6_rec.zero import ZeroShotRecommender

DEFAULTS: dict[str, Any] = {
    "encoder": DEFAULT_ENCODER,
    "layers": 3,  # early exit: the first 3 of MiniLM's 6 layers (0 = all)
    "prompt_tokens": 8,
    "lora": 0,  # 0 = prompts only, else the LoRA rank on query/value
    "lr": 0.05,
    "batch": 32,
    "steps_per_epoch": 30,
    "temperature": 0.05,
    "popularity_prior": 1.0,  # weight of log(1 + positives in the tuning corpus) in scores
    "text_prior": True,  # uncounted items: log(1 + n) estimated from their text (prior.py)
    "text_prior_ridge": 10.0,  # the ridge penalty of that estimate
    "prompt_weight": 0.4,  # weight of the prompted (trained) logit in scores
    "late_weight": 4.0,  # weight of m6-rec-zero's frozen behaviour MaxSim in scores (0 = off)
    "max_history_tokens": 64,
    "max_item_tokens": 32,
    "tune_dataset": "",  # "" = the benchmark's training part
    "user_template": DEFAULT_USER_TEMPLATE,
    "item_template": DEFAULT_ITEM_TEMPLATE,
    "score_batch": 64,
    "item_vectors": "float32",  # "int8": item vectors stored per-row int8 for scoring
    # At most 4 x 30 steps of 32 pairs: a step backpropagates through 3 layers for 64
    # user texts' worth of tokens (~2.8 s on one busy core), so tuning stays within
    # minutes; validation after every 30 steps lets early stopping keep the best prompts.
    "epochs": 4,
    "patience": 2,
}


class TunedRecommender(Recommender):
    """m6-rec-tuned (see the module docstring).

    State: the prompts and adapters are parameters (the only ones, so the ``state_dict`` is
    small); the frozen encoder is loaded again by every build and kept outside the module
    tree; token ids are non-persistent buffers; item vectors are cached for scoring in a
    non-persistent buffer, recomputed whenever the item prompt or an adapter has changed.
    """

    iterative = True

    def __init__(self, train: TrainSet, config: Mapping[str, Any]) -> None:
        super().__init__(train, config)
        cfg = self.config
        for key in ("batch", "steps_per_epoch", "max_history_tokens", "max_item_tokens",
                    "score_batch"):
            if int(cfg[key]) < 1:
                raise ConfigError(f"m6-rec-tuned: {key}={cfg[key]} must be at least 1.")
        if float(cfg["temperature"]) <= 0:
            raise ConfigError(f"m6-rec-tuned: temperature={cfg['temperature']} must be "
                              "positive (e.g. --set temperature=0.05).")
        self.encoder = TextEncoder(str(cfg["encoder"]), layers=int(cfg["layers"]) or None,
                                   device=train.device)
        tokenizer = self.encoder.tokenizer

        def word_ids(text: str) -> list[int]:
            return list(tokenizer(text, add_special_tokens=False)["input_ids"])

        self._count_tokens = functools.cache(lambda text: len(word_ids(text)))
        self.prompts = SoftPrompts(int(cfg["prompt_tokens"]),
                                   self.encoder.model.get_input_embeddings().weight,
                                   word_ids(USER_PROMPT_WORDS), word_ids(ITEM_PROMPT_WORDS))
        self.adapters = (add_lora(self.encoder.model, int(cfg["lora"])) if int(cfg["lora"])
                         else nn.ModuleDict())

        own = corpus_of_train(train, str(cfg["item_template"]))
        self._register_tokens("user", [self._user_text(h, own.item_texts)
                                       for h in own.histories], int(cfg["max_history_tokens"]))
        self._register_tokens("item", own.item_texts, int(cfg["max_item_tokens"]))
        self.register_buffer("item_vectors", torch.empty(0), persistent=False)
        self._item_vectors_key: tuple[Any, ...] = ()
        self.corpus: Corpus = (
            corpus_of_dataset(load_tune_dataset(str(cfg["tune_dataset"])),
                              str(cfg["item_template"]))
            if cfg["tune_dataset"] else own)
        # The frozen full-depth scorer of m6-rec-zero: its item vectors feed the text prior
        # and its MaxSim the late term.  Kept outside the module tree (object.__setattr__):
        # its buffers are no state of this model and are rebuilt by every build.
        zero = ZeroShotRecommender(train, {
            "encoder": cfg["encoder"], "item_template": cfg["item_template"],
            "user_template": cfg["user_template"], "scoring": "late",
            "text_weight": 1.0, "popularity_prior": 0.0})
        zero.fit_epoch(train, 1)
        object.__setattr__(self, "zero_shot", zero.eval())
        counts = popularity_of(self.corpus, own.item_texts)
        self.register_buffer("prior", self._prior(counts), persistent=False)
        self.optimiser = torch.optim.Adam(self.trained_parameters(), lr=float(cfg["lr"]))

    # ------------------------------------------------------------------ parameters
    def trained_parameters(self) -> list[nn.Parameter]:
        """The prompts and LoRA adapters: every tensor the optimiser updates."""
        return [p for p in self.parameters() if p.requires_grad]

    def trained_parameter_count(self) -> int:
        """The optimiser's tensors plus the text prior's fitted coefficients."""
        fitted = self.text_prior_coefficients.numel() if bool(self.config["text_prior"]) else 0
        return sum(p.numel() for p in self.trained_parameters()) + fitted

    def _prior(self, counts: torch.Tensor) -> torch.Tensor:
        """Each benchmark item's prior: ``log(1 + n_i)``, or its text estimate fitted on the
        tuning corpus's items when the corpus has no count for it (``text_prior``)."""
        if not bool(self.config["text_prior"]):
            self.register_buffer("text_prior_coefficients", torch.zeros(0), persistent=False)
            return torch.log1p(counts)
        zero = self.zero_shot
        vectors = zero.item_vectors.cpu()
        corpus_vectors = (vectors if self.corpus.item_texts == zero.item_texts else
                          VectorCache(zero.encoder, str(self.config["item_template"]),
                                      int(zero.config["max_item_tokens"]))
                          .pooled(self.corpus.item_texts))
        corpus_counts = torch.from_numpy(np.bincount(
            self.corpus.items, minlength=len(self.corpus.item_texts))).float()
        coefficients = fit_text_popularity(corpus_vectors, corpus_counts,
                                           float(self.config["text_prior_ridge"]))
        self.register_buffer("text_prior_coefficients", coefficients, persistent=False)
        return prior_with_text(counts, vectors, coefficients)

    def frozen_parameter_count(self) -> int:
        """The encoder's own weights, adapters excluded: all its layers, which the frozen
        late term and text prior run (the early-exited prompted encoder is a prefix of the
        same weights)."""
        prompted = sum(p.numel() for p in self.encoder.model.parameters()
                       if not p.requires_grad)
        return max(prompted, self.zero_shot.encoder.parameter_count())

    def parameter_count(self) -> int:
        """Everything scoring needs: the frozen encoder plus the trained tensors (the record's
        ``parameters``; the curve reports the trained ones apart)."""
        return self.frozen_parameter_count() + self.trained_parameter_count()

    # ------------------------------------------------------------------ training
    def fit_epoch(self, train: TrainSet, epoch: int) -> Mapping[str, float]:
        cfg = self.config
        self._encoder_to_device()
        total = 0.0
        for _ in range(int(cfg["steps_per_epoch"])):
            rows = sample_pairs(self.corpus, int(cfg["batch"]), train.generator)
            loss = self._pair_loss(self.corpus.users[rows], self.corpus.items[rows])
            self.optimiser.zero_grad(set_to_none=True)
            loss.backward()
            self.optimiser.step()
            total += float(loss.detach())
        return {"loss": total / int(cfg["steps_per_epoch"]),
                "trained_parameters": float(self.trained_parameter_count()),
                "total_parameters": float(self.parameter_count())}

    def _pair_loss(self, users: np.ndarray, items: np.ndarray) -> Tensor:
        """The in-batch softmax of corpus pairs; each user's text leaves out the item it is
        paired with, as evaluation ranks items absent from the history text."""
        cfg = self.config
        corpus = self.corpus
        texts = [self._user_text([i for i in corpus.histories[u] if i != target],
                                 corpus.item_texts)
                 for u, target in zip(users.tolist(), items.tolist())]
        user_vectors = self._vectors(texts, int(cfg["max_history_tokens"]), self.prompts.user)
        item_vectors = self._vectors([corpus.item_texts[i] for i in items.tolist()],
                                     int(cfg["max_item_tokens"]), self.prompts.item)
        repeats = torch.as_tensor(items, device=user_vectors.device)
        return in_batch_softmax(user_vectors, item_vectors, float(cfg["temperature"]), repeats)

    def _user_text(self, history: Sequence[int], item_texts: Sequence[str]) -> str:
        """The user template over ``history`` (most recent first), capped at whole items
        within ``max_history_tokens`` tokens of the encoder's tokenizer."""
        return user_text(history, item_texts.__getitem__, str(self.config["user_template"]),
                         max_tokens=int(self.config["max_history_tokens"]),
                         count_tokens=self._count_tokens)

    def _vectors(self, texts: list[str], max_tokens: int, prompt: Tensor) -> Tensor:
        ids, mask = self.encoder.tokenize(texts, max_tokens)
        return self._pooled(ids, mask, prompt)

    def _pooled(self, ids: Tensor, mask: Tensor, prompt: Tensor) -> Tensor:
        """The encoder's pooled vector of the text alone: the prompt steers every token
        through attention, but its own output positions are left out of the mean, so an
        untrained prompt starts near the pretrained sentence vector."""
        hidden, extended = self.encoder.token_vectors(ids, mask, prompt)
        text_only = extended.clone()
        text_only[:, 1:1 + prompt.shape[0]] = 0
        return self.encoder.pooled(hidden, text_only)

    # ------------------------------------------------------------------ scoring
    def score(self, users: Tensor) -> Tensor:
        self._encoder_to_device()
        with torch.no_grad():
            items = self._cached_item_vectors()
            ids = self.user_ids[users.to(self.user_ids.device)]
            mask = self.user_mask[users.to(self.user_mask.device)]
            vectors = self._encode_rows(ids, mask, self.prompts.user)
            cfg = self.config
            scores = (float(cfg["prompt_weight"]) / float(cfg["temperature"])) * (vectors @ items.T)
            scores = scores + float(cfg["popularity_prior"]) * self.prior
            if float(cfg["late_weight"]):
                late = self.zero_shot.relevance(users.to(self.zero_shot.history.device))
                scores = scores + float(cfg["late_weight"]) * late.to(scores.device)
            return scores.to(users.device)

    def _cached_item_vectors(self) -> Tensor:
        """Item vectors, computed once per state of the item prompt and adapters (the
        tensors' in-place version counters change with every optimiser step and every
        ``load_state_dict``)."""
        watched = [self.prompts.item, *self.adapters.parameters()]
        key = (str(self.prompts.item.device), *((id(p), p._version) for p in watched))
        if key != self._item_vectors_key or self.item_vectors.numel() == 0:
            vectors = self._encode_rows(self.item_ids, self.item_mask, self.prompts.item)
            if self.config["item_vectors"] == "int8":  # scored as a served int8 copy would be
                vectors = dequantise(*quantise_item_vectors(vectors))
            self.item_vectors = vectors
            self._item_vectors_key = key
        return self.item_vectors

    def _encode_rows(self, ids: Tensor, mask: Tensor, prompt: Tensor) -> Tensor:
        """Pooled vectors of pre-tokenised rows, in chunks of ``score_batch`` rows.

        Every chunk has the same shape (the last one is padded with copies of its first
        row), so a row's vector does not depend on which rows share its chunk: scores are
        bitwise the same whatever the evaluator's batch size.
        """
        chunk = int(self.config["score_batch"])
        out = []
        for start in range(0, ids.shape[0], chunk):
            part_ids, part_mask = ids[start:start + chunk], mask[start:start + chunk]
            rows = part_ids.shape[0]
            if rows < chunk:
                fill = chunk - rows
                part_ids = torch.cat([part_ids, part_ids[:1].expand(fill, -1)])
                part_mask = torch.cat([part_mask, part_mask[:1].expand(fill, -1)])
            out.append(self._pooled(part_ids, part_mask, prompt)[:rows])
        if not out:
            return torch.zeros(0, self.encoder.hidden_size, device=ids.device)
        return torch.cat(out)

    # ------------------------------------------------------------------ plumbing
    def _register_tokens(self, side: str, texts: list[str], max_tokens: int) -> None:
        """Token ids and masks of ``texts`` as non-persistent buffers ``{side}_ids`` and
        ``{side}_mask`` (rebuilt from the TrainSet by every build, so not saved)."""
        ids, mask = self.encoder.tokenize(texts, max_tokens)
        self.register_buffer(f"{side}_ids", ids, persistent=False)
        self.register_buffer(f"{side}_mask", mask, persistent=False)

    def _encoder_to_device(self) -> None:
        """The encoder is outside the module tree (its weights are not state), so
        ``.to(device)`` reaches it here, following the prompts."""
        device = self.prompts.user.device
        if self.encoder.device != device:
            self.encoder.model.to(device)
            self.encoder.device = device


def _build(train: TrainSet, config: Mapping[str, Any]) -> Recommender:
    return TunedRecommender(train, config)


def _search_space(trial: Any) -> dict[str, Any]:
    return {
        "lr": trial.suggest_float("lr", 1e-3, 5e-2, log=True),
        "temperature": trial.suggest_float("temperature", 0.02, 0.2, log=True),
        "prompt_tokens": trial.suggest_categorical("prompt_tokens", [4, 8, 16]),
    }


TUNED_SPEC = ModelSpec(
    name="m6-rec-tuned",
    build=_build,
    defaults=DEFAULTS,
    search_space=_search_space,
    choices={"item_vectors": ITEM_VECTOR_TYPES},
    tasks=("ranking",),
    description="M6-Rec with the encoder frozen: soft prompts on the user and item text "
    "(optionally LoRA) tuned with an in-batch sampled softmax; tune_dataset tunes on "
    "another dataset (zero-shot transfer).",
    paper="Cui et al., M6-Rec, arXiv 2205.08084; Lester et al., EMNLP 2021",
    # the kit fits a dozen times: two steps still run every path (prompts, prior, MaxSim)
    kit_overrides={"steps_per_epoch": 2},
)
