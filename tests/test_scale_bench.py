"""benchmarks/scale.py at a tiny size: the per-stage measurement, the slope fit, the SVG and
the README table; and the sort-based key helpers the protocol cuts use instead of hashing."""

from __future__ import annotations

import json
import math
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from m6bench.data.trainset import contained_in, sorted_distinct

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "scale.py"
SVG = "{http://www.w3.org/2000/svg}"

pytestmark = pytest.mark.usefixtures("isolated")


@pytest.fixture(scope="module")
def scale(script_module):
    with script_module(SCRIPT, "scale_bench") as module:
        yield module


@pytest.fixture(scope="module")
def child(scale):
    """benchmarks/scale_child.py: the measured child's side, as scale.py imported it."""
    return sys.modules["scale_child"]


def _entry(size: str, stage: str, interactions: int, seconds: float, delta_mb: float,
           users: int = 100, items: int = 50) -> dict:
    return {"size": size, "stage": stage, "status": "ok", "n_interactions": interactions,
            "n_users": users, "n_items": items, "seconds": seconds,
            "cpu_seconds": 2 * seconds, "delta_mb": delta_mb, "peak_mb": delta_mb + 300}


def test_slope_fit_on_hand_made_numbers(scale):
    xs = [1e5, 1e6, 5e6, 2e7]
    assert scale.fit_slope(xs, [3e-6 * x for x in xs]) == pytest.approx(1.0)
    assert scale.fit_slope(xs, [2e-12 * x * x for x in xs]) == pytest.approx(2.0)
    assert scale.fit_slope(xs, [7.0] * 4) == pytest.approx(0.0)
    # y = x^1.5 at two points: log(1000^1.5 / 10^1.5) / log(1000 / 10) = 1.5
    assert scale.fit_slope([10, 1000], [10**1.5, 1000**1.5]) == pytest.approx(1.5)
    # least squares, not the end points: logs (0,0), (1,1), (2,3) -> slope 3/2
    assert scale.fit_slope([1, math.e, math.e**2], [1, math.e, math.e**3]) == pytest.approx(1.5)
    assert scale.fit_slope([1e5], [1.0]) is None  # one point
    assert scale.fit_slope([1e5, 1e6], [0.0, 1.0]) is None  # a zero has no log: one point left
    assert scale.fit_slope([1e5, 1e5], [1.0, 2.0]) is None  # no spread in x
    assert [scale.growth_name(s) for s in (0.5, 1.1, 1.5, None)] == [
        "sub-linear", "linear", "ABOVE LINEAR", "-"]


def test_sizes_keep_ml20m_shape(scale):
    assert scale.shape_for(scale.parse_size("20M")) == {"n_users": 138_000, "n_items": 27_000,
                                                        "density": 0.0054}
    small = scale.shape_for(scale.parse_size("0.1M"))
    assert small["density"] == 0.0054
    assert small["n_users"] / small["n_items"] == pytest.approx(138 / 27, rel=1e-3)
    grid = small["n_users"] * small["n_items"] * small["density"]
    assert grid == pytest.approx(1e5, rel=1e-3)
    assert scale.parse_size("300k") == 300_000 and scale.parse_size("5000") == 5000
    with pytest.raises(SystemExit, match="not a size"):
        scale.parse_size("lots")


def test_measure_attributes_a_stages_own_peak(child):
    """A stage that touches 200 MB shows about 200 MB of its own, whatever came before."""
    before = np.ones(300 * 2**17)  # 300 MB written: an earlier, larger peak not to inherit
    del before
    result = child.measure(lambda: np.ones(200 * 2**17))  # 200 MB of float64 ones
    assert result["seconds"] > 0
    if result["peak_attribution"] == "stage":  # Linux with /proc/self/clear_refs
        assert 150 < result["delta_mb"] < 290
    assert result["peak_mb"] >= result["baseline_mb"]


def test_stages_run_in_process_and_in_a_child(scale, child, tmp_path):
    cache = str(tmp_path / "cache")
    options = scale.shape_for(2000)
    catalog = child._child_setup(threads=1)
    for stage in ("load", "cut", "tensors", "bpr-mf-epoch", "gnn-mf-propagation", "evaluate"):
        action, sizes = child.stage_action(stage, catalog, options, cache)
        result = child.measure(action)
        assert result["seconds"] > 0 and result["peak_mb"] > 0, stage
    assert sizes["n_users"] == options["n_users"] and sizes["n_train"] < sizes["n_interactions"]

    class Args:
        cache_dir, threads, timeout = cache, 1, 600

    entry = scale.measure_stage("2k", "cut", options, Args)
    assert entry["status"] == "ok", entry.get("error")
    assert entry["n_items"] == options["n_items"] and entry["seconds"] > 0
    assert entry["process_peak_mb"] >= entry["peak_mb"] > 0
    failed = scale.measure_stage("2k", "no-such-stage", options, Args)
    assert failed["status"] == "failed" and "unknown stage" in failed["error"]


