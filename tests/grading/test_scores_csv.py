"""`manage.py export_scores` and `import_scores` (DESIGN §4.2): the columns and values, the
options, the aggregates, formula injection, bad files rejected whole, and a round trip that
gives back the same bytes."""

from __future__ import annotations

import csv
import datetime
import os
import statistics
import threading
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.db.models import Model
from django.test.utils import CaptureQueriesContext

from grading import stats
from grading.models import ReviewSettings, Rubric, Score
from grading.scores_import import PLACEHOLDER_BASE_URL, PLACEHOLDER_PROMPT
from inference.csv_writing import format_number
from inference.models import (
    Campaign,
    CampaignModel,
    Generation,
    ModelEndpoint,
    Suite,
    TaskItem,
)
from tests import builders

pytestmark = pytest.mark.django_db

HEADER = (
    "campaign,matchup,task_type,item_id,model,sample,reviewer,score,comment,flagged,position,"
    "scored_at,rubric_version,ttft_ms,response_time_ms,prompt_tokens,completion_tokens,"
    "total_tokens,reasoning_tokens,decode_tps,e2e_tps,finish_reason,usage_source"
)
AGGREGATE_HEADER = "campaign,task_type,model,items,scores,mean,ci_low,ci_high,median,std,min,max"
FORMULAS = ["=cmd|' /C calc'!A0", "+1+1", "-2+3", "@SUM(A1:A2)", "\t=1+1", "\r=1+1"]
T0 = datetime.datetime(2025, 3, 1, 9, 30, tzinfo=datetime.UTC)
TIMINGS: dict[str, Any] = {
    "ttft_ms": 123.456789,
    "response_time_ms": 2500.5,
    "prompt_tokens": 31,
    "completion_tokens": 120,
    "total_tokens": 151,
    "reasoning_tokens": 0,
    "decode_tps": 48.12345,
    "e2e_tps": 47.99,
    "finish_reason": "stop",
    "usage_source": "server",
}


# --- Building data ---------------------------------------------------------------------------


