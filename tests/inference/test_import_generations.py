"""`manage.py import_generations` (DESIGN §4.4a): answers produced elsewhere come in whole or
not at all, an export imports back unchanged, and bad input is named `line: column: reason`."""

from __future__ import annotations

import csv
import json
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from inference import dispatch
from inference.generations_import import MAX_TEXT_CHARS
from inference.models import (
    Campaign,
    CampaignModel,
    CampaignStatus,
    Generation,
    GenerationSource,
    ModelEndpoint,
    Suite,
)
from tests import builders

pytestmark = pytest.mark.django_db

HEADER = "campaign,matchup,task_type,item_id,model,sample,content"
LEAKY = "我是文心一言，答案是B。"


def run_import(path: Path, *args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("import_generations", str(path), *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def rejected(path: Path, *args: str) -> list[str]:
    """The problems of a refused import, after checking it wrote nothing."""
    before = (
        Generation.objects.count(),
        Campaign.objects.count(),
        ModelEndpoint.objects.count(),
        CampaignModel.objects.count(),
    )
    err = StringIO()
    with pytest.raises(CommandError, match="nothing was imported"):
        call_command("import_generations", str(path), *args, stdout=StringIO(), stderr=err)
    after = (
        Generation.objects.count(),
        Campaign.objects.count(),
        ModelEndpoint.objects.count(),
        CampaignModel.objects.count(),
    )
    assert after == before
    return err.getvalue().splitlines()


def write(tmp_path: Path, text: str, name: str = "answers.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8", newline="")
    return path


def export(*args: str) -> str:
    out = StringIO()
    call_command("export_generations", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def export_rows(*args: str) -> list[dict[str, str]]:
    return list(csv.DictReader(StringIO(export(*args), newline="")))


@pytest.fixture
def suite() -> Suite:
    """Suite `sample`: items ar-1 (AR) and ck-1 (CK), and nothing else."""
    made = Suite.objects.create(name="sample")
    builders.item(made, "ar-1", "AR")
    builders.item(made, "ck-1", "CK")
    return made


def a_run(suite: Suite) -> Campaign:
    """A finished campaign of two models on `suite`, messy: reasoning, Chinese, a formula, a
    leak, missing figures, a failure and a second sample."""
    ernie, r1 = builders.endpoint("ernie-4.5-0.3b"), builders.endpoint("r1-1.5b")
    run = builders.campaign("small", suite, [ernie, r1], matchup="small", samples=2)
    items = {item.external_id: item for item in suite.items.all()}
    builders.generation(run, items["ar-1"], ernie, content="=1+1, or 猫之于老鼠")
    builders.generation(run, items["ar-1"], ernie, sample=1, content=LEAKY)
    builders.generation(run, items["ar-1"], r1, timings=builders.NO_TIMINGS, content="-2 is it")
    builders.generation(run, items["ck-1"], ernie, content='line one\n"quoted", two')
    builders.generation(run, items["ck-1"], r1, status="failed")
    Generation.objects.filter(endpoint=r1, item=items["ar-1"]).update(
        reasoning="@think first", ttfa_ms=12.5, tpot_ms=3.25, simulated=True
    )
    return run


def forget_runs() -> None:
    """An empty database but for the suites: what another installation starts from."""
    Generation.objects.all().delete()
    Campaign.objects.all().delete()
    ModelEndpoint.objects.all().delete()


# --- Round trip --------------------------------------------------------------------------------


def test_an_export_imports_back_unchanged(suite: Suite, tmp_path: Path) -> None:
    a_run(suite)
    before = export_rows("--with-text")
    path = write(tmp_path, export("--with-text"))
    forget_runs()

    out, _ = run_import(path)

    assert out.splitlines()[-1] == "created 5, unchanged 0"
    after = export_rows("--with-text")
    # `source` is recorded here: the only column the round trip changes.
    assert [row.pop("source") for row in before] == ["generated"] * 5
    assert [row.pop("source") for row in after] == ["imported"] * 5
    assert after == before
    assert export("--with-text").count("'=1+1") == 1  # neutralised again on the way out


def test_importing_the_same_file_again_changes_nothing(suite: Suite, tmp_path: Path) -> None:
    a_run(suite)
    path = write(tmp_path, export("--with-text"))
    forget_runs()
    run_import(path)
    stored = list(Generation.objects.order_by("pk").values())

    out, _ = run_import(path)

    assert out.splitlines()[-1] == "created 0, unchanged 5"
    assert list(Generation.objects.order_by("pk").values()) == stored


def test_a_changed_answer_is_refused_not_rewritten(suite: Suite, tmp_path: Path) -> None:
    path = write(tmp_path, f"{HEADER}\r\nnew,m,AR,ar-1,gpt-x,0,first\r\n")
    run_import(path)
    path = write(tmp_path, f"{HEADER}\r\nnew,m,AR,ar-1,gpt-x,0,second\r\n")

    assert rejected(path) == [
        "2: content: item 'ar-1' by gpt-x (sample 0) in new was imported before with other "
        "values (content differ); imported answers are not changed"
    ]
    assert Generation.objects.get().content == "first"


# --- What an import creates --------------------------------------------------------------------


def test_unknown_models_become_external_endpoints_in_a_new_finished_campaign(
    suite: Suite, tmp_path: Path
) -> None:
    path = write(
        tmp_path,
        f"{HEADER}\r\nharness,h,AR,ar-1,gpt-x,0,{LEAKY}\r\nharness,h,类比推理,ar-1,llama-y,0,B\r\n",
    )

    out, _ = run_import(path)

    assert "new campaign harness" in out
    assert "new external model gpt-x (answers imported, never called)" in out
    campaign = Campaign.objects.get(slug="harness")
    assert (campaign.suite, campaign.matchup, campaign.status) == (suite, "h", "finished")
    assert [m.endpoint.slug for m in campaign.members.select_related("endpoint")] == [
        "gpt-x",
        "llama-y",
    ]
    gpt = ModelEndpoint.objects.get(slug="gpt-x")
    assert gpt.base_url == "" and gpt.is_external
    answer = campaign.generations.get(endpoint=gpt)
    assert (answer.source, answer.status, answer.placeholder) == ("imported", "succeeded", False)
    assert answer.identity_leaks == ["文心一言"]
    assert list(Generation.objects.reviewable()) == list(campaign.generations.all())


def test_a_model_is_found_by_its_slug_or_the_model_name_its_endpoint_sends(
    suite: Suite, tmp_path: Path
) -> None:
    ModelEndpoint.objects.create(slug="ernie", name="ERNIE", model="baidu/ERNIE-4.5-0.3B-Paddle")
    path = write(
        tmp_path,
        f"{HEADER}\r\nh,,AR,ar-1,baidu/ERNIE-4.5-0.3B-Paddle,0,A\r\n"
        "h,,AR,ar-1,acme/Acme-7B Chat,0,B\r\nh,,CK,ck-1,ernie,0,C\r\n",
    )

    run_import(path)
    run_import(path)  # again: the same endpoints, nothing new

    acme = ModelEndpoint.objects.get(model="acme/Acme-7B Chat")
    assert (acme.slug, acme.name, acme.is_external) == (
        "acme-acme-7b-chat",
        "acme/Acme-7B Chat",
        True,
    )
    assert ModelEndpoint.objects.count() == 2
    ernie = ModelEndpoint.objects.get(slug="ernie")
    assert sorted(ernie.generations.values_list("content", flat=True)) == ["A", "C"]


def test_a_model_name_several_endpoints_send_must_be_given_as_a_slug(
    suite: Suite, tmp_path: Path
) -> None:
    for slug in ("qwen-a", "qwen-b"):
        ModelEndpoint.objects.create(slug=slug, name=slug, model="Qwen/Qwen2.5-VL-32B-Instruct")
    path = write(tmp_path, f"{HEADER}\r\nh,,AR,ar-1,Qwen/Qwen2.5-VL-32B-Instruct,0,A\r\n")

    assert rejected(path) == [
        "2: model: 'Qwen/Qwen2.5-VL-32B-Instruct' is the model of several endpoints "
        "(qwen-a, qwen-b): give the slug of the one that answered"
    ]
    assert not Generation.objects.exists() and ModelEndpoint.objects.count() == 2


def test_a_file_of_only_the_required_columns_imports(suite: Suite, tmp_path: Path) -> None:
    path = write(tmp_path, "campaign,task_type,item_id,model,content\nh,CK,ck-1,gpt-x,fine\n")

    assert run_import(path)[0].splitlines()[-1] == "created 1, unchanged 0"
    answer = Generation.objects.get()
    assert (answer.sample, answer.attempts, answer.ttft_ms, answer.completion_tokens) == (
        0,
        1,
        None,
        None,
    )


def test_jsonl_reads_the_same_columns(suite: Suite, tmp_path: Path) -> None:
    rows = [
        {"campaign": "h", "task_type": "AR", "item_id": "ar-1", "model": "gpt-x",
         "content": "=SUM(A1)", "completion_tokens": 40, "response_time_ms": 2000,
         "simulated": False},
        {"campaign": "h", "task_type": "CK", "item_id": "ck-1", "model": "gpt-x",
         "content": "ok", "ttft_ms": None},
    ]  # fmt: skip
    path = write(tmp_path, "\n".join(json.dumps(r) for r in rows) + "\n", "answers.jsonl")

    run_import(path)

    first = Generation.objects.get(item__external_id="ar-1")
    assert (first.content, first.completion_tokens, first.e2e_tps) == ("=SUM(A1)", 40, 20.0)
    assert export_rows("--with-text")[0]["content"] == "'=SUM(A1)"


def test_token_counts_without_times_give_no_speeds(suite: Suite, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "campaign,task_type,item_id,model,content,completion_tokens,prompt_tokens\r\n"
        "h,AR,ar-1,gpt-x,answer,120,30\r\n",
    )

    _, err = run_import(path)

    answer = Generation.objects.get()
    assert (answer.completion_tokens, answer.prompt_tokens) == (120, 30)
    assert (answer.e2e_tps, answer.decode_tps, answer.ttft_ms, answer.response_time_ms) == (
        None,
        None,
        None,
        None,
    )
    assert "1 succeeded answer(s) carry no timings: they enter no speed figure" in err


def test_suite_option_chooses_among_suites_holding_the_items(suite: Suite, tmp_path: Path) -> None:
    other = Suite.objects.create(name="other")
    builders.item(other, "ar-1", "AR")
    path = write(tmp_path, f"{HEADER}\r\nh,,AR,ar-1,gpt-x,0,answer\r\n")

    assert rejected(path) == [
        "2: campaign: h is new and its items are in several suites (other, sample); "
        "name one with --suite"
    ]
    run_import(path, "--suite", "other")
    assert Campaign.objects.get(slug="h").suite == other


def test_an_existing_campaign_keeps_its_suite(suite: Suite, tmp_path: Path) -> None:
    a_run(suite)
    Suite.objects.create(name="other")
    path = write(tmp_path, f"{HEADER}\r\nsmall,,AR,ar-1,gpt-x,0,answer\r\n")

    assert rejected(path, "--suite", "other") == ["2: campaign: small uses suite sample, not other"]
    run_import(path)
    assert Generation.objects.filter(endpoint__slug="gpt-x", campaign__slug="small").count() == 1


def test_a_draft_campaign_with_imported_answers_is_finished(suite: Suite, tmp_path: Path) -> None:
    builders.campaign("draft", suite, [], status=CampaignStatus.DRAFT)
    path = write(tmp_path, f"{HEADER}\r\ndraft,,AR,ar-1,gpt-x,0,answer\r\n")

    run_import(path)

    assert Campaign.objects.get(slug="draft").status == CampaignStatus.FINISHED


def test_dry_run_writes_nothing(suite: Suite, tmp_path: Path) -> None:
    path = write(tmp_path, f"{HEADER}\r\nh,,AR,ar-1,gpt-x,0,answer\r\n")

    out, _ = run_import(path, "--dry-run")

    assert out.splitlines()[-2:] == ["dry run: nothing was written", "created 1, unchanged 0"]
    assert not Generation.objects.exists() and not ModelEndpoint.objects.exists()


# --- Bad input: the whole file refused, nothing written -----------------------------------------


GOOD = "h,,AR,ar-1,gpt-x,0,answer"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            "campaign,task_type,item_id,model\r\nh,AR,ar-1,gpt-x\r\n",
            "1: content: missing column (required: campaign, task_type, item_id, model, content)",
        ),
        (f"{HEADER}\r\n{GOOD}\r\nh,,AR,zz-9,gpt-x,0,a\r\n",
         "3: item_id: no item 'zz-9' in suite sample (campaign h)"),
        (f"{HEADER}\r\n{GOOD}\r\nh,,CK,ar-1,gpt-x,1,a\r\n",
         "3: task_type: item 'ar-1' of suite sample is AR, not CK"),
        (f"{HEADER}\r\n{GOOD}\r\nh,,AR,ar-1,gpt-x,0,again\r\n",
         "3: sample: a second answer of item 'ar-1' by gpt-x (sample 0) in h; the first is on "
         "line 2"),
        (f"{HEADER}\r\n{GOOD}\r\nh,,CK,ck-1,gpt-x,0,  \r\n",
         "3: content: empty; a succeeded answer needs its text"),
        (f"{HEADER},ttft_ms\r\n{GOOD},-5\r\n",
         "2: ttft_ms: '-5' is negative (timings and speeds are 0 or more)"),
        (f"{HEADER},response_time_ms\r\n{GOOD},fast\r\n",
         "2: response_time_ms: 'fast' is not a number"),
        (f"{HEADER},completion_tokens\r\n{GOOD},12.5\r\n",
         "2: completion_tokens: '12.5' is not a whole number from 0 to 2147483647"),
        (f"{HEADER},status\r\n{GOOD},queued\r\n",
         "2: status: 'queued' is not one of succeeded, failed, cancelled"),
        (f"{HEADER}\r\nbad slug,,AR,ar-1,gpt-x,0,a\r\n",
         "2: campaign: 'bad slug' is not a valid slug (letters, digits, . _ -)"),
        (f"{HEADER}\r\nh,,AR,ar-1,{'m' * 201},0,a\r\n",
         "2: model: longer than 200 characters"),
        (f"{HEADER}\r\n{GOOD},extra\r\n", "2: row: has 8 cells, the header has 7"),
    ],
)  # fmt: skip
def test_bad_input_is_refused_whole(suite: Suite, tmp_path: Path, text: str, problem: str) -> None:
    assert rejected(write(tmp_path, text)) == [problem]


