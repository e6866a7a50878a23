"""Exporting a campaign's CSVs from the web (issue #7): small exports download at once with the
commands' very bytes; large ones go through a real Celery worker to a file with a status line and
a download link; no worker means a clear message and nothing left waiting; admins only."""

from __future__ import annotations

import datetime
import os
import time
from collections.abc import Iterator
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.http import FileResponse, StreamingHttpResponse
from django.test import Client

from grading import exports
from grading.models import Export, ExportStatus, Rubric
from inference.models import Campaign, Suite
from tests import builders
from tests.conftest import PASSWORD, logged_in

T0 = datetime.datetime(2025, 3, 1, 9, 30, tzinfo=datetime.UTC)
HX = {"HX-Request": "true"}
HX_LIST = {**HX, "HX-Target": "exports"}
ONE_HOUR = datetime.timedelta(hours=1)


def build_study(alice: User, bob: User) -> Campaign:
    """Campaign `small` (two models, three items, two reviewers) and `other`, which must never
    appear in `small`'s exports."""
    suite = Suite.objects.create(name="sample")
    models = [builders.endpoint(slug) for slug in ("ernie-4.5-0.3b", "r1-1.5b")]
    rubric = Rubric.objects.get(version=1)
    campaigns = [
        builders.campaign(slug, suite, models, matchup=slug) for slug in ("small", "other")
    ]
    for n, code in enumerate(("AR", "CK", "AR")):
        item = builders.item(suite, f"item-{n}", code)
        for campaign in campaigns:
            for m, model in enumerate(models):
                generation = builders.generation(
                    campaign,
                    item,
                    model,
                    timings=builders.Timings(ttft_ms=120.123456 + n, decode_tps=48.5),
                    content="答案 =1+1",
                    error='=HYPERLINK("http://x")' if m else "",
                )
                for r, reviewer in enumerate((alice, bob)):
                    builders.score(
                        generation,
                        reviewer,
                        (n + m + r) % 11,
                        position=m,
                        rubric=rubric,
                        comment="清楚, 正确" if r else "=cmd|' /C calc'!A0",
                        at=T0 + datetime.timedelta(minutes=n),
                    )
    return campaigns[0]


@pytest.fixture
def study(alice: User, bob: User) -> Campaign:
    return build_study(alice, bob)


@pytest.fixture
def export_dir(settings: Any, tmp_path: Path) -> Path:
    settings.EXPORT_DIR = tmp_path / "exports"
    return settings.EXPORT_DIR


def command_bytes(tmp_path: Path, command: str, *args: str) -> bytes:
    """What `manage.py COMMAND ARGS --output FILE` writes."""
    path = tmp_path / f"{command}-{len(list(tmp_path.iterdir()))}.csv"
    call_command(command, *args, "--output", str(path), stdout=StringIO(), stderr=StringIO())
    return path.read_bytes()


def post_export(client: Client, campaign: Campaign, kind: str, **options: str) -> Any:
    return client.post(f"/campaigns/{campaign.public_id}/export/", {"kind": kind, **options})


def downloaded(response: Any) -> bytes:
    assert response.status_code == 200
    assert isinstance(response, StreamingHttpResponse | FileResponse)
    content = response.streaming_content
    assert isinstance(content, Iterator)  # a synchronous response
    return b"".join(content)


COMMANDS = {
    "scores": ("export_scores",),
    "aggregate": ("export_scores", "--aggregate"),
    "generations": ("export_generations",),
}


# --- Small exports: straight back, the commands' bytes ----------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("kind", ["scores", "aggregate", "generations"])
def test_small_export_downloads_exactly_what_the_command_writes(
    admin_client: Client, study: Campaign, tmp_path: Path, kind: str
) -> None:
    response = post_export(admin_client, study, kind)

    body = downloaded(response)
    assert body == command_bytes(tmp_path, *COMMANDS[kind], "--campaign", "small")
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    suffix = {"scores": "scores", "aggregate": "scores-aggregate", "generations": "generations"}
    assert response["Content-Disposition"] == f'attachment; filename="small-{suffix[kind]}.csv"'
    assert b"other" not in body
    assert not Export.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("kind", ["scores", "generations"])
