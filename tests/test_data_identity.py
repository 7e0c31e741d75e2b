"""Trustworthy records (issue #15): a benchmark's version names its data by content, and bad
data is refused before training.

A version hashes the loaded content and the contract, never a path or the route that loaded
the data: the same ML-100K from two archive paths, a download or the RecBole copy under
``M6BENCH_DATA_DIR`` is one benchmark version, and so is one table read as CSV, Parquet or a
RecBole folder.  Infinite ratings, negative timestamps under a time-based protocol, a cut
with an empty validation or test part, and duplicate (user, item) rows under
``duplicates=error`` stop a run with a one-line error before anything is recorded; the other
duplicates policies are applied by the loader and the run says how many rows it merged.
"""

from __future__ import annotations

import dataclasses
import hashlib
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

import m6bench
from m6bench import Dataset, DatasetError, ProtocolError
from m6bench.cli import main
from m6bench.data.specs import LoadContext
from m6bench.protocols.cuts import deduplicate
from m6bench.registry.catalog import load_catalog
from m6bench.runs.loading import load_dataset
from m6bench.runs.prepare import benchmark_version, cached_benchmark_version
from m6bench.runs.reproduce import benchmark_of
from m6bench.runs.run import resolve_benchmark
from m6bench_leaderboard import read_ledger

GENRES = ["unknown", "Action", "Comedy", "Drama"]


# ============================================================================ fixtures
@pytest.fixture(scope="module")
def catalog():
    return load_catalog(entry_points=False)


@pytest.fixture(autouse=True)
def _isolated(isolated):
    isolated.without_real_data()


@pytest.fixture
def context(tmp_path) -> LoadContext:
    return LoadContext(data_dir=None, cache_dir=str(tmp_path / "cache"), offline=True)


def ratings(n_users: int = 12, per_user: int = 6, n_items: int = 15) -> pd.DataFrame:
    """Deterministic interactions: every user rates ``per_user`` (<= 7) distinct items."""
    rows = []
    clock = 880_000_000
    for user in range(n_users):
        for step in range(per_user):
            clock += 37 + user
            rows.append((f"{user + 1}", f"{(user * 7 + step * 2) % n_items + 1}",
                         float((user + step) % 5 + 1), clock))
    return pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])


