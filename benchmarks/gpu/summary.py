"""The Markdown summary of one ``run.sh`` run, from the files it left in its work folder.

Every section is always written; a step that did not run or failed says so in its section
(with its exit code from ``steps.tsv``), so a short or broken run still explains itself.

    python benchmarks/gpu/summary.py WORK_DIR SUMMARY_MD
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from pathlib import Path

SECTIONS = ("GPU and versions", "CUDA tests", "Full-ranking evaluation vs the matmul floor",
            "Training epochs", "Sweep throughput: 1 worker vs N", "Board", "Steps")
# (label, evaluation test, its bare-matmul floor) in benchmarks/test_bench_evaluate.py
EVALUATION_PAIRS = (
    ("ML-1M scale (6,040 x 3,706)", "test_full_ranking_evaluation_ml1m_scale",
     "test_bare_matmul_floor_ml1m_scale"),
    ("100,000 x 50,000", "test_full_ranking_evaluation_100k_x_50k",
     "test_bare_matmul_floor_100k_x_50k"),
)
SKIPPED = 125  # run.sh's exit code for a step it did not start (too little time left)
# epoch suites of benchmarks/test_bench_training.py (they run only with the real ML-1M)
REAL_DATA_EPOCHS = {"test_bpr_mf_epoch": "classic/bpr-mf", "test_gnn_mf_epoch": "gnn-mf/gnn-mf"}


def read_steps(work: Path) -> dict[str, tuple[int, float]]:
    """``steps.tsv``: step name -> (exit code, seconds); a later line wins."""
    steps: dict[str, tuple[int, float]] = {}
    path = work / "steps.tsv"
    if path.is_file():
        for line in path.read_text().splitlines():
            name, code, seconds = line.split("\t")
            steps[name] = (int(code), float(seconds))
    return steps


def _step_note(steps: dict[str, tuple[int, float]], name: str) -> str:
    if name not in steps:
        return f"_step `{name}` did not run._"
    code, seconds = steps[name]
    if code == SKIPPED:
        return f"_step `{name}` was skipped: the run's deadline was near._"
    outcome = "ok" if code == 0 else f"exit code {code}" + (" (timed out)" if code == 124 else "")
    return f"_step `{name}`: {outcome}, {seconds:.1f} s; log in logs.tar.gz._"


def _log_tail(work: Path, name: str, lines: int) -> str:
    path = work / "logs" / f"{name}.log"
    if not path.is_file():
        return ""
    tail = path.read_text(errors="replace").strip().splitlines()[-lines:]
    return "```\n" + "\n".join(tail) + "\n```"


def _medians(work: Path) -> dict[str, float]:
    path = work / "bench.json"
    if not path.is_file():
        return {}
    return {b["name"]: b["stats"]["median"] for b in json.loads(path.read_text())["benchmarks"]}


def evaluation_section(work: Path, steps: dict[str, tuple[int, float]]) -> list[str]:
    medians = _medians(work)
    lines = ["| scale | evaluation s | bare matmul s | ratio |", "|---|---|---|---|"]
    for label, evaluation, floor in EVALUATION_PAIRS:
        if evaluation in medians and floor in medians:
            ratio = medians[evaluation] / medians[floor]
            lines.append(f"| {label} | {medians[evaluation]:.4f} | {medians[floor]:.4f} "
                         f"| {ratio:.2f}x |")
        else:
            lines.append(f"| {label} | not run | not run | - |")
    return [*lines, "", _step_note(steps, "bench")]


def epochs_section(work: Path, steps: dict[str, tuple[int, float]]) -> list[str]:
    lines = ["| model | data | seconds per epoch | interactions | device |",
             "|---|---|---|---|---|"]
    path = work / "epochs.json"
    for row in json.loads(path.read_text()) if path.is_file() else []:
        seconds = f"{row['seconds']:.3f}" if "seconds" in row else f"failed: {row['error']}"
        lines.append(f"| {row['model']} | {row['shape']} (synthetic) | {seconds} "
                     f"| {row['interactions']:,} | {row['device']} |")
    medians = _medians(work)
    for test, model in REAL_DATA_EPOCHS.items():
        if test in medians:
            lines.append(f"| {model} | ml-1m (real) | {medians[test]:.3f} | - | - |")
    return [*lines, "", _step_note(steps, "epochs")]


def trial_rate(ledger: Path) -> tuple[int, float | None]:
    """Finished trials in ``ledger`` and trials per minute between the first trial's start
    and the last one's end (start-up and the final runs left out)."""
    trials = [json.loads(line) for line in ledger.read_text().splitlines() if line.strip()]
    trials = [t for t in trials if t.get("kind") == "trial" and t.get("status") != "failed"]
    if not trials:
        return 0, None
    first = min(datetime.fromisoformat(t["started_at"]) for t in trials)
    last = max(datetime.fromisoformat(t["ended_at"]) for t in trials)
    seconds = (last - first).total_seconds()
    return len(trials), (len(trials) * 60 / seconds if seconds > 0 else None)


