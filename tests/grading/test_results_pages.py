"""The comparison pages: correct figures on fixed data, the reference study's tables reproduced,
filters through htmx, caching whose figures catch up with new scores, and who may see what."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Sequence
from html import unescape
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.cache import cache
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from grading import freshness
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
from tests.conftest import REPO, logged_in

SEED = REPO / "fixtures" / "seed"

# Item scores of the fixed study: task type -> model -> one list of reviewer scores per item.
# QA: 6 items, two reviewers each; TC: 2 items (too few), one reviewer.
FIXED: dict[str, dict[str, list[list[int]]]] = {
    "QA": {
        "alpha-m": [[8, 6], [9, 9], [7, 7], [10, 8], [6, 6], [8, 8]],
        # Item differences A − B are 1, 2, 3, 4, 5, 5.5: all positive, no ties.
        "beta-m": [[6, 6], [7, 7], [4, 4], [5, 5], [1, 1], [2, 3]],
    },
    "TC": {
        "alpha-m": [[2], [4]],
        "beta-m": [[5], [8]],
    },
}


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def cell_mean(code: str, model: str) -> float:
    return mean([mean(item) for item in FIXED[code][model]])


def build_fixed_study(*, override: dict[str, Any] | None = None) -> Campaign:
    suite = Suite.objects.create(name="fixed")
    campaign = Campaign.objects.create(
        slug="fixed", name="Fixed study", matchup="small", suite=suite, status="finished",
        params={"temperature": 0.7},
    )  # fmt: skip
    ReviewSettings.objects.create(campaign=campaign, reviewers_per_output=2)
    reviewers = [User.objects.get_or_create(username=name)[0] for name in ("rev-one", "rev-two")]
    rubric = Rubric.objects.current()
    now = timezone.now()
    endpoints = {}
    for position, slug in enumerate(("alpha-m", "beta-m")):
        endpoints[slug] = ModelEndpoint.objects.create(
            slug=slug, name=slug.title(), model=slug, base_url="http://127.0.0.1:9/v1"
        )
        CampaignModel.objects.create(
            campaign=campaign,
            endpoint=endpoints[slug],
            position=position,
            params_override=(override or {}) if slug == "beta-m" else {},
        )
    for code, by_model in FIXED.items():
        task_type = TaskType.objects.get(code=code)
        count = len(next(iter(by_model.values())))
        items = [
            TaskItem.objects.create(
                suite=suite,
                external_id=f"{code}-{n}",
                task_type=task_type,
                prompt=f"p {code} {n}",
                content_hash=f"{code}{n}",
            )
            for n in range(count)
        ]
        for slug, item_scores in by_model.items():
            for n, (item, values) in enumerate(zip(items, item_scores, strict=True)):
                generation = Generation.objects.create(
                    campaign=campaign, item=item, endpoint=endpoints[slug], status="succeeded",
                    content=f"answer of {slug} to {item.external_id}", ttft_ms=100.0 + n,
                    decode_tps=50.0 if slug == "alpha-m" else 80.0, e2e_tps=40.0,
                    response_time_ms=1000.0, completion_tokens=100,
                    finish_reason="length" if n == 0 else "stop",
                )  # fmt: skip
                for reviewer, value in zip(reviewers, values, strict=False):
                    Score.objects.create(
                        generation=generation, reviewer=reviewer, score=value, position=0,
                        rubric=rubric, scored_at=now,
                    )  # fmt: skip
    # Scores written here bypass the review queue: say they changed, as its writers do.
    ReviewSettings.objects.scores_changed([campaign.pk])
    # One failed generation: counted apart, never in the speed figures.
    Generation.objects.create(
        campaign=campaign, item=TaskItem.objects.get(external_id="QA-0"),
        endpoint=endpoints["alpha-m"], sample=1, status="failed", ttft_ms=99999.0,
    )  # fmt: skip
    return campaign


@pytest.fixture
def fixed(db: None) -> Campaign:
    cache.clear()
    return build_fixed_study()


def table_rows(html: str) -> dict[str, dict[str, str]]:
    """The first matchup table's cells by task type: mean-a, mean-b, diff, p."""
    rows: dict[str, dict[str, str]] = {}
    for code, body in re.findall(r'<tr[^>]*data-task-type="(\w+)">(.*?)</tr>', html, re.S):
        cells = re.findall(r'<td class="num([^"]*)">(.*?)</td>', body, re.S)
        text = [unescape(re.sub(r"<[^>]+>", "", value)).strip() for _, value in cells]
        rows.setdefault(code, dict(zip(("a", "b", "diff", "ci", "p", "items"), text, strict=True)))
    return rows


