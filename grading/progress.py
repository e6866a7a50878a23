"""How far review has got: a reviewer's own progress (the bars on the scoring page) and a
campaign's (the admins' Review progress page)."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any, TypedDict

from django.db.models import Count, F, Q, Sum

from inference.models import Campaign

from . import assignment, exclusion
from .models import Assignment, ReviewUnit, Score


def reviewer_progress(reviewer: Any, campaign_id: int) -> dict[str, int]:
    """What the reviewer has scored, what they could still be given, and the two with what they
    hold now (`mine_total`); and how many reviews the campaign of their current item wants in
    all (`campaign_wanted`) and how many it has (`campaign_done`)."""
    scored = Assignment.objects.submitted().filter(reviewer_id=reviewer.pk).count()
    available = assignment.available_count(reviewer)
    reserved = Assignment.objects.reserved().filter(reviewer_id=reviewer.pk).count()
    units = ReviewUnit.objects.filter(campaign_id=campaign_id).aggregate(
        wanted=Sum(F("campaign__review__reviewers_per_output")), done=Sum("submitted")
    )
    return {
        "scored": scored,
        "available": available,
        "mine_total": scored + reserved + available,
        "campaign_wanted": units["wanted"] or 0,
        "campaign_done": units["done"] or 0,
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


def campaign_progress(campaign: Campaign) -> CampaignProgress:
    """How many of the campaign's units are reviewed enough, how many reviews are still wanted,
    and each reviewer's number of scores and pace."""
    k = campaign.review.reviewers_per_output
    counts = campaign.review_units.aggregate(
        total=Count("pk"),
        complete=Count("pk", filter=Q(submitted__gte=k)),
        held=Count("pk", filter=Q(held_for_admin=True)),
        submitted=Sum("submitted"),
    )
    units = UnitCounts(
        total=counts["total"] or 0,
        complete=counts["complete"] or 0,
        held=counts["held"] or 0,
        submitted=counts["submitted"] or 0,
    )
    return {
        "campaign": campaign,
        "units": units,
        "remaining": max(0, units.total * k - units.submitted),
        "k": k,
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
