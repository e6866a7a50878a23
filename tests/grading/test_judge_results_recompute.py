"""The judges page's figures against an independent recomputation from raw rows, on messy random
studies; and the human figures, unchanged byte for byte by judgements."""

from __future__ import annotations

import csv
import io
import random
from collections import defaultdict
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.cache import cache
from django.db import transaction
from django.test import Client
from django.urls import reverse
from scipy import stats as scipy_stats

from grading import charts, comparison
from grading.models import Score
from inference.models import Campaign, Judgement
from tests import builders
from tests.conftest import logged_in

pytestmark = pytest.mark.django_db

SEEDS = range(14)
CLOSE = 6e-4
"""CSV numbers carry three decimals."""
FAILED = ("failed", "cancelled")


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    cache.clear()


def read_csv(client: Client, url: str, **query: str) -> list[dict[str, str]]:
    response = client.get(url, query)
    assert response.status_code == 200
    return list(csv.DictReader(io.StringIO(response.getvalue().decode())))


def interval_alpha(units: list[list[float]]) -> float | None:
    """Krippendorff's alpha (interval), straight from its definition (Krippendorff 2011):
    1 − D_o / D_e over the values of units with two values or more."""
    pairable = [u for u in units if len(u) >= 2]
    values = [v for u in pairable for v in u]
    n = len(values)
    if len(pairable) < 2:
        return None
    observed = (
        sum(
            sum((a - b) ** 2 for i, a in enumerate(u) for j, b in enumerate(u) if i != j)
            / (len(u) - 1)
            for u in pairable
        )
        / n
    )
    expected = sum(
        (a - b) ** 2 for i, a in enumerate(values) for j, b in enumerate(values) if i != j
    ) / (n * (n - 1))
    if expected == 0:
        return None
    return 1 - observed / expected


def close(page: str, expected: float | None) -> bool:
    if expected is None:
        return page == ""
    return page != "" and abs(float(page) - expected) <= CLOSE


def expected_agreement(campaign: Campaign, judge: str) -> dict[str, dict[str, Any]]:
    """Per task type: the figures of one judge (its latest prompt version) from raw rows."""
    reviewable = {"generation__status": "succeeded", "generation__placeholder": False}
    human: dict[int, list[int]] = defaultdict(list)
    type_of: dict[int, str] = {}
    for answer, code, value in Score.objects.filter(
        generation__campaign=campaign, **reviewable
    ).values_list("generation_id", "generation__item__task_type__code", "score"):
        human[answer].append(value)
        type_of[answer] = code
    mine = Judgement.objects.filter(campaign=campaign, judge__slug=judge, **reviewable)
    latest = mine.order_by("-created_at", "-prompt_version").values_list(
        "prompt_version", flat=True
    )
    if not latest:
        return {}
    version = latest[0]
    figures: dict[str, dict[str, Any]] = defaultdict(
        lambda: {"judge": {}, "unparseable": 0, "failed": 0}
    )
    for answer, code, status, given in mine.filter(prompt_version=version).values_list(
        "generation_id", "generation__item__task_type__code", "status", "score"
    ):
        type_of[answer] = code
        if status == "parsed" and given is not None:
            figures[code]["judge"][answer] = given
        elif status == "unparseable":
            figures[code]["unparseable"] += 1
        elif status in FAILED:
            figures[code]["failed"] += 1
    for code, f in figures.items():
        answers = [a for a, c in type_of.items() if c == code]
        units = [human.get(a, []) + ([f["judge"][a]] if a in f["judge"] else []) for a in answers]
        f["alpha"] = interval_alpha([[float(v) for v in u] for u in units])
        f["humans_alpha"] = interval_alpha([[float(v) for v in human.get(a, [])] for a in answers])
        both = [a for a in f["judge"] if a in human]
        means = [sum(human[a]) / len(human[a]) for a in both]
        judged = [f["judge"][a] for a in both]
        f["answers"] = len(both)
        f["offset"] = (
            sum(j - m for j, m in zip(judged, means, strict=True)) / len(both) if both else None
        )
        f["spearman"] = None
        if len(both) >= 2 and len(set(means)) > 1 and len(set(judged)) > 1:
            f["spearman"] = float(scipy_stats.spearmanr(means, judged).statistic)
        f["version"] = version
    return dict(figures)


def expected_table(campaign: Campaign, judge: str, version: str) -> dict[tuple[str, str], Any]:
    """Per (task type, model): item -> the judge's scores of its answers."""
    cells: dict[tuple[str, str], dict[int, list[int]]] = defaultdict(lambda: defaultdict(list))
    for code, model, item, value in Judgement.objects.filter(
        campaign=campaign,
        judge__slug=judge,
        prompt_version=version,
        status="parsed",
        generation__status="succeeded",
        generation__placeholder=False,
    ).values_list(
        "generation__item__task_type__code", "generation__endpoint__slug", "generation__item_id",
        "score",
    ):  # fmt: skip
        if value is not None:
            cells[code, model][item].append(value)
    return cells