def figure(html: str, chart: str) -> dict[str, Any]:
    match = re.search(rf'<script id="figure-{chart}" type="application/json">(.*?)</script>', html)
    assert match, f"no figure {chart}"
    return json.loads(match.group(1))


def results_url(campaign: Campaign) -> str:
    return reverse("campaign-results", args=[campaign.public_id])


def test_matchup_table_shows_hand_computed_means_and_differences(
    fixed: Campaign, admin: User
) -> None:
    html = logged_in(admin).get(results_url(fixed)).content.decode()
    rows = table_rows(html)
    assert rows["QA"]["a"] == f"{cell_mean('QA', 'alpha-m'):.1f}" == "7.7"
    assert rows["QA"]["b"] == f"{cell_mean('QA', 'beta-m'):.1f}" == "4.2"
    assert rows["QA"]["diff"] == "+3.4"
    assert rows["TC"]["a"] == "3.0" and rows["TC"]["b"] == "6.5"
    assert rows["TC"]["diff"] == "−3.5"
    assert rows["QA"]["items"] == "6 / 6"
    # QA: every item favours A (6 of 6, no ties): the two-sided exact Wilcoxon p is 2/2^6.
    # TC: both items favour B: p = 2/2^2. Holm over the two task types doubles the smaller p
    # and keeps the larger: 0.0625 and 0.5.
    assert rows["QA"]["p"] == f"{2 * 2 / 2**6:.3f}" == "0.062"
    assert rows["TC"]["p"] == "0.500"
    # The mean over task types, as the reference study averages.
    overall_a = mean([cell_mean("QA", "alpha-m"), cell_mean("TC", "alpha-m")])
    assert f'<td class="num">{overall_a:.1f}</td>' in html


def test_figures_carry_the_same_numbers_as_the_table(fixed: Campaign, admin: User) -> None:
    html = logged_in(admin).get(results_url(fixed)).content.decode()
    bars = figure(html, "bars")
    by_model = {trace["name"]: trace["y"] for trace in bars["data"]}
    assert by_model["alpha-m"] == [round(cell_mean("QA", "alpha-m"), 2), 3.0]
    assert by_model["beta-m"] == [round(cell_mean("QA", "beta-m"), 2), 6.5]
    heat = figure(html, "heatmap")["data"][0]
    assert heat["x"] == ["alpha-m", "beta-m"]
    assert heat["z"][1] == [3.0, 6.5]
    histogram = {t["name"]: t["y"] for t in figure(html, "histogram")["data"]}
    assert sum(histogram["alpha-m"]) == 6 * 2 + 2
    assert histogram["alpha-m"][8] == 4  # the 8s given to alpha-m
    for chart in ("box", "radar", "ttft", "tps", "scatter"):
        assert figure(html, chart)["data"], chart


def test_speed_ignores_failures_and_reports_cut_off_answers(fixed: Campaign, admin: User) -> None:
    html = logged_in(admin).get(results_url(fixed)).content.decode()
    ttft = {t["name"]: t["y"] for t in figure(html, "ttft")["data"]}
    # alpha-m's succeeded TTFTs are 100..105 (QA) and 100..101 (TC); the failed 99999 is left out.
    assert max(ttft["p90"]) < 200
    row = re.search(r'<tr data-model="alpha-m">(.*?)</tr>', html, re.S)
    assert row
    cells = [
        re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", row[1], re.S)
    ]
    assert cells[-4] == "25%"  # 2 of 8 answers were cut off by length
    assert cells[-3] == "1"  # one failed generation, counted apart
    assert cells[-2] == "0"  # no timing degraded
    assert cells[-1] == "0"  # every succeeded answer has timings


def model_cells(html: str, model: str) -> list[str]:
    row = re.search(rf'<tr data-model="{model}">(.*?)</tr>', html, re.S)
    assert row
    return [
        re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", row[1], re.S)
    ]


def test_degraded_timings_stay_out_of_speed_figures_and_are_counted(
    fixed: Campaign, admin: User
) -> None:
    before = model_cells(logged_in(admin).get(results_url(fixed)).content.decode(), "alpha-m")
    Generation.objects.create(
        campaign=fixed, item=TaskItem.objects.get(external_id="QA-1"),
        endpoint=ModelEndpoint.objects.get(slug="alpha-m"), sample=2, status="succeeded",
        ttft_ms=99999.0, decode_tps=1.0, e2e_tps=1.0, response_time_ms=99999.0,
        completion_tokens=100, finish_reason="stop", timing_quality="degraded",
        scheduling_lag_ms=250.0,
    )  # fmt: skip
    cache.clear()
    html = logged_in(admin).get(results_url(fixed)).content.decode()
    after = model_cells(html, "alpha-m")
    # TTFT, decode and e2e tokens/s, response time: as without the degraded generation.
    assert after[4:8] == before[4:8]
    ttft = {t["name"]: t["y"] for t in figure(html, "ttft")["data"]}
    assert max(ttft["p90"]) < 200
    assert after[-2] == "1"  # counted apart, beside the failed one
    assert after[-3] == "1"
    assert after[-1] == "0"  # it has timings: not counted as without
    assert "timed while the worker fell behind" in html


