"""The scores CSV (DESIGN §4.2): what `export_scores` writes and `import_scores` reads back.

Export, one row per score, in the columns of `COLUMNS`:

- `task_type` is the canonical code, `model` the endpoint's slug, `reviewer` the username (or,
  anonymised, `reviewer-1`, `reviewer-2`… numbered in order of first appearance within that one
  export, so the same person keeps one pseudonym throughout a file but not across files).
- `position` is the 0-based position the answer was shown at (0 = "A", 1 = "B", …).
- `scored_at` is ISO 8601 in UTC with its offset (`2025-03-01T09:30:00.123456+00:00`).
- `flagged` is `true` / `false`; missing timings and token counts are empty cells, never 0.
- Rows are ordered by campaign, task type (the study's order), item, model, sample, reviewer.
- Cells follow `inference.csvutil` (the rules of every export): numbers with at most three
  decimals, text neutralised against formula injection.

`--aggregate` writes one row per campaign × task type × model instead (`AGGREGATE_COLUMNS`); see
`aggregate_rows` for the statistics.

Import (`import_scores`) reads the per-score format back; see `load_scores`.
"""

from __future__ import annotations

import csv
import datetime
import io
import math
import random
import re
import statistics
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import groupby
from typing import Any

from django.contrib.auth.models import User
from django.contrib.auth.validators import UnicodeUsernameValidator
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from inference.csvutil import BOM, FORMULA_TRIGGERS
from inference.models import (
    Campaign,
    CampaignModel,
    CampaignStatus,
    Generation,
    GenerationStatus,
    ModelEndpoint,
    Suite,
    TaskItem,
    TaskType,
    UsageSource,
    validate_slug,
)

from .models import ReviewSettings, Rubric, Score

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
REVIEWER_COLUMN = COLUMNS.index("reviewer")
CHUNK_SIZE = 2000

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
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 20250301
CONFIDENCE = 0.95


def scores_for(campaigns: list[str] | None = None) -> QuerySet[Score]:
    """Every score, or those of the named campaigns, in export order."""
    scores = Score.objects.order_by(*ORDER)
    if campaigns:
        scores = scores.filter(generation__campaign__slug__in=campaigns)
    return scores


def score_rows(scores: QuerySet[Score], *, anonymize: bool = False) -> Iterator[tuple[Any, ...]]:
    """The export's rows, streamed in one query whatever their number.

    With `anonymize`, each username is replaced by `reviewer-N`, N counting distinct reviewers
    in order of first appearance in this export.
    """
    rows: Iterator[tuple[Any, ...]] = scores.values_list(*FIELDS).iterator(chunk_size=CHUNK_SIZE)
    if not anonymize:
        yield from rows
        return
    pseudonyms: dict[str, str] = {}
    for row in rows:
        username = row[REVIEWER_COLUMN]
        pseudonym = pseudonyms.setdefault(username, f"reviewer-{len(pseudonyms) + 1}")
        yield (*row[:REVIEWER_COLUMN], pseudonym, *row[REVIEWER_COLUMN + 1 :])


# --- Aggregates ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Summary:
    """A (campaign, task type, model) score, from its items' mean scores."""

    items: int
    scores: int
    mean: float
    ci_low: float
    ci_high: float
    median: float
    std: float | None
    min: float
    max: float


def bootstrap_ci(
    values: list[float], *, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED
) -> tuple[float, float]:
    """95% percentile-bootstrap confidence interval of the mean of `values`.

    Draws `resamples` samples of len(values) with replacement from a `random.Random(seed)` of its
    own, so a figure never changes between runs or with what else is exported; the bounds are
    the 2.5th and 97.5th percentiles of the resampled means, interpolated linearly
    (`statistics.quantiles(..., method="inclusive")`, numpy's default). One value gives (v, v).
    """
    if len(values) == 1:
        return values[0], values[0]
    # Not for security: a seeded generator is the point, so the figures are reproducible.
    rng = random.Random(seed)  # noqa: S311
    n = len(values)
    means = sorted(math.fsum(rng.choices(values, k=n)) / n for _ in range(resamples))
    tail = (1 - CONFIDENCE) / 2
    cuts = statistics.quantiles(means, n=round(1 / tail), method="inclusive")
    return cuts[0], cuts[-1]


