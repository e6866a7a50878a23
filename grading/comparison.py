"""What the comparison pages show: quality and speed of a set of campaigns' models, per task type.

Two layers, so that a filter change costs little:

- `build` reads every score and generation of the campaigns (two queries, however many rows)
  and computes the statistics of `grading.stats` for every (task type, model) cell, every
  matchup pair, agreement and reviewer severity. The result (`Base`) depends only on the
  campaigns and the reviewer filter, and is cached with a fingerprint of the data (by
  `grading.freshness`): after a new, edited or deleted score or a finished generation, pages
  show the previous figures, marked with their time, while the new ones are built.
- `select` applies the task-type and modality filters to a `Base`: it picks cells, re-runs the
  Holm correction over the task types shown, and pools item means, histograms and speed samples
  of the chosen cells. No query, no bootstrap.

Matchups: each campaign compares its first model (in campaign order) with each of the others,
so a two-model campaign is one matchup, as in the reference study. Differences are "A − B"
over the items both models answered (`stats.paired_difference`).

Scope (DESIGN §7). A matchup table — both means, items, CIs, the difference and its test — is
computed from its own campaign's scores only, on every page: `Base.campaign_cells` holds one
cell per (campaign, task type, model). What pools is deliberate and said on the page: the model
table and the charts show one figure per model, and where several campaigns in view have that
model, its items are pooled over them (`Base.cells`, keyed by task type and model; the pooled
unit is a (campaign, item), so the same prompt answered in two campaigns counts twice). Which
campaigns each model pools is `Base.pooled_over`; `pooling_notes` names them, with the settings
that differ between them. On a campaign's own page nothing pools.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from django.contrib.auth.models import User
from django.db.models import Count, Max, Prefetch, Q
from django.http import QueryDict

from inference.models import (
    Campaign,
    CampaignModel,
    Generation,
    GenerationSource,
    GenerationStatus,
    Modality,
    ModelEndpoint,
    TaskType,
)

from . import stats
from .models import ReviewSettings, Score

MIN_ITEMS = 5
"""A figure resting on fewer items than this carries a warning."""

CACHE_TIMEOUT_S = 24 * 3600
CACHE_VERSION = 6
SPEED_STATUSES = (GenerationStatus.SUCCEEDED, GenerationStatus.FAILED, GenerationStatus.CANCELLED)


# --- Filters -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Filters:
    """What the viewer narrowed the page to. Empty means everything."""

    task_types: tuple[str, ...] = ()
    modality: str = ""
    reviewer: str = ""

    @classmethod
    def from_query(cls, query: QueryDict, *, allow_reviewer: bool) -> Filters:
        """Read the filter form; unknown values are dropped rather than refused, so a task type
        that does not exist filters nothing (one that exists but has no scores filters all)."""
        codes = tuple(dict.fromkeys(code for code in query.getlist("task_type") if code))
        if codes:
            known = set(TaskType.objects.filter(code__in=codes).values_list("code", flat=True))
            codes = tuple(code for code in codes if code in known)
        modality = query.get("modality", "")
        if modality not in Modality.values:
            modality = ""
        reviewer = query.get("reviewer", "") if allow_reviewer else ""
        if reviewer and not User.objects.filter(username=reviewer).exists():
            reviewer = ""  # nobody by that name: everyone, as for any unknown value
        return cls(task_types=codes, modality=modality, reviewer=reviewer)

    def as_query(self) -> str:
        """The query string that reproduces these filters (for CSV links and drill-downs)."""
        query = QueryDict(mutable=True)
        query.setlist("task_type", list(self.task_types))
        if self.modality:
            query["modality"] = self.modality
        if self.reviewer:
            query["reviewer"] = self.reviewer
        return query.urlencode()


# --- What is cached --------------------------------------------------------------------------


@dataclass(frozen=True)
class TaskTypeInfo:
    code: str
    name_en: str
    name_zh: str
    modality: str


@dataclass(frozen=True)
class ModelInfo:
    slug: str
    name: str


@dataclass(frozen=True)
class CampaignInfo:
    pk: int
    public_id: str
    slug: str
    name: str
    matchup: str
    models: tuple[str, ...]
    simulated: bool
    imported: bool
    params: dict[str, dict[str, Any]]
    """Effective sampling settings per model slug."""


@dataclass(frozen=True)
class Cell:
    """One (task type, model): its score summary and what charts need to pool cells."""

    summary: stats.Summary
    histogram: tuple[int, ...]
    item_means: stats.FloatArray
    """Sorted."""


@dataclass(frozen=True)
class Matchup:
    campaign: str
    a: str
    b: str
    differences: dict[str, stats.Difference | None]
    """Per task type code, before Holm correction; from this campaign's scores only."""


