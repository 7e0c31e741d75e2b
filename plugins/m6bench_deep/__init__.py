"""deep: NeuMF, DeepFM, Wide&Deep and Mult-VAE baselines.

Deep models beside the classic baselines, so the leaderboard shows what depth buys over a
tuned matrix factorisation or EASE on the same pinned benchmarks:

``neumf``
    Neural matrix factorisation, GMF + MLP (He et al., WWW 2017).
``deepfm``
    Factorisation machine + deep network over shared field embeddings (Guo et al., IJCAI
    2017), with the user and item side features as fields.
``wide-deep``
    Wide linear model with user x item feature crosses + deep network (Cheng et al., DLRS
    2016).
``mult-vae``
    Variational autoencoder with a multinomial likelihood (Liang et al., WWW 2018).

The first three are trained on implicit feedback with sampled true negatives and the
logistic loss; every model scores a batch of users against all items in blocks, on the
device.  Registered components, reusable by any plugin: the ``field-embedding`` encoder,
the ``pair-mlp``, ``gmf`` and ``fm-interaction`` fusions, the ``bce`` and
``multinomial-elbo`` heads; the models also use the core's ``id-embedding`` encoder.  This
package uses only m6bench's public API.
"""

from __future__ import annotations

from typing import Any

from m6bench import ComponentSpec, ModelSpec, hookimpl
from m6bench_deep.components import (
    COMPONENTS,
    GMF,
    BCEHead,
    FieldEmbedding,
    FMInteraction,
    MultinomialELBOHead,
    PairMLP,
)
from m6bench_deep.models import DeepFM, MultVAE, NeuMF, WideDeep

__all__ = [
    "GMF",
    "BCEHead",
    "DeepFM",
    "FMInteraction",
    "FieldEmbedding",
    "MultVAE",
    "MultinomialELBOHead",
    "NeuMF",
    "PairMLP",
    "WideDeep",
]

# Training-loop keys shared by the pointwise models: the valid curve is smooth enough to stop
# after a few evaluations without a gain.
_POINTWISE_LOOP = {"epochs": 60, "patience": 4, "eval_every": 2}


def _pointwise_space(trial: Any) -> dict[str, Any]:
    return {
        "dim": trial.suggest_categorical("dim", [16, 32, 64]),
        "negatives": trial.suggest_int("negatives", 1, 8),
        "dropout": trial.suggest_float("dropout", 0.0, 0.5),
        "lr": trial.suggest_float("lr", 3e-4, 1e-2, log=True),
        "weight_decay": trial.suggest_float("weight_decay", 1e-8, 1e-4, log=True),
        "batch_size": trial.suggest_categorical("batch_size", [1024, 2048, 4096]),
    }


def _neumf_space(trial: Any) -> dict[str, Any]:
    space = _pointwise_space(trial)
    width = trial.suggest_categorical("mlp_width", [32, 64, 128])
    space |= {"mlp_dim": width // 2, "mlp_hidden": [width, width // 2, width // 4]}
    return space


def _field_space(trial: Any) -> dict[str, Any]:
    space = _pointwise_space(trial)
    width = trial.suggest_categorical("mlp_width", [64, 128, 256])
    space |= {"mlp_hidden": [width, width // 2],
              "side_features": trial.suggest_categorical("side_features", [True, False])}
    return space


def _mult_vae_space(trial: Any) -> dict[str, Any]:
    return {
        "hidden": [trial.suggest_categorical("hidden", [200, 400, 600])],
        "latent": trial.suggest_categorical("latent", [64, 128, 200]),
        "dropout": trial.suggest_float("dropout", 0.2, 0.7),
        "anneal_cap": trial.suggest_float("anneal_cap", 0.05, 0.5),
        "lr": trial.suggest_float("lr", 3e-4, 1e-2, log=True),
        "weight_decay": trial.suggest_float("weight_decay", 1e-8, 1e-3, log=True),
        "batch_size": trial.suggest_categorical("batch_size", [64, 128, 256]),
    }


MODELS = (
    ModelSpec(
        name="neumf",
        build=NeuMF,
        defaults={"dim": 32, "mlp_dim": 32, "mlp_hidden": [64, 32, 16], "dropout": 0.0,
                  "negatives": 4, "lr": 1e-3, "weight_decay": 0.0, "init_std": 0.01,
                  "batch_size": 2048, **_POINTWISE_LOOP},
        search_space=_neumf_space,
        default=True,
        description="Neural matrix factorisation: GMF and an MLP tower over user/item "
                    "embeddings, fused by a linear layer; logistic loss with sampled "
                    "negatives.",
        paper="He et al., Neural Collaborative Filtering, WWW 2017",
        components=("encoder:id-embedding", "fusion:gmf", "fusion:pair-mlp", "head:bce"),
    ),
    ModelSpec(
        name="deepfm",
        build=DeepFM,
        defaults={"dim": 16, "mlp_hidden": [128, 64], "dropout": 0.1, "side_features": True,
                  "negatives": 4, "lr": 1e-3, "weight_decay": 0.0, "init_std": 0.01,
                  "batch_size": 2048, **_POINTWISE_LOOP},
        search_space=_field_space,
        description="Factorisation machine + deep network on shared field embeddings (user "
                    "and item ids and side features); logistic loss with sampled negatives.",
        paper="Guo et al., DeepFM, IJCAI 2017",
        components=("encoder:field-embedding", "fusion:fm-interaction", "fusion:pair-mlp",
                    "head:bce"),
    ),
    ModelSpec(
        name="wide-deep",
        build=WideDeep,
        defaults={"dim": 16, "mlp_hidden": [128, 64], "dropout": 0.1, "side_features": True,
                  "negatives": 4, "lr": 1e-3, "weight_decay": 0.0, "init_std": 0.01,
                  "batch_size": 2048, **_POINTWISE_LOOP},
        search_space=_field_space,
        description="Wide linear model with user x item side-feature crosses + deep network "
                    "over field embeddings, trained jointly; logistic loss with sampled "
                    "negatives.",
        paper="Cheng et al., Wide & Deep Learning for Recommender Systems, DLRS 2016",
        components=("encoder:field-embedding", "fusion:pair-mlp", "head:bce"),
    ),
    ModelSpec(
        name="mult-vae",
        build=MultVAE,
        defaults={"hidden": [600], "latent": 200, "dropout": 0.5, "anneal_cap": 0.2,
                  "anneal_steps": 20000, "lr": 1e-3, "weight_decay": 0.0, "batch_size": 128,
                  "epochs": 200, "patience": 5, "eval_every": 5},
        search_space=_mult_vae_space,
        description="Variational autoencoder over user rows with a multinomial likelihood "
                    "and an annealed KL term.",
        paper="Liang et al., Variational Autoencoders for Collaborative Filtering, WWW 2018",
        components=("head:multinomial-elbo",),
    ),
)


@hookimpl
def m6bench_register_encoders(register):
    for family, name, build, defaults, description in COMPONENTS:
        if family == "encoder":
            register(ComponentSpec(family, name, build, defaults, description))


@hookimpl
def m6bench_register_fusions(register):
    for family, name, build, defaults, description in COMPONENTS:
        if family == "fusion":
            register(ComponentSpec(family, name, build, defaults, description))


@hookimpl
def m6bench_register_heads(register):
    for family, name, build, defaults, description in COMPONENTS:
        if family == "head":
            register(ComponentSpec(family, name, build, defaults, description))


@hookimpl
def m6bench_register_models(register):
    for spec in MODELS:
        register(spec)
