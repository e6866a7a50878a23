"""The review queue: balanced, never over-assigned, safe under concurrency; score validation."""

from __future__ import annotations

import random
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from grading import assignment as queue
from grading.models import Assignment, ReviewSettings, ReviewUnit, Score
from inference.models import Campaign, Generation, ModelEndpoint, Suite
from tests import builders
from tests.conftest import all_at_once


def make_campaign(items: int = 3, k: int = 2, models: int = 2) -> Campaign:
    """A finished campaign of `models` models (`m0`, `m1`, … shared between campaigns) that
    all answered `items` QA items (`i0`, `i1`, …), its review units made."""
    suite = Suite.objects.create(name=f"s{Suite.objects.count()}")
    endpoints = [
        ModelEndpoint.objects.filter(slug=f"m{n}").first() or builders.endpoint(f"m{n}")
        for n in range(models)
    ]
    campaign = builders.campaign(
        f"c{Campaign.objects.count()}", suite, endpoints, reviewers_per_output=k
    )
    for n in range(items):
        item = builders.item(suite, f"i{n}", "QA")
        for endpoint in endpoints:
            builders.generation(campaign, item, endpoint)
    queue.sync_units(campaign)
    return campaign


def full_scores(assignment: Assignment, value: Any = 7) -> dict[str, dict[str, Any]]:
    return {pid: {"score": value} for pid in assignment.order}


@pytest.mark.django_db
class TestQueue:
    def test_units_are_created_once_for_items_with_answers(self) -> None:
        campaign = make_campaign(items=3)
        assert ReviewUnit.objects.filter(campaign=campaign).count() == 3
        assert queue.sync_units(campaign) == 0

    def test_items_still_running_wait(self) -> None:
        campaign = make_campaign(items=2)
        ReviewUnit.objects.all().delete()
        Generation.objects.filter(item__external_id="i0").update(status="running")
        queue.sync_units(campaign)
        assert list(ReviewUnit.objects.values_list("item__external_id", flat=True)) == ["i1"]

    def test_each_assignment_shows_every_answer_in_a_random_order(self) -> None:
        make_campaign(items=30)
        orders = []
        for name in ("alice", "bob"):
            reviewer = builders.reviewer(name)
            while (a := queue.next_assignment(reviewer)) is not None:
                assert len(a.order) == 2
                orders.append(tuple(sorted(a.order)) == tuple(a.order))
                queue.submit(a, full_scores(a))
        assert len(orders) == 60
        assert 10 < sum(orders) < 50  # both orders occur: shuffled, not creation order

    def test_least_reviewed_first_and_never_the_same_unit_twice(self) -> None:
        make_campaign(items=3, k=3)
        alice, bob = builders.reviewer("alice"), builders.reviewer("bob")
        first = queue.next_assignment(alice)
        assert first is not None
        queue.submit(first, full_scores(first))
        second = queue.next_assignment(bob)
        assert second is not None and second.unit_id != first.unit_id  # an unreviewed unit first
        seen = {first.unit_id}
        while (a := queue.next_assignment(alice)) is not None:
            assert a.unit_id not in seen
            seen.add(a.unit_id)
            queue.submit(a, full_scores(a))
        assert len(seen) == 3

    def test_a_reviewer_keeps_one_reservation_until_done(self) -> None:
        make_campaign(items=3)
        alice = builders.reviewer("alice")
        first = queue.next_assignment(alice)
        assert first is not None and queue.next_assignment(alice) == first

    def test_no_more_than_k_holders(self) -> None:
        make_campaign(items=1, k=2)
        reviewers = [builders.reviewer(f"r{n}") for n in range(4)]
        got = [queue.next_assignment(r) for r in reviewers]
        assert sum(a is not None for a in got) == 2
        assert ReviewUnit.objects.get().holders == 2

    def test_expired_reservations_free_their_place(self) -> None:
        make_campaign(items=1, k=1)
        alice, bob = builders.reviewer("alice"), builders.reviewer("bob")
        held = queue.next_assignment(alice)
        assert held is not None and queue.next_assignment(bob) is None
        Assignment.objects.filter(pk=held.pk).update(
            expires_at=timezone.now() - timedelta(seconds=1)
        )
        assert queue.next_assignment(bob) is not None
        assert ReviewUnit.objects.get().holders == 1

    def test_skip_gives_the_unit_back_but_not_to_the_same_reviewer(self) -> None:
        make_campaign(items=1, k=1)
        alice, bob = builders.reviewer("alice"), builders.reviewer("bob")
        held = queue.next_assignment(alice)
        assert held is not None
        queue.skip(held)
        assert queue.next_assignment(alice) is None
        assert queue.next_assignment(bob) is not None

    def test_restricted_campaign_serves_only_its_reviewers(self) -> None:
        campaign = make_campaign(items=2)
        alice, bob = builders.reviewer("alice"), builders.reviewer("bob")
        campaign.review.reviewers.add(alice)
        assert queue.next_assignment(bob) is None
        assert queue.next_assignment(alice) is not None

    def test_draft_campaigns_are_not_served(self) -> None:
        campaign = make_campaign(items=2)
        Campaign.objects.filter(pk=campaign.pk).update(status="draft")
        assert queue.next_assignment(builders.reviewer("alice")) is None