def export(*args: str) -> str:
    out = StringIO()
    call_command("export_scores", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def export_rows(*args: str) -> list[dict[str, str]]:
    return list(csv.DictReader(StringIO(export(*args).removeprefix("\ufeff"), newline="")))


def run_import(tmp_path: Path, data: str | bytes) -> tuple[str, str]:
    path = tmp_path / "scores.csv"
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    out, err = StringIO(), StringIO()
    try:
        call_command("import_scores", str(path), stdout=out, stderr=err)
    except CommandError as error:
        raise AssertionError(err.getvalue()) from error
    return out.getvalue(), err.getvalue()


def rejected(tmp_path: Path, data: str | bytes) -> list[str]:
    """Import `data`, expecting a rejection; the problems reported, one a line."""
    path = tmp_path / "scores.csv"
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    err = StringIO()
    with pytest.raises(CommandError, match="nothing was imported"):
        call_command("import_scores", str(path), stdout=StringIO(), stderr=err)
    return err.getvalue().splitlines()


def reviewer(name: str) -> User:
    return User.objects.create_user(name, password="a-long-test-password-42")


def answer(
    of: Campaign, to: TaskItem, by: ModelEndpoint, sample: int = 0, **fields: Any
) -> Generation:
    return Generation.objects.create(
        campaign=of, item=to, endpoint=by, sample=sample, status="succeeded", **fields
    )


def score(generation: Generation, user: User, value: int, **fields: Any) -> Score:
    fields.setdefault("position", 0)
    fields.setdefault("scored_at", T0)
    return Score.objects.create(
        generation=generation,
        reviewer=user,
        score=value,
        rubric=Rubric.objects.get(version=1),
        **fields,
    )


@pytest.fixture
def study() -> dict[str, Any]:
    """`builders.two_campaigns` (`small`: ERNIE and R1 on ar-1, ck-1; `vision`: ERNIE on
    ar-1), and reviewers carol and dave."""
    return {**builders.two_campaigns(), "carol": reviewer("carol"), "dave": reviewer("dave")}


def snapshot() -> dict[str, int]:
    models: list[type[Model]] = [
        Score,
        Generation,
        Campaign,
        CampaignModel,
        ReviewSettings,
        TaskItem,
        Suite,
        ModelEndpoint,
        User,
        Rubric,
    ]
    return {model.__name__: model._default_manager.count() for model in models}


# --- Export ----------------------------------------------------------------------------------


def test_header_is_exactly_the_documented_columns(study: dict[str, Any]) -> None:
    assert export() == HEADER + "\r\n"
    assert export("--aggregate") == AGGREGATE_HEADER + "\r\n"


def test_each_score_is_one_row_with_its_values(study: dict[str, Any]) -> None:
    ar = study["items"]["ar-1"]
    gen = answer(study["small"], ar, study["ernie"], **TIMINGS)
    score(gen, study["carol"], 8, comment="清楚, 正确", position=1, flagged=True)
    score(gen, study["dave"], 6, scored_at=T0 + datetime.timedelta(microseconds=250))
    score(answer(study["small"], ar, study["r1"], sample=1), study["carol"], 0)

    rows = export_rows()

    assert len(rows) == Score.objects.count() == 3
    assert rows[0] == {
        "campaign": "small",
        "matchup": "small",
        "task_type": "AR",
        "item_id": "ar-1",
        "model": "ernie-4.5-0.3b",
        "sample": "0",
        "reviewer": "carol",
        "score": "8",
        "comment": "清楚, 正确",
        "flagged": "true",
        "position": "1",
        "scored_at": "2025-03-01T09:30:00+00:00",
        "rubric_version": "1",
        "ttft_ms": "123.457",
        "response_time_ms": "2500.5",
        "prompt_tokens": "31",
        "completion_tokens": "120",
        "total_tokens": "151",
        "reasoning_tokens": "0",
        "decode_tps": "48.123",
        "e2e_tps": "47.99",
        "finish_reason": "stop",
        "usage_source": "server",
    }
    assert (rows[1]["reviewer"], rows[1]["score"], rows[1]["flagged"]) == ("dave", "6", "false")
    assert rows[1]["scored_at"] == "2025-03-01T09:30:00.000250+00:00"
    assert (rows[2]["model"], rows[2]["sample"], rows[2]["score"]) == ("r1-1.5b", "1", "0")


def test_missing_timings_are_empty_cells_never_zero(study: dict[str, Any]) -> None:
    score(answer(study["small"], study["items"]["ar-1"], study["ernie"]), study["carol"], 5)

    [row] = export_rows()

    columns = HEADER.split(",")
    for column in columns[columns.index("ttft_ms") :]:
        assert row[column] == "", column


def test_rows_are_ordered_by_campaign_task_type_item_model_sample_reviewer(
    study: dict[str, Any],
) -> None:
    ar, ck = study["items"]["ar-1"], study["items"]["ck-1"]
    for of, to, by, sample, who in [
        (study["vision"], ar, study["ernie"], 0, "carol"),
        (study["small"], ck, study["ernie"], 0, "carol"),
        (study["small"], ar, study["r1"], 0, "dave"),
        (study["small"], ar, study["r1"], 0, "carol"),
        (study["small"], ar, study["ernie"], 0, "carol"),
    ]:
        gen, _ = Generation.objects.get_or_create(campaign=of, item=to, endpoint=by, sample=sample)
        score(gen, study[who], 5)

    order = [(r["campaign"], r["task_type"], r["model"], r["reviewer"]) for r in export_rows()]

    assert order == [
        ("small", "AR", "ernie-4.5-0.3b", "carol"),
        ("small", "AR", "r1-1.5b", "carol"),
        ("small", "AR", "r1-1.5b", "dave"),
        ("small", "CK", "ernie-4.5-0.3b", "carol"),
        ("vision", "AR", "ernie-4.5-0.3b", "carol"),
    ]


def test_campaign_option_filters_and_can_be_repeated(study: dict[str, Any]) -> None:
    other = builders.campaign("other", study["suite"], [study["ernie"]])
    for of in (study["small"], study["vision"], other):
        score(answer(of, study["items"]["ar-1"], study["ernie"]), study["carol"], 5)

    def campaigns(*args: str) -> list[str]:
        return [row["campaign"] for row in export_rows(*args)]

    assert campaigns() == ["other", "small", "vision"]
    assert campaigns("--campaign", "vision") == ["vision"]
    assert campaigns("--campaign", "vision", "--campaign", "small") == ["small", "vision"]
    aggregated = export_rows("--aggregate", "--campaign", "small")
    assert [row["campaign"] for row in aggregated] == ["small"]
    with pytest.raises(CommandError, match=r"no campaign 'nope' \(known: other, small, vision\)"):
        export("--campaign", "nope")


def test_anonymized_reviewers_get_stable_pseudonyms_in_order_of_appearance(
    study: dict[str, Any],
) -> None:
    zoe = reviewer("zoe")
    ar, ck = study["items"]["ar-1"], study["items"]["ck-1"]
    for to, who in [(ar, zoe), (ar, study["dave"]), (ck, study["dave"]), (ck, zoe)]:
        gen, _ = Generation.objects.get_or_create(
            campaign=study["small"], item=to, endpoint=study["ernie"]
        )
        score(gen, who, 5)

    plain = [row["reviewer"] for row in export_rows()]
    anonymous = [row["reviewer"] for row in export_rows("--anonymize-reviewers")]

    assert plain == ["dave", "zoe", "dave", "zoe"]
    assert anonymous == ["reviewer-1", "reviewer-2", "reviewer-1", "reviewer-2"]
    assert "dave" not in export("--anonymize-reviewers")


def test_bom_comes_first_and_only_when_asked(study: dict[str, Any]) -> None:
    score(answer(study["small"], study["items"]["ar-1"], study["ernie"]), study["carol"], 5)

    assert export("--bom").startswith("\ufeffcampaign,")
    assert export("--bom")[1:] == export()
    assert export("--aggregate", "--bom").startswith("\ufeffcampaign,task_type,")
    assert export().startswith("campaign,")


def test_output_writes_the_file_atomically_and_reports_it(
    study: dict[str, Any], tmp_path: Path
) -> None:
    score(answer(study["small"], study["items"]["ar-1"], study["ernie"]), study["carol"], 5)
    target = tmp_path / "scores.csv"
    err = StringIO()

    call_command("export_scores", "--output", str(target), stdout=StringIO(), stderr=err)

    assert target.read_bytes().decode("utf-8") == export()
    assert err.getvalue() == f"wrote 1 scores to {target}\n"
    assert [path.name for path in tmp_path.iterdir()] == ["scores.csv"]


@pytest.mark.parametrize("payload", FORMULAS)
def test_every_text_cell_is_neutralised_against_formula_injection(
    study: dict[str, Any], payload: str, tmp_path: Path
) -> None:
    inject = builders.campaign("inject", study["suite"], [study["ernie"]], matchup=payload)
    to = builders.item(study["suite"], payload)
    who = reviewer("@evil" if payload.startswith("@") else "+evil")
    gen = answer(inject, to, study["ernie"], finish_reason=payload[:32], decode_tps=-1.5)
    score(gen, who, 5, comment=payload)

    text = export()
    [row] = export_rows()

    for column in ("matchup", "item_id", "comment"):
        assert row[column] == "'" + payload, column
    assert row["finish_reason"] == "'" + payload[:32]
    assert row["reviewer"] == "'" + who.username
    assert row["decode_tps"] == "-1.5"  # a number stays a number

    # Importing it back drops exactly the one quote the export added.
    Score.objects.all().delete()
    run_import(tmp_path, text)
    imported = Score.objects.select_related("generation__item", "generation__campaign").get()
    assert imported.comment == payload
    assert imported.reviewer == who
    assert imported.generation.item.external_id == payload
    assert imported.generation.finish_reason == payload[:32]


def test_comment_with_line_breaks_and_quotes_round_trips(
    study: dict[str, Any], tmp_path: Path
) -> None:
    comment = 'He said "yes, twice",\nthen left;\r\nend, 完 \'quoted'
    score(answer(study["small"], study["items"]["ar-1"], study["ernie"]), study["carol"], 5)
    Score.objects.update(comment=comment)

    text = export()
    assert list(csv.reader(StringIO(text, newline="")))[1][8] == comment

    Score.objects.all().delete()
    run_import(tmp_path, text)
    assert Score.objects.get().comment == comment


# --- Aggregates ------------------------------------------------------------------------------


def test_aggregate_is_the_mean_of_item_means_with_a_ci(study: dict[str, Any]) -> None:
    suite, ernie, r1 = study["suite"], study["ernie"], study["r1"]
    people = [reviewer(f"r{n}") for n in range(2)]
    three = [builders.item(suite, f"ar-{n}", "AR") for n in (2, 3, 4)]
    # Item means 7, 4 and 9.5 (five scores): their mean is 6.833, the scores' mean 7.4.
    for to, values in zip(three, [[6, 8], [4], [10, 9]], strict=True):
        gen = answer(study["small"], to, ernie)
        for who, value in zip(people, values, strict=False):
            score(gen, who, value)
    score(answer(study["small"], study["items"]["ck-1"], r1), people[0], 3)

    rows = export_rows("--aggregate")

    assert [(r["campaign"], r["task_type"], r["model"]) for r in rows] == [
        ("small", "AR", "ernie-4.5-0.3b"),
        ("small", "CK", "r1-1.5b"),
    ]
    ar = rows[0]
    assert (ar["items"], ar["scores"], ar["mean"]) == ("3", "5", "6.833")
    assert (ar["median"], ar["min"], ar["max"]) == ("7", "4", "9.5")
    assert ar["std"] == f"{statistics.stdev([7, 4, 9.5]):.3f}" == "2.754"
    assert 4 <= float(ar["ci_low"]) < 6.833 < float(ar["ci_high"]) <= 9.5
    ck = rows[1]
    assert (ck["items"], ck["scores"], ck["mean"], ck["ci_low"], ck["ci_high"]) == (
        "1",
        "1",
        "3",
        "3",
        "3",
    )
    assert ck["std"] == ""  # undefined for one item, not 0
    assert export("--aggregate") == export("--aggregate")  # fixed seed: reproducible


def test_aggregate_rows_carry_the_comparison_pages_figures(study: dict[str, Any]) -> None:
    """`--aggregate` and the results page compute one and the same summary per cell."""
    suite, ernie = study["suite"], study["ernie"]
    people = [reviewer(f"agg-{n}") for n in range(2)]
    given = {f"ar-{n}": values for n, values in enumerate([[6, 8], [4], [10, 9], [3, 5]], 2)}
    for external_id, values in given.items():
        gen = answer(study["small"], builders.item(suite, external_id, "AR"), ernie)
        for who, value in zip(people, values, strict=False):
            score(gen, who, value)
    expected = stats.summarise(given)

    row = export_rows("--aggregate")[0]

    assert (row["model"], row["items"]) == ("ernie-4.5-0.3b", "4")
    assert row["mean"] == format_number(expected.mean)
    assert (row["ci_low"], row["ci_high"]) == (
        format_number(expected.ci_low),
        format_number(expected.ci_high),
    )
    assert expected.ci_low < expected.mean < expected.ci_high


# --- Query count -----------------------------------------------------------------------------


@pytest.mark.parametrize("options", [[], ["--anonymize-reviewers"], ["--aggregate"]])
def test_export_queries_do_not_grow_with_the_scores(
    study: dict[str, Any], django_assert_num_queries: Any, options: list[str]
) -> None:
    def add_scores(count: int) -> None:
        for n in range(count):
            to = builders.item(study["suite"], f"q{TaskItem.objects.count()}-{n}")
            gen = answer(study["small"], to, study["ernie"], **TIMINGS)
            score(gen, study["carol"], n % 11)

    # The aggregate also reads who is excluded from the figures, for its warning (one query).
    queries = 2 if "--aggregate" in options else 1
    add_scores(2)
    with django_assert_num_queries(queries):
        export(*options)
    add_scores(30)
    with django_assert_num_queries(queries):
        assert len(export(*options).splitlines()) > 1


# --- Import ----------------------------------------------------------------------------------


@pytest.fixture
def exported(study: dict[str, Any]) -> str:
    """A valid per-score CSV of two scores."""
    gen = answer(study["small"], study["items"]["ar-1"], study["ernie"], **TIMINGS)
    score(gen, study["carol"], 7, comment="fine")
    score(gen, study["dave"], 9)
    return export()


def with_cell(text: str, column: str, value: str, row: int = 1) -> str:
    """`text` with one cell of data row `row` replaced."""
    rows = list(csv.reader(StringIO(text, newline="")))
    rows[row][rows[0].index(column)] = value
    out = StringIO(newline="")
    csv.writer(out).writerows(rows)
    return out.getvalue()


def without_column(text: str, column: str) -> str:
    rows = list(csv.reader(StringIO(text, newline="")))
    index = rows[0].index(column)
    out = StringIO(newline="")
    csv.writer(out).writerows([row[:index] + row[index + 1 :] for row in rows])
    return out.getvalue()


def test_the_key_round_trip_export_import_export_gives_the_same_bytes(
    study: dict[str, Any], tmp_path: Path
) -> None:
    ar, ck = study["items"]["ar-1"], study["items"]["ck-1"]
    first = answer(study["small"], ar, study["ernie"], **TIMINGS)
    score(first, study["carol"], 8, comment='=1+1 and\nmore, "quoted"', position=1, flagged=True)
    score(first, study["dave"], 6, scored_at=T0 + datetime.timedelta(seconds=1, microseconds=7))
    score(answer(study["small"], ar, study["r1"], sample=1), study["carol"], 0)
    score(answer(study["small"], ck, study["r1"], ttft_ms=0.0001), study["dave"], 10)
    score(answer(study["vision"], ar, study["ernie"], ttft_ms=5.5), study["carol"], 3)
    before = export()
    assert len(list(csv.reader(StringIO(before, newline="")))) == 6

    Score.objects.all().delete()
    Generation.objects.all().delete()
    Campaign.objects.all().delete()
    Suite.objects.all().delete()
    ModelEndpoint.objects.all().delete()
    User.objects.all().delete()
    assert export() == HEADER + "\r\n"

    out, err = run_import(tmp_path, before)

    assert out == "created 5, updated 0, unchanged 0\n" and err == ""
    after = export()
    assert after == before
    assert export("--bom").encode() == b"\xef\xbb\xbf" + before.encode()


def test_imported_records_are_marked_and_reviewers_cannot_log_in(
    exported: str, tmp_path: Path
) -> None:
    text = with_cell(with_cell(exported, "campaign", "elsewhere"), "campaign", "elsewhere", 2)
    text = with_cell(with_cell(text, "model", "gpt-x"), "model", "gpt-x", 2)
    text = with_cell(text, "reviewer", "erin", 2)

    run_import(tmp_path, text)

    campaign = Campaign.objects.get(slug="elsewhere")
    assert (campaign.suite.name, campaign.matchup, campaign.status) == (
        "imported-elsewhere",
        "small",
        "finished",
    )
    model = ModelEndpoint.objects.get(slug="gpt-x")
    assert model.base_url == PLACEHOLDER_BASE_URL
    assert list(campaign.endpoints.all()) == [model]
    [generation] = Generation.objects.filter(campaign=campaign)
    assert generation.status == "succeeded"
    assert (generation.ttft_ms, generation.total_tokens, generation.usage_source) == (
        123.457,
        151,
        "server",
    )
    assert generation.item.prompt == PLACEHOLDER_PROMPT
    assert generation.item.task_type.code == "AR"
    erin = User.objects.get(username="erin")
    assert not erin.is_active and not erin.has_usable_password()
    assert User.objects.get(username="carol").is_active  # an existing user is reused as is
    scores = Score.objects.filter(generation=generation)
    assert scores.count() == 2 and all(s.imported for s in scores)
    # Only the imported reviewers may review an imported campaign: no live reviewer's queue.
    assert set(campaign.review.reviewers.values_list("username", flat=True)) == {"carol", "erin"}


def test_importing_the_same_file_again_changes_nothing(exported: str, tmp_path: Path) -> None:
    text = with_cell(exported, "campaign", "elsewhere")
    assert run_import(tmp_path, text)[0] == "created 1, updated 0, unchanged 1\n"
    before = snapshot()

    out, _ = run_import(tmp_path, text)

    assert out == "created 0, updated 0, unchanged 2\n"
    assert snapshot() == before


def test_existing_scores_match_by_answer_and_reviewer(exported: str, tmp_path: Path) -> None:
    out, _ = run_import(tmp_path, exported)
    assert out == "created 0, updated 0, unchanged 2\n"
    assert not Score.objects.filter(imported=True).exists()


def test_a_score_given_in_gradebench_is_never_overwritten(exported: str, tmp_path: Path) -> None:
    before = snapshot()
    text = with_cell(with_cell(exported, "campaign", "elsewhere", 2), "score", "3")

    problems = rejected(tmp_path, text)

    assert problems == [
        "2: score: carol already scored this answer in gradebench (score differ); not overwritten"
    ]
    assert snapshot() == before  # the row for `elsewhere` was rolled back too
    assert Score.objects.get(reviewer__username="carol").score == 7


def test_an_imported_score_is_updated_by_a_changed_file(exported: str, tmp_path: Path) -> None:
    text = with_cell(exported, "campaign", "elsewhere")
    run_import(tmp_path, text)

    out, _ = run_import(tmp_path, with_cell(text, "score", "2"))

    assert out == "created 0, updated 1, unchanged 1\n"  # row 2: carol's own score in `small`
    assert Score.objects.get(generation__campaign__slug="elsewhere").score == 2


@pytest.mark.parametrize("bom", [True, False])
def test_import_reads_utf8_with_or_without_bom(exported: str, tmp_path: Path, bom: bool) -> None:
    text = with_cell(exported, "campaign", "elsewhere")
    text = with_cell(text, "comment", "评分 ✓")
    data = ("\ufeff" if bom else "") + text

    out, _ = run_import(tmp_path, data.encode("utf-8"))

    assert out == "created 1, updated 0, unchanged 1\n"
    assert Score.objects.get(generation__campaign__slug="elsewhere").comment == "评分 ✓"


def test_a_missing_required_column_rejects_the_file(exported: str, tmp_path: Path) -> None:
    before = snapshot()
    text = with_cell(exported, "campaign", "elsewhere")

    assert rejected(tmp_path, without_column(text, "score")) == [
        "1: score: missing column (required: campaign, task_type, item_id, model, reviewer, score)"
    ]
    assert rejected(tmp_path, without_column(text, "reviewer"))[0].startswith("1: reviewer: ")
    assert snapshot() == before


def test_an_unknown_extra_column_is_ignored_with_a_warning(exported: str, tmp_path: Path) -> None:
    rows = list(csv.reader(StringIO(with_cell(exported, "campaign", "elsewhere"), newline="")))
    rows = [[*row, value] for row, value in zip(rows, ["notes", "=x", "y"], strict=True)]
    out = StringIO(newline="")
    csv.writer(out).writerows(rows)

    stdout, stderr = run_import(tmp_path, out.getvalue())

    assert stdout == "created 1, updated 0, unchanged 1\n"
    assert stderr == "warning: 1: notes: unknown column ignored\n"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("11", "3: score: '11' is not a whole number from 0 to 10"),
        ("7.5", "3: score: '7.5' is not a whole number from 0 to 10"),
        ("", "3: score: empty; a score is a whole number from 0 to 10"),
        ("-1", "3: score: '-1' is not a whole number from 0 to 10"),
    ],
)
def test_a_score_outside_0_to_10_rejects_the_file(
    exported: str, tmp_path: Path, value: str, reason: str
) -> None:
    # Row 1 alone would import (a new campaign); row 2 is bad: nothing may be written.
    text = with_cell(with_cell(exported, "campaign", "elsewhere"), "score", value, 2)
    before = snapshot()

    assert rejected(tmp_path, text) == [reason]
    assert snapshot() == before


