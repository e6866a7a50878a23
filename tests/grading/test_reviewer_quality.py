"""The reviewer quality page (DESIGN §11): every figure recomputed on its own from the scores,
over messy random studies; its CSVs, links, warnings, and a query count that does not grow
with the scores."""

from __future__ import annotations

import csv
import datetime
import io
import random
import statistics
from dataclasses import dataclass
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from grading import exclusion, reviewer_quality
from grading.models import GoldAnswer, Purpose, ReviewSettings, ReviewUnit, Score
from inference.models import Campaign, Generation, GenerationStatus
from tests import builders

pytestmark = pytest.mark.django_db
SEEDS = range(12)
START = datetime.datetime(2026, 1, 1, 9, tzinfo=datetime.UTC)


@dataclass(frozen=True)
class Given:
    """One score as the test wrote it, to recompute from."""

    reviewer: str
    answer: int
    score: int
    purpose: str
    at: datetime.datetime
    seconds: float | None


def messy_campaign(
    rng: random.Random, slug: str, people: list[User], models: list[Any]
) -> dict[str, Any]:
    """A campaign with uneven reviewers, unscored and failed answers, gold and calibration
    marks (some never scored), scores of every purpose over several weeks, answers of
    different lengths, scores with and without a time, and extra reviews on some units."""
    suite = builders.suite(f"suite-{slug}", ["AR"] * rng.randint(1, 5) + ["QA"] * rng.randint(0, 3))
    campaign = builders.campaign(slug, suite, models, samples=rng.choice([1, 1, 2]))
    ReviewSettings.objects.filter(campaign=campaign).update(
        max_chars_per_s=rng.choice([None, 5, 20, 50]), calibration=rng.random() < 0.5
    )
    answers: list[Generation] = []
    for item in suite.items.all():
        for model in models:
            for sample in range(campaign.samples):
                status = rng.choices(
                    [GenerationStatus.SUCCEEDED, GenerationStatus.FAILED], weights=[9, 1]
                )[0]
                content = "x" * rng.randint(1, 400) if status == GenerationStatus.SUCCEEDED else ""
                answers.append(
                    builders.generation(
                        campaign, item, model, sample=sample, status=status, content=content
                    )
                )
        for sample in range(campaign.samples):
            ReviewUnit.objects.create(
                campaign=campaign, item=item, sample=sample, extra_reviews=rng.choice([0, 0, 1, 3])
            )
    succeeded = [a for a in answers if a.status == GenerationStatus.SUCCEEDED]
    marks: dict[int, tuple[int, int, str]] = {}
    for answer in rng.sample(succeeded, k=min(len(succeeded), rng.randint(0, 4))):
        low = rng.randint(0, 10)
        high = rng.randint(low, 10)
        kind = rng.choice([Purpose.GOLD.value, Purpose.CALIBRATION.value])
        GoldAnswer.objects.create(generation=answer, low=low, high=high, purpose=kind)
        marks[answer.pk] = (low, high, kind)

    given: list[Given] = []
    working = rng.sample(people, rng.randint(1, len(people)))
    for person in working:
        for answer in succeeded:
            if rng.random() < 0.35:  # many answers go unscored by this reviewer
                continue
            if answer.pk in marks:
                # Mostly scored as the mark's purpose; sometimes as a regular score (given
                # before the mark was set) or as gold while the mark is calibration.
                purpose = rng.choice(
                    [marks[answer.pk][2]] * 3 + [Purpose.REGULAR.value, Purpose.GOLD.value]
                )
            else:
                purpose = rng.choice(
                    [Purpose.REGULAR.value] * 8 + [Purpose.GOLD.value]
                )  # gold, mark removed
            at = START + datetime.timedelta(days=rng.randint(0, 30), hours=rng.randint(0, 23))
            seconds = rng.choice([None, 0.5, 2.0, 10.0, 60.0])
            value = rng.randint(0, 10)
            score = builders.new_score(answer, person, value, at=at)
            score.purpose = purpose
            score.seconds_spent = seconds
            score.save()
            given.append(Given(person.username, answer.pk, value, purpose, at, seconds))
    scored = sorted({g.reviewer for g in given})
    if scored and rng.random() < 0.4:
        exclusion.exclude(campaign, User.objects.get(username=rng.choice(scored)))
    builders.scores_written(campaign)
    return {"campaign": campaign, "given": given, "marks": marks}


