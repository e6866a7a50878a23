"""The judges page (DESIGN §10): each LLM judge's own matchup table, its agreement with the
people per task type, the largest disagreements, kept apart from the human figures and from
reviewers."""

from __future__ import annotations

import csv
import io
import re
import threading
import time
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.cache import cache
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from grading import assignment, comparison, judge_stats, stats
from grading.models import FigureBuild
from inference.models import Campaign, Generation, JudgementStatus, ModelEndpoint
from tests import builders
from tests.builders import new_judgement
from tests.conftest import logged_in
from tests.grading.test_review_pages import assert_blind, build_study, first_assignment

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    cache.clear()


def judges_url(campaign: Campaign) -> str:
    return reverse("campaign-judges", kwargs={"public_id": campaign.public_id})


def disagreements_url(campaign: Campaign, judge: str) -> str:
    return reverse("judge-disagreements", kwargs={"public_id": campaign.public_id, "judge": judge})


def csv_of(client: Client, url: str, **query: str) -> list[dict[str, str]]:
    response = client.get(url, query)
    assert response.status_code == 200, response.content[:500]
    return list(csv.DictReader(io.StringIO(response.getvalue().decode())))


def number(text: str) -> float | None:
    return float(text) if text else None


# --- A fixed study ---------------------------------------------------------------------------


@pytest.fixture
def judged() -> dict[str, Any]:
    """Campaign `judged`: models ma, mb, mc over 6 AR items and 3 CK items, scored by r1 and
    r2; judges `jx` (an outside model) and `ma` (a model of the campaign judging itself)."""
    ma, mb, mc = (builders.endpoint(s) for s in ("ma", "mb", "mc"))
    jx = builders.endpoint("jx", name="Judge X")
    suite = builders.suite("s", ["AR"] * 6 + ["CK"] * 3)
    campaign = builders.campaign("judged", suite, [ma, mb, mc])
    campaign.judges.set([jx, ma])
    r1, r2 = builders.reviewer("r1"), builders.reviewer("r2")
    answers: dict[tuple[str, str], Generation] = {}
    for n, item in enumerate(suite.items.order_by("external_id")):
        for k, model in enumerate((ma, mb, mc)):
            answer = builders.generation(campaign, item, model)
            answers[item.external_id, model.slug] = answer
            builders.score(answer, r1, (n + 3 * k) % 11)
            if n % 2 == 0:
                builders.score(answer, r2, (n + 2 * k + 1) % 11)
            new_judgement(answer, jx, score=(n * 2 + k) % 11, rationale=f"jx on {n}/{k}")
            new_judgement(answer, ma, score=min(10, (n + 3 * k) % 11 + 1))
    builders.scores_written(campaign)
    return {"campaign": campaign, "answers": answers, "models": (ma, mb, mc), "jx": jx}


def test_judges_page_shows_each_judge_table_and_agreement(
    judged: dict[str, Any], admin: User
) -> None:
    client = logged_in(admin)
    response = client.get(judges_url(judged["campaign"]))
    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="judge-jx"' in html and 'id="judge-ma"' in html
    # A model judging itself carries the fairness note; the outside judge does not.
    section_ma = html[html.index('id="judge-ma"') :]
    section_jx = html[html.index('id="judge-jx"') : html.index('id="judge-ma"')]
    assert "judges-itself" in section_ma.split("</section>")[0]
    assert "judges-itself" not in section_jx
    assert html.count("judge-table") >= 4  # two matchups (ma vs mb, ma vs mc) per judge
    assert 'id="chart-judge-jx"' in html
    # The results page links to the judges for admins.
    results = client.get(reverse("campaign-results", args=[judged["campaign"].public_id]))
    assert 'id="judges-link"' in results.content.decode()


def test_judge_table_is_the_human_table_computed_from_judge_scores(
    judged: dict[str, Any], admin: User
) -> None:
    campaign = judged["campaign"]
    rows = csv_of(logged_in(admin), judges_url(campaign), csv="table", judge="jx")
    assert list(rows[0]) == list(comparison.TABLE_HEADER)
    jx = judged["jx"]
    by_model: dict[str, dict[str, dict[int, list[int]]]] = {}
    for j in jx.judgements.select_related("generation__item__task_type", "generation__endpoint"):
        g = j.generation
        cell = by_model.setdefault(g.item.task_type.code, {}).setdefault(g.endpoint.slug, {})
        cell.setdefault(g.item_id, []).append(j.score)
    for row in rows:
        a = by_model[row["task_type"]][row["model_a"]]
        b = by_model[row["task_type"]][row["model_b"]]
        summary = stats.summarise(a)
        assert float(row["mean_a"]) == pytest.approx(summary.mean, abs=6e-4)
        assert float(row["ci_low_a"]) == pytest.approx(summary.ci_low, abs=6e-4)
        diff = stats.paired_difference(a, b)
        assert diff is not None
        assert float(row["difference"]) == pytest.approx(diff.diff, abs=6e-4)
        assert float(row["p_wilcoxon"]) == pytest.approx(diff.p_value, abs=6e-4)
    assert {(r["model_a"], r["model_b"]) for r in rows} == {("ma", "mb"), ("ma", "mc")}


