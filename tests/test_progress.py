"""Progress when stderr is not a terminal: one plain line per epoch (epoch, losses,
validation metric, seconds), so CI logs show a run moving."""

from __future__ import annotations

import json
import re

import click
import pytest
from click.testing import CliRunner

from m6bench.cli import common, main
from m6bench.runs.run import RunRequest, execute, plan_run

pytestmark = pytest.mark.usefixtures("isolated")

EPOCH_LINE = re.compile(r"^epoch (\d+)( \| [^|]+)* \| (\d+\.\d\d)s$")


def test_each_training_epoch_is_one_line_with_its_seconds(monkeypatch):
    lines: list[str] = []
    clock = iter([0.0, 10.0, 11.5, 11.75, 12.0])
    monkeypatch.setattr(common.time, "perf_counter", lambda: next(clock))
    display = common.EpochLines(lines.append)
    with display:
        train = display.add_task("train", total=3)  # t = 10.0
        display.update(train, advance=1, description="epoch 1 | bpr 0.6931")  # 11.5
        display.update(train, advance=1,
                       description="epoch 2 | bpr 0.5000 | valid/ndcg@10 0.1250")  # 11.75
        display.update(train, total=2, completed=2)  # the loop's last word: no line
        evaluate = display.add_task("evaluate", total=2)  # 12.0
        display.update(evaluate, advance=1, description="evaluate test")  # not an epoch
    assert lines == ["epoch 1 | bpr 0.6931 | 1.50s",
                     "epoch 2 | bpr 0.5000 | valid/ndcg@10 0.1250 | 0.25s"]


def test_the_display_is_lines_when_piped_and_nothing_when_quiet():
    assert common.progress_display(quiet=True) is None
    assert isinstance(common.progress_display(quiet=False), common.EpochLines)  # pytest pipes


@click.command()
@click.option("--quiet", is_flag=True)
def _train(quiet: bool) -> None:
    """A command that runs bpr-mf with the command line's progress display."""
    plan = plan_run(RunRequest(plugin="classic", model="bpr-mf", seed=0, device="cpu",
                               overrides={"epochs": 3, "eval_every": 2, "patience": 5}))
    record = execute(plan, progress=common.progress_display(quiet))
    click.echo("curve " + json.dumps(record["curve"]))


def test_a_piped_run_prints_its_epochs_as_the_record_has_them():
    result = CliRunner().invoke(_train, [])  # CliRunner's streams are no terminal
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("epoch ")]
    curve = json.loads(result.output.split("curve ", 1)[1])  # the record's per-epoch rows
    assert len(lines) == len(curve) == 3
    for line, row in zip(lines, curve, strict=True):
        match = EPOCH_LINE.match(line)
        assert match and int(match.group(1)) == row["epoch"], line
        for key, value in row.items():
            if key != "epoch":  # each loss, and the validation metric when it was measured
                assert f"{key} {value:.4f}" in line, (key, line)
    assert "valid/" not in lines[0] and "valid/" in lines[1] and "valid/" in lines[2]


def test_a_quiet_run_prints_no_epoch_line():
    result = CliRunner().invoke(_train, ["--quiet"])
    assert result.exit_code == 0, result.output
    assert not any(line.startswith("epoch ") for line in result.output.splitlines())


def test_m6bench_run_piped_prints_one_line_per_epoch():
    result = CliRunner().invoke(main, ["run", "--plugin", "classic", "--model", "bpr-mf",
                                       "--set", "epochs=2", "--set", "eval_every=1"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if EPOCH_LINE.match(line)]
    assert [line.split(" |")[0] for line in lines] == ["epoch 1", "epoch 2"]

