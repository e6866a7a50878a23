"""How far review has got: a reviewer's own progress and a campaign's."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from grading import assignment as queue
from grading import progress
from grading.progress import ReviewerPace, UnitCounts
from inference.models import Campaign
from tests.grading.test_review_pages import build_study

pytestmark = pytest.mark.django_db


@pytest.fixture
def study(db: None) -> Campaign:
    """Three items of two answers each, two reviews wanted per item."""
    return build_study(items=3)


def test_a_reviewer_sees_their_own_progress_and_their_campaigns(
    study: Campaign, alice: User
) -> None:
    held = queue.next_assignment(alice)
    assert held is not None
    assert progress.reviewer_progress(alice, study.pk) == {
        "scored": 0,
        "available": 2,
        "mine_total": 3,  # the one held counts as theirs
        "campaign_wanted": 6,
        "campaign_done": 0,
    }
    queue.submit(held, {pid: {"score": 7} for pid in held.order})
    shown = progress.reviewer_progress(alice, study.pk)
    assert (shown["scored"], shown["mine_total"], shown["campaign_done"]) == (1, 3, 1)


def test_a_campaign_counts_its_units_reviews_wanted_and_each_reviewers_pace(
    study: Campaign, alice: User, bob: User
) -> None:
    for reviewer, seconds in ((alice, 30.0), (bob, None), (alice, 50.0), (bob, None)):
        held = queue.next_assignment(reviewer)
        assert held is not None
        queue.submit(held, {pid: {"score": 5} for pid in held.order}, seconds_spent=seconds)

    shown = progress.campaign_progress(study)

    assert shown["units"] == UnitCounts(total=3, complete=1, held=0, submitted=4)
    assert (shown["k"], shown["remaining"]) == (2, 2)
    assert shown["reviewers"] == [
        ReviewerPace(username="alice", scores=4, median_s=20.0),  # 15 s and 25 s per answer
        ReviewerPace(username="bob", scores=4, median_s=None),
    ]