def test_disagreements_are_listed_largest_first_for_admins(
    judged: dict[str, Any], admin: User
) -> None:
    response = logged_in(admin).get(disagreements_url(judged["campaign"], "jx"))
    assert response.status_code == 200
    found = judge_stats.results(judged["campaign"]).results.report("jx")
    assert found is not None
    gaps = [abs(d.gap) for d in found.disagreements]
    assert gaps == sorted(gaps, reverse=True) and gaps[0] > 0
    top = found.disagreements[0]
    html = response.content.decode()
    assert top.generation in html and top.rationale in html
    assert f'<td class="model">{top.model}</td>' in html


# --- Kept from reviewers ---------------------------------------------------------------------


def test_reviewer_never_reaches_judges_or_disagreements(
    judged: dict[str, Any], alice: User
) -> None:
    campaign = judged["campaign"]
    assignment.open_results(campaign)
    client = logged_in(alice)
    for url in (
        judges_url(campaign),
        judges_url(campaign) + "?csv=agreement&judge=jx",
        disagreements_url(campaign, "jx"),
    ):
        assert client.get(url).status_code == 403, url
    results = client.get(reverse("campaign-results", args=[campaign.public_id]))
    assert results.status_code == 200
    html = results.content.decode()
    assert "judges-link" not in html and "Judge X" not in html and "jx on" not in html


def test_review_pages_stay_blind_with_judgements(alice: User) -> None:
    campaign = build_study()
    judge = ModelEndpoint.objects.get(slug="ernie-4.5-0.3b")
    campaign.judges.add(judge)
    for answer in campaign.generations.all():
        new_judgement(answer, judge, score=9, rationale="ERNIE-4.5-0.3B-Paddle says 987")
    client = logged_in(alice)
    assert_blind(client.get("/review/"))
    url, _ = first_assignment(client)
    assert_blind(client.get(url, headers={"HX-Request": "true"}))


# --- Edge cases ------------------------------------------------------------------------------


def test_a_campaign_without_judges_says_so(admin: User) -> None:
    models = [builders.endpoint("ma"), builders.endpoint("mb")]
    campaign = builders.campaign("plain", builders.suite("s", ["AR"]), models)
    response = logged_in(admin).get(judges_url(campaign))
    assert response.status_code == 200
    assert 'id="no-judges"' in response.content.decode()


def test_a_judge_listed_but_not_run_yet_says_so(judged: dict[str, Any], admin: User) -> None:
    campaign = judged["campaign"]
    campaign.judges.add(builders.endpoint("later"))
    html = logged_in(admin).get(judges_url(campaign)).content.decode()
    later = html[html.index('id="judge-later"') :].split("</section>")[0]
    assert "no-judgements" in later


def test_a_judge_unparseable_everywhere_is_counted_not_scored(admin: User) -> None:
    models = [builders.endpoint("ma"), builders.endpoint("mb")]
    judge = builders.endpoint("mute")
    campaign = builders.campaign("c", builders.suite("s", ["AR", "AR", "CK"]), models)
    campaign.judges.add(judge)
    r1 = builders.reviewer("r1")
    for item in campaign.suite.items.all():
        for model in models:
            answer = builders.generation(campaign, item, model)
            builders.score(answer, r1, 5)
            new_judgement(answer, judge, status=JudgementStatus.UNPARSEABLE, raw_output="hmm")
    builders.scores_written(campaign)
    client = logged_in(admin)
    html = client.get(judges_url(campaign)).content.decode()
    assert "no-scores" in html
    rows = csv_of(client, judges_url(campaign), csv="agreement", judge="mute")
    assert {r["task_type"]: (r["unparseable"], r["answers"], r["alpha"]) for r in rows} == {
        "AR": ("4", "0", ""),
        "CK": ("2", "0", ""),
    }
    assert csv_of(client, judges_url(campaign), csv="table", judge="mute") == []
    assert csv_of(client, judges_url(campaign), csv="chart", judge="mute") == []


