"""`manage.py export_analysis KIND` (DESIGN §7.1): the exact columns, figures that recompute from
`export_scores` rows, campaigns without data, formula-safe cells and clear errors."""

from __future__ import annotations

import csv
import random
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from scipy import stats as scipy_stats

from grading import bias, ranking
from grading.models import Score
from inference.models import Generation
from tests import builders

pytestmark = pytest.mark.django_db

HEADERS = {
    "ranking": "task_type,model,rating,ci_low,ci_high,rank_low,rank_high,pairs",
    "position": "campaign,reviewer,effect,ci_low,ci_high,p_value,scores",
    "length": "campaign,task_type,model_a,model_b,difference,controlled_difference,ci_low,"
    "ci_high,items",
    "association": "campaign,task_type,model,unit,rho,ci_low,ci_high,answers,items",
}


def export(*args: str, command: str = "export_analysis") -> str:
    out = StringIO()
    call_command(command, *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def export_rows(*args: str, command: str = "export_analysis") -> list[dict[str, str]]:
    return list(csv.DictReader(StringIO(export(*args, command=command), newline="")))


def number(cell: str) -> float | None:
    return float(cell) if cell else None


@pytest.fixture
def study() -> dict[str, Any]:
    """Campaign `main` (three models, 8 AR and 8 CK items, reviewers carol and dave in a random
    order per item, the first position worth about a point, some answers missing or without a
    token count), campaign `pair` (two of the models on the same items, one reviewer) and
    campaign `old` of imported scores (no positions)."""
    rng = random.Random(20)
    suite = builders.suite("s", ["AR"] * 8 + ["CK"] * 8)
    items = list(suite.items.order_by("id"))
    models = [builders.endpoint(slug) for slug in ("ernie", "r1", "qwen")]
    people = [builders.reviewer("carol"), builders.reviewer("dave")]
    main = builders.campaign("main", suite, models)
    pair = builders.campaign("pair", suite, models[1::-1])
    old = builders.campaign("old", suite, models[:2])
    skill = {"ernie": 1.0, "r1": 0.0, "qwen": -1.0}
    for n, item in enumerate(items):
        answers = []
        for model in models:
            if model.slug == "qwen" and n % 5 == 0:
                continue  # a missing answer
            tokens = None if (model.slug == "r1" and n == 3) else rng.randint(50, 400)
            timings = builders.Timings(completion_tokens=tokens)
            answers.append(
                builders.generation(main, item, model, timings=timings, content="x" * (n + 10))
            )
        for person in people:
            order = rng.sample(answers, len(answers))
            for position, answer in enumerate(order):
                value = 5 + skill[answer.endpoint.slug] + (1 if position == 0 else 0)
                value += rng.choice([-1, 0, 0, 1])
                builders.score(answer, person, max(0, min(10, round(value))), position=position)
        for model in models[:2]:
            answer = builders.generation(pair, item, model)
            value = 7 if model.slug == "ernie" else 3
            builders.score(answer, people[0], value, position=rng.randint(0, 1))
            imported = builders.generation(old, item, model)
            Score.objects.filter(
                pk=builders.score(imported, people[1], rng.randint(0, 10)).pk
            ).update(imported=True)
    return {"models": models, "people": people, "main": main}


@pytest.mark.parametrize("kind", sorted(HEADERS))
def test_every_kind_writes_exactly_its_columns_and_nothing_without_data(kind: str) -> None:
    assert export(kind) == HEADERS[kind] + "\r\n"


@pytest.mark.parametrize("kind", sorted(HEADERS))
def test_every_kind_writes_exactly_its_columns(study: dict[str, Any], kind: str) -> None:
    text = export(kind)
    assert text.split("\r\n", 1)[0] == HEADERS[kind]
    assert all(len(row) == len(HEADERS[kind].split(",")) for row in csv.reader(StringIO(text)))


def test_ranking_recomputes_from_the_scores_export(study: dict[str, Any]) -> None:
    rows = export_rows("ranking")
    scores = export_rows(command="export_scores")
    fits = [("", scores), ("AR", [s for s in scores if s["task_type"] == "AR"]),
            ("CK", [s for s in scores if s["task_type"] == "CK"])]  # fmt: skip
    expected = []
    for code, chosen in fits:
        outcomes = ranking.outcomes(
            ((s["item_id"], (s["reviewer"], s["campaign"], s["sample"]), s["model"],
              int(s["score"])) for s in chosen),
            ["ernie", "qwen", "r1"],
        )  # fmt: skip
        for r in ranking.ranking(outcomes):
            expected.append((code, r.model, r.rating, r.ci_low, r.ci_high, r.rank_low, r.pairs))
    got = [
        (r["task_type"], r["model"], number(r["rating"]), number(r["ci_low"]),
         number(r["ci_high"]), int(r["rank_low"]), int(r["pairs"]))
        for r in rows
    ]  # fmt: skip
    assert [g[:2] for g in got] == [e[:2] for e in expected]
    for g, e in zip(got, expected, strict=True):
        assert g[2:5] == pytest.approx(e[2:5], abs=6e-4)
        assert g[5:] == e[5:]
    assert [r["model"] for r in rows[:3]] == ["ernie", "r1", "qwen"]
    for code in ("", "AR", "CK"):
        fit = [number(r["rating"]) or 0 for r in rows if r["task_type"] == code]
        assert sum(fit) / 3 == pytest.approx(1000, abs=2e-3)


def test_position_recomputes_from_the_scores_export(study: dict[str, Any]) -> None:
    rows = export_rows("position")
    assert [(r["campaign"], r["reviewer"]) for r in rows] == [
        ("main", ""), ("main", "carol"), ("main", "dave"), ("old", ""), ("old", "dave"),
        ("pair", ""), ("pair", "carol"),
    ]  # fmt: skip
    scores = [s for s in export_rows(command="export_scores") if s["campaign"] == "main"]
    result = bias.position_bias(
        (s["item_id"], s["model"], int(s["position"]), int(s["score"])) for s in scores
    )
    main = rows[0]
    assert number(main["effect"]) == pytest.approx(result.effect, abs=6e-4)
    assert number(main["ci_low"]) == pytest.approx(result.ci_low, abs=6e-4)
    assert number(main["p_value"]) == pytest.approx(result.p_value, abs=6e-4)
    assert int(main["scores"]) == result.scores > 0
    assert result.effect is not None and result.effect > 0  # the injected first-position point
    # One reviewer never sees one answer twice, so alone they have no pair: no data.
    assert rows[1] | {"campaign": "", "reviewer": ""} == dict.fromkeys(rows[1], "") | {
        "scores": "0"
    }
    # Imported scores carry no position.
    assert rows[3]["effect"] == "" and rows[3]["scores"] == "0"


def test_length_recomputes_from_the_answers(study: dict[str, Any]) -> None:
    rows = export_rows("length", "--campaign", "main")
    assert [(r["task_type"], r["model_a"], r["model_b"]) for r in rows] == [
        (t, a, b)
        for t in ("AR", "CK")
        for a, b in (("ernie", "r1"), ("ernie", "qwen"), ("r1", "qwen"))
    ]
    # ernie and qwen on CK: both have token counts; recompute the intercept with scipy.
    row = rows[4]
    per_model: dict[str, dict[int, tuple[float, float]]] = {}
    for answer in Generation.objects.filter(campaign=study["main"], item__task_type__code="CK"):
        values = list(answer.scores.values_list("score", flat=True))
        length = float(answer.completion_tokens or 0)
        per_model.setdefault(answer.endpoint.slug, {})[answer.item_id] = (
            sum(values) / len(values),
            length,
        )
    a, b = per_model["ernie"], per_model["qwen"]
    shared = sorted(a.keys() & b.keys())
    line = scipy_stats.linregress(
        [a[k][1] - b[k][1] for k in shared], [a[k][0] - b[k][0] for k in shared]
    )
    assert int(row["items"]) == len(shared) == 6
    assert number(row["controlled_difference"]) == pytest.approx(line.intercept, abs=6e-4)
    difference = sum(a[k][0] - b[k][0] for k in shared) / len(shared)
    assert number(row["difference"]) == pytest.approx(difference, abs=6e-4)
    assert number(row["ci_low"]) is not None
    # One r1 answer on AR has no token count, so ernie–r1 on AR is measured in characters, where
    # the two models' answers are equally long: no line to fit, only the raw difference.
    assert rows[0]["controlled_difference"] == rows[0]["ci_low"] == ""
    assert number(rows[0]["difference"]) is not None and rows[0]["items"] == "8"


def test_a_matchup_without_shared_items_has_empty_figures(study: dict[str, Any]) -> None:
    builders.campaign("empty", builders.suite("t", ["AR"]), study["models"][:2])
    rows = export_rows("length", "--campaign", "empty")
    assert rows == []  # no score in any task type: nothing to compare
    position = export_rows("position", "--campaign", "empty")
    assert position == [
        dict(zip(HEADERS["position"].split(","), ["empty", "", "", "", "", "", "0"], strict=True))
    ]


def test_text_cells_are_neutralised_and_numbers_are_not(study: dict[str, Any]) -> None:
    Generation.objects.filter(endpoint__slug="qwen").update(
        endpoint=builders.endpoint("=cmd|' /C calc'!A0")
    )
    text = export("ranking")
    assert "'=cmd|' /C calc'!A0" in text and ",=cmd" not in text
    pair = export_rows("length", "--campaign", "pair")
    assert {row["difference"] for row in pair} == {"-4"}


def test_unknown_kind_and_campaign_are_clear_errors(study: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(
        CommandError,
        match=r"unknown analysis 'bias' \(known: ranking, position, length, association\)",
    ):
        export("bias")
    output = tmp_path / "out.csv"
    with pytest.raises(CommandError, match=r"no campaign 'nope' \(known: .*main"):
        export("ranking", "--campaign", "nope", "--output", str(output))
    assert list(tmp_path.iterdir()) == []


def test_output_file_holds_the_same_bytes(study: dict[str, Any], tmp_path: Path) -> None:
    output = tmp_path / "position.csv"
    export("position", "--campaign", "pair", "--output", str(output))
    written = output.read_bytes().decode("utf-8")
    assert written == export("position", "--campaign", "pair")
    assert written.count("\r\n") == 3


def test_association_recomputes_from_the_answers(study: dict[str, Any]) -> None:
    rows = export_rows("association", "--campaign", "main")
    assert [(r["task_type"], r["model"]) for r in rows] == [
        (code, model) for code in ("AR", "CK") for model in ("ernie", "r1", "qwen")
    ]
    for row in rows:
        answers = Generation.objects.filter(
            campaign__slug="main", item__task_type__code=row["task_type"],
            endpoint__slug=row["model"],
        )  # fmt: skip
        # r1 lacks one token count on an AR item: its AR cell falls back to characters.
        tokens = all(a.completion_tokens is not None for a in answers)
        assert row["unit"] == ("tokens" if tokens else "characters")
        lengths, means = [], []
        for answer in answers:
            values = list(answer.scores.values_list("score", flat=True))
            lengths.append(answer.completion_tokens if tokens else len(answer.content))
            means.append(sum(values) / len(values))
        rho = scipy_stats.spearmanr(lengths, means).statistic
        assert number(row["rho"]) == pytest.approx(rho, abs=6e-4)
        assert int(row["answers"]) == len(answers) == int(row["items"])
        low, high = bias.spearman_ci(rho, len(answers))
        got = (number(row["ci_low"]), number(row["ci_high"]))
        assert got == pytest.approx((low, high), abs=6e-4)
        assert float(row["ci_low"]) < float(row["rho"]) < float(row["ci_high"])
