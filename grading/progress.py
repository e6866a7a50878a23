"""How far review has got: a reviewer's own progress (the bars on the scoring page) and a
campaign's (the admins' Review progress page)."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any, TypedDict

from django.db.models import Count, F, Q, Sum, Value
from django.db.models.functions import Greatest

from inference.models import Campaign, GenerationStatus

from . import assignment, exclusion
from .models import Assignment, GoldAnswer, Purpose, ReviewUnit, Score


def reviewer_progress(reviewer: Any, campaign_id: int) -> dict[str, int]:
    """What the reviewer has scored, what they could still be given, and the two with what they
    hold now (`mine_total`); and how many reviews the campaign of their current item wants in
    all (`campaign_wanted`) and how many it has (`campaign_done`)."""
    scored = Assignment.objects.submitted().filter(reviewer_id=reviewer.pk).count()
    available = assignment.available_count(reviewer)
    reserved = Assignment.objects.reserved().filter(reviewer_id=reviewer.pk).count()
    units = ReviewUnit.objects.filter(campaign_id=campaign_id).aggregate(
        wanted=Sum(
            F("campaign__review__reviewers_per_output") + F("extra_reviews"),
            filter=Q(purpose=Purpose.REGULAR),
        ),
        done=Sum("submitted"),
    )
    # Reviews of gold and calibration units count as done, as any review does (so the bar moves
    # the same way after a gold unit as after a regular one), capped at what is wanted.
    wanted = units["wanted"] or 0
    return {
        "scored": scored,
        "available": available,
        "mine_total": scored + reserved + available,
        "campaign_wanted": wanted,
        "campaign_done": min(units["done"] or 0, wanted),
    }


@dataclass(frozen=True)
class UnitCounts:
    total: int
    complete: int
    """Units reviewed as many times as the campaign wants."""
    held: int
    """Units held for an admin because an answer names a model."""
    submitted: int
    """Reviews submitted, over every unit."""
    extra_units: int = 0
    """Units whose first scores disagreed, so more reviews were asked of them."""
    extra_reviews: int = 0
    """How many reviews were asked beyond `reviewers_per_output`, over those units."""
    checks: int = 0
    """Gold and calibration units (answers an admin scored in advance), not counted above."""


@dataclass(frozen=True)
class ReviewerPace:
    username: str
    scores: int
    median_s: float | None
    """Median seconds spent per score, of the scores that recorded it."""
    excluded: bool = False
    """Left out of the campaign's results by an admin (`grading.exclusion`)."""


class CampaignProgress(TypedDict):
    """The Review progress page's context."""

    campaign: Campaign
    units: UnitCounts
    remaining: int
    """Reviews still wanted."""
    k: int
    """Reviews wanted per unit."""
    reviewers: list[ReviewerPace]
    """Everyone who scored the campaign, by name."""
    excluded: list[str]
    """Reviewers left out of the campaign's results, by name (with or without scores)."""
    extra_on: bool
    """Extra reviews on disagreement are on for the campaign."""
    calibration_empty: bool
    """Calibration is on but the campaign has no calibration answer: it blocks no one."""


def campaign_progress(campaign: Campaign) -> CampaignProgress:
    """How many of the campaign's units are reviewed enough, how many reviews are still wanted,
    and each reviewer's number of scores and pace."""
    review = campaign.review
    k = review.reviewers_per_output
    regular = Q(purpose=Purpose.REGULAR)
    counts = campaign.review_units.aggregate(
        total=Count("pk", filter=regular),
        complete=Count("pk", filter=regular & Q(submitted__gte=k + F("extra_reviews"))),
        held=Count("pk", filter=regular & Q(held_for_admin=True)),
        given=Sum("submitted", filter=regular),
        remaining=Sum(Greatest(k + F("extra_reviews") - F("submitted"), Value(0)), filter=regular),
        extra_units=Count("pk", filter=regular & Q(extra_reviews__gt=0)),
        asked=Sum("extra_reviews", filter=regular),
        checks=Count("pk", filter=~regular),
    )
    units = UnitCounts(
        total=counts["total"] or 0,
        complete=counts["complete"] or 0,
        held=counts["held"] or 0,
        submitted=counts["given"] or 0,
        extra_units=counts["extra_units"] or 0,
        extra_reviews=counts["asked"] or 0,
        checks=counts["checks"] or 0,
    )
    calibration_empty = (
        review.calibration
        and not GoldAnswer.objects.filter(
            purpose=Purpose.CALIBRATION,
            generation__campaign=campaign,
            generation__status=GenerationStatus.SUCCEEDED,
            generation__placeholder=False,
        ).exists()
    )
    return {
        "campaign": campaign,
        "units": units,
        "remaining": counts["remaining"] or 0,
        "k": k,
        "extra_on": review.disagreement_spread is not None and (review.reviewers_max or 0) > k,
        "calibration_empty": calibration_empty,
        **reviewers_context(campaign),
    }


class ReviewersContext(TypedDict):
    reviewers: list[ReviewerPace]
    excluded: list[str]


def reviewers_context(campaign: Campaign) -> ReviewersContext:
    """The Review progress page's reviewers table: paces, and who is left out of the results."""
    excluded = exclusion.excluded([campaign.pk]).get(campaign.pk, [])
    return {"reviewers": _reviewer_paces(campaign, set(excluded)), "excluded": excluded}


def _reviewer_paces(campaign: Campaign, excluded: set[str]) -> list[ReviewerPace]:
    seconds: dict[str, list[float]] = {}
    counts: dict[str, int] = {}
    for username, spent in Score.objects.filter(generation__campaign=campaign).values_list(
        "reviewer__username", "seconds_spent"
    ):
        counts[username] = counts.get(username, 0) + 1
        if spent is not None:
            seconds.setdefault(username, []).append(spent)
    return [
        ReviewerPace(
            username=name,
            scores=counts[name],
            median_s=statistics.median(seconds[name]) if seconds.get(name) else None,
            excluded=name in excluded,
        )
        for name in sorted(counts)
    ]