def test_a_comment_longer_than_the_review_form_takes_rejects_the_file(
    exported: str, tmp_path: Path
) -> None:
    # The same cap as the review form: an import cannot store what a reviewer could not write.
    elsewhere = with_cell(with_cell(exported, "campaign", "elsewhere"), "campaign", "elsewhere", 2)
    text = with_cell(elsewhere, "comment", "x" * 5001, 2)
    before = snapshot()

    assert rejected(tmp_path, text) == ["3: comment: longer than 5000 characters"]
    assert snapshot() == before
    run_import(tmp_path, text.replace("x" * 5001, "x" * 5000))
    assert 5000 in {len(row["comment"]) for row in export_rows("--campaign", "elsewhere")}


def test_an_unknown_task_type_rejects_the_file(exported: str, tmp_path: Path) -> None:
    text = with_cell(with_cell(exported, "campaign", "elsewhere"), "task_type", "XYZ", 2)
    before = snapshot()

    assert rejected(tmp_path, text) == ["3: task_type: unknown task type 'XYZ'"]
    assert snapshot() == before


def test_task_types_are_read_in_any_spelling_and_written_as_codes(
    exported: str, tmp_path: Path
) -> None:
    text = with_cell(with_cell(exported, "campaign", "elsewhere"), "task_type", "类比推理")
    run_import(tmp_path, text)
    assert export_rows("--campaign", "elsewhere")[0]["task_type"] == "AR"


