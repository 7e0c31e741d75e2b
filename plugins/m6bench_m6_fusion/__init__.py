"""m6-fusion: multimodal attention fusion with multi-task heads (the flagship model).

A two-tower recommender in the spirit of M6-Rec (Cui et al., "M6-Rec: Generative Pretrained
Language Models are Open-Ended Recommender Systems", 2022): per-modality encoders (user and
item ids, categorical and numeric side features, item text through a sentence encoder,
interaction context), attention fusion whose modality weights depend on the context, and a
ranking head and a rating head trained jointly on the shared fused representation.  Cold
items (no training interaction) are scored from their features and text.  See
:class:`m6bench_m6_fusion.model.M6Fusion`.

Every building block is a registered component other plugins can reuse by name:

* encoders ``categorical-features``, ``numeric-features``, ``sentence-text``,
  ``interaction-context``;
* fusions ``modality-attention``, ``modality-concat``, ``modality-mean``;
* heads ``sampled-softmax``, ``rating-regression``.

It also composes the core's ``id-embedding`` encoder and ``bpr`` / ``mse`` heads.  The text
vectors are cached under ``$M6BENCH_CACHE_DIR/text/`` (see :mod:`m6bench_m6_fusion.text`).
This package uses only m6bench's public API.
"""

from __future__ import annotations

from typing import Any

from m6bench import ComponentSpec, ModelSpec, hookimpl
from m6bench_m6_fusion.components import (
    COMBINE_MODES,
    ENCODER_DEFAULTS,
    FUSION_DEFAULTS,
    FUSION_MODES,
    HEAD_DEFAULTS,
    AttentionFusion,
    CategoricalFeatureEncoder,
    ConcatFusion,
    InteractionContextEncoder,
    MeanFusion,
    ModalityFusion,
    NumericFeatureEncoder,
    RatingRegressionHead,
    SampledSoftmaxHead,
    SentenceTextEncoder,
)
from m6bench_m6_fusion.model import CONTEXT_SOURCES, RANKING_LOSSES, M6Fusion
from m6bench_m6_fusion.text import DEFAULT_TEXT_MODEL, TextVectorCache, register_text_encoder

__all__ = [
    "CHOICES",
    "DEFAULTS",
    "AttentionFusion",
    "CategoricalFeatureEncoder",
    "ConcatFusion",
    "InteractionContextEncoder",
    "M6Fusion",
    "MeanFusion",
    "ModalityFusion",
    "NumericFeatureEncoder",
    "RatingRegressionHead",
    "SampledSoftmaxHead",
    "SentenceTextEncoder",
    "TextVectorCache",
    "register_text_encoder",
    "search_space",
]

PAPER = ("Cui, Ma, Yang, Zhou, M6-Rec, arXiv:2205.08084, 2022; Volkovs et al., DropoutNet, "
         "NeurIPS 2017; Yi et al., sampling-bias-corrected softmax, RecSys 2019")

DEFAULTS: dict[str, Any] = {
    # modalities
    "dim": 64,
    "side_features": True,
    "text": True,
    "text_model": DEFAULT_TEXT_MODEL,
    # dropout on the sentence vectors' coordinates in training: on ml-100k cold items text
    # beat no text on 3 of 3 seeds with 0.5 (NDCG@10 0.347 vs 0.319) and lost with 0.0
    "text_dropout": 0.5,
    # the k nearest warm items by text lend their id embeddings (0: off; on ml-100k cold
    # items 20 neighbours did not beat text alone over 3 seeds, so it is a sweep option)
    "text_neighbours": 0,
    "context": True,
    "context_source": "profile",
    "bands": 6,
    # fusion
    "fusion": "attention",
    "combine": "sum",
    "attention_dim": 32,
    "mlp_hidden": [128],
    "dropout": 0.1,
    "id_dropout": 0.2,
    # heads
    "ranking_loss": "softmax",
    "negatives": 0,
    # a user's other training items are no negatives: +0.007 valid NDCG@10 on ml-100k
    "exclude_positives": True,
    "temperature": 1.0,
    "ranking_weight": 1.0,
    "rating_weight": 0.5,
    "rating_rank": 32,
    # optimisation
    "lr": 2e-3,
    "weight_decay": 0.0,
    "l2": 1e-4,
    "init_std": 0.05,
    "batch_size": 1024,
    # training-loop keys
    "epochs": 60,
    "patience": 5,
    "eval_every": 1,
}

# The allowed values of the enumerated keys: anything else is refused before data is loaded.
CHOICES: dict[str, tuple[str, ...]] = {
    "fusion": FUSION_MODES,
    "combine": COMBINE_MODES,
    "ranking_loss": RANKING_LOSSES,
    "context_source": CONTEXT_SOURCES,
}


