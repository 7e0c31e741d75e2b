"""What ``run.sh`` runs, in one place: the data shapes, the board's models and budgets.

The device machine has no MovieLens files (``M6BENCH_DATA_DIR`` lies outside the working
tree, which is all that travels), so the board runs on the ``synthetic`` dataset cut to
MovieLens' shapes.  ``--tiny`` shrinks every shape and budget so that the whole script
passes on 2 CPU cores in a few minutes (``tests/test_gpu_script.py``).

Command line (read by ``run.sh``)::

    python benchmarks/gpu/shapes.py budget [--tiny]    # KEY=VALUE lines for the shell
    python benchmarks/gpu/shapes.py rows [--tiny]      # one board row a line
    python benchmarks/gpu/shapes.py throughput [--tiny]  # the row timed with 1 and N workers
    python benchmarks/gpu/shapes.py shim DIR           # a dist-info for the tree's m6bench
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import tomllib

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Shape:
    """A synthetic dataset with a MovieLens dataset's users, items and density."""

    label: str
    n_users: int
    n_items: int
    density: float

    def dataset_options(self) -> dict[str, object]:
        return {"n_users": self.n_users, "n_items": self.n_items, "density": self.density}

    def sweep_arguments(self) -> list[str]:
        arguments = ["--dataset", "synthetic"]
        for key, value in self.dataset_options().items():
            arguments += ["--dataset-opt", f"{key}={value}"]
        return arguments


# Densities are interactions / (users x items): 100,000 / (943 x 1,682) and
# 1,000,209 / (6,040 x 3,706).
SHAPES = (Shape("ml-100k-shaped", 943, 1682, 0.063), Shape("ml-1m-shaped", 6040, 3706, 0.0447))
TINY_SHAPES = (Shape("ml-100k-shaped", 120, 90, 0.08), Shape("ml-1m-shaped", 200, 120, 0.06))

# (plugin, model): the two graph/multimodal models of the project, one deep model and the
# classic baseline, every one with the same number of trials.
BOARD_MODELS = (("gnn-mf", "gnn-mf"), ("m6-fusion", "m6-fusion"), ("deep", "neumf"),
                ("classic", "bpr-mf"))
# The one row whose sweep is timed with 1 worker and with N (the same trials both times).
THROUGHPUT_ROW = ("classic", "bpr-mf")


@dataclass(frozen=True)
class Budget:
    trials: int  # finished trials of every board row
    seeds: int  # final test runs of the best config
    epochs: int  # an epoch cap for every model, so that rows cost alike
    workers: int  # parallel sweep workers sharing one GPU
    throughput_trials: int  # trials of each 1-worker / N-worker timing sweep
    sweep_timeout_s: int  # wall limit of one sweep command (run.sh's `timeout`)


# Sized for the 8 minutes of the device run (an estimate: no GPU has run it yet): one wave
# of trials per row with 4 workers, ML-1M-shaped m6-fusion the longest row.
BUDGET = Budget(trials=4, seeds=1, epochs=5, workers=4, throughput_trials=8,
                sweep_timeout_s=75)
TINY_BUDGET = Budget(trials=1, seeds=1, epochs=1, workers=2, throughput_trials=2,
                     sweep_timeout_s=240)


def shapes(tiny: bool) -> tuple[Shape, ...]:
    return TINY_SHAPES if tiny else SHAPES


def budget(tiny: bool) -> Budget:
    return TINY_BUDGET if tiny else BUDGET


def _row(shape: Shape, plugin: str, model: str) -> str:
    return " ".join([shape.label, plugin, model, *shape.sweep_arguments()])


def board_rows(tiny: bool) -> list[str]:
    """``label plugin model --dataset synthetic --dataset-opt ...`` per board row."""
    return [_row(shape, plugin, model) for shape in shapes(tiny) for plugin, model in BOARD_MODELS]


def throughput_row(tiny: bool) -> str:
    """The row timed with 1 and N workers, on the ML-100K shape: trials short enough that
    the workers' sharing of the GPU, not one trial's length, sets the rate."""
    return _row(shapes(tiny)[0], *THROUGHPUT_ROW)


def write_dist_info(target: Path) -> Path:
    """A ``m6bench`` dist-info built from pyproject.toml, so that the tree's code runs with
    its plugins' entry points where nothing is installed (the device machine has no build
    backend to install it with).  Put ``target`` first on PYTHONPATH, with harness/,
    plugins/ and leaderboard/ after it."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    info = target / f"m6bench-{project['version']}.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: m6bench\nVersion: {project['version']}\n")
    sections = {"console_scripts": project.get("scripts", {}),
                "m6bench": project.get("entry-points", {}).get("m6bench", {})}
    (info / "entry_points.txt").write_text("".join(
        f"[{group}]\n" + "".join(f"{name} = {value}\n" for name, value in entries.items())
        + "\n" for group, entries in sections.items()))
    return info


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("budget", "rows", "throughput", "shim"))
    parser.add_argument("target", nargs="?", help="shim: the folder to write into")
    parser.add_argument("--tiny", action="store_true")
    args = parser.parse_args(argv)
    if args.what == "budget":
        for key, value in vars(budget(args.tiny)).items():
            print(f"{key.upper()}={value}")
    elif args.what == "rows":
        print("\n".join(board_rows(args.tiny)))
    elif args.what == "throughput":
        print(throughput_row(args.tiny))
    else:
        if not args.target:
            parser.error("shim needs the target folder")
        print(write_dist_info(Path(args.target)))


if __name__ == "__main__":
    main()
