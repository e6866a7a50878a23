"""`manage.py export_manifest CAMPAIGN` (DESIGN §12): one JSON document per campaign, read back
and checked against figures recomputed here from what the test made."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from grading.models import ReviewSettings
from grading.study import QUALITY_KEYS, load_study
from inference.models import (
    Campaign,
    CampaignModel,
    Generation,
    GenerationSource,
    GenerationStatus,
    ModelEndpoint,
    TaskItem,
    TaskType,
)
from inference.version import gradebench_version
from tests import builders

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
STATUSES = [
    GenerationStatus.SUCCEEDED,
    GenerationStatus.FAILED,
    GenerationStatus.SUCCEEDED,
    GenerationStatus.CANCELLED,
    GenerationStatus.QUEUED,
    GenerationStatus.RUNNING,
]


def export(slug: str, *extra: str) -> str:
    out = StringIO()
    call_command("export_manifest", slug, *extra, stdout=out)
    return out.getvalue()


@pytest.fixture
def messy() -> dict[str, Any]:
    """A campaign of three models over two samples, in every state, one model since removed,
    an imported answer, two server versions seen on one endpoint; and what was made, to
    recompute the manifest's figures from."""
    suite = builders.suite("manifest", ["AR", "AR", "QA", "CK"])
    alpha, beta, gone = (builders.endpoint(slug) for slug in ("alpha", "beta", "gone"))
    campaign = builders.campaign(
        "messy",
        suite,
        [beta, alpha, gone],
        positions=[1, 0, 2],
        params={"temperature": 0.7, "max_tokens": 512, "seed": 5},
        overrides={"beta": {"temperature": 0.2}},
        samples=2,
        reviewers_per_output=3,
    )
    campaign.task_types.set(TaskType.objects.filter(code__in=["AR", "QA"]))
    Campaign.objects.filter(pk=campaign.pk).update(launched_at=T0)
    ReviewSettings.objects.filter(campaign=campaign).update(layout="single")
    CampaignModel.objects.filter(campaign=campaign, endpoint=alpha).update(
        server_version="0.8.5", server_probed_at=T0 + timedelta(seconds=1)
    )
    items = list(TaskItem.objects.filter(suite=suite, task_type__code__in=["AR", "QA"]))
    made: list[dict[str, Any]] = []
    n = 0
    for endpoint in (alpha, beta, gone):
        for item in items:
            for sample in range(2):
                status = STATUSES[n % len(STATUSES)]
                answer = builders.generation(campaign, item, endpoint, sample=sample, status=status)
                started = T0 + timedelta(minutes=n) if status != GenerationStatus.QUEUED else None
                finished = (
                    started + timedelta(seconds=30 + n)
                    if started and status != GenerationStatus.RUNNING
                    else None
                )
                record = {
                    "status": status,
                    "endpoint": endpoint.slug,
                    "started_at": started,
                    "finished_at": finished,
                    "source": GenerationSource.IMPORTED if n == 7 else GenerationSource.GENERATED,
                    "served_model": f"{endpoint.model}-served" if status == "succeeded" else "",
                    "server_version": ("0.8.5" if n % 2 else "0.9.0") if endpoint == alpha else "",
                    "system_fingerprint": "fp_1" if endpoint == beta else "",
                    "gradebench_version": "" if status == GenerationStatus.QUEUED else "0.1.0",
                    "request": {"base_url": f"http://{endpoint.slug}:8000/v1"},
                }
                Generation.objects.filter(pk=answer.pk).update(**record_fields(record))
                made.append(record)
                n += 1
    CampaignModel.objects.filter(campaign=campaign, endpoint=gone).delete()
    return {"campaign": campaign, "made": made, "suite": suite}


def record_fields(record: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in record.items() if key != "endpoint"}