def test_a_judge_with_a_single_answer(admin: User) -> None:
    models = [builders.endpoint("ma"), builders.endpoint("mb")]
    judge = builders.endpoint("lone")
    campaign = builders.campaign("c", builders.suite("s", ["AR", "AR"]), models)
    campaign.judges.add(judge)
    r1 = builders.reviewer("r1")
    answers = [
        builders.generation(campaign, item, model)
        for item in campaign.suite.items.all()
        for model in models
    ]
    for answer in answers:
        builders.score(answer, r1, 6)
    builders.scores_written(campaign)
    new_judgement(answers[0], judge, score=9, rationale="very good")
    client = logged_in(admin)
    assert client.get(judges_url(campaign)).status_code == 200
    [row] = csv_of(client, judges_url(campaign), csv="agreement", judge="lone")
    assert row["answers"] == "1" and row["alpha"] == "" and row["spearman"] == ""
    assert row["offset"] == row["offset_ci_low"] == row["offset_ci_high"] == "3"
    assert row["cannot_stand_in"] == "1" and row["reason"] == judge_stats.TOO_FEW
    table = csv_of(client, judges_url(campaign), csv="table", judge="lone")
    assert [(r["mean_a"], r["mean_b"], r["difference"]) for r in table] == [("9", "", "")]
    assert client.get(disagreements_url(campaign, "lone")).status_code == 200


def test_unknown_judge_or_csv_is_404(judged: dict[str, Any], admin: User) -> None:
    client = logged_in(admin)
    campaign = judged["campaign"]
    for query in ({"csv": "agreement", "judge": "nope"}, {"csv": "nope", "judge": "jx"}):
        assert client.get(judges_url(campaign), query).status_code == 404
    assert client.get(disagreements_url(campaign, "nope")).status_code == 404


def test_task_types_where_the_judge_cannot_stand_in_come_first(admin: User) -> None:
    """AR: the judge follows the people; CK: it contradicts them; TC: one answer, no alpha."""
    models = [builders.endpoint("ma"), builders.endpoint("mb")]
    judge = builders.endpoint("jj")
    campaign = builders.campaign("c", builders.suite("s", ["AR"] * 4 + ["CK"] * 4 + ["TC"]), models)
    campaign.judges.add(judge)
    r1, r2 = builders.reviewer("r1"), builders.reviewer("r2")
    for n, item in enumerate(campaign.suite.items.select_related("task_type")):
        code = item.task_type.code
        for k, model in enumerate(models if code != "TC" else models[:1]):
            answer = builders.generation(campaign, item, model)
            value = (2 * n + 5 * k) % 11
            builders.score(answer, r1, value)
            builders.score(answer, r2, min(10, value + 1))
            new_judgement(answer, judge, score=value if code == "AR" else 10 - value)
    builders.scores_written(campaign)
    rows = csv_of(logged_in(admin), judges_url(campaign), csv="agreement", judge="jj")
    assert [r["task_type"] for r in rows] == ["TC", "CK", "AR"]
    assert [r["cannot_stand_in"] for r in rows] == ["1", "1", "0"]
    assert float(rows[2]["alpha"]) > 0.9 > float(rows[1]["alpha"])
    assert float(rows[2]["spearman"]) > 0.9 and float(rows[1]["spearman"]) < -0.9
    # On the page: no verdict where alpha cannot be computed, a warning where it is low.
    html = logged_in(admin).get(judges_url(campaign)).content.decode()
    verdicts = re.findall(r'<td class="stand-in">(?:<span class="warning">([^<]*)</span>)?', html)
    assert verdicts == ["no verdict yet", "cannot stand in", ""]


def test_prompt_version_latest_by_default_or_chosen(judged: dict[str, Any], admin: User) -> None:
    campaign, jx = judged["campaign"], judged["jx"]
    for answer in list(judged["answers"].values())[:4]:
        new_judgement(answer, jx, score=0, prompt_version="judge-v2")
    client = logged_in(admin)
    latest = csv_of(client, judges_url(campaign), csv="agreement", judge="jx")
    assert {r["prompt_version"] for r in latest} == {"judge-v2"}
    assert sum(int(r["judged"]) for r in latest) == 4
    chosen = csv_of(
        client, judges_url(campaign), csv="agreement", judge="jx", prompt_version="judge-v1"
    )
    assert sum(int(r["judged"]) for r in chosen) == 27
    html = client.get(judges_url(campaign), {"prompt_version": "judge-v9"}).content.decode()
    assert html.count("no-judgements") == 2


# --- The cache ---------------------------------------------------------------------------


