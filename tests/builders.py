"""Test data built in code: endpoints, suites, campaigns, answers, reviewers and their scores.

Plain functions, one per thing a study is made of, so a test reads as the study it sets up.
They write straight to the database, past the review queue; whoever writes scores with them
calls `scores_written` afterwards, as every writer of scores in the product does, so the
results pages' cache sees the change.

`random_study` builds a messy study from a seeded `random.Random`, for the tests that compare
the results pages with an independent recomputation: several campaigns sharing models (some
re-running the same suite), one-model and three-or-more-model campaigns, failed and unscored
answers, uneven numbers of reviewers, ties and all-equal scores, single-item task types, task
types scored for one model only, two samples, answers without timings (as imported ones are)
and per-model sampling settings.
"""

from __future__ import annotations

import datetime
import itertools
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypedDict, TypeVar, Unpack

from django.contrib.auth.models import User
from django.db.models import Model
from django.utils import timezone

from grading import judge_prompt
from grading.models import ReviewSettings, Rubric, Score
from grading.roles import reviewers_group
from grading.scores_import import IMPORTED_SUITE_PREFIX
from inference.models import (
    JUDGEMENT_FINISHED_STATUSES,
    Campaign,
    CampaignModel,
    CampaignStatus,
    Generation,
    GenerationStatus,
    Judgement,
    JudgementStatus,
    Modality,
    ModelEndpoint,
    Suite,
    TaskItem,
    TaskType,
)

SavedModel = TypeVar("SavedModel", bound=Model)

# --- One thing at a time -------------------------------------------------------------------


def endpoint(slug: str, *, name: str = "") -> ModelEndpoint:
    """A model endpoint that is never called (its base URL points at a closed port)."""
    return ModelEndpoint.objects.create(
        slug=slug, name=name or slug, model=f"org/{slug}", base_url="http://127.0.0.1:9/v1"
    )


def suite(name: str, task_types: Iterable[str]) -> Suite:
    """A suite with one item per entry of `task_types` (repeat a code for several items).

    Items are named `<code>-<n>`, n counting from 0 within each task type.
    """
    made = Suite.objects.create(name=name)
    by_code = {t.code: t for t in TaskType.objects.all()}
    counts: dict[str, int] = {}
    items = []
    for code in task_types:
        n = counts.get(code, 0)
        counts[code] = n + 1
        external_id = f"{code}-{n}"
        items.append(
            TaskItem(
                suite=made,
                external_id=external_id,
                task_type=by_code[code],
                prompt=f"prompt {external_id}",
                content_hash=f"{name}/{external_id}",
            )
        )
    TaskItem.objects.bulk_create(items)
    return made


def item(of: Suite, external_id: str, code: str = "AR", *, prompt: str = "") -> TaskItem:
    """One more item of suite `of`, of task type `code` (prompt: `prompt <external_id>`)."""
    return TaskItem.objects.create(
        suite=of,
        external_id=external_id,
        task_type=TaskType.objects.get(code=code),
        prompt=prompt or f"prompt {external_id}",
        content_hash=f"{of.name}/{external_id}",
    )


def campaign(
    slug: str,
    of: Suite,
    models: Sequence[ModelEndpoint],
    *,
    name: str = "",
    positions: Sequence[int] | None = None,
    matchup: str = "",
    params: Mapping[str, Any] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    samples: int = 1,
    reviewers_per_output: int = 2,
    status: str = CampaignStatus.FINISHED,
) -> Campaign:
    """A campaign of these models (named `name`, else its slug), finished unless `status` says
    otherwise, with its review settings.

    `positions` are the models' `CampaignModel.position` (default 0, 1, …): the model with the
    lowest one is the campaign's first model, whatever the order `models` are given in.
    `overrides` maps a model slug to its `params_override`.
    """
    made = Campaign.objects.create(
        slug=slug,
        name=name or slug,
        matchup=matchup,
        suite=of,
        status=status,
        samples=samples,
        params=dict(params or {"temperature": 0.7, "top_p": 0.8, "max_tokens": 2048}),
    )
    for index, model in enumerate(models):
        CampaignModel.objects.create(
            campaign=made,
            endpoint=model,
            position=positions[index] if positions is not None else index,
            params_override=dict((overrides or {}).get(model.slug, {})),
        )
    ReviewSettings.objects.create(campaign=made, reviewers_per_output=reviewers_per_output)
    return made


