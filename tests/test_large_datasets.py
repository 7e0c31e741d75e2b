"""The large GroupLens loaders (ml-10m, ml-20m, ml-25m) and Amazon-style ratings CSVs.

The real archives are hundreds of megabytes and need the internet, so each test builds a
small archive in the official layout (same folder, file names, separators, header, quoting
and encodings) and loads it from a path, from ``M6BENCH_DATA_DIR`` or from a local
``http.server`` (the ``archive_server`` fixture).  The pinned digests are those of the
official archives, so tests that exercise the pinned route patch the table with the digest
of their small archive.
"""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from m6bench.data.dataset import Dataset
from m6bench.data.loaders import movielens
from m6bench.data.loaders.hashing import Checksum
from m6bench.data.specs import LoadContext
from m6bench.errors import DatasetError
from m6bench.registry.catalog import load_catalog
from m6bench.runs.loading import load_dataset

LARGE = ("ml-10m", "ml-20m", "ml-25m")


@pytest.fixture(scope="module")
def catalog():
    return load_catalog(entry_points=False)


@pytest.fixture
def context(isolated) -> LoadContext:
    isolated.without_real_data()
    return LoadContext(data_dir=None, cache_dir=str(isolated.cache), offline=True)


def digest_of(path: Path, algorithm: str = "sha256") -> str:
    return hashlib.new(algorithm, path.read_bytes()).hexdigest()


def dataset_fingerprint(catalog, variant: str, options: dict, context: LoadContext) -> str:
    """The source fingerprint the Arrow cache is keyed by, for these options."""
    spec = catalog.datasets.get(variant)
    return spec.fingerprint({**spec.defaults, **options}, context)


def pin(monkeypatch, variant: str, checksum: Checksum) -> None:
    """Pin the small test archive's digest in place of the official one."""
    monkeypatch.setitem(movielens.GROUPLENS_CHECKSUMS, variant, checksum)


# ============================================================================ archives
# (user, movie, rating, timestamp); user 7 rates movie 2 twice (the later one is kept).
RATINGS = [(1, 122, 5.0, 838985046), (1, 185, 3.5, 838983525), (2, 122, 0.5, 868245777),
           (7, 2, 4.5, 1112486027), (7, 185, 2.0, 1112484676), (7, 2, 3.0, 1112490000)]


def build_ml10m_zip(path: Path, ratings=RATINGS) -> Path:
    movies = ["122::Boomerang (1992)::Comedy|Romance",
              "185::Net, The (1995)::Action|Crime|Thriller",
              "2::Jumanji (1995)::Adventure|Children|Fantasy",
              "5::Misérables, Les (1995)::Drama",  # latin-1 in the .dat, never rated
              ]
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("ml-10M100K/ratings.dat",
                         "".join(f"{u}::{i}::{r:g}::{t}\n" for u, i, r, t in ratings))
        archive.writestr("ml-10M100K/movies.dat", ("\n".join(movies) + "\n").encode("latin-1"))
        archive.writestr("ml-10M100K/tags.dat", "15::4973::excellent!::1215184630\n")
    return path


def build_csv_zip(path: Path, folder: str, ratings=RATINGS) -> Path:
    """ml-20m and ml-25m: the same CSV layout in folders ml-20m/ and ml-25m/."""
    movies = ['movieId,title,genres',
              '122,Boomerang (1992),Comedy|Romance',
              '185,"Net, The (1995)",Action|Crime|Thriller',
              '2,Jumanji (1995),(no genres listed)',
              '5,"Misérables, Les (1995)",Drama']
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{folder}/ratings.csv", "userId,movieId,rating,timestamp\n" + "".join(
            f"{u},{i},{r:.1f},{t}\n" for u, i, r, t in ratings))
        archive.writestr(f"{folder}/movies.csv", "\n".join(movies) + "\n")  # UTF-8
        archive.writestr(f"{folder}/tags.csv", "userId,movieId,tag,timestamp\n")
        archive.writestr(f"{folder}/links.csv", "movieId,imdbId,tmdbId\n122,0103859,11066\n")
        archive.writestr(f"{folder}/genome-scores.csv", "movieId,tagId,relevance\n")
    return path


def build_archive(variant: str, path: Path, ratings=RATINGS) -> Path:
    if variant == "ml-10m":
        return build_ml10m_zip(path, ratings)
    return build_csv_zip(path, variant, ratings)