def test_non_utf8_rejects_the_file(exported: str, tmp_path: Path) -> None:
    data = with_cell(exported, "comment", "café", 2).encode("utf-8").replace(b"\xc3\xa9", b"\xe9")
    before = snapshot()

    [problem] = rejected(tmp_path, data)

    assert problem.startswith("3: file: not UTF-8 (byte 0xe9")
    assert snapshot() == before


def test_every_problem_is_reported_with_its_line_and_column(exported: str, tmp_path: Path) -> None:
    text = with_cell(exported, "flagged", "maybe")
    text = with_cell(text, "rubric_version", "9", 2)
    text = with_cell(text, "ttft_ms", "fast", 2)
    text = with_cell(text, "scored_at", "yesterday", 2)

    assert rejected(tmp_path, text) == [
        "2: flagged: 'maybe' is not true or false",
        "3: scored_at: 'yesterday' is not an ISO 8601 date and time",
        "3: rubric_version: no rubric version 9 here (known: 1); add it first",
        "3: ttft_ms: 'fast' is not a number",
    ]


def test_a_bad_slug_or_username_rejects_the_file_on_every_line(
    exported: str, tmp_path: Path
) -> None:
    text = with_cell(with_cell(exported, "model", "not a slug"), "model", "not a slug", 2)
    text = with_cell(text, "reviewer", "no spaces", 2)
    before = snapshot()

    assert rejected(tmp_path, text) == [
        "2: model: 'not a slug' is not a valid slug (letters, digits, . _ -)",
        "3: model: 'not a slug' is not a valid slug (letters, digits, . _ -)",
        "3: reviewer: 'no spaces' is not a valid username",
    ]
    assert snapshot() == before


