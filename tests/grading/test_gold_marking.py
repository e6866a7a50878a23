"""Marking gold and calibration answers in the browser (admins), the list of a campaign's marks,
and the review settings admins edit."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from grading.models import GoldAnswer, Purpose, ReviewSettings
from inference.models import GenerationStatus
from tests import builders
from tests.conftest import logged_in

pytestmark = pytest.mark.django_db
HTMX = {"HX-Request": "true"}


@pytest.fixture
def study() -> dict[str, Any]:
    made = builders.two_campaigns()
    small, items = made["small"], made["items"]
    made["good"] = builders.generation(
        small, items["ar-1"], made["ernie"], content="**bold** answer"
    )
    made["other"] = builders.generation(small, items["ar-1"], made["r1"])
    made["failed"] = builders.generation(
        small, items["ck-1"], made["r1"], status=GenerationStatus.FAILED
    )
    return made


def mark_url(answer: Any) -> str:
    return reverse("gold-mark", args=[answer.public_id])


def test_an_admin_marks_an_answer_with_htmx_and_gets_the_fragment_back(
    admin: User, study: dict[str, Any]
) -> None:
    client = logged_in(admin)
    response = client.post(
        mark_url(study["good"]),
        {"purpose": "calibration", "low": "6", "high": "8", "note": "  needs the units  "},
        headers={**HTMX, "HX-Target": f"gold-{study['good'].public_id}"},
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert html.lstrip().startswith(f'<div class="gold-mark" id="gold-{study["good"].public_id}"')
    assert "<html" not in html and "Mark saved." in html and "6–8" in html
    mark = GoldAnswer.objects.get(generation=study["good"])
    assert (mark.purpose, mark.low, mark.high, mark.note) == (
        "calibration",
        6,
        8,
        "needs the units",
    )
    assert mark.created_by == admin
    # Changing it updates the same mark.
    client.post(mark_url(study["good"]), {"purpose": "gold", "low": "5", "high": "5"}, headers=HTMX)
    mark.refresh_from_db()
    assert (mark.purpose, mark.low, mark.high, mark.note) == ("gold", 5, 5, "")
    assert GoldAnswer.objects.count() == 1


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"purpose": "gold", "low": "8", "high": "3"}, "high", "below the lowest"),
        ({"purpose": "gold", "low": "-1", "high": "3"}, "low", "greater than or equal to 0"),
        ({"purpose": "gold", "low": "1", "high": "11"}, "high", "less than or equal to 10"),
        ({"purpose": "gold", "low": "1.5", "high": "3"}, "low", "whole number"),
        ({"purpose": "gold", "low": "", "high": "3"}, "low", "required"),
        ({"purpose": "attention", "low": "1", "high": "3"}, "purpose", "valid choice"),
    ],
)
def test_problems_are_shown_next_to_their_fields_and_nothing_is_saved(
    admin: User, study: dict[str, Any], data: dict[str, str], field: str, message: str
) -> None:
    response = logged_in(admin).post(mark_url(study["good"]), data, headers=HTMX)
    assert response.status_code == 200  # htmx 2 swaps only 2xx: the form comes back in place
    html = response.content.decode()
    start = html.index(f'data-field="{field}"')
    assert message in html[start : html.index("</span>", start)]
    assert "open>" in html  # the form stays open with what was typed
    assert GoldAnswer.objects.count() == 0


def test_an_answer_that_failed_cannot_be_marked(admin: User, study: dict[str, Any]) -> None:
    response = logged_in(admin).post(
        mark_url(study["failed"]), {"purpose": "gold", "low": "1", "high": "2"}, headers=HTMX
    )
    assert "did not succeed" in response.content.decode()
    assert not GoldAnswer.objects.exists()


def test_removing_a_mark_and_the_plain_form_post_without_htmx(
    admin: User, study: dict[str, Any]
) -> None:
    client = logged_in(admin)
    gold_list = reverse("gold-list", args=[study["small"].public_id])
    response = client.post(
        mark_url(study["good"]), {"purpose": "gold", "low": "2", "high": "4", "next": gold_list}
    )
    assert response.status_code == 302 and response["Location"] == gold_list
    page = client.get(gold_list).content.decode()
    assert f'data-answer="{study["good"].public_id}"' in page and "2–4" in page
    response = client.post(mark_url(study["good"]), {"remove": "", "next": gold_list})
    assert response.status_code == 302
    assert not GoldAnswer.objects.exists()
    assert "No gold or calibration answers yet." in client.get(gold_list).content.decode()
    # A next that leaves the site is ignored.
    response = client.post(
        mark_url(study["good"]),
        {"purpose": "gold", "low": "2", "high": "4", "next": "https://evil.example/"},
    )
    assert response["Location"] == mark_url(study["good"])


def test_the_mark_page_without_javascript_shows_the_answer_and_the_errors(
    admin: User, study: dict[str, Any]
) -> None:
    client = logged_in(admin)
    page = client.get(mark_url(study["good"])).content.decode()
    assert "<strong>bold</strong>" in page and 'name="low"' in page
    response = client.post(mark_url(study["good"]), {"purpose": "gold", "low": "9", "high": "1"})
    assert response.status_code == 200
    assert "below the lowest" in response.content.decode()


def test_the_drill_down_offers_the_form_and_leaves_check_scores_out_of_the_mean(
    admin: User, alice: User, bob: User, study: dict[str, Any]
) -> None:
    GoldAnswer.objects.create(generation=study["good"], low=7, high=9, note="exemplary")
    builders.score(study["good"], alice, 8)
    check = builders.score(study["good"], bob, 2)
    check.purpose = Purpose.GOLD
    check.save()
    builders.scores_written(study["small"])
    page = logged_in(admin).get(reverse("results-items"), {"task_type": "AR"}).content.decode()
    good = page[page.index(f'id="gold-{study["good"].public_id}"') :]
    assert 'data-marked="yes"' in page and "7–9" in good and "exemplary" in good
    assert f'id="gold-{study["other"].public_id}"' in page
    assert "mean 8.00" in page  # bob's gold check (2) is shown, not counted
    assert "gold check" in page


@pytest.mark.parametrize("persona", ["alice", "nobody"])
def test_only_admins_mark_answers_or_read_the_lists(
    request: pytest.FixtureRequest, persona: str, study: dict[str, Any]
) -> None:
    client: Client = logged_in(request.getfixturevalue(persona))
    answer = study["good"]
    response = client.post(
        mark_url(answer), {"purpose": "gold", "low": "1", "high": "2"}, headers=HTMX
    )
    assert response.status_code == 403
    assert client.post(mark_url(answer), {"remove": ""}).status_code == 403
    assert client.get(reverse("gold-list", args=[study["small"].public_id])).status_code == 403
    assert not GoldAnswer.objects.exists()


# --- Review settings, where admins edit them (the campaign's admin page) ------------------------


def settings_form(admin_client: Client, campaign: Any) -> tuple[str, dict[str, Any]]:
    """The campaign's admin change URL and its form as the page renders it."""
    url = reverse("admin:inference_campaign_change", args=[campaign.pk])
    response = admin_client.get(url)
    data: dict[str, Any] = {}
    for form in (
        [response.context["adminform"].form]
        + [
            f
            for formset in response.context["inline_admin_formsets"]
            for f in formset.formset.forms
        ]
        + [formset.formset.management_form for formset in response.context["inline_admin_formsets"]]
    ):
        for name, field in form.fields.items():
            value = form.initial.get(name, field.initial)
            if value is None:
                continue
            key = form.add_prefix(name)
            if isinstance(value, list | tuple):
                data[key] = [getattr(v, "pk", v) for v in value]
            elif isinstance(value, bool):
                if value:
                    data[key] = "on"
            else:
                data[key] = getattr(value, "pk", value)
    return url, data


