"""The ``synthetic`` loader: a deterministic generator with planted structure.

It needs no file and no network, so a fresh clone can run end to end.  Every step draws from
one ``numpy`` generator in a fixed order, so the same options give the same bytes; a step
that drew in another order would change every recorded fingerprint (bump
``SYNTHETIC_VERSION`` if it must).

Memory grows with the interactions, not with users x items: the users x items logits are
made a block of users at a time (:mod:`.synthetic_blocks`), so ML-20M's shape (138,000 x
27,000, 20 M interactions) peaks at 3.6 GB, where the dense generator failed to allocate
28 GiB.  The block size does not change the content (see :mod:`.synthetic_blocks` for the
one caveat), so ``synthetic-1`` still names it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from m6bench.data.dataset import Dataset
from m6bench.data.loaders.hashing import hash_parts
from m6bench.data.loaders.options import as_number
from m6bench.data.loaders.synthetic_blocks import (
    AffinityScale,
    PlantedLogits,
    block_bytes,
    sample_interactions,
)
from m6bench.data.memory import require_memory
from m6bench.data.specs import LoadContext

SYNTHETIC_VERSION = "synthetic-1"

# Six latent clusters ("genres"), three per domain.  The title vocabulary is real English
# so that an off-the-shelf sentence encoder recovers the clusters from the text alone.
SYNTHETIC_CLUSTERS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("scifi", "books", ("star", "galaxy", "orbit", "rocket", "planet", "comet",
                        "nebula", "astronaut", "moon", "signal", "void", "voyage")),
    ("romance", "books", ("love", "heart", "kiss", "wedding", "letters", "summer",
                          "promise", "bride", "rose", "desire", "affair", "sweetheart")),
    ("mystery", "books", ("murder", "detective", "secret", "clue", "shadow", "alibi",
                          "poison", "witness", "cipher", "vanishing", "suspect", "locked")),
    ("western", "movies", ("outlaw", "sheriff", "saloon", "canyon", "frontier", "gunslinger",
                           "ranch", "desert", "bounty", "stagecoach", "prairie", "horse")),
    ("horror", "movies", ("ghost", "curse", "haunted", "blood", "zombie", "demon",
                          "graveyard", "scream", "witch", "nightmare", "coffin", "vampire")),
    ("animation", "movies", ("dragon", "talking", "puppy", "magic", "kingdom", "princess",
                             "robot", "toy", "bunny", "castle", "adventure", "friends")),
)
SYNTHETIC_DEFAULTS = {"seed": 0, "n_users": 1000, "n_items": 600, "density": 0.083, "dim": 8}
_SYNTHETIC_START = 1577836800  # 2020-01-01T00:00:00Z
_SYNTHETIC_SPAN = 2 * 365 * 86400
_NEW_ITEM_SHARE = 0.05
_NEW_ITEM_WINDOW_START = 0.92  # new items' interactions lie in the last 8% of the timeline
_NEW_ITEM_VOLUME = 0.1  # new items are available briefly: about a tenth of an old item's pull
_AFFINITY_WEIGHT = 2.0  # logit weight of the standardised user-item affinity
_POPULARITY_EXPONENT = 1.0  # item bias = -exponent * log(1 + popularity rank): Zipf-like
# Peak bytes per interaction from sampling to the validated Dataset (index arrays, the
# timeline, the frames and their validation): 181 measured on ML-20M's shape, plus a margin.
_BYTES_PER_INTERACTION = 200


def _synthetic_options(options: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "seed": as_number(options, "seed", int, 0, 2**32 - 1),
        "n_users": as_number(options, "n_users", int, 10, 10_000_000),
        "n_items": as_number(options, "n_items", int, 2 * len(SYNTHETIC_CLUSTERS), 1_000_000),
        "density": as_number(options, "density", float, 1e-6, 0.5),
        "dim": as_number(options, "dim", int, 2, 1024),
    }


def synthetic_fingerprint(options: Mapping[str, Any], context: LoadContext) -> str:
    return hash_parts(SYNTHETIC_VERSION, _synthetic_options(options))


def load_synthetic(options: Mapping[str, Any], context: LoadContext) -> Dataset:
    """Generate the planted-structure dataset.

    Why each ingredient is there:

    * item factors = cluster centre + mean of the title words' vectors + noise, so item text
      (and genres) predict an item's factors: text encoders and cold-start paths can win;
    * user factors lean towards one preferred cluster, so collaborative signal exists;
    * which items a user interacts with is sampled without replacement with probability
      proportional to ``exp(affinity + popularity bias)`` (Gumbel top-k), so matrix
      factorisation beats popularity, which beats random;
    * ratings 1-5 are affinity + user/item biases + noise, so rating prediction is learnable;
    * ~5% of items are "new": all their interactions lie at the end of the timeline, which
      temporal and cold-start-item protocols can hold out.
    """
    params = _synthetic_options(options)
    _require_memory_for(params)
    rng = np.random.default_rng(params["seed"])
    latent = _latent_structure(rng, params["n_users"], params["n_items"], params["dim"])
    user_tokens = np.char.add("u", np.arange(latent.n_users).astype(str))
    item_tokens = np.char.add("i", np.arange(latent.n_items).astype(str))
    interactions = _interaction_frame(rng, latent, params["density"], user_tokens, item_tokens)
    user_table = _user_table(rng, latent, user_tokens)
    item_table = _item_table(rng, latent, item_tokens)
    return Dataset.from_frames(
        "synthetic",
        interactions,
        user_features=user_table,
        item_features=item_table,
        user_feature_kinds={"age": "numeric", "gender": "categorical"},
        item_feature_kinds={"title": "text", "genres": "categorical_seq", "year": "numeric"},
        source=f"synthetic generator {SYNTHETIC_VERSION} {json.dumps(params, sort_keys=True)}",
    )


def _interaction_frame(
    rng: np.random.Generator, latent: _Latent, density: float,
    user_tokens: np.ndarray, item_tokens: np.ndarray,
) -> pd.DataFrame:
    """The interactions in time order.  Its own function so that the index arrays are freed
    before the frame is validated."""
    sampled = sample_interactions(rng, latent.planted, latent.affinity_scale,
                                  lambda draw: _interaction_counts(draw, latent, density))
    order, timestamps = _timeline(rng, latent, sampled.items)
    users, items = sampled.users[order], sampled.items[order]
    ratings = _ratings(rng, latent, users, items, sampled.affinity[order])
    domain_names, cluster_domain = np.unique(
        [domain for _, domain, _ in SYNTHETIC_CLUSTERS], return_inverse=True)
    # Categorical columns: codes into the tokens, not one string per interaction (at ML-20M's
    # size, string columns alone took 6 GB).
    return pd.DataFrame({
        "user": _tokens_at(user_tokens, users),
        "item": _tokens_at(item_tokens, items),
        "rating": ratings.astype(np.float32),
        "timestamp": timestamps,
        "domain": _tokens_at(domain_names, cluster_domain[latent.item_cluster[items]]),
    })


def _require_memory_for(params: Mapping[str, Any]) -> None:
    n_users, n_items, dim = params["n_users"], params["n_items"], params["dim"]
    per_user = min(max(params["density"] * n_items, 5), max(5, n_items // 2))
    interactions = n_users * per_user + n_items  # + items only their most eager user picks
    require_memory(
        _BYTES_PER_INTERACTION * interactions + 8 * 4 * (n_users + n_items) * dim
        + block_bytes(n_users, n_items),
        what=f"The synthetic dataset ({n_users:,} users x {n_items:,} items, about "
             f"{interactions:,.0f} interactions)",
        avoid="Lower the dataset options n_users, n_items or density "
              "(e.g. --dataset-opt density=0.001).",
    )


def _tokens_at(tokens: np.ndarray, codes: np.ndarray) -> pd.Categorical:
    return pd.Categorical.from_codes(codes, categories=pd.Index(tokens, dtype="str"))


@dataclass(frozen=True)
class _Latent:
    """The hidden truth the observed data is drawn from."""

    n_users: int
    n_items: int
    item_cluster: np.ndarray  # (n_items,) index into SYNTHETIC_CLUSTERS
    title_words: np.ndarray  # (n_items, 3) index into the cluster vocabulary
    user_factors: np.ndarray  # (n_users, dim)
    is_new_item: np.ndarray  # (n_items,) bool
    planted: PlantedLogits  # logits = weight * standardised affinity + popularity bias
    affinity_scale: AffinityScale


def _vocabulary() -> np.ndarray:
    return np.array([w for _, _, words in SYNTHETIC_CLUSTERS for w in words])


def _latent_structure(rng: np.random.Generator, n_users: int, n_items: int, dim: int) -> _Latent:
    n_clusters = len(SYNTHETIC_CLUSTERS)
    words_per_cluster = len(SYNTHETIC_CLUSTERS[0][2])
    centres = rng.normal(size=(n_clusters, dim))
    word_vectors = rng.normal(size=(len(_vocabulary()), dim))
    item_cluster = rng.integers(0, n_clusters, n_items)
    title_words = (
        rng.random((n_items, words_per_cluster)).argsort(axis=1)[:, :3]
        + item_cluster[:, None] * words_per_cluster
    )
    item_factors = (
        centres[item_cluster]
        + 0.7 * word_vectors[title_words].mean(axis=1)
        + 0.3 * rng.normal(size=(n_items, dim))
    )
    user_cluster = rng.integers(0, n_clusters, n_users)
    user_factors = 0.7 * centres[user_cluster] + 0.7 * rng.normal(size=(n_users, dim))
    popularity_rank = rng.permutation(n_items)
    item_bias = -_POPULARITY_EXPONENT * np.log1p(popularity_rank)
    # New items exist only at the end of the timeline, so they collect fewer interactions.
    is_new_item = np.zeros(n_items, dtype=bool)
    is_new_item[rng.permutation(n_items)[: max(1, round(_NEW_ITEM_SHARE * n_items))]] = True
    item_bias[is_new_item] += np.log(_NEW_ITEM_VOLUME)
    planted = PlantedLogits(user_factors, item_factors, item_bias, _AFFINITY_WEIGHT)
    return _Latent(n_users, n_items, item_cluster, title_words, user_factors, is_new_item,
                   planted, AffinityScale.measure(planted))


def _interaction_counts(rng: np.random.Generator, latent: _Latent, density: float) -> np.ndarray:
    """How many items each user interacts with: log-normal around ``density * n_items``."""
    n_items = latent.n_items
    mean_count = density * n_items
    spread = 0.6
    counts = rng.lognormal(np.log(max(mean_count, 1.0)) - spread**2 / 2, spread, latent.n_users)
    return np.clip(np.rint(counts), min(5, n_items), max(5, n_items // 2)).astype(np.int64)


def _timeline(
    rng: np.random.Generator, latent: _Latent, items: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The time order of the interactions and their strictly increasing timestamps; new
    items' interactions only late."""
    moment = rng.random(len(items))
    late = latent.is_new_item[items]
    moment[late] = _NEW_ITEM_WINDOW_START + (1 - _NEW_ITEM_WINDOW_START) * moment[late]
    order = np.argsort(moment, kind="stable")
    moment = moment[order]
    raw_seconds = _SYNTHETIC_START + (moment * _SYNTHETIC_SPAN).astype(np.int64)
    steps = np.arange(len(raw_seconds), dtype=np.int64)
    timestamps = np.maximum.accumulate(raw_seconds - steps) + steps
    return order, timestamps


