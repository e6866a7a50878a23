"""The review queue with reviewer-quality checks (DESIGN §11): gold units mixed in at the
campaign's gold rate, calibration first, extra reviews when the first scores disagree."""

from __future__ import annotations

import csv
import io
from collections import Counter
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.urls import reverse

from grading import assignment as queue
from grading.models import (
    Assignment,
    GoldAnswer,
    Purpose,
    ReviewSettings,
    ReviewUnit,
    Score,
)
from inference.models import Campaign, Generation
from tests import builders
from tests.conftest import logged_in
from tests.grading.test_assignment import full_scores, make_campaign

pytestmark = pytest.mark.django_db


def mark(
    campaign: Campaign,
    item: str,
    *,
    model: str = "m0",
    purpose: str = Purpose.GOLD,
    low: int = 6,
    high: int = 8,
    note: str = "",
) -> GoldAnswer:
    """An admin's mark on one answer (what import_gold and the admin UI create)."""
    answer = Generation.objects.get(campaign=campaign, item__external_id=item, endpoint__slug=model)
    return GoldAnswer.objects.create(
        generation=answer, low=low, high=high, note=note, purpose=purpose
    )


def configure(campaign: Campaign, **values: Any) -> None:
    ReviewSettings.objects.filter(campaign=campaign).update(**values)


def work_through(reviewer: User, value: Any = 7) -> list[ReviewUnit]:
    """Everything the queue gives `reviewer`, each submitted at once, in the order given."""
    given = []
    while (held := queue.next_assignment(reviewer)) is not None:
        given.append(held.unit)
        assert queue.submit(held, full_scores(held, value))
    return given


def items_of(units: list[ReviewUnit]) -> list[tuple[int, int, int | None]]:
    return [(u.item_id, u.sample, u.generation_id) for u in units]


