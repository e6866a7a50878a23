"""Gold marking and the reviewer quality page in Chromium: the drill-down's mark form saves in
place through htmx, shows problems next to their fields, and the quality page draws its drift
chart."""

from __future__ import annotations

import datetime

import pytest
from django.core.cache import cache

from grading.models import GoldAnswer, Purpose
from tests import builders
from tests.conftest import browser_login

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_mark_an_answer_in_place_then_read_the_quality_page(page, live_server, admin) -> None:  # type: ignore[no-untyped-def]
    cache.clear()
    made = builders.two_campaigns()
    small, items = made["small"], made["items"]
    answer = builders.generation(small, items["ar-1"], made["ernie"])
    other = builders.generation(small, items["ar-1"], made["r1"])
    people = [builders.reviewer(name) for name in ("rev-one", "rev-two")]
    start = datetime.datetime(2026, 3, 2, 10, tzinfo=datetime.UTC)
    # rev-one scores in one week, rev-two the next: each has a severity in a week of their own.
    for n, person in enumerate(people):
        for target in (answer, other):
            builders.score(target, person, 3 + 2 * n, at=start + datetime.timedelta(weeks=n))
    builders.scores_written(small)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    browser_login(page, live_server.url, "admin")
    page.goto(f"{live_server.url}/results/items/?task_type=AR&campaign={small.public_id}")
    page.evaluate("window.__sameDocument = true")
    mark = page.locator(f"#gold-{answer.public_id}")
    mark.locator("summary").click()
    mark.locator("input[name=low]").fill("8")
    mark.locator("input[name=high]").fill("2")
    mark.get_by_role("button", name="Save mark").click()
    page.locator(f"#gold-{answer.public_id} [data-field=high]").wait_for()
    assert (
        "below the lowest"
        in page.locator(f"#gold-{answer.public_id} [data-field=high]").inner_text()
    )
    assert not GoldAnswer.objects.exists()
    mark = page.locator(f"#gold-{answer.public_id}")
    mark.locator("input[name=high]").fill("9")
    mark.locator("select[name=purpose]").select_option("calibration")
    mark.locator("textarea[name=note]").fill("states the rule")
    mark.get_by_role("button", name="Save mark").click()
    page.locator(f"#gold-{answer.public_id}", has_text="Mark saved.").wait_for()
    saved = GoldAnswer.objects.get(generation=answer)
    assert (saved.purpose, saved.low, saved.high, saved.note) == (
        Purpose.CALIBRATION,
        8,
        9,
        "states the rule",
    )
    assert page.evaluate("window.__sameDocument") is True

    page.goto(f"{live_server.url}/results/{small.public_id}/reviewers/")
    page.locator("#chart-drift .plot .main-svg").first.wait_for()
    assert (
        page.locator(
            "#reviewers-quality tr[data-reviewer=rev-one] [data-col=calibration]"
        ).inner_text()
        == "0 / 1"
    )
    assert not errors
    cache.clear()