def week(at: datetime.datetime) -> str:
    iso = timezone.localtime(at).isocalendar()
    return f"{iso.year}-W{iso.week:02d}"


def offsets(given: list[Given], mine: list[Given]) -> list[float]:
    """Each of `mine` (regular scores) minus the mean of everyone else's regular scores on the
    same answer, when anyone else scored it."""
    found = []
    for g in mine:
        others = [
            o.score
            for o in given
            if o.purpose == Purpose.REGULAR and o.answer == g.answer and o.reviewer != g.reviewer
        ]
        if others:
            found.append(g.score - sum(others) / len(others))
    return found


def expected(campaign: Campaign, given: list[Given], marks: dict[int, tuple[int, int, str]]):
    """The page's two tables, recomputed from the scores as written."""
    review = ReviewSettings.objects.get(campaign=campaign)
    rate = review.max_chars_per_s
    chars = dict(Generation.objects.filter(campaign=campaign).values_list("pk", "content"))
    excluded = set(exclusion.excluded([campaign.pk]).get(campaign.pk, []))
    calibration_total = sum(1 for _l, _h, p in marks.values() if p == Purpose.CALIBRATION)

    def gold_figures(mine: list[Given]) -> tuple[Any, ...]:
        distances = []
        for g in mine:
            if g.purpose == Purpose.GOLD and g.answer in marks:
                low, high, _purpose = marks[g.answer]
                distances.append(low - g.score if g.score < low else max(0, g.score - high))
        inside = distances.count(0)
        return (
            len(distances),
            inside,
            inside / len(distances) if distances else None,
            statistics.mean(distances) if distances else None,
        )

    reviewers, weeks = [], []
    for name in sorted({g.reviewer for g in given}):
        mine = [g for g in given if g.reviewer == name]
        regular = [g for g in mine if g.purpose == Purpose.REGULAR]
        found = offsets(given, regular)
        timed = [g.seconds for g in mine if g.seconds is not None]
        too_fast = (
            None
            if rate is None
            else sum(
                1 for g in mine if g.seconds is not None and g.seconds * rate < len(chars[g.answer])
            )
        )
        calibrated = sum(
            1
            for g in mine
            if g.purpose == Purpose.CALIBRATION
            and marks.get(g.answer, (0, 0, ""))[2] == Purpose.CALIBRATION
        )
        reviewers.append(
            (
                name,
                len(mine),
                *gold_figures(mine),
                calibrated,
                calibration_total,
                statistics.mean(found) if found else None,
                len(found),
                too_fast,
                len(timed),
                name in excluded,
            )
        )
        for label in sorted({week(g.at) for g in mine}):
            of_week = [g for g in mine if week(g.at) == label]
            found = offsets(given, [g for g in of_week if g.purpose == Purpose.REGULAR])
            weeks.append(
                (
                    name,
                    label,
                    len(of_week),
                    *gold_figures(of_week),
                    statistics.mean(found) if found else None,
                    len(found),
                )
            )
    return reviewers, weeks


def read_csv(client: Client, campaign: Campaign, name: str) -> list[list[str]]:
    response = client.get(reverse("reviewer-quality", args=[campaign.public_id]), {"csv": name})
    assert response.status_code == 200
    text = b"".join(response.streaming_content).decode()  # type: ignore[attr-defined]
    return list(csv.reader(io.StringIO(text)))


def same(cell: str, value: Any) -> bool:
    if value is None:
        return cell == ""
    if isinstance(value, bool):
        return cell == ("true" if value else "false")
    if isinstance(value, float):
        return abs(float(cell) - value) < 1e-3
    return cell == str(value)


