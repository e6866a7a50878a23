"""Creating judgements (`create_judgements`) and `manage.py run_judges`, on a messy study: two
campaigns sharing models, three models and two judges in one, answers in every state, an
imported answer and a placeholder, and the expected judgements recomputed from the answers."""

from __future__ import annotations

import math
import random
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test.utils import CaptureQueriesContext

from grading.judge_prompt import PROMPT_VERSION
from grading.judging import BATCH_SIZE, JudgingError, create_judgements
from inference import dispatch
from inference.models import (
    Campaign,
    Generation,
    GenerationSource,
    GenerationStatus,
    Judgement,
    JudgementStatus,
    ModelEndpoint,
)
from tests import builders

pytestmark = pytest.mark.django_db


@pytest.fixture
def study() -> dict[str, Any]:
    suite = builders.suite("judged", ["AR", "AR", "CK", "QA"])
    ernie, r1, acme = (builders.endpoint(s) for s in ("ernie-4.5-0.3b", "r1-1.5b", "acme-7b"))
    judge, critic = builders.endpoint("judge-large"), builders.endpoint("critic")
    main = builders.campaign("main", suite, [ernie, r1, acme])
    other = builders.campaign("other", suite, [ernie])
    other.judges.set([judge])
    main.judges.set([judge, critic])
    items = list(suite.items.order_by("external_id"))
    statuses = [
        GenerationStatus.SUCCEEDED,
        GenerationStatus.FAILED,
        GenerationStatus.SUCCEEDED,
        GenerationStatus.QUEUED,
        GenerationStatus.SUCCEEDED,
        GenerationStatus.CANCELLED,
    ]
    n = 0
    for item in items:
        for model in (ernie, r1, acme):
            builders.generation(main, item, model, status=statuses[n % len(statuses)])
            n += 1
        builders.generation(other, item, ernie)
    answers = Generation.objects.filter(campaign=main, status=GenerationStatus.SUCCEEDED)
    placeholder, imported = answers.order_by("pk")[:2]
    Generation.objects.filter(pk=placeholder.pk).update(placeholder=True, content="")
    Generation.objects.filter(pk=imported.pk).update(source=GenerationSource.IMPORTED)
    return {"main": main, "other": other, "judges": [judge, critic], "acme": acme}


def expected(campaign: Campaign, judges: list[ModelEndpoint]) -> set[tuple[int, int]]:
    """(answer, judge) pairs recomputed from the answers: succeeded and not a placeholder."""
    return {
        (pk, judge.pk)
        for pk, status, placeholder in campaign.generations.values_list(
            "pk", "status", "placeholder"
        )
        if status == GenerationStatus.SUCCEEDED and not placeholder
        for judge in judges
    }


def pairs(campaign: Campaign, version: str = PROMPT_VERSION) -> set[tuple[int, int]]:
    return set(
        campaign.judgements.filter(prompt_version=version).values_list("generation_id", "judge_id")
    )


def snapshot() -> list[tuple[Any, ...]]:
    return list(
        Judgement.objects.order_by("pk").values_list(
            "pk", "prompt_version", "status", "score", "request", "created_at"
        )
    )


def test_every_reviewable_answer_gets_one_queued_judgement_per_judge(study) -> None:
    main = study["main"]
    created = create_judgements(main)
    want = expected(main, study["judges"])
    assert len(want) == 2 * 5  # 12 answers, 6 succeeded: one a placeholder, one imported
    assert pairs(main) == want
    assert created == len(want)
    judgements = main.judgements.all()
    assert {(j.status, j.prompt_version, j.score) for j in judgements} == {
        (JudgementStatus.QUEUED, PROMPT_VERSION, None)
    }
    imported = main.generations.get(source=GenerationSource.IMPORTED)
    assert judgements.filter(generation=imported).count() == 2
    for judgement in judgements:
        messages = judgement.request["messages"]
        assert [m["role"] for m in messages] == ["system", "user"]
        assert all(isinstance(m["content"], str) for m in messages)
    assert not study["other"].judgements.exists()