def _text(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def write_recbole(folder: Path, name: str, frame: pd.DataFrame) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    lines += [f"{r.user_id}\t{r.item_id}\t{_text(r.rating)}\t{r.timestamp}"
              for r in frame.itertuples()]
    (folder / f"{name}.inter").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def records(tmp_path: Path) -> list[dict]:
    ledger = tmp_path / "ledger.jsonl"
    return read_ledger(ledger).records if ledger.exists() else []


def run_cli(*args: str):
    return CliRunner().invoke(main, ["run", "--plugin", "classic", "--model", "pop", "--quiet",
                                     "--device", "cpu", *args])


# ============================================================================ ML-100K routes
def _ml100k_tables(frame: pd.DataFrame):
    items = sorted(set(frame["item_id"]), key=int)
    users = sorted(set(frame["user_id"]), key=int)
    item_rows = [(i, f"Movie {i} (19{60 + int(i)})", f"01-Jan-19{60 + int(i)}",
                  [1 if k == 1 + int(i) % 3 else 0 for k in range(len(GENRES))]) for i in items]
    user_rows = [(u, 20 + int(u), "MF"[int(u) % 2], "writer", f"{10000 + int(u)}")
                 for u in users]
    return item_rows, user_rows


def build_ml100k_archive(path: Path, frame: pd.DataFrame) -> Path:
    """A GroupLens-layout ml-100k.zip (u.data, u.item, u.genre, u.user) holding ``frame``."""
    item_rows, user_rows = _ml100k_tables(frame)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("ml-100k/u.data", "".join(
            f"{r.user_id}\t{r.item_id}\t{int(r.rating)}\t{r.timestamp}\n"
            for r in frame.itertuples()))
        archive.writestr("ml-100k/u.genre", "".join(f"{g}|{k}\n" for k, g in enumerate(GENRES)))
        archive.writestr("ml-100k/u.item", "".join(
            f"{i}|{title}|{date}||http://x|{'|'.join(map(str, flags))}\n"
            for i, title, date, flags in item_rows))
        archive.writestr("ml-100k/u.user", "".join(
            f"{'|'.join(map(str, row))}\n" for row in user_rows))
    return path


def build_ml100k_recbole(data_dir: Path, frame: pd.DataFrame) -> Path:
    """The same data as RecBole atomic files, where ``M6BENCH_DATA_DIR`` points."""
    folder = write_recbole(data_dir / "recbole-ml-100k", "ml-100k", frame)
    item_rows, user_rows = _ml100k_tables(frame)
    lines = ["item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq"]
    lines += [f"{i}\t{title[:-7]}\t{date[-4:]}\t{GENRES[flags.index(1)]}"
              for i, title, date, flags in item_rows]
    (folder / "ml-100k.item").write_text("\n".join(lines) + "\n", encoding="utf-8")
    lines = ["user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token"]
    lines += ["\t".join(map(str, row)) for row in user_rows]
    (folder / "ml-100k.user").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return data_dir


def test_ml100k_has_one_version_whichever_route_loaded_it(catalog, tmp_path, archive_server):
    frame = ratings()
    (tmp_path / "a").mkdir()
    first = build_ml100k_archive(tmp_path / "a" / "ml-100k.zip", frame)
    second = tmp_path / "elsewhere" / "copy-of-ml-100k.zip"
    second.parent.mkdir()
    second.write_bytes(first.read_bytes())
    folder, base = archive_server
    (folder / "ml-100k.zip").write_bytes(first.read_bytes())
    data_dir = build_ml100k_recbole(tmp_path / "data", frame)
    spec = catalog.benchmarks.get("ml-100k")
    cache = str(tmp_path / "cache")
    plain = LoadContext(data_dir=None, cache_dir=cache, offline=True)
    versions = {
        "archive": benchmark_version(catalog, spec, dataset_options={"archive": str(first)},
                                     context=plain),
        "archive elsewhere": benchmark_version(
            catalog, spec, dataset_options={"archive": str(second)}, context=plain),
        "download": benchmark_version(
            catalog, spec, context=LoadContext(None, str(tmp_path / "cache2"), False),
            dataset_options={"download": "true", "url": f"{base}/ml-100k.zip", "timeout": 10,
                             "sha256": hashlib.sha256(first.read_bytes()).hexdigest()}),
        "data dir": benchmark_version(catalog, spec,
                                      context=LoadContext(str(data_dir), cache, True)),
    }
    assert len(set(versions.values())) == 1, versions
    # an archive given as the dataset itself is an ad hoc benchmark with the same contract
    adhoc, _ = resolve_benchmark(catalog, dataset=str(second))
    assert benchmark_version(catalog, adhoc, context=plain) == versions["archive"]
    # ... and the runs record that version, whichever route they took
    assert run_cli("--benchmark", "ml-100k", "--dataset-opt", f"archive={second}").exit_code == 0
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("M6BENCH_DATA_DIR", str(data_dir))
        result = run_cli("--benchmark", "ml-100k")
    assert result.exit_code == 0, result.output
    assert f"version {versions['archive']})" in result.output
    assert [r["benchmark"]["version"] for r in records(tmp_path)] == [versions["archive"]] * 2


# ============================================================================ ad hoc tables
def test_one_table_as_csv_parquet_or_recbole_folder_has_one_version(catalog, tmp_path):
    frame = ratings()
    csv = tmp_path / "one" / "ratings.csv"
    csv.parent.mkdir()
    frame.to_csv(csv, index=False)
    parquet = tmp_path / "two" / "interactions.parquet"
    parquet.parent.mkdir()
    frame.to_parquet(parquet, index=False)
    folder = write_recbole(tmp_path / "three" / "mydata", "mydata", frame)
    versions = {}
    for path in (csv, parquet, folder):
        spec, _ = resolve_benchmark(catalog, dataset=str(path))
        assert str(path) in spec.to_dict()["dataset"]  # the route is in the spec ...
        versions[path.name] = benchmark_version(catalog, spec)
    assert len(set(versions.values())) == 1, versions  # ... but not in the version
    moved = tmp_path / "moved.csv"
    moved.write_bytes(csv.read_bytes())
    spec, _ = resolve_benchmark(catalog, dataset=str(moved))
    assert benchmark_version(catalog, spec) == versions["ratings.csv"]

    for path in (csv, folder):
        result = run_cli("--dataset", str(path))
        assert result.exit_code == 0, result.output
    assert [r["benchmark"]["version"] for r in records(tmp_path)] == [versions[csv.name]] * 2


def test_content_and_contract_changes_change_the_version(catalog, tmp_path):
    spec = catalog.benchmarks.get("synthetic")
    small = {"n_users": 60, "n_items": 40}
    base = benchmark_version(catalog, spec, dataset_options=small)
    assert benchmark_version(catalog, spec, dataset_options={"n_users": "60",
                                                             "n_items": "40"}) == base
    assert benchmark_version(catalog, spec, dataset_options={**small, "n_users": 70}) != base
    assert benchmark_version(catalog, spec, dataset_options={**small, "seed": 1}) != base
    assert benchmark_version(catalog, dataclasses.replace(spec, kcore=2),
                             dataset_options=small) != base
    assert benchmark_version(catalog, dataclasses.replace(spec, rating_threshold=4),
                             dataset_options=small) != base
    assert benchmark_version(catalog, dataclasses.replace(spec, description="other words"),
                             dataset_options=small) == base
    # the duplicates policy changes the version exactly when it changes the content
    csv = tmp_path / "clean.csv"
    ratings().to_csv(csv, index=False)
    adhoc, _ = resolve_benchmark(catalog, dataset=str(csv))
    clean = {p: benchmark_version(catalog, adhoc, dataset_options={"duplicates": p})
             for p in ("last", "first", "sum")}
    assert len(set(clean.values())) == 1
    twice = pd.concat([ratings(), ratings().iloc[:3].assign(rating=5.0, timestamp=1)])
    twice.to_csv(csv, index=False)
    merged = {p: benchmark_version(catalog, adhoc, dataset_options={"duplicates": p})
              for p in ("last", "first", "sum")}
    assert len(set(merged.values())) == 3
    # the repeats are older, so keeping the latest gives back the clean content: same version
    assert merged["last"] == clean["last"]


def test_benchmarks_listing_shows_cached_versions_and_loads_nothing(catalog, tmp_path):
    listing = CliRunner().invoke(main, ["benchmarks"])
    assert listing.exit_code == 0, listing.output
    assert "contract" in listing.output
    synthetic = next(line for line in listing.output.splitlines() if "| synthetic " in line)
    assert "| -" in synthetic and not (tmp_path / "cache" / "datasets").exists()
    version = benchmark_version(catalog, catalog.benchmarks.get("synthetic"))
    assert cached_benchmark_version(catalog, catalog.benchmarks.get("synthetic")) == version
    listing = CliRunner().invoke(main, ["benchmarks"])
    assert version in next(line for line in listing.output.splitlines()
                           if "| synthetic " in line)


def test_reproduce_checks_the_content_version(catalog, tmp_path):
    csv = tmp_path / "ratings.csv"
    ratings().to_csv(csv, index=False)
    record = m6bench.run("classic", model="pop", dataset=str(csv), device="cpu")
    assert benchmark_of(record, catalog).dataset == str(csv)
    changed = ratings()
    changed.loc[0, "rating"] = 1.0 if changed.loc[0, "rating"] != 1.0 else 2.0
    changed.to_csv(csv, index=False)
    with pytest.raises(m6bench.ConfigError, match=r"has version \w+ here, but the record was "
                                                  r"made on version"):
        benchmark_of(record, catalog)


# ============================================================================ bad data
@pytest.mark.parametrize("bad", ["inf", "-inf"])
def test_infinite_ratings_are_refused_before_training(catalog, context, tmp_path, bad):
    folder = tmp_path / "inf"
    frame = ratings().astype({"rating": object})
    frame.loc[[4, 9], "rating"] = bad
    write_recbole(folder, "inf", frame)
    with pytest.raises(DatasetError) as error:
        load_dataset(catalog, str(folder), context=context)
    message = str(error.value)
    assert "inf.inter" in message and "row 5" in message and "2 such rows" in message
    assert "finite" in message and "\n" not in message
    result = run_cli("--dataset", str(folder))
    assert result.exit_code == 2 and "inf.inter" in result.output
    assert records(tmp_path) == []


def test_non_finite_timestamps_are_refused(catalog, context, tmp_path):
    csv = tmp_path / "when.csv"
    ratings().astype({"timestamp": object}).assign(timestamp=lambda f: f["timestamp"].where(
        f.index != 3, "inf")).to_csv(csv, index=False)
    with pytest.raises(DatasetError, match=r"when\.csv: interaction row 4 has timestamp 'inf'"):
        load_dataset(catalog, str(csv), context=context)


def test_a_cut_with_an_empty_part_is_refused_before_anything_is_recorded(tmp_path):
    csv = tmp_path / "single.csv"
    ratings(per_user=1).to_csv(csv, index=False)  # every user has one interaction
    result = run_cli("--dataset", str(csv))
    assert result.exit_code == 2, result.output
    assert "single.csv" in result.output and "validation and the test part empty" in result.output
    assert "12 interactions" in result.output and "--protocol" in result.output
    assert records(tmp_path) == []
    with pytest.raises(ProtocolError, match="validation and the test part empty"):
        m6bench.run("classic", model="pop", dataset=str(csv), protocol="loo", device="cpu")
    assert records(tmp_path) == []


@pytest.mark.parametrize("protocol", ["loo", "temporal"])
def test_negative_timestamps_are_refused_by_time_based_protocols(tmp_path, protocol):
    csv = tmp_path / "old.csv"
    frame = ratings()
    frame.loc[[2, 7, 8], "timestamp"] = -5
    frame.to_csv(csv, index=False)
    result = run_cli("--dataset", str(csv), "--protocol", protocol)
    assert result.exit_code == 2, result.output
    message = result.output
    assert "old.csv" in message and "3 of 72 interactions" in message and "negative" in message
    name = {"loo": "leave-one-out"}.get(protocol, protocol)
    assert f"the {name} protocol orders interactions by time" in message
    assert records(tmp_path) == []
    # the random protocol does not read time: the same data runs
    assert run_cli("--dataset", str(csv)).exit_code == 0


# ============================================================================ duplicates
def _with_duplicates() -> pd.DataFrame:
    frame = pd.DataFrame({
        "user_id": ["a", "a", "b", "a", "b", "c"],
        "item_id": ["x", "y", "x", "x", "x", "z"],
        "rating": [1.0, 4.0, 2.0, 5.0, 3.0, 4.0],
        "timestamp": [30, 5, 10, 20, 40, 1],
    })
    return frame  # (a, x) at rows 1 and 4 (row 1 later), (b, x) at rows 3 and 5


def _pairs(dataset: Dataset) -> dict[tuple[str, str], tuple[float, int]]:
    return {(str(dataset.user_ids[u]), str(dataset.item_ids[i])): (float(r), int(t))
            for u, i, r, t in zip(dataset.users, dataset.items, dataset.ratings,
                                  dataset.timestamps, strict=True)}


def test_duplicates_policies_through_the_loader(catalog, context, tmp_path):
    csv = tmp_path / "dups.csv"
    _with_duplicates().to_csv(csv, index=False)
    policies = {}
    for policy in ("last", "first", "sum"):
        dataset = load_dataset(catalog, str(csv), {"duplicates": policy}, context=context)
        assert dataset.n_interactions == 4 and dataset.merged_duplicates == 2
        policies[policy] = _pairs(dataset)
    assert policies["last"][("a", "x")] == (1.0, 30) and policies["last"][("b", "x")] == (3.0, 40)
    assert policies["first"][("a", "x")] == (5.0, 20) and policies["first"][("b", "x")] == (2.0, 10)
    # sum: the ratings added up, with the later interaction's timestamp
    assert policies["sum"][("a", "x")] == (6.0, 30) and policies["sum"][("b", "x")] == (5.0, 40)
    assert policies["sum"][("a", "y")] == (4.0, 5)
    # the default is last, which is what benchmarks did before the option existed
    default = load_dataset(catalog, str(csv), context=context)
    assert _pairs(default) == policies["last"]
    legacy = deduplicate(Dataset.from_frames("dups", pd.read_csv(csv).rename(
        columns={"user_id": "user", "item_id": "item"}).astype({"user": str, "item": str})))
    assert default.fingerprint == legacy.fingerprint
    # the policy survives the cache
    again = load_dataset(catalog, str(csv), {"duplicates": "sum"}, context=context)
    assert _pairs(again) == policies["sum"] and again.merged_duplicates == 2
    for loader_dataset in (str(write_recbole(tmp_path / "r", "r", _with_duplicates())),):
        merged = load_dataset(catalog, loader_dataset, {"duplicates": "first"}, context=context)
        assert _pairs(merged) == policies["first"]

    with pytest.raises(DatasetError) as error:
        load_dataset(catalog, str(csv), {"duplicates": "error"}, context=context)
    message = str(error.value)
    assert "dups.csv" in message and "2 interaction rows" in message
    assert "(user 'a', item 'x') at rows 1, 4" in message and "duplicates=last" in message
    with pytest.raises(DatasetError, match=r"duplicates='keep'.*last, first, sum, error"):
        load_dataset(catalog, str(csv), {"duplicates": "keep"}, context=context)


def test_every_interaction_loader_takes_the_duplicates_option(catalog):
    readers = [entry.value for entry in catalog.datasets if entry.name != "synthetic"]
    assert {spec.name for spec in readers} >= {"recbole", "ml-100k", "ml-1m", "csv", "hf",
                                               "ml-xdomain", "movielens-genres"}
    for spec in readers:
        assert spec.defaults.get("duplicates") == "last", spec.name


def test_the_run_says_how_many_duplicates_it_merged(tmp_path):
    csv = tmp_path / "dups.csv"
    frame = pd.concat([ratings(), ratings().iloc[[0, 6, 12]].assign(timestamp=1)])
    frame.to_csv(csv, index=False)
    result = run_cli("--dataset", str(csv))
    assert result.exit_code == 0, result.output
    assert "merged 3 repeated (user, item) interaction rows" in result.stderr
    assert "duplicates=last" in result.stderr
    summed = run_cli("--dataset", str(csv), "--dataset-opt", "duplicates=sum")
    assert summed.exit_code == 0 and "duplicates=sum" in summed.stderr
    first, second = records(tmp_path)
    assert first["dataset"]["statistics"]["interactions"] == 72
    assert first["dataset"]["statistics"]["merged_duplicates"] == 3  # the record says it too
    assert first["benchmark"]["version"] != second["benchmark"]["version"]

    refused = run_cli("--dataset", str(csv), "--dataset-opt", "duplicates=error")
    assert refused.exit_code == 2
    assert "dups.csv: 3 interaction rows repeat" in refused.output
    assert len(records(tmp_path)) == 2

