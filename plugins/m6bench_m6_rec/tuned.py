"""m6-rec-tuned: the frozen text encoder with a few trained tensors, in one of three modes.

A user is the text of their training history (most recent first), an item the text of its
side data; the encoder stays frozen.  ``tuning`` chooses what trains, always with a sampled
softmax over (user, positive item) pairs and the harness's early stopping on validation:

* ``"adapter"`` (default, :mod:`m6bench_m6_rec.adapter`): two LoRA-shaped residual adapters
  (rank ``adapter_rank``) on the frozen, cached pooled item vectors, a user being the mean
  vector of their history's items, and (``adapter_loss="full"``, the default) a text bias
  head, trained with a softmax over every item the corpus counts.  No gradient reaches the
  encoder, so tuning takes seconds per epoch.
* ``"prompt"``: M6-Rec's option tuning, two soft prompts (user side, item side) inserted
  after [CLS] and pooled through the first ``layers`` layers; optionally LoRA adapters in
  the encoder's attention through peft (``lora > 0``); in-batch negatives.  Every step
  backpropagates through the encoder (~2.8 s per 32 pairs on one busy core).
* ``"both"``: the two, their logits added.

The popularity prior: scores add ``popularity_prior * log(1 + n_i)``, ``n_i`` counting the
tuning corpus's positives of item ``i``, matched by item text; an item the corpus does not
count gets an estimate from its text (``text_prior``, :mod:`m6bench_m6_rec.prior`).  Under
an in-batch softmax it puts back what the batch's popularity-skewed negatives take out
(the trained logit estimates ``log p(i | u) - log q(i)``, Yi et al., RecSys 2019).  Under
the full softmax the text bias already carries popularity; the prior still helps cold
items, as a second, closed-form estimate of it (validation below).  A third, frozen term
is ``late_weight`` times m6-rec-zero's behaviour MaxSim (the best cosine of an item with
any item of the user's history), off by default.

Why these defaults.  On ``ml-100k-cold-items`` (test NDCG@10, 5 seeds, each epoch and term
weight picked by validation): soft prompts (4 x 30 steps, ~480 s a run) 0.278; adapters
with the in-batch loss, the late term at 4 and the prior (~45 s) 0.316; the full loss
with text dropout 0.5, its text bias and the prior 0.372, where m6-fusion scores 0.347.
The in-batch loss learns the user's taste but leaves popularity to the prior, whose ridge
estimate from text is weak; the full softmax learns both from the same text, and its
dropout keeps the adapters and the head from fitting the warm items' exact vectors
(without it 0.297, and seed 0's validation fell from 0.476 after one epoch to 0.389 after
eight).  In the same study: Adam at 0.003 beat 0.01 (0.393 against 0.378 on seeds 0 and
2-4; at 0.01 one seed fell from 0.31 to 0.23 in two epochs); a linear bias 0.360; epochs
of 100 steps no better (0.360 with dropout 0.5 on seeds 0-2, 0.358 with 0.7 on seeds
0-3); the late term no help once the loss is full.

``tune_dataset`` (a registered dataset name, e.g. ``"ml-1m"``) tunes on that dataset's
interactions instead of the benchmark's: the benchmark's training part is then read only as
each user's history (zero-shot cross-domain transfer through text).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from m6bench import ConfigError, ModelSpec, Recommender, TrainSet
from m6bench_m6_rec.adapter import (
    BehaviourAdapters,
    TextPopularityHead,
    full_softmax,
    history_csr,
    history_means,
    history_sums,
    leave_one_out_means,
    other_positives,
)
from m6bench_m6_rec.cache import VectorCache
from m6bench_m6_rec.encoder import DEFAULT_ENCODER, TextEncoder
from m6bench_m6_rec.prior import (
    fit_text_popularity,
    neighbour_popularity,
    prior_with_estimate,
    text_popularity,
)
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

TUNINGS = ("adapter", "prompt", "both")
ADAPTER_LOSSES = ("full", "in-batch")  # see adapter.py
# "auto": ridge on the benchmark's own counts, knn on another dataset's (see prior.py)
TEXT_PRIORS = ("auto", "ridge", "knn", "off")
DEFAULTS: dict[str, Any] = {
    "encoder": DEFAULT_ENCODER,
    "tuning": "adapter",  # what trains: "adapter", "prompt" or "both" (module docstring)
    # --- prompt mode
    "layers": 3,  # early exit of the prompted encoder: its first 3 of 6 layers (0 = all)
    "prompt_tokens": 8,
    "lora": 0,  # 0 = prompts only, else the LoRA rank on query/value
    "lr": 0.05,
    "batch": 32,
    "steps_per_epoch": 30,
    "prompt_weight": 0.4,  # weight of the prompted (trained) logit in scores
    "max_history_tokens": 64,
    "max_item_tokens": 32,
    "score_batch": 64,
    # --- adapter mode: 300 steps of 256 pairs are about one pass over ml-100k's training
    # pairs, a few seconds on one core
    "adapter_rank": 16,
    "adapter_lr": 0.003,
    "adapter_batch": 256,
    "adapter_steps_per_epoch": 300,
    "adapter_weight": 1.0,  # weight of the adapted logit in scores
    "adapter_loss": "full",  # "full": all counted items, a text bias; "in-batch": logQ
    "text_dropout": 0.5,  # full loss: dropout on the item vectors in training
    "popularity_head": 64,  # full loss: hidden width of the text bias (0 = linear)
    # --- both modes
    "temperature": 0.05,
    "popularity_prior": 1.0,  # weight of log(1 + positives in the tuning corpus) in scores
    "text_prior": "auto",  # uncounted items' log(1 + n) from their text (prior.py)
    "text_prior_ridge": 10.0,  # ridge: its penalty
    "text_prior_neighbours": 10,  # knn: how many counted items
    "text_prior_temperature": 0.05,  # knn: the softmax temperature of their cosines
    "late_weight": 0.0,  # weight of m6-rec-zero's frozen behaviour MaxSim in scores (0 = off)
    "tune_dataset": "",  # "" = the benchmark's training part
    "user_template": DEFAULT_USER_TEMPLATE,
    "item_template": DEFAULT_ITEM_TEMPLATE,
    "item_vectors": "float32",  # "int8": item vectors stored per-row int8 for scoring
    # Eight epochs, validation after each: early stopping keeps the best state.  An adapter
    # epoch takes ~12 s on ml-100k; in prompt mode an epoch is 30 steps of 32 pairs (a step
    # backpropagates through 3 layers for 64 texts' worth of tokens, ~2.8 s on one busy
    # core), so at most ~11 minutes.
    "epochs": 8,
    "patience": 3,
}


class TunedRecommender(Recommender):
    """m6-rec-tuned (see the module docstring).

    State: the trained tensors are the parameters (the only ones, so the ``state_dict`` is
    small): soft prompts and LoRA adapters in prompt mode, the two residual adapters
    (``vector_adapters``) in adapter mode.  The frozen encoders are loaded again by every
    build and kept outside the module tree; token ids, vectors, counts and the prior are
    non-persistent buffers rebuilt from the training data.  Prompted item vectors are
    cached for scoring, recomputed whenever the item prompt or a LoRA adapter has changed.
    """

    iterative = True

    def __init__(self, train: TrainSet, config: Mapping[str, Any]) -> None:
        super().__init__(train, config)
        cfg = self.config
        for key in ("batch", "steps_per_epoch", "max_history_tokens", "max_item_tokens",
                    "score_batch", "adapter_batch", "adapter_steps_per_epoch"):
            if int(cfg[key]) < 1:
                raise ConfigError(f"m6-rec-tuned: {key}={cfg[key]} must be at least 1.")
        if float(cfg["temperature"]) <= 0:
            raise ConfigError(f"m6-rec-tuned: temperature={cfg['temperature']} must be "
                              "positive (e.g. --set temperature=0.05).")
        self.uses_prompts = cfg["tuning"] in ("prompt", "both")
        self.uses_adapters = cfg["tuning"] in ("adapter", "both")
        own = corpus_of_train(train, str(cfg["item_template"]))
        if self.uses_prompts:
            self._init_prompts(train, own)
        self.corpus: Corpus = (
            corpus_of_dataset(load_tune_dataset(str(cfg["tune_dataset"])),
                              str(cfg["item_template"]))
            if cfg["tune_dataset"] else own)
        # The frozen full-depth scorer of m6-rec-zero: its item vectors feed the text prior
        # and the adapters, its MaxSim the late term.  Kept outside the module tree
        # (object.__setattr__): its buffers are no state of this model and are rebuilt by
        # every build.
        zero = ZeroShotRecommender(train, {
            "encoder": cfg["encoder"], "item_template": cfg["item_template"],
            "user_template": cfg["user_template"], "scoring": "late",
            "text_weight": 1.0, "popularity_prior": 0.0})
        zero.fit_epoch(train, 1)
        object.__setattr__(self, "zero_shot", zero.eval())
        corpus_vectors = self._corpus_vectors().to(zero.item_vectors.device)
        counts = popularity_of(self.corpus, own.item_texts)
        self.register_buffer("prior", self._prior(counts, corpus_vectors), persistent=False)
        if self.uses_adapters:
            self._init_adapters(corpus_vectors, own)
        groups = []
        if self.uses_prompts:
            groups.append({"params": [*self.prompts.parameters(), *self.adapters.parameters()],
                           "lr": float(cfg["lr"])})
        if self.uses_adapters:
            groups.append({"params": [*self.vector_adapters.parameters(),
                                      *self.popularity_head.parameters()],
                           "lr": float(cfg["adapter_lr"])})
        self.optimiser = torch.optim.Adam(groups)

    def _init_prompts(self, train: TrainSet, own: Corpus) -> None:
        """Prompt mode: the early-exited encoder, the soft prompts (and LoRA adapters), and
        the benchmark's user and item texts tokenised once."""
        cfg = self.config
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
        self._register_tokens("user", [self._user_text(h, own.item_texts)
                                       for h in own.histories], int(cfg["max_history_tokens"]))
        self._register_tokens("item", own.item_texts, int(cfg["max_item_tokens"]))
        self.register_buffer("item_vectors", torch.empty(0), persistent=False)
        self._item_vectors_key: tuple[Any, ...] = ()

    def _init_adapters(self, corpus_vectors: Tensor, own: Corpus) -> None:
        """Adapter mode: the adapters, and the frozen vectors they read as buffers: the
        corpus's item vectors, history sums and log sampling probabilities (training), the
        benchmark's item vectors and users' history means (scoring)."""
        cfg = self.config
        device = corpus_vectors.device
        hidden = corpus_vectors.shape[1]
        self.vector_adapters = BehaviourAdapters(hidden, int(cfg["adapter_rank"])).to(device)
        self.full_loss = cfg["adapter_loss"] == "full"
        if not 0.0 <= float(cfg["text_dropout"]) < 1.0:
            raise ConfigError(f"m6-rec-tuned: text_dropout={cfg['text_dropout']} must be in "
                              "[0, 1) (e.g. --set text_dropout=0.5).")
        # the in-batch loss has no bias: an empty head keeps the state's keys per mode
        self.popularity_head = (TextPopularityHead(hidden, int(cfg["popularity_head"]))
                                if self.full_loss else nn.ModuleDict()).to(device)
        sums, lengths = history_sums(corpus_vectors, self.corpus.histories)
        positives = torch.from_numpy(np.bincount(self.corpus.items,
                                                 minlength=len(self.corpus.item_texts)))
        log_q = torch.log(positives.double() / positives.sum()).float()
        self._register_corpus_positives(positives, device)
        # the full loss's columns, gathered once rather than every step
        self.register_buffer("counted_vectors", corpus_vectors[self.counted_items],
                             persistent=False)
        base = self.zero_shot.item_vectors.to(device)
        own_sums, own_lengths = history_sums(base, own.histories)
        for name, tensor in (("corpus_vectors", corpus_vectors), ("corpus_sums", sums),
                             ("corpus_lengths", lengths), ("corpus_log_q", log_q),
                             ("base_item_vectors", base),
                             ("user_means", history_means(own_sums, own_lengths))):
            self.register_buffer(name, tensor.to(device), persistent=False)

    def _register_corpus_positives(self, positives: Tensor, device: torch.device) -> None:
        """The full loss's columns, the corpus's counted items (``counted_items``, and each
        corpus item's column in ``corpus_columns``, -1 when uncounted), and each corpus
        user's positives in those columns as CSR (``positives_indptr``,
        ``positives_columns``).  Uncounted items are no columns: a benchmark's cold items,
        never anyone's positive, would otherwise be taught to score low."""
        counted = torch.nonzero(positives > 0).squeeze(1)
        columns = torch.full((len(positives),), -1, dtype=torch.int64)
        columns[counted] = torch.arange(len(counted))
        indptr, flat = history_csr(self.corpus.histories)
        for name, tensor in (("counted_items", counted), ("corpus_columns", columns),
                             ("positives_indptr", indptr), ("positives_columns", columns[flat])):
            self.register_buffer(name, tensor.to(device), persistent=False)

    # ------------------------------------------------------------------ parameters
    def trained_parameters(self) -> list[nn.Parameter]:
        """Prompts, LoRA adapters, residual adapters, the text bias head: every tensor the
        optimiser updates."""
        return [p for p in self.parameters() if p.requires_grad]

    def trained_parameter_count(self) -> int:
        """The optimiser's tensors plus the ridge text prior's fitted coefficients."""
        fitted = self.text_prior_coefficients.numel()
        return sum(p.numel() for p in self.trained_parameters()) + fitted

    def _text_prior(self) -> str:
        """The text prior's estimate, ``auto`` resolved: ``ridge`` for the benchmark's own
        items (new items need a map from text to popularity), ``knn`` for another
        dataset's (the nearest text is mostly the same film written differently)."""
        chosen = str(self.config["text_prior"])
        if chosen != "auto":
            return chosen
        return "knn" if self.config["tune_dataset"] else "ridge"

    def _corpus_vectors(self) -> Tensor:
        """The frozen full-depth vectors of the tuning corpus's items (float32, CPU)."""
        zero = self.zero_shot
        if self.corpus.item_texts == zero.item_texts:
            return zero.item_vectors.cpu()
        return VectorCache(zero.encoder, str(self.config["item_template"]),
                           int(zero.config["max_item_tokens"])).pooled(self.corpus.item_texts)

    def _prior(self, counts: Tensor, corpus_vectors: Tensor) -> Tensor:
        """Each benchmark item's prior: ``log(1 + n_i)``, or its text estimate from the
        tuning corpus's items when the corpus has no count for it."""
        cfg = self.config
        method = self._text_prior()
        self.register_buffer("text_prior_coefficients", torch.zeros(0), persistent=False)
        if method == "off":
            return torch.log1p(counts)
        vectors = self.zero_shot.item_vectors.cpu()
        corpus_vectors = corpus_vectors.cpu()
        corpus_counts = torch.from_numpy(np.bincount(
            self.corpus.items, minlength=len(self.corpus.item_texts))).float()
        if method == "knn":
            estimate = neighbour_popularity(vectors, corpus_vectors, corpus_counts,
                                            int(cfg["text_prior_neighbours"]),
                                            float(cfg["text_prior_temperature"]))
        else:
            coefficients = fit_text_popularity(corpus_vectors, corpus_counts,
                                               float(cfg["text_prior_ridge"]))
            self.text_prior_coefficients = coefficients
            estimate = text_popularity(vectors, coefficients)
        return prior_with_estimate(counts, estimate)

    def frozen_parameter_count(self) -> int:
        """The encoder's own weights, LoRA adapters excluded: all its layers, which the
        frozen late term and text prior run (the early-exited prompted encoder is a prefix
        of the same weights)."""
        full = self.zero_shot.encoder.parameter_count()
        if not self.uses_prompts:
            return full
        prompted = sum(p.numel() for p in self.encoder.model.parameters()
                       if not p.requires_grad)
        return max(prompted, full)

    def parameter_count(self) -> int:
        """Everything scoring needs: the frozen encoder plus the trained tensors (the record's
        ``parameters``; the curve reports the trained ones apart)."""
        return self.frozen_parameter_count() + self.trained_parameter_count()

    # ------------------------------------------------------------------ training
    def fit_epoch(self, train: TrainSet, epoch: int) -> Mapping[str, float]:
        cfg = self.config
        losses: dict[str, float] = {}
        if self.uses_prompts:
            self._encoder_to_device()
            losses["prompt_loss"] = self._steps(
                int(cfg["steps_per_epoch"]), int(cfg["batch"]), train.generator,
                lambda users, items: self._pair_loss(users.cpu().numpy(), items.cpu().numpy()))
        if self.uses_adapters:
            losses["adapter_loss"] = self._steps(
                int(cfg["adapter_steps_per_epoch"]), int(cfg["adapter_batch"]),
                train.generator, self._adapter_loss)
        return {"loss": sum(losses.values()), **(losses if len(losses) > 1 else {}),
                "trained_parameters": float(self.trained_parameter_count()),
                "total_parameters": float(self.parameter_count())}

    def _steps(self, steps: int, batch: int, generator: torch.Generator,
               loss_of: Any) -> float:
        """``steps`` optimiser steps on ``loss_of(users, items)`` of corpus pairs drawn
        uniformly; the mean loss."""
        total = 0.0
        device = self.prior.device
        for _ in range(steps):
            rows = sample_pairs(self.corpus, batch, generator)
            users = torch.as_tensor(self.corpus.users[rows], device=device)
            items = torch.as_tensor(self.corpus.items[rows], device=device)
            loss = loss_of(users, items)
            self.optimiser.zero_grad(set_to_none=True)
            loss.backward()
            self.optimiser.step()
            total += float(loss.detach())
        return total / steps

    def _adapter_loss(self, users: Tensor, items: Tensor) -> Tensor:
        """The softmax of corpus pairs over adapted vectors (``adapter_loss``: full, or
        in-batch and logQ-corrected); each user's history mean leaves out the item it is
        paired with."""
        means = leave_one_out_means(self.corpus_sums, self.corpus_lengths, users, items,
                                    self.corpus_vectors)
        adapters = self.vector_adapters
        temperature = float(self.config["temperature"])
        if not self.full_loss:
            return in_batch_softmax(adapters.users(means),
                                    adapters.items(self.corpus_vectors[items]), temperature,
                                    items, self.corpus_log_q[items])
        vectors = nn.functional.dropout(self.counted_vectors, float(self.config["text_dropout"]),
                                        training=True)
        targets = self.corpus_columns[items]
        excluded = other_positives(self.positives_indptr, self.positives_columns, users,
                                   targets, len(self.counted_items))
        return full_softmax(adapters.users(means), adapters.items(vectors),
                            self.popularity_head(vectors), temperature, targets, excluded)

    def _pair_loss(self, users: np.ndarray, items: np.ndarray) -> Tensor:
        """The in-batch softmax of corpus pairs through the prompted encoder; each user's
        text leaves out the item it is paired with, as evaluation ranks items absent from
        the history text."""
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
        cfg = self.config
        with torch.no_grad():
            scores = float(cfg["popularity_prior"]) * self.prior.expand(users.numel(), -1)
            if self.uses_prompts:
                scores = scores + self._prompted_logits(users)
            if self.uses_adapters:
                scores = scores + self._adapted_logits(users)
            if float(cfg["late_weight"]):
                late = self.zero_shot.relevance(users.to(self.zero_shot.history.device))
                scores = scores + float(cfg["late_weight"]) * late.to(scores.device)
            return scores.to(users.device)

    def _prompted_logits(self, users: Tensor) -> Tensor:
        """``prompt_weight / temperature`` times the prompted cosines ``(B, I)``."""
        self._encoder_to_device()
        items = self._cached_item_vectors()
        ids = self.user_ids[users.to(self.user_ids.device)]
        mask = self.user_mask[users.to(self.user_mask.device)]
        vectors = self._encode_rows(ids, mask, self.prompts.user)
        weight = float(self.config["prompt_weight"]) / float(self.config["temperature"])
        return weight * (vectors @ items.T).to(self.prior.device)

    def _adapted_logits(self, users: Tensor) -> Tensor:
        """``adapter_weight`` times the trained logit ``(B, I)``: the adapted dot products
        over ``temperature``, plus the text bias under the full loss."""
        adapters = self.vector_adapters
        items = adapters.items(self.base_item_vectors)
        if self.config["item_vectors"] == "int8":  # scored as a served int8 copy would be
            items = dequantise(*quantise_item_vectors(items))
        means = self.user_means[users.to(self.user_means.device)]
        logits = adapters.users(means) @ items.T / float(self.config["temperature"])
        if self.full_loss:
            logits = logits + self.popularity_head(self.base_item_vectors)[None, :]
        return float(self.config["adapter_weight"]) * logits

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
        """The prompted encoder is outside the module tree (its weights are not state), so
        ``.to(device)`` reaches it here, following the prompts."""
        device = self.prompts.user.device
        if self.encoder.device != device:
            self.encoder.model.to(device)
            self.encoder.device = device


