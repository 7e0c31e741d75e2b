"""The built leaderboard in a real browser: headless Chromium driven by Playwright.

The site under test is the one CI built from ``leaderboard/board-ci.toml`` when
``M6BENCH_SITE_DIR`` names it, else a small site built here from synthetic records.  Pages
are opened as ``file://`` URLs: every request must stay inside the site folder.
Screenshots go to ``M6BENCH_ARTIFACT_DIR`` (default: the test's temporary folder).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from requirements_for_tests import playwright_and_chromium

from m6bench_leaderboard import append_record, build_site
from m6bench_leaderboard.testing import make_record, synthetic_records

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu"]
XSS = "<script>alert(1)</script>"

sync_api, CHROMIUM = playwright_and_chromium()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    folder = os.environ.get("M6BENCH_ARTIFACT_DIR")
    path = Path(folder) if folder else tmp_path_factory.mktemp("artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _build(folder: Path, records) -> Path:
    ledger = folder / "ledger.jsonl"
    for record in records:
        append_record(ledger, record)
    build_site(ledger, folder / "site")
    return folder / "site"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    built = os.environ.get("M6BENCH_SITE_DIR")
    if built:
        path = Path(built)
        assert (path / "index.html").is_file(), (
            f"M6BENCH_SITE_DIR={built} holds no index.html; build it with `m6bench leaderboard "
            "build --out DIR` or unset the variable")
        return path.resolve()
    records = synthetic_records(benchmarks=2, models=5, seeds=3, trials=6, users=80)
    return _build(tmp_path_factory.mktemp("site"), records).resolve()


class Watch:
    """Console errors, page errors, dialogs and requests of one page."""

    def __init__(self, page, root: Path) -> None:
        self.root = root.as_uri()
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.dialogs: list[str] = []
        page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("request", lambda r: self.requests.append(r.url))

        def dialog(d):
            self.dialogs.append(d.message)
            d.dismiss()

        page.on("dialog", dialog)

    def outside(self) -> list[str]:
        return [u for u in self.requests
                if not (u.startswith(self.root + "/") or u.startswith("data:"))]


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    yield page
    context.close()


def _models(page) -> list[str]:
    return page.eval_on_selector_all("table#leaderboard tbody tr",
                                     "rows => rows.map(r => r.dataset.model)")


def test_index_and_benchmark_page_work_offline(page, site, artifacts):
    watch = Watch(page, site)
    page.goto((site / "index.html").as_uri())
    page.wait_for_load_state("load")
    results = json.loads((site / "results.json").read_text())
    cards = page.locator("section.benchmark-card")
    assert cards.count() == len(results["benchmarks"]) > 0
    page.screenshot(path=str(artifacts / "index.png"), full_page=True)

    bench = results["benchmarks"][0]
    page.click(f"section.benchmark-card h2 a[href='benchmarks/{bench['file']}.html']")
    page.wait_for_load_state("load")
    assert page.url.endswith(f"/benchmarks/{bench['file']}.html")
    models = _models(page)
    assert len(models) == len(bench["rows"]) and len(set(models)) == len(models)
    assert models == [f"{r['plugin']}/{r['model']}" for r in bench["rows"]]  # by rank
    # the quality-time plot has a point per row; the deployment view's plot has its own
    deployment = page.locator("#deployment svg.plot-pareto circle").count()
    assert page.locator("svg.plot-pareto circle").count() - deployment == len(bench["rows"])
    assert page.locator("table#leaderboard .best-mark").count() >= 1

    # click a header: the rows re-order by that column; click again: reversed
    page.click("table#leaderboard thead th:nth-child(2) button")
    by_name = _models(page)
    assert by_name == sorted(models, key=str.lower)
    assert page.get_attribute("table#leaderboard thead th:nth-child(2)",
                              "aria-sort") == "ascending"
    page.click("table#leaderboard thead th:nth-child(2) button")
    assert _models(page) == by_name[::-1]
    train = page.locator("table#leaderboard thead th", has_text="Train s")
    train.click()
    seconds = {f"{r['plugin']}/{r['model']}": r["train_seconds"] for r in bench["rows"]}
    ordered = [seconds[m] for m in _models(page)]
    assert ordered == sorted(ordered)
    page.screenshot(path=str(artifacts / "benchmark.png"), full_page=True)

    # a run page: curves, sweep history, reproduce command
    page.click("table#leaderboard tbody tr:first-child td.model a")
    page.wait_for_load_state("load")
    assert "/runs/" in page.url
    assert page.locator("svg.plot-history").count() == 1  # curves too, for iterative models
    assert "m6bench reproduce" in page.inner_text("pre.command")
    page.screenshot(path=str(artifacts / "run.png"), full_page=True)

    assert watch.errors == [], watch.errors
    assert watch.outside() == [], watch.outside()
    assert watch.dialogs == []


def test_strings_from_records_render_as_text(page, tmp_path, artifacts):
    records = synthetic_records(models=2, seeds=2, trials=2, users=20)
    evil = make_record(benchmark="bench-0", plugin=XSS, model=XSS,
                       config={"note": XSS, XSS: "<img src=x onerror=alert(2)>"},
                       sweep_id=XSS, test={"ndcg@10": 0.9}, run_id="evil",
                       per_user={"users": [0, 1], "ndcg@10": [0.9, 0.9]})
    evil["dataset"]["name"] = f"<img src=x onerror=alert(3)>{XSS}"
    evil["command"] = ["m6bench", XSS]
    site = _build(tmp_path, [*records, evil]).resolve()
    watch = Watch(page, site)
    for url in ("index.html", "benchmarks/bench-0.html", "runs/evil.html"):
        page.goto((site / url).as_uri())
        page.wait_for_load_state("load")
        page.wait_for_timeout(100)
    assert XSS in page.inner_text("h1")  # shown as text on the run page
    assert XSS in page.inner_text("pre.config")
    page.goto((site / "benchmarks/bench-0.html").as_uri())
    page.wait_for_load_state("load")
    assert f"{XSS}/{XSS}" in _models(page)
    assert page.locator("script").count() == 1  # only the site's own sort.js
    assert page.locator("img").count() == 0
    page.screenshot(path=str(artifacts / "escaped.png"), full_page=True)
    assert watch.dialogs == [], watch.dialogs
    assert watch.errors == [], watch.errors
    assert watch.outside() == []


def test_site_folder_can_move(page, site, tmp_path):
    """Links are relative: a copy of the folder (a Pages deployment) works the same."""
    copy = tmp_path / "copy"
    shutil.copytree(site, copy)
    watch = Watch(page, copy)
    page.goto((copy / "index.html").as_uri())
    page.wait_for_load_state("load")
    page.click("header.site nav a >> nth=0")
    page.wait_for_load_state("load")
    assert page.locator("table#leaderboard tbody tr").count() > 0
    assert watch.outside() == [] and watch.errors == []