def search_space(trial: Any) -> dict[str, Any]:
    """Sizes, fusion, the ranking loss, task weights, id dropout and optimisation."""
    return {
        "dim": trial.suggest_categorical("dim", [32, 64, 128]),
        "fusion": trial.suggest_categorical("fusion", list(FUSION_MODES)),
        "combine": trial.suggest_categorical("combine", list(COMBINE_MODES)),
        "mlp_hidden": [trial.suggest_categorical("mlp_width", [64, 128, 256])],
        "dropout": trial.suggest_float("dropout", 0.0, 0.4),
        "id_dropout": trial.suggest_float("id_dropout", 0.0, 0.6),
        "ranking_loss": trial.suggest_categorical("ranking_loss", list(RANKING_LOSSES)),
        "temperature": trial.suggest_float("temperature", 0.2, 2.0, log=True),
        "rating_weight": trial.suggest_float("rating_weight", 0.05, 2.0, log=True),
        "lr": trial.suggest_float("lr", 3e-4, 1e-2, log=True),
        "l2": trial.suggest_float("l2", 1e-6, 1e-2, log=True),
        "weight_decay": trial.suggest_float("weight_decay", 1e-8, 1e-4, log=True),
        "batch_size": trial.suggest_categorical("batch_size", [512, 1024, 2048]),
        "exclude_positives": trial.suggest_categorical("exclude_positives", [True, False]),
        "text_neighbours": trial.suggest_categorical("text_neighbours", [0, 10, 30]),
        "text_dropout": trial.suggest_float("text_dropout", 0.0, 0.7),
    }


MODELS = (
    ModelSpec(
        name="m6-fusion",
        build=M6Fusion,
        defaults=DEFAULTS,
        search_space=search_space,
        choices=CHOICES,
        tasks=("ranking", "rating"),
        default=True,
        description="Multimodal two-tower model: id, categorical, numeric, text (sentence "
                    "encoder) and context modalities, context-dependent attention fusion, "
                    "ranking (softmax/BPR) and rating (MSE) heads trained jointly; cold items "
                    "scored from features and text.",
        paper=PAPER,
        components=("encoder:id-embedding", "encoder:categorical-features",
                    "encoder:numeric-features", "encoder:sentence-text",
                    "encoder:interaction-context", "fusion:modality-attention",
                    "fusion:modality-concat", "fusion:modality-mean", "head:sampled-softmax",
                    "head:bpr", "head:rating-regression", "head:mse"),
    ),
)


@hookimpl
def m6bench_register_encoders(register):
    descriptions = {
        "categorical-features": "categorical side features (and numeric quantile bands) of "
                                "an entity -> field-balanced bag of token embeddings (B, dim)",
        "numeric-features": "standardised numeric side features + missing flags -> (B, dim)",
        "sentence-text": "entity text -> frozen sentence vectors (disk-cached by content "
                         "hash) -> linear projection (B, dim)",
        "interaction-context": "interaction context ids (B, 3) (hour, weekday, domain) -> "
                               "(B, dim); profile() gives a user's average context",
    }
    builders = {"categorical-features": CategoricalFeatureEncoder,
                "numeric-features": NumericFeatureEncoder,
                "sentence-text": SentenceTextEncoder,
                "interaction-context": InteractionContextEncoder}
    for name, build in builders.items():
        register(ComponentSpec("encoder", name, build, ENCODER_DEFAULTS[name],
                               descriptions[name]))


@hookimpl
def m6bench_register_fusions(register):
    descriptions = {
        "modality-attention": "modalities (B, M, d) + context (B, c) -> context-dependent "
                              "attention weights -> weighted sum or concat -> MLP (B, out)",
        "modality-concat": "modalities (B, M, d) -> plain concatenation -> MLP (B, out)",
        "modality-mean": "modalities (B, M, d) -> mean -> MLP (B, out)",
    }
    builders = {"modality-attention": AttentionFusion, "modality-concat": ConcatFusion,
                "modality-mean": MeanFusion}
    for name, build in builders.items():
        register(ComponentSpec("fusion", name, build, FUSION_DEFAULTS[name],
                               descriptions[name]))


@hookimpl
def m6bench_register_heads(register):
    register(ComponentSpec("head", "sampled-softmax", SampledSoftmaxHead,
                           HEAD_DEFAULTS["sampled-softmax"],
                           "softmax cross-entropy of a positive against sampled or all "
                           "negatives (log-q corrected)"))
    register(ComponentSpec("head", "rating-regression", RatingRegressionHead,
                           HEAD_DEFAULTS["rating-regression"],
                           "biased bilinear rating predictor on user and item representations"))


@hookimpl
def m6bench_register_models(register):
    for spec in MODELS:
        register(spec)