def two_campaigns() -> dict[str, Any]:
    """Suite `sample` (items `ar-1`, AR, and `ck-1`, CK) answered in two campaigns: `small`
    (ERNIE then R1, matchup `small`) and `vision` (ERNIE only, matchup `vl`).

    Keys: `suite`, `ernie`, `r1`, `items` (by external id), `small`, `vision`.
    """
    sample = Suite.objects.create(name="sample")
    ernie, r1 = endpoint("ernie-4.5-0.3b"), endpoint("r1-1.5b")
    return {
        "suite": sample,
        "ernie": ernie,
        "r1": r1,
        "items": {"ar-1": item(sample, "ar-1", "AR"), "ck-1": item(sample, "ck-1", "CK")},
        "small": campaign("small", sample, [ernie, r1], matchup="small"),
        "vision": campaign("vision", sample, [ernie], matchup="vl"),
    }


@dataclass(frozen=True)
class Timings:
    """What a finished generation measured (DESIGN §5); None is a figure not known."""

    ttft_ms: float | None = 250.0
    response_time_ms: float | None = 2250.0
    completion_tokens: int | None = 101
    decode_tps: float | None = 50.0
    e2e_tps: float | None = 44.9
    finish_reason: str = "stop"


NO_TIMINGS = Timings(None, None, None, None, None, "")
"""An answer imported without its timings."""


class AnswerOptions(TypedDict, total=False):
    """The keywords of `new_generation` past the campaign, item and model."""

    sample: int
    status: str
    timings: Timings
    content: str | None
    error: str | None


def generation(
    of: Campaign, item: TaskItem, model: ModelEndpoint, **options: Unpack[AnswerOptions]
) -> Generation:
    """One answer of `model` to `item` in campaign `of`, saved (see `new_generation`)."""
    return _saved(new_generation(of, item, model, **options))


def new_generation(
    of: Campaign,
    item: TaskItem,
    model: ModelEndpoint,
    *,
    sample: int = 0,
    status: str = GenerationStatus.SUCCEEDED,
    timings: Timings = Timings(),
    content: str | None = None,
    error: str | None = None,
) -> Generation:
    """One answer of `model` to `item` in campaign `of`, with these timings; `content` and
    `error` replace the made-up ones. Not saved: for `Generation.objects.bulk_create`."""
    succeeded = status == GenerationStatus.SUCCEEDED
    if content is None:
        content = f"answer of {model.slug} to {item.external_id}" if succeeded else ""
    if error is None:
        error = "" if succeeded else "HTTP 503"
    return Generation(
        campaign=of,
        item=item,
        endpoint=model,
        sample=sample,
        status=status,
        attempts=0 if status == GenerationStatus.QUEUED else 1,
        content=content,
        error=error,
        ttft_ms=timings.ttft_ms,
        response_time_ms=timings.response_time_ms,
        completion_tokens=timings.completion_tokens,
        decode_tps=timings.decode_tps,
        e2e_tps=timings.e2e_tps,
        finish_reason=timings.finish_reason,
        usage_source="server" if timings.completion_tokens is not None else "",
        finished_at=None if status == GenerationStatus.QUEUED else timezone.now(),
    )


def reviewer(username: str, *, password: str | None = None) -> User:
    """A user in the reviewers group; without a password (hashing one takes a third of a
    second) unless the test logs in with it rather than with `force_login`."""
    user = User.objects.create_user(username, f"{username}@example.org", password)
    user.groups.add(reviewers_group())
    return user


class ScoreOptions(TypedDict, total=False):
    """The keywords of `new_score` past the answer, reviewer and value."""

    position: int
    rubric: Rubric | None
    comment: str
    at: datetime.datetime | None


def score(answer: Generation, by: User, value: int, **options: Unpack[ScoreOptions]) -> Score:
    """`by`'s score of one answer, saved (see `new_score`).

    Call `scores_written` once the scores of a campaign are in.
    """
    return _saved(new_score(answer, by, value, **options))


def new_score(
    answer: Generation,
    by: User,
    value: int,
    *,
    position: int = 0,
    rubric: Rubric | None = None,
    comment: str = "",
    at: datetime.datetime | None = None,
) -> Score:
    """`by`'s score of one answer, under `rubric` (default: the current one), given `at`
    (default: now). Not saved: for `Score.objects.bulk_create`."""
    return Score(
        generation=answer,
        reviewer=by,
        score=value,
        comment=comment,
        position=position,
        rubric=rubric or Rubric.objects.current(),
        scored_at=at or timezone.now(),
    )


