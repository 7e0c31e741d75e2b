"""gnn-mf models: LightGCN-style propagation over MF embeddings, and its two-stage variant."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from m6bench import ConfigError, Recommender, TrainSet
from m6bench_gnn_mf.graph import combination_weights, normalised_adjacency

NEGATIVE_SAMPLERS = ("uniform", "true")
FINETUNE_MODES = ("head", "all")


def _check_graph_config(config: Mapping[str, Any]) -> None:
    """Ranges and the layer weights; ``negatives`` and ``finetune`` are the recipes' declared
    ``choices``, checked when the config is resolved."""
    if int(config["steps_per_epoch"]) < 1:
        raise ConfigError(f"steps_per_epoch must be at least 1, got "
                          f"{config['steps_per_epoch']}; e.g. --set steps_per_epoch=8.")
    if int(config["layers"]) < 0:
        raise ConfigError(f"layers must be 0 or more, got {config['layers']}; e.g. "
                          "--set layers=2.")
    try:
        combination_weights(int(config["layers"]), config["layer_weights"])
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


class GNNMF(Recommender):
    """Graph propagation over the user-item bipartite graph on top of MF embeddings.

    He, Deng, Wang, Li, Zhang, Wang, "LightGCN: Simplifying and Powering Graph Convolution
    Network for Recommendation", SIGIR 2020; loss of Rendle et al., "BPR: Bayesian
    Personalized Ranking from Implicit Feedback", UAI 2009.

    Components from the catalog: two ``id-embedding`` encoders give the ego embeddings
    ``E_0`` (users ``(n_users, dim)``, items ``(n_items, dim)``); the ``graph-propagation``
    encoder computes ``E = sum_k alpha_k A^k E_0`` for ``k = 0..layers`` with ``A`` the
    symmetric-normalised ``(N, N)`` adjacency (``N = n_users + n_items``), a float32 sparse
    CSR tensor built once from the training matrix and kept as a (non-persistent) buffer on
    the device; the ``dot`` fusion scores ``<e_u, e_i>``; the ``bpr`` head gives the loss.

    Training is full-batch propagation per optimisation step: every step propagates the whole
    graph once (``layers`` sparse products forward, as many backward), then takes one BPR
    step on a large batch of ``(user, positive, negative)`` triples.  An epoch is one pass
    over the shuffled training interactions in ``steps_per_epoch`` such batches, so an
    epoch costs ``steps_per_epoch`` propagations whatever the size of the data (RecBole's
    LightGCN propagates the whole graph for every mini-batch of 2,048).  L2 regularisation
    is on the ego embeddings of the batch, ``reg * (|e_u|^2 + |e_i|^2 + |e_j|^2) / 2B``, as
    in the paper.  Adam.

    :meth:`score` maps users ``(B,)`` to ``(B, dim) @ (dim, n_items)`` on the propagated
    embeddings; the propagation is computed once per set of weights and reused by every
    evaluation batch.  With ``layers=0`` the model is BPR-MF.
    """

    iterative = True

    def __init__(self, train: TrainSet, config: Mapping[str, Any]) -> None:
        super().__init__(train, config)
        _check_graph_config(config)
        dim, init_std = int(config["dim"]), float(config["init_std"])
        components = train.components
        self.user_encoder = components.encoder("id-embedding", num=train.n_users, dim=dim,
                                               init_std=init_std)
        self.item_encoder = components.encoder("id-embedding", num=train.n_items, dim=dim,
                                               init_std=init_std)
        self.propagation = components.encoder("graph-propagation", layers=int(config["layers"]),
                                              layer_weights=config["layer_weights"])
        self.fusion = components.fusion("dot")
        self.ranking_head = components.head("bpr")
        # Derived from the training data: rebuilt by __init__, never saved in a state_dict.
        self.register_buffer("adjacency", normalised_adjacency(train.matrix), persistent=False)
        self.register_buffer("propagated", torch.empty(0, dim, device=train.device),
                             persistent=False)
        self._propagated_for: tuple[tuple[int, int], ...] | None = None
        self.to(train.device)
        self.steps_per_epoch = int(config["steps_per_epoch"])
        self.reg = float(config["reg"])
        self.true_negatives = config["negatives"] == "true"
        # Built here, not in the first epoch: a process's first optimizer imports torch's
        # compiler stack (about 2 s), which is set-up, not training.  Moving the model later
        # keeps these parameter objects, so the optimizer follows.
        self.optimizer = torch.optim.Adam([self.user_encoder.weight, self.item_encoder.weight],
                                          lr=float(config["lr"]))

    # ------------------------------------------------------------------ embeddings
    def ego_embeddings(self) -> torch.Tensor:
        """``E_0``: ``(n_users + n_items, dim)``, users first."""
        return torch.cat([self.user_encoder.weight, self.item_encoder.weight])

    def propagate(self) -> torch.Tensor:
        """The propagated embeddings ``(n_users + n_items, dim)`` (differentiable)."""
        return self.propagation(self.ego_embeddings(), self.adjacency)

    def final_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Propagated (users ``(n_users, dim)``, items ``(n_items, dim)``) for scoring.

        Computed without gradients and cached until a weight changes: the key is each
        embedding table's storage and in-place version counter, which an optimizer step,
        ``load_state_dict`` and ``.to()`` all change.
        """
        key = tuple((p.data_ptr(), p._version) for p in (self.user_encoder.weight,
                                                         self.item_encoder.weight))
        if key != self._propagated_for or self.propagated.device != self.adjacency.device:
            with torch.no_grad():
                self.propagated = self.propagate().detach()
            self._propagated_for = key
        return self.propagated[: self.n_users], self.propagated[self.n_users :]

    # ------------------------------------------------------------------ training
    def bpr_epoch(self, train: TrainSet) -> dict[str, float]:
        """One pass over the shuffled interactions, one propagation per big batch."""
        n = train.n_interactions
        batch_size = -(-n // self.steps_per_epoch)
        ranking_total = torch.zeros((), device=train.device)
        reg_total = torch.zeros((), device=train.device)
        for users, positives, negatives in train.bpr_batches(batch_size, self.true_negatives):
            size = users.numel()
            final = self.propagate()
            user_vectors = final[users]
            positive_vectors = final[self.n_users + positives]
            negative_vectors = final[self.n_users + negatives]
            ranking_loss = self.ranking_head(self.fusion(user_vectors, positive_vectors),
                                             self.fusion(user_vectors, negative_vectors))
            reg_loss = self.reg * 0.5 * (
                self.user_encoder(users).pow(2).sum() + self.item_encoder(positives).pow(2).sum()
                + self.item_encoder(negatives).pow(2).sum()
            ) / size
            self.optimizer.zero_grad(set_to_none=True)
            (ranking_loss + reg_loss).backward()
            self.optimizer.step()
            ranking_total.add_(ranking_loss.detach(), alpha=size)
            reg_total.add_(reg_loss.detach(), alpha=size)
        return {"bpr": float(ranking_total) / n, "reg": float(reg_total) / n}

    def fit_epoch(self, train: TrainSet, epoch: int) -> Mapping[str, float]:
        return self.bpr_epoch(train)

    # ------------------------------------------------------------------ scoring
    def score(self, users: torch.Tensor) -> torch.Tensor:
        user_final, item_final = self.final_embeddings()
        return self.fusion.all_items(user_final[users], item_final)

    def export_module(self) -> torch.nn.Module:
        self.final_embeddings()  # refresh the cache: the graph holds it, not the propagation
        return super().export_module()

    def export_scores(self, users: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        # The propagated embeddings as constants (the sparse propagation is not traceable).
        final = self.propagated
        return self.fusion.all_items(final[: self.n_users][users], final[self.n_users :])


class GNNMFRating(GNNMF):
    """Two-stage gnn-mf: pre-train on the graph with BPR, then fine-tune a rating head.

    Stage 1 (inside the first call of :meth:`fit_epoch`): ``pretrain_epochs`` epochs of the
    :class:`GNNMF` objective.  Stage 2 (every epoch, the first included): a rating head on
    top of the propagated embeddings, trained with MSE on the training ratings in
    mini-batches of ``finetune_batch_size``:
    ``r_ui = mu + b_u + b_i + MLP([e_u, e_i, e_u * e_i])`` with the catalog's
    ``concat-mlp`` fusion (``3 dim -> hidden -> 1``) and ``mse`` head.  ``finetune="head"``
    freezes the graph embeddings (they are propagated once, after pre-training);
    ``finetune="all"`` keeps training them through the propagation (one propagation per
    fine-tuning batch).  The harness's early stopping (RMSE on validation) applies to stage 2.

    Shapes: biases ``(n_users,)``, ``(n_items,)``; :meth:`predict` maps ``(N,)`` user and
    item indices to ``(N,)`` ratings; :meth:`score` is the pre-trained ranking score.
    """

    def __init__(self, train: TrainSet, config: Mapping[str, Any]) -> None:
        super().__init__(train, config)
        if train.ratings is None:
            raise ConfigError("gnn-mf-rating fine-tunes a rating head, but the benchmark's "
                              "training data has no ratings; use gnn-mf for ranking.")
        dim = int(config["dim"])
        self.rating_fusion = train.components.fusion(
            "concat-mlp", in_dim=3 * dim, hidden=[int(h) for h in config["head_hidden"]],
            out_dim=1, dropout=float(config["head_dropout"]))
        self.rating_head = train.components.head("mse")
        self.user_bias = torch.nn.Parameter(torch.zeros(train.n_users, device=train.device))
        self.item_bias = torch.nn.Parameter(torch.zeros(train.n_items, device=train.device))
        self.register_buffer("global_mean", train.ratings.float().mean().reshape(()))
        self.finetune_optimizer: torch.optim.Optimizer | None = None

    def _head_parameters(self) -> list[torch.nn.Parameter]:
        return [*self.rating_fusion.parameters(), self.user_bias, self.item_bias]

    def _rating(self, user_vectors: torch.Tensor, item_vectors: torch.Tensor,
                users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        interaction = self.rating_fusion(user_vectors, item_vectors, user_vectors * item_vectors)
        return (self.global_mean + self.user_bias[users] + self.item_bias[items]
                + interaction.squeeze(-1))

    def fit_epoch(self, train: TrainSet, epoch: int) -> Mapping[str, float]:
        losses: dict[str, float] = {}
        if epoch == 1:
            for _ in range(int(self.config["pretrain_epochs"])):
                losses = self.bpr_epoch(train)
        if self.finetune_optimizer is None:
            params = self._head_parameters()
            if self.config["finetune"] == "all":
                params += [self.user_encoder.weight, self.item_encoder.weight]
            self.finetune_optimizer = torch.optim.Adam(
                params, lr=float(self.config["finetune_lr"]),
                weight_decay=float(self.config["finetune_l2"]))
        frozen = self.config["finetune"] == "head"
        n = train.n_interactions
        batch_size = int(self.config["finetune_batch_size"])
        order = torch.randperm(n, generator=train.generator,
                               device=train.generator.device).to(train.device)
        total = torch.zeros((), device=train.device)
        for start in range(0, n, batch_size):
            batch = order[start : start + batch_size]
            users, items = train.users[batch], train.items[batch]
            if frozen:
                user_final, item_final = self.final_embeddings()
            else:
                final = self.propagate()
                user_final, item_final = final[: self.n_users], final[self.n_users :]
            predicted = self._rating(user_final[users], item_final[items], users, items)
            loss = self.rating_head(predicted, train.ratings[batch].float())
            self.finetune_optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.finetune_optimizer.step()
            total += loss.detach() * batch.numel()
        return {**{f"pretrain_{k}": v for k, v in losses.items()}, "mse": float(total) / n}

    def predict(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        user_final, item_final = self.final_embeddings()
        out = torch.empty(users.shape, dtype=torch.float32, device=users.device)
        for start in range(0, users.numel(), 65536):
            u, i = users[start : start + 65536], items[start : start + 65536]
            out[start : start + 65536] = self._rating(user_final[u], item_final[i], u, i)
        return out
