"""pct-cf: cross-domain collaborative filtering fused with a deep side-feature model."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from m6bench import ConfigError, Recommender, TrainSet, bag_sums, csr_row_entries
from m6bench_pct_cf.features import feature_tensors

# The recipe's declared choices of ``pair_domain`` and ``domain_sampling`` (checked when the
# config is resolved).
PAIR_DOMAIN_RULES = ("auto", "item", "user")
DOMAIN_SAMPLING = ("uniform", "balanced")


def home_domains(entities: torch.Tensor, domains: torch.Tensor, n: int,
                 n_domains: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each entity's most frequent training domain (-1 without training interactions), and
    whether every one of its interactions is in that domain.

    :param entities: int64 ``(n_train,)`` user or item index of each training interaction.
    :param domains: int64 ``(n_train,)`` domain of each training interaction.
    :return: int64 ``(n,)`` home domains and bool ``(n,)`` purity.
    """
    counts = torch.zeros(n * n_domains, dtype=torch.int64, device=entities.device)
    counts.index_add_(0, entities * n_domains + domains, torch.ones_like(entities))
    counts = counts.reshape(n, n_domains)
    total = counts.sum(dim=1)
    top, home = counts.max(dim=1)
    home = torch.where(total > 0, home, torch.full_like(home, -1))
    return home, top == total


