"""Reviewer pages of gold and calibration items, and what admins see of the checks.

A gold item's page must not differ from any other item's page but for the item's own content;
a calibration item may say it is one, and after it is scored shows the expected range and note.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from grading import assignment as queue
from grading.models import Assignment, GoldAnswer, Purpose, ReviewSettings, ReviewUnit, Score
from inference.models import Campaign, Generation
from tests.conftest import logged_in
from tests.grading.test_review_pages import assert_blind, build_study

pytestmark = pytest.mark.django_db
HTMX = {"HX-Request": "true", "HX-Target": "work"}


def answers_of(campaign: Campaign, item: str) -> list[Generation]:
    """The item's answers, the ERNIE one first."""
    return list(
        Generation.objects.filter(campaign=campaign, item__external_id=item).order_by(
            "endpoint__slug"
        )
    )[::-1]


def mark(answer: Generation, purpose: str = Purpose.GOLD, note: str = "") -> GoldAnswer:
    return GoldAnswer.objects.create(generation=answer, low=3, high=4, note=note, purpose=purpose)


def held_from(client: Client) -> Assignment:
    response = client.get(reverse("review-next"))
    assert response.status_code == 302, response.status_code
    public_id = response["Location"].rstrip("/").rsplit("/", 1)[-1]
    return Assignment.objects.select_related("unit").get(public_id=public_id)


def pages(client: Client, held: Assignment) -> tuple[str, str]:
    """The scoring page of `held`, whole and as the htmx fragment."""
    url = reverse("review-assignment", args=[held.public_id])
    whole, fragment = client.get(url), client.get(url, headers=HTMX)
    assert whole.status_code == fragment.status_code == 200
    return assert_blind(whole), assert_blind(fragment)


def placeholders(html: str, held: Assignment) -> str:
    """The page with the item's own content (its prompt, the assignment's id) replaced, and
    the CSRF token (masked afresh on every response)."""
    html = html.replace(held.public_id, "ASSIGNMENT")
    html = re.sub(r'("X-CSRFToken": "|name="csrfmiddlewaretoken" value=")\w+', r"\1CSRF", html)
    return re.sub(r"图里是什么颜色\? \d+", "PROMPT", html)


