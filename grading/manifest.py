"""A campaign's manifest (DESIGN §12): one JSON document that says how its answers were made.

It holds the study entries as run (a study file of its own, §4.3, that `load_study` reads back),
the suite's content hash (`inference.record.suite_content_hash`), each endpoint with the server
version probed for the run and the versions, model names and fingerprints its generations
recorded, the sampling settings, the counts by status and source, the time span and gradebench's
version. Keys are sorted and no export time is written, so the same campaign always gives the
same bytes: two manifests can be compared with `diff`.

It lives in `grading` because the study entry includes the campaign's review settings.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from django.db.models import Count, Max, Min, QuerySet

from inference.models import (
    Campaign,
    Generation,
    GenerationSource,
    GenerationStatus,
    ModelEndpoint,
    TaskItem,
)
from inference.record import suite_content_hash
from inference.version import gradebench_version

from .study import study_entries

MANIFEST_FORMAT = 1


def _when(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value is not None else None


def _counts(generations: QuerySet[Generation], field: str, choices: list[str]) -> dict[str, int]:
    counts = dict.fromkeys(choices, 0)
    for row in generations.order_by().values(field).annotate(n=Count("pk")):
        counts[row[field]] = row["n"]
    return counts


def _distinct(generations: QuerySet[Generation], field: str) -> list[str]:
    values = generations.order_by().values_list(field, flat=True).distinct()
    return sorted({str(value) for value in values if value})


def _endpoint(
    endpoint: ModelEndpoint, campaign: Campaign, generations: QuerySet[Generation]
) -> dict[str, Any]:
    member = campaign.members.filter(endpoint=endpoint).first()
    own = generations.filter(endpoint=endpoint)
    return {
        "slug": endpoint.slug,
        "model": endpoint.model,
        "base_urls": _distinct(own, "request__base_url"),
        "probed_server_version": member.server_version if member else "",
        "probed_at": _when(member.server_probed_at) if member else None,
        "server_versions": _distinct(own, "server_version"),
        "served_models": _distinct(own, "served_model"),
        "system_fingerprints": _distinct(own, "system_fingerprint"),
        "sampling": member.effective_params() if member else {},
        "generations": _counts(own, "status", list(GenerationStatus.values)),
    }


def campaign_manifest(campaign: Campaign) -> dict[str, Any]:
    """The manifest of `campaign` as a JSON-ready dict (see the module docstring)."""
    generations = Generation.objects.filter(campaign=campaign)
    members = campaign.members.order_by("position", "pk")
    member_ids = list(members.values_list("endpoint", flat=True))
    # An endpoint removed from the campaign after it answered is still part of the record.
    former = set(generations.values_list("endpoint", flat=True)) - set(member_ids)
    endpoints = {e.pk: e for e in ModelEndpoint.objects.filter(pk__in=[*member_ids, *former])}
    ordered = [endpoints[pk] for pk in member_ids] + sorted(
        (endpoints[pk] for pk in former), key=lambda e: e.slug
    )
    span = generations.aggregate(first=Min("started_at"), last=Max("finished_at"))
    suite_items = TaskItem.objects.filter(suite=campaign.suite)
    return {
        "manifest_format": MANIFEST_FORMAT,
        "campaign": campaign.slug,
        "study": study_entries(campaign),
        "suite": {
            "name": campaign.suite.name,
            "items": suite_items.count(),
            "content_hash": suite_content_hash(suite_items),
        },
        "endpoints": [_endpoint(endpoint, campaign, generations) for endpoint in ordered],
        "sampling": {
            "params": campaign.params,
            "samples": campaign.samples,
            "vision_items_to_text_models": campaign.vision_items_to_text_models,
        },
        "counts": {
            "total": generations.count(),
            "by_status": _counts(generations, "status", list(GenerationStatus.values)),
            "by_source": _counts(generations, "source", list(GenerationSource.values)),
        },
        "time_span": {
            "launched_at": _when(campaign.launched_at),
            "first_started_at": _when(span["first"]),
            "last_finished_at": _when(span["last"]),
        },
        "gradebench": {
            "exported_with": gradebench_version(),
            "generations_by_version": {
                row["gradebench_version"]: row["n"]
                for row in generations.exclude(gradebench_version="")
                .order_by()
                .values("gradebench_version")
                .annotate(n=Count("pk"))
            },
        },
    }


def manifest_json(campaign: Campaign) -> str:
    """The manifest as text: sorted keys, two-space indents, UTF-8 characters kept."""
    return json.dumps(campaign_manifest(campaign), indent=2, sort_keys=True, ensure_ascii=False)