def assert_table(rows: list[list[str]], header: tuple[str, ...], wanted: list[tuple]) -> None:
    assert tuple(rows[0]) == header
    assert len(rows) - 1 == len(wanted), (rows, wanted)
    for got, want in zip(rows[1:], wanted, strict=True):
        assert all(same(c, v) for c, v in zip(got, want, strict=True)), (got, want)


@pytest.mark.parametrize("seed", SEEDS)
def test_every_figure_equals_a_recomputation_over_messy_studies(admin: User, seed: int) -> None:
    rng = random.Random(seed)
    people = [builders.reviewer(f"rev-{n}") for n in range(rng.randint(2, 5))]
    models = [builders.endpoint(f"m-{n}") for n in range(rng.randint(1, 3))]
    built = [
        messy_campaign(rng, f"c{k}", people, rng.sample(models, rng.randint(1, len(models))))
        for k in range(rng.randint(2, 3))
    ]
    client = builders_client(admin)
    for made in built:
        campaign = made["campaign"]
        reviewers, weeks = expected(campaign, made["given"], made["marks"])
        assert_table(
            read_csv(client, campaign, "reviewers"), reviewer_quality.REVIEWER_COLUMNS, reviewers
        )
        assert_table(read_csv(client, campaign, "weeks"), reviewer_quality.WEEK_COLUMNS, weeks)
        drift = [(w[0], w[1], w[7], w[8]) for w in weeks if w[7] is not None]
        assert_table(
            read_csv(client, campaign, "drift"),
            ("reviewer", "week", "severity", "compared"),
            drift,
        )
        quality = reviewer_quality.measure(campaign)
        extra = sum(
            ReviewUnit.objects.filter(campaign=campaign).values_list("extra_reviews", flat=True)
        )
        assert quality.extra_reviews == extra
        calibration = sum(1 for m in made["marks"].values() if m[2] == Purpose.CALIBRATION)
        assert quality.calibration_answers == calibration
        assert quality.gold_answers == len(made["marks"]) - calibration
        html = client.get(reverse("reviewer-quality", args=[campaign.public_id])).content.decode()
        assert f'<strong id="extra-reviews">{extra}</strong>' in html
        for row in reviewers:
            assert f'data-reviewer="{row[0]}"' in html


