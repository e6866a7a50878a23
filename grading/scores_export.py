"""The scores CSV (DESIGN §4.2): what `export_scores` writes.

One row per score, in the columns of `COLUMNS`:

- `task_type` is the canonical code, `model` the endpoint's slug, `reviewer` the username (or,
  anonymised, `reviewer-1`, `reviewer-2`… numbered in order of first appearance within that one
  export, so the same person keeps one pseudonym throughout a file but not across files).
- `position` is the 0-based position the answer was shown at (0 = "A", 1 = "B", …).
- `scored_at` is ISO 8601 in UTC with its offset (`2025-03-01T09:30:00.123456+00:00`).
- `flagged` is `true` / `false`; missing timings and token counts are empty cells, never 0.
- Only regular scores: those given on gold and calibration items are left out (`scores_for`).
- Rows are ordered by campaign, task type (the study's order), item, model, sample, reviewer.
- Cells follow `inference.csv_writing` (the rules of every export): numbers with at most three
  decimals, text neutralised against formula injection.

`--aggregate` writes one row per campaign × task type × model instead (`AGGREGATE_COLUMNS`); see
`aggregate_rows` for the statistics.

`import_scores` reads the per-score format back (`grading.scores_import`).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from itertools import groupby
from typing import Any

from django.db import connections
from django.db.models import QuerySet

from inference.csv_writing import row_formatter

from . import stats
from .models import Purpose, Score, ScoreQuerySet

COLUMNS = (
    "campaign",
    "matchup",
    "task_type",
    "item_id",
    "model",
    "sample",
    "reviewer",
    "score",
    "comment",
    "flagged",
    "position",
    "scored_at",
    "rubric_version",
    "ttft_ms",
    "response_time_ms",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "reasoning_tokens",
    "decode_tps",
    "e2e_tps",
    "finish_reason",
    "usage_source",
)
# The field each column is read from, in the order of COLUMNS.
FIELDS = (
    "generation__campaign__slug",
    "generation__campaign__matchup",
    "generation__item__task_type__code",
    "generation__item__external_id",
    "generation__endpoint__slug",
    "generation__sample",
    "reviewer__username",
    "score",
    "comment",
    "flagged",
    "position",
    "scored_at",
    "rubric__version",
    "generation__ttft_ms",
    "generation__response_time_ms",
    "generation__prompt_tokens",
    "generation__completion_tokens",
    "generation__total_tokens",
    "generation__reasoning_tokens",
    "generation__decode_tps",
    "generation__e2e_tps",
    "generation__finish_reason",
    "generation__usage_source",
)
ORDER = (
    "generation__campaign__slug",
    "generation__item__task_type__position",
    "generation__item__external_id",
    "generation__endpoint__slug",
    "generation__sample",
    "reviewer__username",
)
# The kind of value each field holds (`inference.csv_writing.row_formatter`), in that order.
KINDS = (
    *("text",) * 5,
    "int",
    "text",
    "int",
    "text",
    "bool",
    "int",
    "datetime",
    "int",
    *("float",) * 2,
    *("int",) * 4,
    *("float",) * 2,
    *("text",) * 2,
)
REVIEWER_COLUMN = COLUMNS.index("reviewer")
CHUNK_SIZE = 2000
FETCH_ROWS = 2000
"""Rows fetched from PostgreSQL's server-side cursor at a time."""

format_score_row = row_formatter(KINDS)
"""The cells of one row of `score_rows`: `format_cell` on each value, compiled for its kinds."""

AGGREGATE_COLUMNS = (
    "campaign",
    "task_type",
    "model",
    "items",
    "scores",
    "mean",
    "ci_low",
    "ci_high",
    "median",
    "std",
    "min",
    "max",
)


def scores_for(campaigns: list[str] | None = None) -> ScoreQuerySet:
    """Every regular score, or those of the named campaigns, in export order.

    Scores given on gold and calibration items (`Score.purpose`) measure the reviewer, not the
    models: they are left out, so that every figure can still be recomputed from the rows
    (DESIGN §7) with the §4.2 columns unchanged. Scores of excluded reviewers stay in.
    """
    scores = Score.objects.filter(purpose=Purpose.REGULAR).order_by(*ORDER)
    if campaigns:
        scores = scores.filter(generation__campaign__slug__in=campaigns)
    return scores