def check_contents(dataset: Dataset, variant: str) -> None:
    """Hand-computed from RATINGS: duplicates=last keeps user 7's later rating of movie 2."""
    assert dataset.name == variant
    assert dataset.user_ids.tolist() == ["1", "2", "7"]
    assert dataset.item_ids.tolist() == ["122", "185", "2"]
    pairs = [(dataset.user_ids[u], dataset.item_ids[i], float(r), int(t)) for u, i, r, t in
             zip(dataset.users, dataset.items, dataset.ratings, dataset.timestamps, strict=True)]
    assert sorted(pairs) == sorted([
        ("1", "122", 5.0, 838985046), ("1", "185", 3.5, 838983525),
        ("2", "122", 0.5, 868245777), ("7", "185", 2.0, 1112484676),
        ("7", "2", 3.0, 1112490000),
    ])
    assert dataset.ratings.dtype == np.float32
    assert dataset.user_features is None and dataset.user_feature_kinds == {}
    items = dataset.item_features.set_index(pd.Index(dataset.item_ids))
    assert items.loc["185", "title"] == "Net, The"
    assert items.loc["185", "year"] == 1995.0
    assert items.loc["185", "genres"] == "Action Crime Thriller"
    assert items.loc["122", "genres"] == "Comedy Romance"
    assert "5" not in items.index  # never rated: not part of the dataset
    assert dataset.item_feature_kinds == {"title": "text", "genres": "categorical_seq",
                                          "year": "numeric"}


@pytest.mark.parametrize("variant", LARGE)
def test_local_archive_in_the_official_layout(catalog, context, tmp_path, variant):
    archive = build_archive(variant, tmp_path / f"my-{variant}.zip")
    dataset = load_dataset(catalog, variant, {"archive": str(archive)}, context=context)
    check_contents(dataset, variant)
    items = dataset.item_features.set_index(pd.Index(dataset.item_ids))
    if variant == "ml-10m":
        assert items.loc["2", "genres"] == "Adventure Children Fantasy"
    else:  # GroupLens' "(no genres listed)" is a missing value, not three tokens
        assert pd.isna(items.loc["2", "genres"])


def test_ml10m_reads_latin1_titles(catalog, context, tmp_path):
    ratings = [*RATINGS, (3, 5, 4.0, 900000000)]
    archive = build_ml10m_zip(tmp_path / "ml-10m.zip", ratings)
    dataset = load_dataset(catalog, "ml-10m", {"archive": str(archive)}, context=context)
    items = dataset.item_features.set_index(pd.Index(dataset.item_ids))
    assert items.loc["5", "title"] == "Misérables, Les"


def test_csv_layout_reads_utf8_titles_with_commas(catalog, context, tmp_path):
    ratings = [*RATINGS, (3, 5, 4.0, 900000000)]
    archive = build_csv_zip(tmp_path / "ml-25m.zip", "ml-25m", ratings)
    dataset = load_dataset(catalog, "ml-25m", {"archive": str(archive)}, context=context)
    items = dataset.item_features.set_index(pd.Index(dataset.item_ids))
    assert items.loc["5", "title"] == "Misérables, Les"


def test_integer_ids_give_the_same_dataset_as_their_strings():
    """The parsers hand over int32 ids (cheap to read): ids, order and fingerprint must be
    those of the same ids written as strings, as the smaller loaders give them."""
    frame = {"rating": [1.0, 2.0, 3.0, 4.0], "timestamp": [4, 3, 2, 1]}
    compact = Dataset.from_frames("x", pd.DataFrame({
        "user": np.array([30, 4, 30, 1000000], np.int32),
        "item": np.array([2, 2, 17, 5], np.int32), **frame}))
    plain = Dataset.from_frames("x", pd.DataFrame({
        "user": ["30", "4", "30", "1000000"], "item": ["2", "2", "17", "5"], **frame}))
    assert compact.user_ids.tolist() == ["30", "4", "1000000"]
    for attribute in ("users", "items", "user_ids", "item_ids", "ratings", "timestamps"):
        np.testing.assert_array_equal(getattr(compact, attribute), getattr(plain, attribute))
    assert compact.fingerprint == plain.fingerprint


