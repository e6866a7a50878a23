"""The bias and ranking page in Chromium: its three charts draw without a console error, a
filter swaps the analyses in place, and a chart downloads as PNG and SVG.

A screenshot is kept in `var/test-artifacts/` for whoever reads the test run.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.core.cache import cache
from django.urls import reverse

from inference.models import Campaign
from tests import builders
from tests.conftest import browser_login
from tests.grading.test_analysis_csv import study as csv_study  # noqa: F401
from tests.grading.test_results_browser import ARTIFACTS, wait_for_charts, watch_console

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_bias_and_ranking_charts_draw_filter_and_download(  # type: ignore[no-untyped-def]
    page,
    live_server,
    admin,
    csv_study: dict[str, Any],  # noqa: F811
) -> None:
    cache.clear()
    builders.scores_written(*Campaign.objects.all())
    main = Campaign.objects.get(slug="main")
    errors = watch_console(page)
    browser_login(page, live_server.url, "admin")
    page.goto(live_server.url + reverse("campaign-analyses", args=[main.public_id]))
    wait_for_charts(page, 3)
    assert page.locator(".plot").count() == 3
    # Forest: one marker per model; position: one campaign; length: one trace per model.
    assert page.locator("#chart-ranking .plot .point").count() == 3
    assert page.locator("#chart-position .plot .point").count() == 1
    assert page.locator("#chart-length .plot .trace.scatter").count() == 3
    assert page.locator(".position-flag").count() == 1
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "bias-ranking-campaign.png"), full_page=True)

    page.evaluate("window.__sameDocument = true")
    page.locator("label.chip", has_text="CK").locator("input").check()
    page.wait_for_function(
        "() => [...document.querySelectorAll('.length-table tbody tr')]"
        ".every(tr => tr.dataset.taskType === 'CK')"
    )
    wait_for_charts(page, 3)
    assert page.evaluate("window.__sameDocument") is True
    assert "task_type=CK" in page.url

    with page.expect_download() as png:
        page.locator("#chart-ranking [data-download=png]").click()
    assert png.value.path().read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with page.expect_download() as svg:
        page.locator("#chart-length [data-download=svg]").click()
    assert b"<svg" in svg.value.path().read_bytes()[:200]
    assert errors == []
