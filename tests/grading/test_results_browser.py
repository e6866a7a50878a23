"""The comparison pages in Chromium: every chart draws without a console error, filters swap the
results in place, charts download as PNG and SVG, and a table cell opens the items behind it.

Screenshots of both pages are kept in `var/test-artifacts/` for whoever reads the test run.
"""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.cache import cache
from django.core.management import call_command

from tests.conftest import REPO, browser_login
from tests.grading.test_results_pages import SEED, build_fixed_study

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ARTIFACTS = REPO / "var" / "test-artifacts"
CHARTS = 8


def watch_console(page) -> list[str]:  # type: ignore[no-untyped-def]
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    return errors


def wait_for_charts(page, count: int = CHARTS) -> None:  # type: ignore[no-untyped-def]
    page.wait_for_function(
        "n => document.querySelectorAll('.plot[data-drawn=true] .main-svg').length >= n",
        arg=count,
    )


def test_campaign_results_draw_filter_download_and_drill_down(page, live_server, admin) -> None:  # type: ignore[no-untyped-def]
    cache.clear()
    campaign = build_fixed_study()
    errors = watch_console(page)
    browser_login(page, live_server.url, "admin")
    page.goto(f"{live_server.url}/results/{campaign.public_id}/")
    wait_for_charts(page)
    assert page.locator(".plot").count() == CHARTS
    # Bars: one trace per model, one bar per task type, drawn as SVG paths.
    assert page.locator("#chart-bars .plot .trace.bars").count() == 2
    assert page.locator("#chart-heatmap .plot .hm").count() == 1
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "results-campaign.png"), full_page=True)

    # A filter swaps the results in place (no page load) and redraws the charts.
    page.evaluate("window.__sameDocument = true")
    page.locator("label.chip", has_text="TC").locator("input").check()
    page.wait_for_function(
        "() => document.querySelectorAll('.results-table tbody tr').length === 1"
    )
    wait_for_charts(page)
    assert page.evaluate("window.__sameDocument") is True
    assert "task_type=TC" in page.url
    assert page.locator(".results-table tbody tr th").inner_text().startswith("TC")

    # Downloads: PNG and SVG made in the browser, CSV from the server.
    with page.expect_download() as png:
        page.locator("#chart-bars [data-download=png]").click()
    assert png.value.path().read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with page.expect_download() as svg:
        page.locator("#chart-bars [data-download=svg]").click()
    assert b"<svg" in svg.value.path().read_bytes()[:200]
    with page.expect_download() as csv:
        page.locator("#chart-bars a", has_text="CSV").click()
    lines = csv.value.path().read_text().splitlines()
    assert lines[0].startswith("task_type,model,") and all(r.startswith("TC,") for r in lines[1:])

    # A cell of the table opens the items behind it.
    page.locator(".results-table td.mean-a a").click()
    page.wait_for_selector(".drill-item")
    assert page.locator(".drill-item").count() == 2
    assert "answer of alpha-m to TC-0" in page.content()
    assert errors == []


def test_overview_draws_every_chart_for_the_reference_study(page, live_server, admin) -> None:  # type: ignore[no-untyped-def]
    cache.clear()
    call_command("import_scores", str(SEED / "seed-scores.csv"), stdout=StringIO())
    errors = watch_console(page)
    browser_login(page, live_server.url, "admin")
    page.goto(f"{live_server.url}/results/")
    # The published tables carry no timings: the three speed charts say so instead of drawing.
    wait_for_charts(page, CHARTS - 3)
    assert page.locator(".empty-chart").count() == 3
    assert page.locator(".results-table").count() == 3
    # The six models of the three matchups, in the heatmap and the grouped bars.
    assert page.locator("#chart-bars .plot .trace.bars").count() == 6
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "results-overview.png"), full_page=True)
    # Filtering to the vision task types through the modality menu.
    page.select_option("select[name=modality]", "vision")
    page.wait_for_function(
        "() => [...document.querySelectorAll('.results-table tbody tr')].every("
        "tr => ['MG', 'VFP', 'VQA'].includes(tr.dataset.taskType))"
    )
    wait_for_charts(page, CHARTS - 3)
    assert errors == []