def _ratings(
    rng: np.random.Generator, latent: _Latent, users: np.ndarray, items: np.ndarray,
    observed: np.ndarray,
) -> np.ndarray:
    """Ratings 1-5 from the standardised affinity ``observed`` of each pair + user/item
    biases + noise."""
    observed = (observed - observed.mean()) / observed.std()
    item_quality = 0.4 * rng.normal(size=latent.n_items)
    user_leniency = 0.3 * rng.normal(size=latent.n_users)
    ratings = 3.4 + observed + item_quality[items] + user_leniency[users]
    return np.clip(np.rint(ratings + 0.5 * rng.normal(size=len(users))), 1, 5)


def _user_table(
    rng: np.random.Generator, latent: _Latent, user_tokens: np.ndarray
) -> pd.DataFrame:
    """Age and gender that lean on the first two user factors, so they carry signal."""
    n_users = latent.n_users
    scaled = latent.user_factors / latent.user_factors.std(axis=0)
    age = np.clip(np.rint(36 + 9 * scaled[:, 0] + 5 * rng.normal(size=n_users)), 16, 80)
    female = rng.random(n_users) < 1 / (1 + np.exp(-1.5 * scaled[:, 1]))
    return pd.DataFrame({
        "user": user_tokens,
        "age": age.astype(np.float64),
        "gender": pd.Series(np.where(female, "F", "M"), dtype="str"),
    })


