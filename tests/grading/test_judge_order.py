"""The judge-guided review order: people first get what the judges decide least."""

from __future__ import annotations

import random

import pytest
from django.contrib.auth.models import User

from grading import assignment as queue
from grading import judge_order
from grading.models import Layout, ReviewSettings, ReviewUnit
from inference.models import Campaign, Generation, Judgement, JudgementStatus, ModelEndpoint
from tests import builders


def judged_campaign(
    scores: dict[str, list[int | None]], *, layout: str = Layout.SIDE_BY_SIDE, guided: bool = True
) -> tuple[Campaign, ModelEndpoint]:
    """A campaign of three models answering one QA item per key of `scores`; the judge gave
    each model's answer the score at its position (None: the reply was unparseable)."""
    suite = builders.suite("s", [])
    models = [builders.endpoint(f"m{n}") for n in range(3)]
    judge = builders.endpoint("judge")
    campaign = builders.campaign("c", suite, models, reviewers_per_output=1)
    campaign.judges.add(judge)
    ReviewSettings.objects.filter(campaign=campaign).update(
        judge_guided_order=guided, layout=layout
    )
    for item_id, per_model in scores.items():
        item = builders.item(suite, item_id, "QA")
        for model, score in zip(models, per_model, strict=True):
            answer = builders.generation(campaign, item, model)
            judge_answer(answer, judge, score)
    return campaign, judge


def judge_answer(answer: Generation, judge: ModelEndpoint, score: int | None) -> Judgement:
    return Judgement.objects.create(
        campaign_id=answer.campaign_id,
        generation=answer,
        judge=judge,
        prompt_version="judge-v1",
        status=JudgementStatus.PARSED if score is not None else JudgementStatus.UNPARSEABLE,
        score=score,
        raw_output="{}" if score is not None else "I cannot grade this.",
    )


def served_items(campaign: Campaign, reviewers: list[User]) -> list[str]:
    """The items handed out, one reviewer after another (each takes one unit and keeps it)."""
    queue.sync_units(campaign)
    served = []
    for person in reviewers:
        held = queue.next_assignment(person, campaign)
        assert held is not None
        served.append(held.unit.item.external_id)
    return served


def reviewers(n: int) -> list[User]:
    return [builders.reviewer(f"r{index}") for index in range(n)]


@pytest.mark.django_db
def test_unscored_answers_come_first_then_the_closest_judge_scores() -> None:
    campaign, _ = judged_campaign(
        {
            "wide": [2, 9, 5],  # closest pair 3 apart
            "close": [6, 7, 1],  # closest pair 1 apart
            "tie": [4, 4, 8],  # two models the judge cannot tell apart
            "unscored": [3, None, 9],  # one answer the judge could not score
            "medium": [1, 3, 10],  # closest pair 2 apart
        }
    )
    assert served_items(campaign, reviewers(5)) == ["unscored", "tie", "close", "medium", "wide"]


@pytest.mark.django_db
def test_the_plain_order_ignores_the_judges() -> None:
    campaign, _ = judged_campaign({f"i{n}": [n % 3, 5, 10 - n % 4] for n in range(8)}, guided=False)
    queue.sync_units(campaign)
    assert set(ReviewUnit.objects.values_list("judge_rank", flat=True)) == {0}
    # Served by the random shuffle key, as without judges.
    by_key = list(
        ReviewUnit.objects.order_by("shuffle_key").values_list("item__external_id", flat=True)
    )
    assert served_items(campaign, reviewers(8)) == by_key


@pytest.mark.django_db
def test_the_queue_stays_balanced_first_reviews_before_second_ones() -> None:
    campaign, _ = judged_campaign({"far": [0, 10, 5], "near": [5, 5, 0]})
    ReviewSettings.objects.filter(campaign=campaign).update(reviewers_per_output=2)
    first, second, third = reviewers(3)
    assert served_items(campaign, [first]) == ["near"]
    # The next person gets the unit nobody has yet, though the judges decide it better.
    assert served_items(campaign, [second]) == ["far"]
    assert served_items(campaign, [third]) == ["near"]