@dataclass(frozen=True)
class Coverage:
    outputs: int
    """Succeeded generations."""
    by_count: dict[int, int]
    """How many outputs have 0, 1, 2, … scores."""


@dataclass
class Base:
    """Everything the pages compute from the database, before task-type filters."""

    campaigns: list[CampaignInfo]
    task_types: list[TaskTypeInfo]
    models: list[ModelInfo]
    cells: dict[tuple[str, str], Cell]
    """Per (task type code, model slug), pooled over the campaigns in view (`pooled_over`)."""
    campaign_cells: dict[tuple[str, str, str], Cell]
    """Per (campaign slug, task type code, model slug): that campaign's scores only."""
    pooled_over: dict[str, tuple[str, ...]]
    """Per model slug: the campaigns in view whose scores of that model the pooled cells hold."""
    matchups: list[Matchup]
    agreement: dict[tuple[str, str], stats.Agreement]
    """Per (campaign slug, task type code)."""
    severity: dict[str, stats.Severity]
    speed: dict[tuple[str, str], stats.SpeedSample]
    """Per (task type code, model slug)."""
    coverage: dict[tuple[str, str], Coverage]
    """Per (campaign slug, task type code)."""
    reviewers: list[str]
    scores: int


def campaign_infos(
    campaigns: Sequence[Campaign], simulated: Collection[int] = (), imported: Collection[int] = ()
) -> list[CampaignInfo]:
    """What the pages show of these campaigns; `simulated` and `imported` hold those with
    simulated or imported answers."""
    infos = []
    for campaign in campaigns:
        members: list[CampaignModel] = list(campaign.members.all())
        infos.append(
            CampaignInfo(
                pk=campaign.pk,
                public_id=campaign.public_id,
                slug=campaign.slug,
                name=campaign.name,
                matchup=campaign.matchup,
                models=tuple(m.endpoint.slug for m in members),
                simulated=campaign.pk in simulated,
                imported=campaign.pk in imported,
                params={m.endpoint.slug: m.effective_params() for m in members},
            )
        )
    return infos


def campaigns_queryset() -> Any:
    """Campaigns with what the pages need about them, in one query plus one for members.

    Nothing here joins generations or scores: that multiplied a campaign's row by all of them
    (28 s at 30,000 scores). Whether a campaign has scores or simulated answers comes from
    `stamps`, which the page runs anyway.
    """
    members = CampaignModel.objects.select_related("endpoint").order_by("position", "pk")
    return (
        Campaign.objects.select_related("suite")
        .prefetch_related(Prefetch("members", queryset=members))
        .order_by("created_at", "pk")
    )


@dataclass(frozen=True)
class Stamp:
    """What changes with any of one campaign's scores or generations."""

    scored: bool
    simulated: bool
    imported: bool
    figures: tuple[Any, ...]