def test_excel_option_adds_the_byte_order_mark_like_the_command(
    admin_client: Client, study: Campaign, tmp_path: Path, kind: str
) -> None:
    body = downloaded(post_export(admin_client, study, kind, bom="1"))

    assert body.startswith(b"\xef\xbb\xbfcampaign,")
    assert body == command_bytes(tmp_path, *COMMANDS[kind], "--campaign", "small", "--bom")


@pytest.mark.django_db
def test_anonymise_option_hides_usernames_like_the_command(
    admin_client: Client, study: Campaign, tmp_path: Path
) -> None:
    body = downloaded(post_export(admin_client, study, "scores", anonymize="1"))

    expected = command_bytes(
        tmp_path, "export_scores", "--campaign", "small", "--anonymize-reviewers"
    )
    assert body == expected
    assert b"alice" not in body and b"bob" not in body
    assert b",reviewer-1," in body and b",reviewer-2," in body
    plain = downloaded(post_export(admin_client, study, "scores"))
    assert b",alice," in plain


@pytest.mark.django_db
def test_unknown_export_kind_is_a_bad_request(admin_client: Client, study: Campaign) -> None:
    assert post_export(admin_client, study, "passwords").status_code == 400


# --- The page -----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_export_page_shows_each_csv_with_its_row_count(
    admin_client: Client, study: Campaign
) -> None:
    html = admin_client.get(f"/campaigns/{study.public_id}/export/").content.decode()

    for kind in ("scores", "aggregate", "generations"):
        assert f'name="kind" value="{kind}"' in html
    assert "12 rows, one per score" in html
    assert "4 rows, one per task type × model" in html
    assert "6 rows, one per answer" in html
    assert 'name="bom"' in html and 'name="anonymize"' in html
    assert "written by a worker" not in html


@pytest.mark.django_db
def test_export_page_says_which_exports_a_worker_will_write(
    admin_client: Client, study: Campaign, settings: Any
) -> None:
    settings.EXPORT_INLINE_MAX_ROWS = 10

    html = admin_client.get(f"/campaigns/{study.public_id}/export/").content.decode()

    # 12 scores (read by both score exports) are over the limit; 6 generations are not.
    rows = html.split("<tr>")[1:4]
    assert ["written by a worker" in row for row in rows] == [True, True, False]
    assert "Exports of up to 10 rows download at once" in html


@pytest.mark.django_db
def test_campaign_page_loads_the_export_section_and_links_to_it_without_javascript(
    admin_client: Client, study: Campaign
) -> None:
    url = f"/campaigns/{study.public_id}/export/"
    page = admin_client.get(f"/campaigns/{study.public_id}/").content.decode()
    assert f'hx-get="{url}" hx-trigger="load"' in page
    assert f'<a href="{url}">' in page

    current = f"http://testserver/campaigns/{study.public_id}/"
    section = admin_client.get(
        url, headers={**HX, "HX-Target": "export", "HX-Current-URL": current}
    )
    html = section.content.decode()
    assert html.lstrip().startswith('<section class="card" id="export">')
    assert "<html" not in html
    # The form comes back to the campaign page after queueing a large export.
    assert f'name="next" value="/campaigns/{study.public_id}/"' in html


