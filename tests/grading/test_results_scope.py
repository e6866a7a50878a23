"""Each figure from its own campaign (DESIGN §7 "Scope of a figure"), deliberate and labelled
pooling on the overview, and results that never reach a reviewer who still grades the models."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence

import pytest
from django.contrib.auth.models import User
from django.core.cache import cache
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from grading import assignment
from grading.models import ReviewSettings, Rubric, Score
from inference.models import (
    Campaign,
    CampaignModel,
    Generation,
    ModelEndpoint,
    Suite,
    TaskItem,
    TaskType,
)
from tests.conftest import logged_in

pytestmark = pytest.mark.django_db

# Item scores per task type and model: one list of reviewer scores per item.
Scores = dict[str, dict[str, list[list[int]]]]


def endpoint(slug: str) -> ModelEndpoint:
    return ModelEndpoint.objects.get_or_create(
        slug=slug,
        defaults={"name": slug.upper(), "model": slug, "base_url": "http://127.0.0.1:9/v1"},
    )[0]


def study(
    slug: str,
    models: Sequence[str],
    scores: Scores,
    *,
    suite: str = "shared",
    status: str = "finished",
    params: dict[str, object] | None = None,
) -> Campaign:
    """A campaign over `suite` whose answers got `scores` from reviewers r0, r1, …

    Items are named `<code>-<n>` in the suite, so campaigns over one suite answer the same items.
    """
    suite_row = Suite.objects.get_or_create(name=suite)[0]
    campaign = Campaign.objects.create(
        slug=slug, name=slug.title(), matchup="small", suite=suite_row, status=status,
        params=params or {"temperature": 0.7},
    )  # fmt: skip
    ReviewSettings.objects.create(campaign=campaign, reviewers_per_output=2)
    for position, model in enumerate(models):
        CampaignModel.objects.create(campaign=campaign, endpoint=endpoint(model), position=position)
    rubric = Rubric.objects.current()
    for code, by_model in scores.items():
        task_type = TaskType.objects.get(code=code)
        for model, per_item in by_model.items():
            for n, values in enumerate(per_item):
                item = TaskItem.objects.get_or_create(
                    suite=suite_row,
                    external_id=f"{code}-{n}",
                    defaults={
                        "task_type": task_type,
                        "prompt": f"p {n}",
                        "content_hash": code + str(n),
                    },
                )[0]
                generation = Generation.objects.create(
                    campaign=campaign, item=item, endpoint=endpoint(model), status="succeeded",
                    content="an answer",
                )  # fmt: skip
                for r, value in enumerate(values):
                    Score.objects.create(
                        generation=generation,
                        reviewer=User.objects.get_or_create(username=f"r{r}")[0],
                        score=value, position=r % 2, rubric=rubric, scored_at=timezone.now(),
                    )  # fmt: skip
    ReviewSettings.objects.scores_changed([campaign.pk])
    return campaign


def table_csv(client: Client, url: str, **query: str) -> list[dict[str, str]]:
    response = client.get(url, {"csv": "table", **query})
    assert response.status_code == 200
    return list(csv.DictReader(io.StringIO(response.getvalue().decode())))


def rows_of(rows: list[dict[str, str]], campaign: str) -> dict[str, dict[str, str]]:
    return {r["task_type"]: r for r in rows if r["campaign"] == campaign}


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    cache.clear()


# --- A row with nothing to compare ------------------------------------------------------------


def test_overview_answers_when_a_task_type_was_scored_for_one_model_only(admin: User) -> None:
    """The first wave's 500: a matchup row with no difference broke the `signed` filter."""
    first = study(
        "first", ["m-a", "m-b"], {"AR": {"m-a": [[7]], "m-b": [[5]]}, "TC": {"m-a": [[4]]}}
    )
    second = study("second", ["m-a", "m-b"], {"AR": {"m-a": [[6]]}}, suite="other")
    client = logged_in(admin)
    queries: list[dict[str, str | list[str]]] = [
        {},
        {"modality": "text"},
        {"task_type": "AR"},
        {"task_type": "TC"},
        {"campaign": [first.public_id, second.public_id]},
        {"sort": "-diff"},
    ]
    for query in queries:
        for url in (reverse("results"), reverse("campaign-results", args=[first.public_id])):
            response = client.get(url, query)
            assert response.status_code == 200, (url, query)
            fragment = client.get(
                url, query, headers={"HX-Request": "true", "HX-Target": "results"}
            )
            assert fragment.status_code == 200, (url, query)
    html = client.get(reverse("results")).content.decode()
    assert 'title="No item was scored for both models."' in html


