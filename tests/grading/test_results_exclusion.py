"""Admins exclude a reviewer from a campaign's results (DESIGN §11, drift).

For seeded random studies (several campaigns sharing models, 3+ models, uneven reviewers), an
admin excludes one or two (campaign, reviewer) pairs through the Review progress page, then:

- the per-score `export_scores` still holds every score, and no score is deleted;
- the cache's data key of every page in view changed, as after a new score;
- every results page's matchup table and sampled chart CSVs, and `export_scores --aggregate`,
  equal what `test_results_recompute` recomputes independently from the `export_scores` rows
  minus the excluded pairs' rows;
- the bias and ranking CSVs (`export_analysis`, every kind) and the judges' agreement with the
  people equal those of the same database with the excluded pairs' scores deleted;
- including them again restores every one of those CSVs byte for byte.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from io import StringIO
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.cache import cache
from django.core.management import call_command
from django.db import transaction
from django.test import Client
from django.urls import reverse

from grading import analysis_export, exclusion, freshness
from grading.assignment import open_results
from grading.models import ReviewSettings, Score
from inference import csv_writing
from inference.models import Campaign, TaskType
from tests.builders import (
    campaign,
    endpoint,
    generation,
    random_judgements,
    random_study,
    reviewer,
    score,
    scores_written,
    suite,
)
from tests.conftest import logged_in
from tests.grading.test_results_recompute import (
    CHARTS,
    CSV_DECIMALS,
    Given,
    Problem,
    compare,
    expected_aggregate,
    expected_csvs,
    exported_answers,
    exported_scores,
    fetch,
    pages_to_check,
)
from tests.grading.test_review_pages import assert_blind

STUDIES = 12
CHARTS_PER_PAGE = 3
HTMX = {"HX-Request": "true", "HX-Target": "reviewers"}


def exclusion_url(made: Any) -> str:
    return reverse("review-exclusion", args=[made.public_id])


def command_output(name: str, *args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command(name, *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def figure_csvs(client: Client, campaigns: Sequence[Campaign]) -> dict[str, str]:
    """Every figure CSV this test compares across exclusions, by a name; built afresh."""
    cache.clear()
    texts = {"aggregate": command_output("export_scores", "--aggregate")[0]}
    for kind in analysis_export.KINDS:
        texts[f"analysis {kind}"] = command_output("export_analysis", kind)[0]
    for made in campaigns:
        for name in ("table", "bars"):
            url = f"{reverse('campaign-results', args=[made.public_id])}?csv={name}"
            texts[url] = fetch(client, url)[0] or "failed"
        url = f"{reverse('campaign-analyses', args=[made.public_id])}?csv=ranking-table"
        texts[url] = fetch(client, url)[0] or "failed"
        for judge in made.judges.all():
            for name in ("agreement", "table"):
                judges = reverse("campaign-judges", args=[made.public_id])
                url = f"{judges}?csv={name}&judge={judge.slug}"
                texts[url] = fetch(client, url)[0] or "failed"
    texts["overview table"] = fetch(client, "/results/?csv=table")[0] or "failed"
    return texts


def data_keys(campaigns: Sequence[Campaign]) -> dict[str, str]:
    """The data each cached figure set of these pages rests on (changes with any score)."""
    keys = {"overview": freshness.scope_of(campaigns, reviewer="", scored_only=True).data}
    for made in campaigns:
        keys[made.slug] = freshness.scope_of([made], reviewer="", scored_only=False).data
    return keys


def recomputed_problems(
    client: Client, seed: int, study: Any, every: Sequence[Given], chosen: set[tuple[str, str]]
) -> Iterator[Problem]:
    """The results pages and the aggregate export against an independent recomputation from
    the export's rows `every` without those of the excluded (campaign, reviewer) pairs."""
    scores = [s for s in every if (s.campaign, s.reviewer) not in chosen]
    modality_of = dict(TaskType.objects.order_by("position").values_list("code", "modality"))
    answers = exported_answers()
    yield from compare(
        seed,
        "export_scores --aggregate",
        "aggregate",
        command_output("export_scores", "--aggregate")[0],
        expected_aggregate(scores),
    )
    rng = random.Random(f"exclusion pages {seed}")
    # Which campaigns the overview shows does not change: it shows those with scores.
    touched = {slug for slug, _ in chosen}
    for page in pages_to_check(rng, study, every, list(modality_of)):
        html, failure = fetch(client, page.url())
        if html is None:
            yield Problem(seed, str(page), "", "", "", failure)
            continue
        if touched & {c.slug for c in page.campaigns}:
            assert 'id="excluded-reviewers"' in html, f"{page} does not say who is excluded"
        expected = expected_csvs(page, scores, answers, modality_of)
        for name in ("table", *rng.sample(CHARTS, CHARTS_PER_PAGE)):
            text, failure = fetch(client, page.url(("csv", name)))
            if text is None:
                yield Problem(seed, str(page), name, "", "", failure)
                continue
            yield from compare(seed, str(page), name, text, expected[name])


