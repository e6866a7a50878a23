"""The named status sets of generations and campaigns, and the queries that use them."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from django.db.models import QuerySet

from inference.models import (
    FINISHED_STATUSES,
    IN_FLIGHT_STATUSES,
    RETRYABLE_STATUSES,
    Campaign,
    CampaignStatus,
    Generation,
    GenerationStatus,
    Suite,
)
from tests import builders


def test_every_generation_status_is_either_in_flight_or_finished() -> None:
    assert set(IN_FLIGHT_STATUSES) | set(FINISHED_STATUSES) == set(GenerationStatus)
    assert not set(IN_FLIGHT_STATUSES) & set(FINISHED_STATUSES)
    assert set(RETRYABLE_STATUSES) == set(FINISHED_STATUSES) - {GenerationStatus.SUCCEEDED}


@pytest.fixture
def campaign(db: None) -> Campaign:
    """A campaign with one simulated generation in each status, on one model."""
    alpha = builders.endpoint("alpha")
    made = builders.campaign("c", builders.suite("s", ["QA"] * len(GenerationStatus)), [alpha])
    items = made.suite.items.order_by("external_id")
    for item, status in zip(items, GenerationStatus, strict=True):
        builders.generation(made, item, alpha, status=status)
    made.generations.update(simulated=True)
    return made


def statuses(generations: QuerySet[Generation]) -> set[str]:
    return set(generations.values_list("status", flat=True))


def test_generation_queries_pick_their_statuses(campaign: Campaign) -> None:
    assert statuses(Generation.objects.finished()) == {"succeeded", "failed", "cancelled"}
    assert statuses(campaign.generations.in_flight()) == {"queued", "running"}
    assert statuses(campaign.generations.retryable()) == {"failed", "cancelled"}
    assert statuses(campaign.generations.succeeded()) == {"succeeded"}


def test_campaign_run_counts_count_finished_failed_and_simulated(campaign: Campaign) -> None:
    builders.campaign("empty", campaign.suite, [])
    rows: dict[str, Mapping[str, object]] = {
        str(row["slug"]): row for row in Campaign.objects.with_run_counts().values()
    }
    wanted = ("total", "done", "failed", "simulated")
    assert [rows["c"][name] for name in wanted] == [5, 3, 1, 5]
    assert [rows["empty"][name] for name in wanted] == [0, 0, 0, 0]


def test_launched_campaigns_are_running_or_finished(db: None) -> None:
    suite = Suite.objects.create(name="s")
    for status in CampaignStatus:
        Campaign.objects.create(slug=status, name=status, suite=suite, status=status)
    launched = Campaign.objects.launched().values_list("slug", flat=True)
    assert sorted(launched) == ["finished", "running"]
