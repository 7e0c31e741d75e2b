"""The plugin guide's walkthrough, run as written: docs/writing-a-plugin.md's commands.

Every ```bash block of the guide's numbered sections is what a reader types: each line is
run as it stands (by bash, in a fresh folder, each under a timeout), a ```toml block the
guide says to "Save this as `FILE`" is saved as FILE, and section 6's ```python block is
run too (the other Python blocks show files the scaffold wrote).  The reader has m6bench
installed, so the folder gets a virtual environment that sees this one's packages, where
the guide's `pip install -e` installs the scaffolded plugin; the ledger, caches and pip's
cache are inside the folder.  pip builds the plugin without the network where pip's
configuration names local (file://) indexes, as on the development machine.  When a
command fails or is too slow here, fix the guide, not this test.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from m6bench.testing import real_data_folder

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "writing-a-plugin.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.DOTALL | re.MULTILINE)
SECTION = re.compile(r"^## (\d+)\. ", re.MULTILINE)
# seconds: installing builds a wheel; a board tunes and finalises every row
TIMEOUTS = {"pip install": 300, "m6bench board run": 300}
DEFAULT_TIMEOUT = 180


@dataclass(frozen=True)
class Block:
    section: int
    lang: str
    code: str
    before: str  # the guide's text between the previous block and this one


def walkthrough(text: str) -> list[Block]:
    """The code blocks of the numbered sections, in order (the reference is not one)."""
    blocks, previous_end = [], 0
    for match in FENCE.finditer(text):
        headings = SECTION.findall(text, 0, match.start())
        if headings and "\n## Reference" not in text[:match.start()]:
            blocks.append(Block(int(headings[-1]), match[1], match[2],
                                text[previous_end:match.start()]))
        previous_end = match.end()
    return blocks


def commands(code: str) -> list[str]:
    """The command lines of a shell block: comments and blank lines dropped, lines that
    end in a backslash joined to the next."""
    joined = re.sub(r"\s*\\\n\s*", " ", code)
    return [line.strip() for line in joined.splitlines()
            if line.strip() and not line.strip().startswith("#")]


def _timeout(command: str) -> int:
    return next((s for prefix, s in TIMEOUTS.items() if command.startswith(prefix)),
                DEFAULT_TIMEOUT)


def _local_indexes() -> dict[str, str]:
    """pip settings that use only the file:// indexes pip's configuration names, if any."""
    listed = subprocess.run([sys.executable, "-m", "pip", "config", "list"], text=True,
                            capture_output=True, timeout=60, check=False).stdout
    urls = [url for key, value in re.findall(r"^\S+\.((?:extra-)?index-url)='([^']*)'",
                                             listed, re.MULTILINE)
            for url in value.split() if url.startswith("file://")]
    if not urls:
        return {}
    return {"PIP_INDEX_URL": urls[0], "PIP_EXTRA_INDEX_URL": " ".join(urls[1:])}


@dataclass
class Reader:
    """A reader of the guide in ``root``, with m6bench installed in ``env``'s environment."""

    root: Path
    env: dict[str, str]
    ran: dict[str, str] = field(default_factory=dict)  # output by command

    def type(self, command: str) -> str:
        try:
            done = subprocess.run(["bash", "-c", command], cwd=self.root, env=self.env,
                                  text=True, capture_output=True, timeout=_timeout(command))
        except subprocess.TimeoutExpired as exc:
            raise AssertionError(f"the guide's `{command}` took over {exc.timeout} s here: "
                                 "make the guide's step quicker") from exc
        output = done.stdout + done.stderr
        assert done.returncode == 0, (f"the guide's `{command}` exited {done.returncode}; "
                                      f"fix the guide or the code:\n{output[-3000:]}")
        self.ran[command] = output
        return output

    def follow(self, *sections: int) -> None:
        """Do what ``sections`` of the guide say, block by block."""
        for block in walkthrough(GUIDE.read_text(encoding="utf-8")):
            if block.section not in sections:
                continue
            if block.lang == "bash":
                for command in commands(block.code):
                    self.type(command)
            elif block.lang == "toml":
                name = re.search(r"Save this as\s+`([^`]+)`", block.before)
                assert name, f"section {block.section}: a TOML block without a file name"
                (self.root / name[1]).write_text(block.code, encoding="utf-8")
            elif block.lang == "python" and block.section == 6:
                self.type(f"python -c {shlex.quote(block.code)}")

    def output(self, prefix: str) -> str:
        """The output of the one command run that starts with ``prefix``."""
        found = [out for command, out in self.ran.items() if command.startswith(prefix)]
        assert len(found) == 1, (prefix, list(self.ran))
        return found[0]


