"""The reference study's published score tables as a scores CSV (`fixtures/seed/`): the file is
what its generator writes, imports into an empty database, reproduces every published mean and
difference to one decimal, and importing it again changes nothing."""

from __future__ import annotations

import importlib.util
import json
import math
from collections import defaultdict
from io import StringIO
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from django.core.management import call_command
from django.db.models import Avg

from grading.models import Score
from inference.models import Campaign, Generation, ModelEndpoint, TaskItem
from tests.conftest import REPO

SEED = REPO / "fixtures" / "seed"
CSV_PATH = SEED / "seed-scores.csv"
PUBLISHED: dict[str, Any] = json.loads((SEED / "published.json").read_text(encoding="utf-8"))
MATCHUPS = ("small", "medium", "vision")


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "generate_seed_scores", SEED / "generate_seed_scores.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def import_seed() -> str:
    out = StringIO()
    call_command("import_scores", str(CSV_PATH), stdout=out, stderr=StringIO())
    return out.getvalue().strip()


def published_means() -> dict[tuple[str, str, str], float]:
    """(campaign, task type, model) → the published mean."""
    means = {}
    for matchup in MATCHUPS:
        table = PUBLISHED[matchup]
        for code, values in table["rows"].items():
            for model, value in zip(table["models"], values, strict=True):
                means[table["campaign"], code, model] = value
    return means


def imported_means() -> dict[tuple[str, str, str], float]:
    """(campaign, task type, model) → mean over items of each item's mean imported score."""
    item_means = (
        Score.objects.values(
            "generation__campaign__slug",
            "generation__item__task_type__code",
            "generation__endpoint__slug",
            "generation__item_id",
        )
        .annotate(mean=Avg("score"))
        .order_by()
    )
    groups: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for row in item_means:
        key = (
            row["generation__campaign__slug"],
            row["generation__item__task_type__code"],
            row["generation__endpoint__slug"],
        )
        groups[key].append(row["mean"])
    return {key: math.fsum(values) / len(values) for key, values in groups.items()}


def test_csv_is_what_the_generator_writes(tmp_path: Path) -> None:
    output = tmp_path / "seed-scores.csv"
    generator().generate(output=output)
    assert output.read_bytes() == CSV_PATH.read_bytes()


def test_generator_writes_the_columns_of_the_scores_csv() -> None:
    """The generator keeps its own copy of the columns (it needs only the standard library)."""
    from grading.scores_export import COLUMNS

    assert generator().COLUMNS == COLUMNS


def test_published_tables_use_the_studys_models_and_task_types() -> None:
    study = json.loads((REPO / "fixtures" / "study.json").read_text(encoding="utf-8"))
    campaigns = {campaign["matchup"]: campaign for campaign in study["campaigns"]}
    for matchup in MATCHUPS:
        table = PUBLISHED[matchup]
        assert table["models"] == campaigns[matchup]["models"]
        assert set(table["rows"]) <= set(campaigns[matchup]["task_types"])
        assert set(table["differences"]) <= set(table["rows"])


@pytest.mark.django_db
def test_imports_into_an_empty_database() -> None:
    assert not Score.objects.exists()
    assert import_seed() == "created 580, updated 0, unchanged 0"
    for matchup in MATCHUPS:
        table = PUBLISHED[matchup]
        campaign = Campaign.objects.get(slug=table["campaign"])
        assert campaign.matchup == matchup
        members = campaign.members.order_by("position").values_list("endpoint__slug", flat=True)
        assert list(members) == table["models"]
        items = TaskItem.objects.filter(suite=campaign.suite)
        assert set(items.values_list("task_type__code", flat=True)) == set(table["rows"])
        assert items.count() == 10 * len(table["rows"])
    assert set(Score.objects.values_list("reviewer__username", flat=True)) == {"seed-reviewer"}
    assert set(Score.objects.values_list("rubric__version", flat=True)) == {1}


@pytest.mark.django_db
def test_imported_scores_give_the_published_means_and_differences() -> None:
    import_seed()
    means = imported_means()
    assert set(means) == set(published_means())
    for key, published in published_means().items():
        assert round(means[key], 1) == published, key
        assert abs(means[key] - published) < 0.05, key
    for matchup in MATCHUPS:
        table = PUBLISHED[matchup]
        campaign, (model_a, model_b) = table["campaign"], table["models"]
        for code, (value_a, value_b) in table["rows"].items():
            expected = table["differences"].get(code, round(value_a - value_b, 1))
            difference = means[campaign, code, model_a] - means[campaign, code, model_b]
            assert round(difference, 1) == expected, (matchup, code)


@pytest.mark.django_db
def test_scores_are_whole_and_spread_around_the_mean() -> None:
    import_seed()
    for matchup in MATCHUPS:
        table = PUBLISHED[matchup]
        for model in table["models"]:
            scores = Score.objects.filter(
                generation__campaign__slug=table["campaign"], generation__endpoint__slug=model
            ).values_list("score", flat=True)
            low, high = table["item_ranges"].get(model, (0, 10))
            assert low <= min(scores) and max(scores) <= high
            if model in table["item_ranges"]:
                assert {low, high} <= set(scores)
        for code, values in table["rows"].items():
            for model, value in zip(table["models"], values, strict=True):
                scores = Score.objects.filter(
                    generation__campaign__slug=table["campaign"],
                    generation__item__task_type__code=code,
                    generation__endpoint__slug=model,
                ).values_list("score", flat=True)
                # Only a mean of 0 or 10 leaves no room for a spread.
                assert len(set(scores)) > 1 or value in (0, 10), (matchup, code, model)


@pytest.mark.django_db
def test_importing_again_changes_nothing() -> None:
    import_seed()
    models = (Score, Generation, TaskItem, Campaign, ModelEndpoint)
    before = [sorted(model.objects.values_list("pk", flat=True)) for model in models]
    scores = sorted(Score.objects.values_list("pk", "score", "scored_at", "rubric_id"))
    assert import_seed() == "created 0, updated 0, unchanged 580"
    assert [sorted(model.objects.values_list("pk", flat=True)) for model in models] == before
    assert sorted(Score.objects.values_list("pk", "score", "scored_at", "rubric_id")) == scores
