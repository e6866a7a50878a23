"""`manage.py import_gold`: gold and calibration marks from a CSV, the whole file or nothing."""

from __future__ import annotations

from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from grading.models import GoldAnswer, Purpose
from grading.scores_import import PLACEHOLDER_ANSWER
from inference.models import GenerationStatus
from tests import builders

pytestmark = pytest.mark.django_db
HEADER = "campaign,item_id,model,sample,low,high,note"


@pytest.fixture
def study() -> dict[str, Any]:
    """Campaign `small` (two samples) answered by ERNIE and R1; R1's `ck-1` failed and ERNIE's
    second sample of `ck-1` is an imported score's placeholder."""
    made = builders.two_campaigns()
    small = made["small"]
    small.samples = 2
    small.save()
    ernie, r1, items = made["ernie"], made["r1"], made["items"]
    for sample in (0, 1):
        builders.generation(small, items["ar-1"], ernie, sample=sample)
        builders.generation(small, items["ar-1"], r1, sample=sample)
    builders.generation(small, items["ck-1"], ernie)
    builders.generation(small, items["ck-1"], ernie, sample=1, content=PLACEHOLDER_ANSWER)
    builders.generation(small, items["ck-1"], r1, status=GenerationStatus.FAILED)
    builders.generation(made["vision"], items["ar-1"], ernie)
    return made


def write(tmp_path: Path, *lines: str, header: str = HEADER) -> Path:
    path = tmp_path / "gold.csv"
    path.write_text("\n".join([header, *lines]) + "\n", encoding="utf-8")
    return path


def run(path: Path) -> str:
    out = StringIO()
    call_command("import_gold", str(path), stdout=out, stderr=StringIO())
    return out.getvalue()


def refused(path: Path) -> str:
    err = StringIO()
    with pytest.raises(CommandError, match="nothing was imported"):
        call_command("import_gold", str(path), stdout=StringIO(), stderr=err)
    return err.getvalue()


def marks() -> list[tuple[object, ...]]:
    return sorted(
        GoldAnswer.objects.values_list(
            "generation__campaign__slug",
            "generation__item__external_id",
            "generation__endpoint__slug",
            "generation__sample",
            "low",
            "high",
            "note",
            "purpose",
        )
    )


def test_a_file_marks_answers_and_importing_it_again_changes_nothing(
    tmp_path: Path, study: dict[str, Any]
) -> None:
    path = write(
        tmp_path,
        "small,ar-1,ernie-4.5-0.3b,0,7,9,clear and correct",
        'small,ar-1,r1-1.5b,1,0,2,"wrong, and says so"',
        "vision,ar-1,ernie-4.5-0.3b,,4,4,",
    )
    assert run(path).strip() == "created 3, updated 0, unchanged 0"
    expected = [
        ("small", "ar-1", "ernie-4.5-0.3b", 0, 7, 9, "clear and correct", "gold"),
        ("small", "ar-1", "r1-1.5b", 1, 0, 2, "wrong, and says so", "gold"),
        ("vision", "ar-1", "ernie-4.5-0.3b", 0, 4, 4, "", "gold"),
    ]
    assert marks() == expected
    stamps = sorted(GoldAnswer.objects.values_list("pk", "updated_at"))
    assert run(path).strip() == "created 0, updated 0, unchanged 3"
    assert marks() == expected
    assert sorted(GoldAnswer.objects.values_list("pk", "updated_at")) == stamps


