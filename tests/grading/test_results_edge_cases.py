"""No results page breaks on real data, and no query parameter turns into a server error.

Every results page (the overview, each campaign's page, the drill-down), its htmx fragment,
every filter, every sort and every CSV must answer for the awkward studies real use produces:
one model, a task type only one model was scored on, no shared items, no scores at all, a
reviewer filter that matches nothing, all scores equal, one item, one reviewer, imported scores
without timings, three models in one campaign, and two campaigns sharing models in view at once.

Bad input (unknown task types, modalities, reviewers, campaigns, CSV names, sort keys, page
numbers) gets a clear 404 or is ignored, never a 500.
"""

from __future__ import annotations

import re
import tempfile
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from html import unescape
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.cache import cache
from django.core.management import call_command
from django.http import QueryDict
from django.test import Client
from django.urls import reverse

from grading.models import Rubric, Score
from inference.models import Campaign, CampaignModel, ModelEndpoint, Suite, TaskItem
from tests import builders
from tests.conftest import REPO
from tests.grading.test_results_pages import build_fixed_study

pytestmark = pytest.mark.django_db

# Every `?csv=` name a page offers: the matchup table and each chart of `grading.charts`
# (`test_every_csv_name_tested_is_offered_by_the_page` keeps this list honest).
CSV_NAMES = ("table", "bars", "heatmap", "box", "radar", "histogram", "ttft", "tps", "scatter")
SORTS = ("type", "a", "b", "diff", "p")
SORT_KEYS = (*SORTS, *(f"-{key}" for key in SORTS))
MODALITIES = ("text", "vision")
HTMX: dict[str, Any] = {"HTTP_HX_REQUEST": "true", "HTTP_HX_TARGET": "results"}

# Scores of one task type: model slug -> per item, the scores its reviewers gave (the first
# reviewer gives the first score, …); [] is an answer nobody scored, None no answer at all.
ItemScores = list[list[int] | None]


# --- Building studies ----------------------------------------------------------------------------


def reviewer(name: str) -> User:
    return User.objects.filter(username=name).first() or builders.reviewer(name)


def endpoint(slug: str) -> ModelEndpoint:
    return ModelEndpoint.objects.filter(slug=slug).first() or builders.endpoint(slug)


def make_campaign(
    slug: str,
    models: Sequence[str],
    *,
    suite: Suite | None = None,
    matchup: str = "m",
    params: Mapping[str, Any] | None = None,
) -> Campaign:
    """A finished campaign of these models (in this order) over `suite` (a new one by default)."""
    return builders.campaign(
        slug,
        suite or Suite.objects.create(name=f"suite-{slug}"),
        [endpoint(model) for model in models],
        matchup=matchup,
        params=params or {"temperature": 0.7},
    )


def item(suite: Suite, code: str, n: int) -> TaskItem:
    external_id = f"{code}-{n}"
    found = TaskItem.objects.filter(suite=suite, external_id=external_id).first()
    return found or builders.item(suite, external_id, code)


def add_scores(
    campaign: Campaign,
    code: str,
    by_model: Mapping[str, ItemScores],
    *,
    reviewers: Sequence[str] = ("rev-one", "rev-two"),
) -> None:
    """Answers of `campaign`'s models to items of task type `code`, scored as `by_model` says."""
    rubric = Rubric.objects.current()
    people = [reviewer(name) for name in reviewers]
    for model, per_item in by_model.items():
        for n, values in enumerate(per_item):
            if values is None:
                continue
            timings = builders.Timings(
                ttft_ms=100.0 + n,
                response_time_ms=900.0 + n,
                completion_tokens=120,
                decode_tps=50.0,
                e2e_tps=40.0,
            )
            answer = builders.generation(
                campaign, item(campaign.suite, code, n), endpoint(model), timings=timings
            )
            for person, value in zip(people, values, strict=False):
                builders.score(answer, person, value, rubric=rubric)
    builders.scores_written(campaign)


@dataclass
class Study:
    """What a case built, and what to ask its pages for."""

    campaigns: list[Campaign]
    query: dict[str, str] = field(default_factory=dict)
    """Added to every request (a filter the case is about)."""

    @property
    def task_types(self) -> list[str]:
        codes = TaskItem.objects.filter(generations__campaign__in=self.campaigns)
        return sorted(set(codes.values_list("task_type__code", flat=True)))

    @property
    def models(self) -> list[str]:
        members = CampaignModel.objects.filter(campaign__in=self.campaigns)
        return sorted(set(members.values_list("endpoint__slug", flat=True)))

    @property
    def reviewers(self) -> list[str]:
        scores = Score.objects.filter(generation__campaign__in=self.campaigns)
        return sorted(set(scores.values_list("reviewer__username", flat=True)))