def score_rows(scores: QuerySet[Score], *, anonymize: bool = False) -> Iterator[tuple[Any, ...]]:
    """The export's rows, streamed in one query whatever their number.

    With `anonymize`, each username is replaced by `reviewer-N`, N counting distinct reviewers
    in order of first appearance in this export.
    """
    values = scores.values_list(*FIELDS)
    rows: Iterator[tuple[Any, ...]]
    database = connections[values.db]
    if database.vendor == "postgresql" and not database.settings_dict.get(
        "DISABLE_SERVER_SIDE_CURSORS"
    ):
        rows = _server_cursor_rows(values)
    else:
        rows = values.iterator(chunk_size=CHUNK_SIZE)
    if not anonymize:
        yield from rows
        return
    pseudonyms: dict[str, str] = {}
    for row in rows:
        username = row[REVIEWER_COLUMN]
        pseudonym = pseudonyms.setdefault(username, f"reviewer-{len(pseudonyms) + 1}")
        yield (*row[:REVIEWER_COLUMN], pseudonym, *row[REVIEWER_COLUMN + 1 :])


def _server_cursor_rows(values: QuerySet[Any]) -> Iterator[tuple[Any, ...]]:
    """The rows of a `values_list` query on PostgreSQL, read through a server-side cursor
    `FETCH_ROWS` at a time, as the driver's tuples.

    The same SQL and values as the queryset's own iterator (Django converts none of these
    columns on PostgreSQL), without its per-row work, and in PostgreSQL's binary format,
    which the driver reads without parsing text: a million rows took 4.5 s of client CPU as
    text, 1.0 s in binary, and reading them went from 19,600 rows/s (the iterator, on a busy
    machine) to 146,000 (tests/benchmarks/bench_scores_csv.py, "rows only"). Memory stays
    flat. Outside a transaction the cursor is declared WITH HOLD, as Django declares its own,
    so none stays open while the rows are written (an export's progress, saved as it goes,
    stays visible). Django's cursor wrapper around it logs and counts the query like any other.
    """
    sql, params = values.query.sql_with_params()
    database = connections[values.db]
    database.ensure_connection()
    # Django's own server-side cursor binds parameters on the client, which rules out binary
    # results: the driver's is used instead.
    driver_cursor = database.connection.cursor(
        name=f"scores_export_{secrets.token_hex(6)}",
        withhold=database.get_autocommit(),
        binary=True,
    )
    cursor = (
        database.make_debug_cursor(driver_cursor)
        if database.queries_logged
        else database.make_cursor(driver_cursor)
    )
    with cursor:
        cursor.execute(sql, params)
        while batch := cursor.fetchmany(FETCH_ROWS):
            yield from batch


# --- Aggregates ------------------------------------------------------------------------------


def aggregate_rows(scores: ScoreQuerySet) -> Iterator[tuple[Any, ...]]:
    """One row per campaign × task type × model (`AGGREGATE_COLUMNS`), in one query.

    The figures are `grading.stats.summarise`'s, the very ones the comparison pages show; like
    them, they leave out the scores of reviewers excluded from a campaign (`counted`).
    """
    rows = (
        scores.counted()
        .order_by(*ORDER[:2], "generation__endpoint__slug")
        .values_list(
            "generation__campaign__slug",
            "generation__item__task_type__code",
            "generation__endpoint__slug",
            "generation__item_id",
            "score",
        )
    )
    for (campaign, task_type, model), group in groupby(
        rows.iterator(chunk_size=CHUNK_SIZE), key=lambda row: row[:3]
    ):
        item_scores: dict[int, list[int]] = {}
        for *_, item, score in group:
            item_scores.setdefault(item, []).append(score)
        s = stats.summarise(item_scores)
        yield (campaign, task_type, model, s.items, s.scores, s.mean, s.ci_low, s.ci_high,
               s.median, s.std, s.min, s.max)  # fmt: skip
