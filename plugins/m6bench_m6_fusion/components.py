"""m6-fusion's components: modality encoders, modality fusions and task heads.

Registered by name in the catalog, so any plugin can compose them with
``train.components.encoder("categorical-features", num=..., dim=..., table=..., kinds=...)``
and so on.  Shapes: ``B`` is a batch, ``M`` the number of modalities, ``d`` the modality
width, ``n`` the number of entities.

Encoders (entity index ``(B,)`` -> ``(B, dim)`` unless said otherwise)

``categorical-features``
    Categorical and token-list side features (and quantile bands of numeric ones: age band,
    release-year band) as a field-balanced bag of token embeddings.
``numeric-features``
    Standardised numeric side features (plus missing-value flags) through a linear map.
``sentence-text``
    Entity text through a frozen sentence encoder (vectors cached on disk by content hash)
    and a trainable projection.
``interaction-context``
    Interaction context ids ``(B, 3)`` (hour, weekday, domain) -> ``(B, dim)``, and a user's
    average context from a profile of context shares.

Fusions (modalities ``(B, M, d)``, context ``(B, c)``, mask ``(B, M)`` -> ``(B, out_dim)``)

``modality-attention``
    Context-dependent attention over modalities (M6-Rec style, Cui et al. 2022), weighted sum
    or weighted concatenation, then an MLP.
``modality-concat`` / ``modality-mean``
    The ablation baselines: plain concatenation + MLP, and the mean + MLP.

Heads

``sampled-softmax``
    Softmax cross-entropy of a positive against sampled (or all) negatives.
``rating-regression``
    Biased bilinear rating predictor on a user and an item representation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import torch
from torch import nn

from m6bench import tokenise_side_table
from m6bench_m6_fusion.features import HOURS, WEEKDAYS, context_codes, numeric_matrix
from m6bench_m6_fusion.text import DEFAULT_TEXT_MODEL, TextVectorCache


# =============================================================================== encoders
class CategoricalFeatureEncoder(nn.Module):
    """Categorical side features -> ``(B, dim)``: the mean over fields of the mean of each
    field's token embeddings (padding id 0 is the zero vector).

    Built from a side table (``table``, ``kinds``): ``categorical`` columns give one token,
    ``categorical_seq`` columns several (genres), ``numeric`` columns a quantile-band token
    (``bands`` bands).  Tokens held by fewer than ``min_count`` entities are dropped, and
    with ``known`` (bool ``(num,)``: entities with training interactions) tokens are counted
    over known entities only, so a value seen on no training entity is treated as missing
    (NaN and missing values carry no token either); the tokens are m6bench's
    ``tokenise_side_table`` with its defaults, read flat.  The token matrix ``(num, width)``
    and its weights are non-persistent buffers rebuilt from the table.  Without a table
    every entity maps to the zero vector.
    """

    def __init__(self, num: int, dim: int, table: pd.DataFrame | None = None,
                 kinds: Mapping[str, str] | None = None, bands: int = 6, min_count: int = 2,
                 init_std: float = 0.1, known: torch.Tensor | None = None) -> None:
        super().__init__()
        tokens = tokenise_side_table(table, kinds or {}, num, bands=bands,
                                     min_count=min_count, known=known)
        self.vocabulary = tokens.vocabulary
        self.fields = tokens.fields
        self.embedding = nn.Embedding(tokens.size, dim, padding_idx=0)
        nn.init.normal_(self.embedding.weight, std=init_std)
        with torch.no_grad():
            self.embedding.weight[0].zero_()
        ids, weights = tokens.flat()  # (num, width): each field's weights sum to 1
        fields_present = weights.sum(dim=1, keepdim=True).clamp_min(1.0)
        self.register_buffer("tokens", ids, persistent=False)
        self.register_buffer("weights", weights / fields_present, persistent=False)

    @property
    def empty(self) -> bool:
        """Whether no entity has a token (the encoder then carries no information)."""
        return not self.vocabulary

    def forward(self, index: torch.Tensor) -> torch.Tensor:
        tokens, weights = self.tokens[index], self.weights[index]  # (B, width) each
        return (self.embedding(tokens) * weights.unsqueeze(-1)).sum(dim=1)


class NumericFeatureEncoder(nn.Module):
    """Numeric side features -> ``(B, dim)``: z-scores and missing flags ``(num, 2F)`` (a
    non-persistent buffer) through ``Linear(2F, dim)``; zero when there is no numeric column."""

    def __init__(self, num: int, dim: int, table: pd.DataFrame | None = None,
                 kinds: Mapping[str, str] | None = None) -> None:
        super().__init__()
        values, self.columns = numeric_matrix(table, kinds or {}, num)
        width = values.shape[1]
        if width == 0:
            values = torch.zeros(num, 1)
        self.register_buffer("values", values, persistent=False)
        self.linear = nn.Linear(values.shape[1], dim)
        if width == 0:
            nn.init.zeros_(self.linear.weight)
            nn.init.zeros_(self.linear.bias)

    @property
    def empty(self) -> bool:
        return not self.columns

    def forward(self, index: torch.Tensor) -> torch.Tensor:
        return self.linear(self.values[index])


class SentenceTextEncoder(nn.Module):
    """Entity text -> ``(B, dim)`` through a frozen sentence encoder and a trainable linear
    projection ``Linear(text_dim, dim)``.

    The sentence vectors ``(num, text_dim)`` (384 for all-MiniLM-L6-v2) are computed once per
    text by :class:`~m6bench_m6_fusion.text.TextVectorCache`, cached on disk under
    ``<cache dir>/text/`` keyed by sha256 of (model, text), and held as a non-persistent
    buffer.  ``texts=None`` (or all empty) gives zero vectors and loads no model.

    Missing text (``None``, NaN, or an empty or blank string) is never encoded: it gets the
    zero vector and ``present`` (bool ``(num,)``) is false, so a fusion can mask the text
    modality of those entities instead of reading the encoder's vector of an empty string.

    ``input_dropout`` zeroes that share of the sentence vector's coordinates in training (and
    rescales the rest): every text vector is unique, so without it the projection can learn
    the text as one more item id, which tells nothing about an unseen item.
    """

    def __init__(self, num: int, dim: int, texts: Sequence[str] | None = None,
                 model: str = DEFAULT_TEXT_MODEL, cache_dir: str | None = None,
                 input_dropout: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= input_dropout < 1.0:
            raise ValueError(f"sentence-text: input_dropout={input_dropout!r} must lie in "
                             "[0, 1).")
        self.input_dropout = float(input_dropout)
        texts = [t.strip() if isinstance(t, str) else "" for t in list(texts or [])[:num]]
        texts += [""] * (num - len(texts))
        present = torch.tensor([bool(t) for t in texts], dtype=torch.bool)
        self.cache = TextVectorCache(model, cache_dir)
        if present.any():
            written = [t for t in texts if t]
            encoded = torch.from_numpy(self.cache.vectors(written).copy())
            vectors = torch.zeros(num, encoded.shape[1])
            vectors[present] = encoded
        else:
            vectors = torch.zeros(num, 1)
        self.register_buffer("vectors", vectors, persistent=False)
        self.register_buffer("present", present, persistent=False)
        self.projection = nn.Linear(vectors.shape[1], dim)

    @property
    def empty(self) -> bool:
        return self.vectors.shape[1] == 1 and not bool(self.vectors.any())

    def forward(self, index: torch.Tensor) -> torch.Tensor:
        return self.projection(nn.functional.dropout(self.vectors[index], self.input_dropout,
                                                     self.training))


class InteractionContextEncoder(nn.Module):
    """Interaction context -> ``(B, dim)``: the mean of the hour, weekday and domain
    embeddings of context ids ``(B, 3)`` (see :func:`~m6bench_m6_fusion.features.context_codes`).

    :meth:`profile` maps a user's context shares ``(B, vocabulary)`` (each field summing to
    1, from :func:`~m6bench_m6_fusion.features.context_profiles`) to the mean embedding of
    their interactions' contexts: the user's expected context, used where no interaction is
    given (full-ranking evaluation).
    """

    def __init__(self, n_domains: int, dim: int, init_std: float = 0.1) -> None:
        super().__init__()
        self.n_domains = n_domains
        self.vocabulary = HOURS + WEEKDAYS + n_domains + 1  # + "unknown"
        self.embedding = nn.Embedding(self.vocabulary, dim)
        nn.init.normal_(self.embedding.weight, std=init_std)

    def codes(self, timestamps: torch.Tensor | None, domains: torch.Tensor | None,
              n: int, device: torch.device) -> torch.Tensor:
        """Context ids ``(n, 3)`` of ``n`` interactions."""
        return context_codes(timestamps, domains, self.n_domains, n, device)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        return self.embedding(codes).mean(dim=1)

    def profile(self, shares: torch.Tensor) -> torch.Tensor:
        return shares @ self.embedding.weight / 3.0


# =============================================================================== fusions
FUSION_MODES = ("attention", "concat", "mean")
COMBINE_MODES = ("sum", "concat")


class ModalityFusion(nn.Module):
    """Modality vectors ``(B, M, d)`` (+ context ``(B, c)``, mask ``(B, M)``) -> ``(B, out_dim)``.

    ``attention`` (M6-Rec style; Cui et al., "M6-Rec: Generative Pretrained Language Models
    are Open-Ended Recommender Systems", 2022, and the additive attention of Bahdanau et al.
    2015): each modality gets a weight ``a_i = softmax_i(w^T tanh(W [h_i ; h_context]))``
    (masked modalities get weight 0; a row with all of them masked gets all weights 0), and
    the fused vector is ``sum_i a_i h_i`` (``combine``
    ``"sum"``, width ``d``) or ``[M a_1 h_1, ..., M a_M h_M]`` (``"concat"``, width ``M d``;
    uniform weights give the plain concatenation).  ``concat``: ``[h_1, ..., h_M]`` with
    masked modalities zeroed.  ``mean``: the mean of the unmasked ``h_i``.

    The fused vector ``z`` then goes through ``Linear(z) + MLP(z)`` (a linear skip next to an
    MLP with ``hidden`` ReLU layers and dropout), so the fusion can express a plain linear map
    of its inputs (an id embedding alone behaves like matrix factorisation) and learn
    non-linear modality interactions on top.  A single ``(B, d)`` input is one modality.
    """

    def __init__(self, dim: int, n_modalities: int, context_dim: int = 0,
                 mode: str = "attention", combine: str = "sum", attention_dim: int = 32,
                 hidden: Sequence[int] = (128,), out_dim: int | None = None,
                 dropout: float = 0.0) -> None:
        super().__init__()
        if mode not in FUSION_MODES:
            raise ValueError(f"fusion mode {mode!r} is not one of {', '.join(FUSION_MODES)}")
        if combine not in COMBINE_MODES:
            raise ValueError(f"combine={combine!r} is not one of {', '.join(COMBINE_MODES)}")
        self.mode, self.combine = mode, combine
        self.n_modalities, self.context_dim = n_modalities, context_dim
        out_dim = dim if out_dim is None else out_dim
        if mode == "attention":
            self.modality_key = nn.Linear(dim, attention_dim)
            self.context_key = (nn.Linear(context_dim, attention_dim, bias=False)
                                if context_dim else None)
            self.score = nn.Linear(attention_dim, 1, bias=False)
        wide = mode == "concat" or (mode == "attention" and combine == "concat")
        width = dim * n_modalities if wide else dim
        self.skip = nn.Linear(width, out_dim)
        layers: list[nn.Module] = []
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU(), nn.Dropout(dropout)]
            width = size
        self.mlp = nn.Sequential(*layers, nn.Linear(width, out_dim)) if layers else None

    def weights(self, modalities: torch.Tensor, context: torch.Tensor | None = None,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        """Modality weights ``(B, M)``: attention weights (``mode="attention"``), else the
        uniform weights over unmasked modalities.  Each row sums to 1."""
        modalities = modalities.unsqueeze(1) if modalities.dim() == 2 else modalities
        if self.mode == "attention":
            keys = self.modality_key(modalities)  # (B, M, a)
            if self.context_key is not None and context is not None:
                keys = keys + self.context_key(context).unsqueeze(1)
            logits = self.score(torch.tanh(keys)).squeeze(-1)  # (B, M)
        else:
            logits = torch.zeros(modalities.shape[:2], device=modalities.device,
                                 dtype=modalities.dtype)
        if mask is None:
            return torch.softmax(logits, dim=-1)
        # A row with every modality masked (an entity nothing is known about) gets zero
        # weights, not the NaN of a softmax over -inf alone.
        weights = torch.softmax(logits.masked_fill(~mask, float("-inf")), dim=-1)
        return torch.where(mask.any(dim=-1, keepdim=True), weights, 0.0)

    def forward(self, modalities: torch.Tensor, context: torch.Tensor | None = None,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        modalities = modalities.unsqueeze(1) if modalities.dim() == 2 else modalities
        if self.mode == "concat":
            kept = modalities if mask is None else modalities * mask.unsqueeze(-1)
            fused = kept.flatten(1)
        else:
            weights = self.weights(modalities, context, mask).unsqueeze(-1)  # (B, M, 1)
            if self.mode == "attention" and self.combine == "concat":
                fused = (modalities * weights * modalities.shape[1]).flatten(1)
            else:
                fused = (modalities * weights).sum(dim=1)
        out = self.skip(fused)
        return out if self.mlp is None else out + self.mlp(fused)


class AttentionFusion(ModalityFusion):
    """:class:`ModalityFusion` with ``mode="attention"``."""

    def __init__(self, dim: int, n_modalities: int, context_dim: int = 0, combine: str = "sum",
                 attention_dim: int = 32, hidden: Sequence[int] = (128,),
                 out_dim: int | None = None, dropout: float = 0.0) -> None:
        super().__init__(dim, n_modalities, context_dim, "attention", combine, attention_dim,
                         hidden, out_dim, dropout)


class ConcatFusion(ModalityFusion):
    """:class:`ModalityFusion` with ``mode="concat"``: plain concatenation + MLP."""

    def __init__(self, dim: int, n_modalities: int, context_dim: int = 0,
                 hidden: Sequence[int] = (128,), out_dim: int | None = None,
                 dropout: float = 0.0) -> None:
        super().__init__(dim, n_modalities, context_dim, "concat", "sum", 1, hidden, out_dim,
                         dropout)


class MeanFusion(ModalityFusion):
    """:class:`ModalityFusion` with ``mode="mean"``: the mean of the modalities + MLP."""

    def __init__(self, dim: int, n_modalities: int, context_dim: int = 0,
                 hidden: Sequence[int] = (128,), out_dim: int | None = None,
                 dropout: float = 0.0) -> None:
        super().__init__(dim, n_modalities, context_dim, "mean", "sum", 1, hidden, out_dim,
                         dropout)


FUSIONS = {"attention": "modality-attention", "concat": "modality-concat",
           "mean": "modality-mean"}


# =============================================================================== heads
class SampledSoftmaxHead(nn.Module):
    """Softmax cross-entropy of each positive against its negatives (the full catalogue or a
    sample): ``-log exp(s+ / t) / (exp(s+ / t) + sum_j exp((s_j - log q_j) / t))``, averaged.

    Sampled softmax with the log-q correction (Bengio & Senecal, 2008; Yi et al., "Sampling-
    Bias-Corrected Neural Modeling for Large Corpus Item Recommendations", RecSys 2019).
    ``positive`` is ``(B,)``; ``negative`` is ``(B,)`` or ``(B, N)`` (``-inf`` entries are
    excluded); ``negative_log_q`` (optional) broadcasts against ``negative``.  :meth:`full`
    is the same loss over a full ``(B, n)`` logit matrix with the positive's column given.
    """

    def __init__(self, temperature: float = 1.0) -> None:
        super().__init__()
        self.temperature = float(temperature)

    def forward(self, positive: torch.Tensor, negative: torch.Tensor,
                negative_log_q: torch.Tensor | None = None) -> torch.Tensor:
        negative = negative.unsqueeze(-1) if negative.dim() == 1 else negative
        if negative_log_q is not None:
            negative = negative - negative_log_q
        logits = torch.cat([positive.unsqueeze(-1), negative], dim=-1)
        return self.full(logits, torch.zeros_like(positive, dtype=torch.int64))

    def full(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The softmax over all candidates: logits ``(B, n)`` (``-inf`` entries excluded),
        the positive's column ``target`` ``(B,)`` -> the mean cross-entropy."""
        if self.temperature != 1.0:
            logits = logits / self.temperature
        return nn.functional.cross_entropy(logits, target)


class RatingRegressionHead(nn.Module):
    """Rating prediction from a user and an item representation, ``(B, d), (B, d) -> (B,)``:

    ``r = mu + w_u . u + w_v . v + <P u, Q v>`` with ``P, Q: (rank, d)``, the biased
    matrix-factorisation form (Koren, Bell, Volinsky, "Matrix Factorization Techniques for
    Recommender Systems", IEEE Computer 2009) on learned representations.  ``mu`` is a
    buffer set to the training mean.  :meth:`all_items` gives ``(B, d), (n, d) -> (B, n)``
    by one matmul.  Train it with an MSE loss (the core's ``mse`` head).
    """

    def __init__(self, dim: int, rank: int = 32, global_mean: float = 0.0) -> None:
        super().__init__()
        self.user_bias = nn.Linear(dim, 1)
        self.item_bias = nn.Linear(dim, 1, bias=False)
        self.user_factor = nn.Linear(dim, rank, bias=False)
        self.item_factor = nn.Linear(dim, rank, bias=False)
        self.register_buffer("global_mean", torch.tensor(float(global_mean)))

    def forward(self, user: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
        interaction = (self.user_factor(user) * self.item_factor(item)).sum(dim=-1)
        biases = self.user_bias(user).squeeze(-1) + self.item_bias(item).squeeze(-1)
        return self.global_mean + biases + interaction

    def all_items(self, user: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        interaction = self.user_factor(user) @ self.item_factor(items).T
        return (self.global_mean + self.user_bias(user) + self.item_bias(items).T
                + interaction)


# =============================================================================== registry
ENCODER_DEFAULTS: dict[str, dict[str, Any]] = {
    "categorical-features": {"num": 1, "dim": 32, "table": None, "kinds": None, "bands": 6,
                             "min_count": 2, "init_std": 0.1, "known": None},
    "numeric-features": {"num": 1, "dim": 32, "table": None, "kinds": None},
    "sentence-text": {"num": 1, "dim": 32, "texts": None, "model": DEFAULT_TEXT_MODEL,
                      "cache_dir": None, "input_dropout": 0.0},
    "interaction-context": {"n_domains": 0, "dim": 32, "init_std": 0.1},
}
FUSION_DEFAULTS: dict[str, dict[str, Any]] = {
    "modality-attention": {"dim": 32, "n_modalities": 2, "context_dim": 0, "combine": "sum",
                           "attention_dim": 32, "hidden": [64], "out_dim": None,
                           "dropout": 0.0},
    "modality-concat": {"dim": 32, "n_modalities": 2, "context_dim": 0, "hidden": [64],
                        "out_dim": None, "dropout": 0.0},
    "modality-mean": {"dim": 32, "n_modalities": 2, "context_dim": 0, "hidden": [64],
                      "out_dim": None, "dropout": 0.0},
}
HEAD_DEFAULTS: dict[str, dict[str, Any]] = {
    "sampled-softmax": {"temperature": 1.0},
    "rating-regression": {"dim": 32, "rank": 32, "global_mean": 0.0},
}