def builders_client(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def scored_study(scores_per_reviewer: int) -> Campaign:
    rng = random.Random(scores_per_reviewer)
    suite = builders.suite(f"q{scores_per_reviewer}", ["AR"] * scores_per_reviewer)
    models = [
        builders.endpoint(f"q{scores_per_reviewer}-a"),
        builders.endpoint(f"q{scores_per_reviewer}-b"),
    ]
    campaign = builders.campaign(f"q{scores_per_reviewer}", suite, models)
    people = [builders.reviewer(f"q{scores_per_reviewer}-{n}") for n in range(3)]
    answers = [
        builders.generation(campaign, item, model) for item in suite.items.all() for model in models
    ]
    for answer in answers[:4]:
        GoldAnswer.objects.create(generation=answer, low=3, high=6)
    scores = []
    for person in people:
        for n, answer in enumerate(answers):
            score = builders.new_score(
                answer, person, rng.randint(0, 10), at=START + datetime.timedelta(days=n)
            )
            score.purpose = Purpose.GOLD if n < 4 else Purpose.REGULAR
            score.seconds_spent = rng.choice([None, 1.0])
            scores.append(score)
    Score.objects.bulk_create(scores)
    return campaign


def test_the_page_reads_a_fixed_number_of_queries_however_many_scores(admin: User) -> None:
    client = builders_client(admin)
    counts = []
    for size in (3, 30):
        campaign = scored_study(size)
        url = reverse("reviewer-quality", args=[campaign.public_id])
        client.get(url)  # session and user warm
        with CaptureQueriesContext(connection) as queries:
            response = client.get(url)
        assert response.status_code == 200
        assert Score.objects.filter(generation__campaign=campaign).count() == 3 * 2 * size
        counts.append(len(queries))
    assert counts[0] == counts[1], counts


def test_calibration_on_without_calibration_answers_is_warned(admin: User) -> None:
    campaign = scored_study(2)
    ReviewSettings.objects.filter(campaign=campaign).update(calibration=True)
    client = builders_client(admin)
    url = reverse("reviewer-quality", args=[campaign.public_id])
    assert 'id="calibration-empty"' in client.get(url).content.decode()
    gold_list = reverse("gold-list", args=[campaign.public_id])
    assert 'id="calibration-empty"' in client.get(gold_list).content.decode()
    GoldAnswer.objects.filter(generation__campaign=campaign).update(purpose=Purpose.CALIBRATION)
    assert 'id="calibration-empty"' not in client.get(url).content.decode()
    ReviewSettings.objects.filter(campaign=campaign).update(calibration=False)
    GoldAnswer.objects.all().delete()
    assert 'id="calibration-empty"' not in client.get(url).content.decode()


def test_the_page_is_linked_from_results_and_review_progress(admin: User) -> None:
    campaign = scored_study(2)
    builders.scores_written(campaign)
    client = builders_client(admin)
    url = reverse("reviewer-quality", args=[campaign.public_id])
    results = client.get(reverse("campaign-results", args=[campaign.public_id])).content.decode()
    assert f'href="{url}"' in results
    progress = client.get(reverse("review-progress", args=[campaign.public_id])).content.decode()
    assert f'href="{url}"' in progress
    page = client.get(url).content.decode()
    assert reverse("review-progress", args=[campaign.public_id]) + "#reviewers" in page


def test_an_excluded_reviewer_is_still_measured_and_marked(admin: User) -> None:
    campaign = scored_study(3)
    excluded = User.objects.get(username="q3-0")
    exclusion.exclude(campaign, excluded)
    quality = reviewer_quality.measure(campaign)
    by_name = {r.username: r for r in quality.reviewers}
    assert by_name["q3-0"].excluded and not by_name["q3-1"].excluded
    assert by_name["q3-0"].compared > 0  # severity still computed against the others
    rows = read_csv(builders_client(admin), campaign, "reviewers")
    assert [r[-1] for r in rows[1:]] == ["true", "false", "false"]


def test_too_fast_counts_scores_quicker_than_reading_the_answer(admin: User) -> None:
    suite = builders.suite("fast", ["AR"])
    model = builders.endpoint("fast-a")
    campaign = builders.campaign("fast", suite, [model])
    answer = builders.generation(campaign, suite.items.get(), model, content="y" * 100)
    people = [builders.reviewer(f"fast-{n}") for n in range(4)]
    # At 50 characters a second, 100 characters take 2 s: 1.9 s is too fast, 2 s is not.
    for person, seconds in zip(people, [1.9, 2.0, None, 0.0], strict=True):
        score = builders.score(answer, person, 5)
        Score.objects.filter(pk=score.pk).update(seconds_spent=seconds)
    by_name = {r.username: r for r in reviewer_quality.measure(campaign).reviewers}
    assert [(by_name[p.username].too_fast, by_name[p.username].timed) for p in people] == [
        (1, 1),
        (0, 1),
        (0, 0),
        (1, 1),
    ]
    ReviewSettings.objects.filter(campaign=campaign).update(max_chars_per_s=None)
    assert {r.too_fast for r in reviewer_quality.measure(campaign).reviewers} == {None}


def test_an_unknown_csv_is_404_and_reviewers_are_refused(admin: User, alice: User) -> None:
    campaign = scored_study(2)
    url = reverse("reviewer-quality", args=[campaign.public_id])
    assert builders_client(admin).get(url, {"csv": "nope"}).status_code == 404
    assert builders_client(alice).get(url).status_code == 403
    assert builders_client(alice).get(url, {"csv": "reviewers"}).status_code == 403
