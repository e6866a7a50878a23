"""A campaign's CSV exports from the web (DESIGN §4.2, §4.4): the commands' bytes, downloaded.

Rows come from the very functions the commands use (`grading.scores_export`,
`inference.generations_export`) and are written by `inference.csv_writing`, so a download is
byte for byte what `export_scores --campaign SLUG` (or `export_generations`) writes.

An export reading up to `settings.EXPORT_INLINE_MAX_ROWS` rows streams straight back
(`csv_chunks`). A larger one becomes an `Export` that a Celery worker writes to
`settings.EXPORT_DIR` (`request_export`, then `run_export` in the worker); only the newest
`KEEP_PER_CAMPAIGN` finished exports of a campaign are kept, older ones go with their files.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from celery import current_app
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from inference.csv_writing import RowCells, atomic_text_file, csv_lines, format_row, write_csv
from inference.generations_export import columns, generation_rows, generations_for
from inference.models import Campaign

from .models import Export, ExportKind, ExportStatus
from .scores_export import (
    AGGREGATE_COLUMNS,
    COLUMNS,
    aggregate_rows,
    format_score_row,
    score_rows,
    scores_for,
)
from .worker_ping import worker_responds

logger = logging.getLogger(__name__)

WRITE_EXPORT = "gradebench.write_export"
"""The name of the task in `tasks.py` that runs `run_export` (task names are a contract)."""
KEEP_PER_CAMPAIGN = 10
PROGRESS_EVERY = 1000  # rows between two updates of Export.rows_written
CHUNK_CHARS = 64 * 1024  # text per piece of a streamed download
WORKER_PING_S = 2.0
DOUBLE_SUBMIT_S = 60  # an identical request this soon after is the same click, not a new export
SUFFIXES = {
    ExportKind.SCORES: "scores",
    ExportKind.AGGREGATE: "scores-aggregate",
    ExportKind.GENERATIONS: "generations",
}


class NoWorker(Exception):
    """No Celery worker answered: a queued export would wait forever."""


def filename(campaign: Campaign, kind: str) -> str:
    """The name a download is saved under: `<campaign>-scores.csv` and so on."""
    return f"{campaign.slug}-{SUFFIXES[ExportKind(kind)]}.csv"


def path_of(export: Export) -> Path:
    """Where a worker writes `export` (its opaque public id, never anything a user typed)."""
    return Path(settings.EXPORT_DIR) / f"{export.public_id}.csv"


def equivalent_command(campaign: Campaign, kind: str, *, bom: bool, anonymize: bool) -> str:
    """The `manage.py` command that writes the same file."""
    command = "export_generations" if kind == ExportKind.GENERATIONS else "export_scores"
    words = ["python", "manage.py", command, "--campaign", campaign.slug]
    if kind == ExportKind.AGGREGATE:
        words.append("--aggregate")
    if anonymize and kind == ExportKind.SCORES:
        words.append("--anonymize-reviewers")
    if bom:
        words.append("--bom")
    words += ["--output", filename(campaign, kind)]
    return " ".join(words)


def row_counts(campaign: Campaign) -> dict[str, int]:
    """Rows each export of `campaign` would have: per score, per aggregate group, per answer."""
    scores = scores_for([campaign.slug]).order_by()
    groups = scores.values("generation__item__task_type", "generation__endpoint").distinct()
    return {
        ExportKind.SCORES: scores.count(),
        ExportKind.AGGREGATE: groups.count(),
        ExportKind.GENERATIONS: generations_for([campaign.slug]).count(),
    }


def is_large(kind: str, counts: dict[str, int]) -> bool:
    """Whether the export is left to a worker: by the rows it reads (the aggregate reads every
    score), more than `EXPORT_INLINE_MAX_ROWS`."""
    read = counts[ExportKind.SCORES if kind == ExportKind.AGGREGATE else kind]
    return read > settings.EXPORT_INLINE_MAX_ROWS


def header_and_rows(
    kind: str, campaign: Campaign, *, anonymize: bool = False
) -> tuple[Sequence[str], Iterator[tuple[Any, ...]]]:
    """The columns and the rows of one export of one campaign, as its command makes them."""
    if kind == ExportKind.SCORES:
        return COLUMNS, score_rows(scores_for([campaign.slug]), anonymize=anonymize)
    if kind == ExportKind.AGGREGATE:
        return AGGREGATE_COLUMNS, aggregate_rows(scores_for([campaign.slug]))
    if kind == ExportKind.GENERATIONS:
        return list(columns()), generation_rows(generations_for([campaign.slug]))
    raise ValueError(f"unknown export kind {kind!r}")


def cells_of(kind: str) -> RowCells:
    """How one row of the export `kind` becomes its cells: as its command writes them."""
    return format_score_row if kind == ExportKind.SCORES else format_row


def csv_chunks(
    kind: str, campaign: Campaign, *, bom: bool = False, anonymize: bool = False
) -> Iterator[bytes]:
    """The export's bytes in pieces of about `CHUNK_CHARS`, for a streamed response."""
    header, rows = header_and_rows(kind, campaign, anonymize=anonymize)
    pending: list[str] = []
    size = 0
    for line in csv_lines(header, rows, bom=bom, cells=cells_of(kind)):
        pending.append(line)
        size += len(line)
        if size >= CHUNK_CHARS:
            yield "".join(pending).encode("utf-8")
            pending, size = [], 0
    if pending:
        yield "".join(pending).encode("utf-8")