def test_chart_numbers_download_as_csv(fixed: Campaign, admin: User) -> None:
    client = logged_in(admin)
    response = client.get(results_url(fixed), {"csv": "bars"})
    assert response["Content-Type"] == "text/csv"
    lines = response.getvalue().decode().splitlines()
    assert lines[0] == "task_type,model,items,scores,mean,ci_low,ci_high"
    assert lines[1].startswith("QA,alpha-m,6,12,7.667,")
    table = client.get(results_url(fixed), {"csv": "table"}).getvalue()
    assert b"fixed,small,QA,alpha-m,beta-m,6,6,7.667,4.25," in table
    assert client.get(results_url(fixed), {"csv": "nonsense"}).status_code == 404


def test_filters_apply_through_htmx_without_a_full_page(fixed: Campaign, admin: User) -> None:
    response = logged_in(admin).get(
        results_url(fixed), {"task_type": "TC"}, HTTP_HX_REQUEST="true", HTTP_HX_TARGET="results"
    )
    html = response.content.decode()
    assert "<html" not in html and 'id="results"' in html
    assert set(table_rows(html)) == {"TC"}
    # With one task type left, Holm has nothing to correct: TC's p stays 0.5.
    assert table_rows(html)["TC"]["p"] == "0.500"


def test_reviewer_filter_recomputes_from_that_reviewers_scores(
    fixed: Campaign, admin: User
) -> None:
    html = logged_in(admin).get(results_url(fixed), {"reviewer": "rev-two"}).content.decode()
    rows = table_rows(html)
    second = mean([item[1] for item in FIXED["QA"]["alpha-m"]])
    assert rows["QA"]["a"] == f"{second:.1f}"
    assert "TC" not in rows  # rev-two scored no TC item


def test_few_items_and_fairness_are_warned_about(db: None, admin: User) -> None:
    cache.clear()
    campaign = build_fixed_study(override={"temperature": 1.0})
    html = logged_in(admin).get(results_url(campaign)).content.decode()
    assert 'id="few-items"' in html and "TC/alpha-m (2)" in html
    assert "temperature: alpha-m=0.7, beta-m=1.0" in html


def rebuild_in_threads() -> None:
    """No worker answers here: rebuilds start at once in a thread of this process."""
    cache.set(freshness.WORKER_KEY, "", 600)


def join_rebuild_threads(seconds: float = 60) -> None:
    for thread in threading.enumerate():
        if thread.name.startswith(freshness.THREAD_NAME):
            thread.join(seconds)
            assert not thread.is_alive(), "a rebuild thread is still running"