def test_a_changed_row_updates_the_mark_and_purpose_is_optional(
    tmp_path: Path, study: dict[str, Any]
) -> None:
    run(write(tmp_path, "small,ar-1,ernie-4.5-0.3b,0,7,9,first"))
    path = write(
        tmp_path,
        "small,ar-1,ernie-4.5-0.3b,0,6,8,second,calibration",
        "small,ar-1,r1-1.5b,0,3,5,,",
        header=HEADER + ",purpose",
    )
    assert run(path).strip() == "created 1, updated 1, unchanged 0"
    assert marks() == [
        ("small", "ar-1", "ernie-4.5-0.3b", 0, 6, 8, "second", Purpose.CALIBRATION),
        ("small", "ar-1", "r1-1.5b", 0, 3, 5, "", Purpose.GOLD),
    ]


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        ("nope,ar-1,ernie-4.5-0.3b,0,1,2,", "2: campaign: unknown campaign 'nope'"),
        ("small,zz-9,ernie-4.5-0.3b,0,1,2,", "2: item_id: no item 'zz-9' in campaign small's"),
        ("small,ar-1,gpt-4o,0,1,2,", "2: model: 'gpt-4o' is not a model of campaign small"),
        ("small,ar-1,ernie-4.5-0.3b,2,1,2,", "2: sample: '2' is not a sample of campaign small"),
        ("small,ar-1,ernie-4.5-0.3b,-1,1,2,", "2: sample: '-1' is not a sample"),
        ("small,ar-1,ernie-4.5-0.3b,0,8,3,", "2: low: 8 is above high (3)"),
        ("small,ar-1,ernie-4.5-0.3b,0,1,11,", "2: high: '11' is not a whole number from 0 to 10"),
        ("small,ar-1,ernie-4.5-0.3b,0,-1,5,", "2: low: '-1' is not a whole number from 0 to 10"),
        ("small,ar-1,ernie-4.5-0.3b,0,2.5,5,", "2: low: '2.5' is not a whole number from 0 to 10"),
        ("small,ar-1,ernie-4.5-0.3b,0,,5,", "2: low: '' is not a whole number from 0 to 10"),
        ("small,ck-1,r1-1.5b,0,1,2,", "2: row: the answer did not succeed (failed)"),
        ("small,ck-1,ernie-4.5-0.3b,1,1,2,", "2: row: the answer has no text"),
        ("small,ck-1,r1-1.5b,1,1,2,", "2: row: r1-1.5b has no answer to 'ck-1' (sample 1) yet"),
        ("small,ar-1,ernie-4.5-0.3b,0,1,2", "2: row: has 6 cells, the header has 7"),
    ],
)
def test_each_bad_row_is_named_and_nothing_is_imported(
    tmp_path: Path, study: dict[str, Any], row: str, problem: str
) -> None:
    good = "small,ar-1,r1-1.5b,0,3,5,fine"
    errors = refused(write(tmp_path, row, good))
    assert problem in errors
    assert len(errors.strip().splitlines()) == 1
    assert GoldAnswer.objects.count() == 0


def test_a_bad_purpose_and_a_duplicate_row_are_named(tmp_path: Path, study: dict[str, Any]) -> None:
    path = write(
        tmp_path,
        "small,ar-1,ernie-4.5-0.3b,0,1,2,,gold",
        "small,ar-1,r1-1.5b,0,1,2,,attention",
        "small,ar-1,ernie-4.5-0.3b,0,5,6,again,calibration",
        header=HEADER + ",purpose",
    )
    errors = refused(path).strip().splitlines()
    assert errors == [
        "3: purpose: 'attention' is not gold or calibration",
        "4: row: the same answer as line 2",
    ]
    assert GoldAnswer.objects.count() == 0


def test_every_problem_of_a_file_is_reported_at_once(tmp_path: Path, study: dict[str, Any]) -> None:
    errors = refused(
        write(tmp_path, "nope,ar-1,x,0,1,2,", "small,ar-1,ernie-4.5-0.3b,0,9,1,")
    ).splitlines()
    assert errors == ["2: campaign: unknown campaign 'nope'", "3: low: 9 is above high (1)"]


def test_an_update_that_fails_leaves_the_previous_marks(
    tmp_path: Path, study: dict[str, Any]
) -> None:
    run(write(tmp_path, "small,ar-1,ernie-4.5-0.3b,0,7,9,first"))
    before = marks()
    refused(write(tmp_path, "small,ar-1,ernie-4.5-0.3b,0,1,2,changed", "small,ar-1,nope,0,1,2,"))
    assert marks() == before


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("", "1: header: the file is empty"),
        ("campaign,item_id,model,sample,low,note\n", "1: high: missing column"),
        (HEADER + ",extra\n", "1: extra: unknown column"),
        (HEADER + ",low\n", "1: low: the column appears twice"),
        (HEADER + "\n", "2: row: no rows after the header"),
    ],
)
def test_empty_files_and_bad_headers_are_refused(
    tmp_path: Path, study: dict[str, Any], content: str, problem: str
) -> None:
    path = tmp_path / "gold.csv"
    path.write_text(content, encoding="utf-8")
    assert problem in refused(path)
    assert GoldAnswer.objects.count() == 0


def test_a_file_that_is_not_utf8_is_refused(tmp_path: Path, study: dict[str, Any]) -> None:
    path = tmp_path / "gold.csv"
    path.write_bytes((HEADER + "\nsmall,ar-1,ernie-4.5-0.3b,0,1,2,café\n").encode("latin-1"))
    assert "2: file: not UTF-8" in refused(path)


def test_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="cannot read"):
        call_command("import_gold", str(tmp_path / "none.csv"), stdout=StringIO())


def test_excel_bom_and_neutralised_notes_are_read_back(
    tmp_path: Path, study: dict[str, Any]
) -> None:
    path = tmp_path / "gold.csv"
    path.write_bytes(
        ("\ufeff" + HEADER + "\nsmall,ar-1,ernie-4.5-0.3b,0,7,9,'=not a formula\n").encode()
    )
    run(path)
    assert GoldAnswer.objects.get().note == "=not a formula"
