"""How far a campaign's run has got, as its run page shows it: each model's generations by
status, how many finished in the last minute (the rate, from which the ETA follows), how many
were timed while their worker fell behind (timing degraded, DESIGN §5), the latest errors, and
whether work waits with nothing running (most likely no worker is up)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypedDict

from django.conf import settings
from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from .models import (
    FINISHED_STATUSES,
    Campaign,
    Generation,
    GenerationStatus,
    ModelEndpoint,
    TimingQuality,
)

RATE_WINDOW_S = 60
"""The rate is the number of generations finished in this many seconds: per minute."""
RECENT_ERRORS = 8


@dataclass(frozen=True)
class ModelProgress:
    """One model's row of the run table."""

    endpoint: ModelEndpoint
    override: dict[str, Any]
    """The model's own sampling settings, shown as a fairness note."""
    total: int
    counts: dict[str, int]
    """Generations by status, every status present."""
    percent: dict[str, float]
    """The same as shares of `total`, 0–100."""
    rate_per_min: int
    eta_min: float | None
    remaining: int
    degraded: int = 0
    """Succeeded generations timed while their worker fell behind: left out of speed figures."""


class RunProgress(TypedDict):
    """The run page's context."""

    campaign: Campaign
    models: list[ModelProgress]
    errors: QuerySet[Generation]
    """The latest failed generations, newest first."""
    active: bool
    """Some generations are still queued or running."""
    launched: bool
    stalled: bool
    """Work waits but nothing runs or finished in the last minute."""
    simulated: bool
    degraded: int
    """Succeeded generations of every model whose timings are degraded."""
    lag_threshold_ms: float
    fairness: list[ModelProgress]
    """The models with sampling settings of their own."""


def run_progress(campaign: Campaign) -> RunProgress:
    """The run page's context: per-model progress, rate and ETA, and the latest errors."""
    counts = _counts_by_endpoint(campaign, since=timezone.now() - timedelta(seconds=RATE_WINDOW_S))
    members = campaign.members.select_related("endpoint").order_by("position")
    models = [
        _model_progress(member.endpoint, member.params_override, counts.get(member.endpoint_id))
        for member in members
    ]
    errors = (
        campaign.generations.filter(status=GenerationStatus.FAILED)
        .select_related("endpoint", "item")
        .only("public_id", "error", "finished_at", "endpoint__slug", "item__external_id")
        .order_by("-finished_at")[:RECENT_ERRORS]
    )
    active = campaign.generations.in_flight().exists()
    return {
        "campaign": campaign,
        "models": models,
        "errors": errors,
        "active": active,
        "launched": any(model.total for model in models),
        # Work waits but nothing runs or finishes: most likely no worker is up.
        "stalled": active and not any(m.counts["running"] or m.rate_per_min for m in models),
        "simulated": campaign.generations.filter(simulated=True).exists(),
        "degraded": sum(model.degraded for model in models),
        "lag_threshold_ms": settings.TIMING_LAG_THRESHOLD_MS,
        "fairness": [model for model in models if model.override],
    }


def _counts_by_endpoint(campaign: Campaign, *, since: datetime) -> dict[int, dict[str, Any]]:
    """Per endpoint id: its generations by status, `total`, and `last_minute` (finished since
    `since`), from one query."""
    rows = (
        campaign.generations.values("endpoint_id")
        .annotate(
            **{state: Count("pk", filter=Q(status=state)) for state in GenerationStatus.values},
            last_minute=Count("pk", filter=Q(finished_at__gte=since)),
            degraded=Count(
                "pk",
                filter=Q(status=GenerationStatus.SUCCEEDED, timing_quality=TimingQuality.DEGRADED),
            ),
            total=Count("pk"),
        )
        .order_by()
    )
    return {row["endpoint_id"]: dict(row) for row in rows}


def _model_progress(
    endpoint: ModelEndpoint, override: dict[str, Any], row: dict[str, Any] | None
) -> ModelProgress:
    row = row or {"total": 0, "last_minute": 0}
    total = row.get("total", 0)
    remaining = total - sum(row.get(state, 0) for state in FINISHED_STATUSES)
    rate = row.get("last_minute", 0)
    return ModelProgress(
        endpoint=endpoint,
        override=override,
        total=total,
        counts={state: row.get(state, 0) for state in GenerationStatus.values},
        percent={
            state: (100.0 * row.get(state, 0) / total if total else 0.0)
            for state in GenerationStatus.values
        },
        rate_per_min=rate,
        eta_min=(remaining / rate) if rate and remaining else None,
        remaining=remaining,
        degraded=row.get("degraded", 0),
    )
