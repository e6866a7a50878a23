"""The bias and ranking pages (DESIGN §7.1): they render for messy data, show exactly the
figures `export_analysis` writes, keep per-reviewer figures to admins, respect each figure's
scope (DESIGN §7) and are served from the cached figure set once built."""

from __future__ import annotations

import csv
import json
import random
import re
from html import unescape
from io import StringIO
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.cache import cache
from django.db import connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from grading import analyses, bias, comparison, freshness, tasks
from grading.models import Score
from inference.models import Campaign, Generation
from tests import builders
from tests.conftest import logged_in
from tests.grading.test_analysis_csv import export_rows
from tests.grading.test_analysis_csv import study as csv_study  # noqa: F401
from tests.grading.test_review_pages import assert_blind

pytestmark = pytest.mark.django_db

OVERVIEW = "/results/bias-ranking/"
TABLES = {
    "ranking-table": "ranking",
    "position-table": "position",
    "length-table": "length",
    "association-table": "association",
}
HTMX = {"HX-Request": "true", "HX-Target": "analyses"}


def page_of(campaign: Campaign) -> str:
    return reverse("campaign-analyses", args=[campaign.public_id])


def csv_of(client: Client, url: str, name: str, **query: Any) -> list[dict[str, str]]:
    response = client.get(url, {"csv": name, **query})
    assert response.status_code == 200, name
    body = b"".join(response.streaming_content).decode()  # type: ignore[attr-defined]
    return list(csv.DictReader(StringIO(body, newline="")))


def text_of(html: str) -> str:
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", html)))


def open_results(client: Client, campaign: Campaign) -> None:
    response = client.post(reverse("results-visibility", args=[campaign.public_id]), {"open": "1"})
    assert response.status_code == 302


@pytest.fixture
def study(csv_study: dict[str, Any]) -> dict[str, Any]:  # noqa: F811
    """`test_analysis_csv`'s study — campaign `main` (three models, two reviewers, the first
    position worth a point), `pair` (two of the models, one reviewer) and `old` (imported
    scores, no positions) — its scores announced as the product's writers of scores do."""
    builders.scores_written(*Campaign.objects.all())
    cache.clear()
    return {**csv_study, "campaigns": {c.slug: c for c in Campaign.objects.all()}}


def test_the_overview_shows_exactly_what_export_analysis_writes(
    study: dict[str, Any], admin: User
) -> None:
    client = logged_in(admin)
    response = client.get(OVERVIEW)
    assert response.status_code == 200
    for name, kind in TABLES.items():
        assert csv_of(client, OVERVIEW, name) == export_rows(kind), name
    ranking = export_rows("ranking")
    assert csv_of(client, OVERVIEW, "ranking") == [r for r in ranking if r["task_type"] == ""]
    position = export_rows("position")
    measured = [r for r in position if r["reviewer"] == "" and r["effect"]]
    assert csv_of(client, OVERVIEW, "position") == measured
    assert [r["campaign"] for r in measured] == ["main"]

    # The tables on the page carry the same figures, rounded.
    html = response.content.decode()
    main = re.search(r'<tr data-campaign="main"[^>]*>(.*?)</tr>', html, re.S)
    assert main is not None
    effect = float(measured[0]["effect"])
    assert f"{effect:+.2f}".replace("-", "−") in text_of(main.group(1))
    assert float(measured[0]["p_value"]) < 0.05  # the injected first-position bonus is found…
    assert "significant-bias" in main.group(0) and "Position bias: significant" in main.group(1)
    for row in ranking:
        if row["task_type"] == "":
            tr = re.search(rf'<tr data-model="{row["model"]}">(.*?)</tr>', html, re.S)
            assert tr is not None and f"{float(row['rating']):.0f}" in tr.group(1)
    # The overview pools for the ranking and says so, naming every campaign.
    pooled = re.search(r'id="ranking-pooled">(.*?)</div>', html, re.S)
    assert pooled is not None and all(slug in pooled.group(1) for slug in ("main", "pair", "old"))