def test_a_file_that_is_not_utf8_is_refused(suite: Suite, tmp_path: Path) -> None:
    path = tmp_path / "answers.csv"
    path.write_bytes(f"{HEADER}\r\n{GOOD}\r\n".encode() + "h,,CK,ck-1,gpt-x,0,答".encode("gbk"))

    assert rejected(path) == ["3: file: not UTF-8 (byte 0xb4 at offset 103); save as UTF-8"]


def test_a_50_mb_answer_is_refused_with_the_limit(suite: Suite, tmp_path: Path) -> None:
    huge = "x" * (50 * 1024 * 1024)
    path = write(tmp_path, f"{HEADER}\r\n{GOOD}\r\nh,,CK,ck-1,gpt-x,0,{huge}\r\n")

    assert rejected(path) == [
        f"3: content: {len(huge):,} characters; at most {MAX_TEXT_CHARS:,} are accepted"
    ]


def test_a_clash_with_a_generated_answer_is_refused(suite: Suite, tmp_path: Path) -> None:
    a_run(suite)
    path = write(tmp_path, f"{HEADER}\r\nsmall,,AR,ar-1,ernie-4.5-0.3b,0,mine\r\n")

    assert rejected(path) == [
        "2: sample: item 'ar-1' by ernie-4.5-0.3b (sample 0) in small was generated by "
        "gradebench; it is not overwritten"
    ]