def one_model() -> Study:
    solo = make_campaign("solo", ["alpha"])
    add_scores(solo, "QA", {"alpha": [[7, 8], [5, 6], [9, 9]]})
    add_scores(solo, "TC", {"alpha": [[3], [4]]})
    return Study([solo])


def task_type_scored_for_one_model() -> Study:
    half = make_campaign("half", ["alpha", "beta"])
    add_scores(half, "QA", {"alpha": [[7], [5], [9]], "beta": [[6], [6], [2]]})
    # TC: both answered, only alpha's answers were scored. SUM: only beta answered at all.
    add_scores(half, "TC", {"alpha": [[3], [4]], "beta": [[], []]})
    add_scores(half, "SUM", {"beta": [[8], [7]]})
    return Study([half])


def no_shared_items() -> Study:
    apart = make_campaign("apart", ["alpha", "beta"])
    add_scores(
        apart,
        "QA",
        {"alpha": [[5], [6], [7], None, None, None], "beta": [None, None, None, [4], [5], [6]]},
    )
    return Study([apart])


def no_scores() -> Study:
    unscored = make_campaign("unscored", ["alpha", "beta"])
    add_scores(unscored, "QA", {"alpha": [[], []], "beta": [[], []]})
    return Study([unscored])


def reviewer_filter_with_no_scores() -> Study:
    """rev-two scored only the other campaign: filtered to them, `mine` has no score at all."""
    mine = make_campaign("mine", ["alpha", "beta"])
    add_scores(mine, "QA", {"alpha": [[7], [8]], "beta": [[5], [6]]}, reviewers=["rev-one"])
    other = make_campaign("other", ["gamma", "delta"])
    add_scores(other, "TC", {"gamma": [[2], [3]], "delta": [[4], [4]]}, reviewers=["rev-two"])
    return Study([mine, other], query={"reviewer": "rev-two"})


def all_scores_equal() -> Study:
    flat = make_campaign("flat", ["alpha", "beta"])
    add_scores(flat, "QA", {"alpha": [[5, 5]] * 6, "beta": [[5, 5]] * 6})
    add_scores(flat, "TC", {"alpha": [[5]] * 3, "beta": [[5]] * 3})
    return Study([flat])


def one_item() -> Study:
    single = make_campaign("single", ["alpha", "beta"])
    add_scores(single, "QA", {"alpha": [[7]], "beta": [[3]]}, reviewers=["rev-one"])
    return Study([single])


def one_reviewer() -> Study:
    lonely = make_campaign("lonely", ["alpha", "beta"])
    scores: dict[str, ItemScores] = {
        "alpha": [[n % 11] for n in range(6)],
        "beta": [[(3 * n) % 11] for n in range(6)],
    }
    add_scores(lonely, "QA", scores, reviewers=["only-one"])
    add_scores(lonely, "TC", scores, reviewers=["only-one"])
    return Study([lonely])


IMPORTED_CSV = """campaign,matchup,task_type,item_id,model,reviewer,score
imported,imp,QA,q1,alpha,r1,7
imported,imp,QA,q1,alpha,r2,8
imported,imp,QA,q1,beta,r1,4
imported,imp,QA,q2,alpha,r1,6
imported,imp,QA,q2,beta,r1,6
imported,imp,QA,q2,beta,r2,5
imported,imp,QA,q3,beta,r2,9
imported,imp,TC,t1,alpha,r1,3
imported,imp,VQA,v1,beta,r2,10
"""


def imported_without_timings() -> Study:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "scores.csv"
        path.write_text(IMPORTED_CSV, encoding="utf-8")
        call_command("import_scores", str(path), stdout=StringIO())
    return Study([Campaign.objects.get(slug="imported")])