@pytest.fixture(scope="module")
def reader(tmp_path_factory) -> Reader:
    root = tmp_path_factory.mktemp("guide-reader")
    venv = root / ".venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)],
                   check=True, timeout=180)
    # the reader's `m6bench` runs in the environment the guide's `pip install` fills
    script = entry_points(group="console_scripts", name="m6bench")
    module, _, function = next(iter(script)).value.partition(":")
    launcher = venv / "bin" / "m6bench"
    launcher.write_text(f"#!{venv / 'bin' / 'python'}\nimport sys\nfrom {module} import "
                        f"{function}\nsys.exit({function}())\n")
    launcher.chmod(0o755)
    env = {key: value for key, value in os.environ.items()
           if key not in ("M6BENCH_DISABLE_PLUGINS", "M6BENCH_TRACE_HOOKS", "PYTHONHOME")}
    env.update({
        "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}", "VIRTUAL_ENV": str(venv),
        "M6BENCH_LEDGER": str(root / "m6bench-runs" / "ledger.jsonl"),  # the default's place
        "M6BENCH_CACHE_DIR": str(root / "cache"), "XDG_CACHE_HOME": str(root / "xdg-cache"),
        "PIP_CACHE_DIR": str(root / "pip-cache"), "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1", **_local_indexes()})
    return Reader(root, env)


def _ledger(reader: Reader) -> list[dict]:
    path = reader.root / "m6bench-runs" / "ledger.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _squeezed(text: str) -> str:
    return " ".join(text.replace("|", " | ").split())


def test_scaffold_install_list_run_and_test_as_the_guide_says(reader):
    reader.follow(1, 2, 3)
    guide = GUIDE.read_text(encoding="utf-8")
    shown = next(b.code for b in walkthrough(guide) if b.code.startswith("Created plugin"))
    printed = reader.output("m6bench new-plugin").replace(str(reader.root), "/home/you")
    assert printed.strip() == shown.strip(), "the guide shows what new-plugin prints"
    promised = re.search(r"yours appears as\s+`([^`]+)`", guide)
    assert promised and _squeezed(promised[1]) in _squeezed(reader.output("m6bench plugins"))
    assert re.search(r"\b[1-9]\d* passed\b", reader.output("python -m pytest"))
    runs = _ledger(reader)
    assert [(r["kind"], r["plugin"]["name"], r["status"]) for r in runs] == [
        ("run", "my-model", "ok")], "one recorded run of the plugin, in the folder's ledger"
    assert runs[0]["plugin"]["distribution"] == "m6bench-my-model"


@pytest.mark.real_data
def test_rank_it_on_a_board_next_to_the_built_ins(reader):
    real_data_folder("recbole-ml-100k", purpose="the guide's section 6 (MovieLens 100K)")
    if not reader.ran:  # run alone (-k): the plugin is scaffolded and installed first
        reader.follow(1, 2)
    reader.follow(6)
    single = reader.output("m6bench leaderboard show --runs")
    assert re.search(r"^my-model\s.*\buntuned\s*$", single, re.MULTILINE), single
    board = reader.output("m6bench leaderboard show --board")
    # a ranked row: rank, model, plugin and version, the metrics, ..., trials done/asked
    ranked = {m["model"]: (int(m["rank"]), m["trials"]) for m in re.finditer(
        r"^(?P<rank>\d+)\s+(?P<model>\S+)\s.*?\s(?P<trials>\d+/\d+)\s", board,
        re.MULTILINE)}
    assert set(ranked) == {"my-model", "pop", "ease", "ials"}, board
    assert sorted(rank for rank, _ in ranked.values()) == [1, 2, 3, 4]
    assert ranked["pop"][1] == "1/1" and ranked["my-model"][1] == ranked["ease"][1]
    assert re.search(r"^my-model\s.*\buntuned\s*$", board, re.MULTILINE), "--runs lists it"
    assert (reader.root / "site" / "index.html").exists()
    finals = [r for r in _ledger(reader) if r["kind"] == "final"]
    assert {(r["model"], r["benchmark"]["name"]) for r in finals} == {
        (m, "ml-100k") for m in ranked}


# ======================================================= how the guide is read (quick)
def test_the_walkthrough_is_read_as_a_reader_types_it():
    text = ("# Guide\n\nIntro.\n\n```bash\nnot in a numbered section\n```\n\n## 1. Start\n\n"
            "```bash\nm6bench x \\\n    --y 1   # a comment the shell drops\n# only a comment"
            "\n\nm6bench z\n```\n\nSave this as\n`b.toml`:\n\n```toml\n[a]\n```\n\n"
            "## Reference\n\n## 2. Generated\n\n```bash\nnot the walkthrough\n```\n")
    blocks = walkthrough(text)
    assert [(b.section, b.lang) for b in blocks] == [(1, "bash"), (1, "toml")]
    assert commands(blocks[0].code) == ["m6bench x --y 1   # a comment the shell drops",
                                        "m6bench z"]
    assert re.search(r"Save this as\s+`([^`]+)`", blocks[1].before)[1] == "b.toml"


def test_a_failing_or_slow_command_is_named_with_its_output(tmp_path, monkeypatch):
    reader = Reader(tmp_path, dict(os.environ))
    assert reader.type("echo hello") == "hello\n"
    with pytest.raises(AssertionError, match=r"(?s)`echo oops >&2; exit 3` exited 3.*oops"):
        reader.type("echo oops >&2; exit 3")
    monkeypatch.setattr(sys.modules[__name__], "DEFAULT_TIMEOUT", 1)
    with pytest.raises(AssertionError, match=r"`sleep 5` took over 1 s"):
        reader.type("sleep 5")
