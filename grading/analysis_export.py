"""The bias and ranking CSVs (DESIGN §7.1): what `export_analysis` writes.

Each KIND reads the scores of the chosen campaigns (every campaign by default) in one query and
yields its rows as each figure is computed; the figures are `grading.bias`'s and
`grading.ranking`'s, whose docstrings define them. Cells follow `inference.csv_writing`.

- `ranking` (`RANKING_COLUMNS`): the overall Bradley-Terry fit over every score in view (empty
  `task_type`), then one fit per task type in the study's order; within a fit, best rating
  first, then the models in view with no pair (empty figures, `pairs` 0). An item is the task
  item, whichever campaign it was answered in; an occasion (where two scores make a pair) is
  one reviewer, one campaign, one sample of that item.
- `position` (`POSITION_COLUMNS`): per campaign (by slug), everyone first (empty `reviewer`),
  then each reviewer who scored in it, by username. Imported scores have no known position.
  A campaign with no pair seen at both positions gets empty figures and `scores` 0.
- `length` (`LENGTH_COLUMNS`): per campaign, task type (study order) and pair of the campaign's
  models (in the campaign's order, A before B): the raw and length-controlled difference and
  the controlled difference's CI, over `items` shared items. A pair with no shared item has
  empty figures and `items` 0.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import combinations
from typing import Any

from django.db.models import QuerySet
from django.db.models.functions import Length

from inference.models import CampaignModel, TaskType

from . import bias, ranking
from .models import Score

KINDS = ("ranking", "position", "length")
RANKING_COLUMNS = (
    "task_type",
    "model",
    "rating",
    "ci_low",
    "ci_high",
    "rank_low",
    "rank_high",
    "pairs",
)
POSITION_COLUMNS = ("campaign", "reviewer", "effect", "ci_low", "ci_high", "p_value", "scores")
LENGTH_COLUMNS = (
    "campaign",
    "task_type",
    "model_a",
    "model_b",
    "difference",
    "controlled_difference",
    "ci_low",
    "ci_high",
    "items",
)
COLUMNS = {"ranking": RANKING_COLUMNS, "position": POSITION_COLUMNS, "length": LENGTH_COLUMNS}
CHUNK_SIZE = 2000


def _scores(campaigns: list[str] | None) -> QuerySet[Score]:
    scores = Score.objects.all()
    if campaigns:
        scores = scores.filter(generation__campaign__slug__in=campaigns)
    return scores


def _members(campaigns: list[str] | None) -> QuerySet[CampaignModel]:
    members = CampaignModel.objects.order_by("campaign__slug", "position", "endpoint__slug")
    if campaigns:
        members = members.filter(campaign__slug__in=campaigns)
    return members


def _type_order() -> dict[str, int]:
    return {code: n for n, code in enumerate(TaskType.objects.values_list("code", flat=True))}


def rows(kind: str, campaigns: list[str] | None = None) -> Iterator[tuple[Any, ...]]:
    """The rows of one KIND, for the named campaigns (default: all)."""
    if kind == "ranking":
        return ranking_rows(campaigns)
    if kind == "position":
        return position_rows(campaigns)
    if kind == "length":
        return length_rows(campaigns)
    raise ValueError(f"unknown analysis {kind!r} (known: {', '.join(KINDS)})")


def ranking_rows(campaigns: list[str] | None = None) -> Iterator[tuple[Any, ...]]:
    """`RANKING_COLUMNS`: the overall fit, then one per task type."""
    models = sorted(set(_members(campaigns).values_list("endpoint__slug", flat=True)))
    by_type: dict[str, list[tuple[Any, Any, str, float]]] = {}
    everything: list[tuple[Any, Any, str, float]] = []
    query = _scores(campaigns).values_list(
        "generation__item__task_type__code",
        "generation__item_id",
        "generation__campaign_id",
        "generation__sample",
        "reviewer_id",
        "generation__endpoint__slug",
        "score",
    )
    for code, item, campaign, sample, reviewer, model, value in query.iterator(CHUNK_SIZE):
        row = (item, (reviewer, campaign, sample), model, value)
        everything.append(row)
        by_type.setdefault(code, []).append(row)
    order = _type_order()
    fits = [("", everything), *sorted(by_type.items(), key=lambda kv: order.get(kv[0], 0))]
    for code, scores in fits:
        for r in ranking.ranking(ranking.outcomes(scores, models)):
            yield (code, r.model, r.rating, r.ci_low, r.ci_high, r.rank_low, r.rank_high, r.pairs)


def position_rows(campaigns: list[str] | None = None) -> Iterator[tuple[Any, ...]]:
    """`POSITION_COLUMNS`: per campaign, everyone then each reviewer."""
    query = (
        _scores(campaigns)
        .order_by("generation__campaign__slug")
        .values_list(
            "generation__campaign__slug",
            "reviewer__username",
            "generation__item_id",
            "generation__endpoint__slug",
            "position",
            "imported",
            "score",
        )
    )
    by_campaign: dict[str, list[tuple[str, Any, str, int | None, int]]] = {}
    for campaign, username, item, model, position, imported, value in query.iterator(CHUNK_SIZE):
        by_campaign.setdefault(campaign, []).append(
            (username, item, model, None if imported else position, value)
        )
    slugs = set(_members(campaigns).values_list("campaign__slug", flat=True)) | set(by_campaign)
    for slug in sorted(slugs):
        scores = by_campaign.get(slug, [])
        yield _position_row(slug, "", scores)
        by_reviewer: dict[str, list[tuple[str, Any, str, int | None, int]]] = {}
        for score in scores:
            by_reviewer.setdefault(score[0], []).append(score)
        for username in sorted(by_reviewer):
            yield _position_row(slug, username, by_reviewer[username])


def _position_row(
    campaign: str, reviewer: str, scores: list[tuple[str, Any, str, int | None, int]]
) -> tuple[Any, ...]:
    result = bias.position_bias((item, model, pos, value) for _, item, model, pos, value in scores)
    return (
        campaign,
        reviewer,
        result.effect,
        result.ci_low,
        result.ci_high,
        result.p_value,
        result.scores,
    )


def length_rows(campaigns: list[str] | None = None) -> Iterator[tuple[Any, ...]]:
    """`LENGTH_COLUMNS`: per campaign, task type and pair of its models."""
    members: dict[str, list[str]] = {}
    for slug, model in _members(campaigns).values_list("campaign__slug", "endpoint__slug"):
        members.setdefault(slug, []).append(model)
    query = (
        _scores(campaigns)
        .annotate(characters=Length("generation__content"))
        .values_list(
            "generation__campaign__slug",
            "generation__item__task_type__code",
            "generation__endpoint__slug",
            "generation__item_id",
            "generation_id",
            "generation__completion_tokens",
            "characters",
            "generation__placeholder",
            "score",
        )
    )
    # (campaign, task type) → model → item → generation → [tokens, characters, scores…]
    cells: dict[tuple[str, str], dict[str, dict[Any, dict[Any, list[Any]]]]] = {}
    for campaign, code, model, item, answer, tokens, chars, placeholder, value in query.iterator(
        CHUNK_SIZE
    ):
        answers = cells.setdefault((campaign, code), {}).setdefault(model, {}).setdefault(item, {})
        answers.setdefault(answer, [tokens, None if placeholder else chars]).append(value)
    order = _type_order()
    for slug in sorted(members):
        codes = sorted((c for s, c in cells if s == slug), key=lambda c: order.get(c, 0))
        for code in codes:
            by_model = cells[slug, code]
            for model_a, model_b in combinations(members[slug], 2):
                yield (slug, code, model_a, model_b, *_length_figures(by_model, model_a, model_b))


def _length_figures(
    by_model: dict[str, dict[Any, dict[Any, list[Any]]]], model_a: str, model_b: str
) -> tuple[Any, ...]:
    # (model, item, scores) of every answer of the two models, and its length in one unit.
    answers = [
        (model, item, answer[2:], answer[0], answer[1])
        for model in (model_a, model_b)
        for item, item_answers in by_model.get(model, {}).items()
        for answer in item_answers.values()
    ]
    measured, _ = bias.lengths([a[3] for a in answers], [a[4] for a in answers])
    # model → item → [sum of scores, number of scores, sum of lengths, number of answers]
    sums: dict[str, dict[Any, list[float]]] = {model_a: {}, model_b: {}}
    for (model, item, values, _, _), length in zip(answers, measured, strict=True):
        if length is None:
            continue
        cell = sums[model].setdefault(item, [0.0, 0, 0.0, 0])
        cell[0] += sum(values)
        cell[1] += len(values)
        cell[2] += length
        cell[3] += 1
    a, b = ({item: (c[0] / c[1], c[2] / c[3]) for item, c in sums[m].items()} for m in sums)
    controlled = bias.length_controlled(a, b)
    if controlled is None:
        return (None, None, None, None, 0)
    return (
        controlled.difference,
        controlled.controlled_difference,
        controlled.ci_low,
        controlled.ci_high,
        controlled.items,
    )
