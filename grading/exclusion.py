"""Reviewers left out of a campaign's results (DESIGN §11, drift).

An admin excludes a reviewer from one campaign: every figure and figure CSV of that campaign is
then computed without that reviewer's scores, which are never deleted. Scores are filtered in
one place, `Score.objects.counted()`, which every reader of figures uses (`comparison.build`,
`analysis_export.read`, `judge_stats.build`, `scores_export.aggregate_rows`). The per-score
export keeps every score: it is the raw record. A change of the exclusions bumps the campaign's
`scores_version`, as a new score does, so cached figures are rebuilt.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils.translation import gettext as _

from inference.models import Campaign

from .models import ReviewSettings, Score


class ExclusionRefused(ValueError):
    """The exclusion asked for cannot be made; the message says why, for the admin."""


def exclude(campaign: Campaign, reviewer: Any) -> None:
    """Leave `reviewer`'s scores out of `campaign`'s figures (refused if there are none)."""
    if not Score.objects.filter(generation__campaign=campaign, reviewer=reviewer).exists():
        raise ExclusionRefused(
            _("%(reviewer)s has no scores in this campaign: there is nothing to exclude.")
            % {"reviewer": reviewer.get_username()}
        )
    with transaction.atomic():
        review, _created = ReviewSettings.objects.get_or_create(campaign=campaign)
        if review.excluded_reviewers.filter(pk=reviewer.pk).exists():
            return
        review.excluded_reviewers.add(reviewer)
        ReviewSettings.objects.scores_changed([campaign.pk])


def include(campaign: Campaign, reviewer: Any) -> None:
    """Count `reviewer`'s scores in `campaign`'s figures again."""
    with transaction.atomic():
        review = ReviewSettings.objects.filter(campaign=campaign).first()
        if review is None or not review.excluded_reviewers.filter(pk=reviewer.pk).exists():
            return
        review.excluded_reviewers.remove(reviewer)
        ReviewSettings.objects.scores_changed([campaign.pk])


def excluded(campaign_ids: Sequence[int]) -> dict[int, list[str]]:
    """Per campaign id with exclusions: the excluded reviewers' usernames, sorted."""
    through = ReviewSettings.excluded_reviewers.through
    found: dict[int, list[str]] = {}
    rows = (
        through.objects.filter(reviewsettings__campaign_id__in=list(campaign_ids))
        .order_by("user__username")
        .values_list("reviewsettings__campaign_id", "user__username")
    )
    for campaign_id, username in rows:
        found.setdefault(campaign_id, []).append(username)
    return found


def excluded_count(campaign_ids: Sequence[int]) -> int:
    """How many (campaign, reviewer) exclusions these campaigns have."""
    return sum(len(names) for names in excluded(campaign_ids).values())


@dataclass(frozen=True)
class Note:
    """What a results page says about exclusions in view."""

    count: int
    """Distinct reviewers excluded from at least one campaign in view."""
    names: list[str]
    """Admins only: each excluded reviewer, with the campaigns when several are in view."""


def note(campaigns: Sequence[Campaign], *, names: bool) -> Note:
    """The exclusion note of a page showing `campaigns`; `names` for admins only: a reviewer
    reading opened results learns how many people were left out, never who."""
    slug_of = {c.pk: c.slug for c in campaigns}
    by_reviewer: dict[str, list[str]] = {}
    for campaign_id, usernames in excluded(list(slug_of)).items():
        for username in usernames:
            by_reviewer.setdefault(username, []).append(slug_of[campaign_id])
    shown: list[str] = []
    if names:
        for username in sorted(by_reviewer):
            where = by_reviewer[username]
            shown.append(username if len(slug_of) == 1 else f"{username} ({', '.join(where)})")
    return Note(len(by_reviewer), shown)


def warning(campaign_slugs: Sequence[str] | None) -> str:
    """The line the figure exports print on stderr when exclusions shape their figures, or ""
    (one query)."""
    rows = ReviewSettings.excluded_reviewers.through.objects.order_by(
        "user__username", "reviewsettings__campaign__slug"
    )
    if campaign_slugs:
        rows = rows.filter(reviewsettings__campaign__slug__in=campaign_slugs)
    by_reviewer: dict[str, list[str]] = {}
    for username, slug in rows.values_list("user__username", "reviewsettings__campaign__slug"):
        by_reviewer.setdefault(username, []).append(slug)
    if not by_reviewer:
        return ""
    names = ", ".join(f"{name} ({', '.join(slugs)})" for name, slugs in by_reviewer.items())
    return (
        f"warning: {len(by_reviewer)} reviewer(s) excluded from these figures: {names}; "
        "their scores are left out (export_scores keeps them)"
    )
