"""What the judges page shows: a campaign's LLM judges next to its human reviewers (DESIGN §10).

What enters
-----------
Only `parsed` judgements (a score was read) of reviewable answers (`Generation.objects
.reviewable()`: succeeded, with real text) count in a figure; `unparseable` ones and `failed`
ones (cancelled counted with them, as for generations) are counted per task type and shown,
never scored; queued and running ones are ignored. Human scores are every score of those
answers, by everyone. A judge is read under one prompt version: by default the latest one
present for it in the campaign (the version of its most recently created judgement), or the
version the page asks for (`prompt_version`), in which case a judge without it is listed as
having no judgement under it. Judge scores never enter the human figures (`comparison.build`
never reads a judgement; a test checks the human tables and CSVs are byte-identical with and
without judgements).

The judge's own matchup table
-----------------------------
The same statistics as the human matchup table, by the same code: the judge's scores are fed to
`comparison.score_cell`, `comparison.campaign_matchups` and `comparison.select` exactly as human
scores are (an item's mean over its answers' judge scores, the mean over items with the
expanded percentile bootstrap CI, the paired difference over shared items with its CI, Wilcoxon
signed-rank and Holm across task types). So the two tables read alike, row for row.

Agreement with the humans, per task type
----------------------------------------
Over the reviewable answers of the task type:

- `alpha`: Krippendorff's alpha (interval) with the judge as one more rater, by
  `stats.agreement` (the `krippendorff` package, a bootstrap CI over answers), on the matrix of
  every reviewer's and the judge's scores; an answer counts once it has two scores of anyone.
  `humans_alpha` is the same without the judge, for comparison: a judge that can stand in for
  a person leaves alpha where the people put it.
- `spearman`: Spearman's rank correlation (`scipy.stats.spearmanr`) of each answer's human mean
  against its judge score, over the answers with both; None with fewer than 2 such answers or
  when either side is constant.
- `offset`: the mean over those answers of (judge score − the answer's human mean); positive:
  the judge is more lenient than the people. Its 95% CI is a bootstrap that resamples items (an
  item's answers move together: its samples and models share one prompt), each resample's
  offset being the sum of its items' offsets over their number of answers, at the expanded
  percentile level of `stats.expanded_confidence` for the number of items, seeded with
  `stats.SEED`. One item (or all offsets equal) gives (offset, offset).
- `answers`: how many answers have both a judge score and a human score.

A task type's rows are sorted so those where the judge cannot stand in for people come first:
alpha undefined (fewer than two answers with two scores, or no variance: `reason` says which),
then lowest alpha first. Below `STAND_IN_ALPHA` (Krippendorff's own floor for tentative
conclusions, 0.667) a row is marked as one where the judge cannot stand in.

Disagreements
-------------
The answers where the judge and the people differ most: |judge score − human mean| descending
(ties: the answer scored by more people first, then by answer), `DISAGREEMENTS` per judge, with
the item, task type, model, human mean, number of human scores, judge score and rationale.
Admins only, like the whole page.

Caching
-------
Judgements change apart from scores: a results cache keyed on `ReviewSettings.scores_version`
would never see one finish. `state` reads in one query the campaign's judgement counts per
status, their newest `finished_at` and their highest id; with the scores' and generations'
stamps (`comparison.stamps`) and the campaign's models, judges and settings, it makes the data
key (`cache_key`), so a finished, re-run or deleted judgement changes it. The results are cached
per (campaign, prompt-version choice) with the data key they rest on, as the results pages'
figures are (`grading.freshness`): a first visit builds them in the request; after a change the
page shows the previous ones, marked stale with their time, while one rebuild runs in a thread of
the web process (the `FigureBuild` claim of `freshness.claim` keeps it to one per scope, across
processes), and polls until they are fresh. While a judge run goes on, judgements finish every
second, so a page never waits for a build it would have to repeat a second later.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
from collections import Counter, defaultdict
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, TypeVar

import numpy as np
from django.conf import settings
from django.core.cache import cache
from django.db import connections, transaction
from django.db.models import Count, Max
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from scipy import stats as scipy_stats

from inference.models import (
    Campaign,
    Generation,
    Judgement,
    JudgementStatus,
    ModelEndpoint,
    TaskType,
)

from . import comparison, freshness, stats
from .comparison import CampaignInfo, ModelInfo, TaskTypeInfo
from .models import FigureBuild, Score

logger = logging.getLogger(__name__)

A = TypeVar("A", bound=Hashable)

CACHE_VERSION = 1
CACHE_TIMEOUT_S = comparison.CACHE_TIMEOUT_S
STAND_IN_ALPHA = 0.667
"""Below this alpha (Krippendorff's floor for tentative conclusions) a judge cannot stand in."""
THREAD_NAME = "rebuild-judges"
DISAGREEMENTS = 50
"""Answers listed per judge on the disagreements page."""
FAILED_STATUSES = (JudgementStatus.FAILED, JudgementStatus.CANCELLED)

TOO_FEW = "too_few"
NO_VARIANCE = "no_variance"
REASONS = {
    TOO_FEW: _("fewer than two answers scored twice (by people or the judge)"),
    NO_VARIANCE: _("every score is the same: no variance to agree on"),
}


# --- Plain statistics ------------------------------------------------------------------------


@dataclass(frozen=True)
class HumanJudgeAgreement:
    """How one judge agrees with the people on one set of answers (see the module doc)."""

    alpha: float | None
    ci_low: float | None
    ci_high: float | None
    humans_alpha: float | None
    spearman: float | None
    offset: float | None
    offset_ci_low: float | None
    offset_ci_high: float | None
    answers: int
    """Answers with a judge score and a human score."""
    units: int
    """Answers with two scores or more (human or judge): those alpha rests on."""
    reason: str
    """Why alpha is undefined ("" when it is defined)."""


class _Judge:
    """The judge's key among reviewers' names in a ratings matrix: equal to no username."""

    def __repr__(self) -> str:
        return "<judge>"


JUDGE = _Judge()


def offset_ci(
    offsets: Mapping[Hashable, Sequence[float]],
    *,
    seed: int = stats.SEED,
    resamples: int = stats.RESAMPLES,
) -> tuple[float, float, float]:
    """Mean over answers of (judge − human mean), with a bootstrap CI resampling items.

    `offsets` maps an item to its answers' offsets. Returns (offset, ci_low, ci_high); raises
    ValueError without an offset.
    """
    groups = [(float(math.fsum(v)), len(v)) for v in offsets.values() if len(v)]
    if not groups:
        raise ValueError("no offset to average")
    groups.sort()  # resamples must not depend on the order items came in
    sums = np.array([s for s, _ in groups], dtype=np.float64)
    counts = np.array([n for _, n in groups], dtype=np.float64)
    offset = float(sums.sum() / counts.sum())
    if len(groups) == 1 or np.ptp(sums / counts) == 0:
        return offset, offset, offset
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(groups), (resamples, len(groups)))
    boot = np.sort(sums[picks].sum(axis=1) / counts[picks].sum(axis=1))
    tail = (1 - stats.expanded_confidence(len(groups))) / 2
    low, high = np.percentile(boot, [100 * tail, 100 * (1 - tail)])
    return offset, float(low), float(high)