class TestGoldUnits:
    def test_a_gold_unit_shows_all_of_its_items_answers_like_the_regular_one(self) -> None:
        campaign = make_campaign(items=3)
        mark(campaign, "i1")
        assert queue.sync_units(campaign) == 1
        gold = ReviewUnit.objects.get(purpose=Purpose.GOLD)
        regular = ReviewUnit.objects.get(purpose=Purpose.REGULAR, item=gold.item)
        assert gold.generation_id is None and regular.generation_id is None
        assert sorted(queue._answers(gold)) == sorted(queue._answers(regular))
        assert len(queue._answers(gold)) == 2
        assert queue.sync_units(campaign) == 0
        # Two marked answers of one item still make one gold unit.
        mark(campaign, "i1", model="m1")
        assert queue.sync_units(campaign) == 0

    def test_single_layout_makes_one_gold_unit_for_the_marked_answer(self) -> None:
        campaign = make_campaign(items=2, k=1)
        ReviewUnit.objects.all().delete()
        configure(campaign, layout="single")
        gold = mark(campaign, "i0", model="m1")
        assert queue.sync_units(campaign) == 5  # 4 answers + 1 gold
        unit = ReviewUnit.objects.get(purpose=Purpose.GOLD)
        assert unit.generation_id == gold.generation_id
        assert queue._answers(unit) == [gold.generation.public_id]

    def test_no_gold_unit_for_an_answer_still_running_or_without_text(self) -> None:
        campaign = make_campaign(items=2)
        mark(campaign, "i0")
        Generation.objects.filter(item__external_id="i0", endpoint__slug="m1").update(
            status="running"
        )
        mark(campaign, "i1")
        Generation.objects.filter(item__external_id="i1", endpoint__slug="m0").update(
            status="failed", content=""
        )
        queue.sync_units(campaign)
        assert not ReviewUnit.objects.filter(purpose=Purpose.GOLD).exists()

    def test_a_mark_added_later_gets_its_unit_at_the_next_sync(self) -> None:
        campaign = make_campaign(items=2)
        alice = builders.reviewer("alice")
        assert queue.next_assignment(alice) is not None
        mark(campaign, "i1")
        queue.sync_units(campaign)
        assert ReviewUnit.objects.filter(purpose=Purpose.GOLD).count() == 1

    def test_removing_a_mark_deletes_an_unused_unit_and_stops_serving_a_used_one(self) -> None:
        campaign = make_campaign(items=12, k=2)
        configure(campaign, gold_rate=1.0)
        used, unused = mark(campaign, "i0"), mark(campaign, "i1")
        queue.sync_units(campaign)
        alice, bob, carol = (builders.reviewer(n) for n in ("alice", "bob", "carol"))
        held = queue.next_assignment(alice)
        assert held is not None and held.unit.purpose == Purpose.GOLD
        queue.submit(held, full_scores(held, 9))
        used_unit = held.unit
        # alice had one of the two gold units; remove both marks.
        other = ReviewUnit.objects.get(purpose=Purpose.GOLD, item=unused.generation.item)
        if other.pk == used_unit.pk:  # alice was given i1's unit: swap the names
            used, unused = unused, used
            other = ReviewUnit.objects.get(purpose=Purpose.GOLD, item=unused.generation.item)
        used.delete()
        unused.delete()
        queue.sync_units(campaign)
        assert not ReviewUnit.objects.filter(pk=other.pk).exists()
        kept = ReviewUnit.objects.get(pk=used_unit.pk)
        assert Score.objects.filter(assignment__unit=kept, purpose=Purpose.GOLD).count() == 2
        assert all(u.purpose == Purpose.REGULAR for u in work_through(bob))
        # Marked again: the same unit is served again.
        GoldAnswer.objects.create(generation=used.generation, low=1, high=2)
        assert queue.sync_units(campaign) == 0
        first = queue.next_assignment(carol)
        assert first is not None and first.unit_id == kept.pk

    def test_gold_units_have_no_holders_cap(self) -> None:
        campaign = make_campaign(items=20, k=1)
        configure(campaign, gold_rate=1.0)
        mark(campaign, "i3")
        queue.sync_units(campaign)
        gold = ReviewUnit.objects.get(purpose=Purpose.GOLD)
        reviewers = [builders.reviewer(f"r{n}") for n in range(5)]
        for reviewer in reviewers:
            held = queue.next_assignment(reviewer)
            assert held is not None and held.unit_id == gold.pk
        gold.refresh_from_db()
        assert gold.holders == 5

    def test_gold_comes_only_while_the_reviewer_has_regular_work_in_its_campaign(self) -> None:
        campaign = make_campaign(items=3, k=1)
        configure(campaign, gold_rate=1.0)
        mark(campaign, "i0")
        mark(campaign, "i1")
        queue.sync_units(campaign)
        configure(campaign, gold_rate=0.0)
        work_through(builders.reviewer("bob"))  # bob fills every regular unit's one place
        configure(campaign, gold_rate=1.0)
        alice = builders.reviewer("alice")
        assert queue.available_count(alice) == 0
        assert queue.next_assignment(alice) is None

    @pytest.mark.parametrize("rate", [0.0, 0.3, 1.0])
    def test_gold_is_mixed_in_at_the_gold_rate(self, rate: float) -> None:
        campaign = make_campaign(items=400, k=1)
        configure(campaign, gold_rate=rate)
        for n in range(0, 400, 2):  # 200 gold units: more than the draws can use up
            mark(campaign, f"i{n}")
        queue.sync_units(campaign)
        alice = builders.reviewer("alice")
        draws = []
        for _ in range(100):
            held = queue.next_assignment(alice)
            assert held is not None
            draws.append(held.unit.purpose == Purpose.GOLD)
            queue.submit(held, full_scores(held))
        # Binomial(100, 0.3): mean 30, sd 4.6; ±5 sd.
        low, high = {0.0: (0, 0), 0.3: (7, 53), 1.0: (100, 100)}[rate]
        assert low <= sum(draws) <= high

    def test_where_gold_comes_differs_between_reviewers(self) -> None:
        campaign = make_campaign(items=60, k=20)
        configure(campaign, gold_rate=0.2)
        for n in range(0, 60, 3):
            mark(campaign, f"i{n}")
        queue.sync_units(campaign)
        patterns = set()
        for n in range(8):
            reviewer = builders.reviewer(f"r{n}")
            pattern = []
            for _ in range(15):
                held = queue.next_assignment(reviewer)
                assert held is not None
                pattern.append(held.unit.purpose == Purpose.GOLD)
                queue.submit(held, full_scores(held))
            patterns.add(tuple(pattern))
        assert len(patterns) > 1

    def test_a_reviewer_never_gets_two_units_of_one_item(self) -> None:
        campaign = make_campaign(items=10, k=3)
        configure(campaign, gold_rate=0.5)
        for n in range(10):
            mark(campaign, f"i{n}")
        queue.sync_units(campaign)
        for name in ("alice", "bob", "carol", "dan"):
            given = work_through(builders.reviewer(name))
            keys = items_of(given)
            assert len(keys) == len(set(keys)) == 10
        assert (
            Counter(Score.objects.values_list("generation", "reviewer")).most_common(1)[0][1] == 1
        )

    def test_gold_scores_carry_their_purpose_and_stay_out_of_results_and_exports(self) -> None:
        campaign = make_campaign(items=6, k=1)
        configure(campaign, gold_rate=1.0)
        mark(campaign, "i2")
        queue.sync_units(campaign)
        alice = builders.reviewer("alice")
        given = []
        while (held := queue.next_assignment(alice)) is not None:
            given.append(held.unit.purpose)
            # gold answers scored 0, regular ones 8: a gold score counted would move the mean
            queue.submit(held, full_scores(held, 0 if held.unit.purpose == "gold" else 8))
        assert given.count(Purpose.GOLD) == 1 and given[0] == Purpose.GOLD
        # i2 was alice's gold item, so i2's regular unit is not hers: 5 regular ones.
        assert given.count(Purpose.REGULAR) == 5
        assert set(Score.objects.filter(purpose="gold").values_list("score", flat=True)) == {0}
        assert Score.objects.filter(purpose="gold").count() == 2
        assert set(Score.objects.counted().values_list("score", flat=True)) == {8}
        out = io.StringIO()
        call_command("export_scores", stdout=out)
        rows = list(csv.DictReader(io.StringIO(out.getvalue())))
        assert len(rows) == 10 and {r["score"] for r in rows} == {"8"}
        assert "i2" not in {r["item_id"] for r in rows}
        out = io.StringIO()
        call_command("export_scores", "--aggregate", stdout=out)
        aggregate = list(csv.DictReader(io.StringIO(out.getvalue())))
        assert {r["mean"] for r in aggregate} == {"8"} and {r["scores"] for r in aggregate} == {"5"}


