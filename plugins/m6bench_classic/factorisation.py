"""Matrix factorisation: BPR-MF (pairwise, SGD) and iALS (pointwise, alternating least squares)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from m6bench import Recommender, TrainSet, row_gradient
from m6bench_classic._sparse import float_csr, row_block, transpose_csr

# The recipe's declared choices of ``negatives`` (checked when the config is resolved).
NEGATIVE_SAMPLERS = ("uniform", "true")


class BPRMF(Recommender):
    """Matrix factorisation trained with Bayesian Personalised Ranking.

    Rendle, Freudenthaler, Gantner, Schmidt-Thieme, "BPR: Bayesian Personalized Ranking from
    Implicit Feedback", UAI 2009.  Built from the catalog's components: two ``id-embedding``
    encoders (users ``(n_users, dim)``, items ``(n_items, dim)``), the ``dot`` fusion and the
    ``bpr`` head.  Each epoch is one pass over the shuffled training interactions in
    mini-batches of ``(user, positive item)`` pairs, each with one sampled negative item
    (``negatives="true"``: uniform over the items the user has not interacted with, as
    RecBole's sampler does; or ``"uniform"`` over all items, which sometimes draws a positive);
    Adam; L2 of the embeddings in the batch, ``l2 * sum |e|^2 / B``.
    :meth:`score` maps users ``(B,)`` to ``(B, dim) @ (dim, n_items)``.
    """

    iterative = True

    def __init__(self, train: TrainSet, config: Mapping[str, Any]) -> None:
        super().__init__(train, config)
        dim, init_std = int(config["dim"]), float(config["init_std"])
        self.user_encoder = train.components.encoder("id-embedding", num=train.n_users, dim=dim,
                                                     init_std=init_std)
        self.item_encoder = train.components.encoder("id-embedding", num=train.n_items, dim=dim,
                                                     init_std=init_std)
        self.fusion = train.components.fusion("dot")
        self.head = train.components.head("bpr")
        self.to(train.device)
        self.batch_size = int(config["batch_size"])
        self.l2 = float(config["l2"])
        self.true_negatives = config["negatives"] == "true"
        # The fused kernel updates the full embedding tables several times faster; every step
        # touches all rows (Adam's moments), which dominates a step on large tables.
        # (torch.optim.SparseAdam, updating only the batch's rows, measured 1.7x slower per
        # ML-1M epoch on a 2-core CPU: sparse gradients cost more than they save.)  Built
        # here, not in the first epoch: a process's first optimizer imports torch's compiler
        # stack (about 2 s), which is set-up, not training.  Moving the model later keeps
        # these parameter objects, so the optimizer follows.
        self.optimizer = torch.optim.Adam([self.user_encoder.weight, self.item_encoder.weight],
                                          lr=float(config["lr"]), fused=True)

    def fit_epoch(self, train: TrainSet, epoch: int) -> Mapping[str, float]:
        # Losses are summed on the device and read once per epoch (no per-batch sync).
        ranking_total = torch.zeros((), device=train.device)
        l2_total = torch.zeros((), device=train.device)
        for users, positives, negatives in train.bpr_batches(self.batch_size,
                                                             self.true_negatives):
            ranking_loss, l2_loss = self.set_gradients(users, positives, negatives)
            self.optimizer.step()
            ranking_total.add_(ranking_loss, alpha=users.numel())
            l2_total.add_(l2_loss, alpha=users.numel())
        n = train.n_interactions
        return {"bpr": float(ranking_total) / n, "l2": float(l2_total) / n}

    @torch.no_grad()
    def set_gradients(self, users: torch.Tensor, positives: torch.Tensor,
                      negatives: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write the gradient of one mini-batch's loss into both tables' ``.grad`` and return
        the loss's two parts, ``(bpr, l2)``.

        The chain rule is applied by hand, which is what autograd would compute (a test
        compares the two): with ``x = <u, p> - <u, n>`` (the dot fusion) and
        ``g = dbpr/dx`` (the head's :meth:`margin_gradient`), ``dL/du = g (p - n) + c u``,
        ``dL/dp = g u + c p``, ``dL/dn = -g u + c n`` with ``c = 2 l2 / B``, each summed into
        its table row.  Recording a graph for five small operations costs about as much as
        the arithmetic, so this halves a BPR-MF epoch on a CPU."""
        size = users.numel()
        user_vectors = self.user_encoder.weight.index_select(0, users)
        items = torch.cat([positives, negatives])
        item_vectors = self.item_encoder.weight.index_select(0, items)
        positive_vectors, negative_vectors = item_vectors.split(size)
        positive_scores = self.fusion(user_vectors, positive_vectors)
        negative_scores = self.fusion(user_vectors, negative_vectors)
        margin_grad = self.head.margin_gradient(positive_scores, negative_scores).unsqueeze(1)
        decay = 2.0 * self.l2 / size
        user_grads = torch.addcmul(user_vectors * decay, margin_grad,
                                   positive_vectors - negative_vectors)
        scaled_users = margin_grad * user_vectors
        item_grads = torch.cat([scaled_users, -scaled_users]).add_(item_vectors, alpha=decay)
        self.user_encoder.weight.grad = row_gradient(user_grads, users, self.n_users)
        self.item_encoder.weight.grad = row_gradient(item_grads, items, self.n_items)
        ranking_loss = self.head(positive_scores, negative_scores)
        l2_loss = self.l2 * (_squared_norm(user_vectors) + _squared_norm(item_vectors)) / size
        return ranking_loss, l2_loss

    def score(self, users: torch.Tensor) -> torch.Tensor:
        return self.fusion.all_items(self.user_encoder(users), self.item_encoder.weight)


def _squared_norm(vectors: torch.Tensor) -> torch.Tensor:
    flat = vectors.reshape(-1)
    return torch.dot(flat, flat)


def solve_side_exact(
    fixed: torch.Tensor, interactions: torch.Tensor, alpha: float, l2: float, block_size: int
) -> torch.Tensor:
    """One half-step of iALS: the exact least-squares factors of every row of ``interactions``.

    For row ``u`` with positives ``I(u)`` and the other side's factors ``Y`` (``fixed``):
    ``x_u = (Y^T Y + alpha sum_{i in I(u)} y_i y_i^T + l2 I)^-1 (1 + alpha) sum_{i in I(u)} y_i``
    (Hu et al. 2008, eq. 4, with binary preferences and confidence ``1 + alpha``).  The
    per-row sum of outer products is one sparse ``(b, m) @ (m, d*d)`` product per block of
    rows, and the ``(b, d, d)`` systems are solved in one batched call.  Costs ``O(nnz d^2)``
    time and ``O(m d^2)`` memory: fine for small catalogues, slow beyond.

    :param fixed: ``(m, d)`` factors of the other side.
    :param interactions: sparse CSR float32 ``(n, m)`` binary matrix.
    :return: ``(n, d)`` factors.
    """
    n, d = interactions.shape[0], fixed.shape[1]
    regularised_gram = fixed.T @ fixed + l2 * torch.eye(d, device=fixed.device)
    outer_products = (fixed.unsqueeze(2) * fixed.unsqueeze(1)).reshape(-1, d * d)
    solved = torch.empty(n, d, dtype=fixed.dtype, device=fixed.device)
    for start in range(0, n, block_size):
        end = min(start + block_size, n)
        rows = row_block(interactions, start, end)
        systems = regularised_gram + alpha * torch.sparse.mm(rows, outer_products).reshape(-1, d, d)
        targets = (1.0 + alpha) * torch.sparse.mm(rows, fixed)
        solved[start:end] = torch.linalg.solve(systems, targets)
    return solved


def solve_side_cg(
    fixed: torch.Tensor, interactions: torch.Tensor, current: torch.Tensor, alpha: float,
    l2: float, steps: int
) -> torch.Tensor:
    """The same half-step by a few conjugate-gradient steps from the current factors.

    Takács, Pilászy, Tikk, "Applications of the Conjugate Gradient Method for Implicit
    Feedback Collaborative Filtering", RecSys 2011: warm-started CG needs only a few steps
    per sweep.  The product of every row's system matrix with a direction ``P`` (``(n, d)``)
    is ``P (Y^T Y + l2 I) + alpha ((P Y^T) sampled at the positives) Y``: a sampled
    dense-dense product and a sparse-dense product, ``O(nnz d)`` each, so no ``d x d``
    matrix per row is ever formed.  Every row runs its own CG with row-wise step sizes.

    :param current: ``(n, d)`` factors to start from.
    :return: ``(n, d)`` factors.
    """
    d = fixed.shape[1]
    regularised_gram = fixed.T @ fixed + l2 * torch.eye(d, device=fixed.device)
    fixed_t = fixed.T.contiguous()

    def system_times(direction: torch.Tensor) -> torch.Tensor:
        at_positives = torch.sparse.sampled_addmm(interactions, direction, fixed_t, beta=0.0)
        return direction @ regularised_gram + alpha * torch.sparse.mm(at_positives, fixed)

    solution = current.clone()
    residual = (1.0 + alpha) * torch.sparse.mm(interactions, fixed) - system_times(solution)
    direction = residual.clone()
    residual_norm = residual.pow(2).sum(dim=1, keepdim=True)
    for _ in range(steps):
        product = system_times(direction)
        # A converged row has a zero direction; the clamp keeps its step at 0, not NaN.
        curvature = (direction * product).sum(dim=1, keepdim=True).clamp_min(1e-30)
        step = residual_norm / curvature
        solution += step * direction
        residual -= step * product
        new_norm = residual.pow(2).sum(dim=1, keepdim=True)
        direction = residual + (new_norm / residual_norm.clamp_min(1e-30)) * direction
        residual_norm = new_norm
    return solution


def ials_loss(user_factors: torch.Tensor, item_factors: torch.Tensor,
              interactions: torch.Tensor, alpha: float, l2: float) -> torch.Tensor:
    """The iALS objective ``sum_{u,i} c_ui (p_ui - x_u.y_i)^2 + l2 (|X|^2 + |Y|^2)`` in
    ``O(nnz d + (n + m) d^2)``: the all-pairs term ``sum s_ui^2 = <X^T X, Y^T Y>`` plus a
    correction on the positives, where ``c = 1 + alpha`` and ``p = 1``.  The positives'
    scores come from one sampled product, never an ``(nnz, d)`` gather (ten times faster on
    ML-1M, where the gather made the loss two thirds of an epoch)."""
    all_pairs = ((user_factors.T @ user_factors) * (item_factors.T @ item_factors)).sum()
    positive_scores = torch.sparse.sampled_addmm(
        interactions, user_factors, item_factors.T.contiguous(), beta=0.0).values()
    positives = ((1.0 + alpha) * (1.0 - positive_scores).pow(2) - positive_scores.pow(2)).sum()
    return all_pairs + positives + l2 * (user_factors.pow(2).sum() + item_factors.pow(2).sum())


class IALS(Recommender):
    """Implicit alternating least squares.

    Hu, Koren, Volinsky, "Collaborative Filtering for Implicit Feedback Datasets", ICDM 2008.
    Every (user, item) pair is a target: 1 with confidence ``1 + alpha`` for training
    interactions, 0 with confidence 1 otherwise; each epoch solves for all user factors with
    the item factors fixed, then for all item factors.  Shapes: buffers ``user_factors``
    ``(n_users, dim)`` and ``item_factors`` ``(n_items, dim)``, float32; :meth:`score` maps
    users ``(B,)`` to ``(B, dim) @ (dim, n_items)``.  ``cg_steps > 0`` updates each side by
    that many warm-started conjugate-gradient steps (``O(nnz d)`` per step; the scalable
    default); ``cg_steps = 0`` solves every ``d x d`` system exactly (``O(nnz d^2)`` time,
    ``O(n d^2)`` memory).
    """

    iterative = True

    def __init__(self, train: TrainSet, config: Mapping[str, Any]) -> None:
        super().__init__(train, config)
        dim = int(config["dim"])
        self.alpha = float(config["alpha"])
        self.l2 = float(config["l2"])
        self.block_size = int(config["block_size"])
        self.cg_steps = int(config["cg_steps"])
        # Training data in both orientations: buffers so that .to() moves them, not persistent.
        self.register_buffer("user_item", float_csr(train.matrix), persistent=False)
        self.register_buffer("item_user", transpose_csr(self.user_item), persistent=False)
        generator = train.generator

        def initial(rows: int) -> torch.Tensor:
            factors = torch.randn(rows, dim, generator=generator, device=generator.device)
            return (factors * float(config["init_std"])).to(train.device)

        self.register_buffer("user_factors", initial(train.n_users))
        self.register_buffer("item_factors", initial(train.n_items))

    def fit_epoch(self, train: TrainSet, epoch: int) -> Mapping[str, float]:
        self.user_factors.copy_(self._solve(self.item_factors, self.user_item,
                                            self.user_factors))
        self.item_factors.copy_(self._solve(self.user_factors, self.item_user,
                                            self.item_factors))
        loss = ials_loss(self.user_factors, self.item_factors, self.user_item, self.alpha,
                         self.l2)
        return {"weighted_squared_error": float(loss) / train.n_users}

    def _solve(self, fixed: torch.Tensor, interactions: torch.Tensor,
               current: torch.Tensor) -> torch.Tensor:
        if self.cg_steps > 0:
            return solve_side_cg(fixed, interactions, current, self.alpha, self.l2,
                                 self.cg_steps)
        return solve_side_exact(fixed, interactions, self.alpha, self.l2, self.block_size)

    def score(self, users: torch.Tensor) -> torch.Tensor:
        return self.user_factors[users] @ self.item_factors.T