def _item_table(
    rng: np.random.Generator, latent: _Latent, item_tokens: np.ndarray
) -> pd.DataFrame:
    """Titles from the cluster's words, genres naming the cluster, release years."""
    n_items, n_clusters = latent.n_items, len(SYNTHETIC_CLUSTERS)
    item_cluster = latent.item_cluster
    cluster_genre = np.array([genre for genre, _, _ in SYNTHETIC_CLUSTERS])
    cluster_domain = np.array([domain for _, domain, _ in SYNTHETIC_CLUSTERS])
    words = np.char.capitalize(_vocabulary()[latent.title_words])
    titles = np.char.add(np.char.add(np.char.add(words[:, 0], " "), words[:, 1]), " ")
    titles = np.char.add(titles, words[:, 2])
    # A second genre from a sibling cluster (same domain) for ~30% of items: multi-token
    # genres that still point at the item's cluster.
    siblings = np.array([
        np.flatnonzero((cluster_domain == cluster_domain[c]) & (np.arange(n_clusters) != c))
        for c in range(n_clusters)
    ])
    sibling = siblings[item_cluster, rng.integers(0, siblings.shape[1], n_items)]
    genres = np.where(
        rng.random(n_items) < 0.3,
        np.char.add(np.char.add(cluster_genre[item_cluster], " "), cluster_genre[sibling]),
        cluster_genre[item_cluster],
    )
    last_year = 2021
    year = np.where(
        latent.is_new_item, last_year, rng.integers(1960, last_year - 1, n_items, endpoint=True)
    )
    return pd.DataFrame({
        "item": item_tokens,
        "title": pd.Series(titles, dtype="str"),
        "genres": pd.Series(genres, dtype="str"),
        "year": year.astype(np.float64),
    })