class TestCalibration:
    def calibrated(self, items: int = 6, marked: int = 2) -> Campaign:
        campaign = make_campaign(items=items, k=2)
        configure(campaign, calibration=True, gold_rate=0.0)
        for n in range(marked):
            mark(campaign, f"i{n}", purpose=Purpose.CALIBRATION, low=3, high=4, note="why")
        queue.sync_units(campaign)
        return campaign

    def test_calibration_units_come_first_and_block_other_work_of_the_campaign(self) -> None:
        self.calibrated()
        alice = builders.reviewer("alice")
        given = work_through(alice)
        purposes = [u.purpose for u in given]
        assert purposes[:2] == [Purpose.CALIBRATION] * 2
        assert purposes[2:] == [Purpose.REGULAR] * 4  # i0 and i1 were her calibration items
        assert set(
            Score.objects.filter(reviewer=alice, purpose="calibration").values_list(
                "generation__item__external_id", flat=True
            )
        ) == {"i0", "i1"}
        assert not Score.objects.counted().filter(generation__item__external_id__in=["i0", "i1"])

    def test_a_reviewer_holding_calibration_cannot_reach_regular_work(self) -> None:
        self.calibrated()
        alice = builders.reviewer("alice")
        first = queue.next_assignment(alice)
        assert first is not None and first.unit.purpose == Purpose.CALIBRATION
        assert queue.next_assignment(alice) == first  # still the same one, until scored
        queue.skip(first)  # a script could skip through the API; the page refuses it
        second = queue.next_assignment(alice)
        assert second is not None and second.unit.purpose == Purpose.CALIBRATION

    def test_calibration_off_never_serves_calibration_units(self) -> None:
        campaign = self.calibrated()
        configure(campaign, calibration=False)
        given = work_through(builders.reviewer("alice"))
        assert [u.purpose for u in given] == [Purpose.REGULAR] * 6

    def test_an_empty_calibration_set_blocks_no_one(self) -> None:
        campaign = self.calibrated(marked=0)
        assert ReviewSettings.objects.get(campaign=campaign).calibration
        given = work_through(builders.reviewer("alice"))
        assert [u.purpose for u in given] == [Purpose.REGULAR] * 6

    def test_calibration_of_one_campaign_does_not_hold_back_another(self) -> None:
        self.calibrated(items=2, marked=2)
        other = make_campaign(items=3, k=1)
        alice = builders.reviewer("alice")
        held = queue.next_assignment(alice, other)
        assert held is not None and held.unit.campaign_id == other.pk