def _saved(row: SavedModel) -> SavedModel:
    row.save()
    return row


def scores_written(*campaigns: Campaign) -> None:
    """Say that these campaigns' scores changed, as the product's writers of scores do."""
    ReviewSettings.objects.scores_changed([c.pk for c in campaigns])


# --- A messy random study --------------------------------------------------------------------

MODEL_SLUGS = ("ernie-4.5-0.3b", "r1-distill-1.5b", "qwen2.5-vl-3b", "m.four", "m_five")
MAX_SCORES = 40
"""Scores per campaign at most, so that hundreds of studies run in a minute."""
WIDE_ITEMS = 24
"""Items of the occasional campaign with many shared items (2 × 24 scores)."""
FEATURES = (
    "campaigns_share_a_model",
    "rerun",
    "one_model",
    "two_models",
    "three_models_or_more",
    "two_samples",
    "params_override",
    "no_timings",
    "failed_answers",
    "unscored_answers",
    "uneven_reviewers",
    "all_scores_equal",
    "single_item_type",
    "type_answered_by_one_model",
    "type_scored_for_one_model",
    "campaign_without_scores",
    "many_shared_items",
)
"""The messy cases `random_study` draws, as `Study.features` names them."""


@dataclass(frozen=True)
class StudyCampaign:
    """What a test needs to know of one campaign of a random study."""

    slug: str
    public_id: str
    matchup: str
    models: tuple[str, ...]
    """Model slugs by `CampaignModel.position`: the first is the campaign's model A."""


@dataclass(frozen=True)
class Study:
    """A random study as built: its campaigns in creation order and its people."""

    campaigns: tuple[StudyCampaign, ...]
    reviewers: tuple[str, ...]
    idle_reviewer: str
    """A reviewer who gave no score."""
    features: frozenset[str]
    """Which of the messy cases this study holds (see `random_study`)."""


def _random_timings(rng: random.Random, speed: float) -> Timings:
    ttft = rng.lognormvariate(5.5, 0.6)
    tokens = rng.randint(1, 600)
    decode = speed * rng.uniform(0.7, 1.3)
    response = ttft + (tokens - 1) / decode * 1000
    return Timings(
        ttft_ms=ttft,
        response_time_ms=response,
        completion_tokens=tokens,
        # One token has no decode interval; a few answers lack a figure here and there.
        decode_tps=decode if tokens > 1 and rng.random() > 0.05 else None,
        e2e_tps=tokens / response * 1000 if rng.random() > 0.05 else None,
        finish_reason="length" if rng.random() < 0.1 else "stop",
    )


def _random_status(rng: random.Random) -> str:
    return rng.choices(
        [
            GenerationStatus.SUCCEEDED,
            GenerationStatus.FAILED,
            GenerationStatus.CANCELLED,
            GenerationStatus.QUEUED,
        ],
        weights=[85, 9, 3, 3],
    )[0]