def test_a_campaign_page_uses_that_campaigns_scores_only(
    study: dict[str, Any], admin: User
) -> None:
    client = logged_in(admin)
    url = page_of(study["campaigns"]["main"])
    html = client.get(url).content.decode()
    assert "This campaign's scores only." in html and 'id="ranking-pooled"' not in html
    for name, kind in TABLES.items():
        assert csv_of(client, url, name) == export_rows(kind, "--campaign", "main"), name
    # Not vacuous: the pooled ranking differs from this campaign's.
    assert csv_of(client, url, "ranking-table") != export_rows("ranking")


def test_imported_scores_have_no_position_data(study: dict[str, Any], admin: User) -> None:
    client = logged_in(admin)
    html = client.get(page_of(study["campaigns"]["old"])).content.decode()
    assert "No position data" in html and "no position data." in html
    assert "significant-bias" not in html
    assert csv_of(client, page_of(study["campaigns"]["old"]), "position") == []
    assert 'class="muted empty-chart"' in html  # the position chart says there is nothing


def test_filters_narrow_the_task_types_and_unknown_values_filter_nothing(
    study: dict[str, Any], admin: User
) -> None:
    client = logged_in(admin)
    ck = csv_of(client, OVERVIEW, "length-table", task_type="CK")
    assert ck and {r["task_type"] for r in ck} == {"CK"}
    fits = {r["task_type"] for r in csv_of(client, OVERVIEW, "ranking-table", task_type="CK")}
    assert fits == {"", "CK"}  # the overall fit stays, over every task type
    everything = csv_of(client, OVERVIEW, "association-table")
    for query in ({"task_type": ""}, {"task_type": "ZZ"}, {"modality": "bogus"}):
        assert csv_of(client, OVERVIEW, "association-table", **query) == everything
    nothing = client.get(OVERVIEW, {"modality": "vision"})
    assert nothing.status_code == 200
    assert csv_of(client, OVERVIEW, "length-table", modality="vision") == []
    fragment = client.get(OVERVIEW, {"task_type": "AR"}, headers=HTMX)
    body = fragment.content.decode()
    assert fragment.status_code == 200 and body.lstrip().startswith('<div id="analyses"')
    assert client.get(OVERVIEW, {"csv": "nope"}).status_code == 404


def test_reviewers_never_see_per_reviewer_figures(
    study: dict[str, Any], admin: User, alice: User
) -> None:
    admin_client = logged_in(admin)
    for campaign in study["campaigns"].values():
        open_results(admin_client, campaign)
    alice_client = logged_in(alice)
    admin_rows = csv_of(admin_client, OVERVIEW, "position-table")
    assert {r["reviewer"] for r in admin_rows} == {"", "carol", "dave"}
    admin_html = admin_client.get(OVERVIEW).content.decode()
    assert "reviewer-position-table" in admin_html and "carol" in admin_html
    for url in [OVERVIEW, *(page_of(c) for c in study["campaigns"].values())]:
        for headers in ({}, HTMX):
            response = alice_client.get(url, headers=headers)
            assert response.status_code == 200, url
            html = response.content.decode()
            assert "reviewer-position-table" not in html
            assert "carol" not in html and "dave" not in html, url
        rows = csv_of(alice_client, url, "position-table")
        assert rows and {r["reviewer"] for r in rows} == {""}
    assert {r["reviewer"] for r in csv_of(alice_client, OVERVIEW, "position")} <= {""}


def test_reviewers_read_no_analyses_of_models_they_still_grade(admin: User, alice: User) -> None:
    suite = builders.suite("s", ["AR"] * 3)
    a, b = builders.endpoint("m-a"), builders.endpoint("m-b")
    done = builders.campaign("done", suite, [a, b])
    running = builders.campaign("running", suite, [a, builders.endpoint("m-c")], status="running")
    for n, item in enumerate(suite.items.order_by("id")):
        for position, model in enumerate((a, b)):
            answer = builders.generation(done, item, model)
            builders.score(answer, admin, 5 + n - position, position=position)
        builders.generation(running, item, a)
    builders.scores_written(done)
    open_results(logged_in(admin), done)
    client = logged_in(alice)
    assert client.get(page_of(done)).status_code == 403
    assert client.get(page_of(done), {"csv": "ranking-table"}).status_code == 403
    overview = client.get(OVERVIEW).content.decode()
    assert "m-b" not in overview and 'id="withheld"' in overview
    assert csv_of(client, OVERVIEW, "ranking-table") == []
    # The reviewer's own pages stay blind, the link to these pages included.
    assert_blind(client.get("/review/"))
    assert "bias-ranking" not in client.get("/review/").content.decode()


