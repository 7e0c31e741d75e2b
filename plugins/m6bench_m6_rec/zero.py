"""m6-rec-zero: zero-shot ranking by a frozen text encoder, no training on interactions.

Each item is written as text by ``item_template`` ("Kolya (1996), genres: Comedy") and each
user as the text of their training history, most recent first, by ``user_template``; the
frozen encoder (default all-MiniLM-L6-v2) turns texts into unit vectors, cached on disk by
content hash (:mod:`m6bench_m6_rec.cache`).  Nothing is fitted: no parameter sees an
interaction.  Two ways to score an item for a user (``scoring``):

* ``"bi"``: the cosine between the pooled vector of the user's history text (capped at
  ``max_history_tokens``, the most recent behaviours kept) and the item's pooled vector.
* ``"late"``: late interaction at the behaviour level, MaxSim with the item as the query and
  the user's behaviours (the ``max_history_items`` most recent, 0 = all) as the document's
  tokens: the item's largest cosine with any item of the history.  A sequel, or a film of
  the same genres and years, then scores high even in a long, mixed history that one pooled
  vector blurs; and the per-behaviour vectors are the cached item vectors, so a user costs
  no encoder run at all.  (Token-level MaxSim of the user text against the item texts,
  :func:`~m6bench_m6_rec.scoring.maxsim_scores`, scored 0.167 test NDCG@10 with the prior
  on 200 ml-100k users, where behaviour MaxSim scored 0.180 and ``bi`` 0.164, at ten
  times their cost.)

Why a popularity prior as well.  On warm ml-100k (random 8:1:1 split, seed 0, test NDCG@10)
text similarity alone is far below popularity: behaviour MaxSim 0.047, the mean similarity
to the history 0.018, popularity 0.142.  Held-out MovieLens interactions are dominated by a
few popular films, and nothing in a title says how popular it is (MiniLM knows no box
office).  So the score is ``text_weight * relevance + popularity_prior * log(1 + n_i)``,
with ``n_i`` the item's training interaction count, the statistic the ``pop`` baseline
ranks by: it is counted, not trained, and no parameter is fitted to interactions.  The text
term personalises that ranking.  ``text_weight`` 4 and the whole history for ``late`` were
chosen on the validation part of ml-100k seed 0 (valid NDCG@10: late 0.141 with the whole
history, 0.134 with 256 tokens of it; bi 0.134 at 256 tokens, 0.128 at 128; weights 1, 2,
4, 8 tried).  On ``ml-100k-cold-items`` every candidate is new, the prior is equal for all
of them and the ranking is purely textual.  ``popularity_prior=0`` gives the pure text
model.

Item vectors can be stored int8 (``item_vectors="int8"``: per-row symmetric, m6bench's
``quantise_rows``), decoded to float32 for scoring.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor

from m6bench import ConfigError, ModelSpec, Recommender, TrainSet
from m6bench_m6_rec.cache import VectorCache
from m6bench_m6_rec.encoder import DEFAULT_ENCODER, TextEncoder
from m6bench_m6_rec.scoring import (
    ITEM_VECTOR_TYPES,
    behaviour_maxsim,
    bi_scores,
    dequantise,
    quantise_item_vectors,
)
from m6bench_m6_rec.text import (
    DEFAULT_ITEM_TEMPLATE,
    DEFAULT_USER_TEMPLATE,
    capped_history,
    item_text,
    template_fields,
    user_text,
)

SCORINGS = ("bi", "late")
DEFAULTS: dict[str, Any] = {
    "encoder": DEFAULT_ENCODER,
    "scoring": "late",
    "layers": 0,  # early exit: the first k transformer layers (0 = all)
    "max_history_tokens": 256,  # bi: the user text's token cap
    "max_history_items": 0,  # late: the most recent behaviours kept (0 = all)
    "max_item_tokens": 64,
    "user_template": DEFAULT_USER_TEMPLATE,
    "item_template": DEFAULT_ITEM_TEMPLATE,
    "item_vectors": "float32",
    "text_weight": 4.0,
    "popularity_prior": 1.0,
    "encode_batch": 64,
}
# Users scored together by behaviour MaxSim (bounds its (users, history, items) block).
_LATE_USER_CHUNK = 16


def item_rows(train: TrainSet) -> list[dict[str, Any]]:
    """Each item's side data as ``{column: value}``, list columns (``categorical_seq``,
    space-separated in the table) split into lists.  Without a side table, an item is its
    ``item_text`` (when the dataset has one) or ``"item <index>"``, under the key ``title``."""
    table = train.item_features
    if table is None:
        texts = train.item_text or [f"item {index}" for index in range(train.n_items)]
        return [{"title": text} for text in texts]
    columns = list(table.columns)
    rows: list[dict[str, Any]] = []
    for values in table.itertuples(index=False):
        row = dict(zip(columns, values))
        for column, kind in train.item_feature_kinds.items():
            if kind == "categorical_seq" and isinstance(row.get(column), str):
                row[column] = row[column].split()
        rows.append(row)
    return rows + [{column: None for column in columns}] * (train.n_items - len(rows))


def item_texts(train: TrainSet, template: str) -> list[str]:
    """Every item's text.  The default template falls back to ``{title}`` on data whose side
    table lacks its columns (synthetic data); a configured template must fit the table."""
    rows = item_rows(train)
    available = set(rows[0]) if rows else set()
    if template == DEFAULT_ITEM_TEMPLATE and not set(template_fields(template)) <= available:
        template = "{title}" if "title" in available else "item {index}"
        rows = [{**row, "index": index} for index, row in enumerate(rows)]
    return [item_text(row, template) for row in rows]


def histories(train: TrainSet) -> list[list[int]]:
    """Each user's training items, most recent first (by timestamp, ties and data without
    timestamps by the reverse of the training order)."""
    users = train.users.cpu().numpy()
    items = train.items.cpu().numpy()
    position = np.arange(len(users))
    times = train.timestamps.cpu().numpy() if train.timestamps is not None else position
    order = np.lexsort((-position, -times.astype(np.float64), users))
    by_user: list[list[int]] = [[] for _ in range(train.n_users)]
    for user, item in zip(users[order], items[order]):
        by_user[user].append(int(item))
    return by_user


@functools.cache
def shared_encoder(name: str, layers: int | None, device: str) -> TextEncoder:
    """One frozen encoder per (name, layers, device) in a process: nothing here changes it,
    so every build (each seed, each conformance check) shares it instead of reloading."""
    return TextEncoder(name, layers=layers, device=device)


def validate(config: Mapping[str, Any]) -> None:
    """Fail early, naming the key and its allowed values."""
    if config["scoring"] not in SCORINGS:
        raise ConfigError(f"m6-rec-zero: scoring={config['scoring']!r} is unknown; use one of "
                          f"{SCORINGS} (e.g. --set scoring=late).")
    if config["item_vectors"] not in ITEM_VECTOR_TYPES:
        raise ConfigError(f"m6-rec-zero: item_vectors={config['item_vectors']!r} is unknown; "
                          f"use one of {ITEM_VECTOR_TYPES}.")
    if int(config["max_history_items"]) < 0:
        raise ConfigError(f"m6-rec-zero: max_history_items={config['max_history_items']} must "
                          "be 0 (the whole history) or more.")
    for key in ("max_history_tokens", "max_item_tokens", "encode_batch"):
        if int(config[key]) < 1:
            raise ConfigError(f"m6-rec-zero: {key}={config[key]} must be at least 1.")


class ZeroShotRecommender(Recommender):
    """m6-rec-zero (see the module docstring).

    State: the item vectors (float32 ``item_vectors`` ``(I, H)``, or int8 ``item_q`` with
    float32 ``item_scale`` ``(I,)``), the user vectors ``(U, H)`` of ``bi`` scoring and the
    popularity prior ``(I,)`` are persistent buffers, filled by the one :meth:`fit_epoch`;
    each user's capped history (for ``late``) is a non-persistent buffer ``(U, L)`` of item
    indices padded with ``-1``, rebuilt from the training data by every build.
    """

    iterative = False

    def __init__(self, train: TrainSet, config: Mapping[str, Any]) -> None:
        super().__init__(train, {**DEFAULTS, **config})
        cfg = self.config
        validate(cfg)
        self.encoder = shared_encoder(str(cfg["encoder"]), int(cfg["layers"]) or None,
                                      str(train.device))
        hidden = self.encoder.hidden_size
        self.item_texts = item_texts(train, str(cfg["item_template"]))
        # One text must fit the model's positions, its two special tokens included.
        self.user_token_cap = min(int(cfg["max_history_tokens"]), self.encoder.max_tokens - 2)
        self.user_texts, capped = self._user_histories(train)
        if cfg["item_vectors"] == "int8":
            self.register_buffer("item_q", torch.zeros(self.n_items, hidden, dtype=torch.int8))
            self.register_buffer("item_scale", torch.ones(self.n_items))
        else:
            self.register_buffer("item_vectors", torch.zeros(self.n_items, hidden))
        if cfg["scoring"] == "bi":
            self.register_buffer("user_vectors", torch.zeros(self.n_users, hidden))
        width = max(1, max(len(items) for items in capped) if capped else 1)
        history = torch.full((self.n_users, width), -1, dtype=torch.int64)
        for user, items in enumerate(capped):
            history[user, : len(items)] = torch.tensor(items, dtype=torch.int64)
        self.register_buffer("history", history, persistent=False)
        self.register_buffer("prior", torch.zeros(self.n_items))

    def parameter_count(self) -> int:
        """What scoring needs: the frozen encoder (it reads every new history) and the state
        (item vectors, the prior, ``bi``'s user vectors)."""
        return self.encoder.parameter_count() + super().parameter_count()

    def trained_parameter_count(self) -> int:
        """Only the prior comes from interactions (counted, as ``pop`` counts); the vectors
        are the frozen encoder's output."""
        return self.prior.numel()

    def _user_histories(self, train: TrainSet) -> tuple[list[str], list[list[int]]]:
        """Each user's text, capped at ``max_history_tokens`` tokens of the encoder's
        tokenizer, and the behaviours ``late`` scoring uses (the ``max_history_items`` most
        recent), both most recent first."""
        tokenizer = self.encoder.tokenizer

        @functools.cache
        def count_tokens(text: str) -> int:
            return len(tokenizer(text, add_special_tokens=False)["input_ids"])

        template = str(self.config["user_template"])
        cap = self.user_token_cap
        most_recent = int(self.config["max_history_items"]) or None
        texts: list[str] = []
        capped: list[list[int]] = []
        for items in histories(train):
            kept = capped_history(items, self.item_texts.__getitem__, template,
                                  max_tokens=cap, count_tokens=count_tokens)
            texts.append(user_text(kept, self.item_texts.__getitem__, template))
            capped.append(items[:most_recent] if self.config["scoring"] == "late" else kept)
        return texts, capped

    def fit_epoch(self, train: TrainSet, epoch: int) -> Mapping[str, float]:
        cfg = self.config
        items = VectorCache(self.encoder, str(cfg["item_template"]), int(cfg["max_item_tokens"]),
                            batch_size=int(cfg["encode_batch"])).pooled(self.item_texts)
        if cfg["item_vectors"] == "int8":
            q, scale = quantise_item_vectors(items)
            self.item_q.copy_(q)
            self.item_scale.copy_(scale)
        else:
            self.item_vectors.copy_(items)
        if cfg["scoring"] == "bi":
            users = VectorCache(self.encoder, str(cfg["user_template"]),
                                self.user_token_cap + 2,  # + [CLS] and [SEP]
                                batch_size=int(cfg["encode_batch"])).pooled(self.user_texts)
            empty = self.history[:, 0] < 0
            self.user_vectors.copy_(torch.where(empty[:, None], 0.0, users.to(empty.device)))
        self.prior.copy_(torch.log1p(train.item_popularity.float().cpu()))
        return {}

    def _items(self) -> Tensor:
        if self.config["item_vectors"] == "int8":
            return dequantise(self.item_q, self.item_scale)
        return self.item_vectors

    def relevance(self, users: Tensor) -> Tensor:
        """The text term of the score, ``(B,) -> (B, I)`` float32."""
        items = self._items()
        users = users.to(self.history.device)
        if self.config["scoring"] == "bi":
            return bi_scores(self.user_vectors[users], items)
        # Users of similar history length share a chunk, padded only to its longest history.
        lengths = (self.history[users] >= 0).sum(dim=1)
        order = lengths.argsort()
        scores = torch.zeros(users.numel(), self.n_items, device=items.device)
        for start in range(0, users.numel(), _LATE_USER_CHUNK):
            rows = order[start:start + _LATE_USER_CHUNK]
            width = max(1, int(lengths[rows].max()))
            history = self.history[users[rows], :width]
            vectors = items[history.clamp_min(0)]
            scores[rows] = behaviour_maxsim(vectors, (history >= 0).long(), items)
        return scores

    def score(self, users: Tensor) -> Tensor:
        cfg = self.config
        scores = float(cfg["text_weight"]) * self.relevance(users)
        return (scores + float(cfg["popularity_prior"]) * self.prior).to(users.device)


ZERO_SPEC = ModelSpec(
    name="m6-rec-zero",
    build=ZeroShotRecommender,
    defaults=DEFAULTS,
    choices={"scoring": SCORINGS, "item_vectors": ITEM_VECTOR_TYPES},
    description="M6-Rec zero-shot: behaviour and items as text through a frozen MiniLM, "
                "bi-encoder or late-interaction (MaxSim) scores plus a popularity prior; "
                "nothing trained on interactions.",
    paper="Cui et al., M6-Rec, arXiv:2205.08084, 2022; Khattab & Zaharia, ColBERT, SIGIR 2020",
)