def _build(train: TrainSet, config: Mapping[str, Any]) -> Recommender:
    return TunedRecommender(train, config)


def _search_space(trial: Any) -> dict[str, Any]:
    """The default (adapter) mode's knobs; prompt mode's are ``lr`` and ``prompt_tokens``."""
    return {
        "adapter_lr": trial.suggest_float("adapter_lr", 1e-3, 5e-2, log=True),
        "temperature": trial.suggest_float("temperature", 0.02, 0.2, log=True),
        "adapter_rank": trial.suggest_categorical("adapter_rank", [4, 16, 64]),
        "adapter_weight": trial.suggest_float("adapter_weight", 0.1, 1.0, log=True),
        "text_dropout": trial.suggest_float("text_dropout", 0.2, 0.7),
        "popularity_head": trial.suggest_categorical("popularity_head", [0, 64, 128]),
    }


TUNED_SPEC = ModelSpec(
    name="m6-rec-tuned",
    build=_build,
    defaults=DEFAULTS,
    search_space=_search_space,
    choices={"item_vectors": ITEM_VECTOR_TYPES, "tuning": TUNINGS, "text_prior": TEXT_PRIORS,
             "adapter_loss": ADAPTER_LOSSES},
    tasks=("ranking",),
    description="M6-Rec with the encoder frozen: LoRA-shaped residual adapters and a text "
    "bias on its cached pooled vectors, trained with a full softmax (tuning=adapter), soft "
    "prompts on the user and item text, optionally with LoRA in the encoder, trained with "
    "in-batch negatives (tuning=prompt), or both; tune_dataset tunes on another dataset "
    "(zero-shot transfer).",
    paper="Cui et al., M6-Rec, arXiv 2205.08084; Lester et al., EMNLP 2021; Hu et al., "
          "LoRA, ICLR 2022",
    # the kit fits a dozen times: two steps still run every path (adapters, prior, MaxSim)
    kit_overrides={"steps_per_epoch": 2, "adapter_steps_per_epoch": 2},
)