def agreement_with_humans(
    human: Iterable[tuple[Hashable, A, float]],
    judge: Mapping[A, float],
    item_of: Mapping[A, Hashable],
    *,
    humans_alpha: float | Literal["compute"] | None = "compute",
    seed: int = stats.SEED,
) -> HumanJudgeAgreement:
    """The judge's agreement with people over some answers (see the module doc).

    `human` holds (reviewer, answer, score) ratings, `judge` the judge's score per answer,
    `item_of` each answer's item (for the offset's bootstrap). `humans_alpha`, the people's own
    alpha over these ratings, is computed unless given (several judges share it).
    """
    ratings = list(human)
    by_answer: dict[A, list[float]] = defaultdict(list)
    for _who, answer, value in ratings:
        by_answer[answer].append(value)
    with_judge = stats.agreement([*ratings, *((JUDGE, a, v) for a, v in judge.items())], seed=seed)
    if humans_alpha == "compute":
        humans_alpha = stats.agreement(ratings, seed=seed).alpha if ratings else None
    both = sorted((a for a in judge if a in by_answer), key=repr)
    human_means = [math.fsum(by_answer[a]) / len(by_answer[a]) for a in both]
    judged = [float(judge[a]) for a in both]

    spearman = None
    if len(both) >= 2 and np.ptp(human_means) > 0 and np.ptp(judged) > 0:
        spearman = float(scipy_stats.spearmanr(human_means, judged).statistic)

    offset = low = high = None
    if both:
        per_item: dict[Hashable, list[float]] = defaultdict(list)
        for answer, h, j in zip(both, human_means, judged, strict=True):
            per_item[item_of[answer]].append(j - h)
        offset, low, high = offset_ci(per_item, seed=seed)

    reason = ""
    if with_judge.alpha is None:
        reason = TOO_FEW if with_judge.units < 2 else NO_VARIANCE
    return HumanJudgeAgreement(
        alpha=with_judge.alpha,
        ci_low=with_judge.ci_low,
        ci_high=with_judge.ci_high,
        humans_alpha=humans_alpha,
        spearman=spearman,
        offset=offset,
        offset_ci_low=low,
        offset_ci_high=high,
        answers=len(both),
        units=with_judge.units,
        reason=reason,
    )