def request_export(
    campaign: Campaign,
    kind: str,
    *,
    bom: bool,
    anonymize: bool,
    user_id: int | None,
    expected: int,
) -> Export:
    """Queue an export for a worker, once the transaction commits; the same one asked for in
    the last `DOUBLE_SUBMIT_S` and still unfinished is returned instead of a second.

    Raises NoWorker, creating nothing, when no worker answers a ping within `WORKER_PING_S`.
    """
    anonymize = anonymize and kind == ExportKind.SCORES
    waiting = (
        Export.objects.active()
        .filter(
            campaign=campaign,
            kind=kind,
            bom=bom,
            anonymize_reviewers=anonymize,
            created_at__gte=timezone.now() - timedelta(seconds=DOUBLE_SUBMIT_S),
        )
        .first()
    )
    if waiting is not None:
        return waiting
    queue = settings.CELERY_TASK_DEFAULT_QUEUE
    if worker_responds(timeout_s=WORKER_PING_S, queue=queue) is None:
        raise NoWorker
    export = Export.objects.create(
        campaign=campaign,
        kind=kind,
        bom=bom,
        anonymize_reviewers=anonymize,
        requested_by_id=user_id,
        rows_expected=expected,
    )
    # By name: the task module imports this one, so this one does not import it back.
    transaction.on_commit(
        lambda: current_app.send_task(
            WRITE_EXPORT, args=(export.pk,), queue=queue, ignore_result=True
        )
    )
    return export


def _reporting(rows: Iterable[tuple[Any, ...]], export_id: int) -> Iterator[tuple[Any, ...]]:
    """Pass the rows on, recording every `PROGRESS_EVERY` how many went by."""
    for count, row in enumerate(rows, start=1):
        yield row
        if count % PROGRESS_EVERY == 0:
            Export.objects.filter(pk=export_id).update(rows_written=count)


def run_export(export_id: int) -> str:
    """Write a queued export to its file (atomically: all of it or nothing); return its status.

    Only the worker that moves it from queued to running writes it, so a message delivered
    twice does nothing the second time. Any failure marks the export failed with the error and
    leaves no file behind.
    """
    claimed = Export.objects.filter(pk=export_id, status=ExportStatus.QUEUED).update(
        status=ExportStatus.RUNNING
    )
    if not claimed:
        return "skipped"
    export = Export.objects.select_related("campaign").get(pk=export_id)
    path = path_of(export)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        header, rows = header_and_rows(
            export.kind, export.campaign, anonymize=export.anonymize_reviewers
        )
        with atomic_text_file(path) as stream:
            written = write_csv(
                stream,
                header,
                _reporting(rows, export.pk),
                bom=export.bom,
                cells=cells_of(export.kind),
            )
    except Exception as error:
        logger.exception("export %s failed", export.public_id)
        Export.objects.filter(pk=export.pk).update(
            status=ExportStatus.FAILED,
            error=f"{type(error).__name__}: {error}",
            finished_at=timezone.now(),
        )
        return ExportStatus.FAILED
    Export.objects.filter(pk=export.pk).update(
        status=ExportStatus.DONE, rows_written=written, finished_at=timezone.now()
    )
    prune(export.campaign)
    return ExportStatus.DONE


def prune(campaign: Campaign, keep: int = KEEP_PER_CAMPAIGN) -> int:
    """Delete the campaign's finished exports but the newest `keep`, files and all."""
    finished = Export.objects.finished().filter(campaign=campaign).order_by("-created_at", "-pk")
    old = list(finished[keep:])
    for export in old:
        path_of(export).unlink(missing_ok=True)
    Export.objects.filter(pk__in=[export.pk for export in old]).delete()
    return len(old)


def recent(campaign: Campaign) -> list[Export]:
    """The campaign's exports, newest first, as the page lists them."""
    listed = campaign.exports.select_related("requested_by").order_by("-created_at", "-pk")
    return list(listed[:KEEP_PER_CAMPAIGN])