def test_malformed_ratings_name_the_member(catalog, context, tmp_path):
    archive = tmp_path / "ml-20m.zip"
    with zipfile.ZipFile(archive, "w") as out:
        out.writestr("ml-20m/ratings.csv", "userId,movieId,rating,timestamp\n1,2,four,3\n")
        out.writestr("ml-20m/movies.csv", "movieId,title,genres\n2,X (1990),Drama\n")
    with pytest.raises(DatasetError, match=r"ml-20m\.zip: ratings\.csv could not be read"):
        load_dataset(catalog, "ml-20m", {"archive": str(archive)}, context=context)
    with zipfile.ZipFile(archive, "w") as out:
        out.writestr("ml-20m/movies.csv", "movieId,title,genres\n")
    with pytest.raises(DatasetError, match=r"has no ratings\.csv"):
        load_dataset(catalog, "ml-20m", {"archive": str(archive)}, context=context)


# ============================================================================ sources
def test_download_verified_by_the_pinned_sha256(catalog, context, archive_server, monkeypatch):
    served, base = archive_server
    archive = build_csv_zip(served / "ml-20m.zip", "ml-20m")
    pin(monkeypatch, "ml-20m", Checksum("sha256", digest_of(archive)))
    options = {"download": "true", "url": f"{base}/ml-20m.zip", "timeout": 10}
    before = dataset_fingerprint(catalog, "ml-20m", options, context=context)
    check_contents(load_dataset(catalog, "ml-20m", options, context=context), "ml-20m")
    cached = Path(context.cache_dir) / "grouplens" / "ml-20m.zip"
    assert digest_of(cached) == digest_of(archive)
    # Later runs read the cached archive (server gone): same source, same cache entry.
    archive.unlink()
    assert dataset_fingerprint(catalog, "ml-20m", options, context=context) == before
    check_contents(load_dataset(catalog, "ml-20m", {}, context=context), "ml-20m")


def test_ml10m_is_pinned_by_md5(catalog, context, archive_server, monkeypatch):
    served, base = archive_server
    archive = build_ml10m_zip(served / "ml-10m.zip")
    pin(monkeypatch, "ml-10m", Checksum("md5", digest_of(archive, "md5")))
    options = {"download": True, "url": f"{base}/ml-10m.zip", "timeout": 10}
    before = dataset_fingerprint(catalog, "ml-10m", options, context=context)
    check_contents(load_dataset(catalog, "ml-10m", options, context=context), "ml-10m")
    assert dataset_fingerprint(catalog, "ml-10m", {}, context=context) == before  # cached
    explicit = {"archive": str(archive)}  # the same file by path: the same source digest
    assert dataset_fingerprint(catalog, "ml-10m", explicit, context=context) == before


def test_wrong_md5_keeps_nothing_and_names_the_sha256_to_trust(catalog, context,
                                                               archive_server, monkeypatch):
    served, base = archive_server
    archive = build_ml10m_zip(served / "ml-10m.zip")
    pin(monkeypatch, "ml-10m", Checksum("md5", "0" * 32))
    options = {"download": True, "url": f"{base}/ml-10m.zip", "timeout": 10}
    with pytest.raises(DatasetError) as error:
        load_dataset(catalog, "ml-10m", options, context=context)
    message = str(error.value)
    assert f"md5 {digest_of(archive, 'md5')}" in message and "0" * 32 in message
    assert f"sha256={digest_of(archive)}" in message
    grouplens = Path(context.cache_dir) / "grouplens"
    assert not grouplens.exists() or list(grouplens.iterdir()) == []
    # The fix the message gives works: the sha256 option overrides the pinned md5.
    trusted = {**options, "sha256": digest_of(archive)}
    check_contents(load_dataset(catalog, "ml-10m", trusted, context=context), "ml-10m")


def test_archive_in_the_data_dir_is_found_and_checked(catalog, isolated, tmp_path,
                                                      monkeypatch):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    archive = build_csv_zip(data_dir / "ml-25m.zip", "ml-25m")
    context = LoadContext(data_dir=str(data_dir), cache_dir=str(isolated.cache))
    pin(monkeypatch, "ml-25m", Checksum("sha256", digest_of(archive)))
    check_contents(load_dataset(catalog, "ml-25m", context=context), "ml-25m")
    pin(monkeypatch, "ml-25m", Checksum("sha256", "f" * 64))  # a different release
    with pytest.raises(DatasetError, match=rf"{data_dir / 'ml-25m.zip'} has sha256 "
                                           rf"{digest_of(archive)}, but f{{64}} was expected"):
        load_dataset(catalog, "ml-25m", context=context)