@pytest.mark.django_db
def test_status_line_polls_while_an_export_is_unfinished_and_stops_when_done(
    admin_client: Client, admin: User, study: Campaign, export_dir: Path
) -> None:
    export = Export.objects.create(
        campaign=study, kind="scores", requested_by=admin, status=ExportStatus.QUEUED
    )
    url = f"/campaigns/{study.public_id}/export/"

    queued = admin_client.get(url, headers=HX_LIST).content.decode()
    assert 'hx-trigger="every 2s"' in queued and "Waiting for a worker" in queued

    Export.objects.filter(pk=export.pk).update(
        status=ExportStatus.RUNNING, rows_written=1000, rows_expected=5000
    )
    running = admin_client.get(url, headers=HX_LIST).content.decode()
    assert 'hx-trigger="every 2s"' in running and "Writing… 1000 of 5000 rows" in running
    assert "<html" not in running

    export_dir.mkdir()
    exports.path_of(export).write_text("campaign\r\n", encoding="utf-8")
    Export.objects.filter(pk=export.pk).update(status=ExportStatus.DONE, rows_written=5000)
    done = admin_client.get(url, headers=HX_LIST).content.decode()
    assert "hx-trigger" not in done
    assert f'href="/exports/{export.public_id}/download/"' in done and "5000 rows" in done


# --- Permissions --------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("persona", ["alice", "nobody"])
def test_non_admins_cannot_see_start_or_download_exports(
    request: pytest.FixtureRequest, persona: str, study: Campaign, export_dir: Path
) -> None:
    done = Export.objects.create(campaign=study, kind="scores", status=ExportStatus.DONE)
    export_dir.mkdir()
    exports.path_of(done).write_text("secret\r\n", encoding="utf-8")
    client = logged_in(request.getfixturevalue(persona))
    url = f"/campaigns/{study.public_id}/export/"

    assert client.get(url).status_code == 403
    assert client.get(url, headers=HX_LIST).status_code == 403
    assert post_export(client, study, "scores").status_code == 403
    assert client.get(f"/exports/{done.public_id}/download/").status_code == 403
    assert Export.objects.count() == 1


@pytest.mark.django_db
def test_anonymous_visitors_are_sent_to_the_login_page(study: Campaign) -> None:
    client = Client()
    for response in (
        client.get(f"/campaigns/{study.public_id}/export/"),
        post_export(client, study, "scores"),
        client.get("/exports/x/download/"),
    ):
        assert response.status_code == 302 and "/login/" in response["Location"]


@pytest.mark.django_db
def test_only_finished_exports_with_their_file_can_be_downloaded(
    admin_client: Client, study: Campaign, export_dir: Path
) -> None:
    running = Export.objects.create(campaign=study, kind="scores", status=ExportStatus.RUNNING)
    gone = Export.objects.create(campaign=study, kind="scores", status=ExportStatus.DONE)
    for export in (running, gone):
        assert admin_client.get(f"/exports/{export.public_id}/download/").status_code == 404
    assert admin_client.get("/exports/no-such-export/download/").status_code == 404


# --- Large exports: no worker, failures, clean-up ----------------------------------------------


@pytest.mark.django_db
def test_without_a_worker_a_large_export_says_so_and_leaves_nothing_queued(
    admin_client: Client, study: Campaign, settings: Any, export_dir: Path
) -> None:
    settings.EXPORT_INLINE_MAX_ROWS = 5
    settings.CELERY_TASK_DEFAULT_QUEUE = f"nobody-listens-{os.getpid()}-{time.monotonic_ns()}"

    response = admin_client.post(
        f"/campaigns/{study.public_id}/export/",
        {"kind": "scores", "anonymize": "1", "next": f"/campaigns/{study.public_id}/"},
        follow=True,
    )

    assert response.redirect_chain[-1][0] == f"/campaigns/{study.public_id}/"
    html = response.content.decode()
    assert "No Celery worker is running" in html
    assert "celery -A grading worker" in html
    assert (
        "python manage.py export_scores --campaign small --anonymize-reviewers "
        "--output small-scores.csv" in html
    )
    assert not Export.objects.exists()
    assert not export_dir.exists()