class PCTCF(Recommender):
    """Cross-domain CF with per-domain parts, fused with a deep side-feature model.

    The collaborative part follows the shared + domain-specific factorisation of
    cross-domain CF (Singh & Gordon, "Relational Learning via Collective Matrix
    Factorization", KDD 2008; Hu et al., "Personalized Recommendation via Cross-Domain
    Triadic Factorization", WWW 2013): with ``d`` the domain of a (user, item) pair,

        ``p_cf(u, i, d) = <P_u + P^d_u, Q_i + Q^d_i> + b_i + b^d_i``

    where ``P`` ``(n_users, dim)`` and ``Q`` ``(n_items, dim)`` are shared by all domains,
    ``P^d``/``Q^d`` (``(n_domains * n_users, dim)`` / ``(n_domains * n_items, dim)``, one
    ``id-embedding`` each) and the item biases ``b^d`` are per domain.  All domains train
    jointly: every training interaction is a BPR triple (Rendle et al., UAI 2009) whose
    negative is drawn from the items of the interaction's own domain that the user has not
    interacted with.

    With ``user_items = w > 0`` a user's vector also pools the item vectors ``Y`` (one more
    shared ``(n_items, dim)`` table) of its training items, as FISM does (Kabbur, Ning,
    Karypis, KDD 2013; Koren's asymmetric SVD, KDD 2008):
    ``P_u + P^d_u + w |I_u|^-alpha sum_{j in I_u} Y_j``, the positive of a training pair left
    out of its own user's sum.  Domains that share items but not users (ML-1M + ML-100K)
    can transfer only through item tables; ``Q`` carries what the source says about each
    item, ``Y`` what it says about which items go together, and that reaches every target
    user.  On the target alone ``Y`` overfits (ml-xdomain-target-only, seed 0, ``lambda =
    1``: test NDCG@10 0.2908); trained with the source it is the transfer (0.3080).

    The deep part is a two-tower model over side features (a ``feature-bag`` encoder per
    side: categorical, genre lists, title words, numbers, text vectors when the table has
    them), each tower a ``concat-mlp`` over ``[features, id vector]``:

        ``q_deep(u, i) = <g([x_u, m_u P_u]), h([y_i, m_i Q_i])> + c(y_i)``

    where ``m`` is 1 for an entity with training interactions and 0 otherwise; in training
    each step drops every entity's ``m`` to 0 with probability ``id_dropout``, so the
    towers learn to score from features alone (Volkovs, Yu, Poutanen, "DropoutNet:
    Addressing Cold Start in Recommender Systems", NeurIPS 2017).  ``c`` is the item tower's
    last output: a feature-based prior.

    The fused score is ``r = lambda * p + (1 - lambda) * q_deep`` with ``lambda`` fixed
    (config ``lambda`` in ``[0, 1]``) or learned (``lambda: null``, a sigmoid-squashed
    parameter).  The loss is ``BPR(r) + dropout_weight * BPR(r_dropout)`` plus
    ``(l2 * |P, Q rows and item-based user parts of the batch|^2 + domain_l2 * |P^d, Q^d rows|^2
    + deep_l2 * |g_u, [h, c]_i, [h, c]_j|^2) / B``: a larger ``domain_l2`` makes the domains
    share the common vectors (the transfer).  Without ``deep_l2`` nothing bounds the towers'
    outputs, so BPR grows ``q_deep`` until it outweighs the CF score whatever ``lambda`` is:
    on the ml-xdomain target alone (seed 0) test NDCG@10 is 0.2617 with ``deep_l2 = 0``,
    0.3016 with 0.075 and 0.3093 with ``lambda = 1``; but 0.075 costs cold items 0.05, so
    the default stays 0 and the value is the sweep's to choose.  ``r_dropout``
    is the fused score with the randomly dropped entities scored through the cold-start path
    below.

    **Cold-start path.**  A user or item with no training interaction has no CF vector:
    its ``m`` is 0, so the towers see its side features only, and ``p`` is replaced by a
    popularity prior, ``p = gamma * log(1 + pop_i)`` when the user is cold and the item warm
    (``pop_i`` the item's training count, ``gamma >= 0`` learned on the dropped-out pairs),
    and ``p = 0`` when the item is cold (a cold item's prior is the deep part's ``c(y_i)``).
    So a cold item is ranked by ``(1 - lambda) * q_deep``: its features against the user's
    tower vector; a cold user by the popularity prior plus their features' tower vector.

    Which domain a pair belongs to at scoring time: ``pair_domain="item"`` uses the item's
    home (most frequent training) domain, ``"user"`` the user's; ``"auto"`` picks ``item``
    when the training domains partition the items (genre domains) and ``user`` otherwise
    (ML-1M + ML-100K: movies in both, users in one).  An entity without a home domain gets
    the shared parts only.

    In training the towers run once per distinct user and item of a mini-batch, not once
    per interaction nor over the whole catalogue.
    Shapes: :meth:`score` maps users ``(B,)`` to ``(B, n_items)``, one matmul per domain for
    the CF part and one for the deep part.
    """

    iterative = True

    def __init__(self, train: TrainSet, config: Mapping[str, Any]) -> None:
        super().__init__(train, config)
        fixed_lambda = config["lambda"]
        if fixed_lambda is not None and not 0.0 <= float(fixed_lambda) <= 1.0:
            raise ConfigError(f"lambda={fixed_lambda!r} must lie in [0, 1], or be null to "
                              "learn it; e.g. --set lambda=0.5.")
        domains = (train.domains if train.domains is not None
                   else torch.zeros_like(train.users))
        self.n_domains = int(domains.max()) + 1 if domains.numel() else 1
        # The parts are built in this order (their random initialisations follow it).
        self._build_collaborative(train, config)
        self._build_deep(train, config)
        self._build_fusion_weight(train.device, fixed_lambda)
        self._build_domain_buffers(train, config, domains)
        self.to(train.device)

        self.batch_size = int(config["batch_size"])
        self.l2 = float(config["l2"])
        self.domain_l2 = float(config["domain_l2"])
        self.deep_l2 = float(config["deep_l2"])
        self.dropout_weight = float(config["dropout_weight"])
        self.domain_sampling = config["domain_sampling"]  # a declared choice of the recipe
        self.epoch_interactions = config["epoch_interactions"]
        self.id_dropout = float(config["id_dropout"])
        self.optimizer: torch.optim.Optimizer | None = None

    def _embedding(self, train: TrainSet, num: int) -> nn.Module:
        return train.components.encoder("id-embedding", num=num, dim=int(self.config["dim"]),
                                        init_std=float(self.config["init_std"]))

    def _build_collaborative(self, train: TrainSet, config: Mapping[str, Any]) -> None:
        """The CF part: shared and per-domain id vectors, the item-based user part (with the
        training history it pools), item biases, the ``dot`` fusion and ``bpr`` head."""
        n_users, n_items, device = train.n_users, train.n_items, train.device
        self.user_shared = self._embedding(train, n_users)
        self.item_shared = self._embedding(train, n_items)
        self.user_domain = self._embedding(train, self.n_domains * n_users)
        self.item_domain = self._embedding(train, self.n_domains * n_items)
        nn.init.zeros_(self.user_domain.weight)
        nn.init.zeros_(self.item_domain.weight)
        # the item-based part of a user's vector: its training items' Y rows, pooled
        self.user_items_weight = float(config["user_items"])
        self.user_items_alpha = float(config["user_items_alpha"])
        if self.user_items_weight > 0:
            self.item_context = self._embedding(train, n_items)
            self.register_buffer("history_crow", train.matrix.crow_indices().clone(),
                                 persistent=False)
            self.register_buffer("history_items", train.matrix.col_indices().clone(),
                                 persistent=False)
        self.item_bias = nn.Parameter(torch.zeros(n_items, device=device))
        self.item_domain_bias = nn.Parameter(torch.zeros(self.n_domains, n_items, device=device))
        self.fusion = train.components.fusion("dot")
        self.ranking_head = train.components.head("bpr")

    def _build_deep(self, train: TrainSet, config: Mapping[str, Any]) -> None:
        """The deep part: side-feature bags (non-persistent buffers), a ``feature-bag``
        encoder and a ``concat-mlp`` tower per side."""
        components, device = train.components, train.device
        dim, init_std = int(config["dim"]), float(config["init_std"])
        feature_dim = int(config["feature_dim"])
        hidden = [int(h) for h in config["tower_hidden"]]
        dropout = float(config["tower_dropout"])
        user_tensors = feature_tensors(train.user_features, train.user_feature_kinds,
                                       train.n_users, device)
        item_tensors = feature_tensors(train.item_features, train.item_feature_kinds,
                                       train.n_items, device)
        self.register_buffer("user_bags", user_tensors.bags, persistent=False)
        self.register_buffer("user_numeric", user_tensors.numeric, persistent=False)
        self.register_buffer("item_bags", item_tensors.bags, persistent=False)
        self.register_buffer("item_numeric", item_tensors.numeric, persistent=False)
        self.user_features = components.encoder(
            "feature-bag", vocabulary=user_tensors.vocabulary_size,
            numeric=user_tensors.n_numeric, dim=feature_dim, init_std=init_std)
        self.item_features = components.encoder(
            "feature-bag", vocabulary=item_tensors.vocabulary_size,
            numeric=item_tensors.n_numeric, dim=feature_dim, init_std=init_std)
        self.user_tower = components.fusion("concat-mlp", in_dim=feature_dim + dim,
                                            hidden=hidden, out_dim=dim, dropout=dropout)
        self.item_tower = components.fusion("concat-mlp", in_dim=feature_dim + dim,
                                            hidden=hidden, out_dim=dim + 1, dropout=dropout)

    def _build_fusion_weight(self, device: torch.device, fixed_lambda: Any) -> None:
        """``lambda`` (fixed, or a learned logit) and the popularity prior's raw weight."""
        self.lambda_logit = nn.Parameter(torch.zeros((), device=device),
                                         requires_grad=fixed_lambda is None)
        if fixed_lambda is not None:
            self.lambda_logit.data.fill_(_logit(float(fixed_lambda)))
        # lambda = 1: the fused score is the CF score alone, so the towers never run
        self.cf_only = fixed_lambda is not None and float(fixed_lambda) == 1.0
        self.prior_raw = nn.Parameter(torch.zeros((), device=device))

    def _build_domain_buffers(self, train: TrainSet, config: Mapping[str, Any],
                              domains: torch.Tensor) -> None:
        """What the training data says about entities and domains: home domains, the pair
        rule, log popularity, and each domain's negative pool."""
        n_users, n_items = train.n_users, train.n_items
        user_home, _ = home_domains(train.users, domains, n_users, self.n_domains)
        item_home, item_pure = home_domains(train.items, domains, n_items, self.n_domains)
        rule = config["pair_domain"]  # a declared choice of the recipe
        if rule == "auto":
            rule = "item" if bool(item_pure[item_home >= 0].all()) else "user"
        self.pair_rule = rule
        self.register_buffer("user_home", user_home, persistent=False)
        self.register_buffer("item_home", item_home, persistent=False)
        self.register_buffer("log_popularity", torch.log1p(train.item_popularity.float()),
                             persistent=False)
        # Negatives: items of each domain, concatenated, with offsets and sizes.
        pairs = torch.unique(domains * n_items + train.items)
        pool_domain, pool = pairs // n_items, pairs % n_items
        sizes = torch.bincount(pool_domain, minlength=self.n_domains)
        self.register_buffer("negative_pool", pool, persistent=False)
        self.register_buffer("pool_size", sizes, persistent=False)
        self.register_buffer("pool_offset", sizes.cumsum(0) - sizes, persistent=False)

    # ------------------------------------------------------------------ parts
    @property
    def fusion_lambda(self) -> torch.Tensor:
        """``lambda`` in ``(0, 1)``: the CF part's weight in the fused score."""
        return torch.sigmoid(self.lambda_logit)

    @property
    def prior_weight(self) -> torch.Tensor:
        """``gamma >= 0``: the popularity prior's weight for cold users."""
        return nn.functional.softplus(self.prior_raw)

    def warm_users(self) -> torch.Tensor:
        """Bool ``(n_users,)``: users with training interactions."""
        return self.user_home >= 0

    def warm_items(self) -> torch.Tensor:
        """Bool ``(n_items,)``: items with training interactions."""
        return self.item_home >= 0

    def user_vectors(self, users: torch.Tensor, domains: torch.Tensor) -> torch.Tensor:
        """``P_u + P^d_u``: ``(B,)``, ``(B,)`` -> ``(B, dim)``; ``d = -1`` gives ``P_u``."""
        specific = self.user_domain(domains.clamp(min=0) * self.n_users + users)
        return self.user_shared(users) + specific * (domains >= 0).unsqueeze(-1)

    def history_sums(self, users: torch.Tensor) -> torch.Tensor:
        """``sum_{j in I_u} Y_j`` over each user's training items: ``(U,)`` -> ``(U, dim)``
        (one ``embedding_bag`` over the users' rows of the training matrix)."""
        entries, sizes = csr_row_entries(self.history_crow, users)
        return bag_sums(self.item_context.weight, self.history_items[entries],
                        sizes.cumsum(0) - sizes)

    def item_based_users(self, users: torch.Tensor, sums: torch.Tensor | None = None,
                         leave_out: torch.Tensor | None = None) -> torch.Tensor:
        """``w |I_u \\ {i}|^-alpha sum_{j in I_u \\ {i}} Y_j``: ``(B,)`` -> ``(B, dim)``, the
        training item ``leave_out`` ``(B,)`` (the positive of a training pair) taken out of
        its own user's history, as FISM does; ``sums`` are :meth:`history_sums` of ``users``
        when already computed."""
        if sums is None:
            sums = self.history_sums(users)
        sizes = (self.history_crow[users + 1] - self.history_crow[users]).float()
        if leave_out is not None:
            sums = sums - self.item_context(leave_out)
            sizes = sizes - 1.0
        scale = self.user_items_weight * sizes.clamp(min=1.0).pow(-self.user_items_alpha)
        return sums * scale.unsqueeze(-1)

    def item_vectors(self, items: torch.Tensor, domains: torch.Tensor) -> torch.Tensor:
        """``Q_i + Q^d_i``: ``(B,)``, ``(B,)`` -> ``(B, dim)``; ``d = -1`` gives ``Q_i``."""
        specific = self.item_domain(domains.clamp(min=0) * self.n_items + items)
        return self.item_shared(items) + specific * (domains >= 0).unsqueeze(-1)

    def item_biases(self, items: torch.Tensor, domains: torch.Tensor) -> torch.Tensor:
        specific = self.item_domain_bias[domains.clamp(min=0), items]
        return self.item_bias[items] + specific * (domains >= 0)

    def towers(self, user_keep: torch.Tensor, item_keep: torch.Tensor,
               users: torch.Tensor | None = None, items: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Tower outputs ``g([x_u, m_u P_u])`` ``(U, dim)`` and ``[h, c]([y_i, m_i Q_i])``
        ``(I, dim + 1)`` of the entities ``users`` ``(U,)`` and ``items`` ``(I,)`` (every
        entity when ``None``), given the keep masks ``m`` of every entity (``(n_users,)``,
        ``(n_items,)``).  The feature bags of all entities are one sparse product per side
        (cheap: a few tokens per entity); the MLPs run over the chosen rows only, so a
        training step costs the batch's distinct entities, not the whole catalogue."""
        user_features = self.user_features(self.user_bags, self.user_numeric)
        item_features = self.item_features(self.item_bags, self.item_numeric)
        if users is None:
            users = torch.arange(self.n_users, device=user_keep.device)
        if items is None:
            items = torch.arange(self.n_items, device=item_keep.device)
        user_ids = self.user_shared(users) * user_keep[users].unsqueeze(-1)
        item_ids = self.item_shared(items) * item_keep[items].unsqueeze(-1)
        return (self.user_tower(user_features[users], user_ids),
                self.item_tower(item_features[items], item_ids))

    def deep_scores(self, tower_users: torch.Tensor, tower_items: torch.Tensor
                    ) -> torch.Tensor:
        """``q_deep = <g, h> + c`` for pairs of tower rows ``(B, dim)``, ``(B, dim + 1)``."""
        return self.fusion(tower_users, tower_items[:, :-1]) + tower_items[:, -1]

    def _fuse(self, cf: torch.Tensor, deep: torch.Tensor, user_keep: torch.Tensor,
              item_keep: torch.Tensor, log_pop: torch.Tensor) -> torch.Tensor:
        """``lambda * p + (1 - lambda) * q``, ``p`` the CF score where both sides are warm,
        else the popularity prior (all arguments broadcast to the same shape)."""
        both = user_keep * item_keep
        prior = self.prior_weight * log_pop * item_keep
        p = both * cf + (1.0 - both) * prior
        weight = self.fusion_lambda
        return weight * p + (1.0 - weight) * deep

    # ------------------------------------------------------------------ training
    def _sample_negatives(self, train: TrainSet, users: torch.Tensor,
                          domains: torch.Tensor, max_tries: int = 10) -> torch.Tensor:
        """One item per interaction, uniform over the items of its domain that the user has
        no training interaction with (vectorised rejection sampling: only the rows that hit
        a training pair are redrawn, at most ``max_tries`` times)."""

        def draw(rows: torch.Tensor) -> torch.Tensor:
            uniform = torch.rand(rows.numel(), generator=train.generator,
                                 device=train.generator.device).to(rows.device)
            size = self.pool_size[domains[rows]]
            slot = (uniform * size).long().clamp_(max=size - 1)
            return self.negative_pool[self.pool_offset[domains[rows]] + slot]

        every = torch.arange(users.numel(), device=users.device)
        negatives = draw(every)
        for _ in range(max_tries):
            clash = train.has_interaction(users, negatives).nonzero(as_tuple=True)[0]
            if clash.numel() == 0:
                break
            negatives[clash] = draw(clash)
        return negatives

    def _keep(self, train: TrainSet, warm: torch.Tensor) -> torch.Tensor:
        """Float ``(n,)``: 1 for a warm entity kept this step, 0 for a cold or dropped one."""
        if self.id_dropout <= 0:
            return warm.float()
        draw = torch.rand(warm.numel(), generator=train.generator,
                          device=train.generator.device).to(warm.device)
        return ((draw >= self.id_dropout) & warm).float()

    def _epoch_order(self, train: TrainSet, domains: torch.Tensor) -> torch.Tensor:
        """The training rows one epoch visits, in order.

        ``domain_sampling="uniform"``: a random permutation of all rows (a pass over the
        data), cut to ``epoch_interactions`` rows when that is set.  ``"balanced"``: every
        domain with training rows contributes the same number of rows, drawn uniformly with
        replacement from that domain, ``epoch_interactions`` in all (default: all rows), so
        a small target domain is not drowned by a large source domain.
        """
        n = train.n_interactions
        size = int(self.epoch_interactions or n)
        generator = train.generator
        if self.domain_sampling == "uniform":
            order = torch.randperm(n, generator=generator, device=generator.device)
            return order[:size].to(train.device)
        sorted_rows = torch.argsort(domains, stable=True)
        counts = torch.bincount(domains, minlength=self.n_domains)
        starts = counts.cumsum(0) - counts
        present = (counts > 0).nonzero(as_tuple=True)[0]
        per_domain = -(-size // present.numel())
        domain = present.repeat_interleave(per_domain)
        uniform = torch.rand(domain.numel(), generator=generator,
                             device=generator.device).to(domains.device)
        slot = (uniform * counts[domain]).long().clamp_(max=counts[domain] - 1)
        rows = sorted_rows[starts[domain] + slot]
        shuffle = torch.randperm(rows.numel(), generator=generator, device=generator.device)
        return rows[shuffle.to(rows.device)][:size]

    def _deep_pair_scores(self, user_keep: torch.Tensor, item_keep: torch.Tensor,
                          batch_users: torch.Tensor, batch_items: torch.Tensor,
                          user_slot: torch.Tensor, positive_slot: torch.Tensor,
                          negative_slot: torch.Tensor
                          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``q_deep`` of a batch's positive and negative pairs ``(B,)``, ``(B,)``, and the
        squared norm of the tower rows they use (``0`` without ``deep_l2``).

        The towers run over the batch's distinct entities ``batch_users``/``batch_items``;
        ``*_slot`` ``(B,)`` say which of their rows each pair uses.  With ``lambda = 1`` the
        deep part has no weight in the fused score: the scores are 0 and nothing runs."""
        nothing = torch.zeros((), device=user_keep.device)
        if self.cf_only:
            zeros = torch.zeros(user_slot.numel(), device=user_keep.device)
            return zeros, zeros, nothing
        tower_users, tower_items = self.towers(user_keep, item_keep, batch_users, batch_items)
        tower_user = tower_users[user_slot]
        tower_positive, tower_negative = tower_items[positive_slot], tower_items[negative_slot]
        norms = nothing
        if self.deep_l2 > 0:
            norms = (tower_user.pow(2).sum() + tower_positive.pow(2).sum()
                     + tower_negative.pow(2).sum())
        return (self.deep_scores(tower_user, tower_positive),
                self.deep_scores(tower_user, tower_negative), norms)

    def fit_epoch(self, train: TrainSet, epoch: int) -> Mapping[str, float]:
        if self.optimizer is None:
            # fused: one kernel over every parameter (Adam's moments touch whole tables)
            self.optimizer = torch.optim.Adam(
                [p for p in self.parameters() if p.requires_grad], lr=float(self.config["lr"]),
                fused=True)
        device = train.device
        all_domains = (train.domains if train.domains is not None
                       else torch.zeros_like(train.users))
        order = self._epoch_order(train, all_domains)
        n = order.numel()
        warm_users, warm_items = self.warm_users().float(), self.warm_items().float()
        totals = {name: torch.zeros((), device=device)
                  for name in ("bpr", "dropout_bpr", "l2")}
        for start in range(0, n, self.batch_size):
            batch = order[start : start + self.batch_size]
            size = batch.numel()
            users, positives = train.users[batch], train.items[batch]
            domains = all_domains[batch]
            negatives = self._sample_negatives(train, users, domains)

            batch_users, user_slot = torch.unique(users, return_inverse=True)
            user_vectors = self.user_vectors(users, domains)
            item_based = torch.zeros((), device=device)
            if self.user_items_weight > 0:
                item_based = self.item_based_users(
                    users, self.history_sums(batch_users)[user_slot], leave_out=positives)
                user_vectors = user_vectors + item_based
            positive_vectors = self.item_vectors(positives, domains)
            negative_vectors = self.item_vectors(negatives, domains)
            cf_positive = (self.fusion(user_vectors, positive_vectors)
                           + self.item_biases(positives, domains))
            cf_negative = (self.fusion(user_vectors, negative_vectors)
                           + self.item_biases(negatives, domains))

            # the towers run once per distinct user and item of the batch
            batch_items, item_slot = torch.unique(torch.cat([positives, negatives]),
                                                  return_inverse=True)
            pairs = (batch_users, batch_items, user_slot, *item_slot.split(size))
            # the warm path: every id vector in the towers, the CF score in the fusion
            deep_positive, deep_negative, deep_norms = self._deep_pair_scores(
                warm_users, warm_items, *pairs)
            ranking_loss = self.ranking_head(
                self._fuse(cf_positive, deep_positive, 1.0, 1.0, 0.0),
                self._fuse(cf_negative, deep_negative, 1.0, 1.0, 0.0))
            # the dropout path: entities dropped at random are scored as if cold (skipped
            # when it carries no weight: it costs a second pass of both towers)
            dropout_loss = torch.zeros((), device=device)
            if self.dropout_weight > 0:
                user_keep_all = self._keep(train, self.warm_users())
                item_keep_all = self._keep(train, self.warm_items())
                deep_positive, deep_negative, _ = self._deep_pair_scores(
                    user_keep_all, item_keep_all, *pairs)
                user_keep = user_keep_all[users]
                dropout_loss = self.ranking_head(
                    self._fuse(cf_positive, deep_positive, user_keep,
                               item_keep_all[positives], self.log_popularity[positives]),
                    self._fuse(cf_negative, deep_negative, user_keep,
                               item_keep_all[negatives], self.log_popularity[negatives]))
            shared = (self.user_shared(users).pow(2).sum() + item_based.pow(2).sum()
                      + self.item_shared(positives).pow(2).sum()
                      + self.item_shared(negatives).pow(2).sum())
            specific = (self.user_domain(domains * self.n_users + users).pow(2).sum()
                        + self.item_domain(domains * self.n_items + positives).pow(2).sum()
                        + self.item_domain(domains * self.n_items + negatives).pow(2).sum())
            l2_loss = (self.l2 * shared + self.domain_l2 * specific
                       + self.deep_l2 * deep_norms) / size
            loss = ranking_loss + self.dropout_weight * dropout_loss + l2_loss
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            for name, value in (("bpr", ranking_loss), ("dropout_bpr", dropout_loss),
                                ("l2", l2_loss)):
                totals[name] += value.detach() * size
        losses = {name: float(total) / n for name, total in totals.items()}
        losses["lambda"] = float(self.fusion_lambda.detach())
        return losses

    # ------------------------------------------------------------------ scoring
    def _pair_domains(self, users: torch.Tensor) -> torch.Tensor:
        """Domain of every (user, item) pair of a scoring batch: ``(B, n_items)``."""
        if self.pair_rule == "item":
            return self.item_home.unsqueeze(0).expand(users.numel(), -1)
        return self.user_home[users].unsqueeze(1).expand(-1, self.n_items)

    def score(self, users: torch.Tensor) -> torch.Tensor:
        all_items = torch.arange(self.n_items, device=users.device)
        pair_domains = self._pair_domains(users)
        cf = torch.zeros(users.numel(), self.n_items, device=users.device)
        item_based = (self.item_based_users(users) if self.user_items_weight > 0
                      else torch.zeros((), device=users.device))
        for domain in range(-1, self.n_domains):
            chosen = pair_domains == domain
            if not bool(chosen.any()):
                continue
            domain_index = torch.full_like(users, domain)
            item_domain = torch.full_like(all_items, domain)
            block = (self.fusion.all_items(self.user_vectors(users, domain_index) + item_based,
                                           self.item_vectors(all_items, item_domain))
                     + self.item_biases(all_items, item_domain))
            cf = torch.where(chosen, block, cf)
        if self.cf_only:
            deep = torch.zeros((), device=users.device)
        else:
            tower_users, tower_items = self.towers(self.warm_users().float(),
                                                   self.warm_items().float(), users)
            deep = self.fusion.all_items(tower_users, tower_items[:, :-1]) + tower_items[:, -1]
        user_keep = self.warm_users()[users].float()
        item_keep = self.warm_items().float()
        return self._fuse(cf, deep, user_keep.unsqueeze(1), item_keep.unsqueeze(0),
                          self.log_popularity.unsqueeze(0))


def _logit(p: float) -> float:
    p = min(max(p, 1e-6), 1.0 - 1e-6)
    return math.log(p / (1.0 - p))