# --- Scope -------------------------------------------------------------------------------------


def test_overview_tables_use_only_their_own_campaigns_scores(admin: User) -> None:
    """Two campaigns over the same items and models: neither table borrows the other's items."""
    rerun = study(
        "rerun",
        ["m-a", "m-b"],
        {
            "AR": {"m-a": [[9], [9], [8]], "m-b": [[2], [3], [2]]},
            "CK": {"m-a": [[5]], "m-b": [[5]]},
        },
    )
    original = study(
        "original",
        ["m-a", "m-b"],
        {"AR": {"m-a": [[1], [2]], "m-b": [[8], [8]]}, "QA": {"m-a": [[6]], "m-b": [[6]]}},
    )
    client = logged_in(admin)
    overview = table_csv(client, reverse("results"))
    for campaign, expected_types in ((rerun, {"AR", "CK"}), (original, {"AR", "QA"})):
        own = table_csv(client, reverse("campaign-results", args=[campaign.public_id]))
        pooled_view = rows_of(overview, campaign.slug)
        assert set(pooled_view) == expected_types, campaign.slug
        assert pooled_view == rows_of(own, campaign.slug), campaign.slug
    ar = rows_of(overview, "rerun")["AR"]
    assert (ar["items_a"], ar["items_b"], ar["shared_items"]) == ("3", "3", "3")
    assert float(ar["mean_a"]) == pytest.approx(26 / 3, abs=1e-3)
    assert float(ar["difference"]) == pytest.approx(26 / 3 - 7 / 3, abs=1e-3)
    ar = rows_of(overview, "original")["AR"]
    assert float(ar["mean_a"]) == 1.5 and float(ar["difference"]) == -6.5


def test_overview_says_which_campaigns_each_pooled_model_spans(admin: User) -> None:
    study("first", ["m-a", "m-b"], {"AR": {"m-a": [[8]], "m-b": [[4]]}})
    study("second", ["m-a", "m-c"], {"AR": {"m-a": [[6]], "m-c": [[2]]}},
          params={"temperature": 1.0})  # fmt: skip
    client = logged_in(admin)
    html = client.get(reverse("results")).content.decode()
    assert 'data-pooled="m-a"' in html  # m-b and m-c are in one campaign each: nothing pooled
    assert "m-a</strong>: First" in html and "Second" in html
    assert "temperature: first=0.7, second=1.0" in html
    assert 'id="charts-pooled"' in html
    # The pooled chart figures: m-a's AR is the mean of its two (campaign, item) units.
    bars = list(
        csv.DictReader(
            io.StringIO(client.get(reverse("results"), {"csv": "bars"}).getvalue().decode())
        )
    )
    m_a = next(r for r in bars if r["model"] == "m-a")
    assert (m_a["items"], float(m_a["mean"])) == ("2", 7.0)
    # A campaign's own page pools nothing and says so.
    own = client.get(
        reverse("campaign-results", args=[Campaign.objects.get(slug="first").public_id])
    )
    assert "data-pooled" not in own.content.decode()
    own_bars = client.get(own.wsgi_request.path, {"csv": "bars"}).getvalue().decode()
    assert "AR,m-a,1,1,8,8,8" in own_bars


# --- Results and blinding across campaigns ---------------------------------------------------


def open_results(client: Client, campaign: Campaign) -> None:
    response = client.post(reverse("results-visibility", args=[campaign.public_id]), {"open": "1"})
    assert response.status_code == 302