def item_mean_of(cell: dict[int, list[int]]) -> float:
    return sum(sum(v) / len(v) for v in cell.values()) / len(cell)


@pytest.mark.parametrize("seed", SEEDS)
def test_judge_figures_match_a_recomputation_from_raw_rows(seed: int, admin: User) -> None:
    rng = random.Random(seed)
    study = builders.random_study(rng)
    builders.random_judgements(rng, study)
    client = logged_in(admin)
    for made in study.campaigns:
        campaign = Campaign.objects.get(slug=made.slug)
        url = reverse("campaign-judges", args=[campaign.public_id])
        page = client.get(url)
        assert page.status_code == 200
        html = page.content.decode()
        for judge in campaign.judges.values_list("slug", flat=True):
            expected = expected_agreement(campaign, judge)
            rows = read_csv(client, url, csv="agreement", judge=judge)
            assert {r["task_type"] for r in rows} == set(expected), (seed, made.slug, judge)
            for row in rows:
                want = expected[row["task_type"]]
                where = (seed, made.slug, judge, row["task_type"])
                assert row["prompt_version"] == want["version"], where
                assert int(row["answers"]) == want["answers"], where
                assert int(row["judged"]) == len(want["judge"]), where
                assert int(row["unparseable"]) == want["unparseable"], where
                assert int(row["failed"]) == want["failed"], where
                assert close(row["alpha"], want["alpha"]), (where, row["alpha"], want["alpha"])
                assert close(row["humans_alpha"], want["humans_alpha"]), where
                assert close(row["spearman"], want["spearman"]), where
                assert close(row["offset"], want["offset"]), where
                if want["offset"] is not None:
                    assert float(row["offset_ci_low"]) - CLOSE <= want["offset"], where
                    assert want["offset"] <= float(row["offset_ci_high"]) + CLOSE, where
                stands = want["alpha"] is not None and want["alpha"] >= 0.667
                assert row["cannot_stand_in"] == ("0" if stands else "1"), where
            alphas = [(r["alpha"] != "", float(r["alpha"] or 0)) for r in rows]
            assert alphas == sorted(alphas), (seed, made.slug, judge)

            if not expected:
                continue
            version = next(iter(expected.values()))["version"]
            cells = expected_table(campaign, judge, version)
            table = read_csv(client, url, csv="table", judge=judge)
            for row in table:
                for side in ("a", "b"):
                    cell = cells.get((row["task_type"], row[f"model_{side}"]))
                    assert close(row[f"mean_{side}"], item_mean_of(cell) if cell else None)
                a = cells.get((row["task_type"], row["model_a"]), {})
                b = cells.get((row["task_type"], row["model_b"]), {})
                shared = sorted(set(a) & set(b))
                diffs = [sum(a[i]) / len(a[i]) - sum(b[i]) / len(b[i]) for i in shared]
                assert close(row["difference"], sum(diffs) / len(diffs) if diffs else None)
                assert row["shared_items"] == (str(len(shared)) if shared else "")
            chart = read_csv(client, url, csv="chart", judge=judge)
            assert sum(int(r["answers"]) for r in chart) == sum(
                w["answers"] for w in expected.values()
            )
            if any(w["judge"] for w in expected.values()) and campaign.endpoints.count() > 1:
                assert f'data-judge="{judge}"' in html


HUMAN_CSVS = ("table", "bars", "heatmap", "box", "radar", "histogram", "ttft", "tps", "scatter")


def human_figures(client: Client, campaigns: list[Campaign]) -> dict[str, bytes]:
    """Every CSV of every results page of these campaigns, and the overview's."""
    urls = [reverse("results")] + [
        reverse("campaign-results", args=[c.public_id]) for c in campaigns
    ]
    found = {}
    for url in urls:
        for name in HUMAN_CSVS:
            response = client.get(url, {"csv": name})
            assert response.status_code == 200
            found[f"{url}?csv={name}"] = response.getvalue()
    return found


@pytest.mark.parametrize("seed", range(4))
def test_judgements_never_change_the_human_figures(seed: int, admin: User) -> None:
    rng = random.Random(100 + seed)
    study = builders.random_study(rng)
    campaigns = list(Campaign.objects.filter(slug__in=[c.slug for c in study.campaigns]))
    client = logged_in(admin)
    without = human_figures(client, campaigns)
    builders.random_judgements(rng, study)
    # Built again from scratch with judgements present, and served from the cache.
    cache.clear()
    assert human_figures(client, campaigns) == without
    assert human_figures(client, campaigns) == without
    assert {c.id for c in charts.charts(comparison.select(
        comparison.build(comparison.campaign_infos(campaigns)), comparison.Filters()
    ))} <= set(HUMAN_CSVS)  # fmt: skip


def test_the_random_judgements_meet_every_messy_case() -> None:
    met: set[str] = set()
    for seed in SEEDS:
        with transaction.atomic():
            rng = random.Random(seed)
            met |= builders.random_judgements(rng, builders.random_study(rng))
            transaction.set_rollback(True)
    assert met == set(builders.JUDGEMENT_FEATURES)
