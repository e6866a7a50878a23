"""The judges page in Chromium: charts drawn, downloads, and the prompt-version switch in place."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.cache import cache

from tests.builders import new_judgement
from tests.conftest import browser_login
from tests.grading.test_judge_results import judged, judges_url
from tests.grading.test_results_browser import watch_console

__all__ = ["judged"]

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_judges_page_draws_downloads_and_switches_version(  # type: ignore[no-untyped-def]
    page, live_server, admin, judged: dict[str, Any]
) -> None:
    cache.clear()
    campaign, jx = judged["campaign"], judged["jx"]
    for answer in list(judged["answers"].values())[:6]:
        new_judgement(answer, jx, score=10, prompt_version="judge-v2")
    errors = watch_console(page)
    browser_login(page, live_server.url, "admin")
    page.goto(live_server.url + judges_url(campaign))
    page.wait_for_function(
        "() => document.querySelectorAll('.plot[data-drawn=true] .main-svg').length >= 2"
    )
    assert "judge-v2" in page.locator("#judge-jx h2").inner_text()
    with page.expect_download() as png:
        page.locator("#chart-judge-jx [data-download=png]").click()
    assert png.value.path().read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    page.evaluate("window.__sameDocument = true")
    page.select_option("select[name=prompt_version]", "judge-v1")
    page.wait_for_function(
        "() => document.querySelector('#judge-jx h2').innerText.includes('judge-v1')"
    )
    page.wait_for_function(
        "() => document.querySelectorAll('.plot[data-drawn=true] .main-svg').length >= 1"
    )
    assert page.evaluate("window.__sameDocument") is True
    assert "prompt_version=judge-v1" in page.url
    assert not errors, errors
