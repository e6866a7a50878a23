"""The bias and ranking figures (DESIGN §7.1): what `export_analysis` writes and the bias and
ranking pages show (`grading.analyses`), computed by the same functions here.

`read` takes the scores of the chosen campaigns (every campaign by default) in one query;
`ranking_fits`, `position_figures`, `length_figures` and `association_figures` compute each
analysis from what it read, and each KIND's CSV rows are those figures, in that order. The
figures are `grading.bias`'s and `grading.ranking`'s, whose docstrings define them. Cells follow
`inference.csv_writing`.

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
- `association` (`ASSOCIATION_COLUMNS`): per campaign, task type (study order) and model (in
  the campaign's order) with a scored answer: Spearman's rho between answer length and the
  answer's mean score, its CI, the answers and items it rests on and the length's `unit`
  (`tokens` when every answer of the cell has a count, else `characters`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Any, NamedTuple

from django.db.models import QuerySet
from django.db.models.functions import Length

from inference.models import CampaignModel, TaskType

from . import bias, ranking
from .models import Score

KINDS = ("ranking", "position", "length", "association")
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
ASSOCIATION_COLUMNS = (
    "campaign",
    "task_type",
    "model",
    "unit",
    "rho",
    "ci_low",
    "ci_high",
    "answers",
    "items",
)
COLUMNS = {
    "ranking": RANKING_COLUMNS,
    "position": POSITION_COLUMNS,
    "length": LENGTH_COLUMNS,
    "association": ASSOCIATION_COLUMNS,
}
CHUNK_SIZE = 5000


class Row(NamedTuple):
    """One score with what the analyses need of it."""

    campaign: str
    task_type: str
    item: int
    answer: int
    sample: int
    reviewer: str
    model: str
    position: int | None
    """None for an imported score: its position is not known."""
    score: int
    tokens: int | None
    characters: int | None
    """None when we do not hold the answer's text (a placeholder)."""


@dataclass(frozen=True)
class Data:
    """The scores of some campaigns, their models in campaign order, the task types' order."""

    rows: list[Row]
    members: dict[str, list[str]]
    """Campaign slug → its models (endpoint slugs) in the campaign's order."""
    type_order: dict[str, int]


def read(
    campaigns: Sequence[str] | None = None, *, campaign_ids: Sequence[int] | None = None
) -> Data:
    """The scores of the campaigns named by slug (or by id), every campaign by default."""
    scores = Score.objects.counted().order_by()
    members = CampaignModel.objects.order_by("campaign__slug", "position", "endpoint__slug")
    if campaigns:
        scores = scores.filter(generation__campaign__slug__in=campaigns)
        members = members.filter(campaign__slug__in=campaigns)
    if campaign_ids is not None:
        scores = scores.filter(generation__campaign_id__in=campaign_ids)
        members = members.filter(campaign_id__in=campaign_ids)
    by_campaign: dict[str, list[str]] = {}
    for slug, model in members.values_list("campaign__slug", "endpoint__slug"):
        by_campaign.setdefault(slug, []).append(model)
    return Data(list(_rows(scores)), by_campaign, _type_order())


def _rows(scores: QuerySet[Score]) -> Iterator[Row]:
    query = scores.annotate(characters=Length("generation__content")).values_list(
        "generation__campaign__slug",
        "generation__item__task_type__code",
        "generation__item_id",
        "generation_id",
        "generation__sample",
        "reviewer__username",
        "generation__endpoint__slug",
        "position",
        "imported",
        "score",
        "generation__completion_tokens",
        "characters",
        "generation__placeholder",
    )
    for (campaign, code, item, answer, sample, username, model, position, imported, value,
         tokens, characters, placeholder) in query.iterator(CHUNK_SIZE):  # fmt: skip
        yield Row(
            campaign, code, item, answer, sample, username, model,
            None if imported else position, value, tokens, None if placeholder else characters,
        )  # fmt: skip


def _type_order() -> dict[str, int]:
    codes = TaskType.objects.order_by("position", "code").values_list("code", flat=True)
    return {code: n for n, code in enumerate(codes)}


def rows(kind: str, campaigns: list[str] | None = None) -> Iterator[tuple[Any, ...]]:
    """The rows of one KIND, for the named campaigns (default: all)."""
    if kind not in KINDS:
        raise ValueError(f"unknown analysis {kind!r} (known: {', '.join(KINDS)})")
    return kind_rows(kind, read(campaigns))


