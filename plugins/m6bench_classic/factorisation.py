"""Matrix factorisation: BPR-MF (pairwise, Adagrad) and iALS (alternating least squares)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch.optim.adagrad import adagrad

from m6bench import ConfigError, Recommender, TrainSet, row_gradient
from m6bench_classic._sparse import float_csr, row_block, transpose_csr

# The recipes' declared choices of ``negatives`` and ``kernel`` (checked when the config is
# resolved).  ``kernel``: "fused" trains with the model's numba CPU kernel, "tensor" with
# tensor operations (any device), "auto" fused on a CPU.
NEGATIVE_SAMPLERS = ("uniform", "true")
KERNELS = ("auto", "fused", "tensor")


class BPRMF(Recommender):
    """Matrix factorisation trained with Bayesian Personalised Ranking.

    Rendle, Freudenthaler, Gantner, Schmidt-Thieme, "BPR: Bayesian Personalized Ranking from
    Implicit Feedback", UAI 2009.  Built from the catalog's components: two ``id-embedding``
    encoders (users ``(n_users, dim)``, items ``(n_items, dim)``), the ``dot`` fusion and the
    ``bpr`` head.  Each epoch is one pass over the shuffled training interactions in
    mini-batches of ``(user, positive item)`` pairs, each with one sampled negative item
    (``negatives="true"``: uniform over the items the user has not interacted with, as
    RecBole's sampler does; or ``"uniform"`` over all items, which sometimes draws a positive).
    A pair's loss is ``-log sigmoid(<u, p> - <u, n>) + l2 (|u|^2 + |p|^2 + |n|^2)``; a step
    descends the batch's summed loss by Adagrad (Duchi, Hazan, Singer, JMLR 2011; the rule of
    ``torch.optim.Adagrad``, which a test compares) on the rows the batch touched only: rows
    outside the batch have a zero gradient, so Adagrad would leave them unchanged anyway.
    ``report_loss`` logs the epoch's mean loss parts; off, the training is the same.
    ``kernel``: ``"tensor"`` runs the step as the batched tensor operations of :meth:`step`
    (any device); ``"fused"`` runs the whole epoch as one numba CPU kernel
    (:mod:`m6bench_classic._bpr_kernel`: the same steps to float rounding, its own shuffle and
    negatives from the run's generator, 2-3x faster on a CPU); ``"auto"`` picks fused on a
    CPU.
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
        # Adagrad's sums of squared gradients: training state, not saved with the model.
        self.register_buffer("user_squares", torch.zeros(train.n_users, dim), persistent=False)
        self.register_buffer("item_squares", torch.zeros(train.n_items, dim), persistent=False)
        self.to(train.device)
        self.batch_size = int(config["batch_size"])
        self.lr = float(config["lr"])
        self.l2 = float(config["l2"])
        self.true_negatives = config["negatives"] == "true"
        # Early stopping reads the validation metric, not the loss; the loss's two extra
        # passes over every batch's rows cost 5-7% of an ML-1M epoch, so it is on request.
        self.report_loss = bool(config["report_loss"])
        self.fused = _wants_fused_kernel(str(config["kernel"]), train.device, "bpr-mf")
        if self.fused:
            from m6bench_classic._bpr_kernel import warm_up

            warm_up()

    def fit_epoch(self, train: TrainSet, epoch: int) -> Mapping[str, float]:
        if self.fused:
            return self._fit_epoch_fused(train)
        # Losses are summed on the device and read once per epoch (no per-batch sync).
        ranking_total = torch.zeros((), device=train.device)
        l2_total = torch.zeros((), device=train.device)
        for users, positives, negatives in train.bpr_batches(self.batch_size,
                                                             self.true_negatives):
            losses = self.step(users, positives, negatives, with_loss=self.report_loss)
            if losses is not None:
                ranking_total += losses[0]
                l2_total += losses[1]
        if not self.report_loss:
            return {}
        n = train.n_interactions
        return {"bpr": float(ranking_total) / n, "l2": float(l2_total) / n}

    @torch.no_grad()
    def _fit_epoch_fused(self, train: TrainSet) -> Mapping[str, float]:
        # One draw of the run's generator seeds the epoch's shuffle and negatives.
        seed = int(torch.randint(0, 2**62, (1,), generator=train.generator))
        ranking_total, norms_total = self.fused_kernel(train).epoch(
            seed, self.true_negatives, self.lr, 2.0 * self.l2, ADAGRAD_EPS, self.report_loss)
        if not self.report_loss:
            return {}
        n = train.n_interactions
        return {"bpr": ranking_total / n, "l2": self.l2 * norms_total / n}

    def fused_kernel(self, train: TrainSet) -> Any:
        """The :class:`~m6bench_classic._bpr_kernel.FusedBPR` of this model's tables, built
        again whenever a table's storage has moved (it writes through views of them)."""
        from m6bench_classic._bpr_kernel import FusedBPR

        tables = (self.user_encoder.weight, self.user_squares, self.item_encoder.weight,
                  self.item_squares)
        key = tuple(t.data_ptr() for t in tables)
        if getattr(self, "_fused_key", None) != key:
            matrix = train.matrix
            self._fused = FusedBPR(tables, train.users, train.items,
                                   matrix.crow_indices().numpy(), matrix.col_indices().numpy(),
                                   train.n_items, max_batch=self.batch_size)
            self._fused_key = key
        return self._fused

    @torch.no_grad()
    def step(self, users: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor,
             with_loss: bool = True) -> tuple[torch.Tensor, torch.Tensor] | None:
        """One Adagrad step on a mini-batch; returns its summed loss parts ``(bpr, l2)``, or
        None when not ``with_loss``."""
        items = torch.cat([positives, negatives])
        user_grads, item_grads, ranking_loss, l2_loss = self.row_gradients(users, items,
                                                                           with_loss)
        adagrad_rows(self.user_encoder.weight, self.user_squares, users, user_grads, self.lr)
        adagrad_rows(self.item_encoder.weight, self.item_squares, items, item_grads, self.lr)
        return (ranking_loss, l2_loss) if with_loss else None

    @torch.no_grad()
    def row_gradients(self, users: torch.Tensor, items: torch.Tensor, with_loss: bool = True
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None,
                                 torch.Tensor | None]:
        """The gradient of a batch's summed loss with respect to each gathered row, and the
        loss's two parts (None unless ``with_loss``: the gradient does not need them).

        :param users: int64 ``(B,)``.
        :param items: int64 ``(2B,)``, the positives then the negatives.
        :return: user rows ``(B, d)``, item rows ``(2B, d)`` (rows of a repeated index add
            up), the summed ``bpr`` and ``l2`` terms.

        The chain rule is applied by hand, which is what autograd would compute (a test
        compares the two): with ``x = <u, p - n>`` (the dot fusion; ``<u, p> - <u, n>``)
        and ``g = dbpr/dx`` (the head's :meth:`margin_gradient`, times ``B`` for a sum),
        ``dL/du = g (p - n) + 2 l2 u``, ``dL/dp = g u + 2 l2 p``, ``dL/dn = -g u + 2 l2 n``.
        Recording a graph for these few small operations costs about as much as the
        arithmetic."""
        size = users.numel()
        user_vectors = self.user_encoder.weight.index_select(0, users)
        item_vectors = self.item_encoder.weight.index_select(0, items)
        positive_vectors, negative_vectors = item_vectors.split(size)
        difference = positive_vectors - negative_vectors
        margins = self.fusion(user_vectors, difference)
        baseline = margins.new_zeros(())  # the head scores pairs; a margin is the pair (x, 0)
        margin_grad = self.head.margin_gradient(margins, baseline).mul_(size).unsqueeze(1)
        ranking_loss = l2_loss = None
        if with_loss:
            ranking_loss = self.head(margins, baseline) * size
            l2_loss = self.l2 * (_squared_norm(user_vectors) + _squared_norm(item_vectors))
        # In place on the batch's own copies: each pass over (B, d) rows is memory-bound.
        decay = 2.0 * self.l2
        user_grads = difference.mul_(margin_grad).add_(user_vectors, alpha=decay)
        item_grads = item_vectors.mul_(decay)
        item_grads[:size].addcmul_(margin_grad, user_vectors)
        item_grads[size:].addcmul_(margin_grad, user_vectors, value=-1.0)
        return user_grads, item_grads, ranking_loss, l2_loss

    def score(self, users: torch.Tensor) -> torch.Tensor:
        return self.fusion.all_items(self.user_encoder(users), self.item_encoder.weight)


def _wants_fused_kernel(kernel: str, device: torch.device, model: str) -> bool:
    """Whether ``model`` trains with its numba CPU kernel (``kernel``: one of
    :data:`KERNELS`)."""
    if kernel not in KERNELS:
        raise ConfigError(f"{model}: kernel={kernel!r} is not one of {KERNELS}; use "
                          "--set kernel=auto.")
    if kernel == "tensor" or (kernel == "auto" and device.type != "cpu"):
        return False
    if device.type != "cpu":
        raise ConfigError(f"{model}: kernel='fused' runs on a CPU only, and this run's device "
                          f"is {device}; use --set kernel=auto (the tensor code there).")
    return True


def _squared_norm(vectors: torch.Tensor) -> torch.Tensor:
    flat = vectors.reshape(-1)
    return torch.dot(flat, flat)


# torch.optim.Adagrad's default: added to the root of the squared-gradient sum.
ADAGRAD_EPS = 1e-10


def adagrad_rows(table: torch.Tensor, squares: torch.Tensor, index: torch.Tensor,
                 row_grads: torch.Tensor, lr: float) -> None:
    """One Adagrad step on the rows ``index`` of ``table`` ``(n, d)`` only, in place.

    :param squares: ``(n, d)`` sums of squared gradients, updated in place.
    :param index: int64 ``(B,)`` rows that received ``row_grads`` ``(B, d)``; a repeated row's
        gradients add up first, as in the table's full gradient.

    Per touched row ``r`` with summed gradient ``g``: ``squares[r] += g^2`` and
    ``table[r] -= lr g / (sqrt(squares[r]) + eps)``, what ``torch.optim.Adagrad`` does to
    every row of a dense gradient (untouched rows have ``g = 0`` and do not move), without
    sweeping the whole table and its state every step as a dense optimizer does.
    """
    if index.numel() >= table.shape[0]:
        # A batch that gathers at least as many rows as the table has touches most of it:
        # one dense pass over the table then costs less than finding the distinct rows.
        adagrad_step(table, squares, row_gradient(row_grads, index, table.shape[0]), lr)
        return
    touched, inverse = distinct_rows(index, table.shape[0])
    rows, sums = table.index_select(0, touched), squares.index_select(0, touched)
    adagrad_step(rows, sums, row_gradient(row_grads, inverse, touched.numel()), lr)
    # Distinct rows, so these are plain deterministic writes on every device.
    table.index_copy_(0, touched, rows)
    squares.index_copy_(0, touched, sums)


def adagrad_step(parameters: torch.Tensor, squares: torch.Tensor, gradient: torch.Tensor,
                 lr: float) -> None:
    """``squares += gradient^2; parameters -= lr gradient / (sqrt(squares) + eps)`` in place,
    by ``torch.optim.Adagrad``'s own functional update.  On a CPU its fused kernel does it
    in one pass over the rows instead of four (addcmul, sqrt, add, addcdiv): ~40% less time
    for ML-1M's tables, measured; elsewhere the single-tensor rule, whose step counter stays
    on the CPU (no device sync: it only matters with an ``lr_decay``, here 0)."""
    adagrad([parameters], [gradient], [squares], [torch.zeros(())],
            fused=parameters.device.type == "cpu", lr=lr, weight_decay=0.0, lr_decay=0.0,
            eps=ADAGRAD_EPS, maximize=False)


def distinct_rows(index: torch.Tensor, n_rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``torch.unique(index, return_inverse=True)`` for indices below ``n_rows``, by marking
    rows in an ``(n_rows,)`` table instead of sorting (8x faster for a BPR batch's 8,192
    item indices on a CPU, measured).

    :return: the distinct rows ascending ``(k,)`` and each index's position among them
        ``(B,)``.
    """
    marked = torch.zeros(n_rows, dtype=torch.bool, device=index.device)
    rows = marked.index_fill_(0, index, True).nonzero().squeeze(1)
    position = torch.empty(n_rows, dtype=torch.long, device=index.device)
    position.index_copy_(0, rows, torch.arange(rows.numel(), device=index.device))
    return rows, position.index_select(0, index)


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
    # b - A x0 with one sparse product instead of two: ``Y`` weighted on the positives by
    # ``(1 + alpha) - alpha (x0 . y_i)`` (``beta`` scales the binary matrix's values), less
    # ``x0 (Y^T Y + l2 I)``.
    weights = torch.sparse.sampled_addmm(interactions, solution, fixed_t, beta=1.0 + alpha,
                                         alpha=-alpha)
    residual = torch.sparse.mm(weights, fixed) - solution @ regularised_gram
    direction = residual.clone()
    residual_norm = residual.pow(2).sum(dim=1, keepdim=True)
    for iteration in range(steps):
        product = system_times(direction)
        # A converged row has a zero direction; the clamp keeps its step at 0, not NaN.
        curvature = (direction * product).sum(dim=1, keepdim=True).clamp_min(1e-30)
        step = residual_norm / curvature
        solution += step * direction
        if iteration == steps - 1:
            break  # the next direction would go unused
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
    ``O(n d^2)`` memory).  ``report_loss`` logs the objective (:func:`ials_loss`) each epoch.
    ``kernel``: the CG half-step as one numba loop over rows on a CPU (``"fused"``, what
    ``"auto"`` picks there; :mod:`m6bench_classic._ials_kernel`), or as whole-table tensor
    operations (``"tensor"``, any device).
    """

    iterative = True

    def __init__(self, train: TrainSet, config: Mapping[str, Any]) -> None:
        super().__init__(train, config)
        dim = int(config["dim"])
        self.alpha = float(config["alpha"])
        self.l2 = float(config["l2"])
        self.block_size = int(config["block_size"])
        self.cg_steps = int(config["cg_steps"])
        # Early stopping reads the validation metric, not the loss; computing the loss every
        # epoch cost a tenth of a CG epoch on ML-1M (two thirds before ials_loss's sampled
        # product), so it is logged only on request.
        self.report_loss = bool(config["report_loss"])
        self.fused = _wants_fused_kernel(str(config["kernel"]), train.device, "ials")
        if self.fused and self.cg_steps > 0:
            from m6bench_classic._ials_kernel import warm_up

            warm_up()
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
        if not self.report_loss:
            return {}
        loss = ials_loss(self.user_factors, self.item_factors, self.user_item, self.alpha,
                         self.l2)
        return {"weighted_squared_error": float(loss) / train.n_users}

    def _solve(self, fixed: torch.Tensor, interactions: torch.Tensor,
               current: torch.Tensor) -> torch.Tensor:
        if self.cg_steps > 0 and self.fused:
            from m6bench_classic._ials_kernel import solve_side_rows

            return solve_side_rows(fixed, interactions.crow_indices().numpy(),
                                   interactions.col_indices().numpy(), current, self.alpha,
                                   self.l2, self.cg_steps, torch.get_num_threads())
        if self.cg_steps > 0:
            return solve_side_cg(fixed, interactions, current, self.alpha, self.l2,
                                 self.cg_steps)
        return solve_side_exact(fixed, interactions, self.alpha, self.l2, self.block_size)

    def score(self, users: torch.Tensor) -> torch.Tensor:
        return self.user_factors[users] @ self.item_factors.T