# --- What the page shows ---------------------------------------------------------------------


@dataclass(frozen=True)
class JudgeInfo:
    slug: str
    name: str
    prompt_version: str
    """The version this judge's figures are read under ("" when it has none)."""
    prompt_versions: tuple[str, ...]
    """Every version this judge has judgements under in the campaign, newest first."""
    judges_itself: bool
    """The judge is also a model of the campaign: it scores its own answers."""


@dataclass(frozen=True)
class TypeAgreement:
    task_type: TaskTypeInfo
    agreement: HumanJudgeAgreement
    judged: int
    """Parsed judgements of this task type."""
    unparseable: int
    failed: int
    """Failed and cancelled judgements."""

    @property
    def reason(self) -> str:
        """Why alpha is undefined, in the page's language ("" when it is defined)."""
        return str(REASONS.get(self.agreement.reason, ""))

    @property
    def cannot_stand_in(self) -> bool:
        alpha = self.agreement.alpha
        return alpha is None or alpha < STAND_IN_ALPHA


@dataclass(frozen=True)
class Disagreement:
    generation: str
    """The answer's public id."""
    item: str
    """The item's external id."""
    task_type: str
    model: str
    sample: int
    human_mean: float
    human_scores: int
    judge_score: int
    rationale: str

    @property
    def gap(self) -> float:
        return self.judge_score - self.human_mean


@dataclass(frozen=True)
class Point:
    """Answers of one task type with the same human mean and judge score (the chart's bubble)."""

    task_type: str
    human_mean: float
    judge_score: int
    answers: int


@dataclass
class JudgeReport:
    judge: JudgeInfo
    selection: comparison.Selection | None
    """The judge's own matchup tables (`selection.tables`); None without a parsed judgement."""
    agreement: list[TypeAgreement]
    """Worst first (see the module doc)."""
    points: list[Point]
    disagreements: list[Disagreement]
    parsed: int
    unparseable: int
    failed: int


@dataclass
class JudgeResults:
    campaign: CampaignInfo
    prompt_version: str
    """The version the page asked for; "" for each judge's latest."""
    reports: list[JudgeReport]

    def report(self, slug: str) -> JudgeReport | None:
        return next((r for r in self.reports if r.judge.slug == slug), None)