def stamps(campaign_pks: Sequence[int]) -> dict[int, Stamp]:
    """Per campaign with generations: its `Stamp` (two queries, grouped by campaign).

    Scores are stamped by `ReviewSettings.scores_version`, which every writer of scores bumps
    (`assignment.submit` and `edit`, `import_scores`): reading it costs nothing however many
    scores there are, where aggregating the scores themselves took 150 ms at 300,000.
    Generations are aggregated: they change while a run goes on, and there are fewer of them.
    """
    versions = dict(
        ReviewSettings.objects.filter(campaign_id__in=campaign_pks).values_list(
            "campaign_id", "scores_version"
        )
    )
    generations = (
        Generation.objects.filter(campaign_id__in=campaign_pks)
        .values("campaign_id")
        .annotate(
            n=Count("pk"),
            finished=Max("finished_at"),
            succeeded=Count("pk", filter=Q(status=GenerationStatus.SUCCEEDED)),
            failed=Count("pk", filter=Q(status=GenerationStatus.FAILED)),
            simulated=Count("pk", filter=Q(simulated=True)),
            imported=Count("pk", filter=Q(source=GenerationSource.IMPORTED)),
        )
        .order_by()
    )
    result = {}
    for row in generations:
        pk = row["campaign_id"]
        version = versions.get(pk, 0)
        result[pk] = Stamp(
            scored=version > 0,
            simulated=bool(row["simulated"]),
            imported=bool(row["imported"]),
            figures=(version, tuple(sorted(row.items()))),
        )
    return result


def fingerprint(found: Mapping[int, Stamp], campaign_pks: Sequence[int], reviewer: str) -> str:
    """A key that changes whenever anything the figures of these campaigns rest on changes."""
    raw = repr(
        (sorted(campaign_pks), reviewer, [(pk, found.get(pk)) for pk in sorted(campaign_pks)])
    )
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


