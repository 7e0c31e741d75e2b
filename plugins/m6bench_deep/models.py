"""NeuMF, DeepFM, Wide&Deep and Mult-VAE as m6bench recommenders.

The first three are pointwise models trained on implicit feedback: every training
interaction is a positive, each with ``negatives`` sampled true negatives (items the user
has not interacted with), under the logistic loss (the ``bce`` head).  Scoring a batch of
users against every item is done block-wise over users, with the first MLP layer split into
a user part and an item part (``pair-mlp``), so no ``(B, n_items, d_user + d_item)`` input is
ever built.  Mult-VAE is a user-level autoencoder trained on whole user rows.
"""

from __future__ import annotations

import abc
import itertools
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from m6bench import ConfigError, Recommender, TrainSet, history_rows
from m6bench_deep.fields import field_table

# Elements of the (users, items, width) activations scored at once (about 64 MB of float32).
SCORE_BLOCK_ELEMENTS = 16_000_000


class PointwiseImplicit(Recommender):
    """Shared training loop of the pointwise models.

    Each epoch shuffles the training interactions; a batch of ``batch_size`` positives
    ``(B,)`` gets ``negatives`` true negatives per positive ``(B, k)`` from
    ``train.sample_true_negatives``; the loss is the ``bce`` head on the pair logits plus
    nothing else (regularisation is Adam's ``weight_decay`` and dropout).  Subclasses define
    :meth:`pair_logits` (``(N,), (N,) -> (N,)``) and :meth:`score`.
    """

    iterative = True

    def __init__(self, train: TrainSet, config: Mapping[str, Any]) -> None:
        super().__init__(train, config)
        if int(config["negatives"]) < 1:
            raise ConfigError(f"negatives={config['negatives']} must be at least 1: the "
                              "logistic loss needs negative examples; e.g. --set negatives=4.")
        self.batch_size = int(config["batch_size"])
        self.n_negatives = int(config["negatives"])
        self.loss_head = train.components.head("bce")
        self.optimizer: torch.optim.Optimizer | None = None

    @abc.abstractmethod
    def pair_logits(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Logits of (user, item) pairs, ``(N,), (N,) -> (N,)``."""

    def fit_epoch(self, train: TrainSet, epoch: int) -> Mapping[str, float]:
        if self.optimizer is None:
            self.optimizer = torch.optim.Adam(self.parameters(), lr=float(self.config["lr"]),
                                              weight_decay=float(self.config["weight_decay"]))
        n = train.n_interactions
        order = torch.randperm(n, generator=train.generator,
                               device=train.generator.device).to(train.device)
        total = torch.zeros((), device=train.device)
        k = self.n_negatives
        for start in range(0, n, self.batch_size):
            batch = order[start: start + self.batch_size]
            users, positives = train.users[batch], train.items[batch]
            negative_users = users.repeat_interleave(k)
            negatives = train.sample_true_negatives(negative_users)
            logits = self.pair_logits(torch.cat([users, negative_users]),
                                      torch.cat([positives, negatives]))
            loss = self.loss_head(logits[: users.numel()],
                                  logits[users.numel():].view(-1, k))
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            total += loss.detach() * batch.numel()
        return {"bce": float(total) / n}

    def _blocks(self, n_users: int, width: int) -> range:
        if torch.compiler.is_exporting():
            # One block spanning the whole batch: an exported batch's size is symbolic (a
            # loop over it cannot be traced) and a served batch is small.
            return range(0, 1, 2**62)
        step = max(1, SCORE_BLOCK_ELEMENTS // max(1, self.n_items * width))
        return range(0, n_users, step)


def _hidden(config: Mapping[str, Any], key: str) -> list[int]:
    hidden = [int(h) for h in config[key]]
    if not hidden or min(hidden) < 1:
        raise ConfigError(f"{key}={config[key]!r} must list at least one positive layer width, "
                          f"e.g. --set {key}=[64,32].")
    return hidden


# =============================================================================== NeuMF
class NeuMF(PointwiseImplicit):
    """Neural matrix factorisation: GMF and an MLP tower fused by a final linear layer.

    He, Liao, Zhang, Nie, Hu, Chua, "Neural Collaborative Filtering", WWW 2017.  GMF:
    ``p_u^G * q_i^G`` ``(B, dim)`` (``gmf`` fusion); MLP: ``[p_u^M ; q_i^M]`` ``(B, 2 e)``
    through ReLU layers ``mlp_hidden`` (``pair-mlp`` fusion) to ``(B, h_L)``; the logit is
    ``h^T [gmf ; mlp]``.  Four ``id-embedding`` encoders (separate GMF and MLP tables, as
    in the paper).  Trained jointly from scratch with Adam (the paper's optional GMF/MLP
    pre-training is not used).  :meth:`score` is ``(B,) -> (B, n_items)``: the GMF part is
    one matmul, the MLP part is computed block-wise.
    """

    def __init__(self, train: TrainSet, config: Mapping[str, Any]) -> None:
        super().__init__(train, config)
        dim, mlp_dim = int(config["dim"]), int(config["mlp_dim"])
        hidden = _hidden(config, "mlp_hidden")
        catalog, std = train.components, float(config["init_std"])
        self.gmf_user = catalog.encoder("id-embedding", num=train.n_users, dim=dim, init_std=std)
        self.gmf_item = catalog.encoder("id-embedding", num=train.n_items, dim=dim, init_std=std)
        self.mlp_user = catalog.encoder("id-embedding", num=train.n_users, dim=mlp_dim,
                                        init_std=std)
        self.mlp_item = catalog.encoder("id-embedding", num=train.n_items, dim=mlp_dim,
                                        init_std=std)
        self.gmf = catalog.fusion("gmf")
        self.mlp = catalog.fusion("pair-mlp", user_dim=mlp_dim, item_dim=mlp_dim,
                                  hidden=hidden[:-1] or hidden, out_dim=hidden[-1],
                                  dropout=float(config["dropout"]), final_activation=True)
        self.output = nn.Linear(dim + hidden[-1], 1)
        self.mlp_width = max(hidden)
        self.to(train.device)

    def pair_logits(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        gmf = self.gmf(self.gmf_user(users), self.gmf_item(items))
        mlp = self.mlp(self.mlp_user(users), self.mlp_item(items))
        return self.output(torch.cat([gmf, mlp], dim=-1)).squeeze(-1)

    def score(self, users: torch.Tensor) -> torch.Tensor:
        dim = self.gmf_user.weight.shape[1]
        gmf_weight, mlp_weight = self.output.weight[0, :dim], self.output.weight[0, dim:]
        scores = (self.gmf_user(users) * gmf_weight) @ self.gmf_item.weight.T + self.output.bias
        item_mlp = self.mlp_item.weight
        user_mlp = self.mlp_user(users)
        blocks = self._blocks(users.numel(), self.mlp_width)
        for start in blocks:
            block = slice(start, start + blocks.step)
            tower = self.mlp.all_items(user_mlp[block], item_mlp)  # (b, n_items, h_L)
            scores[block] += tower @ mlp_weight
        return scores


# =============================================================================== DeepFM
class _FieldModel(PointwiseImplicit):
    """Shared by DeepFM and Wide&Deep: user fields (id, gender, occupation, age band, ...)
    and item fields (id, genres, release-year band, ...) from the side tables, as token
    tensors ``(n, F, K)`` in non-persistent buffers, embedded by one ``field-embedding``."""

    def __init__(self, train: TrainSet, config: Mapping[str, Any]) -> None:
        super().__init__(train, config)
        side = bool(config["side_features"])
        users = field_table(train.n_users, train.user_features if side else None,
                            train.user_feature_kinds, id_name="user")
        items = field_table(train.n_items, train.item_features if side else None,
                            train.item_feature_kinds, id_name="item")
        # One vocabulary: item token ids follow the user ones.
        offset = users.vocabulary - 1
        item_tokens = torch.where(items.tokens > 0, items.tokens + offset, items.tokens)
        self.register_buffer("user_tokens", users.tokens, persistent=False)
        self.register_buffer("user_weights", users.weights, persistent=False)
        self.register_buffer("item_tokens", item_tokens, persistent=False)
        self.register_buffer("item_weights", items.weights, persistent=False)
        self.user_fields, self.item_fields = users.names, items.names
        self.vocabulary = users.vocabulary + items.vocabulary - 1
        self.dim = int(config["dim"])
        self.fields = train.components.encoder("field-embedding", vocabulary=self.vocabulary,
                                               dim=self.dim, init_std=float(config["init_std"]))
        hidden = _hidden(config, "mlp_hidden")
        f_user, f_item = len(users.names), len(items.names)
        self.deep = train.components.fusion(
            "pair-mlp", user_dim=f_user * self.dim, item_dim=f_item * self.dim, hidden=hidden,
            out_dim=1, dropout=float(config["dropout"]))
        self.deep_width = max(hidden)

    def user_side(self, users: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Field vectors ``(B, F_u, d)`` and first-order terms ``(B,)`` of users."""
        tokens, weights = self.user_tokens[users], self.user_weights[users]
        return self.fields(tokens, weights), self.fields.linear(tokens, weights)

    def item_side(self, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tokens, weights = self.item_tokens[items], self.item_weights[items]
        return self.fields(tokens, weights), self.fields.linear(tokens, weights)

    def deep_scores(self, user_fields: torch.Tensor, item_fields: torch.Tensor) -> torch.Tensor:
        """The deep part for every pair of ``(B, F_u, d)`` users and ``(n, F_i, d)`` items,
        block-wise: ``(B, n)``."""
        flat_users, flat_items = user_fields.flatten(1), item_fields.flatten(1)
        out = torch.empty(flat_users.shape[0], flat_items.shape[0], device=flat_users.device)
        blocks = self._blocks(flat_users.shape[0], self.deep_width)
        for start in blocks:
            block = slice(start, start + blocks.step)
            out[block] = self.deep.all_items(flat_users[block], flat_items).squeeze(-1)
        return out


class DeepFM(_FieldModel):
    """DeepFM: a factorisation machine and a deep network sharing one field embedding.

    Guo, Tang, Ye, Li, He, "DeepFM: A Factorization-Machine based Neural Network for CTR
    Prediction", IJCAI 2017.  Fields ``e_f`` ``(B, F, d)`` from ``field-embedding`` (user id,
    user side features, item id, item side features); logit = bias + first-order terms +
    FM second-order term (``fm-interaction``) + MLP over the concatenated field vectors
    (``pair-mlp``).  For :meth:`score` the FM term splits into user-only, item-only and
    ``<sum_u e, sum_i e>`` parts (one matmul); the MLP is evaluated block-wise.
    """

    def __init__(self, train: TrainSet, config: Mapping[str, Any]) -> None:
        super().__init__(train, config)
        self.fm = train.components.fusion("fm-interaction")
        self.bias = nn.Parameter(torch.zeros(()))
        self.to(train.device)

    def pair_logits(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        user_fields, user_linear = self.user_side(users)
        item_fields, item_linear = self.item_side(items)
        deep = self.deep(user_fields.flatten(1), item_fields.flatten(1)).squeeze(-1)
        return self.bias + user_linear + item_linear + self.fm(user_fields, item_fields) + deep

    def score(self, users: torch.Tensor) -> torch.Tensor:
        user_fields, user_linear = self.user_side(users)
        items = torch.arange(self.n_items, device=users.device)
        item_fields, item_linear = self.item_side(items)
        fm = (self.fm(user_fields)[:, None] + self.fm(item_fields)[None, :]
              + user_fields.sum(1) @ item_fields.sum(1).T)
        return (self.bias + user_linear[:, None] + item_linear[None, :] + fm
                + self.deep_scores(user_fields, item_fields))


# =============================================================================== Wide&Deep
class WideDeep(_FieldModel):
    """Wide & Deep: a linear model over sparse features and their cross products, trained
    jointly with a deep network over field embeddings.

    Cheng et al., "Wide & Deep Learning for Recommender Systems", DLRS 2016.  Wide part:
    first-order weights of every token plus cross-product features of the user's side
    tokens and the item's side tokens (``x_u^T W x_i`` with ``W`` ``(V, V)`` over the side
    vocabulary, ids excluded: "occupation=programmer AND genre=Sci-Fi"); deep part: MLP over
    the concatenated field embeddings (``pair-mlp``).  Adam trains both parts (the paper uses
    FTRL for the wide and AdaGrad for the deep part).  :meth:`score` computes the wide part
    as ``(B, V) @ W @ (V, n)`` and the deep part block-wise.
    """

    def __init__(self, train: TrainSet, config: Mapping[str, Any]) -> None:
        super().__init__(train, config)
        # Weighted multi-hot side tokens (the id field left out) over each side's own compact
        # vocabulary, for the cross products.
        self.register_buffer("user_cross", _multi_hot(self.user_tokens[:, 1:],
                                                      self.user_weights[:, 1:]),
                             persistent=False)
        self.register_buffer("item_cross", _multi_hot(self.item_tokens[:, 1:],
                                                      self.item_weights[:, 1:]),
                             persistent=False)
        self.cross = nn.Parameter(torch.zeros(self.user_cross.shape[1], self.item_cross.shape[1]))
        self.bias = nn.Parameter(torch.zeros(()))
        self.to(train.device)

    def pair_logits(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        user_fields, user_linear = self.user_side(users)
        item_fields, item_linear = self.item_side(items)
        cross = ((self.user_cross[users] @ self.cross) * self.item_cross[items]).sum(dim=-1)
        deep = self.deep(user_fields.flatten(1), item_fields.flatten(1)).squeeze(-1)
        return self.bias + user_linear + item_linear + cross + deep

    def score(self, users: torch.Tensor) -> torch.Tensor:
        user_fields, user_linear = self.user_side(users)
        items = torch.arange(self.n_items, device=users.device)
        item_fields, item_linear = self.item_side(items)
        cross = (self.user_cross[users] @ self.cross) @ self.item_cross.T
        return (self.bias + user_linear[:, None] + item_linear[None, :] + cross
                + self.deep_scores(user_fields, item_fields))


def _multi_hot(tokens: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``(n, F, K)`` tokens and weights -> ``(n, V)`` weighted indicator rows over the ``V``
    distinct non-padding tokens present (at least one column, all zero without tokens)."""
    present = torch.unique(tokens[tokens > 0])
    hot = torch.zeros(tokens.shape[0], max(1, present.numel()), device=tokens.device)
    if present.numel():
        column = torch.searchsorted(present, tokens.flatten(1).clamp_min(1))
        column = column.clamp_max(present.numel() - 1)
        hot.scatter_add_(1, column, weights.flatten(1) * (tokens.flatten(1) > 0))
    return hot


# =============================================================================== Mult-VAE
class MultVAE(Recommender):
    """Variational autoencoder with a multinomial likelihood over a user's items.

    Liang, Krishnan, Hoffman, Jebara, "Variational Autoencoders for Collaborative
    Filtering", WWW 2018.  A user's training row ``x_u`` ``(n_items,)``, L2-normalised and
    dropped out (``dropout``, training only), goes through ``tanh`` encoder layers
    ``hidden`` to ``mu, log sigma^2`` ``(latent,)``; ``z = mu + sigma * eps`` (training) or
    ``mu`` (scoring) goes through the mirrored decoder to item logits ``(n_items,)``.  Loss:
    the ``multinomial-elbo`` head with ``beta`` annealed linearly from 0 to ``anneal_cap``
    over ``anneal_steps`` updates.  The training rows are a non-persistent dense buffer
    ``(n_users, n_items)``; :meth:`score` is ``(B,) -> (B, n_items)``.
    """

    iterative = True

    def __init__(self, train: TrainSet, config: Mapping[str, Any]) -> None:
        super().__init__(train, config)
        hidden = _hidden(config, "hidden")
        latent = int(config["latent"])
        self.register_buffer("rows", train.dense_matrix(), persistent=False)
        sizes = [train.n_items, *hidden]
        encoder: list[nn.Module] = [nn.Dropout(float(config["dropout"]))]
        for a, b in itertools.pairwise(sizes):
            encoder += [nn.Linear(a, b), nn.Tanh()]
        self.encoder = nn.Sequential(*encoder)
        self.to_latent = nn.Linear(sizes[-1], 2 * latent)
        decoder: list[nn.Module] = []
        back = [latent, *reversed(hidden)]
        for a, b in itertools.pairwise(back):
            decoder += [nn.Linear(a, b), nn.Tanh()]
        decoder.append(nn.Linear(back[-1], train.n_items))
        self.decoder = nn.Sequential(*decoder)
        for module in [*self.encoder, self.to_latent, *self.decoder]:
            if isinstance(module, nn.Linear):
                nn.init.xavier_normal_(module.weight)
                nn.init.normal_(module.bias, std=0.001)
        self.loss_head = train.components.head("multinomial-elbo")
        self.batch_size = int(config["batch_size"])
        self.anneal_cap = float(config["anneal_cap"])
        self.anneal_steps = max(1, int(config["anneal_steps"]))
        self.register_buffer("updates", torch.zeros((), dtype=torch.int64))
        self.to(train.device)
        self.optimizer: torch.optim.Optimizer | None = None

    def encode(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, n_items)`` rows -> ``mu, log_var`` ``(B, latent)`` each."""
        normalised = nn.functional.normalize(rows, dim=-1)
        mu, log_var = self.to_latent(self.encoder(normalised)).chunk(2, dim=-1)
        return mu, log_var

    def fit_epoch(self, train: TrainSet, epoch: int) -> Mapping[str, float]:
        if self.optimizer is None:
            self.optimizer = torch.optim.Adam(self.parameters(), lr=float(self.config["lr"]),
                                              weight_decay=float(self.config["weight_decay"]))
        n = train.n_users
        order = torch.randperm(n, generator=train.generator,
                               device=train.generator.device).to(train.device)
        total = torch.zeros((), device=train.device)
        for start in range(0, n, self.batch_size):
            users = order[start: start + self.batch_size]
            rows = self.rows[users]
            mu, log_var = self.encode(rows)
            noise = torch.randn(mu.shape, generator=train.generator,
                                device=train.generator.device).to(mu.device)
            z = mu + noise * torch.exp(0.5 * log_var)
            beta = min(self.anneal_cap, float(self.updates) / self.anneal_steps)
            loss = self.loss_head(self.decoder(z), rows, mu, log_var, beta)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.updates += 1
            total += loss.detach() * users.numel()
        return {"neg_elbo": float(total) / n}

    def score(self, users: torch.Tensor) -> torch.Tensor:
        mu, _ = self.encode(self.rows[users])
        return self.decoder(mu)

    def export_scores(self, users: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        # The rows from the padded histories: the (n_users, n_items) buffer stays out of the
        # exported graph.
        mu, _ = self.encode(history_rows(history, self.n_items))
        return self.decoder(mu)