def test_a_gold_items_page_is_the_same_as_a_regular_items_page_but_for_the_item(
    alice: User,
) -> None:
    campaign = build_study(items=3)
    Generation.objects.filter(campaign=campaign).update(finish_reason="stop")
    mark(answers_of(campaign, "q1")[0])
    queue.sync_units(campaign)
    assert ReviewUnit.objects.filter(purpose=Purpose.GOLD).count() == 1
    # The regular item shown is q2 (the first in the queue order), the gold one q1.
    ReviewUnit.objects.filter(purpose=Purpose.REGULAR).update(shuffle_key=1000)
    ReviewUnit.objects.filter(purpose=Purpose.REGULAR, item__external_id="q2").update(shuffle_key=0)
    client = logged_in(alice)
    ReviewSettings.objects.filter(campaign=campaign).update(gold_rate=0.0)
    regular = held_from(client)
    assert (regular.unit.purpose, regular.unit.item.external_id) == (Purpose.REGULAR, "q2")
    # Both show the answers in the same model order (the order is random per reviewer: fix it).
    Assignment.objects.filter(pk=regular.pk).update(
        order=[g.public_id for g in answers_of(campaign, "q2")]
    )
    regular_pages = pages(client, regular)
    # Let the reservation run out, so the reviewer is back where she started; then gold.
    Assignment.objects.filter(pk=regular.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    ReviewSettings.objects.filter(campaign=campaign).update(gold_rate=1.0)
    gold = held_from(client)
    assert (gold.unit.purpose, gold.unit.item.external_id) == (Purpose.GOLD, "q1")
    Assignment.objects.filter(pk=gold.pk).update(
        order=[g.public_id for g in answers_of(campaign, "q1")]
    )
    gold_pages = pages(client, gold)
    for regular_html, gold_html in zip(regular_pages, gold_pages, strict=True):
        assert "PROMPT" in placeholders(gold_html, gold)
        assert placeholders(regular_html, regular) == placeholders(gold_html, gold)
        assert "calibration" not in gold_html.lower() and "gold" not in gold_html.lower()
    # The test is not blind to a difference: a calibration item's page does differ.
    GoldAnswer.objects.update(purpose=Purpose.CALIBRATION)
    ReviewUnit.objects.filter(pk=gold.unit_id).update(purpose=Purpose.CALIBRATION)
    calibration_pages = pages(client, gold)
    assert placeholders(calibration_pages[0], gold) != placeholders(regular_pages[0], regular)


@pytest.fixture
def calibrating(db: None) -> Campaign:
    campaign = build_study(items=3)
    ReviewSettings.objects.filter(campaign=campaign).update(calibration=True, gold_rate=0.0)
    ernie = answers_of(campaign, "q1")[0]
    mark(ernie, Purpose.CALIBRATION, note="ERNIE-4.5-0.3B-Paddle answered this; 3–4 because…")
    queue.sync_units(campaign)
    return campaign


def scores_form(held: Assignment, value: int) -> dict[str, str]:
    return {f"score-{n}": str(value) for n in range(len(held.order))}


def test_calibration_item_is_said_to_be_one_and_cannot_be_skipped(
    alice: User, calibrating: Campaign
) -> None:
    client = logged_in(alice)
    held = held_from(client)
    assert held.unit.purpose == Purpose.CALIBRATION
    whole, _ = pages(client, held)
    assert 'id="calibration-note"' in whole and 'name="skip"' not in whole
    url = reverse("review-assignment", args=[held.public_id])
    refused = client.post(url, {"skip": "1"}, headers=HTMX)
    assert "cannot be skipped" in assert_blind(refused)
    held.refresh_from_db()
    assert held.status == "reserved"


def test_after_a_calibration_item_the_reviewer_sees_the_range_and_note_then_goes_on(
    alice: User, calibrating: Campaign
) -> None:
    client = logged_in(alice)
    held = held_from(client)
    url = reverse("review-assignment", args=[held.public_id])
    ernie = answers_of(calibrating, "q1")[0]
    ernie_label = "AB"[held.order.index(ernie.public_id)]
    response = client.post(url, scores_form(held, 9), headers=HTMX)
    html = assert_blind(response)
    assert response["HX-Push-Url"] == url
    assert "Calibration: how your scores compare" in html
    row = re.search(rf"<td><strong>{ernie_label}</strong></td>(.*?)</tr>", html, re.S)
    assert row is not None
    assert "9" in row.group(1) and "3–4" in row.group(1) and "outside" in row.group(1)
    assert "answered this; 3–4 because" in row.group(1) and "■■■" in row.group(1)
    assert html.count("no expected range") == 1  # the other answer has no mark
    assert set(Score.objects.filter(reviewer=alice).values_list("purpose", flat=True)) == {
        "calibration"
    }
    # Reopened (from My scores, or by going back) it shows the same, and is not edited.
    again = client.get(url)
    assert "3–4" in assert_blind(again)
    client.post(url, scores_form(held, 3))
    assert set(Score.objects.filter(reviewer=alice).values_list("score", flat=True)) == {9}
    # Continue: regular work (the calibration set had one item).
    following = held_from(client)
    assert following.unit.purpose == Purpose.REGULAR
    assert following.unit.item.external_id != "q1"


def test_without_htmx_a_calibration_submit_lands_on_the_feedback(
    alice: User, calibrating: Campaign
) -> None:
    client = logged_in(alice)
    held = held_from(client)
    url = reverse("review-assignment", args=[held.public_id])
    response = client.post(url, scores_form(held, 4))
    assert response.status_code == 302 and response["Location"] == url
    assert "inside" in assert_blind(client.get(url))


def test_review_progress_shows_extra_reviews_and_an_empty_calibration_set(
    admin_client: Client,
) -> None:
    campaign = build_study(items=2)
    ReviewSettings.objects.filter(campaign=campaign).update(
        calibration=True, disagreement_spread=2, reviewers_max=3
    )
    ReviewUnit.objects.filter(item__external_id="q0").update(extra_reviews=1)
    url = reverse("review-progress", args=[campaign.public_id])
    html = admin_client.get(url).content.decode()
    extra = re.search(r'<span id="extra-reviews">(.*?)</span>\s*<span>', html, re.S)
    assert extra is not None
    assert re.sub(r"\s+", " ", extra.group(1)).startswith(
        "<strong>1</strong> extra reviews asked, on 1 item"
    )
    assert 'id="calibration-empty"' in html
    # With a calibration answer, calibration holds reviewers back and the note goes away.
    mark(answers_of(campaign, "q1")[0], Purpose.CALIBRATION)
    html = admin_client.get(url).content.decode()
    assert 'id="calibration-empty"' not in html
    assert "<strong>1</strong> gold and calibration items" in html
    # 2 regular items × 2 reviews + 1 extra: 5 still wanted.
    assert "<strong>5</strong> reviews still wanted" in html
    ReviewSettings.objects.filter(campaign=campaign).update(disagreement_spread=None)
    html = admin_client.get(url).content.decode()
    assert "Extra reviews on disagreement: off" in html