@pytest.mark.django_db
class TestSubmit:
    @pytest.mark.parametrize("bad", ["7.5", "11", "", "-1", "seven", None, " "])
    def test_scores_must_be_whole_numbers_0_to_10(self, bad: Any) -> None:
        make_campaign(items=1)
        held = queue.next_assignment(builders.reviewer("alice"))
        assert held is not None
        with pytest.raises(queue.ScoreError, match="whole number from 0 to 10"):
            queue.submit(held, full_scores(held, bad))
        assert Score.objects.count() == 0
        held.refresh_from_db()
        assert held.status == "reserved"

    def test_every_answer_needs_a_score(self) -> None:
        make_campaign(items=1)
        held = queue.next_assignment(builders.reviewer("alice"))
        assert held is not None
        with pytest.raises(queue.ScoreError, match="1 left"):
            queue.submit(held, {held.order[0]: {"score": 3}})
        assert Score.objects.count() == 0

    def test_submit_records_positions_rubric_and_flags(self) -> None:
        make_campaign(items=1)
        held = queue.next_assignment(builders.reviewer("alice"))
        assert held is not None
        scores = full_scores(held, "10")
        scores[held.order[1]] = {
            "score": "0",
            "comment": " names itself ",
            "flag_reason": "identity",
        }
        assert queue.submit(held, scores, seconds_spent=30)
        stored = {
            s.generation.public_id: s for s in Score.objects.select_related("generation", "rubric")
        }
        assert [stored[pid].position for pid in held.order] == [0, 1]
        assert stored[held.order[0]].score == 10 and stored[held.order[1]].score == 0
        assert stored[held.order[1]].flagged and stored[held.order[1]].comment == "names itself"
        assert stored[held.order[0]].rubric.version == 1
        assert stored[held.order[0]].seconds_spent == 15

    def test_double_submit_saves_one_score_per_answer(self) -> None:
        make_campaign(items=1)
        held = queue.next_assignment(builders.reviewer("alice"))
        assert held is not None
        assert queue.submit(held, full_scores(held)) is True
        assert queue.submit(held, full_scores(held, 2)) is False
        assert Score.objects.count() == 2
        assert set(Score.objects.values_list("score", flat=True)) == {7}
        assert ReviewUnit.objects.get().submitted == 1


@pytest.mark.django_db(transaction=True)
def test_twenty_reviewers_at_once_never_exceed_k_holders() -> None:
    make_campaign(items=6, k=2)
    reviewers = [builders.reviewer(f"r{n}") for n in range(20)]
    results = all_at_once(queue.next_assignment, reviewers)
    given = [a for a in results if a is not None]
    assert len(given) == 12  # 6 units × 2 reviewers, every place filled, none twice
    holders = Counter(a.unit_id for a in given)
    assert max(holders.values()) == 2
    assert all(u.holders == 2 for u in ReviewUnit.objects.all())
    assert len({(a.unit_id, a.reviewer_id) for a in given}) == 12


