"""How well each reviewer of a campaign scores (DESIGN §11), for admins.

Per reviewer who scored the campaign:
- **Gold**: their gold scores (`Score.purpose == gold`) on answers that carry a mark
  (`GoldAnswer`): how many (`seen`), the share inside the expected range, and the mean
  `GoldAnswer.distance` (points outside the range; 0 inside). Overall and per ISO week of
  `scored_at`, in the site's time zone (`TIME_ZONE`).
- **Calibration**: calibration scores given on the campaign's calibration answers (`done`)
  out of how many calibration answers it has (`total`).
- **Severity** (DESIGN §7, `stats.severity`): over the campaign's regular scores, each
  score minus the mean of the other reviewers' scores on the same answer, averaged. Per week,
  a reviewer's scores of that week are compared with everyone else's scores on the same
  answers, whenever given: the drift chart. Reviewers excluded from the results are measured
  too (that is often why they were excluded); gold and calibration scores are not used.
- **Too fast**: scores of any purpose given in less time than reading the answer at the
  campaign's `max_chars_per_s` takes (`seconds_spent × max_chars_per_s < characters`);
  counted and shown, never dropped. Scores without a time (imported ones) are not judged and
  `timed` says how many were. With `max_chars_per_s` empty the check is off (None).
- **Extra reviews**: the campaign's `ReviewUnit.extra_reviews`, summed.

Everything comes from a fixed number of queries, however many scores there are: the scores are
read once as plain values, with the answer's length computed by the database.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db.models import Count, Q, Sum
from django.db.models.functions import Length
from django.utils import timezone
from django.utils.translation import gettext as _

from inference.models import Campaign

from . import exclusion, stats
from .charts import Chart, _layout, _round
from .models import GoldAnswer, Purpose, ReviewSettings, ReviewUnit, Score


@dataclass(frozen=True)
class GoldFigures:
    """A reviewer's gold scores: how many, how many inside the range, how far outside."""

    seen: int
    inside: int
    mean_distance: float | None

    @property
    def share_inside(self) -> float | None:
        return self.inside / self.seen if self.seen else None


@dataclass(frozen=True)
class Week:
    """One ISO week of a reviewer's work: `label` is `2026-W07`."""

    label: str
    gold: GoldFigures
    severity: float | None
    compared: int
    scores: int
    """All of the reviewer's scores given that week, of every purpose."""


@dataclass(frozen=True)
class ReviewerQuality:
    username: str
    scores: int
    gold: GoldFigures
    weeks: tuple[Week, ...]
    calibration_done: int
    severity: float | None
    compared: int
    too_fast: int | None
    """Scores given faster than the reading speed allows; None when the check is off."""
    timed: int
    """Scores with a time spent recorded, the only ones the speed check can judge."""
    excluded: bool


@dataclass(frozen=True)
class CampaignQuality:
    campaign: Campaign
    reviewers: list[ReviewerQuality]
    gold_answers: int
    calibration_answers: int
    calibration_on: bool
    max_chars_per_s: int | None
    extra_reviews: int
    weeks: list[str] = field(default_factory=list)
    """Every week any reviewer worked in, in order."""

    @property
    def calibration_empty(self) -> bool:
        """Calibration is on but there is nothing to calibrate on: new reviewers skip it."""
        return self.calibration_on and not self.calibration_answers


def week_of(moment: datetime) -> str:
    """The ISO week of `moment` in the site's time zone, as `YYYY-Www`."""
    year, week, _day = timezone.localtime(moment).isocalendar()
    return f"{year}-W{week:02d}"


def _gold_figures(distances: Sequence[int]) -> GoldFigures:
    return GoldFigures(
        seen=len(distances),
        inside=sum(d == 0 for d in distances),
        mean_distance=statistics.fmean(distances) if distances else None,
    )


def calibration_count(campaign: Campaign) -> int:
    """How many calibration answers the campaign has."""
    return GoldAnswer.objects.filter(
        generation__campaign=campaign, purpose=Purpose.CALIBRATION
    ).count()


