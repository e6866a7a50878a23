"""The run page: progress per model, polling only while the run is active, actions, detail."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from inference import progress
from inference.models import Campaign, CampaignModel, Generation, Judgement, ModelEndpoint
from tests import builders
from tests.conftest import logged_in

pytestmark = pytest.mark.django_db
HTMX = {"HX-Request": "true"}


@pytest.fixture
def campaign(db: None) -> Campaign:
    """Draft campaign `c` of models alpha and beta over four QA items, every answer queued."""
    suite = builders.suite("s", ["QA"] * 4)
    models = [builders.endpoint(slug, name=slug.title()) for slug in ("alpha", "beta")]
    made = builders.campaign(
        "c", suite, models, name="Campaign C", params={"temperature": 0.7}, status="draft"
    )
    for model in models:
        for item in suite.items.order_by("pk"):
            builders.generation(
                made, item, model, status="queued", timings=builders.NO_TIMINGS, error=""
            )
    return made


def set_states(campaign: Campaign, slug: str, *states: str, **fields: Any) -> None:
    for generation, state in zip(
        campaign.generations.filter(endpoint__slug=slug).order_by("pk"), states, strict=False
    ):
        Generation.objects.filter(pk=generation.pk).update(
            status=state, finished_at=timezone.now(), **fields
        )


def test_run_page_shows_progress_per_model_and_polls_while_active(
    admin_client: Client, campaign: Campaign
) -> None:
    set_states(campaign, "alpha", "succeeded", "succeeded", "failed", simulated=True)
    Generation.objects.filter(campaign=campaign, status="failed").update(
        error="HTTP 500: boom (gave up after 3 attempts)"
    )
    html = admin_client.get(f"/campaigns/{campaign.public_id}/").content.decode()
    assert "Alpha" in html and "Beta" in html
    assert "3/min" in html  # finished in the last minute
    assert "HTTP 500: boom" in html
    assert "Simulated run" in html
    assert 'hx-trigger="every 2s"' in html


def test_progress_fragment_stops_polling_when_the_run_ends(
    admin_client: Client, campaign: Campaign
) -> None:
    set_states(campaign, "alpha", "succeeded", "succeeded", "succeeded", "succeeded")
    set_states(campaign, "beta", "succeeded", "failed", "cancelled", "succeeded")
    response = admin_client.get(
        f"/campaigns/{campaign.public_id}/", headers={**HTMX, "HX-Target": "progress"}
    )
    html = response.content.decode()
    assert html.lstrip().startswith('<section id="progress"')
    assert "hx-trigger" not in html
    assert "The run has ended" in html


def test_run_page_query_count_is_constant(
    admin_client: Client, campaign: Campaign, django_assert_max_num_queries
) -> None:
    with django_assert_max_num_queries(12):
        admin_client.get(f"/campaigns/{campaign.public_id}/")


def test_cancel_and_retry_buttons(admin_client: Client, campaign: Campaign) -> None:
    url = f"/campaigns/{campaign.public_id}/"
    assert admin_client.post(url, {"cancel": "1"}).status_code == 302
    assert set(campaign.generations.values_list("status", flat=True)) == {"cancelled"}
    admin_client.post(url, {"retry": "1"})
    assert set(campaign.generations.values_list("status", flat=True)) == {"queued"}


def test_launch_button_creates_missing_generations_once(
    admin_client: Client, campaign: Campaign, settings: Any
) -> None:
    settings.CELERY_TASK_DEFAULT_QUEUE = "nobody-listens"
    Generation.objects.filter(campaign=campaign, endpoint__slug="beta").delete()
    admin_client.post(f"/campaigns/{campaign.public_id}/", {"launch": "1"})
    assert campaign.generations.count() == 8
    admin_client.post(f"/campaigns/{campaign.public_id}/", {"launch": "1"})
    assert campaign.generations.count() == 8


def test_generation_detail_shows_request_answer_and_timings(
    admin_client: Client, campaign: Campaign
) -> None:
    generation = campaign.generations.first()
    assert generation is not None
    Generation.objects.filter(pk=generation.pk).update(
        status="succeeded",
        content="答案",
        reasoning="思考",
        ttft_ms=123.4,
        decode_tps=56.7,
        finish_reason="length",
        request={"model": "alpha", "messages": []},
    )
    html = admin_client.get(f"/generations/{generation.public_id}/").content.decode()
    for expected in (
        "答案",
        "思考",
        "123.4 ms",
        "56.7",
        "cut off by the length limit",
        "&#x27;model&#x27;: &#x27;alpha&#x27;",
    ):
        assert expected in html


@pytest.mark.parametrize("persona", ["alice", "nobody"])
def test_only_admins_see_runs(request, persona: str, campaign: Campaign) -> None:
    client = logged_in(request.getfixturevalue(persona))
    generation = campaign.generations.first()
    assert generation is not None
    for url in (
        "/campaigns/",
        f"/campaigns/{campaign.public_id}/",
        f"/generations/{generation.public_id}/",
    ):
        assert client.get(url).status_code == 403, url
    assert client.post(f"/campaigns/{campaign.public_id}/", {"cancel": "1"}).status_code == 403
    assert not campaign.generations.filter(status="cancelled").exists()


def test_campaign_list_shows_status_and_progress(admin_client: Client, campaign: Campaign) -> None:
    set_states(campaign, "alpha", "succeeded", "failed")
    html = admin_client.get("/campaigns/").content.decode()
    assert "Campaign C" in html and "2 / 8" in html and "1 failed" in html


def test_home_lists_campaigns_with_results_links_and_the_list_with_progress(
    admin_client: Client, campaign: Campaign
) -> None:
    run_link = f'href="/campaigns/{campaign.public_id}/"'
    home = admin_client.get("/").content.decode()
    assert run_link in home and f'href="/results/{campaign.public_id}/">Results</a>' in home
    assert "<th>Progress</th>" not in home and "0 / 8" not in home
    listing = admin_client.get("/campaigns/").content.decode()
    assert listing.count(run_link) == 2 and "Run page →</a>" in listing
    assert "<th>Progress</th>" in listing and "0 / 8" in listing
    assert f"/results/{campaign.public_id}/" not in listing


def test_run_page_says_when_nothing_is_running(admin_client: Client, campaign: Campaign) -> None:
    html = admin_client.get(f"/campaigns/{campaign.public_id}/").content.decode()
    assert "Is a Celery worker up?" in html
    set_states(campaign, "alpha", "running")
    html = admin_client.get(f"/campaigns/{campaign.public_id}/").content.decode()
    assert "Is a Celery worker up?" not in html


def test_progress_gives_each_model_its_shares_rate_and_eta(campaign: Campaign) -> None:
    set_states(campaign, "alpha", "succeeded", "failed", error="HTTP 500")
    CampaignModel.objects.filter(endpoint__slug="beta").update(params_override={"top_p": 0.5})

    shown = progress.run_progress(campaign)

    alpha, beta = shown["models"]
    assert (alpha.endpoint.slug, alpha.total, alpha.remaining) == ("alpha", 4, 2)
    assert alpha.counts == {"queued": 2, "running": 0, "succeeded": 1, "failed": 1, "cancelled": 0}
    assert alpha.percent["queued"] == 50.0 and alpha.percent["failed"] == 25.0
    assert (alpha.rate_per_min, alpha.eta_min) == (2, 1.0)
    assert (beta.remaining, beta.rate_per_min, beta.eta_min) == (4, 0, None)
    assert shown["fairness"] == [beta]
    assert [g.error for g in shown["errors"]] == ["HTTP 500"]
    assert shown["active"] and shown["launched"] and not shown["stalled"]


def test_run_page_counts_generations_with_degraded_timings(
    admin_client: Client, campaign: Campaign
) -> None:
    set_states(campaign, "alpha", "succeeded", "succeeded", timing_quality="ok")
    html = admin_client.get(f"/campaigns/{campaign.public_id}/").content.decode()
    assert "timed while" not in html
    set_states(campaign, "beta", "succeeded", "succeeded", timing_quality="degraded")
    set_states(campaign, "beta", "succeeded", timing_quality="ok")  # the first one only

    context = progress.run_progress(campaign)
    assert [model.degraded for model in context["models"]] == [0, 1]
    html = admin_client.get(f"/campaigns/{campaign.public_id}/").content.decode()
    assert "1 generation was timed while its worker fell behind by more than 10 ms" in html


# --- Judges ----------------------------------------------------------------------------------


@pytest.fixture
def judged(campaign: Campaign) -> dict[str, Any]:
    """Campaign `c` with its answers in; judge `gamma` (listed) judged them, `delta` (listed)
    has not started, and `beta`, one of the campaign's own models, judged one answer too."""
    Generation.objects.filter(campaign=campaign).update(status="succeeded", finished_at=None)
    gamma, delta = builders.endpoint("gamma", name="Gamma"), builders.endpoint("delta")
    campaign.judges.set([gamma, delta])
    answers = list(campaign.generations.order_by("pk"))
    states = ["parsed", "parsed", "unparseable", "failed", "running", "queued", "queued"]
    for answer, state in zip(answers, states, strict=False):
        builders.judgement(answer, gamma, status=state, score=7 if state == "parsed" else None)
    Judgement.objects.filter(status="failed").update(error="HTTP 503: judge down")
    beta = ModelEndpoint.objects.get(slug="beta")
    builders.judgement(answers[0], beta, status="parsed", score=4)
    return {"gamma": gamma, "delta": delta, "beta": beta}