def build(infos: Sequence[CampaignInfo], *, reviewer: str = "") -> Base:
    """Read the campaigns' scores and generations and compute every figure (see module doc)."""
    pks = [info.pk for info in infos]
    slug_of = {info.pk: info.slug for info in infos}
    all_types = list(TaskType.objects.order_by("position", "code"))
    type_code = {t.pk: t.code for t in all_types}

    scores = Score.objects.counted().filter(generation__campaign_id__in=pks).order_by()
    if reviewer:
        scores = scores.filter(reviewer__username=reviewer)
    # Per (campaign, task type, model): item -> scores; per (campaign, task type): ratings.
    item_scores: dict[tuple[str, str, str], dict[int, list[int]]] = defaultdict(dict)
    ratings: dict[tuple[str, str], list[tuple[str, int, int]]] = defaultdict(list)
    scores_per_output: Counter[int] = Counter()
    n_scores = 0
    reviewer_names: set[str] = set()
    present: set[tuple[str, str]] = set()  # (campaign, model) with a score or a timed answer
    for campaign_pk, type_pk, model, item, generation, username, value in scores.values_list(
        "generation__campaign_id",
        "generation__item__task_type_id",
        "generation__endpoint__slug",
        "generation__item_id",
        "generation_id",
        "reviewer__username",
        "score",
    ).iterator(chunk_size=5000):
        campaign, code = slug_of[campaign_pk], type_code[type_pk]
        item_scores[campaign, code, model].setdefault(item, []).append(value)
        ratings[campaign, code].append((username, generation, value))
        scores_per_output[generation] += 1
        present.add((campaign, model))
        reviewer_names.add(username)
        n_scores += 1

    speed_rows: dict[tuple[str, str], list[stats.SpeedRow]] = defaultdict(list)
    outputs: dict[tuple[str, str], list[int]] = defaultdict(list)
    generations = Generation.objects.filter(campaign_id__in=pks, status__in=SPEED_STATUSES)
    for row in (
        generations.order_by()
        .values_list(
            "pk",
            "campaign_id",
            "item__task_type_id",
            "endpoint__slug",
            "status",
            "ttft_ms",
            "decode_tps",
            "e2e_tps",
            "response_time_ms",
            "completion_tokens",
            "finish_reason",
            "timing_quality",
        )
        .iterator(chunk_size=5000)
    ):
        (pk, campaign_pk, type_pk, model, status, ttft, decode, e2e, response, tokens, finish,
         quality) = row  # fmt: skip
        code = type_code[type_pk]
        present.add((slug_of[campaign_pk], model))
        speed_rows[code, model].append(
            stats.SpeedRow(status, ttft, decode, e2e, response, tokens, finish, quality)
        )
        if status == GenerationStatus.SUCCEEDED:
            outputs[slug_of[campaign_pk], code].append(pk)

    campaign_cells = {key: score_cell(items) for key, items in item_scores.items()}
    # The model table and the charts pool a model's items over the campaigns in view that have
    # it, a (campaign, item) being one unit. A model scored in one campaign only pools nothing:
    # its pooled cell is its campaign cell.
    by_type_model: dict[tuple[str, str], list[str]] = defaultdict(list)
    for campaign, code, model in item_scores:
        by_type_model[code, model].append(campaign)
    cells = {}
    for (code, model), campaigns in by_type_model.items():
        if len(campaigns) == 1:
            cells[code, model] = campaign_cells[campaigns[0], code, model]
            continue
        pooled = {
            (campaign, item): values
            for campaign in campaigns
            for item, values in item_scores[campaign, code, model].items()
        }
        cells[code, model] = score_cell(pooled)
    pooled_over: dict[str, tuple[str, ...]] = {}
    for info in infos:
        for model in info.models:
            if (info.slug, model) in present:
                pooled_over[model] = (*pooled_over.get(model, ()), info.slug)

    matchups = campaign_matchups(infos, item_scores, [t.code for t in all_types])
    agreement = {key: stats.agreement(values) for key, values in ratings.items()}
    severity = stats.severity(r for given in ratings.values() for r in given)

    coverage = {
        key: Coverage(outputs=len(pks_), by_count=dict(Counter(scores_per_output[p] for p in pks_)))
        for key, pks_ in outputs.items()
    }

    used_types = {code for code, _ in cells} | {code for code, _ in speed_rows}
    models_in_order = list(dict.fromkeys(slug for info in infos for slug in info.models))
    names = _endpoint_names(models_in_order)
    return Base(
        campaigns=list(infos),
        task_types=[
            TaskTypeInfo(t.code, t.name_en, t.name_zh, t.modality)
            for t in all_types
            if t.code in used_types
        ],
        models=[ModelInfo(slug, names.get(slug, slug)) for slug in models_in_order],
        cells=cells,
        campaign_cells=campaign_cells,
        pooled_over=pooled_over,
        matchups=matchups,
        agreement=agreement,
        severity=severity,
        speed={key: stats.speed_sample(rows) for key, rows in speed_rows.items()},
        coverage=coverage,
        reviewers=sorted(reviewer_names),
        scores=n_scores,
    )


def campaign_matchups(
    infos: Sequence[CampaignInfo],
    item_scores: Mapping[tuple[str, str, str], Mapping[int, list[int]]],
    codes: Sequence[str],
) -> list[Matchup]:
    """Each campaign's first model against each of its others, per task type in `codes`, from
    `item_scores` per (campaign slug, task type code, model slug): item -> scores."""
    matchups = []
    for info in infos:
        if len(info.models) < 2:
            continue
        first = info.models[0]
        for other in info.models[1:]:
            differences = {}
            for code in codes:
                a = item_scores.get((info.slug, code, first))
                b = item_scores.get((info.slug, code, other))
                if a and b:
                    differences[code] = stats.paired_difference(a, b)
            matchups.append(Matchup(info.slug, first, other, differences))
    return matchups


def score_cell(item_scores: Mapping[Any, list[int]]) -> Cell:
    """The summary of one cell's items, with what charts need to pool it further."""
    means = sorted(sum(v) / len(v) for v in item_scores.values())
    return Cell(
        summary=stats.summarise(item_scores),
        histogram=tuple(stats.histogram(v for vs in item_scores.values() for v in vs)),
        item_means=np.array(means, dtype=np.float64),
    )


