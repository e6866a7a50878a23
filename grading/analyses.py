"""What the bias and ranking pages show (DESIGN §7.1): position bias, length bias and the
Bradley-Terry ranking of a set of campaigns.

Two layers, as the results pages (`grading.comparison`):

- `build` reads the campaigns' scores once (`analysis_export.read`) and computes every figure
  with the functions `export_analysis` uses (`analysis_export.ranking_fits`, `position_figures`,
  `balance_figures`, `length_figures`, `association_figures`), so the page and the CSVs agree
  to the last digit. The result (`Analyses`) is cached per scope and rebuilt in the background
  by `grading.freshness` (kind `ANALYSES`), keyed on the data as the results figures are.
- `select` applies the task-type and modality filters: no query, no bootstrap.

Scope (DESIGN §7). Position bias, the balance check, the length association and the
length-controlled differences are per campaign, from that campaign's scores only, on every
page. The ranking is one fit over every score in view: on the overview it pools the campaigns
shown, and the page says so, names them (`pooled_over`) and gives the fairness note where their
sampling settings differ. The length-versus-score chart draws one colour per model: on the
overview it pools the campaigns that have the model, said beside the chart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from inference.models import TaskType

from . import analysis_export, bias, comparison, ranking
from .comparison import CampaignInfo, Filters, ModelInfo, TaskTypeInfo

CACHE_VERSION = 1
POINTS_PER_CELL = 100
"""At most this many answers per (campaign, task type, model) in the length-versus-score chart
(an even, seeded sample): a chart of 100,000 points helps nobody and weighs megabytes."""
SIGNIFICANT = 0.05


@dataclass(frozen=True)
class PositionRow:
    campaign: str
    reviewer: str
    """"" for everyone."""
    result: bias.PositionBias

    @property
    def significant(self) -> bool:
        p = self.result.p_value
        return p is not None and p < SIGNIFICANT


@dataclass(frozen=True)
class LengthRow:
    campaign: str
    task_type: str
    a: str
    b: str
    result: bias.LengthControlled | None

    @property
    def verdict(self) -> str:
        """ "holds": the controlled difference's CI excludes 0 on the side of the plain
        difference; "gone": the CI includes 0 while the plain difference is not 0; "reversed":
        the CI excludes 0 on the other side; "": no controlled figure."""
        r = self.result
        if r is None or r.ci_low is None or r.ci_high is None:
            return ""
        if not r.difference:
            return ""
        if r.ci_low > 0 or r.ci_high < 0:
            return "holds" if (r.ci_low > 0) == (r.difference > 0) else "reversed"
        return "gone"


@dataclass(frozen=True)
class AssociationRow:
    campaign: str
    task_type: str
    model: str
    unit: str
    result: bias.LengthAssociation


@dataclass
class Analyses:
    """Every bias and ranking figure of a set of campaigns, before filters."""

    campaigns: list[CampaignInfo]
    task_types: list[TaskTypeInfo]
    models: list[ModelInfo]
    scores: int
    fits: list[tuple[str, list[ranking.Rating]]]
    """The overall fit (task type "") first, then one per task type."""
    position: list[PositionRow]
    balance: dict[str, bias.PositionBalance]
    length: list[LengthRow]
    association: list[AssociationRow]
    points: dict[tuple[str, str, str], tuple[str, list[tuple[float, float]]]]
    """(campaign, task type, model) → (unit, [(length, mean score)…]), at most
    `POINTS_PER_CELL` answers each."""
    pooled_over: dict[str, tuple[str, ...]]
    """Per model: the campaigns in view with a score of it (what the ranking pools)."""


def build(infos: Sequence[CampaignInfo], *, reviewer: str = "") -> Analyses:
    """Read the campaigns' scores and compute every figure (see the module doc).

    `reviewer` is accepted for `grading.freshness` and must be "": these pages analyse everyone
    (per-reviewer position rows are part of every figure set).
    """
    if reviewer:
        raise ValueError("the bias and ranking figures are not filtered by reviewer")
    data = analysis_export.read(campaign_ids=[info.pk for info in infos])
    cells = analysis_export.answer_cells(data)
    points: dict[tuple[str, str, str], tuple[str, list[tuple[float, float]]]] = {}
    for (slug, code), by_model in cells.items():
        for model in by_model:
            answers, unit = analysis_export.answer_points(by_model, model)
            points[slug, code, model] = (unit, _sample([(x, y) for _, x, y in answers]))
    present: set[tuple[str, str]] = {(r.campaign, r.model) for r in data.rows}
    pooled_over: dict[str, tuple[str, ...]] = {}
    for info in infos:
        for model in info.models:
            if (info.slug, model) in present:
                pooled_over[model] = (*pooled_over.get(model, ()), info.slug)
    used = {r.task_type for r in data.rows}
    models = list(dict.fromkeys(slug for info in infos for slug in info.models))
    names = comparison._endpoint_names(models)
    return Analyses(
        campaigns=list(infos),
        task_types=[
            TaskTypeInfo(t.code, t.name_en, t.name_zh, t.modality)
            for t in TaskType.objects.order_by("position", "code")
            if t.code in used
        ],
        models=[ModelInfo(slug, names.get(slug, slug)) for slug in models],
        scores=len(data.rows),
        fits=list(analysis_export.ranking_fits(data)),
        position=[PositionRow(*row) for row in analysis_export.position_figures(data)],
        balance=analysis_export.balance_figures(data),
        length=[LengthRow(*row) for row in analysis_export.length_figures(data, cells)],
        association=[
            AssociationRow(*row) for row in analysis_export.association_figures(data, cells)
        ],
        points=points,
        pooled_over=pooled_over,
    )


def _sample(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Up to `POINTS_PER_CELL` of the points, the same ones every time."""
    points.sort()
    if len(points) <= POINTS_PER_CELL:
        return points
    picks = np.random.default_rng(0).choice(len(points), POINTS_PER_CELL, replace=False)
    return [points[i] for i in sorted(picks)]