@pytest.mark.django_db
def test_new_judgements_and_turning_the_setting_on_reorder_the_queue() -> None:
    campaign, _ = judged_campaign({"a": [5, 6, 9], "b": [0, 4, 8]}, guided=False)
    queue.sync_units(campaign)
    ReviewSettings.objects.filter(campaign=campaign).update(judge_guided_order=True)
    queue.sync_units(campaign)
    assert ranks(campaign) == {"a": 0, "b": 1}
    # A second judge finds the b answers indistinguishable: b now comes first.
    other = builders.endpoint("judge-2")
    campaign.judges.add(other)
    for answer in Generation.objects.filter(item__external_id="b"):
        judge_answer(answer, other, 5 if answer.endpoint.slug != "m2" else 0)
    # m0: (0+5)/2 = 2.5, m1: (4+5)/2 = 4.5, m2: (8+0)/2 = 4 → closest pair 0.5 apart.
    queue.sync_units(campaign)
    assert ranks(campaign) == {"b": 0, "a": 1}
    # Off again: every rank is 0; on again: the ranks come back, though nothing else changed.
    ReviewSettings.objects.filter(campaign=campaign).update(judge_guided_order=False)
    queue.sync_units(campaign)
    assert set(ranks(campaign).values()) == {0}
    ReviewSettings.objects.filter(campaign=campaign).update(judge_guided_order=True)
    queue.sync_units(campaign)
    assert ranks(campaign) == {"b": 0, "a": 1}


@pytest.mark.django_db
def test_single_answer_units_rank_by_their_answers_closest_rival() -> None:
    campaign, _ = judged_campaign({"x": [2, 3, 9], "y": [None, 0, 10]}, layout=Layout.SINGLE)
    queue.sync_units(campaign)
    rank_of = {
        (item_id, model): rank
        for item_id, model, rank in ReviewUnit.objects.values_list(
            "item__external_id", "generation__endpoint__slug", "judge_rank"
        )
    }
    # Item y has an answer the judge could not score: each of its answers has an undecided
    # rival, so all three come first; then x's m0 and m1 (1 apart), then x's m2 (6 from m1).
    assert {rank_of[("y", model)] for model in ("m0", "m1", "m2")} == {0, 1, 2}
    assert {rank_of[("x", "m0")], rank_of[("x", "m1")]} == {3, 4}
    assert rank_of[("x", "m2")] == 5


def ranks(campaign: Campaign) -> dict[str, int]:
    return dict(campaign.review_units.values_list("item__external_id", "judge_rank"))


@pytest.mark.parametrize("seed", range(200))
def test_ranks_serve_undecided_then_increasing_margins(seed: int) -> None:
    rng = random.Random(seed)
    units = {
        n: [rng.choice([None, *range(11)]) for _ in range(rng.randint(1, 4))]
        for n in range(rng.randint(0, 30))
    }
    margins = {unit: judge_order.unit_margin(scores) for unit, scores in units.items()}
    keys = {unit: rng.randrange(2**31) for unit in units}
    ranked = judge_order.ranks(margins, keys)
    assert sorted(ranked.values()) == list(range(len(units)))
    served = sorted(units, key=ranked.__getitem__)
    # Recomputed apart: undecided (any unscored answer), then smallest gap, then one answer.
    for unit, scores in units.items():
        known = sorted(s for s in scores if s is not None)
        if None in scores:
            assert margins[unit] == judge_order.UNDECIDED
        elif len(known) < 2:
            assert margins[unit] is None
        else:
            assert margins[unit] == min(known[i + 1] - known[i] for i in range(len(known) - 1))
    order = [
        (0 if margins[u] == judge_order.UNDECIDED else 1 if margins[u] is not None else 2)
        for u in served
    ]
    assert order == sorted(order)
    decided = [margins[u] or 0.0 for u in served if margins[u] not in (None, judge_order.UNDECIDED)]
    assert decided == sorted(decided)