def _endpoint_names(slugs: Iterable[str]) -> dict[str, str]:
    return dict(ModelEndpoint.objects.filter(slug__in=list(slugs)).values_list("slug", "name"))


# --- What one page shows -----------------------------------------------------------------------


@dataclass(frozen=True)
class DifferenceRow:
    task_type: TaskTypeInfo
    a: stats.Summary | None
    b: stats.Summary | None
    difference: stats.Difference | None
    few_items: bool
    largest_gap: bool = False


@dataclass(frozen=True)
class MatchupTable:
    campaign: CampaignInfo
    a: ModelInfo
    b: ModelInfo
    rows: list[DifferenceRow]
    overall_a: float | None
    overall_b: float | None
    fairness: list[str]


@dataclass(frozen=True)
class PoolingNote:
    """A model whose figures pool several campaigns in view, and the settings that differ."""

    model: ModelInfo
    campaigns: tuple[CampaignInfo, ...]
    differing: list[str]
    """One line per sampling setting that differs between those campaigns for this model."""


@dataclass(frozen=True)
class ModelSummary:
    model: ModelInfo
    over_types: float | None
    """Mean over task types of the task type's score (the reference study's "average")."""
    over_items: float | None
    """Mean over every item's mean score, whatever its task type."""
    items: int
    scores: int
    quartiles: tuple[float, float, float, float, float] | None
    """min, q1, median, q3, max of item means."""
    histogram: list[int]
    speed: stats.Speed


@dataclass
class Selection:
    base: Base
    filters: Filters
    task_types: list[TaskTypeInfo]
    models: list[ModelInfo]
    cells: dict[tuple[str, str], Cell]
    tables: list[MatchupTable]
    model_summaries: list[ModelSummary]
    agreement: list[tuple[CampaignInfo, TaskTypeInfo, stats.Agreement]]
    coverage: dict[str, Coverage]
    """Per campaign slug, pooled over the task types shown."""
    few_items: list[tuple[TaskTypeInfo, ModelInfo, int]]
    fairness: list[str] = field(default_factory=list)
    pooling: list[PoolingNote] = field(default_factory=list)
    """Models whose row in the model table and whose chart figures pool several campaigns."""

    @property
    def simulated(self) -> bool:
        return any(c.simulated for c in self.base.campaigns)

    @property
    def imported(self) -> bool:
        return any(c.imported for c in self.base.campaigns)

    @property
    def agreement_measured(self) -> bool:
        """Has any output been scored by two reviewers or more?"""
        return any(a.units for _, _, a in self.agreement)


SORTS = ("type", "a", "b", "diff", "p")


