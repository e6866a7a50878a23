"""The items behind one figure of the results (admins only): each item of a task type, every
model's answer to it, and every score each answer got.

An item is listed once per campaign it was asked in, `PER_PAGE` to a page, ordered by campaign
and item id. Choosing a model lists the items that model answered, still with every model's
answer (the one chosen is marked on the page); choosing a reviewer shows only their scores.
The scores of a reviewer excluded from the campaign's results are shown, marked, and left out
of the answer's mean, as are gold and calibration scores (they measure the reviewer). Each
answer carries its gold or calibration mark and the form that sets it (`gold.mark_shown`).
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from django.core.paginator import Page, Paginator
from django.db.models import Prefetch
from django.utils.safestring import SafeString

from inference.models import Campaign, Generation, TaskType

from . import exclusion, gold
from .markdown import render_markdown
from .models import GoldAnswer, Purpose, Score

PER_PAGE = 20


@dataclass(frozen=True)
class ScoreShown:
    reviewer: str
    score: int
    flagged: bool
    comment: str
    excluded: bool = False
    """Given by a reviewer excluded from the campaign's results: shown, not counted."""
    purpose: str = Purpose.REGULAR
    """Gold and calibration scores are shown, marked, not counted."""


@dataclass(frozen=True)
class AnswerShown:
    public_id: str
    model_slug: str
    model_name: str
    sample: int
    status: str
    """The generation's status, in the language of the page."""
    scores: tuple[ScoreShown, ...]
    mean: float | None
    """The mean of the scores shown; None without one."""
    html: SafeString
    """The answer rendered from Markdown, sanitised."""
    mark: gold.MarkShown
    """Its gold or calibration mark, and the form that sets it."""


@dataclass(frozen=True)
class ItemShown:
    public_id: str
    external_id: str
    campaign_slug: str
    prompt: str
    reference: str
    answers: tuple[AnswerShown, ...]
    """By model slug, then sample."""


@dataclass(frozen=True)
class Drilldown:
    page: Page[tuple[int, int]]
    """The page of (campaign id, item id) keys, for the pager and the item count."""
    items: list[ItemShown]


def drill_down(
    task_type: TaskType,
    *,
    campaigns: Sequence[str] = (),
    model: str = "",
    reviewer: str = "",
    page_number: str | None = None,
) -> Drilldown:
    """One page of the items of `task_type` in `campaigns` (public ids; every campaign when
    empty), only those `model` answered when given, with only `reviewer`'s scores when given."""
    chosen = Campaign.objects.all()
    if campaigns:
        chosen = chosen.filter(public_id__in=campaigns)
    generations = Generation.objects.filter(campaign__in=chosen, item__task_type=task_type)
    if model:
        generations = generations.filter(
            item_id__in=generations.filter(endpoint__slug=model).values("item_id")
        )
    keys = (
        generations.order_by("campaign__slug", "item__external_id", "item_id")
        .values_list("campaign_id", "item_id")
        .distinct()
    )
    page = Paginator(keys, PER_PAGE).get_page(page_number)
    scores = Score.objects.select_related("reviewer").order_by("reviewer__username")
    if reviewer:
        scores = scores.filter(reviewer__username=reviewer)
    shown = generations.filter(
        item_id__in=[item for _, item in page.object_list],
        campaign_id__in={campaign for campaign, _ in page.object_list},
    ).select_related("campaign", "endpoint", "item", "gold")
    by_key: dict[tuple[int, int], list[Generation]] = {}
    for generation in shown.prefetch_related(Prefetch("scores", queryset=scores)).order_by(
        "endpoint__slug", "sample"
    ):
        by_key.setdefault((generation.campaign_id, generation.item_id), []).append(generation)
    left_out = exclusion.excluded(list({campaign for campaign, _ in page.object_list}))
    items = [_item(by_key[key], left_out) for key in page.object_list if by_key.get(key)]
    return Drilldown(page=page, items=items)


def _item(answers: list[Generation], left_out: Mapping[int, list[str]]) -> ItemShown:
    item = answers[0].item
    return ItemShown(
        public_id=item.public_id,
        external_id=item.external_id,
        campaign_slug=answers[0].campaign.slug,
        prompt=item.prompt,
        reference=item.reference,
        answers=tuple(
            _answer(generation, set(left_out.get(generation.campaign_id, ())))
            for generation in answers
        ),
    )


def _answer(generation: Generation, left_out: set[str]) -> AnswerShown:
    scores = tuple(
        ScoreShown(
            reviewer=score.reviewer.username,
            score=score.score,
            flagged=score.flagged,
            comment=score.comment,
            excluded=score.reviewer.username in left_out,
            purpose=score.purpose,
        )
        for score in generation.scores.all()
    )
    counted = [s.score for s in scores if not s.excluded and s.purpose == Purpose.REGULAR]
    try:
        marked: GoldAnswer | None = generation.gold
    except GoldAnswer.DoesNotExist:
        marked = None
    return AnswerShown(
        public_id=generation.public_id,
        model_slug=generation.endpoint.slug,
        model_name=generation.endpoint.name,
        sample=generation.sample,
        status=generation.get_status_display(),
        scores=scores,
        mean=statistics.fmean(counted) if counted else None,
        html=render_markdown(generation.content) if generation.content else SafeString(""),
        mark=gold.mark_shown(generation, marked),
    )