class TestExtraReviews:
    def disagreeing(self, spread: int | None = 3, most: int | None = 4) -> Campaign:
        campaign = make_campaign(items=1, k=2)
        configure(campaign, disagreement_spread=spread, reviewers_max=most)
        return campaign

    def review(self, reviewer: User, values: tuple[int, int]) -> Assignment:
        held = queue.next_assignment(reviewer)
        assert held is not None
        answers = sorted(held.order)  # by answer, whatever order they were shown in
        queue.submit(held, {pid: {"score": v} for pid, v in zip(answers, values, strict=True)})
        return held

    def test_scores_that_spread_ask_for_more_reviewers_up_to_the_maximum(self) -> None:
        self.disagreeing()
        r = [builders.reviewer(f"r{n}") for n in range(6)]
        self.review(r[0], (5, 2))
        assert ReviewUnit.objects.get().extra_reviews == 0
        self.review(r[1], (5, 5))  # answer B: 2 and 5, spread 3
        assert ReviewUnit.objects.get().extra_reviews == 2
        self.review(r[2], (1, 1))
        self.review(r[3], (9, 9))
        assert queue.next_assignment(r[4]) is None
        unit = ReviewUnit.objects.get()
        assert (unit.submitted, unit.holders, unit.extra_reviews) == (4, 4, 2)

    def test_scores_that_agree_ask_for_nothing(self) -> None:
        self.disagreeing()
        r = [builders.reviewer(f"r{n}") for n in range(3)]
        self.review(r[0], (5, 2))
        self.review(r[1], (7, 4))  # spreads of 2 and 2
        assert ReviewUnit.objects.get().extra_reviews == 0
        assert queue.next_assignment(r[2]) is None

    @pytest.mark.parametrize(("spread", "most"), [(None, 4), (3, None), (3, 2), (3, 1)])
    def test_off_unless_both_settings_allow_more_than_k(
        self, spread: int | None, most: int | None
    ) -> None:
        self.disagreeing(spread, most)
        self.review(builders.reviewer("a"), (0, 0))
        self.review(builders.reviewer("b"), (10, 10))
        assert ReviewUnit.objects.get().extra_reviews == 0

    def test_decided_once_when_the_kth_review_comes_in(self) -> None:
        self.disagreeing()
        a, b = builders.reviewer("a"), builders.reviewer("b")
        self.review(a, (5, 5))
        held = self.review(b, (6, 6))
        assert ReviewUnit.objects.get().extra_reviews == 0
        queue.edit(held, {pid: {"score": 0} for pid in held.order})  # now they disagree
        assert ReviewUnit.objects.get().extra_reviews == 0

    def test_gold_scores_never_ask_for_extra_reviews(self) -> None:
        campaign = make_campaign(items=4, k=1)
        configure(campaign, disagreement_spread=1, reviewers_max=3, gold_rate=1.0)
        mark(campaign, "i0")
        queue.sync_units(campaign)
        for n, value in enumerate((0, 10, 0)):
            held = queue.next_assignment(builders.reviewer(f"r{n}"))
            assert held is not None and held.unit.purpose == Purpose.GOLD
            queue.submit(held, full_scores(held, value))
        assert ReviewUnit.objects.get(purpose=Purpose.GOLD).extra_reviews == 0


