"""How every stage of a run grows with the data: seconds and peak memory from 0.1 M to 20 M
interactions of the synthetic dataset, the slope of each on a log-log scale, and the
acceptance run of issue #22 at ML-20M's shape.

Sizes keep ML-20M's shape (138,000 users x 27,000 items, density 0.0054): a smaller size
of ``N`` interactions scales users and items by the same factor, so the density and the
users : items ratio stay those of ML-20M and ``users x items`` grows like ``N``.

Each (size, stage) runs in a fresh child process, so that a stage's peak memory is its own:
the child imports, loads through the Arrow cache and prepares what the stage needs (its
*baseline*), then resets the kernel's peak-RSS mark (``/proc/self/clear_refs``) and runs the
stage alone.  ``peak`` is the process's peak RSS during the stage and ``delta`` is that peak
less the RSS before it: the memory the stage itself needed.  Threads are pinned
(``--threads``, default 2) and ``OMP_WAIT_POLICY=PASSIVE``, so spinning workers of one
stage do not slow the next.

    python benchmarks/scale.py --sizes 0.1M,0.3M             # quick look
    python benchmarks/scale.py                                # 0.1M, 1M, 5M, 20M
    python benchmarks/scale.py --redraw                       # table, SVG, README from JSON
    python benchmarks/scale.py --ml20m-run                    # the acceptance run

The child's side is ``scale_child.py``; the SVG writer is ``scale_svg.py``.
Results accumulate in ``--json`` (default ``benchmarks/scale.json``; a rerun replaces the
(size, stage) entries it measures), the curves go to ``benchmarks/scale.svg`` and the
table to ``benchmarks/README.md`` between ``<!-- scale:begin -->`` and
``<!-- scale:end -->``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

# the sibling modules, also when this file is imported by path (the tests)
sys.path.insert(0, str(Path(__file__).resolve().parent))
from scale_child import RESULT_PREFIX, STAGES, run_child
from scale_svg import loglog_svg

HERE = Path(__file__).resolve().parent
ML20M_SHAPE = {"n_users": 138_000, "n_items": 27_000, "density": 0.0054}
DEFAULT_SIZES = ("0.1M", "1M", "5M", "20M")
# The stages whose growth is judged against users x items rather than interactions.
GRID_STAGES = ("evaluate",)
README_BEGIN, README_END = "<!-- scale:begin -->", "<!-- scale:end -->"
TARGET_RSS_GB, TARGET_MINUTES = 12.0, 15.0


# ----------------------------------------------------------------------------- sizes
def parse_size(text: str) -> int:
    """``"0.1M"`` -> 100000, ``"300k"`` -> 300000, ``"5000"`` -> 5000."""
    scale = {"k": 1e3, "m": 1e6}.get(text[-1:].lower(), 1.0)
    number = text[:-1] if scale != 1.0 else text
    try:
        value = float(number) * scale
    except ValueError:
        raise SystemExit(f"--sizes: {text!r} is not a size; write e.g. 0.1M, 300k or 5000."
                         ) from None
    if value < 1000:
        raise SystemExit(f"--sizes: {text!r} is below 1000 interactions; the synthetic "
                         "generator needs at least ~10 users and 12 items.")
    return int(value)


def shape_for(interactions: int) -> dict[str, Any]:
    """Generator options for about ``interactions`` rows at ML-20M's density and ratio
    (within 1% of ML-20M's 20.1 M, e.g. "20M": ML-20M's own shape)."""
    full = ML20M_SHAPE["n_users"] * ML20M_SHAPE["n_items"] * ML20M_SHAPE["density"]
    factor = math.sqrt(interactions / full)
    if abs(factor - 1) < 0.01:
        return dict(ML20M_SHAPE)
    return {"n_users": max(10, round(ML20M_SHAPE["n_users"] * factor)),
            "n_items": max(12, round(ML20M_SHAPE["n_items"] * factor)),
            "density": ML20M_SHAPE["density"]}


# ----------------------------------------------------------------------------- parent side
def pinned_env(threads: int, cache_dir: str | None = None) -> dict[str, str]:
    """The environment of a measured child: thread counts pinned, passive OpenMP waits."""
    env = dict(os.environ)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[name] = str(threads)
    env["OMP_WAIT_POLICY"] = "PASSIVE"
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    if cache_dir:
        env["M6BENCH_CACHE_DIR"] = cache_dir  # the text-vector cache of m6-fusion too
    return env


def run_measured(command: Sequence[str], env: Mapping[str, str], timeout: float
                 ) -> tuple[int, str, float, float]:
    """Run ``command``; (exit status, output, wall seconds, the child's peak RSS in MB)."""
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as output:
        process = subprocess.Popen(list(command), stdout=output, stderr=subprocess.STDOUT,
                                   env=dict(env))
        deadline = started + timeout
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                process.kill()
                pid, status, usage = os.wait4(process.pid, 0)
                status = 124 << 8
                break
            time.sleep(0.05)
        process.returncode = 0  # reaped by wait4 above; keep Popen from waiting again
        wall = time.perf_counter() - started
        output.seek(0)
        return os.waitstatus_to_exitcode(status), output.read(), wall, usage.ru_maxrss / 1024


def measure_stage(label: str, stage: str, options: Mapping[str, Any], args: Any
                  ) -> dict[str, Any]:
    """One (size, stage) in a fresh child; its result, or its failure."""
    command = [sys.executable, str(Path(__file__).resolve()), "--child", stage,
               "--options", json.dumps(dict(options)), "--cache-dir", str(args.cache_dir),
               "--threads", str(args.threads)]
    status, output, wall, child_peak = run_measured(
        command, pinned_env(args.threads, str(args.cache_dir)), args.timeout)
    entry: dict[str, Any] = {"size": label, "stage": stage, "options": dict(options),
                             "process_peak_mb": child_peak, "process_seconds": wall}
    lines = [line for line in output.splitlines() if line.startswith(RESULT_PREFIX)]
    if status == 0 and lines:
        entry.update(json.loads(lines[-1][len(RESULT_PREFIX):]), status="ok")
    else:
        why = "timed out" if status == 124 else f"exit status {status}"
        entry.update(status="failed", error=f"{why}: {output[-1500:]}")
    return entry


def load_results(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return json.loads(path.read_text())["results"]


def save_results(path: Path, results: list[dict[str, Any]]) -> None:
    payload = {"threads": None, "results": results, "slopes": slopes(results)}
    payload["threads"] = sorted({r.get("threads") for r in results if r.get("threads")})
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(payload, indent=1, sort_keys=True) + "\n")
    os.replace(temporary, path)


def merge(results: list[dict[str, Any]], entry: dict[str, Any]) -> list[dict[str, Any]]:
    """``results`` with ``entry`` replacing the one of the same (size, stage)."""
    kept = [r for r in results if (r["size"], r["stage"]) != (entry["size"], entry["stage"])]
    return [*kept, entry]


# ----------------------------------------------------------------------------- analysis
def fit_slope(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Least-squares slope of ``log y`` on ``log x`` (None with fewer than two usable points)."""
    points = [(math.log(x), math.log(y)) for x, y in zip(xs, ys) if x > 0 and y > 0]
    if len(points) < 2:
        return None
    mean_x = sum(p[0] for p in points) / len(points)
    mean_y = sum(p[1] for p in points) / len(points)
    spread = sum((p[0] - mean_x) ** 2 for p in points)
    if spread == 0:
        return None
    return sum((p[0] - mean_x) * (p[1] - mean_y) for p in points) / spread


def _ok(results: Sequence[Mapping[str, Any]], stage: str) -> list[Mapping[str, Any]]:
    rows = [r for r in results if r["stage"] == stage and r.get("status") == "ok"]
    return sorted(rows, key=lambda r: r["n_interactions"])


def slopes(results: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per stage: the log-log slopes of seconds and of the stage's memory (``delta_mb``) in
    interactions, and in users x items for the full-ranking stages."""
    out: dict[str, dict[str, Any]] = {}
    for stage in STAGES:
        rows = _ok(results, stage)
        if len(rows) < 2:
            continue
        interactions = [r["n_interactions"] for r in rows]
        grid = [r["n_users"] * r["n_items"] for r in rows]
        fit = {"points": len(rows), "against": "users x items" if stage in GRID_STAGES
               else "interactions",
               "seconds_vs_interactions": fit_slope(interactions, [r["seconds"] for r in rows]),
               "cpu_vs_interactions": fit_slope(interactions, _values(rows, "cpu_seconds")),
               "memory_vs_interactions": fit_slope(interactions, [r["delta_mb"] for r in rows]),
               "seconds_vs_grid": fit_slope(grid, [r["seconds"] for r in rows]),
               "cpu_vs_grid": fit_slope(grid, _values(rows, "cpu_seconds")),
               "memory_vs_grid": fit_slope(grid, [r["delta_mb"] for r in rows])}
        out[stage] = fit
    return out


def _values(rows: Sequence[Mapping[str, Any]], key: str) -> list[float]:
    """``key`` of each row, 0 (left out of a fit) where an older result lacks it."""
    return [float(r.get(key) or 0.0) for r in rows]


def growth_name(slope: float | None) -> str:
    """A slope in words: sub-linear, linear (0.85..1.15), or above linear."""
    if slope is None:
        return "-"
    if slope < 0.85:
        return "sub-linear"
    return "linear" if slope <= 1.15 else "ABOVE LINEAR"


def table(results: Sequence[Mapping[str, Any]]) -> str:
    """Markdown: one row per stage, seconds and stage MB per size, then the slopes."""
    sizes = sorted({r["size"] for r in results}, key=parse_size)
    fits = slopes(results)
    head = ["stage", *(f"{s}: s / CPU s / MB" for s in sizes), "slope s", "slope CPU s",
            "slope MB",
            "growth (CPU s, else s)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for stage in STAGES:
        row = {r["size"]: r for r in results if r["stage"] == stage}
        if not row:
            continue
        cells = [f"`{stage}`"]
        for size in sizes:
            entry = row.get(size)
            if entry is None:
                cells.append("")
            elif entry.get("status") != "ok":
                timed_out = str(entry.get("error", "")).startswith("timed out")
                cells.append(f"timed out (> {entry['process_seconds']:.0f} s)" if timed_out
                             else "failed")
            else:
                cpu = entry.get("cpu_seconds")
                cells.append(f"{entry['seconds']:.3g} / {'-' if cpu is None else f'{cpu:.3g}'}"
                             f" / {entry['delta_mb']:,.0f}")
        fit = fits.get(stage, {})
        key = "grid" if stage in GRID_STAGES else "interactions"
        time_slope, cpu_slope = fit.get(f"seconds_vs_{key}"), fit.get(f"cpu_vs_{key}")
        judged = cpu_slope if cpu_slope is not None else time_slope
        cells += [_fmt(time_slope), _fmt(cpu_slope), _fmt(fit.get(f"memory_vs_{key}")),
                  f"{growth_name(judged)} in {fit.get('against', key)}"]
        lines.append("| " + " | ".join(cells) + " |")
    shapes = []
    for size in sizes:
        entry = next((r for r in results if r["size"] == size and "n_users" in r), None)
        if entry:
            shapes.append(f"{size} = {entry['n_users']:,} users x {entry['n_items']:,} items, "
                          f"{entry['n_interactions']:,} interactions")
    return "\n".join(lines) + "\n\n" + "; ".join(shapes) + ".\n"


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


# Why a stage grows faster than linearly, where that is known (shown under the table for a
# stage whose slope is above linear); the fix belongs to the file named.
GROWTH_NOTES = {
    "cut": "the per-user shuffle and the validation sort the interactions (`n log n`) and "
           "gather through arrays larger than the caches; no step grows with users x items "
           "(`np.unique` / `np.isin`, which NumPy 2 hashes, were replaced by sorts: 9.9 -> "
           "1.3 s at 1 M).",
    "tensors": "the CSR build sorts the pair keys (`n log n`); it deduplicated them with "
               "`np.unique`, which NumPy 2 does by hashing (~90x slower than a sort for a "
               "million int64 keys), until `data.trainset.sorted_distinct` replaced it.",
    "bpr-mf-epoch": "every mini-batch builds dense `(n_users + n_items, dim)` gradient tables "
                    "and fused Adam updates every row (`m6bench_classic/factorisation.py`): "
                    "an epoch costs `interactions / batch x (users + items) x dim`, which "
                    "grows like interactions^1.5 at a fixed density.",
    "m6-fusion-epoch": "the default softmax ranking loss (`negatives = 0`) scores every item "
                       "through the item tower at every mini-batch "
                       "(`m6bench_m6_fusion/model.py`): an epoch costs `interactions / batch "
                       "x items`; `negatives > 0` (sampled softmax) makes it linear.",
    "gnn-mf-propagation": "sparse-dense products over the training edges, `O(edges x dim x "
                          "layers)`: linear; small sizes are dominated by fixed overhead.",
}


def growth_notes(results: Sequence[Mapping[str, Any]]) -> str:
    """The known reasons of the stages whose growth is above linear, as a list."""
    lines = []
    for stage, fit in slopes(results).items():
        key = "grid" if stage in GRID_STAGES else "interactions"
        judged = fit.get(f"cpu_vs_{key}")
        judged = fit.get(f"seconds_vs_{key}") if judged is None else judged
        if growth_name(judged) == "ABOVE LINEAR":
            why = GROWTH_NOTES.get(stage, "not explained yet.")
            lines.append(f"* `{stage}` ({_fmt(judged)}): {why}")
    return "\n".join(lines) + ("\n" if lines else "")


# ----------------------------------------------------------------------------- drawing
def svg_plot(results: Sequence[Mapping[str, Any]]) -> str:
    """CPU seconds of every measured stage against interactions, log-log (CPU time: on a
    shared machine wall time stretches with the load)."""
    series = {stage: [(r["n_interactions"], r["cpu_seconds"]) for r in _ok(results, stage)
                      if (r.get("cpu_seconds") or 0) > 0] for stage in STAGES}
    return loglog_svg(series, x_label="interactions (log)", y_unit="CPU s")


def readme_section(results: Sequence[Mapping[str, Any]]) -> str:
    """The README's text between the scale markers: how to run, the table, the curves."""
    return (
        "## Growth with the data: `scale.py`\n\n"
        "Seconds and memory of every stage of a run on the synthetic dataset from 0.1 M to "
        "20 M interactions (ML-20M's shape: 138,000 users x 27,000 items, density 0.0054; "
        "smaller sizes scale users and items alike), each (size, stage) in a fresh process "
        "with 2 threads.  A cell is `wall seconds / CPU seconds / MB`, MB being the stage's "
        "own peak above the "
        "RSS before it; the slopes are least-squares fits on log-log scales, against "
        "interactions (against users x items for the full-ranking evaluation).  "
        "`python benchmarks/scale.py --sizes 0.1M,1M` measures, `--redraw` rewrites this "
        "table and `scale.svg` from `scale.json`, `--ml20m-run` is issue #22's acceptance "
        "run (2 bpr-mf epochs at ML-20M's shape through `m6bench run`).\n\n"
        + table(results) + "\n" + growth_notes(results)
        + "\n![CPU seconds per stage against interactions](scale.svg)\n")


def update_readme(path: Path, text: str) -> bool:
    """Replace what is between the scale markers of ``path`` (False when they are absent)."""
    if not path.exists():
        return False
    content = path.read_text()
    begin, end = content.find(README_BEGIN), content.find(README_END)
    if begin < 0 or end < begin:
        return False
    updated = content[: begin + len(README_BEGIN)] + "\n" + text + content[end:]
    path.write_text(updated)
    return True


# ----------------------------------------------------------------------------- the acceptance run
def ml20m_command(ledger: Path, epochs: int = 2) -> list[str]:
    """``m6bench run`` of bpr-mf at ML-20M's shape, as a user would type it."""
    options = [arg for key, value in ML20M_SHAPE.items()
               for arg in ("--dataset-opt", f"{key}={value}")]
    return [sys.executable, "-m", "m6bench", "run", "--plugin", "classic", "--model", "bpr-mf",
            "--set", f"epochs={epochs}", "--dataset", "synthetic", *options,
            "--device", "cpu", "--ledger", str(ledger), "--quiet"]


def ml20m_run(args: Any) -> int:
    """The acceptance run of issue #22: wall time, peak RSS, the record's phase timings."""
    ledger = Path(tempfile.mkdtemp(prefix="scale-ml20m-")) / "ledger.jsonl"
    command = ml20m_command(ledger)
    print("running:", " ".join(command), flush=True)
    status, output, wall, peak_mb = run_measured(
        command, pinned_env(args.threads, str(args.cache_dir)), args.timeout)
    record = json.loads(ledger.read_text().splitlines()[-1]) if ledger.exists() else {}
    print(output[-3000:])
    print(f"exit status {status}; wall {wall / 60:.1f} min (target < {TARGET_MINUTES:g}); "
          f"peak RSS {peak_mb / 1024:.2f} GB (target < {TARGET_RSS_GB:g})")
    for phase, seconds in record.get("timings", {}).items():
        print(f"  {phase:<10} {seconds:10.1f} s")
    if record:
        print(f"record: status {record.get('status')}, epochs {record.get('epochs')}, "
              f"peak_rss_mb {record.get('peak_rss_mb')}, test ndcg@10 "
              f"{record.get('metrics', {}).get('test', {}).get('ndcg@10')}")
    met = status == 0 and wall < TARGET_MINUTES * 60 and peak_mb < TARGET_RSS_GB * 1024
    print("targets met" if met else "TARGETS NOT MET")
    return 0 if met else 1


# ----------------------------------------------------------------------------- main
def report(results: list[dict[str, Any]], args: Any) -> None:
    text = table(results)
    print(text + "\n" + growth_notes(results))
    for entry in results:
        if entry.get("status") != "ok":
            print(f"{entry['size']} {entry['stage']} FAILED: {entry.get('error', '')[-400:]}")
    args.svg.write_text(svg_plot(results))
    if update_readme(args.readme, readme_section(results)):
        print(f"table written to {args.readme}")
    print(f"results in {args.json}, curves in {args.svg}")


def parse_args(argv: Sequence[str] | None) -> Any:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default=",".join(DEFAULT_SIZES),
                        help="comma-separated interaction counts, e.g. 0.1M,0.3M,1M")
    parser.add_argument("--stages", default=",".join(STAGES),
                        help=f"comma-separated, of: {', '.join(STAGES)}")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per child")
    parser.add_argument("--cache-dir", type=Path,
                        default=Path(tempfile.gettempdir()) / "m6bench-scale-cache")
    parser.add_argument("--json", type=Path, default=HERE / "scale.json")
    parser.add_argument("--svg", type=Path, default=HERE / "scale.svg")
    parser.add_argument("--readme", type=Path, default=HERE / "README.md")
    parser.add_argument("--redraw", action="store_true",
                        help="only redraw the table, SVG and README from --json")
    parser.add_argument("--ml20m-run", action="store_true",
                        help="the acceptance run: 2 bpr-mf epochs at ML-20M's shape")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--options", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        run_child(args.child, json.loads(args.options), str(args.cache_dir), args.threads)
        return 0
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    if args.ml20m_run:
        return ml20m_run(args)
    results = load_results(args.json)
    if not args.redraw:
        stages = [s.strip() for s in args.stages.split(",") if s.strip()]
        unknown = sorted(set(stages) - set(STAGES))
        if unknown:
            raise SystemExit(f"--stages: unknown {unknown}; choose from {', '.join(STAGES)}.")
        for label in [s.strip() for s in args.sizes.split(",") if s.strip()]:
            options = shape_for(parse_size(label))
            for stage in stages:
                entry = measure_stage(label, stage, options, args)
                entry["threads"] = args.threads
                shown = (f"{entry['seconds']:.2f} s, stage {entry['delta_mb']:.0f} MB, "
                         f"peak {entry['peak_mb']:.0f} MB" if entry["status"] == "ok"
                         else "FAILED")
                print(f"{label:>6} {stage:<20} {shown}", flush=True)
                results = merge(results, entry)
                save_results(args.json, results)  # after every child: a kill loses nothing
    report(results, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
