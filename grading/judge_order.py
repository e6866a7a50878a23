"""Humans where they matter: a review order that serves first what the judges decide least.

A campaign may turn on `ReviewSettings.judge_guided_order` (off by default). Its review units
are then served, among those with the same number of submitted and held reviews (the queue
stays balanced: every unit gets its first review before any gets a second), in this order:

1. units with an answer no judge gave a score to (unparseable, failed, or not judged yet):
   the judge says nothing about them, so people must;
2. then by the judges' *margin*, smallest first. An answer's judge score is the mean of the
   parsed scores the campaign's judges gave it (any prompt version); a side-by-side unit's
   margin is the smallest gap between the judge scores of two of its answers (the closest
   pair of models on that item); a single-answer unit's margin is the smallest gap between its
   answer and the other answers to the same item and sample (undecided, as in 1, when its
   answer or one of those has no judge score). A unit with one answer and no other to compare
   with has no margin and comes last;
3. ties broken by the unit's random `shuffle_key`, as in the plain order.

So the first human scores go to the items where the judges cannot tell the models apart, or
could not score at all — where a judge verdict is least trustworthy and a person's is worth the
most. Outside those ties the plain rules hold (least submitted, then least held).

The rank is stored on each unit (`ReviewUnit.judge_rank`, 0 = first) so that handing out work
stays one indexed query. It is recomputed when the campaign's finished judgements change (one
aggregate query tells), from `sync_units`, which runs whenever a reviewer opens the queue.
With the setting off every rank is 0 and the order is the plain one.

What it buys was measured by simulation (`python tests/benchmarks/bench_judge_order.py`: 300
studies of 200 items, two models 0.5 apart on average, human noise 1, judge noise 1.2, 5%
unparseable replies). After a quarter of the units, people have seen 58% of the items where the
judge's verdict is wrong (25% in the plain order), and judge-where-no-human, human-where-scored
verdicts are right on 71.7% of items (59.1%). The price: the human-only matchup test needs more
units to separate the two models (median 125 against 85), because the items the judge finds
close are those where the models differ least. So the setting suits a study that will rely on
its judge and wants people to check it where it is weakest; a study that reports human figures
alone and wants them early should keep the plain order.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Mapping, Sequence
from itertools import pairwise
from typing import TypeVar

from django.core.cache import cache
from django.db.models import Count, Max

from inference.models import Campaign, Judgement, JudgementStatus

from .models import ReviewSettings, ReviewUnit

U = TypeVar("U", bound=Hashable)

UNDECIDED = -1.0
"""The margin of a unit with an answer no judge scored: it sorts before every real margin."""


def unit_margin(judge_scores: Sequence[float | None]) -> float | None:
    """The smallest gap between two judge scores of one unit's answers.

    `UNDECIDED` when any answer has no judge score; None when there are fewer than two answers
    (nothing to tell apart).
    """
    if any(score is None for score in judge_scores):
        return UNDECIDED
    known = sorted(score for score in judge_scores if score is not None)
    if len(known) < 2:
        return None
    return min(b - a for a, b in pairwise(known))


def ranks(margins: Mapping[U, float | None], shuffle_keys: Mapping[U, int]) -> dict[U, int]:
    """Serving rank per unit (0 first): undecided, then smallest margin, no margin last."""

    def key(unit: U) -> tuple[int, float, int]:
        margin = margins[unit]
        if margin is None:
            return (1, 0.0, shuffle_keys[unit])
        return (0, margin, shuffle_keys[unit])

    return {unit: rank for rank, unit in enumerate(sorted(margins, key=key))}


def _answer_scores(campaign: Campaign) -> dict[int, float | None]:
    """Mean parsed judge score per reviewable answer of the campaign (None: no score)."""
    scores: dict[int, list[int]] = defaultdict(list)
    parsed = Judgement.objects.parsed().filter(campaign=campaign).order_by()
    for generation_id, score in parsed.values_list("generation_id", "score"):
        if score is not None:
            scores[generation_id].append(score)
    answers = campaign.generations.reviewable().order_by().values_list("pk", flat=True)
    return {pk: (sum(scores[pk]) / len(scores[pk]) if scores[pk] else None) for pk in answers}


def _margins(campaign: Campaign, units: list[ReviewUnit]) -> dict[int, float | None]:
    by_answer = _answer_scores(campaign)
    per_item: dict[tuple[int, int], dict[int, float | None]] = defaultdict(dict)
    rows = campaign.generations.reviewable().order_by().values_list("pk", "item_id", "sample")
    for pk, item_id, sample in rows:
        per_item[(item_id, sample)][pk] = by_answer.get(pk)
    margins: dict[int, float | None] = {}
    for unit in units:
        answers = per_item.get((unit.item_id, unit.sample), {})
        if unit.generation_id is None:
            margins[unit.pk] = unit_margin(list(answers.values()))
            continue
        own = answers.get(unit.generation_id)
        others = [score for pk, score in answers.items() if pk != unit.generation_id]
        pairs = [unit_margin([own, other]) for other in others]
        known = [margin for margin in pairs if margin is not None]
        margins[unit.pk] = min(known) if known else None
    return margins


def _state(campaign: Campaign) -> str:
    """What the order depends on: the units and the finished judgements."""
    finished = Judgement.objects.filter(campaign=campaign).exclude(
        status__in=[JudgementStatus.QUEUED, JudgementStatus.RUNNING]
    )
    judged = finished.aggregate(n=Count("pk"), last=Max("finished_at"))
    units = campaign.review_units.aggregate(n=Count("pk"), last=Max("pk"))
    return f"{judged['n']}:{judged['last']}:{units['n']}:{units['last']}"


def refresh(campaign: Campaign, review: ReviewSettings) -> bool:
    """Recompute the units' judge ranks if what they depend on changed; True if it did."""
    cache_key = f"judge-order:{campaign.pk}"
    if not review.judge_guided_order:
        cache.delete(cache_key)
        return bool(campaign.review_units.exclude(judge_rank=0).update(judge_rank=0))
    state = _state(campaign)
    if cache.get(cache_key) == state:
        return False
    units = list(campaign.review_units.only("pk", "item_id", "sample", "generation_id"))
    keys = dict(campaign.review_units.values_list("pk", "shuffle_key"))
    wanted = ranks(_margins(campaign, units), keys)
    current = dict(campaign.review_units.values_list("pk", "judge_rank"))
    changed = [
        ReviewUnit(pk=pk, judge_rank=rank) for pk, rank in wanted.items() if current[pk] != rank
    ]
    ReviewUnit.objects.bulk_update(changed, ["judge_rank"], batch_size=1000)
    cache.set(cache_key, state, timeout=None)
    return True
