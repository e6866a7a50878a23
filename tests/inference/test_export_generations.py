"""`manage.py export_generations` (DESIGN §4.4): the columns, the values, formula injection,
the options, atomic files, and a query count that does not grow with the rows."""

from __future__ import annotations

import csv
import datetime
import math
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from inference import csv_writing
from inference.models import Campaign, Generation, ModelEndpoint, TaskItem
from tests import builders

pytestmark = pytest.mark.django_db

HEADER = (
    "campaign,matchup,task_type,item_id,model,sample,status,attempts,finish_reason,ttft_ms,"
    "ttfa_ms,response_time_ms,prompt_tokens,completion_tokens,total_tokens,reasoning_tokens,"
    "decode_tps,e2e_tps,tpot_ms,usage_source,simulated,error,timing_quality,scheduling_lag_ms,"
    "source"
)
FORMULAS = ["=cmd|' /C calc'!A0", "+1+1", "-2+3", "@SUM(A1:A2)", "\t=1+1", "\r=1+1"]


def export(*args: str) -> str:
    out = StringIO()
    call_command("export_generations", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def export_rows(*args: str) -> list[dict[str, str]]:
    return list(csv.DictReader(StringIO(export(*args), newline="")))


def generation(
    campaign: Campaign, item: TaskItem, endpoint: ModelEndpoint, sample: int = 0, **fields: Any
) -> Generation:
    return Generation.objects.create(
        campaign=campaign, item=item, endpoint=endpoint, sample=sample, **fields
    )


@pytest.fixture
def study() -> dict[str, Any]:
    return builders.two_campaigns()


def test_header_is_exactly_the_documented_columns(study: dict[str, Any]) -> None:
    assert export().splitlines()[0] == HEADER
    assert export("--with-text").splitlines()[0] == HEADER + ",content,reasoning"


def test_each_generation_is_one_row_with_its_values(study: dict[str, Any]) -> None:
    generation(
        study["small"],
        study["items"]["ar-1"],
        study["ernie"],
        status="succeeded",
        attempts=2,
        finish_reason="stop",
        ttft_ms=123.456789,
        ttfa_ms=130.0,
        response_time_ms=2500.5,
        prompt_tokens=31,
        completion_tokens=120,
        total_tokens=151,
        reasoning_tokens=0,
        decode_tps=48.12345,
        e2e_tps=47.99,
        tpot_ms=20.7801,
        usage_source="server",
        simulated=True,
        timing_quality="degraded",
        scheduling_lag_ms=23.5,
        content="猫之于老鼠,犹如狗之于骨头",
        reasoning="想一想",
    )
    generation(study["small"], study["items"]["ar-1"], study["r1"], status="queued")

    rows = export_rows("--with-text")

    assert len(rows) == Generation.objects.count() == 2
    assert rows[0] == {
        "campaign": "small",
        "matchup": "small",
        "task_type": "AR",
        "item_id": "ar-1",
        "model": "ernie-4.5-0.3b",
        "sample": "0",
        "status": "succeeded",
        "attempts": "2",
        "finish_reason": "stop",
        "ttft_ms": "123.457",
        "ttfa_ms": "130",
        "response_time_ms": "2500.5",
        "prompt_tokens": "31",
        "completion_tokens": "120",
        "total_tokens": "151",
        "reasoning_tokens": "0",
        "decode_tps": "48.123",
        "e2e_tps": "47.99",
        "tpot_ms": "20.78",
        "usage_source": "server",
        "simulated": "true",
        "error": "",
        "timing_quality": "degraded",
        "scheduling_lag_ms": "23.5",
        "source": "generated",
        "content": "猫之于老鼠,犹如狗之于骨头",
        "reasoning": "想一想",
    }
    assert (rows[1]["model"], rows[1]["status"]) == ("r1-1.5b", "queued")


def test_missing_timings_and_counts_are_empty_cells_never_zero(study: dict[str, Any]) -> None:
    generation(
        study["small"],
        study["items"]["ar-1"],
        study["ernie"],
        status="failed",
        attempts=3,
        error="HTTP 500",
    )

    [row] = export_rows()

    columns = HEADER.split(",")
    local = columns[columns.index("finish_reason") : columns.index("simulated")]
    for column in (*local, "timing_quality", "scheduling_lag_ms"):
        assert row[column] == "", column
    assert (row["status"], row["attempts"], row["error"]) == ("failed", "3", "HTTP 500")


def test_simulated_is_written_as_true_or_false(study: dict[str, Any]) -> None:
    generation(study["small"], study["items"]["ar-1"], study["ernie"], simulated=True)
    generation(study["small"], study["items"]["ar-1"], study["r1"], simulated=False)

    assert [row["simulated"] for row in export_rows()] == ["true", "false"]


def test_rows_are_ordered_by_campaign_task_type_item_model_and_sample(
    study: dict[str, Any],
) -> None:
    # "zz" sorts after "ck-1" by name but AR comes before CK in the task types' order.
    late_ar = builders.item(study["suite"], "zz", "AR")
    ck, ar = study["items"]["ck-1"], study["items"]["ar-1"]
    for campaign, item, endpoint, sample in [
        (study["vision"], ar, study["ernie"], 0),
        (study["small"], ck, study["ernie"], 0),
        (study["small"], late_ar, study["ernie"], 0),
        (study["small"], ar, study["r1"], 1),
        (study["small"], ar, study["r1"], 0),
        (study["small"], ar, study["ernie"], 0),
    ]:
        generation(campaign, item, endpoint, sample)

    order = [
        (row["campaign"], row["task_type"], row["item_id"], row["model"], row["sample"])
        for row in export_rows()
    ]

    assert order == [
        ("small", "AR", "ar-1", "ernie-4.5-0.3b", "0"),
        ("small", "AR", "ar-1", "r1-1.5b", "0"),
        ("small", "AR", "ar-1", "r1-1.5b", "1"),
        ("small", "AR", "zz", "ernie-4.5-0.3b", "0"),
        ("small", "CK", "ck-1", "ernie-4.5-0.3b", "0"),
        ("vision", "AR", "ar-1", "ernie-4.5-0.3b", "0"),
    ]


def test_campaign_option_filters_and_can_be_repeated(study: dict[str, Any]) -> None:
    other = builders.campaign("other", study["suite"], [study["ernie"]])
    for campaign in (study["small"], study["vision"], other):
        generation(campaign, study["items"]["ar-1"], study["ernie"])

    def campaigns(*args: str) -> list[str]:
        return [row["campaign"] for row in export_rows(*args)]

    assert campaigns() == ["other", "small", "vision"]
    assert campaigns("--campaign", "vision") == ["vision"]
    assert campaigns("--campaign", "vision", "--campaign", "small") == ["small", "vision"]
    assert campaigns("--campaign", "small", "--campaign", "small") == ["small"]


def test_unknown_campaign_is_an_error_naming_it_and_the_known_ones(
    study: dict[str, Any],
) -> None:
    out = StringIO()
    with pytest.raises(CommandError) as raised:
        call_command(
            "export_generations",
            "--campaign",
            "small",
            "--campaign",
            "nope",
            stdout=out,
            stderr=StringIO(),
        )

    assert str(raised.value) == "no campaign 'nope' (known: small, vision)"
    assert out.getvalue() == ""


@pytest.mark.parametrize("payload", FORMULAS)
def test_every_text_cell_is_neutralised_against_formula_injection(
    study: dict[str, Any], payload: str
) -> None:
    campaign = builders.campaign("inject", study["suite"], [study["ernie"]], matchup=payload)
    item = builders.item(study["suite"], payload)
    generation(
        campaign,
        item,
        study["ernie"],
        status="failed",
        finish_reason=payload[:32],
        error=payload,
        content=payload,
        reasoning=payload,
        decode_tps=-1.5,
    )

    [row] = export_rows("--campaign", "inject", "--with-text")

    for column in ("matchup", "item_id", "error", "content"):
        assert row[column] == "'" + payload, column
    assert row["finish_reason"] == "'" + payload[:32]
    assert row["reasoning"] == "'" + payload
    assert row["decode_tps"] == "-1.5"  # a negative number is a number, not a formula
    assert row["campaign"] == "inject"


def test_harmless_text_is_left_as_it_is(study: dict[str, Any]) -> None:
    generation(
        study["small"],
        study["items"]["ar-1"],
        study["ernie"],
        error="timeout after 20 s",
        content="answer = 42 - 1",
        reasoning="'quoted already",
    )

    [row] = export_rows("--with-text")

    assert (row["error"], row["content"], row["reasoning"]) == (
        "timeout after 20 s",
        "answer = 42 - 1",
        "'quoted already",
    )


def test_commas_quotes_and_line_breaks_in_text_round_trip(study: dict[str, Any]) -> None:
    content = 'He said "yes, twice",\nthen left;\r\nend, 完'
    reasoning = '"\n"'
    generation(
        study["small"], study["items"]["ar-1"], study["ernie"], content=content, reasoning=reasoning
    )

    text = export("--with-text")
    rows = list(csv.reader(StringIO(text, newline="")))

    assert len(rows) == 2
    assert rows[1][-2:] == [content, reasoning]
    assert text.endswith("\r\n") and text.splitlines()[0] == HEADER + ",content,reasoning"


def test_bom_comes_first_and_only_when_asked(study: dict[str, Any]) -> None:
    generation(study["small"], study["items"]["ar-1"], study["ernie"], content="\ufeffodd")

    with_bom = export("--bom", "--with-text")
    without = export("--with-text")

    assert with_bom.startswith("\ufeffcampaign,")
    assert with_bom[1:] == without
    assert without.startswith("campaign,")


def test_stdout_receives_utf8_bytes_with_crlf_line_ends(
    study: dict[str, Any], capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    generation(study["small"], study["items"]["ar-1"], study["ernie"], content="狗")

    call_command("export_generations", "--bom", "--with-text")

    data = capsysbinary.readouterr().out
    assert data.startswith(b"\xef\xbb\xbfcampaign,")
    assert data.count(b"\r\n") == 2 and data.endswith(",狗,\r\n".encode())


def test_output_writes_the_file_and_reports_it(study: dict[str, Any], tmp_path: Path) -> None:
    generation(study["small"], study["items"]["ar-1"], study["ernie"], content="狗")
    generation(study["small"], study["items"]["ck-1"], study["ernie"])
    target = tmp_path / "generations.csv"
    out, err = StringIO(), StringIO()

    call_command(
        "export_generations",
        "--output",
        str(target),
        "--with-text",
        "--bom",
        stdout=out,
        stderr=err,
    )

    data = target.read_bytes()
    assert data.startswith(b"\xef\xbb\xbf") and data.count(b"\r\n") == 3
    assert data.decode("utf-8-sig") == export("--with-text")
    assert out.getvalue() == ""
    assert err.getvalue() == f"wrote 2 generations to {target}\n"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["generations.csv"]


def test_a_failed_export_leaves_no_partial_file(
    study: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for sample in range(5):
        generation(study["small"], study["items"]["ar-1"], study["ernie"], sample)
    target = tmp_path / "generations.csv"
    target.write_text("the previous export\n", encoding="utf-8")
    real_format_cell = csv_writing.format_cell
    cells = 0

    def failing_format_cell(value: object) -> str:
        nonlocal cells
        cells += 1
        if cells > 3 * len(HEADER.split(",")):  # in the fourth row
            raise RuntimeError("database went away")
        return real_format_cell(value)

    monkeypatch.setattr(csv_writing, "format_cell", failing_format_cell)

    with pytest.raises(RuntimeError, match="database went away"):
        call_command(
            "export_generations", "--output", str(target), stdout=StringIO(), stderr=StringIO()
        )

    assert target.read_text(encoding="utf-8") == "the previous export\n"
    assert [path.name for path in tmp_path.iterdir()] == ["generations.csv"]


def test_an_unwritable_output_is_a_command_error(study: dict[str, Any], tmp_path: Path) -> None:
    target = tmp_path / "missing-folder" / "generations.csv"

    with pytest.raises(CommandError, match=r"cannot write .*generations\.csv"):
        call_command(
            "export_generations", "--output", str(target), stdout=StringIO(), stderr=StringIO()
        )

    assert not target.parent.exists()


class TerminalStringIO(StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_only_for_a_file_on_a_terminal(
    study: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    generation(study["small"], study["items"]["ar-1"], study["ernie"])
    target = str(tmp_path / "generations.csv")

    call_command("export_generations", stdout=StringIO(), stderr=TerminalStringIO())
    assert capsys.readouterr().err == ""
    call_command("export_generations", "--output", target, stderr=StringIO())
    assert capsys.readouterr().err == ""
    call_command("export_generations", "--output", target, stderr=TerminalStringIO())
    assert "0/1 " in capsys.readouterr().err


@pytest.mark.parametrize("count", [2, 2500])
def test_query_count_does_not_grow_with_the_generations(
    study: dict[str, Any], count: int, django_assert_max_num_queries: Any
) -> None:
    Generation.objects.bulk_create(
        Generation(
            campaign=study["small"],
            item=study["items"]["ar-1"],
            endpoint=study["ernie"],
            sample=sample,
        )
        for sample in range(count)
    )

    with django_assert_max_num_queries(2):  # the campaign check, then the export itself
        text = export("--campaign", "small", "--with-text")

    assert text.count("\r\n") == count + 1


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        (None, ""),
        (0, "0"),
        (0.0, "0"),
        (-0.0001, "0"),
        (-1.5, "-1.5"),
        (1e16, "10000000000000000"),
        (math.nan, ""),
        (-math.inf, ""),
        (True, "true"),
        (False, "false"),
        (datetime.datetime(2025, 3, 1, 9, 30, tzinfo=datetime.UTC), "2025-03-01T09:30:00+00:00"),
        ("-1.5", "'-1.5"),
        ("", ""),
    ],
)
def test_format_cell(value: object, cell: str) -> None:
    assert csv_writing.format_cell(value) == cell