def test_the_same_answer_and_reviewer_twice_rejects_the_file(exported: str, tmp_path: Path) -> None:
    text = with_cell(exported, "reviewer", "carol", 2)
    assert rejected(tmp_path, text) == [
        "3: reviewer: carol scores this answer again (first on line 2)"
    ]


def test_an_item_of_another_task_type_is_a_problem(exported: str, tmp_path: Path) -> None:
    text = with_cell(with_cell(exported, "task_type", "CK"), "reviewer", "erin")
    assert rejected(tmp_path, text) == [
        "2: task_type: item 'ar-1' of campaign 'small' is AR, not CK"
    ]
    assert not User.objects.filter(username="erin").exists()


def test_a_file_of_only_the_required_columns_imports(study: dict[str, Any], tmp_path: Path) -> None:
    text = "campaign,task_type,item_id,model,reviewer,score\r\nseed,数学推理,mr-7,ernie,张三,8\r\n"

    assert run_import(tmp_path, text)[0] == "created 1, updated 0, unchanged 0\n"
    [row] = export_rows("--campaign", "seed")
    assert (row["task_type"], row["reviewer"], row["score"], row["rubric_version"]) == (
        "MR",
        "张三",
        "8",
        "1",
    )
    assert (row["position"], row["flagged"], row["ttft_ms"]) == ("0", "false", "")
    assert run_import(tmp_path, text)[0] == "created 0, updated 0, unchanged 1\n"