@pytest.mark.django_db
def test_excluded_reviewers_leave_every_figure_and_come_back_byte_for_byte(
    admin: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(csv_writing, "FLOAT_DECIMALS", CSV_DECIMALS)
    client = logged_in(admin)
    checked = 0
    for seed in range(STUDIES * 3):
        if checked == STUDIES:
            break
        cache.clear()
        with transaction.atomic():
            rng = random.Random(f"exclusion {seed}")
            study = random_study(rng)
            random_judgements(rng, study)
            every = exported_scores()
            pairs = sorted({(s.campaign, s.reviewer) for s in every})
            # Worth checking: someone is left to count after the exclusions, somewhere.
            if len(pairs) < 2:
                transaction.set_rollback(True)
                continue
            chosen = set(rng.sample(pairs, rng.choice([1, 1, 2])))
            campaigns = list(Campaign.objects.filter(slug__in=[c.slug for c in study.campaigns]))
            before = figure_csvs(client, campaigns)
            keys = data_keys(campaigns)
            total = Score.objects.count()

            for n, (slug, username) in enumerate(sorted(chosen)):
                made = Campaign.objects.get(slug=slug)
                headers = HTMX if n % 2 == 0 else {}
                asked = {"reviewer": username, "action": "exclude"}
                response = client.post(exclusion_url(made), asked, headers=headers)
                assert response.status_code == (200 if headers else 302)

            # Nothing deleted; the raw record unchanged; every figure set's data key moved.
            assert Score.objects.count() == total
            assert exported_scores() == every
            moved = data_keys(campaigns)
            assert moved["overview"] != keys["overview"]
            for slug, _ in chosen:
                assert moved[slug] != keys[slug]

            cache.clear()
            problems = list(recomputed_problems(client, seed, study, every, chosen))
            assert not problems, "\n".join(map(str, problems[:15]))
            excluded = figure_csvs(client, campaigns)
            assert excluded != before

            # The same figures as if those scores had never been given.
            with transaction.atomic():
                for slug, username in chosen:
                    Score.objects.filter(
                        generation__campaign__slug=slug, reviewer__username=username
                    ).delete()
                ReviewSettings.excluded_reviewers.through.objects.all().delete()
                deleted = figure_csvs(client, campaigns)
                transaction.set_rollback(True)
            differing = [name for name in deleted if deleted[name] != excluded[name]]
            assert not differing, f"seed {seed}: {differing}"

            for slug, username in chosen:
                made = Campaign.objects.get(slug=slug)
                client.post(exclusion_url(made), {"reviewer": username, "action": "include"})
            assert figure_csvs(client, campaigns) == before
            assert data_keys(campaigns) != moved
            transaction.set_rollback(True)
        checked += 1
    cache.clear()
    assert checked == STUDIES


# --- One small campaign ----------------------------------------------------------------------


@pytest.fixture
def shared(db: None) -> dict[str, Any]:
    """Two campaigns sharing three models: annika scores both, benedikt the first only,
    cidalia nothing."""
    models = [endpoint(slug) for slug in ("m-one", "m-two", "m-three")]
    made = {}
    for slug in ("first", "second"):
        of = suite(f"suite-{slug}", ["AR"] * 6)
        made[slug] = campaign(slug, of, models, reviewers_per_output=3)
    people = {name: reviewer(name) for name in ("annika", "benedikt", "cidalia")}
    for slug, c in made.items():
        for item in c.suite.items.all():
            for position, model in enumerate(models):
                answer = generation(c, item, model)
                score(answer, people["annika"], (item.pk + position) % 11, position=position)
                if slug == "first":
                    score(answer, people["benedikt"], 10 - position, position=position)
        scores_written(c)
    return {"campaigns": made, "people": people}


def test_a_reviewer_cannot_exclude_anyone(shared: dict[str, Any]) -> None:
    first = shared["campaigns"]["first"]
    client = logged_in(shared["people"]["annika"])
    response = client.post(exclusion_url(first), {"reviewer": "benedikt", "action": "exclude"})
    assert response.status_code == 403
    assert not exclusion.excluded([first.pk])


def test_excluding_someone_without_scores_is_refused(shared: dict[str, Any], admin: User) -> None:
    second = shared["campaigns"]["second"]
    version = ReviewSettings.objects.get(campaign=second).scores_version
    client = logged_in(admin)
    response = client.post(
        exclusion_url(second), {"reviewer": "benedikt", "action": "exclude"}, headers=HTMX
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert "benedikt has no scores in this campaign: there is nothing to exclude." in html
    response = client.post(exclusion_url(second), {"reviewer": "cidalia", "action": "exclude"})
    assert response.status_code == 302
    page = client.get(response["Location"]).content.decode()
    assert "cidalia has no scores in this campaign" in page
    assert not exclusion.excluded([second.pk])
    assert ReviewSettings.objects.get(campaign=second).scores_version == version
    assert client.post(exclusion_url(second), {"reviewer": "nobody-at-all"}).status_code == 404
    assert client.post(exclusion_url(second), {"reviewer": "annika"}).status_code == 400
    assert not exclusion.excluded([second.pk])
    assert client.get(exclusion_url(second)).status_code == 405


def test_the_progress_page_excludes_and_includes_with_htmx(
    shared: dict[str, Any], admin: User
) -> None:
    first = shared["campaigns"]["first"]
    client = logged_in(admin)
    page = client.get(reverse("review-progress", args=[first.public_id])).content.decode()
    assert page.count("Exclude from results") == 2 and 'hx-target="#reviewers"' in page
    response = client.post(
        exclusion_url(first), {"reviewer": "benedikt", "action": "exclude"}, headers=HTMX
    )
    fragment = response.content.decode()
    assert fragment.lstrip().startswith('<section class="card" id="reviewers">')
    assert "benedikt is excluded from this campaign" in fragment and "Include again" in fragment
    assert exclusion.excluded([first.pk]) == {first.pk: ["benedikt"]}
    # Excluding twice changes nothing more.
    version = ReviewSettings.objects.get(campaign=first).scores_version
    client.post(exclusion_url(first), {"reviewer": "benedikt", "action": "exclude"}, headers=HTMX)
    assert ReviewSettings.objects.get(campaign=first).scores_version == version
    response = client.post(
        exclusion_url(first), {"reviewer": "benedikt", "action": "include"}, headers=HTMX
    )
    assert "count in this campaign&#x27;s results again" in response.content.decode()
    assert not exclusion.excluded([first.pk])
    assert ReviewSettings.objects.get(campaign=first).scores_version == version + 1


def test_pages_name_the_excluded_to_admins_and_count_them_to_reviewers(
    shared: dict[str, Any], admin: User
) -> None:
    first, second = shared["campaigns"]["first"], shared["campaigns"]["second"]
    exclusion.exclude(first, shared["people"]["benedikt"])
    exclusion.exclude(second, shared["people"]["annika"])
    client = logged_in(admin)
    own = client.get(reverse("campaign-results", args=[first.public_id])).content.decode()
    assert "1 reviewer excluded from these figures: benedikt." in own
    overview = client.get("/results/").content.decode()
    assert "2 reviewers excluded from these figures: annika (second), benedikt (first)." in overview
    bias = client.get(reverse("campaign-analyses", args=[second.public_id])).content.decode()
    assert "1 reviewer excluded from these figures: annika." in bias

    # A reviewer reading opened results learns how many, never who.
    open_results(first)
    open_results(second)
    client = logged_in(shared["people"]["cidalia"])
    for url, said in (
        (reverse("campaign-results", args=[first.public_id]), "1 reviewer excluded"),
        (reverse("campaign-analyses", args=[second.public_id]), "1 reviewer excluded"),
        ("/results/", "2 reviewers excluded"),
    ):
        html = client.get(url).content.decode()
        assert f"{said} from these figures by an admin." in html, url
        assert "benedikt" not in html and "annika" not in html
    # The excluded reviewer's own review pages stay blind and say nothing of it.
    benedikt = logged_in(shared["people"]["benedikt"])
    for url in ("/review/", "/review/mine/"):
        html = assert_blind(benedikt.get(url))
        assert "exclude" not in html.lower()


def test_figure_exports_warn_on_stderr_and_the_per_score_export_keeps_everything(
    shared: dict[str, Any],
) -> None:
    first = shared["campaigns"]["first"]
    rows_before = command_output("export_scores")[0]
    _, quiet = command_output("export_scores", "--aggregate")
    assert quiet == ""
    exclusion.exclude(first, shared["people"]["benedikt"])
    assert command_output("export_scores")[0] == rows_before
    aggregate, warning = command_output("export_scores", "--aggregate")
    assert warning.strip() == (
        "warning: 1 reviewer(s) excluded from these figures: benedikt (first); their scores are "
        "left out (export_scores keeps them)"
    )
    assert "warning" not in aggregate
    _, warning = command_output("export_analysis", "ranking", "--campaign", "first")
    assert "1 reviewer(s) excluded from these figures: benedikt (first)" in warning
    _, warning = command_output("export_analysis", "ranking", "--campaign", "second")
    assert warning == ""
    # benedikt's 18 scores of `first` are gone from its aggregate, not from the database.
    scores = {
        line.split(",")[2]: int(line.split(",")[4])
        for line in aggregate.splitlines()[1:]
        if line.startswith("first,")
    }
    assert scores == {"m-one": 6, "m-two": 6, "m-three": 6}
    assert Score.objects.filter(generation__campaign=first).count() == 36


def test_the_items_behind_a_figure_show_excluded_scores_marked_and_uncounted(
    shared: dict[str, Any], admin: User
) -> None:
    first = shared["campaigns"]["first"]
    exclusion.exclude(first, shared["people"]["benedikt"])
    query = {"task_type": "AR", "campaign": first.public_id, "model": "m-one"}
    html = logged_in(admin).get(reverse("results-items"), query).content.decode()
    # Every score still shown; benedikt's struck through, and each mean is annika's score alone.
    assert html.count("<s>benedikt: <strong>10</strong></s> excluded") == 6
    item = first.suite.items.order_by("external_id").first()
    assert item is not None
    assert f"mean {float(item.pk % 11):.2f}" in html


def test_a_cached_page_shows_its_figures_stale_after_an_exclusion(
    shared: dict[str, Any], admin: User
) -> None:
    first = shared["campaigns"]["first"]
    client = logged_in(admin)
    url = reverse("campaign-results", args=[first.public_id])
    cache.clear()
    assert "— updating" not in client.get(url).content.decode()
    exclusion.exclude(first, shared["people"]["benedikt"])
    html = client.get(url).content.decode()
    assert "— updating" in html and "1 reviewer excluded from these figures" in html
    cache.clear()


def test_the_export_section_says_the_aggregate_leaves_excluded_reviewers_out(
    shared: dict[str, Any], admin: User
) -> None:
    first = shared["campaigns"]["first"]
    exclusion.exclude(first, shared["people"]["benedikt"])
    html = logged_in(admin).get(reverse("campaign-export", args=[first.public_id])).content
    assert "without benedikt, excluded from the results" in html.decode()


def test_the_django_admin_shows_exclusions_without_editing_them(
    shared: dict[str, Any], admin: User
) -> None:
    first = shared["campaigns"]["first"]
    exclusion.exclude(first, shared["people"]["benedikt"])
    url = reverse("admin:inference_campaign_change", args=[first.pk])
    html = logged_in(admin).get(url).content.decode()
    assert "Excluded reviewers" in html and "benedikt" in html
    assert 'name="review-0-excluded_reviewers"' not in html