@pytest.mark.django_db
def test_hold_policy_keeps_answers_naming_a_model_from_reviewers() -> None:
    campaign = make_campaign(items=2)
    ReviewUnit.objects.all().delete()
    campaign.review.identity_leaks = "hold"
    campaign.review.save()
    leaking = Generation.objects.filter(campaign=campaign, item__external_id="i0").first()
    assert leaking is not None
    Generation.objects.filter(pk=leaking.pk).update(identity_leaks=["DeepSeek"])
    queue.sync_units(campaign)
    alice = builders.reviewer("alice")
    given = []
    while (a := queue.next_assignment(alice)) is not None:
        given.append(a.unit.item.external_id)
        queue.submit(a, full_scores(a))
    assert given == ["i1"]
    assert ReviewUnit.objects.get(item__external_id="i0").held_for_admin


@pytest.mark.django_db
def test_single_response_layout_reviews_each_answer_on_its_own() -> None:
    campaign = make_campaign(items=2, k=1)
    ReviewUnit.objects.all().delete()
    campaign.review.layout = "single"
    campaign.review.save()
    assert queue.sync_units(campaign) == 4  # 2 items × 2 models
    assert queue.sync_units(campaign) == 0
    alice = builders.reviewer("alice")
    seen = []
    while (a := queue.next_assignment(alice)) is not None:
        assert len(a.order) == 1
        seen.append(a.order[0])
        queue.submit(a, full_scores(a, 5))
    assert len(set(seen)) == 4
    assert Score.objects.filter(reviewer=alice).count() == 4
    assert set(Score.objects.values_list("position", flat=True)) == {0}


@pytest.mark.django_db
class TestResultsOpen:
    """Once an admin opens a campaign's results to reviewers, grading it must stop."""

    def open_results(self, campaign: Campaign) -> int:
        return queue.open_results(campaign)

    def scored_then_opened(self, items: int) -> tuple[Campaign, User, Assignment]:
        """A campaign of `items` items in which alice scored one unit 3s before results opened."""
        campaign = make_campaign(items=items)
        alice = builders.reviewer("alice")
        held = queue.next_assignment(alice)
        assert held is not None
        queue.submit(held, full_scores(held, 3))
        self.open_results(campaign)
        return campaign, alice, held

    def test_open_campaign_offers_no_more_work(self) -> None:
        campaign = make_campaign(items=3)
        alice = builders.reviewer("alice")
        assert queue.available_count(alice) == 3
        self.open_results(campaign)
        assert queue.available_count(alice) == 0
        assert queue.next_assignment(alice) is None

    def test_opening_drops_reservations_and_refuses_their_submit(self) -> None:
        campaign = make_campaign(items=2)
        alice = builders.reviewer("alice")
        held = queue.next_assignment(alice)
        assert held is not None
        assert self.open_results(campaign) == 1
        assert ReviewUnit.objects.get(pk=held.unit_id).holders == 0
        assert not Assignment.objects.filter(pk=held.pk).exists()
        with pytest.raises(queue.ScoreError, match="grading of this campaign has ended"):
            queue.submit(held, full_scores(held))
        assert not Score.objects.exists()

    def test_submitted_scores_cannot_be_edited_after_results_open(self) -> None:
        _, _, held = self.scored_then_opened(items=1)
        with pytest.raises(queue.ScoreError, match="grading of this campaign has ended"):
            queue.edit(held, full_scores(held, 9))
        assert set(Score.objects.values_list("score", flat=True)) == {3}

    def test_hiding_results_again_never_reopens_grading(self) -> None:
        campaign, alice, held = self.scored_then_opened(items=2)
        queue.hide_results(campaign)
        review = ReviewSettings.objects.get(campaign=campaign)
        assert not review.results_open and review.grading_ended
        assert queue.available_count(alice) == 0
        assert queue.next_assignment(alice) is None
        assert queue.next_assignment(builders.reviewer("bob")) is None
        with pytest.raises(queue.ScoreError, match="grading of this campaign has ended"):
            queue.edit(held, full_scores(held, 9))
        assert set(Score.objects.values_list("score", flat=True)) == {3}