def test_reviewer_reads_no_results_about_a_model_they_can_still_grade(
    admin: User, alice: User, bob: User
) -> None:
    done = study("done", ["m-a", "m-b"], {"AR": {"m-a": [[8]], "m-b": [[3]]}})
    grading = study("grading", ["m-a", "m-c"], {}, suite="other", status="running")
    unrelated = study("unrelated", ["m-x", "m-y"], {"AR": {"m-x": [[8]], "m-y": [[3]]}}, suite="u")
    admin_client = logged_in(admin)
    open_results(admin_client, done)
    open_results(admin_client, unrelated)
    alice_client = logged_in(alice)

    withheld = alice_client.get(reverse("campaign-results", args=[done.public_id]))
    assert withheld.status_code == 403
    assert "you are still grading these models" in withheld.content.decode()
    assert alice_client.get(done_csv := reverse("campaign-results", args=[done.public_id]),
                            {"csv": "table"}).status_code == 403  # fmt: skip
    overview = alice_client.get(reverse("results")).content.decode()
    assert "m-b" not in overview and "Unrelated" in overview
    assert 'id="withheld"' in overview
    assert (
        alice_client.get(reverse("campaign-results", args=[unrelated.public_id])).status_code == 200
    )

    # Restricting the other campaign to bob frees alice; bob still may not read.
    ReviewSettings.objects.get(campaign=grading).reviewers.add(bob)
    assert alice_client.get(done_csv).status_code == 200
    assert logged_in(bob).get(done_csv).status_code == 403

    # Once grading of the shared model ends, bob reads them too.
    open_results(admin_client, grading)
    assert logged_in(bob).get(done_csv).status_code == 200


def test_a_draft_campaign_withholds_results_too(admin: User, alice: User) -> None:
    done = study("done", ["m-a", "m-b"], {"AR": {"m-a": [[8]], "m-b": [[3]]}})
    study("later", ["m-b", "m-z"], {}, suite="other", status="draft")
    open_results(logged_in(admin), done)
    url = reverse("campaign-results", args=[done.public_id])
    assert logged_in(alice).get(url).status_code == 403
    Campaign.objects.filter(slug="later").update(status="cancelled")
    assert logged_in(alice).get(url).status_code == 200


def test_hiding_results_again_never_reopens_grading(admin: User, alice: User) -> None:
    campaign = study("solo", ["m-a", "m-b"], {"AR": {"m-a": [[8]], "m-b": [[3]]}})
    campaign.status = "running"
    campaign.save()
    client = logged_in(admin)
    assert campaign.pk in assignment.campaigns_for(alice)
    open_results(client, campaign)
    response = client.post(reverse("results-visibility", args=[campaign.public_id]), {"close": "1"})
    assert response.status_code == 302
    review = ReviewSettings.objects.get(campaign=campaign)
    assert not review.results_open and review.grading_ended_at is not None
    assert campaign.pk not in assignment.campaigns_for(alice)
    page = client.get(reverse("campaign-results", args=[campaign.public_id])).content.decode()
    assert "Grading ended" in page
    # Reviewers no longer read them, and cannot grade them either.
    assert (
        logged_in(alice).get(reverse("campaign-results", args=[campaign.public_id])).status_code
        == 404
    )


def test_unknown_filter_values_are_ignored_and_unknown_csv_names_are_not_found(
    admin: User,
) -> None:
    campaign = study("solo", ["m-a", "m-b"], {"AR": {"m-a": [[8]], "m-b": [[3]]}})
    client = logged_in(admin)
    url = reverse("campaign-results", args=[campaign.public_id])
    plain = table_csv(client, url)
    assert [r["task_type"] for r in plain] == ["AR"]
    assert table_csv(client, url, task_type="NOPE") == plain
    assert table_csv(client, url, modality="smell") == plain
    assert table_csv(client, url, sort="sideways") == plain
    assert table_csv(client, url, task_type="QA") == []  # exists, nothing scored: empty
    assert table_csv(client, url, reviewer="nobody-at-all") == plain  # no such user
    assert table_csv(client, url, reviewer=admin.username) == []  # a user with no scores
    assert client.get(url, {"csv": "nothing-by-that-name"}).status_code == 404
    assert client.get(reverse("results"), {"campaign": "no-such-id"}).status_code == 200