def when(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value else None


def test_manifest_counts_span_and_endpoints_match_what_was_made(messy: dict[str, Any]) -> None:
    manifest = json.loads(export("messy"))
    made = messy["made"]

    statuses = Counter(record["status"] for record in made)
    assert manifest["counts"]["total"] == len(made) == 18
    assert manifest["counts"]["by_status"] == {s: statuses[s] for s in GenerationStatus.values}
    sources = Counter(record["source"] for record in made)
    assert manifest["counts"]["by_source"] == {s: sources[s] for s in GenerationSource.values}
    started = [r["started_at"] for r in made if r["started_at"]]
    finished = [r["finished_at"] for r in made if r["finished_at"]]
    assert manifest["time_span"] == {
        "launched_at": when(T0),
        "first_started_at": when(min(started)),
        "last_finished_at": when(max(finished)),
    }

    # Members in their campaign order, then the removed one.
    assert [e["slug"] for e in manifest["endpoints"]] == ["alpha", "beta", "gone"]
    for entry in manifest["endpoints"]:
        own = [r for r in made if r["endpoint"] == entry["slug"]]
        assert entry["generations"] == {
            s: sum(r["status"] == s for r in own) for s in GenerationStatus.values
        }
        for field in ("served_model", "server_version", "system_fingerprint"):
            assert entry[f"{field}s"] == sorted({r[field] for r in own if r[field]})
        assert entry["base_urls"] == [f"http://{entry['slug']}:8000/v1"]
    alpha, beta, gone = manifest["endpoints"]
    assert alpha["server_versions"] == ["0.8.5", "0.9.0"]  # the server changed during the run
    assert alpha["probed_server_version"] == "0.8.5"
    assert alpha["probed_at"] == when(T0 + timedelta(seconds=1))
    assert alpha["sampling"] == {"temperature": 0.7, "max_tokens": 512, "seed": 5}
    assert beta["sampling"] == {"temperature": 0.2, "max_tokens": 512, "seed": 5}
    assert (gone["probed_server_version"], gone["probed_at"], gone["sampling"]) == ("", None, {})

    assert manifest["sampling"] == {
        "params": {"temperature": 0.7, "max_tokens": 512, "seed": 5},
        "samples": 2,
        "vision_items_to_text_models": False,
    }
    versions = Counter(r["gradebench_version"] for r in made if r["gradebench_version"])
    assert manifest["gradebench"] == {
        "exported_with": gradebench_version(),
        "generations_by_version": dict(versions),
    }


def test_manifest_study_entry_is_a_study_file_that_loads_back_unchanged(
    messy: dict[str, Any],
) -> None:
    study = json.loads(export("messy"))["study"]
    entry = study["campaigns"][0]
    assert entry["models"] == ["alpha", "beta"]  # the members, in campaign order
    assert entry["overrides"] == {"beta": {"temperature": 0.2}}
    assert (entry["task_types"], entry["samples"], entry["suite"]) == (["AR", "QA"], 2, "manifest")
    assert (entry["reviewers_per_output"], entry["layout"]) == (3, "single")
    assert [e["slug"] for e in study["endpoints"]] == ["alpha", "beta"]
    assert all("api_key" not in e for e in study["endpoints"])
    result = load_study(study)
    assert (result.created, result.updated, result.notes) == ([], [], [])
    assert sorted(result.unchanged) == ["campaign messy", "endpoint alpha", "endpoint beta"]


def test_manifest_study_entry_keeps_the_judges_and_loads_back_unchanged(
    messy: dict[str, Any],
) -> None:
    """A judge that is not a model of the campaign is written among the endpoints too; one
    that is (beta) is written once."""
    campaign = messy["campaign"]
    judge = builders.endpoint("judge-large")
    campaign.judges.set([judge, ModelEndpoint.objects.get(slug="beta")])
    Campaign.objects.filter(pk=campaign.pk).update(judge_params={"temperature": 0, "seed": 1})
    study = json.loads(export("messy"))["study"]
    entry = study["campaigns"][0]
    assert entry["judges"] == ["beta", "judge-large"]
    assert entry["judge_params"] == {"temperature": 0, "seed": 1}
    assert [e["slug"] for e in study["endpoints"]] == ["alpha", "beta", "judge-large"]
    result = load_study(study)
    assert (result.created, result.updated) == ([], [])
    assert result.notes == [
        "campaign messy: judge beta is also one of its models, so it scores its own answers "
        "(the results pages note it)"
    ]
    assert sorted(campaign.judges.values_list("slug", flat=True)) == ["beta", "judge-large"]


def canonical_hash(items: list[TaskItem]) -> str:
    """The suite hash as the README defines it, computed here on its own."""
    entries = sorted(
        (
            {
                "id": item.external_id,
                "task_type": item.task_type.code,
                "prompt": item.prompt,
                "system": item.system,
                "reference": item.reference,
                "tags": item.tags,
                "images": [link.image.sha256 for link in item.item_images.order_by("position")],
            }
            for item in items
        ),
        key=lambda entry: entry["id"],
    )
    text = json.dumps(entries, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def test_suite_hash_follows_the_items_content(messy: dict[str, Any]) -> None:
    suite = messy["suite"]
    TaskItem.objects.filter(suite=suite, external_id="AR-1").update(tags=["数学", "easy"])
    before = json.loads(export("messy"))["suite"]
    items = list(TaskItem.objects.filter(suite=suite))
    assert before == {"name": "manifest", "items": 4, "content_hash": canonical_hash(items)}

    TaskItem.objects.filter(suite=suite, external_id="QA-0").update(prompt="a changed prompt")
    changed = json.loads(export("messy"))["suite"]["content_hash"]
    assert changed != before["content_hash"]
    assert changed == canonical_hash(list(TaskItem.objects.filter(suite=suite)))

    TaskItem.objects.filter(suite=suite, external_id="QA-0").update(prompt="prompt QA-0")
    assert json.loads(export("messy"))["suite"]["content_hash"] == before["content_hash"]


def test_manifest_is_the_same_bytes_every_time_on_stdout_or_in_a_file(
    messy: dict[str, Any], tmp_path: Path
) -> None:
    first = export("messy")
    assert export("messy") == first
    target = tmp_path / "manifest.json"
    assert export("messy", "--output", str(target)) == ""
    assert target.read_text(encoding="utf-8") == first
    assert first.endswith("}\n")
    parsed = json.loads(first)
    assert list(parsed) == sorted(parsed)
    assert json.dumps(parsed, indent=2, sort_keys=True, ensure_ascii=False) + "\n" == first


def test_unknown_campaign_is_a_clear_error(messy: dict[str, Any]) -> None:
    with pytest.raises(CommandError, match=r"no campaign 'nope' \(known: messy\)"):
        export("nope")


def test_a_campaign_never_run_has_an_empty_record(db: None) -> None:
    suite = builders.suite("fresh", ["AR"])
    builders.campaign("fresh", suite, [builders.endpoint("solo")])
    manifest = json.loads(export("fresh"))
    assert manifest["counts"]["total"] == 0
    assert set(manifest["counts"]["by_status"].values()) == {0}
    assert manifest["time_span"] == {
        "launched_at": None,
        "first_started_at": None,
        "last_finished_at": None,
    }
    assert manifest["endpoints"][0]["server_versions"] == []
    assert manifest["gradebench"]["generations_by_version"] == {}


def test_manifest_study_entry_keeps_the_reviewer_quality_settings(messy: dict[str, Any]) -> None:
    ReviewSettings.objects.filter(campaign=messy["campaign"]).update(
        gold_rate=0.3,
        calibration=True,
        disagreement_spread=4,
        reviewers_max=5,
        max_chars_per_s=None,
    )
    entry = json.loads(export("messy"))["study"]["campaigns"][0]
    assert {key: entry[key] for key in QUALITY_KEYS} == {
        "gold_rate": 0.3,
        "calibration": True,
        "disagreement_spread": 4,
        "reviewers_max": 5,
        "max_chars_per_s": None,
    }
    ReviewSettings.objects.filter(campaign=messy["campaign"]).update(
        gold_rate=0.1, calibration=False, disagreement_spread=None, reviewers_max=None
    )
    result = load_study(json.loads(export("messy"))["study"] | {"campaigns": [entry]})
    assert result.updated == ["campaign messy"]
    review = ReviewSettings.objects.get(campaign=messy["campaign"])
    assert (review.gold_rate, review.calibration, review.disagreement_spread) == (0.3, True, 4)
    assert (review.reviewers_max, review.max_chars_per_s) == (5, None)