def test_every_problem_is_listed_in_file_order(suite: Suite, tmp_path: Path) -> None:
    text = f"{HEADER},ttft_ms\r\nh,,AR,ar-1,gpt-x,0,,x\r\nh,,XX,ck-1,gpt-x,0,a,1\r\n"

    assert rejected(write(tmp_path, text)) == [
        "2: content: empty; a succeeded answer needs its text",
        "2: ttft_ms: 'x' is not a number",
        "3: task_type: unknown task type 'XX'",
    ]


def test_formula_cells_are_stored_as_text_and_neutralised_on_export(
    suite: Suite, tmp_path: Path
) -> None:
    path = write(
        tmp_path,
        f"{HEADER},error\r\nh,,AR,ar-1,gpt-x,0,'=HYPERLINK(\"x\"),'@cmd\r\n"
        "h,,CK,ck-1,gpt-x,0,+1 is right,\r\n",
    )

    run_import(path)

    stored = dict(Generation.objects.values_list("item__external_id", "content"))
    assert stored == {"ar-1": '=HYPERLINK("x")', "ck-1": "+1 is right"}
    assert Generation.objects.get(item__external_id="ar-1").error == "@cmd"
    rows = export_rows("--with-text")
    assert [row["content"] for row in rows] == ['\'=HYPERLINK("x")', "'+1 is right"]
    assert rows[0]["error"] == "'@cmd"