def summarise(item_scores: dict[Any, list[int]]) -> Summary:
    """Mean over items of each item's mean score, with a bootstrap CI over items.

    An item's mean averages every score its answers got (all samples, all reviewers). `median`,
    `std` (sample standard deviation, n − 1; None for a single item), `min` and `max` are taken
    over the item means as well, never over individual scores.
    """
    item_means = [math.fsum(scores) / len(scores) for scores in item_scores.values()]
    low, high = bootstrap_ci(item_means)
    return Summary(
        items=len(item_means),
        scores=sum(len(scores) for scores in item_scores.values()),
        mean=math.fsum(item_means) / len(item_means),
        ci_low=low,
        ci_high=high,
        median=statistics.median(item_means),
        std=statistics.stdev(item_means) if len(item_means) > 1 else None,
        min=min(item_means),
        max=max(item_means),
    )


def aggregate_rows(scores: QuerySet[Score]) -> Iterator[tuple[Any, ...]]:
    """One row per campaign × task type × model (`AGGREGATE_COLUMNS`), in one query.

    See `summarise` for the figures and `bootstrap_ci` for the interval.
    """
    rows = scores.order_by(*ORDER[:2], "generation__endpoint__slug").values_list(
        "generation__campaign__slug",
        "generation__item__task_type__code",
        "generation__endpoint__slug",
        "generation__item_id",
        "score",
    )
    for (campaign, task_type, model), group in groupby(
        rows.iterator(chunk_size=CHUNK_SIZE), key=lambda row: row[:3]
    ):
        item_scores: dict[int, list[int]] = {}
        for *_, item, score in group:
            item_scores.setdefault(item, []).append(score)
        s = summarise(item_scores)
        yield (campaign, task_type, model, s.items, s.scores, s.mean, s.ci_low, s.ci_high,
               s.median, s.std, s.min, s.max)  # fmt: skip


# --- Import ----------------------------------------------------------------------------------

REQUIRED_COLUMNS = ("campaign", "task_type", "item_id", "model", "reviewer", "score")
PLACEHOLDER_PROMPT = "(imported score; prompt not available)"
PLACEHOLDER_ANSWER = "(imported score; answer not available)"
PLACEHOLDER_BASE_URL = "http://imported.invalid/v1"
IMPORTED_SUITE_PREFIX = "imported-"
TIMING_COLUMNS = ("ttft_ms", "response_time_ms", "decode_tps", "e2e_tps")
TOKEN_COLUMNS = ("prompt_tokens", "completion_tokens", "total_tokens", "reasoning_tokens")
TRUE_WORDS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
_SCORE = re.compile(r"[0-9]+")
_username = UnicodeUsernameValidator()


class ScoreImportError(Exception):
    """A file that cannot be imported; `problems` holds every `line: column: reason`."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass
class ImportedScore:
    """One parsed row. Optional columns absent from the file are None (not compared)."""

    line: int
    campaign: str
    matchup: str | None
    task_type: TaskType
    item_id: str
    model: str
    sample: int
    reviewer: str
    score: int
    comment: str | None
    flagged: bool | None
    position: int | None
    scored_at: datetime.datetime | None
    rubric_version: int | None
    generation_fields: dict[str, Any]


@dataclass
class ScoreImportReport:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return f"created {self.created}, updated {self.updated}, unchanged {self.unchanged}"


def restore(cell: str) -> str:
    """Undo `csvutil.neutralise`: drop one quote in front of a formula trigger."""
    if cell.startswith("'") and cell[1:].startswith(FORMULA_TRIGGERS):
        return cell[1:]
    return cell


def decode(data: bytes) -> str:
    """The file's text: UTF-8, with or without a byte order mark; anything else is a problem."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        byte = data[error.start : error.start + 1].hex()
        raise ScoreImportError(
            [f"{line}: file: not UTF-8 (byte 0x{byte} at offset {error.start}); save as UTF-8"]
        ) from None
    return text.removeprefix(BOM)