def test_pages_render_without_scores_for_one_model_and_for_nobody(admin: User, alice: User) -> None:
    client = logged_in(admin)
    empty = client.get(OVERVIEW)
    assert empty.status_code == 200 and "No scores yet" in empty.content.decode()
    suite = builders.suite("s", ["AR"] * 4)
    solo = builders.campaign("solo", suite, [builders.endpoint("only")])
    unscored = builders.campaign(
        "unscored", suite, [builders.endpoint("x"), builders.endpoint("y")]
    )
    for n, item in enumerate(suite.items.order_by("id")):
        builders.score(builders.generation(solo, item, solo.members.get().endpoint), admin, n)
    builders.scores_written(solo)
    html = client.get(page_of(solo)).content.decode()
    assert "No pairs: no reviewer scored two models on the same item." not in html
    assert csv_of(client, page_of(solo), "ranking-table") == export_rows(
        "ranking", "--campaign", "solo"
    )
    assert [r["rating"] for r in csv_of(client, page_of(solo), "ranking-table")] == ["", ""]
    assert "No campaign shown compares two models." in html
    assert client.get(page_of(unscored)).status_code == 200
    assert "No scores yet" in client.get(page_of(unscored)).content.decode()
    assert client.get(OVERVIEW).status_code == 200
    # A reviewer who may read nothing gets the empty overview, not an error.
    assert logged_in(alice).get(OVERVIEW).status_code == 200
    assert client.get(reverse("campaign-analyses", args=["nothing-here"])).status_code == 404


def test_messy_random_studies_render_and_match_the_export(admin: User) -> None:
    client = logged_in(admin)
    for seed in range(6):
        cache.clear()
        with transaction.atomic():
            made = builders.random_study(random.Random(seed))
            response = client.get(OVERVIEW)
            assert response.status_code == 200, seed
            scored = [c.slug for c in Campaign.objects.filter(review__scores_version__gt=0)]
            for name, kind in TABLES.items():
                expected = export_rows(kind, *(f"--campaign={s}" for s in scored))
                assert csv_of(client, OVERVIEW, name) == (expected if scored else []), (seed, name)
            for campaign in made.campaigns:
                url = reverse("campaign-analyses", args=[campaign.public_id])
                assert client.get(url).status_code == 200, (seed, campaign.slug)
                rows = csv_of(client, url, "length-table")
                assert rows == export_rows("length", "--campaign", campaign.slug), seed
            transaction.set_rollback(True)
    cache.clear()


def test_the_warm_page_reads_the_cached_figures_and_a_new_score_rebuilds_them(
    study: dict[str, Any],
    admin: User,
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
) -> None:
    client = logged_in(admin)
    calls: list[int] = []
    real = analyses.build

    def counted(*args: Any, **kwargs: Any) -> analyses.Analyses:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(analyses, "build", counted)
    client.get(OVERVIEW)
    assert len(calls) == 1
    with CaptureQueriesContext(connection) as first:
        client.get(OVERVIEW)
    with CaptureQueriesContext(connection) as second:
        client.get(OVERVIEW, {"task_type": "AR"})
    assert len(calls) == 1
    assert len(second) == len(first) + 1  # the one more: is the task type known?
    # The results figures and these are separate figure sets of the same campaigns.
    client.get(reverse("results"))
    assert len(calls) == 1
    # A new score: the previous figures, marked stale, and a rebuild in the background.
    main = study["campaigns"]["main"]
    answer = Generation.objects.filter(campaign=main).first()
    assert answer is not None
    Score.objects.filter(generation=answer).update(score=0)
    builders.scores_written(main)
    cache.set(freshness.WORKER_KEY, "", freshness.WORKER_MEMORY_S)  # no worker: a thread
    with django_capture_on_commit_callbacks(execute=False):
        stale = client.get(OVERVIEW).content.decode()
    assert 'id="freshness"' in stale
    scope = freshness.scope_of(
        list(comparison.campaigns_queryset()),
        reviewer="",
        scored_only=True,
        kind=freshness.ANALYSES,
    )
    token = freshness.FigureBuild.objects.get(key=scope.key).token  # the stale page's claim
    # What a worker runs: the task the web process sends, with the kind of figure set.
    outcome = tasks.rebuild_results(scope.campaign_ids, "", scope.key, token, kind=scope.kind)
    assert outcome == "built"
    assert len(calls) == 2
    fresh = client.get(OVERVIEW)
    assert 'id="freshness"' not in fresh.content.decode()
    assert csv_of(client, OVERVIEW, "position-table") == export_rows("position")


