"""In Chromium: a reviewer goes through calibration (and sees how their scores compare), then
regular work with gold items mixed in; the results leave the gold scores out."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from django.core.management import call_command

from grading import assignment as queue
from grading.models import GoldAnswer, Purpose, ReviewSettings, Score
from inference.models import Generation
from tests.conftest import browser_login
from tests.grading.test_review_browser import assert_blind_dom, wait_for_next_item
from tests.grading.test_review_pages import build_study

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def ernie_answer(item: str) -> Generation:
    return Generation.objects.get(item__external_id=item, endpoint__slug__startswith="ernie")


def test_calibration_then_regular_work_with_gold_mixed_in(  # type: ignore[no-untyped-def]
    page, live_server, alice, tmp_path: Path
) -> None:
    campaign = build_study(items=5)
    ReviewSettings.objects.filter(campaign=campaign).update(calibration=True, gold_rate=1.0)
    GoldAnswer.objects.create(
        generation=ernie_answer("q0"),
        low=3,
        high=4,
        note="Half right: the colour is named, the reason is not.",
        purpose=Purpose.CALIBRATION,
    )
    for item in ("q1", "q2"):
        GoldAnswer.objects.create(generation=ernie_answer(item), low=0, high=2, note="wrong")
    queue.sync_units(campaign)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    browser_login(page, live_server.url, "alice")
    page.goto(f"{live_server.url}/review/next/")

    # Calibration first: the page says so, and has no skip button.
    page.wait_for_selector("#work [data-answer]")
    assert page.locator("#calibration-note").is_visible()
    assert page.locator("button[name=skip]").count() == 0
    assert_blind_dom(page)
    calibration_url = page.url
    page.keyboard.press("4")
    page.keyboard.press("6")
    page.keyboard.press("Enter")
    page.wait_for_selector(".calibration-feedback")
    feedback = " ".join(page.locator(".calibration-feedback").inner_text().split())
    assert "3–4" in feedback and "Half right: the colour is named" in feedback
    assert "no expected range" in feedback  # the other answer was not marked
    assert page.url == calibration_url
    assert_blind_dom(page)
    page.screenshot(path=str(tmp_path / "calibration-feedback.png"), full_page=True)
    calibration_scores = Score.objects.filter(reviewer=alice, purpose=Purpose.CALIBRATION)
    assert sorted(calibration_scores.values_list("score", flat=True)) == [4, 6]

    # Enter goes on: regular work, into which gold items are mixed (gold_rate 1.0: the two gold
    # items come first). Gold pages look like any other: no note, a skip button.
    page.keyboard.press("Enter")
    page.wait_for_url(lambda url: url != calibration_url)
    page.wait_for_selector("#work form.scoring [data-answer]")
    given = 0
    while True:
        assert page.locator("#calibration-note").count() == 0
        assert page.locator("button[name=skip]").count() == 1
        assert "gold" not in page.content().lower()
        assert_blind_dom(page)
        url = page.url
        given += 1
        value = "1" if given <= 2 else "8"  # gold items are scored 1, the others 8
        page.keyboard.press(value)
        page.keyboard.press(value)
        page.keyboard.press("Enter")
        wait_for_next_item(page, url)
        if page.locator("#work form.scoring").count() == 0:
            break
    assert "Nothing left to review" in page.locator("#work").inner_text()
    assert given == 4  # q1, q2 as gold; q3, q4 regular (q0 was her calibration item)

    mine = Score.objects.filter(reviewer=alice)
    assert sorted(mine.filter(purpose=Purpose.GOLD).values_list("score", flat=True)) == [1] * 4
    assert set(
        mine.filter(purpose=Purpose.GOLD).values_list("generation__item__external_id", flat=True)
    ) == {"q1", "q2"}
    # Results count only the regular scores: every mean is 8, from 2 items per model.
    out = io.StringIO()
    call_command("export_scores", "--aggregate", stdout=out)
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert len(rows) == 2
    assert {(r["mean"], r["items"], r["scores"]) for r in rows} == {("8", "2", "2")}
    assert page.evaluate("window.__pwned") is None
    assert errors == []