def three_models() -> Study:
    trio = make_campaign("trio", ["alpha", "beta", "gamma"])
    add_scores(
        trio,
        "QA",
        {"alpha": [[7], [8], [6]], "beta": [[5], [5], [4]], "gamma": [[9], [2], [6]]},
    )
    # beta never answered TC; gamma answered only the vision items.
    add_scores(trio, "TC", {"alpha": [[4], [5]], "gamma": [[6], [6]]})
    add_scores(trio, "VQA", {"alpha": [[3], [4]], "beta": [[5], [7]], "gamma": [[8], None]})
    return Study([trio])


def campaigns_sharing_models() -> Study:
    """A re-run of the same pair on the same items, with other settings and other task types."""
    first = make_campaign("run-one", ["alpha", "beta"], matchup="ab")
    add_scores(first, "QA", {"alpha": [[7], [8], [6], [9], [5]], "beta": [[5], [6], [6], [4], [5]]})
    add_scores(first, "TC", {"alpha": [[4], [5]], "beta": [[6], [7]]})
    second = make_campaign(
        "run-two", ["alpha", "beta"], suite=first.suite, matchup="ab", params={"temperature": 1.0}
    )
    add_scores(second, "QA", {"alpha": [[3], [2], [4]], "beta": [[8], [9], [7]]})
    add_scores(second, "SUM", {"alpha": [[6], [6]], "beta": [[6], [5]]})
    return Study([first, second])


CASES: dict[str, Callable[[], Study]] = {
    "one model": one_model,
    "task type scored for one model": task_type_scored_for_one_model,
    "no shared items": no_shared_items,
    "campaign with no scores": no_scores,
    "reviewer filter with no scores": reviewer_filter_with_no_scores,
    "all scores equal": all_scores_equal,
    "one item": one_item,
    "one reviewer": one_reviewer,
    "imported scores without timings": imported_without_timings,
    "three models in one campaign": three_models,
    "two campaigns sharing models": campaigns_sharing_models,
}


IDLE = "idle"
"""A reviewer who never scored anything, in every case."""


@pytest.fixture(params=list(CASES), ids=list(CASES))
def study(request: pytest.FixtureRequest, admin: User) -> Study:
    # Figures are cached under keys made of primary keys, which a rolled-back test reuses.
    cache.clear()
    reviewer(IDLE)
    return CASES[request.param]()


# --- Asking -------------------------------------------------------------------------------------


def variants(study: Study) -> list[dict[str, Any]]:
    """Every filter, sort and CSV of a results page, each on top of the case's own query."""
    codes = study.task_types
    options: list[dict[str, Any]] = [{}]
    options += [{"task_type": code} for code in codes]
    options += [{"task_type": codes}] if len(codes) > 1 else []
    options += [{"modality": modality} for modality in MODALITIES]
    options += [{"reviewer": name} for name in [*study.reviewers, IDLE]]
    options += [{"sort": key} for key in SORT_KEYS]
    options += [{"csv": name} for name in CSV_NAMES]
    # A CSV of a filtered page, and a sorted fragment of a filtered page.
    options += [{"csv": name, "task_type": codes[:1]} for name in CSV_NAMES if codes]
    options += [{"task_type": codes[:1], "sort": "-diff"}] if codes else []
    return [{**study.query, **option} for option in options]


def client_for(admin: User) -> Client:
    """The admin's client, answering a server error with a 500 instead of raising it."""
    client = Client(raise_request_exception=False)
    client.force_login(admin, backend="django.contrib.auth.backends.ModelBackend")
    return client


def get(client: Client, path: str, query: Mapping[str, Any], *, htmx: bool = False) -> Any:
    return client.get(path, query, **(HTMX if htmx else {}))


def shown(query: Mapping[str, Any], htmx: bool = False) -> str:
    """A query as a failure message shows it (long values cut short)."""
    cut = {k: v if len(str(v)) < 60 else f"{str(v)[:20]}…({len(str(v))})" for k, v in query.items()}
    return f"{cut}{' (htmx)' if htmx else ''}"


def described(response: Any, path: str, query: Mapping[str, Any], htmx: bool = False) -> str:
    """`status path {query}`, and for a server error the exception and where it was raised."""
    text = f"{response.status_code} {path} {shown(query, htmx)}"
    if response.exc_info:
        _, error, trace = response.exc_info
        frames = [f for f in traceback.extract_tb(trace) if str(REPO) in f.filename]
        where = f" at {Path(frames[-1].filename).relative_to(REPO)}:{frames[-1].lineno}"
        text += f": {type(error).__name__}: {error}{where if frames else ''}"
    return text