def test_imported_answers_never_reach_the_review_queue(tmp_path: Path) -> None:
    from grading import assignment as queue
    from inference.models import Campaign

    path = tmp_path / "seed.csv"
    path.write_text(
        "campaign,matchup,task_type,item_id,model,reviewer,score\n"
        "seed,small,AR,ar-1,ernie-4.5-0.3b,alice,7\n",
        encoding="utf-8",
    )
    call_command("import_scores", str(path), stdout=StringIO(), stderr=StringIO())
    campaign = Campaign.objects.get(slug="seed")
    assert list(campaign.generations.values_list("source", flat=True)) == ["imported"]
    assert queue.sync_units(campaign) == 0


# --- Import in bulk ----------------------------------------------------------------------------


def test_a_file_mixing_existing_and_new_scores_keeps_updates_and_creates_each(
    study: dict[str, Any], tmp_path: Path
) -> None:
    ar, ck = study["items"]["ar-1"], study["items"]["ck-1"]
    first = answer(study["small"], ar, study["ernie"], **TIMINGS)
    score(first, study["carol"], 7, comment="fine")
    earlier = score(first, study["dave"], 3, imported=True)
    text = export()
    erin = "small,small,AR,ar-1,ernie-4.5-0.3b,0,erin,5,,false,0,,,,,,,,,,,,"
    rows = [
        with_cell(text, "score", "4", 2).splitlines()[1],  # carol unchanged, dave 3 -> 4
        with_cell(text, "score", "4", 2).splitlines()[2],
        erin,  # a new score of an existing answer
        "small,small,CK,ck-1,gpt-x,1,carol,6,,false,0,,,,,,,,,,,,",  # new model and answer
        "small,small,CK,ck-1,gpt-x,1,dave,8,,false,1,,,,,,,,,,,,",
        "fresh,f,AR,ar-1,ernie-4.5-0.3b,0,dave,9,,false,0,,,,,,,,,,,,",  # a new campaign
    ]
    out, _ = run_import(tmp_path, "\r\n".join([HEADER, *rows]) + "\r\n")

    assert out == "created 4, updated 1, unchanged 1\n"
    updated = Score.objects.get(pk=earlier.pk)
    assert (updated.score, updated.public_id) == (4, earlier.public_id)
    assert updated.updated_at > earlier.updated_at
    assert Score.objects.get(generation=first, reviewer=study["carol"]).updated_at is not None
    members = CampaignModel.objects.filter(campaign=study["small"]).order_by("position")
    assert [(m.endpoint.slug, m.position) for m in members] == [
        ("ernie-4.5-0.3b", 0),
        ("r1-1.5b", 1),
        ("gpt-x", 2),
    ]
    new_answer = Generation.objects.get(campaign=study["small"], item=ck, sample=1)
    assert set(new_answer.scores.values_list("reviewer__username", "score")) == {
        ("carol", 6),
        ("dave", 8),
    }
    assert Score.objects.get(generation=first, reviewer__username="erin").imported
    fresh = Campaign.objects.get(slug="fresh")
    assert list(fresh.review.reviewers.values_list("username", flat=True)) == ["dave"]

    before = snapshot()
    again, _ = run_import(tmp_path, "\r\n".join([HEADER, *rows]) + "\r\n")
    assert again == "created 0, updated 0, unchanged 6\n"
    assert snapshot() == before