def kind_rows(kind: str, data: Data) -> Iterator[tuple[Any, ...]]:
    """The CSV rows of one KIND from data already read."""
    if kind == "ranking":
        return ranking_rows(data)
    if kind == "position":
        return position_rows(data)
    if kind == "length":
        return length_rows(data)
    if kind == "association":
        return association_rows(data)
    raise ValueError(f"unknown analysis {kind!r} (known: {', '.join(KINDS)})")


# --- Ranking -------------------------------------------------------------------------------------


def ranking_fits(data: Data) -> Iterator[tuple[str, list[ranking.Rating]]]:
    """The overall fit (task type "") over every score read, then one per task type."""
    models = sorted({m for members in data.members.values() for m in members})
    by_type: dict[str, list[tuple[Any, Any, str, float]]] = {}
    everything: list[tuple[Any, Any, str, float]] = []
    for r in data.rows:
        scored = (r.item, (r.reviewer, r.campaign, r.sample), r.model, r.score)
        everything.append(scored)
        by_type.setdefault(r.task_type, []).append(scored)
    order = data.type_order
    fits = [("", everything), *sorted(by_type.items(), key=lambda kv: order.get(kv[0], 0))]
    for code, scores in fits:
        yield code, ranking.ranking(ranking.outcomes(scores, models))


def ranking_row(code: str, r: ranking.Rating) -> tuple[Any, ...]:
    return (code, r.model, r.rating, r.ci_low, r.ci_high, r.rank_low, r.rank_high, r.pairs)


def ranking_rows(data: Data) -> Iterator[tuple[Any, ...]]:
    """`RANKING_COLUMNS`: the overall fit, then one per task type."""
    for code, fit in ranking_fits(data):
        for r in fit:
            yield ranking_row(code, r)


# --- Position ------------------------------------------------------------------------------------


def _by_campaign(data: Data) -> dict[str, list[Row]]:
    found: dict[str, list[Row]] = {}
    for r in data.rows:
        found.setdefault(r.campaign, []).append(r)
    return found


def _campaign_slugs(data: Data, by_campaign: dict[str, list[Row]]) -> list[str]:
    return sorted(set(data.members) | set(by_campaign))


def position_figures(data: Data) -> Iterator[tuple[str, str, bias.PositionBias]]:
    """Per campaign (by slug): everyone (reviewer ""), then each reviewer by username."""
    by_campaign = _by_campaign(data)
    for slug in _campaign_slugs(data, by_campaign):
        scores = by_campaign.get(slug, [])
        yield slug, "", _position(scores)
        by_reviewer: dict[str, list[Row]] = {}
        for score in scores:
            by_reviewer.setdefault(score.reviewer, []).append(score)
        for username in sorted(by_reviewer):
            yield slug, username, _position(by_reviewer[username])


def _position(scores: list[Row]) -> bias.PositionBias:
    return bias.position_bias((r.item, r.model, r.position, r.score) for r in scores)


def position_row(campaign: str, reviewer: str, result: bias.PositionBias) -> tuple[Any, ...]:
    return (
        campaign,
        reviewer,
        result.effect,
        result.ci_low,
        result.ci_high,
        result.p_value,
        result.scores,
    )


def position_rows(data: Data) -> Iterator[tuple[Any, ...]]:
    """`POSITION_COLUMNS`: per campaign, everyone then each reviewer."""
    for campaign, reviewer, result in position_figures(data):
        yield position_row(campaign, reviewer, result)


def balance_figures(data: Data) -> dict[str, bias.PositionBalance]:
    """Per campaign: its model × position counts and the chi-square test of independence."""
    by_campaign = _by_campaign(data)
    return {
        slug: bias.position_balance((r.model, r.position) for r in by_campaign.get(slug, []))
        for slug in _campaign_slugs(data, by_campaign)
    }


# --- Length --------------------------------------------------------------------------------------

# (campaign, task type) → model → item → answer → [tokens, characters, scores…]
Cells = dict[tuple[str, str], dict[str, dict[Any, dict[Any, list[Any]]]]]


def answer_cells(data: Data) -> Cells:
    """The scores read, grouped by campaign, task type, model, item and answer."""
    cells: Cells = {}
    for r in data.rows:
        by_item = cells.setdefault((r.campaign, r.task_type), {}).setdefault(r.model, {})
        answers = by_item.setdefault(r.item, {})
        answers.setdefault(r.answer, [r.tokens, r.characters]).append(r.score)
    return cells