# --- What one page shows -----------------------------------------------------------------------


@dataclass
class Selection:
    base: Analyses
    filters: Filters
    task_types: list[TaskTypeInfo]
    overall: list[ranking.Rating]
    """The overall fit: every task type in view, whatever the filter."""
    by_type: list[tuple[TaskTypeInfo, list[ranking.Rating]]]
    position: list[PositionRow]
    """Everyone, per campaign."""
    reviewers: list[PositionRow]
    """Per campaign and reviewer: only ever handed to admins' pages."""
    balance: list[tuple[CampaignInfo, bias.PositionBalance, list[tuple[str, list[int]]]]]
    """Per campaign: the balance check and its (model, counts per position) lines."""
    length: list[LengthRow]
    association: list[AssociationRow]
    points: dict[tuple[str, str, str], tuple[str, list[tuple[float, float]]]]
    fairness: list[str] = field(default_factory=list)
    pooling: list[comparison.PoolingNote] = field(default_factory=list)


def select(base: Analyses, filters: Filters, *, admin: bool) -> Selection:
    """Narrow the figures to the task types and modality chosen; per-reviewer rows to admins."""
    task_types = [
        t
        for t in base.task_types
        if (not filters.task_types or t.code in filters.task_types)
        and (not filters.modality or t.modality == filters.modality)
    ]
    types = {t.code: t for t in task_types}
    by_slug = {c.slug: c for c in base.campaigns}
    overall: list[ranking.Rating] = []
    by_type = []
    for code, fit in base.fits:
        if code == "":
            overall = fit
        elif code in types:
            by_type.append((types[code], fit))
    return Selection(
        base=base,
        filters=filters,
        task_types=task_types,
        overall=overall,
        by_type=by_type,
        position=[r for r in base.position if not r.reviewer],
        reviewers=[r for r in base.position if r.reviewer] if admin else [],
        balance=[
            (by_slug[s], b, [(str(m), line) for m, line in zip(b.models, b.counts, strict=True)])
            for s, b in base.balance.items()
            if s in by_slug
        ],
        length=[r for r in base.length if r.task_type in types],
        association=[r for r in base.association if r.task_type in types],
        points={k: v for k, v in base.points.items() if k[1] in types},
        fairness=comparison.fairness_across(base.campaigns) if len(base.campaigns) > 1 else [],
        pooling=_pooling(base),
    )


def _pooling(base: Analyses) -> list[comparison.PoolingNote]:
    """Models whose ranking and chart points pool several campaigns in view."""
    shell = comparison.Base(
        campaigns=base.campaigns, task_types=base.task_types, models=base.models, cells={},
        campaign_cells={}, pooled_over=base.pooled_over, matchups=[], agreement={},
        severity={}, speed={}, coverage={}, reviewers=[], scores=base.scores,
    )  # fmt: skip
    return comparison.pooling_notes(shell)
