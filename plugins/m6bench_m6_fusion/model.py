"""The m6-fusion recommender: modality encoders, context-dependent attention fusion, and
jointly trained ranking and rating heads on one shared representation."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from m6bench import ConfigError, Recommender, TrainSet, csr_row_entries
from m6bench_m6_fusion.components import FUSIONS
from m6bench_m6_fusion.features import context_profiles, evidence_bands, text_neighbours

RANKING_LOSSES = ("softmax", "bpr")
CONTEXT_SOURCES = ("profile", "interaction")
EVIDENCE_BANDS = 12  # 0 = cold, then doubling interaction counts up to 2^10 and beyond


class M6Fusion(Recommender):
    """Multimodal two-tower recommender with context-dependent attention fusion and
    multi-task heads, in the spirit of M6-Rec (Cui, Ma, Yang, Zhou, "M6-Rec: Generative
    Pretrained Language Models are Open-Ended Recommender Systems", arXiv:2205.08084, 2022).

    Modalities, each encoded to a ``(B, dim)`` vector by a catalog encoder:

    * user tower: user id (``id-embedding``), categorical user features (gender, occupation,
      age band, ...; ``categorical-features``), numeric user features (``numeric-features``);
    * item tower: item id, categorical item features (genres, release-year band), numeric
      item features (release year), and the item text (title | genres) through a sentence
      encoder (``sentence-text``, all-MiniLM-L6-v2 by default, cached on disk);
    * context (``interaction-context``): hour and weekday of the timestamp, and the domain.

    Each tower stacks its modalities ``(B, M, dim)`` and fuses them (``fusion``):
    ``attention`` gives modality ``i`` the weight ``a_i = softmax_i(w^T tanh(W [h_i ; c]))``
    where ``c`` is the tower's context vector.  For users it is the context embedding:
    ``context_source="profile"`` (default) uses the user's average context over their
    training interactions, in training and scoring alike; ``"interaction"`` uses each
    training interaction's own context (scoring, which has no interaction, falls back to the
    average; on benchmarks whose held-out context is unknown this train/score mismatch
    costs accuracy).  For items ``c`` is the item's *evidence band* (how many training
    interactions it has, band 0 = none), so the item tower learns to lean on text and
    features when the id embedding has little or no training signal.  ``concat`` and
    ``mean`` are the ablation alternatives (there the context vector is one more user
    modality).  The fused vector goes through an MLP with a linear skip: user ``u`` and
    item ``v``, both ``(B, dim)``.

    Heads on the shared ``(u, v)``:

    * ranking: ``s(u, v) = <u, v>``, trained with a softmax cross-entropy over all items
      (``negatives = 0``; with ``exclude_positives`` the user's other training items are
      left out of the denominator) or over ``negatives`` shared uniform samples
      (``sampled-softmax`` head), or with BPR on one true negative per positive (the core's
      ``bpr`` head); weight ``ranking_weight``;
    * rating: ``r = mu + w_u.u + w_v.v + <P u, Q v>`` (``rating-regression`` head) with the
      core's ``mse`` loss; weight ``rating_weight``.  Either weight can be 0 (single task).

    Cold-start items: an item without training interactions has an untrained id embedding,
    so its id modality is masked out of the fusion and its evidence band is 0; it is scored
    from features and text alone.

    Imperfect side data is imputed, never an error: an item with no text (missing, NaN or
    blank) has its text modality masked; a categorical value no training entity holds is
    treated as missing (no token); a NaN numeric feature is 0 after standardisation with a
    "missing" flag beside it (and no quantile-band token).  An entity with nothing left to
    read gets all attention weights 0: the fusion's biases alone.

    During training the id modality of a random ``id_dropout`` share of items is masked the
    way a cold item's is (per batch), so the towers learn to rank from content (Volkovs et
    al., "DropoutNet", NeurIPS 2017).  ``text_dropout`` drops that share of the sentence
    vectors' coordinates in training, so the text cannot stand in for the item id.

    Scoring is one matmul: ``score(users) = U (B, dim) @ V^T (dim, n_items)``, with the item
    tower's ``V`` computed once per evaluation (cached while the model is in eval mode;
    ``train()``, ``eval()`` and loading a state dict clear the cache).  With
    ``ranking_weight = 0`` the scores are the predicted ratings.
    """

    iterative = True

    def __init__(self, train: TrainSet, config: Mapping[str, Any]) -> None:
        super().__init__(train, config)
        self._check(train, config)
        self.dim = int(config["dim"])
        self.ranking_weight = float(config["ranking_weight"])
        self.rating_weight = float(config["rating_weight"]) if train.ratings is not None else 0.0
        self.ranking_loss = str(config["ranking_loss"])
        self.negatives = int(config["negatives"])
        self.id_dropout = float(config["id_dropout"])
        self.l2 = float(config["l2"])
        self.batch_size = int(config["batch_size"])
        # The parts are built in this order (their random initialisations follow it).
        self._build_user_tower(train, config)
        self._build_item_tower(train, config)
        self._build_fusions(train, config)
        self._build_heads(train, config)
        self.register_buffer("item_cache", torch.zeros(0, self.dim), persistent=False)
        self._cache_valid = False
        self.register_load_state_dict_post_hook(lambda module, keys: module.clear_cache())
        self.to(train.device)
        self.optimizer: torch.optim.Optimizer | None = None

    def _build_user_tower(self, train: TrainSet, config: Mapping[str, Any]) -> None:
        """The user id, side-feature and context encoders (``user_modalities``)."""
        dim, init_std = self.dim, float(config["init_std"])
        catalog = train.components
        self.user_id = catalog.encoder("id-embedding", num=train.n_users, dim=dim,
                                       init_std=init_std)
        user_side = (self._side_encoders(
            "user", train, train.user_features, train.user_feature_kinds,
            torch.bincount(train.users, minlength=train.n_users) > 0)
            if bool(config["side_features"]) else [])
        self.user_modalities = ("user_id", *user_side)
        self.use_context = bool(config["context"])
        self.attention = config["fusion"] == "attention"
        self.interaction_context = self.use_context and config["context_source"] == "interaction"
        if self.use_context:
            n_domains = int(train.domains.max()) + 1 if train.domains is not None else 0
            self.context = catalog.encoder("interaction-context", n_domains=n_domains, dim=dim,
                                           init_std=init_std)
            codes = self.context.codes(train.timestamps, train.domains, train.n_interactions,
                                       train.device)
            if self.interaction_context:
                self.register_buffer("train_context", codes, persistent=False)
            self.register_buffer("context_profile", context_profiles(
                codes, train.users, train.n_users, self.context.vocabulary), persistent=False)
            if not self.attention:  # without attention the context is one more modality
                self.user_modalities += ("context",)

    def _build_item_tower(self, train: TrainSet, config: Mapping[str, Any]) -> None:
        """The item id, side-feature, text and text-neighbour encoders (``item_modalities``),
        the evidence-band embedding, and the buffers of which items have training data."""
        dim, init_std = self.dim, float(config["init_std"])
        catalog = train.components
        self.item_id = catalog.encoder("id-embedding", num=train.n_items, dim=dim,
                                       init_std=init_std)
        item_side = (self._side_encoders(
            "item", train, train.item_features, train.item_feature_kinds,
            train.item_popularity > 0) if bool(config["side_features"]) else [])
        if bool(config["text"]) and train.item_text is not None:
            self.item_text = catalog.encoder("sentence-text", num=train.n_items, dim=dim,
                                             texts=train.item_text,
                                             model=str(config["text_model"]),
                                             input_dropout=float(config["text_dropout"]))
            item_side.append("item_text")
            if int(config["text_neighbours"]) > 0:
                index, weight = text_neighbours(self.item_text.vectors, self.item_text.present
                                                & (train.item_popularity.cpu() > 0),
                                                int(config["text_neighbours"]))
                self.register_buffer("neighbour_index", index, persistent=False)
                self.register_buffer("neighbour_weight", weight, persistent=False)
                item_side.append("item_neighbours")
        self.item_modalities = ("item_id", *item_side)
        self.evidence = catalog.encoder("id-embedding", num=EVIDENCE_BANDS, dim=dim,
                                        init_std=init_std)
        self.register_buffer("item_band", evidence_bands(train.item_popularity, EVIDENCE_BANDS),
                             persistent=False)
        self.register_buffer("item_seen", train.item_popularity > 0, persistent=False)
        self.all_seen = bool(self.item_seen.all())
        self.exclude_positives = bool(config["exclude_positives"])
        if self.exclude_positives:
            self.register_buffer("train_crow", train.matrix.crow_indices().clone(),
                                 persistent=False)
            self.register_buffer("train_col", train.matrix.col_indices().clone(),
                                 persistent=False)

    def _build_fusions(self, train: TrainSet, config: Mapping[str, Any]) -> None:
        """The user and item towers' fusions (``fusion`` is a declared choice)."""
        fusion = FUSIONS[str(config["fusion"])]
        options: dict[str, Any] = {"dim": self.dim, "hidden": list(config["mlp_hidden"]),
                                   "dropout": float(config["dropout"])}
        if config["fusion"] == "attention":
            options |= {"combine": str(config["combine"]),
                        "attention_dim": int(config["attention_dim"])}
        self.user_fusion = train.components.fusion(
            fusion, n_modalities=len(self.user_modalities),
            context_dim=self.dim if self.use_context else 0, **options)
        self.item_fusion = train.components.fusion(
            fusion, n_modalities=len(self.item_modalities), context_dim=self.dim, **options)

    def _build_heads(self, train: TrainSet, config: Mapping[str, Any]) -> None:
        """The ranking head (softmax or BPR), the rating head and loss, the rating range."""
        catalog = train.components
        self.ranking_head = (catalog.head("sampled-softmax",
                                          temperature=float(config["temperature"]))
                             if self.ranking_loss == "softmax" else catalog.head("bpr"))
        ratings = train.ratings
        mean = float(ratings.mean()) if ratings is not None and ratings.numel() else 0.0
        self.rating_head = catalog.head("rating-regression", dim=self.dim,
                                        rank=int(config["rating_rank"]), global_mean=mean)
        self.rating_loss = catalog.head("mse")
        low = float(ratings.min()) if ratings is not None and ratings.numel() else -1e9
        high = float(ratings.max()) if ratings is not None and ratings.numel() else 1e9
        self.register_buffer("rating_range", torch.tensor([low, high]), persistent=False)

    def _side_encoders(self, side: str, train: TrainSet, table: Any,
                       kinds: Mapping[str, str], known: torch.Tensor) -> list[str]:
        """Build ``<side>_categorical`` and ``<side>_numeric`` from a side table; return the
        names of those that carry information (the tower's side modalities)."""
        num = known.numel()
        dim, init_std = self.dim, float(self.config["init_std"])
        catalog = train.components
        setattr(self, f"{side}_categorical", catalog.encoder(
            "categorical-features", num=num, dim=dim, table=table, kinds=kinds,
            bands=int(self.config["bands"]), init_std=init_std, known=known))
        setattr(self, f"{side}_numeric", catalog.encoder(
            "numeric-features", num=num, dim=dim, table=table, kinds=kinds))
        return [name for name in (f"{side}_categorical", f"{side}_numeric")
                if not getattr(self, name).empty]

    @staticmethod
    def _check(train: TrainSet, config: Mapping[str, Any]) -> None:
        """Ranges and combinations; the enumerated keys (``fusion``, ``combine``,
        ``ranking_loss``, ``context_source``) are the recipe's declared ``choices``, checked
        when the config is resolved."""
        if float(config["ranking_weight"]) <= 0 and (
                float(config["rating_weight"]) <= 0 or train.ratings is None):
            raise ConfigError("m6-fusion: both task heads are switched off (ranking_weight and "
                              "rating_weight are 0, or the data has no ratings); give at least "
                              "one task a positive weight, e.g. --set ranking_weight=1.0.")
        if not 0.0 <= float(config["id_dropout"]) < 1.0:
            raise ConfigError("m6-fusion: id_dropout must lie in [0, 1); e.g. "
                              "--set id_dropout=0.2.")
        if bool(config["text"]) and not 0.0 <= float(config["text_dropout"]) < 1.0:
            raise ConfigError("m6-fusion: text_dropout must lie in [0, 1); e.g. "
                              "--set text_dropout=0.5.")

    # ------------------------------------------------------------------ caching
    def clear_cache(self) -> None:
        """Forget the item tower's cached output (parameters may have changed)."""
        self._cache_valid = False

    def train(self, mode: bool = True) -> M6Fusion:
        self.clear_cache()
        return super().train(mode)

    # ------------------------------------------------------------------ towers
    def user_vectors(self, users: torch.Tensor, context: torch.Tensor | None = None
                     ) -> torch.Tensor:
        """Users ``(B,)`` (+ context ids ``(B, 3)``) -> fused user vectors ``(B, dim)``.

        Without context ids (evaluation) the user's average training context is used."""
        vectors, query = self._user_modalities(users, context)
        return self.user_fusion(vectors, query)

    def _user_modalities(self, users: torch.Tensor, context: torch.Tensor | None
                         ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Stacked user modalities ``(B, M_user, dim)`` and the context vector ``(B, dim)``."""
        vectors = [getattr(self, name)(users) for name in self.user_modalities
                   if name != "context"]
        query = None
        if self.use_context:
            query = (self.context(context) if context is not None
                     else self.context.profile(self.context_profile[users]))
            if not self.attention:
                vectors.append(query)
        return torch.stack(vectors, dim=1), query

    def item_vectors(self, items: torch.Tensor, drop_id: torch.Tensor | None = None
                     ) -> torch.Tensor:
        """Items ``(N,)`` -> fused item vectors ``(N, dim)``.

        The id modality is masked (and the evidence band set to 0) for items without
        training interactions and where ``drop_id`` (bool ``(N,)``) is true."""
        vectors = torch.stack([self._item_modality(name, items)
                               for name in self.item_modalities], dim=1)
        has_id = self.item_seen[items]
        if drop_id is not None:
            has_id = has_id & ~drop_id
        band = torch.where(has_id, self.item_band[items], torch.zeros_like(items))
        return self.item_fusion(vectors, self.evidence(band), self._item_mask(items, has_id))

    def _item_mask(self, items: torch.Tensor, has_id: torch.Tensor) -> torch.Tensor:
        """Which item modalities the fusion may read ``(N, M_item)``: the id only where
        ``has_id``, the text only where the item has some."""
        mask = torch.ones(items.numel(), len(self.item_modalities), dtype=torch.bool,
                          device=items.device)
        mask[:, 0] = has_id
        if len(self.item_modalities) == 1:
            mask[:, 0] = True  # an id-only model has nothing else to score a cold item with
        if "item_text" in self.item_modalities:
            mask[:, self.item_modalities.index("item_text")] = self.item_text.present[items]
        if "item_neighbours" in self.item_modalities:
            mask[:, self.item_modalities.index("item_neighbours")] = (
                self.neighbour_weight[items].sum(dim=1) > 0)
        return mask

    def _item_modality(self, name: str, items: torch.Tensor) -> torch.Tensor:
        """One item modality ``(N, dim)``.  ``item_neighbours`` is the similarity-weighted
        mean of the id embeddings of the item's nearest warm items by text: collaborative
        signal a cold item borrows from the items its text resembles."""
        if name == "item_neighbours":
            neighbours = self.item_id(self.neighbour_index[items])  # (N, k, dim)
            return (neighbours * self.neighbour_weight[items].unsqueeze(-1)).sum(dim=1)
        return getattr(self, name)(items)

    def all_item_vectors(self) -> torch.Tensor:
        """``(n_items, dim)``; cached in eval mode until parameters may change."""
        if self.training:
            return self.item_vectors(torch.arange(self.n_items, device=self.item_band.device))
        if not self._cache_valid or self.item_cache.shape[0] != self.n_items:
            with torch.no_grad():
                self.item_cache = self.item_vectors(
                    torch.arange(self.n_items, device=self.item_band.device))
            self._cache_valid = True
        return self.item_cache

    # ------------------------------------------------------------------ training
    def fit_epoch(self, train: TrainSet, epoch: int) -> Mapping[str, float]:
        if self.optimizer is None:
            self.optimizer = torch.optim.Adam(self.parameters(), lr=float(self.config["lr"]),
                                              weight_decay=float(self.config["weight_decay"]))
        n = train.n_interactions
        device = train.device
        generator = train.generator
        order = torch.randperm(n, generator=generator, device=generator.device).to(device)
        totals = {k: torch.zeros((), device=device) for k in ("ranking", "rating", "l2")}
        all_items = torch.arange(self.n_items, device=device)
        for start in range(0, n, self.batch_size):
            batch = order[start: start + self.batch_size]
            users, positives = train.users[batch], train.items[batch]
            context = self.train_context[batch] if self.interaction_context else None
            user = self.user_vectors(users, context)
            ranking, positive_vectors, items_used = self._ranking_loss(
                train, user, users, positives, all_items)
            loss = self.ranking_weight * ranking
            rating = torch.zeros((), device=device)
            if self.rating_weight > 0:
                predicted = self.rating_head(user, positive_vectors)
                rating = self.rating_loss(predicted, train.ratings[batch].float())
                loss = loss + self.rating_weight * rating
            l2 = self.l2 * (self.user_id(users).pow(2).sum()
                            + self.item_id(items_used).pow(2).sum()) / batch.numel()
            loss = loss + l2
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            for key, value in (("ranking", ranking), ("rating", rating), ("l2", l2)):
                totals[key] += value.detach() * batch.numel()
        self.clear_cache()
        losses = {"ranking": float(totals["ranking"]) / n, "l2": float(totals["l2"]) / n}
        if self.rating_weight > 0:
            losses["mse"] = float(totals["rating"]) / n
        return losses

    def _training_items(self, users: torch.Tensor) -> torch.Tensor:
        """Bool ``(B, n_items)``: the users' training items, from the CSR index buffers."""
        entries, counts = csr_row_entries(self.train_crow, users)
        rows = torch.repeat_interleave(torch.arange(users.numel(), device=users.device), counts,
                                       output_size=entries.numel())
        mask = torch.zeros(users.numel(), self.n_items, dtype=torch.bool, device=users.device)
        mask[rows, self.train_col[entries]] = True
        return mask

    def _drop(self, n: int, device: torch.device, generator: torch.Generator) -> torch.Tensor:
        if self.id_dropout <= 0:
            return torch.zeros(n, dtype=torch.bool, device=device)
        draws = torch.rand(n, generator=generator, device=generator.device).to(device)
        return draws < self.id_dropout

    def _ranking_loss(self, train: TrainSet, user: torch.Tensor, users: torch.Tensor,
                      positives: torch.Tensor, all_items: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The ranking loss of a batch, the positives' item vectors ``(B, dim)``, and the
        items whose id embeddings the batch used (for the L2 term)."""
        generator = train.generator
        device = user.device
        if self.ranking_weight <= 0:  # rating only: the positives' vectors suffice
            vectors = self.item_vectors(positives, self._drop(positives.numel(), device,
                                                              generator))
            return torch.zeros((), device=device), vectors, positives
        if self.ranking_loss == "softmax" and self.negatives <= 0:
            # Full softmax over every item with training interactions.
            items = self.item_vectors(all_items, self._drop(self.n_items, device, generator))
            logits = user @ items.T  # (B, n_items)
            if self.exclude_positives:  # the user's other training items are no negatives
                others = self._training_items(users)
                others[torch.arange(users.numel(), device=device), positives] = False
                logits = logits.masked_fill(others, float("-inf"))
            if not self.all_seen:  # items without training interactions are no negatives
                logits = logits.masked_fill(~self.item_seen[None, :], float("-inf"))
            ranking = self.ranking_head.full(logits, positives)
            return ranking, items[positives], all_items
        if self.ranking_loss == "softmax":
            negatives = train.sample_negatives(self.negatives)  # shared by the batch
            wanted = torch.cat([positives, negatives])
            vectors = self.item_vectors(wanted, self._drop(wanted.numel(), device, generator))
            positive_vectors, negative_vectors = vectors[: positives.numel()], vectors[
                positives.numel():]
            positive = (user * positive_vectors).sum(dim=1)
            logits = user @ negative_vectors.T  # (B, S)
            clash = negatives[None, :] == positives[:, None]
            ranking = self.ranking_head(positive, logits.masked_fill(clash, float("-inf")))
        else:
            negatives = train.sample_true_negatives(users)
            wanted = torch.cat([positives, negatives])
            vectors = self.item_vectors(wanted, self._drop(wanted.numel(), device, generator))
            positive_vectors, negative_vectors = vectors[: positives.numel()], vectors[
                positives.numel():]
            ranking = self.ranking_head((user * positive_vectors).sum(dim=1),
                                        (user * negative_vectors).sum(dim=1))
        return ranking, positive_vectors, wanted

    # ------------------------------------------------------------------ scoring
    def score(self, users: torch.Tensor) -> torch.Tensor:
        user = self.user_vectors(users)
        items = self.all_item_vectors()
        if self.ranking_weight > 0:
            return user @ items.T
        return self.rating_head.all_items(user, items)

    def export_module(self) -> torch.nn.Module:
        # The item tower (text vectors included) runs once here and goes into the graph as
        # a constant: the exported graph is the user tower and one matmul.
        self.eval()
        self.all_item_vectors()
        return super().export_module()

    def predict(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Predicted ratings ``(N,)``, clipped to the training rating range."""
        out = torch.empty(users.shape, dtype=torch.float32, device=users.device)
        item_vectors = self.all_item_vectors()
        for start in range(0, users.numel(), 65536):
            u, i = users[start: start + 65536], items[start: start + 65536]
            predicted = self.rating_head(self.user_vectors(u), item_vectors[i])
            out[start: start + u.numel()] = predicted.clamp(self.rating_range[0],
                                                            self.rating_range[1])
        return out

    def attention_weights(self, users: torch.Tensor, context: torch.Tensor | None = None
                          ) -> tuple[torch.Tensor, torch.Tensor]:
        """The user tower's modality weights ``(B, M_user)`` for users ``(B,)`` (under context
        ids ``(B, 3)``, or their average context), and the item tower's ``(n_items, M_item)``
        (for diagnostics and the ablation report)."""
        vectors, query = self._user_modalities(users, context)
        user_weights = self.user_fusion.weights(vectors, query)
        items = torch.arange(self.n_items, device=users.device)
        item_vectors = torch.stack([self._item_modality(n, items)
                                    for n in self.item_modalities], 1)
        has_id = self.item_seen
        band = torch.where(has_id, self.item_band, torch.zeros_like(self.item_band))
        item_weights = self.item_fusion.weights(item_vectors, self.evidence(band),
                                                self._item_mask(items, has_id))
        return user_weights, item_weights