def test_the_number_waiting_moves_the_same_after_a_gold_unit_as_after_a_regular_one() -> None:
    campaign = make_campaign(items=30, k=1)
    configure(campaign, gold_rate=0.5)
    for n in range(0, 30, 3):
        mark(campaign, f"i{n}")
    queue.sync_units(campaign)
    alice = builders.reviewer("alice")
    steps: dict[str, set[int]] = {}
    before = queue.available_count(alice)
    for _ in range(12):
        held = queue.next_assignment(alice)
        assert held is not None
        after = queue.available_count(alice)
        steps.setdefault(held.unit.purpose, set()).add(before - after)
        queue.submit(held, full_scores(held))
        before = queue.available_count(alice)
    assert steps.get("gold") == steps.get("regular") == {1}


def test_a_held_items_gold_unit_waits_with_it_and_is_released_with_it(admin: User) -> None:
    campaign = make_campaign(items=3, k=1)
    ReviewUnit.objects.all().delete()
    configure(campaign, identity_leaks="hold", gold_rate=1.0)
    Generation.objects.filter(item__external_id="i0", endpoint__slug="m1").update(
        identity_leaks=["DeepSeek"]
    )
    mark(campaign, "i0")
    queue.sync_units(campaign)
    assert ReviewUnit.objects.get(purpose=Purpose.GOLD).held_for_admin
    alice = builders.reviewer("alice")
    assert all(u.purpose == Purpose.REGULAR for u in work_through(alice))
    # The admin page lists the item once, and releasing it releases its gold unit too.
    regular = ReviewUnit.objects.get(purpose=Purpose.REGULAR, item__external_id="i0")
    client = logged_in(admin)
    url = reverse("held-items", args=[campaign.public_id])
    assert client.get(url).context["total"] == 1
    client.post(url, {"unit": str(regular.pk)})
    assert not ReviewUnit.objects.filter(held_for_admin=True).exists()
    held = queue.next_assignment(builders.reviewer("bob"))
    assert held is not None and held.unit.purpose == Purpose.GOLD


def queries_of_a_pick_and_submit(items: int, name: str) -> tuple[int, int]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    campaign = make_campaign(items=items, k=2)
    configure(campaign, gold_rate=0.0, disagreement_spread=1, reviewers_max=3)
    for n in range(0, items, 3):
        mark(campaign, f"i{n}")
    queue.sync_units(campaign)
    first, second = builders.reviewer(f"{name}-a"), builders.reviewer(f"{name}-b")
    while (mine := queue.next_assignment(first, campaign)) is not None:
        queue.submit(mine, full_scores(mine, 0))  # every regular unit has its first review
    with CaptureQueriesContext(connection) as picked:
        held = queue.next_assignment(second, campaign)
    assert held is not None
    with CaptureQueriesContext(connection) as submitted:
        queue.submit(held, full_scores(held, 10))  # the k-th review, spread 10: asks for more
    assert ReviewUnit.objects.get(pk=held.unit_id).extra_reviews == 1
    return len(picked), len(submitted)


def test_picking_and_submitting_take_as_many_queries_whatever_the_number_of_units() -> None:
    assert queries_of_a_pick_and_submit(6, "small") == queries_of_a_pick_and_submit(60, "big")
