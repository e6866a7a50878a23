"""`manage.py export_judgements` (DESIGN §10): the documented columns read back, formula-safe
cells, the campaign filter, an empty export, an unknown campaign, and a constant query count."""

from __future__ import annotations

import csv
import datetime
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from inference.models import Generation, Judgement, JudgementStatus
from tests import builders

pytestmark = pytest.mark.django_db

HEADER = (
    "campaign,matchup,task_type,item_id,model,sample,judge,prompt_version,score,status,"
    "rationale,judged_at,ttft_ms,response_time_ms,prompt_tokens,completion_tokens"
)
FORMULAS = ["=cmd|' /C calc'!A0", "+1+1", "-2+3", "@SUM(A1:A2)", "\t=1+1", "\r=1+1"]
T0 = datetime.datetime(2026, 3, 1, 9, 30, 15, 250000, tzinfo=datetime.UTC)


def export(*args: str) -> str:
    out = StringIO()
    call_command("export_judgements", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def export_rows(*args: str) -> list[dict[str, str]]:
    return list(csv.DictReader(StringIO(export(*args), newline="")))


@pytest.fixture
def study() -> dict[str, Any]:
    """Two campaigns over one suite; `small` has three models and two judges, one of which is
    also a model, under two prompt versions; `vision` has one model and one judge. Judgements
    in every finished state, and one still queued."""
    made = builders.two_campaigns()
    acme = builders.endpoint("acme-7b")
    judge = builders.endpoint("judge-large")
    small, vision = made["small"], made["vision"]
    builders.campaign("third", made["suite"], [acme])  # no judgements at all
    small.members.create(endpoint=acme, position=2)
    answers = [
        builders.generation(small, item, model, sample=sample)
        for item in made["items"].values()
        for model in (made["ernie"], made["r1"], acme)
        for sample in (0, 1)
    ]
    answers.append(builders.generation(vision, made["items"]["ck-1"], made["ernie"]))
    rows = []
    states = [
        (JudgementStatus.PARSED, 8, "Correct, well argued."),
        (JudgementStatus.UNPARSEABLE, None, ""),
        (JudgementStatus.PARSED, 0, '答非所问, off topic, "quoted"\nsecond line'),
        (JudgementStatus.FAILED, None, ""),
        (JudgementStatus.QUEUED, None, ""),
        (JudgementStatus.PARSED, 10, "Perfect."),
    ]
    n = 0
    for answer in answers:
        judges = [judge] if answer.campaign_id == vision.pk else [judge, made["r1"]]
        for who in judges:
            for version in ("judge-v1", "judge-v2"):
                status, score, rationale = states[n % len(states)]
                finished = status != JudgementStatus.QUEUED
                rows.append(
                    builders.new_judgement(
                        generation=answer,
                        judge=who,
                        prompt_version=version,
                        status=status,
                        score=score,
                        rationale=rationale,
                        raw_output=rationale,
                        finished_at=T0 + datetime.timedelta(seconds=n) if finished else None,
                        ttft_ms=120.5 + n if finished else None,
                        response_time_ms=1800.25 + n if finished else None,
                        prompt_tokens=400 + n if finished else None,
                        completion_tokens=60 + n if status == JudgementStatus.PARSED else None,
                    )
                )
                n += 1
    return {**made, "acme": acme, "judge": judge, "judgements": rows}


def expected_row(judgement: Judgement) -> dict[str, str]:
    """The row recomputed from the judgement, with the CSV rules of DESIGN §4.2 applied."""
    generation = Generation.objects.select_related("campaign", "item__task_type", "endpoint").get(
        pk=judgement.generation_id
    )

    def number(value: float | int | None) -> str:
        if value is None:
            return ""
        return f"{value:.3f}".rstrip("0").rstrip(".") if isinstance(value, float) else str(value)

    return {
        "campaign": generation.campaign.slug,
        "matchup": generation.campaign.matchup,
        "task_type": generation.item.task_type.code,
        "item_id": generation.item.external_id,
        "model": generation.endpoint.slug,
        "sample": str(generation.sample),
        "judge": judgement.judge.slug,
        "prompt_version": judgement.prompt_version,
        "score": number(judgement.score),
        "status": judgement.status,
        "rationale": judgement.rationale,
        "judged_at": judgement.finished_at.isoformat() if judgement.finished_at else "",
        "ttft_ms": number(judgement.ttft_ms),
        "response_time_ms": number(judgement.response_time_ms),
        "prompt_tokens": number(judgement.prompt_tokens),
        "completion_tokens": number(judgement.completion_tokens),
    }


def test_header_is_exactly_the_documented_columns(study: dict[str, Any]) -> None:
    assert export().splitlines()[0] == HEADER


def test_every_judgement_reads_back_as_one_row_of_its_values(study: dict[str, Any]) -> None:
    rows = export_rows()
    want = [expected_row(j) for j in study["judgements"]]
    assert len(rows) == len(want) == 12 * 2 * 2 + 1 * 1 * 2
    key = ("campaign", "item_id", "model", "sample", "judge", "prompt_version")
    assert sorted(rows, key=lambda r: [r[k] for k in key]) == sorted(
        want, key=lambda r: [r[k] for k in key]
    )
    unparseable = [r for r in rows if r["status"] == "unparseable"]
    assert unparseable and all(r["score"] == "" for r in unparseable)
    assert all(r["judged_at"] == "" for r in rows if r["status"] == "queued")
    assert "2026-03-01T09:30:15.250000+00:00" in {r["judged_at"] for r in rows}


def test_rows_follow_campaign_task_type_item_model_sample_judge_and_version(
    study: dict[str, Any],
) -> None:
    rows = export_rows()
    position = {"AR": 0, "CK": 1}
    keys = [
        (
            r["campaign"],
            position[r["task_type"]],
            r["item_id"],
            r["model"],
            int(r["sample"]),
            r["judge"],
            r["prompt_version"],
        )
        for r in rows
    ]
    assert keys == sorted(keys)


def test_every_text_cell_is_neutralised_against_formula_injection(study: dict[str, Any]) -> None:
    judgements = study["judgements"]
    for judgement, formula in zip(judgements, FORMULAS, strict=False):
        Judgement.objects.filter(pk=judgement.pk).update(rationale=formula)
    rows = export_rows("--campaign", "small")
    rationales = {r["rationale"] for r in rows}
    for formula in FORMULAS:
        assert "'" + formula in rationales
        assert formula not in rationales


def test_campaign_option_filters_and_can_be_repeated(study: dict[str, Any]) -> None:
    assert {r["campaign"] for r in export_rows("--campaign", "vision")} == {"vision"}
    assert len(export_rows("--campaign", "vision")) == 2
    both = export_rows("--campaign", "vision", "--campaign", "small")
    assert len(both) == len(study["judgements"])


def test_a_campaign_without_judgements_exports_the_header_only(study: dict[str, Any]) -> None:
    assert export("--campaign", "third") == HEADER + "\r\n"


def test_no_judgements_at_all_exports_the_header_only() -> None:
    assert export() == HEADER + "\r\n"


def test_unknown_campaign_is_an_error_naming_it_and_the_known_ones(
    study: dict[str, Any],
) -> None:
    with pytest.raises(CommandError, match=r"no campaign 'nope' \(known: small, third, vision\)"):
        export("--campaign", "small", "--campaign", "nope")


@pytest.mark.parametrize("count", [1, 40])
def test_query_count_does_not_grow_with_the_judgements(
    study: dict[str, Any], count: int, django_assert_max_num_queries: Any
) -> None:
    Judgement.objects.all().delete()
    answer = Generation.objects.filter(campaign=study["small"]).first()
    assert answer is not None
    Judgement.objects.bulk_create(
        Judgement(
            campaign=study["small"], generation=answer, judge=study["judge"], prompt_version=f"v{n}"
        )
        for n in range(count)
    )
    with django_assert_max_num_queries(2):  # the campaign check, then the export itself
        text = export("--campaign", "small")
    assert text.count("\r\n") == count + 1