def test_running_again_creates_only_what_is_missing(study) -> None:
    main = study["main"]
    first = create_judgements(main)
    before = snapshot()
    assert create_judgements(main) == 0
    assert snapshot() == before
    # A retried answer succeeds and a third judge joins: only their judgements are new.
    retried = main.generations.filter(status=GenerationStatus.FAILED).first()
    assert retried is not None
    Generation.objects.filter(pk=retried.pk).update(
        status=GenerationStatus.SUCCEEDED, content="retried"
    )
    third = builders.endpoint("third-judge")
    main.judges.add(third)
    judges = [*study["judges"], third]
    assert create_judgements(main) == len(expected(main, judges)) - first
    assert pairs(main) == expected(main, judges)
    assert snapshot()[: len(before)] == before


def test_a_new_prompt_version_makes_new_judgements_and_never_touches_old_ones(study) -> None:
    main = study["main"]
    create_judgements(main)
    main.judgements.filter(pk__in=main.judgements.values("pk")[:3]).update(
        status=JudgementStatus.PARSED, score=7, rationale="fine"
    )
    before = snapshot()
    created = create_judgements(main, prompt_version="judge-v2")
    assert created == len(expected(main, study["judges"]))
    assert pairs(main, "judge-v2") == pairs(main, PROMPT_VERSION)
    assert snapshot()[: len(before)] == before
    assert main.judgements.filter(prompt_version="judge-v2", status="queued").count() == created


def test_dispatch_is_pumped_for_the_judges_once_committed(
    study, monkeypatch, django_capture_on_commit_callbacks
) -> None:
    pumped: list[list[int]] = []

    def pump(endpoint_ids: list[int]) -> int:
        pumped.append(sorted(endpoint_ids))
        return 0

    monkeypatch.setattr(dispatch, "pump", pump)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        create_judgements(study["main"])
    assert pumped == []  # not before the judgements are committed
    for callback in callbacks:
        callback()
    assert pumped == [sorted(judge.pk for judge in study["judges"])]


def test_a_campaign_without_judges_cannot_be_judged(study) -> None:
    main = study["main"]
    main.judges.clear()
    with pytest.raises(JudgingError, match='campaign main has no judges: list them under "judges"'):
        create_judgements(main)
    assert not Judgement.objects.exists()


def test_an_external_judge_cannot_judge(study) -> None:
    main = study["main"]
    ModelEndpoint.objects.filter(slug="critic").update(base_url="")
    with pytest.raises(JudgingError, match="critic cannot judge: an external model"):
        create_judgements(main)
    assert not Judgement.objects.exists()


# --- manage.py run_judges ----------------------------------------------------------------------