def test_admins_edit_the_quality_settings_on_the_campaign_page(
    admin_client: Client, study: dict[str, Any]
) -> None:
    campaign = study["small"]
    url, data = settings_form(admin_client, campaign)
    page = admin_client.get(url).content.decode()
    for name in (
        "gold_rate",
        "calibration",
        "disagreement_spread",
        "reviewers_max",
        "max_chars_per_s",
    ):
        assert f"review-0-{name}" in page
    data.update(
        {
            "review-0-gold_rate": "0.2",
            "review-0-disagreement_spread": "3",
            "review-0-reviewers_max": "4",
            "review-0-max_chars_per_s": "",
            "review-0-calibration": "on",
        }
    )
    response = admin_client.post(url, data, follow=True)
    assert response.status_code == 200, response.content.decode()[:2000]
    review = ReviewSettings.objects.get(campaign=campaign)
    assert (review.gold_rate, review.disagreement_spread, review.reviewers_max) == (0.2, 3, 4)
    assert review.max_chars_per_s is None and review.calibration
    warned = [str(m) for m in response.context["messages"]]
    assert any("no calibration answers" in m for m in warned), warned
    assert "no calibration answers" in admin_client.get(url).content.decode()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"review-0-reviewers_max": "1"}, "At least the reviewers per output (2)"),
        ({"review-0-gold_rate": "1.5"}, "less than or equal to 1.0"),
        ({"review-0-disagreement_spread": "11"}, "less than or equal to 10"),
    ],
)
def test_bad_quality_settings_are_refused_on_the_campaign_page(
    admin_client: Client, study: dict[str, Any], changes: dict[str, str], message: str
) -> None:
    campaign = study["small"]
    url, data = settings_form(admin_client, campaign)
    response = admin_client.post(url, {**data, **changes})
    assert response.status_code == 200
    assert message in response.content.decode()
    review = ReviewSettings.objects.get(campaign=campaign)
    assert (review.gold_rate, review.reviewers_max, review.disagreement_spread) == (0.1, None, None)


def test_the_gold_list_reads_a_fixed_number_of_queries(admin: User, study: dict[str, Any]) -> None:
    client = logged_in(admin)
    url = reverse("gold-list", args=[study["small"].public_id])
    client.get(url)
    counts = []
    for answer in (study["good"], study["other"]):
        GoldAnswer.objects.create(generation=answer, low=1, high=3, created_by=admin)
        with CaptureQueriesContext(connection) as queries:
            page = client.get(url).content.decode()
        counts.append(len(queries))
        assert f'data-answer="{answer.public_id}"' in page
    assert counts[0] == counts[1], counts