def test_svg_has_one_path_per_stage_and_parses(scale):
    results = [_entry(size, stage, n, seconds, 10.0)
               for stage, factor in (("load", 1e-6), ("evaluate", 3e-5), ("bpr-mf-epoch", 2e-6))
               for size, n in (("0.1M", 100_000), ("1M", 1_000_000), ("5M", 5_000_000))
               for seconds in [factor * n]]
    results.append({"size": "5M", "stage": "cut", "status": "failed", "error": "boom"})
    root = ET.fromstring(scale.svg_plot(results))
    assert root.tag == f"{SVG}svg"
    paths = root.findall(f"{SVG}path")
    assert sorted(p.find(f"{SVG}title").text for p in paths) == ["bpr-mf-epoch", "evaluate",
                                                                  "load"]
    assert all(p.get("d").count("L") == 2 for p in paths)  # three points each
    ET.fromstring(scale.svg_plot([]))  # nothing measured yet: still a valid (empty) plot


def test_table_slopes_and_readme_markers(scale, tmp_path):
    results = [_entry("0.1M", "bpr-mf-epoch", 100_000, 1.0, 10.0),
               _entry("1M", "bpr-mf-epoch", 1_000_000, 100.0, 100.0),
               _entry("0.1M", "evaluate", 100_000, 2.0, 40.0, users=1000, items=100),
               _entry("1M", "evaluate", 1_000_000, 20.0, 40.0, users=10_000, items=1000)]
    fits = scale.slopes(results)
    assert fits["bpr-mf-epoch"]["seconds_vs_interactions"] == pytest.approx(2.0)
    assert fits["bpr-mf-epoch"]["cpu_vs_interactions"] == pytest.approx(2.0)
    assert fits["bpr-mf-epoch"]["memory_vs_interactions"] == pytest.approx(1.0)
    assert fits["evaluate"]["seconds_vs_grid"] == pytest.approx(0.5)  # grid grew 100x
    assert fits["evaluate"]["memory_vs_grid"] == pytest.approx(0.0)
    text = scale.table(results)
    assert ("| `bpr-mf-epoch` | 1 / 2 / 10 | 100 / 200 / 100 | 2.00 | 2.00 | 1.00 | ABOVE LINEAR"
            in text)
    results[1]["cpu_seconds"] = 20.0  # CPU time, when there, decides: 2 -> 20 s is linear
    assert "| 2.00 | 1.00 | 1.00 | linear in interactions |" in scale.table(results)
    assert "sub-linear in users x items" in text

    readme = tmp_path / "README.md"
    readme.write_text(f"# top\n{scale.README_BEGIN}\nold\n{scale.README_END}\ntail\n")
    assert scale.update_readme(readme, text)
    content = readme.read_text()
    assert content.startswith("# top\n") and content.endswith(f"{scale.README_END}\ntail\n")
    assert "old" not in content and "ABOVE LINEAR" in content
    (tmp_path / "plain.md").write_text("no markers\n")
    assert not scale.update_readme(tmp_path / "plain.md", text)


def test_results_merge_by_size_and_stage(scale, tmp_path):
    first = [_entry("1M", "load", 10, 1.0, 1.0), _entry("1M", "cut", 10, 2.0, 1.0)]
    merged = scale.merge(first, _entry("1M", "load", 10, 9.0, 1.0))
    assert sorted((r["stage"], r["seconds"]) for r in merged) == [("cut", 2.0), ("load", 9.0)]
    path = tmp_path / "scale.json"
    scale.save_results(path, merged)
    assert scale.load_results(path) == merged
    assert "slopes" in json.loads(path.read_text())


def test_ml20m_command_is_the_normal_run_path(scale, tmp_path):
    command = scale.ml20m_command(tmp_path / "ledger.jsonl")
    assert command[1:6] == ["-m", "m6bench", "run", "--plugin", "classic"]
    joined = " ".join(command)
    for part in ("--model bpr-mf", "--set epochs=2", "--dataset synthetic",
                 "--dataset-opt n_users=138000", "--dataset-opt n_items=27000",
                 "--dataset-opt density=0.0054"):
        assert part in joined


@pytest.mark.parametrize("size", [0, 1, 2, 1000])
def test_sorted_distinct_and_contained_in_match_numpy(size):
    rng = np.random.default_rng(size)
    keys = rng.integers(0, max(size // 3, 1), size).astype(np.int64) * 37_000_000_007 // 10**6
    distinct = sorted_distinct(keys)
    assert np.array_equal(distinct, np.unique(keys))
    queries = rng.integers(0, max(size, 2), 500).astype(np.int64)
    assert np.array_equal(contained_in(queries, distinct), np.isin(queries, keys))
    assert contained_in(np.array([5, 6]), np.array([], dtype=np.int64)).tolist() == [False] * 2