def state(campaign: Campaign) -> tuple[Any, ...]:
    """What changes whenever a judgement of the campaign is created, finishes, is re-run or is
    deleted: its judgements counted by status, and the newest finish (two index scans, about
    15 ms at 110,000 judgements, where one pass over the rows took 60 ms)."""
    judgements = Judgement.objects.filter(campaign=campaign).order_by()
    counts = sorted(judgements.values_list("status").annotate(n=Count("*")))
    finished = judgements.aggregate(last=Max("finished_at"))["last"]
    return (tuple(counts), finished)


def cache_key(campaign: Campaign, prompt_version: str) -> str:
    """The cache key of a campaign's judge results: it changes with any judgement, score,
    generation, model, judge or setting they rest on (four queries)."""
    info = comparison.campaign_infos([campaign])[0]
    judges = sorted(j.slug for j in campaign.judges.all())
    stamp = comparison.stamps([campaign.pk]).get(campaign.pk)
    raw = repr(
        (CACHE_VERSION, info.pk, info.models, info.params, judges, prompt_version, stamp,
         state(campaign))
    )  # fmt: skip
    return "judges:" + hashlib.sha256(raw.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Built:
    """Cached judge results: the data key they were built from and when that data was read."""

    data: str
    as_of: datetime
    results: JudgeResults


@dataclass(frozen=True)
class Current:
    """What the page shows: the latest judge results, and whether newer data exists."""

    results: JudgeResults
    as_of: datetime
    stale: bool
    """A judgement or score changed since; a rebuild is under way (or cools down)."""


def scope_key(campaign: Campaign, prompt_version: str) -> str:
    """The cache key (and build lock) of one campaign's judge results under one choice; the
    public id, not the primary key, so that databases sharing a cache never share a key."""
    raw = repr((CACHE_VERSION, campaign.public_id, prompt_version))
    return "judges:" + hashlib.sha256(raw.encode()).hexdigest()[:32]


def results(campaign: Campaign, *, prompt_version: str = "") -> Current:
    """The campaign's judge results: fresh, or the previous ones marked stale while one rebuild
    runs in a thread (a judge run finishes judgements every second; a build takes seconds).
    A first visit builds in the request."""
    read_at = timezone.now()
    data = cache_key(campaign, prompt_version)
    scope = scope_key(campaign, prompt_version)
    built: Built | None = cache.get(scope)
    if built is None:
        built = Built(data, read_at, build(campaign, prompt_version=prompt_version))
        cache.set(scope, built, CACHE_TIMEOUT_S)
    elif built.data != data:
        token = freshness.claim(scope)
        if token is not None:
            args = (campaign.pk, prompt_version, scope, token)
            transaction.on_commit(lambda: _rebuild_in_thread(*args))
        return Current(built.results, built.as_of, stale=True)
    return Current(built.results, built.as_of, stale=False)


def rebuild(campaign_pk: int, prompt_version: str, scope: str, token: str) -> str:
    """Build and cache a campaign's judge results under a claim taken by `results`.

    Returns "built", "skipped" (someone else holds the claim) or "failed" (logged; the claim is
    kept for `RESULTS_BUILD_COOLDOWN_S`, so the old figures stay and no build loops).
    """
    now = timezone.now()
    started = FigureBuild.objects.filter(key=scope, token=token, started_at__isnull=True).update(
        started_at=now, expires_at=now + timedelta(seconds=settings.RESULTS_BUILD_LOCK_S)
    )
    if not started:
        return "skipped"
    try:
        campaign = comparison.campaigns_queryset().prefetch_related("judges").get(pk=campaign_pk)
        read_at = timezone.now()
        data = cache_key(campaign, prompt_version)
        found = build(campaign, prompt_version=prompt_version)
        cache.set(scope, Built(data, read_at, found), CACHE_TIMEOUT_S)
    except Exception as error:
        logger.exception("judge results rebuild failed; the previous figures stay")
        FigureBuild.objects.filter(key=scope, token=token).update(
            expires_at=timezone.now() + timedelta(seconds=settings.RESULTS_BUILD_COOLDOWN_S),
            error=f"{type(error).__name__}: {error}"[:2000],
        )
        return "failed"
    FigureBuild.objects.filter(key=scope, token=token).delete()
    return "built"


def _rebuild_in_thread(campaign_pk: int, prompt_version: str, scope: str, token: str) -> None:
    def run() -> None:
        try:
            rebuild(campaign_pk, prompt_version, scope, token)
        finally:
            connections.close_all()

    threading.Thread(target=run, name=f"{THREAD_NAME}-{scope[7:15]}", daemon=True).start()


def _versions(campaign: Campaign) -> dict[int, list[str]]:
    """Per judge id: its prompt versions in the campaign, newest first."""
    latest = (
        Judgement.objects.filter(campaign=campaign)
        .values("judge_id", "prompt_version")
        .annotate(newest=Max("created_at"))
        .order_by()
    )
    found: dict[int, list[tuple[Any, str]]] = defaultdict(list)
    for row in latest:
        found[row["judge_id"]].append((row["newest"], row["prompt_version"]))
    return {
        judge: [version for _, version in sorted(rows, reverse=True)]
        for judge, rows in found.items()
    }


def build(campaign: Campaign, *, prompt_version: str = "") -> JudgeResults:
    """Read the campaign's scores and judgements and compute every judge figure (module doc)."""
    info = comparison.campaign_infos([campaign])[0]
    all_types = list(TaskType.objects.order_by("position", "code"))
    type_info = {t.pk: TaskTypeInfo(t.code, t.name_en, t.name_zh, t.modality) for t in all_types}
    answers = Generation.objects.reviewable().filter(campaign=campaign)

    # Per task type: human ratings (reviewer, answer, score).
    ratings: dict[int, list[tuple[str, int, int]]] = defaultdict(list)
    for generation, type_pk, username, value in (
        Score.objects.counted()
        .filter(generation__in=answers)
        .order_by()
        .values_list(
            "generation_id",
            "generation__item__task_type_id",
            "reviewer__username",
            "score",
        )
        .iterator(chunk_size=5000)
    ):
        ratings[type_pk].append((username, generation, value))

    means = _human_means(ratings)
    humans_alpha = {type_pk: stats.agreement(given).alpha for type_pk, given in ratings.items()}
    names = dict(ModelEndpoint.objects.filter(slug__in=info.models).values_list("slug", "name"))
    models = [ModelInfo(slug, names.get(slug, slug)) for slug in info.models]
    versions = _versions(campaign)
    listed = list(campaign.judges.all())
    others = [j for j in _judges_with_judgements(versions) if j.pk not in {x.pk for x in listed}]
    reports = []
    for judge in [*listed, *others]:
        mine = versions.get(judge.pk, [])
        chosen = prompt_version if prompt_version else (mine[0] if mine else "")
        judge_info = JudgeInfo(
            slug=judge.slug,
            name=judge.name,
            prompt_version=chosen if chosen in mine else "",
            prompt_versions=tuple(mine),
            judges_itself=judge.slug in info.models,
        )
        reports.append(
            _report(
                judge_info, judge.pk, info, models, answers, ratings, means, humans_alpha, type_info
            )
        )
    return JudgeResults(campaign=info, prompt_version=prompt_version, reports=reports)


def _judges_with_judgements(versions: Mapping[int, list[str]]) -> list[ModelEndpoint]:
    return list(ModelEndpoint.objects.filter(pk__in=list(versions)).order_by("slug"))


def _report(
    judge: JudgeInfo,
    judge_pk: int,
    info: CampaignInfo,
    models: list[ModelInfo],
    answers: Any,
    ratings: Mapping[int, list[tuple[str, int, int]]],
    means: Mapping[int, tuple[float, int]],
    humans_alpha: Mapping[int, float | None],
    type_info: Mapping[int, TaskTypeInfo],
) -> JudgeReport:
    """One judge's figures under its prompt version."""
    judge_scores: dict[int, dict[int, int]] = defaultdict(dict)  # task type -> answer -> score
    judge_answer: dict[int, tuple[int, int, str]] = {}
    counts: dict[int, Counter[str]] = defaultdict(Counter)
    if judge.prompt_version:
        rows = (
            Judgement.objects.filter(
                campaign_id=info.pk,
                judge_id=judge_pk,
                prompt_version=judge.prompt_version,
                generation__in=answers,
            )
            .order_by()
            .values_list(
                "generation_id",
                "generation__item__task_type_id",
                "generation__item_id",
                "generation__endpoint__slug",
                "status",
                "score",
            )
        )
        for generation, type_pk, item, model, status, value in rows.iterator(chunk_size=5000):
            if status == JudgementStatus.PARSED and value is not None:
                judge_scores[type_pk][generation] = value
                judge_answer[generation] = (type_pk, item, model)
                counts[type_pk]["parsed"] += 1
            elif status == JudgementStatus.UNPARSEABLE:
                counts[type_pk]["unparseable"] += 1
            elif status in FAILED_STATUSES:
                counts[type_pk]["failed"] += 1

    order = list(type_info)
    agreement = []
    for type_pk in sorted(counts, key=order.index):
        scores_of_type = judge_scores.get(type_pk, {})
        item_of = {a: judge_answer[a][1] for a in scores_of_type}
        agreement.append(
            TypeAgreement(
                task_type=type_info[type_pk],
                agreement=agreement_with_humans(
                    ratings.get(type_pk, []),
                    scores_of_type,
                    item_of,
                    humans_alpha=humans_alpha.get(type_pk),
                ),
                judged=counts[type_pk]["parsed"],
                unparseable=counts[type_pk]["unparseable"],
                failed=counts[type_pk]["failed"],
            )
        )
    agreement.sort(
        key=lambda row: (
            row.agreement.alpha is not None,
            row.agreement.alpha if row.agreement.alpha is not None else 0.0,
        )
    )

    return JudgeReport(
        judge=judge,
        selection=_matchups(info, models, judge_scores, judge_answer, type_info),
        agreement=agreement,
        points=_points(judge_scores, means, type_info),
        disagreements=_disagreements(judge, judge_pk, judge_scores, means, type_info),
        parsed=sum(c["parsed"] for c in counts.values()),
        unparseable=sum(c["unparseable"] for c in counts.values()),
        failed=sum(c["failed"] for c in counts.values()),
    )


def _matchups(
    info: CampaignInfo,
    models: list[ModelInfo],
    judge_scores: Mapping[int, Mapping[int, int]],
    judge_answer: Mapping[int, tuple[int, int, str]],
    type_info: Mapping[int, TaskTypeInfo],
) -> comparison.Selection | None:
    """The judge's matchup tables: its scores through the human tables' own code."""
    item_scores: dict[tuple[str, str, str], dict[int, list[int]]] = defaultdict(dict)
    for type_pk, by_answer in judge_scores.items():
        code = type_info[type_pk].code
        for answer, value in by_answer.items():
            _, item, model = judge_answer[answer]
            item_scores[info.slug, code, model].setdefault(item, []).append(value)
    if not item_scores:
        return None
    campaign_cells = {key: comparison.score_cell(v) for key, v in item_scores.items()}
    types = [t for t in type_info.values() if any(k[1] == t.code for k in item_scores)]
    base = comparison.Base(
        campaigns=[info],
        task_types=types,
        models=models,
        cells={(code, model): cell for (_, code, model), cell in campaign_cells.items()},
        campaign_cells=campaign_cells,
        pooled_over={},
        matchups=comparison.campaign_matchups([info], item_scores, [t.code for t in types]),
        agreement={},
        severity={},
        speed={},
        coverage={},
        reviewers=[],
        scores=sum(len(v) for by_item in item_scores.values() for v in by_item.values()),
    )
    return comparison.select(base, comparison.Filters())


def _human_means(
    ratings: Mapping[int, list[tuple[str, int, int]]],
) -> dict[int, tuple[float, int]]:
    """Per answer: its human mean and number of human scores."""
    values: dict[int, list[int]] = defaultdict(list)
    for given in ratings.values():
        for _who, answer, value in given:
            values[answer].append(value)
    return {a: (math.fsum(v) / len(v), len(v)) for a, v in values.items()}


def _points(
    judge_scores: Mapping[int, Mapping[int, int]],
    means: Mapping[int, tuple[float, int]],
    type_info: Mapping[int, TaskTypeInfo],
) -> list[Point]:
    """Answers with a judge and a human score, grouped by (task type, human mean, judge score)."""
    grouped: Counter[tuple[int, float, int]] = Counter()
    for type_pk, by_answer in judge_scores.items():
        for answer, value in by_answer.items():
            if answer in means:
                grouped[type_pk, round(means[answer][0], 6), value] += 1
    order = list(type_info)
    return [
        Point(type_info[type_pk].code, mean, value, n)
        for (type_pk, mean, value), n in sorted(
            grouped.items(), key=lambda kv: (order.index(kv[0][0]), kv[0][1], kv[0][2])
        )
    ]


def _disagreements(
    judge: JudgeInfo,
    judge_pk: int,
    judge_scores: Mapping[int, Mapping[int, int]],
    means: Mapping[int, tuple[float, int]],
    type_info: Mapping[int, TaskTypeInfo],
) -> list[Disagreement]:
    """The `DISAGREEMENTS` answers with the largest |judge − human mean| (one query)."""
    gaps = [
        (abs(value - means[answer][0]), means[answer][1], answer, value)
        for by_answer in judge_scores.values()
        for answer, value in by_answer.items()
        if answer in means
    ]
    top = sorted(gaps, key=lambda g: (-g[0], -g[1], g[2]))[:DISAGREEMENTS]
    if not top:
        return []
    code_of = {pk: t.code for pk, t in type_info.items()}
    details = {
        row["generation_id"]: row
        for row in Judgement.objects.filter(
            judge_id=judge_pk,
            prompt_version=judge.prompt_version,
            generation_id__in=[a for _, _, a, _ in top],
        ).values(
            "generation_id",
            "generation__public_id",
            "generation__item__external_id",
            "generation__item__task_type_id",
            "generation__endpoint__slug",
            "generation__sample",
            "rationale",
        )
    }
    shown = []
    for _gap, _n, answer, value in top:
        row = details[answer]
        mean, n = means[answer]
        shown.append(
            Disagreement(
                generation=row["generation__public_id"],
                item=row["generation__item__external_id"],
                task_type=code_of[row["generation__item__task_type_id"]],
                model=row["generation__endpoint__slug"],
                sample=row["generation__sample"],
                human_mean=mean,
                human_scores=n,
                judge_score=value,
                rationale=row["rationale"],
            )
        )
    return shown


# --- CSV -------------------------------------------------------------------------------------

AGREEMENT_HEADER = (
    "judge", "prompt_version", "task_type", "alpha", "alpha_ci_low", "alpha_ci_high",
    "humans_alpha", "spearman", "offset", "offset_ci_low", "offset_ci_high", "answers",
    "judged", "unparseable", "failed", "cannot_stand_in", "reason",
)  # fmt: skip


def agreement_rows(report: JudgeReport) -> tuple[tuple[str, ...], list[tuple[Any, ...]]]:
    """The agreement table as CSV rows (`AGREEMENT_HEADER`), in the page's order."""
    rows = []
    for row in report.agreement:
        a = row.agreement
        rows.append(
            (report.judge.slug, report.judge.prompt_version, row.task_type.code, a.alpha,
             a.ci_low, a.ci_high, a.humans_alpha, a.spearman, a.offset, a.offset_ci_low,
             a.offset_ci_high, a.answers, row.judged, row.unparseable, row.failed,
             int(row.cannot_stand_in), a.reason)
        )  # fmt: skip
    return AGREEMENT_HEADER, rows


def table_rows(report: JudgeReport) -> tuple[tuple[str, ...], list[tuple[Any, ...]]]:
    """The judge's matchup tables as CSV rows: the human table's columns and code."""
    if report.selection is None:
        return comparison.TABLE_HEADER, []
    return comparison.table_rows(report.selection)