def measure(campaign: Campaign) -> CampaignQuality:
    """Every reviewer's quality figures for `campaign` (see the module docstring)."""
    review = ReviewSettings.objects.filter(campaign=campaign).first() or ReviewSettings()
    rate = review.max_chars_per_s
    marks = GoldAnswer.objects.filter(generation__campaign=campaign).aggregate(
        gold=Count("pk", filter=Q(purpose=Purpose.GOLD)),
        calibration=Count("pk", filter=Q(purpose=Purpose.CALIBRATION)),
    )
    extra = ReviewUnit.objects.filter(campaign=campaign).aggregate(n=Sum("extra_reviews"))["n"]
    excluded = set(exclusion.excluded([campaign.pk]).get(campaign.pk, []))
    rows = (
        Score.objects.filter(generation__campaign=campaign)
        .annotate(chars=Length("generation__content"))
        .values_list(
            "reviewer__username",
            "generation_id",
            "score",
            "purpose",
            "scored_at",
            "seconds_spent",
            "chars",
            "generation__gold__low",
            "generation__gold__high",
            "generation__gold__purpose",
        )
    )

    count: dict[str, int] = {}
    weekly_count: dict[tuple[str, str], int] = {}
    distances: dict[str, list[int]] = {}
    weekly_distances: dict[tuple[str, str], list[int]] = {}
    calibrated: dict[str, int] = {}
    too_fast: dict[str, int] = {}
    timed: dict[str, int] = {}
    ratings: list[tuple[str, int, float]] = []
    weekly_ratings: list[tuple[tuple[str, str], int, float]] = []
    for name, answer, value, purpose, at, seconds, chars, low, high, mark in rows:
        week = week_of(at)
        count[name] = count.get(name, 0) + 1
        weekly_count[name, week] = weekly_count.get((name, week), 0) + 1
        if seconds is not None:
            timed[name] = timed.get(name, 0) + 1
            if rate is not None and seconds * rate < (chars or 0):
                too_fast[name] = too_fast.get(name, 0) + 1
        if purpose == Purpose.REGULAR:
            ratings.append((name, answer, value))
            weekly_ratings.append(((name, week), answer, value))
        elif purpose == Purpose.GOLD and low is not None:
            distance = GoldAnswer(low=low, high=high).distance(value)
            distances.setdefault(name, []).append(distance)
            weekly_distances.setdefault((name, week), []).append(distance)
        elif purpose == Purpose.CALIBRATION and mark == Purpose.CALIBRATION:
            calibrated[name] = calibrated.get(name, 0) + 1

    severity = stats.severity(ratings) if ratings else {}
    weekly_severity = stats.severity(weekly_ratings) if weekly_ratings else {}
    weeks_of: dict[str, list[str]] = {}
    for name, week in sorted(weekly_count):
        weeks_of.setdefault(name, []).append(week)
    reviewers = []
    for name in sorted(count):
        overall = severity.get(name)
        weeks = []
        for week in weeks_of[name]:
            found = weekly_severity.get((name, week))
            weeks.append(
                Week(
                    label=week,
                    gold=_gold_figures(weekly_distances.get((name, week), [])),
                    severity=found.offset if found else None,
                    compared=found.compared if found else 0,
                    scores=weekly_count[name, week],
                )
            )
        reviewers.append(
            ReviewerQuality(
                username=name,
                scores=count[name],
                gold=_gold_figures(distances.get(name, [])),
                weeks=tuple(weeks),
                calibration_done=calibrated.get(name, 0),
                severity=overall.offset if overall else None,
                compared=overall.compared if overall else 0,
                too_fast=None if rate is None else too_fast.get(name, 0),
                timed=timed.get(name, 0),
                excluded=name in excluded,
            )
        )
    return CampaignQuality(
        campaign=campaign,
        reviewers=reviewers,
        gold_answers=marks["gold"],
        calibration_answers=marks["calibration"],
        calibration_on=review.calibration,
        max_chars_per_s=rate,
        extra_reviews=extra or 0,
        weeks=sorted({week for _name, week in weekly_count}),
    )


# --- Tables (CSV) and charts --------------------------------------------------------------------

REVIEWER_COLUMNS = (
    "reviewer", "scores", "gold_seen", "gold_inside", "gold_share_inside", "gold_mean_distance",
    "calibration_done", "calibration_total", "severity", "severity_compared", "too_fast",
    "timed", "excluded",
)  # fmt: skip
WEEK_COLUMNS = (
    "reviewer", "week", "scores", "gold_seen", "gold_inside", "gold_share_inside",
    "gold_mean_distance", "severity", "severity_compared",
)  # fmt: skip