def drill_down_queries(study: Study) -> list[dict[str, Any]]:
    """The items behind every cell: per campaign and task type, each model and reviewer."""
    queries: list[dict[str, Any]] = []
    for campaign in study.campaigns:
        for code in study.task_types:
            base = {**study.query, "campaign": campaign.public_id, "task_type": code}
            queries.append(base)
            queries += [{**base, "model": model} for model in study.models]
            queries += [{**base, "reviewer": name} for name in [*study.reviewers, IDLE]]
            queries.append({**base, "page": "2"})
    queries += [{"task_type": code} for code in study.task_types]  # every campaign at once
    return queries


def failures(
    client: Client, path: str, queries: Iterable[Mapping[str, Any]], *, fragments: bool = True
) -> list[str]:
    """Each request that did not answer 200: the page, and its htmx fragment unless a CSV."""
    failed = []
    for query in queries:
        for htmx in (False, True) if fragments and "csv" not in query else (False,):
            response = get(client, path, query, htmx=htmx)
            if response.status_code != 200:
                failed.append(described(response, path, query, htmx))
            elif "csv" in query:
                body = b"".join(response.streaming_content)
                assert body.splitlines(), f"{path} {dict(query)}: an empty CSV, not even a header"
    return failed


def test_every_results_page_answers_every_filter_sort_and_csv(study: Study, admin: User) -> None:
    """The overview (everything, and the case's campaigns chosen), each campaign's page and
    the drill-down behind every cell: 200 for each filter, sort and CSV, page and fragment."""
    client = client_for(admin)
    queries = variants(study)
    failed = failures(client, reverse("results"), queries)
    # Choosing the campaigns in view matters when there are several (one is all or nothing).
    chosen = {"campaign": [c.public_id for c in study.campaigns]}
    chosen_queries = queries if len(study.campaigns) > 1 else [study.query]
    failed += failures(client, reverse("results"), [{**q, **chosen} for q in chosen_queries])
    for campaign in study.campaigns:
        failed += failures(client, reverse("campaign-results", args=[campaign.public_id]), queries)
    failed += failures(client, reverse("results-items"), drill_down_queries(study), fragments=False)
    assert not failed, "\n".join(failed)


def test_the_shared_models_overview_shows_both_campaigns_tables(admin: User) -> None:
    """The case most likely to break: a re-run next to the first run, chosen together."""
    cache.clear()
    study = campaigns_sharing_models()
    ids = [c.public_id for c in study.campaigns]
    html = page(client_for(admin), reverse("results"), {"campaign": ids})
    assert sorted(tables(html)) == ["run-one", "run-two"]


def test_sort_and_csv_links_keep_the_campaigns_chosen(admin: User) -> None:
    """On an overview of some campaigns, a sort shows the same campaigns and every CSV holds
    only theirs: the links of the page carry the choice."""
    cache.clear()
    chosen = []
    for slug, models in (("first", ["alpha", "beta"]), ("second", ["gamma", "delta"])):
        campaign = make_campaign(slug, models)
        add_scores(campaign, "QA", {models[0]: [[7], [8], [6]], models[1]: [[5], [6], [6]]})
        chosen.append(campaign)
    left_out = make_campaign("left-out", ["epsilon", "zeta"])
    add_scores(left_out, "QA", {"epsilon": [[1], [2]], "zeta": [[3], [4]]})
    client = client_for(admin)
    path = reverse("results")
    html = page(client, path, {"campaign": [c.public_id for c in chosen]})
    assert sorted(tables(html)) == ["first", "second"]
    links = sorted(set(re.findall(r'href="\?((?:csv|sort)=[^"]*)"', html)))
    assert any(link.startswith("csv=") for link in links)
    assert any(link.startswith("sort=") for link in links)
    wrong = []
    for link in links:
        query = QueryDict(unescape(link))
        response = get(client, path, query)
        if response.status_code != 200:
            wrong.append(described(response, path, query))
        elif "csv" in query:
            body = b"".join(response.streaming_content).decode()
            if "left-out" in body or "epsilon" in body:
                wrong.append(f"?{unescape(link)}: the CSV holds a campaign not chosen")
        elif sorted(tables(response.content.decode())) != ["first", "second"]:
            wrong.append(f"?{unescape(link)}: {sorted(tables(response.content.decode()))}")
    assert not wrong, "\n".join(wrong)


