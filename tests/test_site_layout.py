"""The site's layout and human formatting in a real browser (headless Chromium, Playwright):
no horizontal overflow at a desktop and a phone width, build provenance and papers on the
pages, metrics grouped by family, and metric columns that sort best-first on a first click.

Same skip logic as tests/test_site_browser.py: no Playwright or no Chromium, no test.
"""

from __future__ import annotations

import re

import pytest
from requirements_for_tests import playwright_and_chromium

from m6bench_leaderboard import build_site
from m6bench_leaderboard.board import parse_board
from m6bench_leaderboard.testing import deployment_scenario, make_record, synthetic_records

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu"]
WIDTHS = (1280, 420)
PAPER = "Rendle et al., BPR: Bayesian Personalized Ranking from Implicit Feedback, UAI 2009"
PAPER_URL = "https://arxiv.org/abs/1205.2618"

sync_api, CHROMIUM = playwright_and_chromium()

# Every table, plot, code block and list must end inside the window, or sit in a box that
# scrolls and itself ends inside the window.
OVERFLOW_JS = """() => {
  const width = window.innerWidth, outside = [];
  for (const el of document.querySelectorAll('table, svg.plot, pre, dl, figure, section')) {
    let box = el.parentElement;
    while (box && box !== document.body && getComputedStyle(box).overflowX === 'visible') {
      box = box.parentElement;
    }
    const rect = (box && box !== document.body ? box : el).getBoundingClientRect();
    if (rect.right > width + 0.5 || rect.left < -0.5) {
      outside.push(el.tagName + (el.id ? '#' + el.id : '') + ' ends at ' + rect.right);
    }
  }
  return {scrollWidth: document.documentElement.scrollWidth, innerWidth: width, outside};
}"""


def _rating_records() -> list[dict]:
    """A rating benchmark: its columns are RMSE and MAE, where lower is better."""
    records = []
    for index, (rmse, mae) in enumerate([(0.95, 0.75), (0.90, 0.72), (1.02, 0.80)]):
        for seed in range(2):
            record = make_record(benchmark="bench-rating", plugin="fake", model=f"rater-{index}",
                                 seed=seed, minute=100 + 2 * index + seed,
                                 test={"rmse": rmse + 0.001 * seed, "mae": mae})
            record["benchmark"]["spec"]["tasks"] = ["rating"]
            record["benchmark"]["spec"]["valid_metric"] = "rmse"
            record["metric_directions"] = {"rmse": "min", "mae": "min"}
            records.append(record)
    return records


def _board():
    models = [{"plugin": "fake", "model": f"model-{m}"} for m in range(4)]
    models += [{"plugin": "classic", "model": "ease"}, {"plugin": "classic", "model": "bpr"}]
    models += [{"plugin": "fake", "model": f"rater-{m}"} for m in range(3)]
    return parse_board({"board": {"name": "layout", "title": "layout test board",
                                  "benchmarks": ["bench-0", "bench-rating"]},
                        "budget": {"trials": 3, "seeds": 2}, "models": models},
                       source="leaderboard/board-layout.toml")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    records = synthetic_records(benchmarks=1, models=4, seeds=2, trials=3, users=40)
    for record in records:
        if record["model"] == "model-1":
            record["model_info"] = {"paper": PAPER}
        if record["model"] == "model-2":
            record["model_info"] = {"paper": PAPER_URL}
    runs, deployed = deployment_scenario()
    folder = tmp_path_factory.mktemp("layout")
    report = build_site(None, folder / "site", board=_board(),
                        records=[*records, *runs, *deployed, *_rating_records()])
    return report


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield browser
        browser.close()