@pytest.mark.parametrize("variant", LARGE)
def test_unavailable_names_the_file_where_to_put_it_and_the_url(catalog, context, tmp_path,
                                                                 variant):
    with pytest.raises(DatasetError) as error:
        load_dataset(catalog, variant, context=context)
    message = str(error.value)
    cache = Path(context.cache_dir) / "grouplens" / f"{variant}.zip"
    pinned = movielens.GROUPLENS_CHECKSUMS[variant]
    for hint in (f"https://files.grouplens.org/datasets/movielens/{variant}.zip",
                 f"put it at {cache}", pinned.hexdigest, "archive=PATH", "download=true"):
        assert hint in message
    assert "RecBole" not in message  # no RecBole copy exists for these
    data_dir = LoadContext(data_dir=str(tmp_path), cache_dir=context.cache_dir)
    with pytest.raises(DatasetError, match=rf"put it at {tmp_path / (variant + '.zip')}"):
        load_dataset(catalog, variant, context=data_dir)


def test_grouplens_variant_from_member_names(tmp_path):
    """For path detection: a zip's layout names its loader (ml-1m and ml-10m share .dat)."""
    for variant in LARGE:
        with zipfile.ZipFile(build_archive(variant, tmp_path / f"{variant}.zip")) as archive:
            assert movielens.grouplens_variant(archive.namelist()) == variant
    assert movielens.grouplens_variant(["ml-1m/ratings.dat", "ml-1m/users.dat"]) == "ml-1m"
    assert movielens.grouplens_variant(["ml-100k/u.data"]) == "ml-100k"
    assert movielens.grouplens_variant(["ml-latest/ratings.csv", "ml-latest/movies.csv"]) is None
    assert movielens.grouplens_variant(["data.csv"]) is None


def test_every_variant_has_a_pinned_digest_of_the_right_length():
    assert set(movielens.GROUPLENS_CHECKSUMS) == set(movielens.GROUPLENS_URLS)
    lengths = {"sha256": 64, "md5": 32}
    for checksum in movielens.GROUPLENS_CHECKSUMS.values():
        assert len(checksum.hexdigest) == lengths[checksum.algorithm]
        int(checksum.hexdigest, 16)
    assert movielens.GROUPLENS_CHECKSUMS["ml-10m"].algorithm == "md5"  # only md5 published


def test_large_variants_are_registered(catalog):
    for variant in LARGE:
        spec = catalog.datasets.get(variant)
        assert spec.fingerprint is not None and spec.description
        assert spec.defaults["url"].endswith(f"/{variant}.zip")


# ============================================================================ Amazon CSV
def test_amazon_ratings_only_csv(catalog, context, tmp_path):
    """Headerless item,user,rating,timestamp rows, as in ratings_Books.csv."""
    path = tmp_path / "ratings_Books.csv"
    path.write_text("0000013714,A2SUAM1J3GNN3B,4.0,1203120000\n"
                    "0000013714,AWC5TP4HH1JSO,5.0,1391990400\n"
                    "0005080789,A2SUAM1J3GNN3B,2.0,1403308800\n")
    options = {"path": str(path), "names": "item_id,user_id,rating,timestamp"}
    dataset = load_dataset(catalog, "csv", options, context=context)
    assert dataset.n_interactions == 3  # the first row is data, not a header
    assert dataset.user_ids.tolist() == ["A2SUAM1J3GNN3B", "AWC5TP4HH1JSO"]
    assert dataset.item_ids.tolist() == ["0000013714", "0005080789"]  # leading zeros kept
    assert dataset.ratings.tolist() == [4.0, 5.0, 2.0]
    assert dataset.timestamps.tolist() == [1203120000, 1391990400, 1403308800]
    with pytest.raises(DatasetError, match=r"names='item_id,,rating'.*names=item_id,user_id"):
        load_dataset(catalog, "csv", {**options, "names": "item_id,,rating"}, context=context)


@pytest.mark.parametrize("variant", LARGE)
def test_a_zip_given_as_a_path_is_read_by_its_layouts_loader(catalog, context, tmp_path,
                                                             monkeypatch, variant):
    archive = build_archive(variant, tmp_path / "download.zip")
    pin(monkeypatch, variant, Checksum("sha256", digest_of(archive)))
    dataset = load_dataset(catalog, str(archive), context=context)
    check_contents(dataset, variant)


def test_a_zip_of_another_layout_is_refused_with_the_layouts_it_knows(catalog, context,
                                                                        tmp_path):
    archive = tmp_path / "other.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("data/ratings.csv", "userId,movieId,rating,timestamp\n")
    with pytest.raises(DatasetError, match=r"not a GroupLens MovieLens archive.*ratings\.csv"):
        load_dataset(catalog, str(archive), context=context)
