"""The items behind a figure: every model's answer, the scores chosen, as plain values."""

from __future__ import annotations

import dataclasses

import pytest

from grading import drilldown
from grading.drilldown import ScoreShown
from inference.models import Campaign, TaskType
from tests.grading.test_results_pages import build_fixed_study

pytestmark = pytest.mark.django_db


@pytest.fixture
def fixed(db: None) -> Campaign:
    """QA-0…QA-5 and TC-0, TC-1 answered by alpha-m and beta-m; QA-0 also failed once."""
    return build_fixed_study()


def test_every_answer_to_an_item_is_shown_with_its_scores_and_their_mean(fixed: Campaign) -> None:
    shown = drilldown.drill_down(TaskType.objects.get(code="QA"))
    assert shown.page.paginator.count == 6
    first = shown.items[0]
    assert (first.external_id, first.campaign_slug, first.prompt) == ("QA-0", "fixed", "p QA 0")
    alpha, failed, beta = first.answers
    assert [alpha.model_slug, alpha.model_name, alpha.sample] == ["alpha-m", "Alpha-M", 0]
    assert alpha.status == "succeeded"
    assert alpha.scores == (
        ScoreShown("rev-one", 8, False, ""),
        ScoreShown("rev-two", 6, False, ""),
    )
    assert alpha.mean == 7.0 and "answer of alpha-m to QA-0" in alpha.html
    assert (failed.sample, failed.status, failed.mean, failed.html) == (1, "failed", None, "")
    assert failed.scores == ()
    assert beta.model_slug == "beta-m"


def test_choosing_a_reviewer_keeps_every_answer_but_only_their_scores(fixed: Campaign) -> None:
    shown = drilldown.drill_down(TaskType.objects.get(code="QA"), reviewer="rev-two")
    alpha, _, beta = shown.items[0].answers
    assert (alpha.scores, alpha.mean) == ((ScoreShown("rev-two", 6, False, ""),), 6.0)
    assert [score.reviewer for score in beta.scores] == ["rev-two"]


def test_items_are_filtered_by_model_and_campaign_and_paged(
    fixed: Campaign, monkeypatch: pytest.MonkeyPatch
) -> None:
    tc = TaskType.objects.get(code="TC")
    by_alpha = drilldown.drill_down(tc, campaigns=[fixed.public_id], model="alpha-m")
    assert [item.external_id for item in by_alpha.items] == ["TC-0", "TC-1"]
    assert [a.model_slug for a in by_alpha.items[0].answers] == ["alpha-m", "beta-m"]
    assert drilldown.drill_down(tc, model="nobody").items == []
    assert drilldown.drill_down(tc, campaigns=["no-such-campaign"]).items == []
    monkeypatch.setattr(drilldown, "PER_PAGE", 4)
    second = drilldown.drill_down(TaskType.objects.get(code="QA"), page_number="2")
    assert [item.external_id for item in second.items] == ["QA-4", "QA-5"]


def test_what_the_page_is_given_holds_no_model_instances(fixed: Campaign) -> None:
    def plain(value: object) -> bool:
        if dataclasses.is_dataclass(value):
            return all(plain(getattr(value, f.name)) for f in dataclasses.fields(value))
        if isinstance(value, tuple | list):
            return all(plain(part) for part in value)
        return isinstance(value, str | int | float | bool | type(None))

    assert plain(drilldown.drill_down(TaskType.objects.get(code="QA")).items)