def reviewer_rows(quality: CampaignQuality) -> list[tuple[Any, ...]]:
    """One row per reviewer, in `REVIEWER_COLUMNS` order."""
    return [
        (
            r.username,
            r.scores,
            r.gold.seen,
            r.gold.inside,
            r.gold.share_inside,
            r.gold.mean_distance,
            r.calibration_done,
            quality.calibration_answers,
            r.severity,
            r.compared,
            r.too_fast,
            r.timed,
            r.excluded,
        )
        for r in quality.reviewers
    ]


def week_rows(quality: CampaignQuality) -> list[tuple[Any, ...]]:
    """One row per reviewer and week worked, in `WEEK_COLUMNS` order."""
    return [
        (
            r.username,
            w.label,
            w.scores,
            w.gold.seen,
            w.gold.inside,
            w.gold.share_inside,
            w.gold.mean_distance,
            w.severity,
            w.compared,
        )
        for r in quality.reviewers
        for w in r.weeks
    ]


def drift_chart(quality: CampaignQuality) -> Chart:
    """Each reviewer's severity per week of work: one line per reviewer."""
    traces = []
    rows: list[tuple[Any, ...]] = []
    for r in quality.reviewers:
        known = [w for w in r.weeks if w.severity is not None]
        if not known:
            continue
        traces.append(
            {
                "type": "scatter",
                "mode": "lines+markers",
                "name": r.username,
                "x": [w.label for w in known],
                "y": [_round(w.severity) for w in known],
                "hovertemplate": "%{fullData.name}, %{x}: %{y:+.2f}<extra></extra>",
            }
        )
        rows += [(r.username, w.label, w.severity, w.compared) for w in known]
    return Chart(
        "drift",
        _("Severity per week of work"),
        _(
            "Mean of (score − the other reviewers' mean on the same answer) over the reviewer's "
            "regular scores of each week; above 0 more lenient than the others, below 0 more "
            "severe."
        ),
        {
            "data": traces,
            "layout": _layout(
                xaxis={"type": "category", "title": {"text": _("ISO week")}},
                yaxis={"zeroline": True, "title": {"text": _("offset (points)")}},
            ),
        },
        ("reviewer", "week", "severity", "compared"),
        rows,
    )


def gold_chart(quality: CampaignQuality) -> Chart:
    """Each reviewer's share of gold scores inside the range, per week."""
    traces = []
    rows: list[tuple[Any, ...]] = []
    for r in quality.reviewers:
        known = [w for w in r.weeks if w.gold.seen]
        if not known:
            continue
        traces.append(
            {
                "type": "scatter",
                "mode": "lines+markers",
                "name": r.username,
                "x": [w.label for w in known],
                "y": [_round(w.gold.share_inside) for w in known],
                "customdata": [w.gold.seen for w in known],
                "hovertemplate": "%{fullData.name}, %{x}: %{y:.0%} of %{customdata}<extra></extra>",
            }
        )
        rows += [
            (r.username, w.label, w.gold.seen, w.gold.share_inside, w.gold.mean_distance)
            for w in known
        ]
    return Chart(
        "gold",
        _("Gold answers scored inside the expected range, per week"),
        _("Share of the reviewer's gold scores of each week that fall inside the admin's range."),
        {
            "data": traces,
            "layout": _layout(
                xaxis={"type": "category", "title": {"text": _("ISO week")}},
                yaxis={"range": [0, 1], "tickformat": ".0%", "title": {"text": _("inside")}},
            ),
        },
        ("reviewer", "week", "gold_seen", "gold_share_inside", "gold_mean_distance"),
        rows,
    )


def tables(quality: CampaignQuality) -> dict[str, tuple[tuple[str, ...], list[tuple[Any, ...]]]]:
    """Every table and chart of the page, by the CSV name the page links to."""
    found = {
        "reviewers": (REVIEWER_COLUMNS, reviewer_rows(quality)),
        "weeks": (WEEK_COLUMNS, week_rows(quality)),
    }
    for chart in (drift_chart(quality), gold_chart(quality)):
        found[chart.id] = (chart.header, chart.rows)
    return found