def throughput_section(work: Path, steps: dict[str, tuple[int, float]]) -> list[str]:
    note = work / "throughput" / "skipped.txt"
    if note.is_file():
        return [f"Not measured: {note.read_text().strip()}"]
    lines = ["| workers | finished trials | trials/min (trials only) | wall s (with start-up) |",
             "|---|---|---|---|"]
    rates: dict[str, float] = {}
    for folder in sorted((work / "throughput").glob("workers-*")):
        workers = folder.name.removeprefix("workers-")
        ledger = folder / "ledger.jsonl"
        count, rate = trial_rate(ledger) if ledger.is_file() else (0, None)
        wall = steps.get(f"throughput-{workers}", (0, float("nan")))[1]
        lines.append(f"| {workers} | {count} | {'-' if rate is None else f'{rate:.1f}'} "
                     f"| {wall:.1f} |")
        if rate is not None:
            rates[workers] = rate
    if "1" in rates and len(rates) > 1:
        best = max((w for w in rates if w != "1"), key=int)
        lines += ["", f"Speed-up with {best} workers: {rates[best] / rates['1']:.2f}x."]
    return lines


def board_section(work: Path, steps: dict[str, tuple[int, float]]) -> list[str]:
    lines = ["| data | model | sweep step | seconds |", "|---|---|---|---|"]
    for name, (code, seconds) in steps.items():
        if name.startswith("board:"):
            _, shape, model = name.split(":", 2)
            outcome = "ok" if code == 0 else f"exit {code}"
            lines.append(f"| {shape} | {model.replace('.', '/', 1)} | {outcome} "
                         f"| {seconds:.1f} |")
    for table in sorted((work / "board").glob("*.md")):
        # the leaderboard's own headings go two levels down, under this section's
        shown = [f"##{line}" if line.startswith("#") else line
                 for line in table.read_text().strip().splitlines()]
        lines += ["", f"### {table.stem}", "", *(shown or ["_empty_"])]
    return lines


def build_summary(work: Path) -> str:
    steps = read_steps(work)
    environment = work / "logs" / "environment.log"
    bodies = {
        "GPU and versions": ["```", environment.read_text().strip() if environment.is_file()
                             else "not recorded", "```"],
        "CUDA tests": [_step_note(steps, "cuda-tests"), "", _log_tail(work, "cuda-tests", 3)],
        "Full-ranking evaluation vs the matmul floor": evaluation_section(work, steps),
        "Training epochs": epochs_section(work, steps),
        "Sweep throughput: 1 worker vs N": throughput_section(work, steps),
        "Board": board_section(work, steps),
        "Steps": ["| step | exit code | seconds |", "|---|---|---|",
                  *(f"| {n} | {c} | {s:.1f} |" for n, (c, s) in steps.items())],
    }
    out = ["# m6bench on a GPU: summary", ""]
    for title in SECTIONS:
        out += [f"## {title}", "", *bodies[title], ""]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("work", type=Path)
    parser.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    args.out.write_text(build_summary(args.work))


if __name__ == "__main__":
    main()