def test_run_page_shows_each_judges_progress(
    admin_client: Client, campaign: Campaign, judged: dict[str, Any]
) -> None:
    rows = {row.endpoint.slug: row for row in progress.run_progress(campaign)["judges"]}
    assert list(rows) == ["beta", "delta", "gamma"]
    assert rows["gamma"].counts == {
        "queued": 2,
        "running": 1,
        "parsed": 2,
        "unparseable": 1,
        "failed": 1,
        "cancelled": 0,
    }
    assert rows["gamma"].total == 7 and rows["gamma"].percent["parsed"] == pytest.approx(200 / 7)
    assert rows["delta"].total == 0 and rows["beta"].counts["parsed"] == 1

    html = admin_client.get(f"/campaigns/{campaign.public_id}/").content.decode()
    assert 'id="judges"' in html and "Gamma" in html
    assert "2 parsed, 1 unparseable, 1 failed, 1 running of 7" in html
    assert "judge gamma · QA-3: HTTP 503: judge down" in html
    assert 'hx-trigger="every 2s"' in html  # judgements still in flight


def test_progress_polls_while_only_judgements_are_in_flight(
    admin_client: Client, campaign: Campaign, judged: dict[str, Any]
) -> None:
    assert not campaign.generations.in_flight().exists()
    html = admin_client.get(
        f"/campaigns/{campaign.public_id}/", headers={**HTMX, "HX-Target": "progress"}
    ).content.decode()
    assert 'hx-trigger="every 2s"' in html
    Judgement.objects.filter(status__in=["queued", "running"]).update(status="parsed", score=5)
    html = admin_client.get(
        f"/campaigns/{campaign.public_id}/", headers={**HTMX, "HX-Target": "progress"}
    ).content.decode()
    assert "hx-trigger" not in html and "The run has ended" in html