def test_a_reviewer_differing_only_in_case_is_another_person(exported: str, tmp_path: Path) -> None:
    text = with_cell(exported, "reviewer", "Carol")
    text = with_cell(text, "score", "1")

    out, _ = run_import(tmp_path, text)

    assert out == "created 1, updated 0, unchanged 1\n"
    assert set(
        User.objects.filter(username__iexact="carol").values_list("username", "is_active")
    ) == {
        ("carol", True),
        ("Carol", False),
    }
    assert Score.objects.get(reviewer__username="carol").score == 7  # untouched
    assert Score.objects.get(reviewer__username="Carol").score == 1
    assert run_import(tmp_path, text)[0] == "created 0, updated 0, unchanged 2\n"


def test_the_same_score_twice_far_apart_rejects_the_file(exported: str, tmp_path: Path) -> None:
    rows = exported.splitlines()
    other = with_cell(exported, "reviewer", "erin", 2).splitlines()[2]
    text = "\r\n".join([rows[0], rows[1], rows[2], other, rows[1].replace(",7,", ",2,")]) + "\r\n"
    before = snapshot()

    assert rejected(tmp_path, text) == [
        "5: reviewer: carol scores this answer again (first on line 2)"
    ]
    assert snapshot() == before


def import_queries(tmp_path: Path, text: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        run_import(tmp_path, text)
    return len(queries)


def test_import_queries_do_not_grow_with_the_rows(study: dict[str, Any], tmp_path: Path) -> None:
    def file(campaign: str, items: int) -> str:
        rows = [
            f"{campaign},m,AR,i-{n},{model},0,{who},{n % 11},,false,0,,,,,,,,,,,,"
            for n in range(items)
            for model in ("ernie-4.5-0.3b", "new-model")
            for who in ("carol", "erin")
        ]
        return "\r\n".join([HEADER, *rows]) + "\r\n"

    few, many = file("few", 2), file("many", 40)  # 8 and 160 rows
    created = [import_queries(tmp_path, few), import_queries(tmp_path, many)]
    assert Score.objects.filter(generation__campaign__slug="many").count() == 160
    # Again: now every answer and score exists, and is looked up instead.
    unchanged = [import_queries(tmp_path, few), import_queries(tmp_path, many)]

    assert unchanged[0] == unchanged[1]
    # SQLite caps one INSERT at 999 parameters (28 answers, 71 scores): a few more there.
    assert max(created + unchanged) < 30


def test_utf8_is_checked_across_read_boundaries(
    exported: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import grading.scores_import

    monkeypatch.setattr(grading.scores_import, "READ_SIZE", 3)  # splits every Chinese character
    good = with_cell(with_cell(exported, "campaign", "elsewhere"), "comment", "清楚, 正确 ✓")
    assert run_import(tmp_path, good)[0] == "created 1, updated 0, unchanged 1\n"

    data = with_cell(good, "comment", "café", 2).encode("utf-8").replace(b"\xc3\xa9", b"\xe9")
    offset = data.index(b"\xe9")
    assert rejected(tmp_path, data) == [
        f"3: file: not UTF-8 (byte 0xe9 at offset {offset}); save as UTF-8"
    ]
    truncated = good.encode("utf-8")[: good.encode("utf-8").index("✓".encode()) + 1]
    [problem] = rejected(tmp_path, truncated)
    assert problem.startswith("2: file: not UTF-8 (byte 0xe2 at offset ")


def test_import_reads_a_pipe(exported: str, tmp_path: Path) -> None:
    fifo = tmp_path / "scores.fifo"
    os.mkfifo(fifo)
    text = with_cell(exported, "campaign", "elsewhere").encode("utf-8")

    def feed() -> None:
        with fifo.open("wb") as writer:
            writer.write(text)

    thread = threading.Thread(target=feed)
    thread.start()
    out = StringIO()
    call_command("import_scores", str(fifo), stdout=out, stderr=StringIO())
    thread.join()
    assert out.getvalue() == "created 1, updated 0, unchanged 1\n"