# --- Bad input ---------------------------------------------------------------------------------


def tables(html: str) -> dict[str, dict[str, list[str]]]:
    """Each matchup table, by campaign slug, as task type -> the texts of the row's cells."""
    found: dict[str, dict[str, list[str]]] = {}
    pattern = r'<table class="table results-table" data-matchup="([^"]+)">(.*?)</table>'
    for n, (slug, body) in enumerate(re.findall(pattern, html, re.S)):
        key = slug if slug not in found else f"{slug}#{n}"
        found[key] = {
            code: [
                unescape(re.sub(r"<[^>]+>", "", cell)).strip()
                for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
            ]
            for code, row in re.findall(r'<tr[^>]*data-task-type="(\w+)">(.*?)</tr>', body, re.S)
        }
    return found


def row_order(html: str) -> list[str]:
    return re.findall(r'<tr[^>]*data-task-type="(\w+)">', html)


@pytest.fixture
def fixed(db: None, admin: User) -> Campaign:
    """A healthy one-campaign study (QA and TC), so that bad input is all that can go wrong."""
    cache.clear()
    return build_fixed_study()


def page(client: Client, path: str, query: Mapping[str, Any], htmx: bool = False) -> str:
    response = get(client, path, query, htmx=htmx)
    assert response.status_code == 200, described(response, path, query, htmx)
    return response.content.decode()


def results_path(where: str, campaign: Campaign) -> str:
    if where == "overview":
        return reverse("results")
    return reverse("campaign-results", args=[campaign.public_id])


# Each query, and the query whose page it must show: its unknown part ignored.
IGNORED: list[tuple[dict[str, Any], dict[str, Any]]] = [
    ({"task_type": "ZZ"}, {}),
    ({"task_type": ["QA", "ZZ"]}, {"task_type": "QA"}),
    ({"task_type": ""}, {}),
    ({"task_type": "qa"}, {}),
    ({"task_type": "Q" * 5000}, {}),
    ({"modality": "hologram"}, {}),
    ({"modality": ""}, {}),
    ({"modality": ["hologram", "text"]}, {}),
    ({"reviewer": "no-such-reviewer"}, {}),
    ({"sort": "bogus"}, {}),
    ({"sort": "-"}, {}),
    ({"sort": ""}, {}),
    ({"sort": "-bogus", "task_type": "QA"}, {"task_type": "QA"}),
    ({"csv": ""}, {}),
    ({"page": "abc"}, {}),
    ({"unknown": "1"}, {}),
]


@pytest.mark.parametrize("where", ["overview", "campaign"])
def test_unknown_filters_and_sorts_are_ignored(fixed: Campaign, admin: User, where: str) -> None:
    """200, and the page shows what it shows without the unknown value (page and fragment)."""
    client = client_for(admin)
    path = results_path(where, fixed)
    differing = []
    for query, same_as in IGNORED:
        for htmx in (False, True):
            expected = page(client, path, same_as, htmx)
            got = page(client, path, query, htmx)
            if (tables(got), row_order(got)) != (tables(expected), row_order(expected)):
                differing.append(f"{shown(query, htmx)}: {tables(got)} not {tables(expected)}")
    assert not differing, "\n".join(differing)


@pytest.mark.parametrize("where", ["overview", "campaign"])
def test_odd_but_meaningful_sorts_answer(fixed: Campaign, admin: User, where: str) -> None:
    """Doubled signs and repeated keys are not errors (how they sort is the page's choice)."""
    client = client_for(admin)
    path = results_path(where, fixed)
    for query in ({"sort": "--diff"}, {"sort": ["a", "-p"]}, {"sort": "DIFF"}):
        for htmx in (False, True):
            assert set(row_order(page(client, path, query, htmx))) == {"QA", "TC"}


def test_unknown_campaigns_in_the_overview_are_ignored(fixed: Campaign, admin: User) -> None:
    client = client_for(admin)
    everything = tables(page(client, reverse("results"), {}))
    assert list(everything) == ["fixed"]
    differing = []
    for chosen in (["no-such-campaign"], [fixed.public_id, "no-such-campaign"], [""]):
        for htmx in (False, True):
            got = tables(page(client, reverse("results"), {"campaign": chosen}, htmx))
            if got != everything:
                differing.append(f"campaign={chosen}{' (htmx)' if htmx else ''}: {got}")
    assert not differing, "\n".join(differing)