class _RowParser:
    """Turns one CSV record into an ImportedScore, collecting `line: column: reason` problems."""

    def __init__(self) -> None:
        self.resolved: dict[str, TaskType | None] = {}
        self.rubrics = set(Rubric.objects.values_list("version", flat=True))

    def task_type(self, spelling: str) -> TaskType | None:
        if spelling not in self.resolved:
            self.resolved[spelling] = TaskType.objects.resolve(spelling)
        return self.resolved[spelling]

    def parse(self, line: int, cells: dict[str, str], problems: list[str]) -> ImportedScore | None:
        start = len(problems)

        def problem(column: str, reason: str) -> None:
            problems.append(f"{line}: {column}: {reason}")

        def text(column: str, max_length: int | None = None) -> str | None:
            if column not in cells:
                return None
            value = cells[column]
            if max_length is not None and len(value) > max_length:
                problem(column, f"longer than {max_length} characters")
            return value

        def slug(column: str, max_length: int) -> str:
            value = (text(column, max_length) or "").strip()
            if not value:
                problem(column, "empty")
            else:
                try:
                    validate_slug(value)
                except ValidationError:
                    problem(column, f"{value!r} is not a valid slug (letters, digits, . _ -)")
            return value

        def integer(column: str, default: int | None, high: int) -> int | None:
            value = (cells.get(column) or "").strip()
            if not value:
                return default
            if not _SCORE.fullmatch(value) or int(value) > high:
                problem(column, f"{value!r} is not a whole number from 0 to {high}")
                return default
            return int(value)

        def number(column: str) -> float | None:
            value = (cells.get(column) or "").strip()
            if not value:
                return None
            try:
                parsed = float(value)
            except ValueError:
                parsed = math.nan
            if not math.isfinite(parsed):
                problem(column, f"{value!r} is not a number")
                return None
            return parsed

        campaign = slug("campaign", 100)
        model = slug("model", 100)
        # Kept exactly as written: ids are matched as they are stored, spaces and all.
        item_id = text("item_id", 200) or ""
        if not item_id.strip():
            problem("item_id", "empty")
        reviewer = (text("reviewer", 150) or "").strip()
        try:
            _username(reviewer)
        except ValidationError:
            problem("reviewer", f"{reviewer!r} is not a valid username")

        spelling = cells["task_type"].strip()
        task_type = self.task_type(spelling)
        if task_type is None:
            problem("task_type", f"unknown task type {spelling!r}")

        raw_score = cells["score"].strip()
        if not raw_score:
            problem("score", "empty; a score is a whole number from 0 to 10")
        score = integer("score", None, 10)

        flagged: bool | None = None
        if "flagged" in cells:
            word = cells["flagged"].strip().casefold()
            flagged = TRUE_WORDS.get(word, False) if word else False
            if word and word not in TRUE_WORDS:
                problem("flagged", f"{cells['flagged']!r} is not true or false")

        scored_at: datetime.datetime | None = None
        if cells.get("scored_at", "").strip():
            value = cells["scored_at"].strip()
            try:
                scored_at = datetime.datetime.fromisoformat(value)
            except ValueError:
                problem("scored_at", f"{value!r} is not an ISO 8601 date and time")
            else:
                if timezone.is_naive(scored_at):
                    scored_at = timezone.make_aware(scored_at)

        rubric_version = integer("rubric_version", None, 2**31 - 1)
        if rubric_version is not None and rubric_version not in self.rubrics:
            known = ", ".join(str(v) for v in sorted(self.rubrics)) or "none"
            problem(
                "rubric_version",
                f"no rubric version {rubric_version} here (known: {known}); add it first",
            )

        usage_source = (cells.get("usage_source") or "").strip()
        if usage_source and usage_source not in UsageSource.values:
            problem("usage_source", f"{usage_source!r} is not server or estimated")
        generation_fields: dict[str, Any] = {name: number(name) for name in TIMING_COLUMNS} | {
            name: integer(name, None, 2**31 - 1) for name in TOKEN_COLUMNS
        }
        generation_fields["finish_reason"] = (text("finish_reason", 32) or "").strip()
        generation_fields["usage_source"] = usage_source

        sample = integer("sample", 0, 32767)
        position = integer("position", None, 32767)
        if len(problems) > start or task_type is None or score is None:
            return None
        return ImportedScore(
            line=line,
            campaign=campaign,
            matchup=text("matchup", 100),
            task_type=task_type,
            item_id=item_id,
            model=model,
            sample=sample or 0,
            reviewer=reviewer,
            score=score,
            comment=text("comment"),
            flagged=flagged,
            position=position,
            scored_at=scored_at,
            rubric_version=rubric_version,
            generation_fields=generation_fields,
        )