# --- External endpoints are never called --------------------------------------------------------


def test_launch_and_retry_never_call_external_models(suite: Suite, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"{HEADER},status,error\r\nh,,AR,ar-1,gpt-x,0,answer,,\r\n"
        "h,,CK,ck-1,gpt-x,0,,failed,HTTP 500 elsewhere\r\n",
    )
    run_import(path)
    campaign = Campaign.objects.get(slug="h")

    assert dispatch.launch(campaign) == 0
    assert dispatch.retry_failed(campaign) == 0
    assert not Generation.objects.in_flight().exists()
    with pytest.raises(CommandError, match="only external models"):
        call_command("run_campaign", "h", stdout=StringIO())

    # A real model added next to the imported ones is launched as usual.
    CampaignModel.objects.create(campaign=campaign, endpoint=builders.endpoint("real"), position=1)
    out = StringIO()
    call_command("run_campaign", "h", stdout=out)
    assert "skipped gpt-x: an external model (answers imported), never called" in out.getvalue()
    assert set(Generation.objects.in_flight().values_list("endpoint__slug", flat=True)) == {"real"}
    assert Generation.objects.filter(source=GenerationSource.IMPORTED).count() == 2


def test_the_run_page_refuses_to_launch_only_external_models(
    suite: Suite, tmp_path: Path, admin_client: Any
) -> None:
    run_import(write(tmp_path, f"{HEADER}\r\n{GOOD}\r\n"))
    campaign = Campaign.objects.get(slug="h")

    response = admin_client.post(f"/campaigns/{campaign.public_id}/", {"launch": "1"}, follow=True)

    html = response.content.decode()
    assert "external models (gpt-x)" in html and "never calls them" in html
    assert "imported" in html
    assert not Generation.objects.in_flight().exists()


def test_an_empty_file_and_broken_json_lines_are_refused(suite: Suite, tmp_path: Path) -> None:
    assert rejected(write(tmp_path, f"{HEADER}\r\n")) == ["1: file: no answers in the file"]
    lines = [
        '{"campaign": "h", "task_type": "AR", "item_id": "ar-1", "model": "m", "content": "a"}',
        '{"campaign": "h", "task_type": "AR", "item_id": "ck-1", "model": "m"}',
        "[1, 2]",
        '{"campaign": "h", "task_type": "CK", "item_id": "ck-1", "model": "m", '
        '"content": "\\u0000"}',
    ]
    path = write(tmp_path, "\n".join(lines) + "\n", "answers.jsonl")

    assert rejected(path) == [
        "2: content: missing (required: campaign, task_type, item_id, model, content)",
        "3: json: each line must be a JSON object",
        "4: content: contains a NUL character, which text cannot hold",
    ]
