"""The named status sets of assignments and exports, and the queries that use them."""

from __future__ import annotations

import pytest
from django.db.models import ProtectedError, QuerySet
from django.utils import timezone

from grading import assignment as queue
from grading.models import (
    Assignment,
    AssignmentStatus,
    Export,
    ExportKind,
    ExportStatus,
    Score,
)
from tests import builders

pytestmark = pytest.mark.django_db


def test_assignment_queries_pick_their_statuses() -> None:
    alpha = builders.endpoint("alpha")
    campaign = builders.campaign("c", builders.suite("s", ["QA"] * len(AssignmentStatus)), [alpha])
    for item in campaign.suite.items.all():
        builders.generation(campaign, item, alpha)
    queue.sync_units(campaign)
    alice = builders.reviewer("alice")
    for unit, status in zip(campaign.review_units.order_by("pk"), AssignmentStatus, strict=True):
        Assignment.objects.create(
            unit=unit, reviewer=alice, status=status, expires_at=timezone.now()
        )

    def statuses(assignments: QuerySet[Assignment]) -> set[str]:
        return set(assignments.values_list("status", flat=True))

    assert statuses(Assignment.objects.live()) == {"reserved", "submitted"}
    assert statuses(Assignment.objects.reserved()) == {"reserved"}
    assert statuses(Assignment.objects.submitted()) == {"submitted"}


def test_exports_are_active_until_done_or_failed() -> None:
    campaign = builders.campaign("c", builders.suite("s", []), [])
    for status in ExportStatus:
        Export.objects.create(campaign=campaign, kind=ExportKind.SCORES, status=status)

    active = set(Export.objects.active().values_list("status", flat=True))
    finished = set(Export.objects.finished().values_list("status", flat=True))

    assert active == {"queued", "running"}
    assert finished == {"done", "failed"}
    assert {export.status for export in Export.objects.all() if export.active} == active


def test_a_reviewer_with_scores_cannot_be_deleted_so_no_figure_changes_silently() -> None:
    alpha = builders.endpoint("alpha")
    campaign = builders.campaign("c", builders.suite("s", ["QA"]), [alpha])
    answer = builders.generation(campaign, campaign.suite.items.get(), alpha)
    alice, bob = builders.reviewer("alice"), builders.reviewer("bob")
    builders.score(answer, alice, 7)

    with pytest.raises(ProtectedError):
        alice.delete()

    assert Score.objects.filter(reviewer=alice).count() == 1
    bob.delete()  # a reviewer without scores can go
    alice.is_active = False  # what an admin does instead: she can no longer sign in
    alice.save()
    assert Score.objects.counted().get().score == 7