def random_study(rng: random.Random) -> Study:
    """A small messy study drawn from `rng`: at most `MAX_SCORES` scores per campaign, but for
    the occasional campaign with `WIDE_ITEMS` items of one task type, all scored.

    Campaign slugs are `c1`, `c2`, …, reviewers `rev-1`, `rev-2`, … and `idle` (no scores);
    `Study.features` names the messy cases drawn, so a test can check it met each of them.
    """
    features: set[str] = set()
    types = list(TaskType.objects.order_by("position", "code").values_list("code", "modality"))
    text = [code for code, modality in types if modality == Modality.TEXT]
    vision = [code for code, modality in types if modality == Modality.VISION]
    models = [endpoint(slug) for slug in rng.sample(MODEL_SLUGS, rng.randint(2, len(MODEL_SLUGS)))]
    people = [reviewer(f"rev-{n}") for n in range(1, rng.randint(1, 4) + 1)]
    idle = reviewer("idle")

    suites = []
    for n in range(rng.choice([1, 1, 2])):
        codes = rng.sample(text, rng.randint(1, 3)) + rng.sample(vision, rng.choice([0, 0, 1]))
        entries = [code for code in codes for _ in range(rng.choice([1, 1, 2, 3, 4, 5]))]
        # Imported studies live in suites named with the import prefix; items of both suites
        # share external ids (`AR-0` in each), as separately imported files do.
        prefix = IMPORTED_SUITE_PREFIX if rng.random() < 0.2 else ""
        suites.append(suite(f"{prefix}suite-{n}", entries))

    built: list[tuple[Campaign, list[ModelEndpoint]]] = []
    for k in range(1, rng.randint(1, 4) + 1):
        wide = rng.random() < 0.06
        if wide:
            # Many shared items of one task type, every answer scored once: the Wilcoxon test
            # past its exact rules (more than 16 non-zero differences, with ties).
            chosen_suite = suite(f"wide-{k}", [rng.choice(text)] * WIDE_ITEMS)
            members = rng.sample(models, 2)
            features.add("many_shared_items")
        elif built and rng.random() < 0.35:
            # A re-run of an earlier campaign: the same suite, the same models (maybe the other
            # way round, so that its model A differs).
            earlier, earlier_models = rng.choice(built)
            chosen_suite = earlier.suite
            members = earlier_models[::-1] if rng.random() < 0.3 else list(earlier_models)
            features.add("rerun")
        else:
            chosen_suite = rng.choice(suites)
            size = rng.choices([1, 2, 3, 4], weights=[2, 5, 4, 1])[0]
            members = rng.sample(models, min(size, len(models)))
        # Positions need not follow creation order, nor be contiguous.
        positions = rng.sample(range(20), len(members))
        overrides = {}
        if len(members) > 1 and rng.random() < 0.25:
            overrides[rng.choice(members).slug] = {"temperature": 1.0}
            features.add("params_override")
        samples = 2 if rng.random() < 0.2 else 1
        made = campaign(
            f"c{k}",
            chosen_suite,
            members,
            positions=positions,
            matchup=rng.choice(["small", "medium", "vl", ""]),
            overrides=overrides,
            samples=samples,
            reviewers_per_output=rng.randint(1, 4),
        )
        built.append((made, members))
        features.add({1: "one_model", 2: "two_models"}.get(len(members), "three_models_or_more"))
        if samples == 2:
            features.add("two_samples")
        if wide:
            given = _answer_and_score_all(rng, made, members, rng.choice(people))
        else:
            given = _answer_and_score(rng, made, members, samples, people, features)
        if given:
            scores_written(made)

    campaigns = []
    for made, members in built:
        order = sorted(CampaignModel.objects.filter(campaign=made), key=lambda m: m.position)
        slugs = tuple(m.endpoint.slug for m in order)
        assert {m.slug for m in members} == set(slugs)
        campaigns.append(StudyCampaign(made.slug, made.public_id, made.matchup, slugs))
    scored = [c for c, _ in built if Score.objects.filter(generation__campaign=c).exists()]
    shared = [
        model
        for i, a in enumerate(scored)
        for b in scored[i + 1 :]
        for model in set(a.endpoints.all()) & set(b.endpoints.all())
    ]
    if shared:
        features.add("campaigns_share_a_model")
    return Study(
        campaigns=tuple(campaigns),
        reviewers=tuple(p.username for p in people),
        idle_reviewer=idle.username,
        features=frozenset(features),
    )