def wait_until_fresh(client: Client, url: str, seconds: float = 60, **params: Any) -> str:
    """Reload the page, as its status line's poll does, until its figures are no longer stale."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        html = client.get(url, params).content.decode()
        if 'id="freshness"' not in html:
            join_rebuild_threads()
            return html
        time.sleep(0.1)
    raise AssertionError(f"the figures of {url} stayed stale")


@pytest.mark.django_db(transaction=True)
def test_a_new_score_shows_once_its_rebuild_is_done(
    fixed: Campaign, admin: User, tmp_path: Path
) -> None:
    rebuild_in_threads()
    client = logged_in(admin)
    assert table_rows(client.get(results_url(fixed)).content.decode())["TC"]["a"] == "3.0"
    # A score arrives through import_scores (submitting in the review UI bumps the same stamp).
    late = tmp_path / "late.csv"
    late.write_text(
        "campaign,task_type,item_id,model,reviewer,score\nfixed,TC,TC-0,alpha-m,late,10\n"
    )
    call_command("import_scores", str(late), stdout=StringIO())
    # The next load shows the previous figures, marked, while they are rebuilt.
    stale = client.get(results_url(fixed)).content.decode()
    assert table_rows(stale)["TC"]["a"] == "3.0" and "updating" in stale
    # TC-0 is now (2 + 10) / 2 = 6, TC-1 still 4: the cell is 5.0.
    assert table_rows(wait_until_fresh(client, results_url(fixed)))["TC"]["a"] == "5.0"


@pytest.mark.django_db(transaction=True)
def test_the_page_costs_the_same_queries_however_much_data(fixed: Campaign, admin: User) -> None:
    rebuild_in_threads()
    client = logged_in(admin)
    client.get(results_url(fixed))  # warm the cache
    with CaptureQueriesContext(connection) as small:
        client.get(results_url(fixed))
    more = Campaign.objects.get(pk=fixed.pk)
    for generation in Generation.objects.filter(campaign=more, status="succeeded"):
        for n in range(3):
            Score.objects.create(
                generation=generation, reviewer=User.objects.get_or_create(username=f"x{n}")[0],
                score=5, position=0, rubric=Rubric.objects.current(), scored_at=timezone.now(),
            )  # fmt: skip
    ReviewSettings.objects.scores_changed([fixed.pk])
    wait_until_fresh(client, results_url(fixed))
    with CaptureQueriesContext(connection) as large:
        client.get(results_url(fixed))
    assert len(large) == len(small)


def test_reviewers_see_results_only_once_opened_and_never_other_reviewers(
    fixed: Campaign, admin: User, alice: User, nobody: User
) -> None:
    url = results_url(fixed)
    # Not opened: to a reviewer the page does not exist; someone with no role is refused.
    assert logged_in(alice).get(url).status_code == 404
    assert logged_in(nobody).get(url).status_code == 403
    visibility = reverse("results-visibility", args=[fixed.public_id])
    assert logged_in(alice).post(visibility, {"open": "1"}).status_code == 403
    assert logged_in(alice).post(url, {"open": "1"}).status_code == 405
    response = logged_in(admin).post(visibility, {"open": "1"})
    assert response.status_code == 302
    html = logged_in(alice).get(url).content.decode()
    assert table_rows(html)["QA"]["a"] == "7.7"
    assert "rev-one" not in html and "rev-two" not in html
    assert 'name="reviewer"' not in html
    assert reverse("results-items") not in html
    # The reviewer filter is for admins: a reviewer asking for it gets everyone's figures.
    filtered = logged_in(alice).get(url, {"reviewer": "rev-two"}).content.decode()
    assert table_rows(filtered)["QA"]["a"] == "7.7"
    assert logged_in(alice).get(reverse("results-items"), {"task_type": "QA"}).status_code == 403
    overview = logged_in(alice).get(reverse("results")).content.decode()
    assert "Fixed study" in overview
    assert logged_in(alice).post(visibility, {"close": "1"}).status_code == 403
    logged_in(admin).post(visibility, {"close": "1"})
    assert logged_in(alice).get(url).status_code == 404


def test_drill_down_lists_the_items_behind_a_cell(fixed: Campaign, admin: User) -> None:
    response = logged_in(admin).get(
        reverse("results-items"),
        {"campaign": fixed.public_id, "task_type": "TC", "model": "alpha-m"},
    )
    html = response.content.decode()
    assert re.findall(r'data-item="([^"]+)"', html) == ["TC-0", "TC-1"]
    assert "answer of alpha-m to TC-0" in html and "answer of beta-m to TC-0" in html
    assert "rev-one: <strong>2</strong>" in html


def test_overview_reproduces_the_reference_studys_published_tables(db: None, admin: User) -> None:
    """Scores rebuilt from the published tables, imported, give back every mean and difference."""
    cache.clear()
    call_command("import_scores", str(SEED / "seed-scores.csv"), stdout=StringIO())
    published = json.loads((SEED / "published.json").read_text(encoding="utf-8"))
    html = logged_in(admin).get(reverse("results")).content.decode()
    tables = re.findall(
        r'<table class="table results-table" data-matchup="([^"]+)">(.*?)</table>', html, re.S
    )
    by_campaign = {slug: table_rows(body) for slug, body in tables}
    checked = 0
    for matchup in ("small", "medium", "vision"):
        expected = published[matchup]
        rows = by_campaign[expected["campaign"]]
        assert set(rows) == set(expected["rows"])
        for code, (a, b) in expected["rows"].items():
            assert (rows[code]["a"], rows[code]["b"]) == (f"{a:.1f}", f"{b:.1f}"), code
            diff = rows[code]["diff"].replace("−", "-")
            assert abs(float(diff) - (a - b)) < 0.051, code
            published_diff = expected.get("differences", {}).get(code)
            if published_diff is not None:
                assert abs(float(diff) - published_diff) < 0.051, code
            checked += 1
    assert checked == 29


def test_results_page_for_unknown_campaign_is_404(db: None, admin: User) -> None:
    assert logged_in(admin).get("/results/nope/").status_code == 404


def test_results_page_speaks_chinese(fixed: Campaign, admin: User) -> None:
    client = logged_in(admin)
    client.post("/i18n/setlang/", {"language": "zh-hans", "next": "/"})
    html = client.get(results_url(fixed)).content.decode()
    assert "各任务类型平均" in html and "问题回答" in html  # QA's Chinese name
    assert figure(html, "bars")["data"][0]["x"][0] == "QA 问题回答"
