"""pct-cf: cross-domain collaborative filtering fused with a deep model, with cold start.

One model and one component:

``pct-cf``
    User and item latent vectors shared across domains plus per-domain parts and per-domain
    item biases, optionally an item-based user part (FISM: the user's training items pooled),
    trained on all domains jointly (BPR); a two-tower deep model on side
    features (categorical, genre lists, title words, numbers, text vectors when present);
    the two predictions fused as ``r = lambda * p_cf + (1 - lambda) * q_deep`` with
    ``lambda`` fixed or learned; a cold-start path for users and items without training
    interactions (side features through the deep part, plus a popularity prior).  See
    :class:`m6bench_pct_cf.model.PCTCF`.
encoder ``feature-bag``
    A sparse ``(N, vocabulary)`` bag of side-feature tokens plus ``(N, n_numeric)`` numbers
    -> ``(N, dim)``; :func:`m6bench_pct_cf.features.feature_tensors` builds its inputs from
    a side table.

Benchmarks it is made for: ``ml-xdomain`` (ML-1M source + ML-100K target),
``ml-100k-genres`` (genre domains) and the cold-start ones (``ml-100k-cold-items``,
``ml-100k-cold-users``).  It uses the catalog's ``id-embedding``, ``dot``, ``concat-mlp`` and
``bpr`` components and only m6bench's public API.
"""

from __future__ import annotations

from typing import Any

from m6bench import ComponentSpec, ModelSpec, hookimpl
from m6bench_pct_cf.features import FeatureBagEncoder, FeatureTensors, feature_tensors
from m6bench_pct_cf.model import DOMAIN_SAMPLING, PAIR_DOMAIN_RULES, PCTCF

__all__ = ["PCTCF", "XDOMAIN_OVERRIDES", "FeatureBagEncoder", "FeatureTensors", "feature_tensors"]

PAPERS = ("Singh & Gordon, Collective Matrix Factorization, KDD 2008; Hu et al., Cross-Domain "
          "Triadic Factorization, WWW 2013; Volkovs et al., DropoutNet, NeurIPS 2017")

PCT_CF_DEFAULTS: dict[str, Any] = {
    "dim": 64,
    "feature_dim": 32,
    "tower_hidden": [128],
    "tower_dropout": 0.0,
    "lambda": None,
    "dropout_weight": 1.0,
    "id_dropout": 0.5,
    "pair_domain": "auto",
    # How an epoch draws training rows: "uniform" (a pass over all of them) or "balanced"
    # (every domain the same share), and how many (null: as many as there are).
    "domain_sampling": "uniform",
    "epoch_interactions": None,
    # The item-based part of a user's vector (FISM): its weight (0: off) and the exponent of
    # the history-length normalisation.
    "user_items": 0.0,
    "user_items_alpha": 0.5,
    "lr": 3e-3,
    "l2": 7.5e-3,
    "domain_l2": 7.5e-2,
    "deep_l2": 0.0,
    "init_std": 0.04,
    "batch_size": 2048,
    # Training-loop keys: the valid curve is noisy, stop after 16 epochs without a gain.
    "epochs": 200,
    "patience": 8,
    "eval_every": 2,
}

# What the README reports on ml-xdomain (ML-1M source + ML-100K target): the CF part alone,
# with the item-based user part, each epoch half source and half target rows.
#   m6bench run --plugin pct-cf --benchmark ml-xdomain --set lambda=1.0 --set dropout_weight=0
#     --set user_items=1.0 --set domain_sampling=balanced --set epoch_interactions=160000
XDOMAIN_OVERRIDES: dict[str, Any] = {
    "lambda": 1.0,
    "dropout_weight": 0.0,
    "user_items": 1.0,
    "domain_sampling": "balanced",
    "epoch_interactions": 160_000,
}


def pct_cf_space(trial: Any) -> dict[str, Any]:
    """Sizes, the fusion weight (learned or fixed), the dropout path's weight, id dropout, lr,
    the three L2 weights, batch size, the item-based user part's weight."""
    learned = trial.suggest_categorical("lambda_learned", [True, False])
    return {
        "dim": trial.suggest_categorical("dim", [32, 64, 128]),
        "feature_dim": trial.suggest_categorical("feature_dim", [16, 32, 64]),
        "lambda": None if learned else trial.suggest_float("lambda", 0.1, 0.95),
        "dropout_weight": trial.suggest_float("dropout_weight", 0.0, 2.0),
        "id_dropout": trial.suggest_float("id_dropout", 0.0, 0.6),
        "pair_domain": trial.suggest_categorical("pair_domain", list(PAIR_DOMAIN_RULES)),
        "lr": trial.suggest_float("lr", 5e-4, 2e-2, log=True),
        "l2": trial.suggest_float("l2", 1e-5, 3e-2, log=True),
        "domain_l2": trial.suggest_float("domain_l2", 1e-4, 0.3, log=True),
        "deep_l2": trial.suggest_categorical("deep_l2", [0.0, 7.5e-3, 7.5e-2, 0.3]),
        "batch_size": trial.suggest_categorical("batch_size", [1024, 2048, 4096, 8192]),
        "domain_sampling": trial.suggest_categorical("domain_sampling", list(DOMAIN_SAMPLING)),
        "user_items": trial.suggest_categorical("user_items", [0.0, 0.5, 1.0]),
    }


MODELS = (
    ModelSpec(
        name="pct-cf",
        build=PCTCF,
        defaults=PCT_CF_DEFAULTS,
        search_space=pct_cf_space,
        choices={"pair_domain": PAIR_DOMAIN_RULES, "domain_sampling": DOMAIN_SAMPLING},
        default=True,
        description="Cross-domain CF (shared + per-domain user/item vectors and biases) fused "
                    "with a two-tower side-feature model, r = lambda p_cf + (1 - lambda) "
                    "q_deep; cold-start path from side features and a popularity prior.",
        paper=PAPERS,
        components=("encoder:id-embedding", "encoder:feature-bag", "fusion:dot",
                    "fusion:concat-mlp", "head:bpr"),
    ),
)


@hookimpl
def m6bench_register_encoders(register):
    register(ComponentSpec(
        "encoder", "feature-bag", FeatureBagEncoder,
        {"vocabulary": 1, "numeric": 0, "dim": 16, "init_std": 0.1},
        "side features -> vectors: sparse (N, vocabulary) token bag @ token vectors + "
        "(N, n_numeric) numbers @ W -> (N, dim)",
    ))


@hookimpl
def m6bench_register_models(register):
    for spec in MODELS:
        register(spec)