def run_judges(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("run_judges", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_run_judges_queues_the_judgements_and_says_how_many(study) -> None:
    out, _ = run_judges("main")
    assert out == f"campaign main: 10 new judgements, 10 in all (prompt {PROMPT_VERSION})\n"
    out, _ = run_judges("main")
    assert out.startswith("campaign main: 0 new judgements, 10 in all")


def test_run_judges_wait_prints_counts_by_judge_and_status(study) -> None:
    main = study["main"]
    create_judgements(main)
    statuses = [JudgementStatus.PARSED] * 6 + [JudgementStatus.UNPARSEABLE] * 4
    for judgement, status in zip(main.judgements.order_by("pk"), statuses, strict=True):
        judgement.status = status
        judgement.score = 5 if status == JudgementStatus.PARSED else None
        judgement.save()
    expected_counts: dict[str, dict[str, int]] = {}
    for slug, status in main.judgements.values_list("judge__slug", "status"):
        expected_counts.setdefault(slug, {}).setdefault(status, 0)
        expected_counts[slug][status] += 1
    out, _ = run_judges("main", "--wait")
    lines = out.splitlines()
    assert lines[0].startswith("campaign main: 0 new judgements, 10 in all")
    assert lines[1:] == [
        f"{slug}: parsed {counts.get('parsed', 0)}, unparseable {counts.get('unparseable', 0)}, "
        "failed 0, cancelled 0"
        for slug, counts in sorted(expected_counts.items())
    ]


def test_run_judges_wait_exits_non_zero_when_a_judgement_failed(study) -> None:
    main = study["main"]
    create_judgements(main)
    main.judgements.update(status=JudgementStatus.PARSED, score=6)
    first = main.judgements.order_by("pk").first()
    assert first is not None
    main.judgements.filter(pk=first.pk).update(
        status=JudgementStatus.FAILED, score=None, error="HTTP 500 from the judge"
    )
    err = StringIO()
    with pytest.raises(CommandError, match=r"1 judgement\(s\) failed, 0 cancelled"):
        call_command("run_judges", "main", "--wait", stdout=StringIO(), stderr=err)
    assert "1 × HTTP 500 from the judge" in err.getvalue()


@pytest.mark.parametrize(
    ("slug", "message"),
    [
        ("nope", r"no campaign 'nope' \(known: main, other\)"),
        ("unjudged", "campaign unjudged has no judges"),
        ("unanswered", "campaign unanswered has no answers to judge yet: run_campaign first"),
    ],
)
def test_run_judges_errors_are_clear(study, slug: str, message: str) -> None:
    suite = builders.suite("empty", ["AR"])
    if slug != "nope":
        campaign = builders.campaign(slug, suite, [study["acme"]])
        if slug == "unanswered":
            campaign.judges.set(study["judges"])
    with pytest.raises(CommandError, match=message):
        run_judges(slug)
    assert not Judgement.objects.exists()


@pytest.mark.parametrize("items", [1, 30, 100])
def test_query_count_does_not_grow_with_the_answers(items: int) -> None:
    """Apart from the inserts (batched, and in smaller batches on SQLite), a fixed number of
    reads plus two (items and their images) per batch of answers; 100 items make 900 answers,
    two batches."""
    suite = builders.suite("many", ["AR", "CK", "VQA"] * items)
    models = [builders.endpoint(f"m{n}") for n in range(3)]
    campaign = builders.campaign("many", suite, models)
    campaign.judges.set([builders.endpoint("j1"), builders.endpoint("j2")])
    Generation.objects.bulk_create(
        builders.new_generation(campaign, item, model)
        for item in suite.items.all()
        for model in models
    )
    with CaptureQueriesContext(connection) as queries:
        created = create_judgements(campaign)
    assert created == 3 * items * 3 * 2
    writes = ("INSERT", "SAVEPOINT", "RELEASE SAVEPOINT")
    reads = [q["sql"] for q in queries.captured_queries if not q["sql"].startswith(writes)]
    batches = math.ceil(3 * items * 3 / BATCH_SIZE)
    assert len(reads) <= 9 + 2 * batches, "\n".join(reads)


@pytest.mark.parametrize("seed", range(6))
def test_random_studies_get_exactly_one_judgement_per_reviewable_answer_and_judge(
    seed: int,
) -> None:
    """Messy random studies (shared models, failed and unscored answers, two samples, imported
    answers), judges drawn at random among all endpoints, some of them the campaign's own
    models: the judgements made are recomputed from the answers."""
    rng = random.Random(seed)
    made = builders.random_study(rng)
    callable_ = ModelEndpoint.objects.exclude(pk__in=ModelEndpoint.objects.external())
    pool = [*callable_.order_by("slug"), builders.endpoint("outside-judge")]
    want: dict[str, set[tuple[int, int]]] = {}
    for entry in made.campaigns:
        campaign = Campaign.objects.get(slug=entry.slug)
        judges = rng.sample(pool, rng.randint(1, 3))
        campaign.judges.set(judges)
        want[entry.slug] = expected(campaign, judges)
    order = [entry.slug for entry in made.campaigns]
    rng.shuffle(order)
    for slug in order:
        campaign = Campaign.objects.get(slug=slug)
        assert create_judgements(campaign) == len(want[slug])
        assert create_judgements(campaign) == 0
    for slug, pairs_wanted in want.items():
        assert pairs(Campaign.objects.get(slug=slug)) == pairs_wanted
    assert Judgement.objects.count() == sum(len(p) for p in want.values())