def select(base: Base, filters: Filters, *, sort: str = "type") -> Selection:
    """Narrow a `Base` to the filters: pick cells, pool them per model, re-correct p-values."""
    task_types = [
        t
        for t in base.task_types
        if (not filters.task_types or t.code in filters.task_types)
        and (not filters.modality or t.modality == filters.modality)
    ]
    codes = [t.code for t in task_types]
    models = {m.slug: m for m in base.models}
    cells = {key: cell for key, cell in base.cells.items() if key[0] in codes}
    by_slug = {c.slug: c for c in base.campaigns}

    tables = []
    for matchup in base.matchups:
        corrected = stats.holm_adjust({c: matchup.differences.get(c) for c in codes})
        rows = []
        for t in task_types:
            a = base.campaign_cells.get((matchup.campaign, t.code, matchup.a))
            b = base.campaign_cells.get((matchup.campaign, t.code, matchup.b))
            if a is None and b is None:
                continue
            difference = corrected.get(t.code)
            few = any(c is not None and c.summary.items < MIN_ITEMS for c in (a, b))
            rows.append(
                DifferenceRow(
                    t, a.summary if a else None, b.summary if b else None, difference, few
                )
            )
        rows = _mark_largest_gaps(rows)
        rows = _sorted_rows(rows, sort)
        campaign = by_slug[matchup.campaign]
        a_means = [r.a.mean for r in rows if r.a]
        b_means = [r.b.mean for r in rows if r.b]
        tables.append(
            MatchupTable(
                campaign=campaign,
                a=models[matchup.a],
                b=models[matchup.b],
                rows=rows,
                overall_a=float(np.mean(a_means)) if a_means else None,
                overall_b=float(np.mean(b_means)) if b_means else None,
                fairness=fairness_notes(campaign, (matchup.a, matchup.b)),
            )
        )

    summaries = []
    for model in base.models:
        mine = [cells[t, model.slug] for t in codes if (t, model.slug) in cells]
        item_means = np.concatenate([cell.item_means for cell in mine]) if mine else np.empty(0)
        histogram = np.sum([cell.histogram for cell in mine], axis=0) if mine else np.zeros(11)
        timed = [base.speed[t, model.slug] for t in codes if (t, model.slug) in base.speed]
        summaries.append(
            ModelSummary(
                model=model,
                over_types=float(np.mean([c.summary.mean for c in mine])) if mine else None,
                over_items=float(item_means.mean()) if item_means.size else None,
                items=int(item_means.size),
                scores=sum(c.summary.scores for c in mine),
                quartiles=(
                    tuple(float(q) for q in np.percentile(item_means, [0, 25, 50, 75, 100]))  # type: ignore[arg-type]
                    if item_means.size
                    else None
                ),
                histogram=[int(n) for n in histogram],
                speed=stats.pooled_speed(timed),
            )
        )

    types_by_code = {t.code: t for t in task_types}
    agreement = [
        (by_slug[campaign], types_by_code[code], value)
        for (campaign, code), value in sorted(base.agreement.items())
        if code in types_by_code
    ]
    coverage: dict[str, Coverage] = {}
    for (slug, code), value in base.coverage.items():
        if code not in types_by_code:
            continue
        seen = coverage.get(slug, Coverage(0, {}))
        merged = Counter(seen.by_count)
        merged.update(value.by_count)
        coverage[slug] = Coverage(seen.outputs + value.outputs, dict(sorted(merged.items())))
    few_items = [
        (types_by_code[code], models[slug], cell.summary.items)
        for (code, slug), cell in cells.items()
        if cell.summary.items < MIN_ITEMS
    ]
    overview_fairness = fairness_across(base.campaigns) if len(base.campaigns) > 1 else []
    shown = {m.slug for m in base.models if any((c, m.slug) in cells for c in codes)}
    return Selection(
        base=base,
        filters=filters,
        task_types=task_types,
        models=[m for m in base.models if any((c, m.slug) in cells for c in codes)],
        cells=cells,
        tables=tables,
        model_summaries=[s for s in summaries if s.items or s.speed.succeeded or s.speed.failed],
        agreement=agreement,
        coverage=coverage,
        few_items=few_items,
        fairness=overview_fairness,
        pooling=[n for n in pooling_notes(base) if n.model.slug in shown],
    )


def _mark_largest_gaps(rows: list[DifferenceRow], top: int = 3) -> list[DifferenceRow]:
    ranked = sorted(
        (r for r in rows if r.difference is not None),
        key=lambda r: abs(r.difference.diff),  # type: ignore[union-attr]
        reverse=True,
    )
    largest = {id(r) for r in ranked[:top] if r.difference and abs(r.difference.diff) > 0}
    return [replace(r, largest_gap=True) if id(r) in largest else r for r in rows]


