"""Excluding a reviewer from a campaign's results in Chromium: the Review progress page's
buttons swap its reviewers table in place through htmx, and the results page says so."""

from __future__ import annotations

import pytest
from django.core.cache import cache

from grading import exclusion
from tests.conftest import browser_login
from tests.grading.test_results_pages import build_fixed_study

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_exclude_and_include_again_in_place(page, live_server, admin) -> None:  # type: ignore[no-untyped-def]
    cache.clear()
    campaign = build_fixed_study()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    browser_login(page, live_server.url, "admin")
    page.goto(f"{live_server.url}/campaigns/{campaign.public_id}/review/")
    page.evaluate("window.__sameDocument = true")
    row = page.locator("#reviewers tr", has_text="rev-two")
    row.get_by_role("button", name="Exclude from results").click()
    page.locator("#reviewers", has_text="rev-two is excluded").wait_for()
    assert exclusion.excluded([campaign.pk]) == {campaign.pk: ["rev-two"]}
    page.locator("#reviewers tr", has_text="rev-two").get_by_role(
        "button", name="Include again"
    ).click()
    page.locator("#reviewers", has_text="count in this campaign's results again").wait_for()
    assert not exclusion.excluded([campaign.pk])
    assert page.evaluate("window.__sameDocument") is True

    row = page.locator("#reviewers tr", has_text="rev-one")
    row.get_by_role("button", name="Exclude from results").click()
    page.locator("#reviewers", has_text="rev-one is excluded").wait_for()
    page.goto(f"{live_server.url}/results/{campaign.public_id}/")
    assert "1 reviewer excluded from these figures: rev-one." in page.content()
    assert not errors
    cache.clear()