def judged_count(client: Client, campaign: Campaign) -> int:
    rows = csv_of(client, judges_url(campaign), csv="agreement", judge="jx")
    return sum(int(r["judged"]) for r in rows)


def test_after_a_new_judgement_the_page_shows_its_figures_as_updating(
    judged: dict[str, Any], admin: User
) -> None:
    campaign, jx = judged["campaign"], judged["jx"]
    client = logged_in(admin)
    assert "freshness" not in client.get(judges_url(campaign)).content.decode()
    one = jx.judgements.first()
    assert one is not None
    one.delete()
    html = client.get(judges_url(campaign)).content.decode()
    assert 'id="freshness"' in html and "updating" in html
    assert judged_count(client, campaign) == 27  # the previous figures, until the rebuild
    poll = {"HX-Request": "true", "HX-Target": "judges", "HX-Trigger": "freshness"}
    assert client.get(judges_url(campaign), headers=poll).status_code == 204
    # One rebuild per scope: the claim is taken once, whoever asks.
    assert FigureBuild.objects.filter(key=judge_stats.scope_key(campaign, "")).count() == 1


def wait_until_fresh(client: Client, campaign: Campaign, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if 'id="freshness"' not in client.get(judges_url(campaign)).content.decode():
            for thread in threading.enumerate():
                if thread.name.startswith(judge_stats.THREAD_NAME):
                    thread.join(seconds)
            return
        time.sleep(0.1)
    raise AssertionError("the judge figures stayed stale")


@pytest.mark.django_db(transaction=True)
def test_a_finished_judgement_shows_once_its_rebuild_is_done(
    judged: dict[str, Any], admin: User
) -> None:
    campaign, jx = judged["campaign"], judged["jx"]
    client = logged_in(admin)
    assert judged_count(client, campaign) == 27
    one = jx.judgements.first()
    assert one is not None
    one.delete()
    wait_until_fresh(client, campaign)
    assert judged_count(client, campaign) == 26
    running = new_judgement(one.generation, jx, status=JudgementStatus.RUNNING)
    wait_until_fresh(client, campaign)
    assert judged_count(client, campaign) == 26
    # The worker finishes it: a status, a score and a finish time, as the dispatch writes them.
    running.status, running.score = JudgementStatus.PARSED, 4
    running.finished_at = one.finished_at
    running.save()
    wait_until_fresh(client, campaign)
    assert judged_count(client, campaign) == 27
    assert not FigureBuild.objects.exists()


def test_warm_page_queries_do_not_grow_with_the_data(judged: dict[str, Any], admin: User) -> None:
    client = logged_in(admin)
    campaign = judged["campaign"]

    def warm_queries() -> int:
        client.get(judges_url(campaign))
        with CaptureQueriesContext(connection) as captured:
            assert client.get(judges_url(campaign)).status_code == 200
        return len(captured)

    before = warm_queries()
    more = builders.suite("more", ["CK"] * 5 + ["TC"] * 5)
    ma, mb, mc = judged["models"]
    r3 = builders.reviewer("r3")
    for item in more.items.all():
        for model in (ma, mb, mc):
            answer = builders.generation(campaign, item, model)
            builders.score(answer, r3, 4)
            new_judgement(answer, judged["jx"], score=7)
    builders.scores_written(campaign)
    cache.clear()
    assert warm_queries() == before


def test_a_failed_rebuild_keeps_the_previous_figures_and_cools_down(
    judged: dict[str, Any], admin: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    campaign, jx = judged["campaign"], judged["jx"]
    client = logged_in(admin)
    assert judged_count(client, campaign) == 27
    one = jx.judgements.first()
    assert one is not None
    one.delete()
    assert 'id="freshness"' in client.get(judges_url(campaign)).content.decode()
    scope = judge_stats.scope_key(campaign, "")
    claim = FigureBuild.objects.get(key=scope)

    def broken(*args: Any, **kwargs: Any) -> judge_stats.JudgeResults:
        raise RuntimeError("disk full")

    monkeypatch.setattr(judge_stats, "build", broken)
    assert judge_stats.rebuild(campaign.pk, "", scope, claim.token) == "failed"
    assert judge_stats.rebuild(campaign.pk, "", scope, claim.token) == "skipped"
    claim.refresh_from_db()
    assert claim.error == "RuntimeError: disk full" and claim.expires_at > timezone.now()
    # The previous figures stay, marked stale; no second claim is taken while it cools down.
    assert judged_count(client, campaign) == 27
    assert 'id="freshness"' in client.get(judges_url(campaign)).content.decode()
    assert FigureBuild.objects.filter(key=scope).count() == 1