def _sorted_rows(rows: list[DifferenceRow], sort: str) -> list[DifferenceRow]:
    descending = sort.startswith("-")
    key = sort.lstrip("-")
    missing = float("-inf")
    keys: dict[str, Any] = {
        "a": lambda r: r.a.mean if r.a else missing,
        "b": lambda r: r.b.mean if r.b else missing,
        "diff": lambda r: abs(r.difference.diff) if r.difference else missing,
        "p": lambda r: (
            r.difference.p_holm
            if r.difference and r.difference.p_holm is not None
            else float("inf")
        ),
    }
    if key not in keys:
        return rows
    return sorted(rows, key=keys[key], reverse=descending)


def fairness_notes(campaign: CampaignInfo, models: Iterable[str]) -> list[str]:
    """One line per sampling setting that differs between these models of one campaign."""
    chosen = [m for m in models if m in campaign.params]
    notes = []
    keys = sorted({k for m in chosen for k in campaign.params[m]})
    for key in keys:
        values = {m: campaign.params[m].get(key) for m in chosen}
        if len({repr(v) for v in values.values()}) > 1:
            notes.append(f"{key}: " + ", ".join(f"{m}={v}" for m, v in values.items()))
    return notes


def pooling_notes(base: Base) -> list[PoolingNote]:
    """Each model whose pooled figures span more than one campaign in view (DESIGN §7)."""
    by_slug = {c.slug: c for c in base.campaigns}
    notes = []
    for model in base.models:
        slugs = base.pooled_over.get(model.slug, ())
        if len(slugs) < 2:
            continue
        campaigns = tuple(by_slug[slug] for slug in slugs)
        settings: dict[str, dict[str, Any]] = defaultdict(dict)
        for campaign in campaigns:
            for key, value in campaign.params.get(model.slug, {}).items():
                settings[key][campaign.slug] = value
        for campaign in campaigns:
            for key in settings:
                settings[key].setdefault(campaign.slug, None)
        differing = [
            f"{key}: " + ", ".join(f"{c}={v}" for c, v in values.items())
            for key, values in sorted(settings.items())
            if len({repr(v) for v in values.values()}) > 1
        ]
        notes.append(PoolingNote(model, campaigns, differing))
    return notes


def fairness_across(campaigns: Iterable[CampaignInfo]) -> list[str]:
    """Sampling settings that differ anywhere in a set of campaigns (the overview's note)."""
    seen: dict[str, dict[str, Any]] = defaultdict(dict)
    for campaign in campaigns:
        for model, params in campaign.params.items():
            for key, value in params.items():
                seen[key][f"{campaign.slug}/{model}"] = value
    notes = []
    for key, values in sorted(seen.items()):
        if len({repr(v) for v in values.values()}) > 1:
            notes.append(f"{key}: " + ", ".join(f"{w}={v}" for w, v in sorted(values.items())))
    return notes


TABLE_HEADER = (
    "campaign", "matchup", "task_type", "model_a", "model_b", "items_a", "items_b", "mean_a",
    "mean_b", "ci_low_a", "ci_high_a", "ci_low_b", "ci_high_b", "shared_items", "difference",
    "difference_ci_low", "difference_ci_high", "p_wilcoxon", "p_holm",
)  # fmt: skip


def table_rows(selection: Selection) -> tuple[tuple[str, ...], list[tuple[Any, ...]]]:
    """The matchup tables as CSV rows (`TABLE_HEADER`), in the order the page shows them."""
    rows = []
    for table in selection.tables:
        for row in table.rows:
            a, b, d = row.a, row.b, row.difference
            rows.append(
                (table.campaign.slug, table.campaign.matchup, row.task_type.code,
                 table.a.slug, table.b.slug,
                 a.items if a else None, b.items if b else None,
                 a.mean if a else None, b.mean if b else None,
                 a.ci_low if a else None, a.ci_high if a else None,
                 b.ci_low if b else None, b.ci_high if b else None,
                 d.shared if d else None, d.diff if d else None,
                 d.ci_low if d else None, d.ci_high if d else None,
                 d.p_value if d else None, d.p_holm if d else None)
            )  # fmt: skip
    return TABLE_HEADER, rows