def _cell_keys(data: Data, cells: Cells) -> Iterator[tuple[str, str]]:
    """(campaign, task type) with scores, campaigns by slug, task types in the study's order."""
    order = data.type_order
    for slug in sorted(data.members):
        for code in sorted((c for s, c in cells if s == slug), key=lambda c: order.get(c, 0)):
            yield slug, code


def length_figures(
    data: Data, cells: Cells | None = None
) -> Iterator[tuple[str, str, str, str, bias.LengthControlled | None]]:
    """Per campaign, task type and pair of the campaign's models (A before B)."""
    cells = answer_cells(data) if cells is None else cells
    for slug, code in _cell_keys(data, cells):
        by_model = cells[slug, code]
        for model_a, model_b in combinations(data.members[slug], 2):
            yield slug, code, model_a, model_b, _length_controlled(by_model, model_a, model_b)


def length_row(
    campaign: str, code: str, a: str, b: str, result: bias.LengthControlled | None
) -> tuple[Any, ...]:
    if result is None:
        return (campaign, code, a, b, None, None, None, None, 0)
    return (
        campaign,
        code,
        a,
        b,
        result.difference,
        result.controlled_difference,
        result.ci_low,
        result.ci_high,
        result.items,
    )


def length_rows(data: Data) -> Iterator[tuple[Any, ...]]:
    """`LENGTH_COLUMNS`: per campaign, task type and pair of its models."""
    for figures in length_figures(data):
        yield length_row(*figures)


def _answers(
    by_model: dict[str, dict[Any, dict[Any, list[Any]]]], models: Sequence[str]
) -> tuple[list[tuple[str, Any, list[int], int | None]], str]:
    """(model, item, scores, length) of every answer of these models, the lengths in one unit
    over all of them (`bias.lengths`; None: no length), and that unit."""
    answers = [
        (model, item, answer[2:], answer[0], answer[1])
        for model in models
        for item, item_answers in by_model.get(model, {}).items()
        for answer in item_answers.values()
    ]
    measured, unit = bias.lengths([a[3] for a in answers], [a[4] for a in answers])
    return [
        (model, item, values, length)
        for (model, item, values, _, _), length in zip(answers, measured, strict=True)
    ], unit


def _length_controlled(
    by_model: dict[str, dict[Any, dict[Any, list[Any]]]], model_a: str, model_b: str
) -> bias.LengthControlled | None:
    answers, _ = _answers(by_model, (model_a, model_b))
    # model → item → [sum of scores, number of scores, sum of lengths, number of answers]
    sums: dict[str, dict[Any, list[float]]] = {model_a: {}, model_b: {}}
    for model, item, values, length in answers:
        if length is None:
            continue
        cell = sums[model].setdefault(item, [0.0, 0, 0.0, 0])
        cell[0] += sum(values)
        cell[1] += len(values)
        cell[2] += length
        cell[3] += 1
    a, b = ({item: (c[0] / c[1], c[2] / c[3]) for item, c in sums[m].items()} for m in sums)
    return bias.length_controlled(a, b)


def answer_points(
    by_model: dict[str, dict[Any, dict[Any, list[Any]]]], model: str
) -> tuple[list[tuple[Any, float, float]], str]:
    """(item, length, mean score) of each of a model's answers with a length, and the unit."""
    answers, unit = _answers(by_model, (model,))
    return [
        (item, float(length), sum(values) / len(values))
        for _, item, values, length in answers
        if length is not None
    ], unit


def association_figures(
    data: Data, cells: Cells | None = None
) -> Iterator[tuple[str, str, str, str, bias.LengthAssociation]]:
    """Per campaign, task type and model with scores: (campaign, code, model, unit, rho…)."""
    cells = answer_cells(data) if cells is None else cells
    for slug, code in _cell_keys(data, cells):
        by_model = cells[slug, code]
        for model in data.members[slug]:
            if model not in by_model:
                continue
            points, unit = answer_points(by_model, model)
            yield slug, code, model, unit, bias.length_association(points)


def association_row(
    campaign: str, code: str, model: str, unit: str, result: bias.LengthAssociation
) -> tuple[Any, ...]:
    return (
        campaign,
        code,
        model,
        unit,
        result.rho,
        result.ci_low,
        result.ci_high,
        result.answers,
        result.items,
    )


def association_rows(data: Data) -> Iterator[tuple[Any, ...]]:
    """`ASSOCIATION_COLUMNS`: per campaign, task type and model."""
    for figures in association_figures(data):
        yield association_row(*figures)