@pytest.mark.django_db
def test_a_large_export_already_waiting_is_not_queued_twice(
    admin_client: Client, study: Campaign, settings: Any
) -> None:
    settings.EXPORT_INLINE_MAX_ROWS = 5
    settings.CELERY_TASK_DEFAULT_QUEUE = f"nobody-listens-{os.getpid()}-{time.monotonic_ns()}"
    waiting = Export.objects.create(campaign=study, kind="generations", bom=True)

    response = post_export(admin_client, study, "generations", bom="1")

    assert response.status_code == 302
    assert list(Export.objects.all()) == [waiting]
    # An old one still waiting (its message lost, say) does not stop a new request.
    Export.objects.filter(pk=waiting.pk).update(created_at=waiting.created_at - ONE_HOUR)
    response = post_export(admin_client, study, "generations", bom="1")
    assert list(Export.objects.all()) == [waiting]  # no worker answered: nothing new queued
    assert "No Celery worker is running" in admin_client.get(response["Location"]).content.decode()


@pytest.mark.django_db
def test_a_failure_while_writing_marks_the_export_failed_and_leaves_no_file(
    admin_client: Client, study: Campaign, export_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_rows = exports.score_rows

    def rows_then_failure(*args: Any, **kwargs: Any) -> Any:
        yield from list(real_rows(*args, **kwargs))[:3]
        raise RuntimeError("the database went away")

    monkeypatch.setattr(exports, "score_rows", rows_then_failure)
    export = Export.objects.create(campaign=study, kind="scores")

    assert exports.run_export(export.pk) == "failed"

    export.refresh_from_db()
    assert export.status == ExportStatus.FAILED and export.finished_at is not None
    assert export.error == "RuntimeError: the database went away"
    assert list(export_dir.iterdir()) == []  # neither the file nor its temporary
    html = admin_client.get(f"/campaigns/{study.public_id}/export/").content.decode()
    assert "Failed: RuntimeError: the database went away" in html
    assert admin_client.get(f"/exports/{export.public_id}/download/").status_code == 404
    # A second delivery of the same message does nothing.
    assert exports.run_export(export.pk) == "skipped"


@pytest.mark.django_db
def test_only_the_newest_finished_exports_of_a_campaign_are_kept(
    study: Campaign, export_dir: Path
) -> None:
    export_dir.mkdir()
    made = []
    for _ in range(exports.KEEP_PER_CAMPAIGN + 2):
        export = Export.objects.create(campaign=study, kind="scores", status=ExportStatus.DONE)
        exports.path_of(export).write_text("x", encoding="utf-8")
        made.append(export)
    running = Export.objects.create(campaign=study, kind="scores", status=ExportStatus.RUNNING)

    assert exports.prune(study) == 2

    kept = set(Export.objects.values_list("pk", flat=True))
    assert kept == {e.pk for e in made[2:]} | {running.pk}
    assert sorted(p.name for p in export_dir.iterdir()) == sorted(
        f"{e.public_id}.csv" for e in made[2:]
    )


# --- Large exports through a real Celery worker process ----------------------------------------


@pytest.fixture
def worker_queue(settings: Any) -> str:
    queue = f"export-{os.getpid()}-{time.monotonic_ns()}"
    settings.CELERY_TASK_DEFAULT_QUEUE = queue
    return queue


def wait_until_finished(client: Client, campaign: Campaign, seconds: float = 60) -> list[str]:
    """Poll the status line as the page does; return what each poll showed."""
    shown = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        html = client.get(f"/campaigns/{campaign.public_id}/export/", headers=HX_LIST)
        shown.append(html.content.decode())
        if "hx-trigger" not in shown[-1]:
            return shown
        time.sleep(0.2)
    raise AssertionError(f"the export did not finish: {shown[-1]}")


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_large_export_is_written_by_a_worker_and_downloads_the_commands_bytes(
    celery_worker_process: Any,
    worker_queue: str,
    settings: Any,
    export_dir: Path,
    tmp_path: Path,
) -> None:
    admin = User.objects.create_user("admin", password=PASSWORD, is_staff=True)
    other_admin = User.objects.create_user("admin2", password=PASSWORD, is_staff=True)
    study = build_study(
        User.objects.create_user("alice", password=PASSWORD),
        User.objects.create_user("bob", password=PASSWORD),
    )
    settings.EXPORT_INLINE_MAX_ROWS = 5
    worker = celery_worker_process(queue=worker_queue, EXPORT_DIR=str(export_dir))
    client = logged_in(admin)

    response = post_export(client, study, "scores", bom="1")

    assert response.status_code == 302
    assert response["Location"] == f"/campaigns/{study.public_id}/export/"
    export = Export.objects.get()
    assert (export.kind, export.bom, export.requested_by, export.rows_expected) == (
        "scores",
        True,
        admin,
        12,
    )
    polls = wait_until_finished(client, study)
    export.refresh_from_db()
    assert export.status == ExportStatus.DONE, (export.error, worker.output())
    assert export.rows_written == 12
    assert 'hx-trigger="every 2s"' not in polls[-1]
    assert f"/exports/{export.public_id}/download/" in polls[-1]

    # Any admin may download it; the bytes are the command's.
    body = downloaded(logged_in(other_admin).get(f"/exports/{export.public_id}/download/"))
    assert body == command_bytes(tmp_path, "export_scores", "--campaign", "small", "--bom")
    assert [p.name for p in export_dir.iterdir()] == [f"{export.public_id}.csv"]
    assert "gradebench.write_export" in worker.output()


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_worker_that_cannot_write_the_export_marks_it_failed(
    celery_worker_process: Any, worker_queue: str, settings: Any, tmp_path: Path
) -> None:
    admin = User.objects.create_user("admin", password=PASSWORD, is_staff=True)
    study = build_study(
        User.objects.create_user("alice", password=PASSWORD),
        User.objects.create_user("bob", password=PASSWORD),
    )
    settings.EXPORT_INLINE_MAX_ROWS = 5
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the export folder should be", encoding="utf-8")
    celery_worker_process(queue=worker_queue, EXPORT_DIR=str(blocker / "exports"))
    client = logged_in(admin)

    assert post_export(client, study, "generations").status_code == 302

    polls = wait_until_finished(client, study)
    export = Export.objects.get()
    assert export.status == ExportStatus.FAILED
    assert export.error.startswith(("FileExistsError", "NotADirectoryError"))
    assert "Failed: " in polls[-1]
    assert blocker.read_text(encoding="utf-8").startswith("a file where")


@pytest.mark.django_db
def test_rows_written_is_recorded_while_the_export_runs(
    study: Campaign, export_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(exports, "PROGRESS_EVERY", 5)
    real_rows = exports.score_rows
    seen: list[tuple[str, int]] = []

    def watched(*args: Any, **kwargs: Any) -> Any:
        for n, row in enumerate(real_rows(*args, **kwargs)):
            if n in (3, 7, 11):
                seen.append(Export.objects.values_list("status", "rows_written").get())
            yield row

    monkeypatch.setattr(exports, "score_rows", watched)
    export = Export.objects.create(campaign=study, kind="scores", rows_expected=12)

    assert exports.run_export(export.pk) == "done"

    assert seen == [("running", 0), ("running", 5), ("running", 10)]
    export.refresh_from_db()
    assert (export.status, export.rows_written) == ("done", 12)


@pytest.mark.django_db
def test_export_page_speaks_chinese(admin_client: Client, study: Campaign) -> None:
    admin_client.post("/i18n/setlang/", {"language": "zh-hans", "next": "/"})

    html = admin_client.get(f"/campaigns/{study.public_id}/export/").content.decode()

    assert "导出 CSV" in html and "12 行,每条评分一行" in html and "用于 Excel" in html