def _open(browser, site, path: str, width: int = 1280):
    context = browser.new_context(viewport={"width": width, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto((site.out / path).resolve().as_uri())
    page.wait_for_load_state("load")
    return context, page, errors


def _pages(site) -> list[str]:
    benches = [f"benchmarks/{b['file']}.html" for b in site.data["benchmarks"]]
    runs = sorted(f"runs/{r['file']}.html" for r in site.data["runs"].values())
    return ["index.html", *benches, *runs[:3]]


@pytest.mark.parametrize("width", WIDTHS)
def test_no_page_overflows_the_window(browser, site, width):
    for path in _pages(site):
        context, page, errors = _open(browser, site, path, width)
        found = page.evaluate(OVERFLOW_JS)
        assert found["scrollWidth"] <= found["innerWidth"], (path, width, found)
        assert found["outside"] == [], (path, width, found)
        if width == 1280 and path.startswith("benchmarks/"):  # the model table needs no scroll
            wrap = page.locator("table#leaderboard").locator("xpath=..")
            assert wrap.evaluate("w => w.scrollWidth <= w.clientWidth"), path
        assert errors == []
        context.close()


def test_model_column_stays_in_view_when_the_table_scrolls(browser, site):
    context, page, _ = _open(browser, site, "benchmarks/bench-0.html", 420)
    wrap = page.locator("table#leaderboard").locator("xpath=..")
    assert wrap.evaluate("w => w.scrollWidth > w.clientWidth")  # too wide for a phone
    wrap.evaluate("w => { w.scrollLeft = w.scrollWidth; }")
    cell = page.locator("table#leaderboard tbody tr:first-child td.model").bounding_box()
    box = wrap.bounding_box()
    assert box["x"] - 1 <= cell["x"] <= box["x"] + 1  # stuck to the box's left edge
    context.close()


def test_index_and_benchmark_pages_say_what_made_their_numbers(browser, site):
    for path in ("index.html", "benchmarks/bench-0.html"):
        context, page, _ = _open(browser, site, path)
        build = page.inner_text("#build")
        assert re.search(r"built\s+\d{4}-\d\d-\d\d \d\d:\d\d UTC", build), build
        assert "m6bench 0.1.0, source 000000000000, git 000000000000" in build
        assert "synthetic, 2 cores, no GPU" in build
        assert "Python 3.11, torch none" in build
        assert "leaderboard/board-layout.toml" in build
        assert "m6bench board run leaderboard/board-layout.toml" in page.inner_text(
            "#build pre.command")
        assert page.locator("cite.paper", has_text=PAPER).count() == 1
        assert page.locator(f"a.paper[href='{PAPER_URL}']").count() == 1
        context.close()


def test_index_lists_every_model_and_formats_the_dataset(browser, site):
    context, page, _ = _open(browser, site, "index.html")
    for bench in site.data["benchmarks"]:
        card = page.locator("section.benchmark-card", has=page.locator(
            f"h2 a[href='benchmarks/{bench['file']}.html']"))
        assert card.locator("table.top tbody tr").count() == len(bench["rows"])
    context.close()
    context, page, _ = _open(browser, site, "benchmarks/bench-0.html")
    terms = page.eval_on_selector_all("dl.stats dt", "ds => ds.map(d => d.textContent)")
    assert terms[:5] == ["dataset", "users", "items", "interactions", "density"]
    values = dict(zip(terms, page.eval_on_selector_all("dl.stats dd",
                                                       "ds => ds.map(d => d.textContent)")))
    assert values["density"] == "6.30%" and values["interactions"] == "100,000"
    assert values["tasks"] == "ranking" and values["train interactions"] == "80,000"
    assert terms.index("train interactions") < terms.index("test interactions")
    context.close()


def test_run_page_groups_metrics_and_formats_provenance(browser, site):
    run = next(r for r in site.data["runs"].values() if r["model"] == "model-1")
    context, page, _ = _open(browser, site, f"runs/{run['file']}.html")
    families = page.eval_on_selector_all("table.metrics caption",
                                         "cs => cs.map(c => c.textContent)")
    assert families == ["ranking@k", "coverage / diversity"]
    names = page.eval_on_selector_all("table.metrics[data-family='ranking@k'] tbody td:first-child",
                                      "cs => cs.map(c => c.textContent.trim())")
    assert names == ["ndcg", "recall", "mrr"]  # reading order, not alphabetical
    provenance = page.inner_text("dl.provenance")
    assert "500 MB resident" in provenance and "500.0000" not in provenance
    hardware = page.eval_on_selector_all("dl.provenance table.key-values th",
                                         "cs => cs.map(c => c.textContent)")
    assert "cpu" in hardware and "python" in hardware
    assert "{" not in page.inner_text("dl.provenance dd >> nth=-1")
    context.close()


def _column(page, table: str, index: int) -> list[float]:
    return page.eval_on_selector_all(
        f"table#{table} tbody tr",
        f"rows => rows.map(r => parseFloat(r.cells[{index}].dataset.value))")


@pytest.mark.parametrize(("bench", "metric", "best_first"), [
    ("bench-0", "ndcg@10", "descending"),  # higher is better
    ("bench-rating", "rmse", "ascending"),  # lower is better
])
def test_first_click_on_a_metric_sorts_best_first(browser, site, bench, metric, best_first):
    context, page, errors = _open(browser, site, f"benchmarks/{bench}.html")
    header = page.locator(f"table#leaderboard thead th[data-metric='{metric}']")
    index = header.evaluate("h => h.cellIndex")
    page.click("table#leaderboard thead th:nth-child(2) button")  # sort by name first
    header.locator("button").click()
    values = _column(page, "leaderboard", index)
    assert values == sorted(values, reverse=best_first == "descending")
    assert header.get_attribute("aria-sort") == best_first
    header.locator("button").click()
    assert _column(page, "leaderboard", index) == values[::-1]
    assert errors == []
    context.close()


def test_deployment_section_sorts_latency_fastest_first(browser, site):
    context, page, _ = _open(browser, site, "benchmarks/bench-0.html")
    assert page.locator("#deployment tr.deployment-row").count() == 6
    assert page.locator("#deployment svg.plot-pareto circle").count() == 5  # one lacks p99
    page.locator("table#deployment-table thead th", has_text="p99 ms").click()
    values = [v for v in _column(page, "deployment-table", 6) if v == v]  # NaN last
    assert values == [5.0, 6.0, 8.0, 12.0, 20.0]
    context.close()