def parse_scores(data: bytes) -> tuple[list[ImportedScore], list[str]]:
    """Read a scores CSV: its rows and its warnings, or ScoreImportError naming every problem.

    Required columns are `REQUIRED_COLUMNS`; the other columns of `COLUMNS` are optional, and a
    column outside `COLUMNS` is ignored with a warning. Each cell loses the quote `neutralise`
    put in front of a formula trigger.
    """
    reader = csv.reader(io.StringIO(decode(data), newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise ScoreImportError(["1: header: the file is empty"]) from None
    except csv.Error as error:
        raise ScoreImportError([f"1: header: {error}"]) from None
    columns = [name.strip() for name in header]
    problems = [
        f"1: {name}: missing column (required: {', '.join(REQUIRED_COLUMNS)})"
        for name in REQUIRED_COLUMNS
        if name not in columns
    ]
    problems += [
        f"1: {name}: the column appears twice"
        for name in sorted({name for name in columns if columns.count(name) > 1})
    ]
    if problems:
        raise ScoreImportError(problems)
    warnings = [
        f"1: {name or '(unnamed)'}: unknown column ignored"
        for name in columns
        if name not in COLUMNS
    ]

    parser = _RowParser()
    rows: list[ImportedScore] = []
    seen: dict[tuple[str, str, str, int, str], int] = {}
    line = reader.line_num + 1
    try:
        for record in reader:
            start, line = line, reader.line_num + 1
            if not any(cell.strip() for cell in record):
                continue
            if len(record) != len(columns):
                problems.append(
                    f"{start}: row: has {len(record)} cells, the header has {len(columns)}"
                )
                continue
            cells = {
                name: restore(cell)
                for name, cell in zip(columns, record, strict=True)
                if name in COLUMNS
            }
            parsed = parser.parse(start, cells, problems)
            if parsed is None:
                continue
            key = (parsed.campaign, parsed.item_id, parsed.model, parsed.sample, parsed.reviewer)
            if key in seen:
                problems.append(
                    f"{start}: reviewer: {parsed.reviewer} scores this answer again "
                    f"(first on line {seen[key]})"
                )
                continue
            seen[key] = start
            rows.append(parsed)
    except csv.Error as error:
        problems.append(f"{line}: row: {error}")
    if problems:
        raise ScoreImportError(problems)
    return rows, warnings


class _Loader:
    """Finds or creates what each row refers to, caching lookups within one import."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        self.campaigns: dict[str, tuple[Campaign, bool]] = {}
        self.endpoints: dict[str, ModelEndpoint] = {}
        self.items: dict[tuple[int, str], TaskItem] = {}
        self.users: dict[str, tuple[User, bool]] = {}
        self.generations: dict[tuple[int, int, int, int], Generation] = {}
        self.members: set[tuple[int, int]] = set()
        self.current_rubric = Rubric.objects.current()
        self.rubrics = {rubric.version: rubric for rubric in Rubric.objects.all()}

    def campaign(self, row: ImportedScore) -> tuple[Campaign, bool]:
        if row.campaign not in self.campaigns:
            campaign = Campaign.objects.filter(slug=row.campaign).select_related("suite").first()
            created = campaign is None
            if campaign is None:
                suite, _ = Suite.objects.get_or_create(
                    name=f"{IMPORTED_SUITE_PREFIX}{row.campaign}"[:100],
                    defaults={"description": f"Items of scores imported from {self.source}."},
                )
                campaign = Campaign.objects.create(
                    slug=row.campaign,
                    name=f"{row.campaign} (imported)",
                    matchup=(row.matchup or "").strip(),
                    suite=suite,
                    status=CampaignStatus.FINISHED,
                    launched_at=timezone.now(),
                )
                # Restricted below to the campaign's own (imported, inactive) reviewers, so its
                # placeholder answers never reach a real reviewer's queue.
                ReviewSettings.objects.get_or_create(campaign=campaign)
            self.campaigns[row.campaign] = (campaign, created)
        return self.campaigns[row.campaign]

    def endpoint(self, slug: str) -> ModelEndpoint:
        if slug not in self.endpoints:
            self.endpoints[slug], _ = ModelEndpoint.objects.get_or_create(
                slug=slug,
                defaults={
                    "name": f"{slug} (imported)",
                    "model": slug,
                    "base_url": PLACEHOLDER_BASE_URL,
                },
            )
        return self.endpoints[slug]

    def item(self, campaign: Campaign, row: ImportedScore) -> TaskItem | None:
        key = (campaign.suite_id, row.item_id)
        if key not in self.items:
            self.items[key], _ = TaskItem.objects.select_related("task_type").get_or_create(
                suite_id=campaign.suite_id,
                external_id=row.item_id,
                defaults={
                    "task_type": row.task_type,
                    "prompt": PLACEHOLDER_PROMPT,
                    "tags": ["imported"],
                    "content_hash": "imported",
                },
            )
        item = self.items[key]
        if item.task_type_id != row.task_type.pk:
            self.problems.append(
                f"{row.line}: task_type: item {row.item_id!r} of campaign {campaign.slug!r} is "
                f"{item.task_type.code}, not {row.task_type.code}"
            )
            return None
        return item

    def reviewer(self, username: str) -> User:
        if username not in self.users:
            user = User.objects.filter(username=username).first()
            created = user is None
            if user is None:
                user = User(username=username, is_active=False)
                user.set_unusable_password()
                user.save()
            self.users[username] = (user, created)
        return self.users[username][0]

    def generation(
        self, campaign: Campaign, item: TaskItem, endpoint: ModelEndpoint, row: ImportedScore
    ) -> Generation:
        if (campaign.pk, endpoint.pk) not in self.members:
            if not CampaignModel.objects.filter(campaign=campaign, endpoint=endpoint).exists():
                CampaignModel.objects.create(
                    campaign=campaign, endpoint=endpoint, position=campaign.members.count()
                )
            self.members.add((campaign.pk, endpoint.pk))
        key = (campaign.pk, item.pk, endpoint.pk, row.sample)
        if key not in self.generations:
            self.generations[key], _ = Generation.objects.get_or_create(
                campaign=campaign,
                item=item,
                endpoint=endpoint,
                sample=row.sample,
                defaults={
                    "status": GenerationStatus.SUCCEEDED,
                    "content": PLACEHOLDER_ANSWER,
                    "request": {"imported_from": self.source},
                    "finished_at": row.scored_at,
                    **row.generation_fields,
                },
            )
        return self.generations[key]

    def rubric(self, version: int | None) -> Rubric:
        return self.current_rubric if version is None else self.rubrics[version]


def _changes(score: Score, row: ImportedScore, rubric: Rubric | None) -> dict[str, Any]:
    """The fields whose value in the file differs from the stored score (given columns only)."""
    wanted: dict[str, Any] = {"score": row.score}
    for name in ("comment", "flagged", "position", "scored_at"):
        if getattr(row, name) is not None:
            wanted[name] = getattr(row, name)
    if rubric is not None:
        wanted["rubric_id"] = rubric.pk
    return {name: value for name, value in wanted.items() if getattr(score, name) != value}


def load_scores(data: bytes, *, source: str = "file") -> ScoreImportReport:
    """Import a scores CSV in one transaction: every row, or none if anything is wrong.

    Missing campaigns, suites (`imported-<campaign>`), items (placeholder prompt), endpoints
    (placeholder base URL), answers (succeeded, placeholder text, timings from the file) and
    reviewers (inactive, unusable password) are created; scores are created with
    `imported=True`. A score that exists for the same answer and reviewer is unchanged when the
    file agrees with it, updated when it was imported before, and a problem when it was given
    in gradebench itself (never overwritten). Raises ScoreImportError with every problem.
    """
    rows, warnings = parse_scores(data)
    report = ScoreImportReport(warnings=warnings)
    problems: list[str] = []
    with transaction.atomic():
        loader = _Loader(source, problems)
        imported_reviewers: dict[int, set[int]] = {}
        for row in rows:
            campaign, campaign_created = loader.campaign(row)
            item = loader.item(campaign, row)
            if item is None:
                continue
            endpoint = loader.endpoint(row.model)
            generation = loader.generation(campaign, item, endpoint, row)
            reviewer = loader.reviewer(row.reviewer)
            if campaign_created:
                imported_reviewers.setdefault(campaign.pk, set()).add(reviewer.pk)
            rubric = None if row.rubric_version is None else loader.rubric(row.rubric_version)
            score = Score.objects.filter(generation=generation, reviewer=reviewer).first()
            if score is None:
                Score.objects.create(
                    generation=generation,
                    reviewer=reviewer,
                    score=row.score,
                    comment=row.comment or "",
                    flagged=bool(row.flagged),
                    position=row.position or 0,
                    rubric=rubric or loader.current_rubric,
                    scored_at=row.scored_at or timezone.now(),
                    imported=True,
                )
                report.created += 1
                continue
            changes = _changes(score, row, rubric)
            if not changes:
                report.unchanged += 1
            elif not score.imported:
                problems.append(
                    f"{row.line}: score: {row.reviewer} already scored this answer in gradebench "
                    f"({', '.join(sorted(changes))} differ); not overwritten"
                )
            else:
                for name, value in changes.items():
                    setattr(score, name, value)
                score.save()
                report.updated += 1
        for campaign_pk, reviewer_pks in imported_reviewers.items():
            ReviewSettings.objects.get(campaign_id=campaign_pk).reviewers.add(*reviewer_pks)
        if problems:
            raise ScoreImportError(problems)
    return report