def _answer_and_score(
    rng: random.Random,
    made: Campaign,
    members: list[ModelEndpoint],
    samples: int,
    people: list[User],
    features: set[str],
) -> int:
    """Generations of the members for some task types of the suite, then up to `MAX_SCORES`
    scores by `people`; returns how many it gave."""
    items = list(made.suite.items.select_related("task_type"))
    codes = sorted({item.task_type.code for item in items})
    # Sorted, not a set: the draws below must not follow the hash seed.
    chosen = sorted(rng.sample(codes, rng.randint(1, len(codes))))
    timed = rng.random() > 0.25
    if not timed:
        features.add("no_timings")
    speed = {m.slug: rng.uniform(20, 120) for m in members}
    # Per task type, sometimes only one model answers, or only one model's answers get scores.
    answering: dict[str, list[ModelEndpoint]] = {}
    scored_models: dict[str, set[str]] = {}
    for code in chosen:
        answering[code] = list(members)
        scored_models[code] = {m.slug for m in members}
        if len(members) > 1 and rng.random() < 0.12:
            answering[code] = [rng.choice(members)]
            features.add("type_answered_by_one_model")
        elif len(members) > 1 and rng.random() < 0.1:
            scored_models[code] = {rng.choice(members).slug}
            features.add("type_scored_for_one_model")
        if sum(item.task_type.code == code for item in items) == 1:
            features.add("single_item_type")

    answers: list[Generation] = []
    units: list[list[Generation]] = []
    for item in items:
        code = item.task_type.code
        if code not in chosen:
            continue
        for sample in range(samples):
            unit = []
            for model in answering[code]:
                status = _random_status(rng)
                if status in (GenerationStatus.FAILED, GenerationStatus.CANCELLED):
                    features.add("failed_answers")
                if status == GenerationStatus.SUCCEEDED:
                    timings = _random_timings(rng, speed[model.slug]) if timed else NO_TIMINGS
                elif status == GenerationStatus.FAILED and timed and rng.random() < 0.5:
                    # A failure after the first token: its timing must never count.
                    timings = Timings(99999.0, None, None, None, None, "")
                else:
                    timings = NO_TIMINGS
                answer = new_generation(
                    made, item, model, sample=sample, status=status, timings=timings
                )
                answers.append(answer)
                if status == GenerationStatus.SUCCEEDED and model.slug in scored_models[code]:
                    unit.append(answer)
            units.append(unit)

    Generation.objects.bulk_create(answers)
    succeeded = [answer for unit in units for answer in unit]
    if rng.random() < 0.07:
        features.add("campaign_without_scores")
        return 0
    mode = rng.choices(["spread", "coarse", "equal"], weights=[6, 3, 1])[0]
    if mode == "equal":
        features.add("all_scores_equal")
    level = {(m.slug, code): rng.uniform(2, 9) for m in members for code in chosen}
    severity = {p.username: rng.uniform(-1.5, 1.5) for p in people}
    rubric = Rubric.objects.current()
    budget = rng.randint(5, MAX_SCORES)
    scores: list[Score] = []
    given: dict[int, int] = {answer.pk: 0 for answer in succeeded}
    rng.shuffle(units)
    for unit in units:
        # Side by side: each chosen reviewer scores every answer of the unit, in a shuffled
        # order; now and then one answer is skipped.
        for person in rng.sample(people, rng.randint(1, len(people))):
            order = rng.sample(range(len(unit)), len(unit))
            for position, answer in zip(order, unit, strict=True):
                if sum(given.values()) >= budget or rng.random() < 0.08:
                    continue
                code = answer.item.task_type.code
                if mode == "equal":
                    value = 7
                elif mode == "coarse":
                    value = rng.choice([3, 7, 7])
                else:
                    raw = level[answer.endpoint.slug, code] + severity[person.username]
                    value = round(min(10.0, max(0.0, rng.gauss(raw, 1.5))))
                scores.append(new_score(answer, person, value, position=position, rubric=rubric))
                given[answer.pk] += 1
    Score.objects.bulk_create(scores)
    if len({n for n in given.values() if n}) > 1:
        features.add("uneven_reviewers")
    if 0 in given.values():
        features.add("unscored_answers")
    return len(scores)


def _answer_and_score_all(
    rng: random.Random, made: Campaign, members: list[ModelEndpoint], person: User
) -> int:
    """Every member answers every item, and `person` scores every answer (spread scores)."""
    rubric = Rubric.objects.current()
    level = {m.slug: rng.uniform(3, 8) for m in members}
    answers = Generation.objects.bulk_create(
        [
            new_generation(made, item, model, timings=_random_timings(rng, 50))
            for item in made.suite.items.all()
            for model in members
        ]
    )
    scores = [
        new_score(
            answer,
            person,
            round(min(10.0, max(0.0, rng.gauss(level[answer.endpoint.slug], 2)))),
            position=position,
            rubric=rubric,
        )
        for position, answer in zip(itertools.cycle(range(len(members))), answers, strict=False)
    ]
    return len(Score.objects.bulk_create(scores))


def new_judgement(
    generation: Generation,
    judge: ModelEndpoint,
    *,
    score: int | None = None,
    status: str = JudgementStatus.PARSED,
    prompt_version: str = "judge-v1",
    **fields: Any,
) -> Judgement:
    """`judge`'s judgement of one answer under `prompt_version`, saved; finished now unless
    `fields` say otherwise. A parsed judgement needs a `score`."""
    if status in JUDGEMENT_FINISHED_STATUSES:
        fields.setdefault("finished_at", timezone.now())
    return Judgement.objects.create(
        campaign_id=generation.campaign_id,
        generation=generation,
        judge=judge,
        prompt_version=prompt_version,
        status=status,
        score=score,
        **fields,
    )