CSV_UNKNOWN = ("nonsense", "TABLE", "figure-bars", "table,bars", "../table", "speed", "0")


@pytest.mark.parametrize("where", ["overview", "campaign"])
def test_a_csv_that_does_not_exist_is_404(fixed: Campaign, admin: User, where: str) -> None:
    client = client_for(admin)
    path = results_path(where, fixed)
    wrong = []
    for name in CSV_UNKNOWN:
        for htmx in (False, True):
            response = get(client, path, {"csv": name}, htmx=htmx)
            if response.status_code != 404:
                wrong.append(described(response, path, {"csv": name}, htmx))
    assert not wrong, "\n".join(wrong)


def test_every_csv_name_tested_is_offered_by_the_page(fixed: Campaign, admin: User) -> None:
    html = page(client_for(admin), reverse("campaign-results", args=[fixed.public_id]), {})
    offered = set(re.findall(r"\?csv=(\w+)", html))
    assert offered == set(CSV_NAMES)


def test_drill_down_ignores_bad_pages_and_unknown_names(fixed: Campaign, admin: User) -> None:
    client = client_for(admin)
    path = reverse("results-items")
    base = {"campaign": fixed.public_id, "task_type": "QA"}
    wrong = []
    for extra in (
        {"page": "abc"},
        {"page": "0"},
        {"page": "-1"},
        {"page": "999"},
        {"page": ""},
        {"page": "1.5"},
        {"page": "9" * 40},
        {"model": "no-such-model"},
        {"reviewer": "no-such-reviewer"},
    ):
        response = get(client, path, {**base, **extra})
        if response.status_code != 200:
            wrong.append(described(response, path, {**base, **extra}))
    assert not wrong, "\n".join(wrong)


def test_drill_down_of_an_unknown_task_type_is_404(fixed: Campaign, admin: User) -> None:
    client = client_for(admin)
    path = reverse("results-items")
    wrong = []
    for query in (
        {"campaign": fixed.public_id, "task_type": "ZZ"},
        {"campaign": fixed.public_id, "task_type": "qa"},
        {"campaign": fixed.public_id, "task_type": "QA TC"},
        {"campaign": fixed.public_id, "task_type": ""},
        {"campaign": fixed.public_id},
        {"task_type": "ZZ"},
    ):
        response = get(client, path, query)
        if response.status_code != 404:
            wrong.append(described(response, path, query))
    assert not wrong, "\n".join(wrong)


def test_drill_down_of_an_unknown_campaign_is_404_or_ignored(fixed: Campaign, admin: User) -> None:
    query = {"campaign": "no-such-campaign", "task_type": "QA"}
    response = get(client_for(admin), reverse("results-items"), query)
    assert response.status_code in (200, 404), described(response, reverse("results-items"), query)


NUL_QUERIES: list[tuple[str, dict[str, str]]] = [
    ("results", {"task_type": "Q\x00A"}),
    ("results", {"reviewer": "rev\x00one"}),
    ("results", {"campaign": "x\x00y"}),
    ("results", {"modality": "te\x00xt"}),
    ("results", {"sort": "\x00"}),
    ("results", {"csv": "ta\x00ble"}),
    ("campaign-results", {"task_type": "Q\x00A"}),
    ("campaign-results", {"reviewer": "rev\x00one"}),
    ("results-items", {"task_type": "Q\x00A"}),
    ("results-items", {"task_type": "QA", "campaign": "x\x00y"}),
    ("results-items", {"task_type": "QA", "model": "alpha\x00"}),
    ("results-items", {"task_type": "QA", "reviewer": "rev\x00one"}),
    ("results-items", {"task_type": "QA", "page": "\x00"}),
]


def test_a_nul_character_in_a_parameter_is_never_a_server_error(
    fixed: Campaign, admin: User
) -> None:
    """PostgreSQL refuses NUL in a string: a value carrying one must not reach a query raw
    (`grading.middleware` refuses the request with a 400)."""
    client = client_for(admin)
    errors = []
    for name, query in NUL_QUERIES:
        path = reverse(name, args=[fixed.public_id] if name == "campaign-results" else [])
        response = get(client, path, query)
        if response.status_code not in (200, 400, 404):
            errors.append(described(response, path, query))
    assert not errors, "\n".join(errors)