@pytest.mark.django_db
def test_submitting_and_editing_scores_bump_the_campaigns_scores_version() -> None:
    """The results pages' cache keys on this version: every write of scores must move it."""
    campaign = make_campaign(items=1)
    alice = builders.reviewer("alice")

    def version() -> int:
        return ReviewSettings.objects.get(campaign=campaign).scores_version

    held = queue.next_assignment(alice)
    assert held is not None and version() == 0
    queue.submit(held, full_scores(held, 4))
    assert version() == 1
    queue.edit(held, full_scores(held, 6))
    assert version() == 2


@pytest.mark.django_db(transaction=True)
def test_twenty_reviewers_at_once_with_gold_and_extra_review_units() -> None:
    """20 reviewers work a campaign through at the same time: gold units mixed in at 0.5 and
    extra reviews asked whenever an answer's first two scores spread by 5 or more (scores are 0
    or 10 at random, so about half the units ask for them)."""
    from grading.models import GoldAnswer, Purpose

    campaign = make_campaign(items=8, k=2)
    ReviewSettings.objects.filter(campaign=campaign).update(
        gold_rate=0.5, disagreement_spread=5, reviewers_max=4
    )
    for answer in Generation.objects.filter(
        campaign=campaign, endpoint__slug="m0", item__external_id__in=["i0", "i3", "i5"]
    ):
        GoldAnswer.objects.create(generation=answer, low=4, high=6)
    queue.sync_units(campaign)
    assert ReviewUnit.objects.filter(purpose=Purpose.GOLD).count() == 3
    reviewers = [builders.reviewer(f"r{n}") for n in range(20)]

    def work(reviewer: User) -> int:
        rng = random.Random(reviewer.pk)
        given = 0
        while (held := queue.next_assignment(reviewer)) is not None:
            queue.submit(held, {pid: {"score": rng.choice((0, 10))} for pid in held.order})
            given += 1
        return given

    first = all_at_once(work, reviewers)
    # Extra reviews asked by the last submits of the first round may find everyone gone:
    # a second round takes them, as reviewers coming back later would.
    all_at_once(work, reviewers)
    assert sum(first) > 0

    regular = ReviewUnit.objects.filter(purpose=Purpose.REGULAR)
    assert regular.filter(extra_reviews__gt=0).exists()
    for unit in ReviewUnit.objects.all():
        live = Assignment.objects.live().filter(unit=unit).count()
        assert unit.holders == live == unit.submitted, unit
        if unit.purpose == Purpose.REGULAR:
            assert unit.extra_reviews in (0, 2)
            # Every place filled (no reviewer left without work while one remained), none more.
            assert unit.submitted == 2 + unit.extra_reviews, unit
    assigned = list(
        Assignment.objects.values_list(
            "reviewer_id", "unit_id", "unit__item_id", "unit__sample", "unit__purpose"
        )
    )
    assert len({(r, unit) for r, unit, *_ in assigned}) == len(assigned)
    per_item = Counter((r, item, sample) for r, _, item, sample, _ in assigned)
    assert max(per_item.values()) == 1  # never two units of one item to one person
    gold_given = [row for row in assigned if row[4] == Purpose.GOLD]
    assert gold_given  # mixed in
    for reviewer in reviewers:
        assert queue.available_count(reviewer) == 0
    assert not Score.objects.counted().filter(assignment__unit__purpose=Purpose.GOLD).exists()
    assert Score.objects.filter(purpose=Purpose.GOLD).count() == 2 * len(gold_given)