def judgement(
    answer: Generation,
    judge: ModelEndpoint,
    *,
    text: str | None = None,
    status: str = JudgementStatus.QUEUED,
    **fields: Any,
) -> Judgement:
    """A judgement of `answer` by `judge` as `grading.judging` makes one, saved (see
    `new_judgement`): queued unless `status` says otherwise, with the messages a judge is sent,
    text only: the real judge system prompt, then `text` (default: the item's prompt and the
    answer) as the user message."""
    if text is None:
        text = f"Question:\n{answer.item.prompt}\n\nAnswer:\n{answer.content}"
    request = {
        "messages": [
            {"role": "system", "content": judge_prompt.SYSTEM},
            {"role": "user", "content": text},
        ]
    }
    return new_judgement(answer, judge, status=status, request=request, **fields)


JUDGE_SLUGS = ("judge-a", "judge-b")
JUDGEMENT_FEATURES = (
    "judge_is_a_campaign_model",
    "answer_only_judged",
    "unparseable",
    "failed",
    "two_prompt_versions",
    "judge_unparseable_in_a_campaign",
)
"""The messy cases `random_judgements` draws, as it returns them."""


def random_judgements(rng: random.Random, study: Study) -> set[str]:
    """Judgements of a random study's answers, drawn from `rng`: judges `judge-a` and
    `judge-b` (and now and then a model of the campaign judging itself); parsed scores near the
    people's (close or loose), unparseable, failed, cancelled and queued ones; answers no person
    scored; for `judge-a`, an older prompt version `judge-v0` on some answers. Returns the
    `JUDGEMENT_FEATURES` met."""
    features: set[str] = set()
    outside = [
        ModelEndpoint.objects.get_or_create(
            slug=slug, defaults={"name": slug, "model": slug, "base_url": "http://127.0.0.1:9/v1"}
        )[0]
        for slug in JUDGE_SLUGS
    ]
    rows: list[Judgement] = []
    older: list[Judgement] = []
    for made in Campaign.objects.filter(slug__in=[c.slug for c in study.campaigns]):
        judges = list(outside)
        members = list(made.endpoints.all())
        if members and rng.random() < 0.4:
            judges.append(rng.choice(members))
            features.add("judge_is_a_campaign_model")
        made.judges.set(judges)
        mute = judges[1] if rng.random() < 0.15 else None
        loose = {judge.pk: rng.choice([0.5, 1.5, 4.0]) for judge in judges}
        answers = made.generations.prefetch_related("scores")
        for answer in answers:
            scores = [s.score for s in answer.scores.all()]
            for judge in judges:
                if rng.random() < 0.12:
                    continue
                status = rng.choices(
                    [
                        JudgementStatus.PARSED,
                        JudgementStatus.UNPARSEABLE,
                        JudgementStatus.FAILED,
                        JudgementStatus.CANCELLED,
                        JudgementStatus.QUEUED,
                    ],
                    weights=[80, 9, 5, 3, 3],
                )[0]
                if judge == mute:
                    status = JudgementStatus.UNPARSEABLE
                    features.add("judge_unparseable_in_a_campaign")
                score = None
                if status == JudgementStatus.PARSED:
                    centre = sum(scores) / len(scores) if scores else rng.uniform(0, 10)
                    score = round(min(10.0, max(0.0, rng.gauss(centre, loose[judge.pk]))))
                    if not scores and answer.status == GenerationStatus.SUCCEEDED:
                        features.add("answer_only_judged")
                elif status == JudgementStatus.UNPARSEABLE:
                    features.add("unparseable")
                elif status in (JudgementStatus.FAILED, JudgementStatus.CANCELLED):
                    features.add("failed")
                finished = None if status == JudgementStatus.QUEUED else timezone.now()
                row = Judgement(
                    campaign=made,
                    generation=answer,
                    judge=judge,
                    prompt_version="judge-v1",
                    status=status,
                    score=score,
                    rationale=f"{judge.slug} on {answer.pk}",
                    finished_at=finished,
                )
                rows.append(row)
                if judge == outside[0] and rng.random() < 0.2:
                    features.add("two_prompt_versions")
                    older.append(
                        Judgement(
                            campaign=made,
                            generation=answer,
                            judge=judge,
                            prompt_version="judge-v0",
                            status=JudgementStatus.PARSED,
                            score=rng.randint(0, 10),
                            finished_at=finished,
                        )
                    )
    # The older version first, so the newer one is the latest created.
    Judgement.objects.bulk_create(older)
    Judgement.objects.bulk_create(rows)
    return features