def test_cancel_and_retry_buttons_cover_judgements(
    admin_client: Client, campaign: Campaign, judged: dict[str, Any], settings: Any
) -> None:
    settings.CELERY_TASK_DEFAULT_QUEUE = "nobody-listens"
    url = f"/campaigns/{campaign.public_id}/"
    judgements = Judgement.objects.filter(campaign=campaign)
    response = admin_client.post(url, {"cancel": "1"}, follow=True)
    assert "Cancelled 3 generations and judgements." in response.content.decode()
    assert sorted(judgements.values_list("status", flat=True)) == sorted(
        [
            "parsed",
            "parsed",
            "parsed",
            "unparseable",
            "failed",
            "cancelled",
            "cancelled",
            "cancelled",
        ]
    )
    response = admin_client.post(url, {"retry": "1"}, follow=True)
    assert "Queued 4 generations and judgements again." in response.content.decode()
    assert judgements.filter(status="queued").count() == 4
    assert judgements.filter(status__in=["parsed", "unparseable"]).count() == 4  # never asked again


def test_judge_progress_is_for_admins_only(
    alice_client: Client, campaign: Campaign, judged: dict[str, Any]
) -> None:
    assert alice_client.get(f"/campaigns/{campaign.public_id}/").status_code == 403
    assert (
        alice_client.post(f"/campaigns/{campaign.public_id}/", {"cancel": "1"}).status_code == 403
    )
    assert not Judgement.objects.filter(status="cancelled").exists()


def test_run_page_with_judges_query_count_is_constant(
    admin_client: Client, campaign: Campaign, judged: dict[str, Any], django_assert_max_num_queries
) -> None:
    with django_assert_max_num_queries(15):
        admin_client.get(f"/campaigns/{campaign.public_id}/")