def test_the_charts_carry_their_numbers(study: dict[str, Any], admin: User) -> None:
    client = logged_in(admin)
    html = client.get(page_of(study["campaigns"]["main"])).content.decode()
    figures = dict(
        re.findall(r'<script id="figure-(\w+)" type="application/json">(.*?)</script>', html, re.S)
    )
    assert set(figures) == {"ranking", "position", "length"}
    forest = json.loads(figures["ranking"])["data"][0]
    rows = [r for r in export_rows("ranking", "--campaign", "main") if r["task_type"] == ""]
    assert forest["y"] == [r["model"] for r in rows]
    assert forest["x"] == [round(float(r["rating"])) for r in rows]
    scatter = json.loads(figures["length"])["data"]
    points = csv_of(client, page_of(study["campaigns"]["main"]), "length")
    assert sum(len(trace["x"]) for trace in scatter) == len(points) == 3 * 16 - 4
    assert {t["name"] for t in scatter} == {"ernie", "r1", "qwen"}


@pytest.mark.parametrize(
    ("difference", "low", "high", "verdict"),
    [
        (1.0, 0.2, 1.5, "holds"),
        (-1.0, -1.5, -0.2, "holds"),
        (1.0, -0.3, 1.5, "gone"),
        (1.0, -1.5, -0.2, "reversed"),
        (0.0, 0.2, 1.5, ""),
        (1.0, None, None, ""),
    ],
)
def test_whether_a_lead_survives_equal_length(
    difference: float, low: float | None, high: float | None, verdict: str
) -> None:
    result = bias.LengthControlled(difference, 0.5, low, high, 0.01, 10)
    assert analyses.LengthRow("c", "AR", "a", "b", result).verdict == verdict
    assert analyses.LengthRow("c", "AR", "a", "b", None).verdict == ""


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_worker_rebuilds_the_analyses_after_a_new_score(
    admin: User, settings: Any, celery_worker_process: Any
) -> None:
    from tests.grading.test_results_freshness import add_score
    from tests.grading.test_results_pages import build_fixed_study, wait_until_fresh

    cache.clear()
    campaign = build_fixed_study()
    worker = celery_worker_process()
    settings.CELERY_TASK_DEFAULT_QUEUE = worker.queue
    settings.RESULTS_WORKER_START_S = 120  # the web process would take over only after this
    client = logged_in(admin)
    url = page_of(campaign)
    before = csv_of(client, url, "position-table")
    add_score(campaign)  # a late reviewer's 10 for alpha-m's TC-0 answer
    assert 'id="freshness"' in client.get(url).content.decode()
    assert csv_of(client, url, "position-table") == before  # the previous figures meanwhile
    wait_until_fresh(client, url)
    after = csv_of(client, url, "position-table")
    assert after == export_rows("position", "--campaign", campaign.slug) != before
    assert "late" in {r["reviewer"] for r in after}  # the new reviewer's row
    output = worker.output()
    assert "gradebench.rebuild_results" in output, output
    assert "runner=worker" in output and "outcome=built" in output, output
