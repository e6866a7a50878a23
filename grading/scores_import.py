"""The scores CSV's bulk import (DESIGN §4.2): what `import_scores` reads back.

It reads the per-score format `grading.scores_export` writes (`COLUMNS`, of which
`REQUIRED_COLUMNS` must be present); see `load_scores`.
"""

from __future__ import annotations

import csv
import datetime
import io
import math
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, BinaryIO, NamedTuple, TypeVar

from django.contrib.auth.models import User
from django.contrib.auth.validators import UnicodeUsernameValidator
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from inference.csv_reading import header_problems, restore, utf8_problem
from inference.models import (
    Campaign,
    CampaignModel,
    CampaignStatus,
    Generation,
    GenerationSource,
    GenerationStatus,
    ModelEndpoint,
    Suite,
    TaskItem,
    TaskType,
    UsageSource,
    validate_slug,
)

from .assignment import COMMENT_MAX_CHARS
from .models import ReviewSettings, Rubric, Score
from .scores_export import COLUMNS

REQUIRED_COLUMNS = ("campaign", "task_type", "item_id", "model", "reviewer", "score")
PLACEHOLDER_PROMPT = "(imported score; prompt not available)"
PLACEHOLDER_ANSWER = "(imported score; answer not available)"
PLACEHOLDER_BASE_URL = "http://imported.invalid/v1"
IMPORTED_SUITE_PREFIX = "imported-"
TIMING_COLUMNS = ("ttft_ms", "response_time_ms", "decode_tps", "e2e_tps")
TOKEN_COLUMNS = ("prompt_tokens", "completion_tokens", "total_tokens", "reasoning_tokens")
# What a missing answer is created with, in the order of `ImportedAnswer.generation_fields`.
GENERATION_COLUMNS = (*TIMING_COLUMNS, *TOKEN_COLUMNS, "finish_reason", "usage_source")
TRUE_WORDS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
USAGE_SOURCES = frozenset(UsageSource.values)
# Rows per INSERT or UPDATE and keys per `__in` lookup: a few queries per thousand rows, far
# below SQLite's and PostgreSQL's limits on the parameters of one query.
BATCH_SIZE = 1000
READ_SIZE = 2**20
# What an import compares of a stored score (`_changes`), read as plain values.
STORED_FIELDS = ("id", "generation_id", "reviewer_id", "imported", "score", "comment", "flagged",
                 "position", "scored_at", "rubric_id")  # fmt: skip
T = TypeVar("T")
_username = UnicodeUsernameValidator()


class ScoreImportError(Exception):
    """A file that cannot be imported; `problems` holds every `line: column: reason`."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class ImportedScore(NamedTuple):
    """One parsed row's score. Optional columns absent from the file are None (not compared).

    A tuple, not an object with a dict: a million-row file keeps a million of these.
    """

    line: int
    task_type: int  # the pk of the task type the row names, checked against the item's
    score: int
    comment: str | None
    flagged: bool | None
    position: int | None
    scored_at: datetime.datetime | None
    rubric_version: int | None


@dataclass(slots=True)
class ImportedAnswer:
    """One answer the file scores (campaign × item × model × sample), with its scores by reviewer.

    `generation_fields` (values of GENERATION_COLUMNS) and `finished_at` are those of the
    answer's first row: a missing answer is created with them. The loader fills in
    `generation_id`, and `existed` when the answer was in the database before the import.
    """

    campaign: str
    item_id: str
    model: str
    sample: int
    generation_fields: tuple[Any, ...]
    finished_at: datetime.datetime | None
    scores: dict[str, ImportedScore] = field(default_factory=dict)
    generation_id: int = 0
    existed: bool = False


@dataclass
class ParsedScores:
    """A valid scores file: its answers in order of first appearance and what they refer to."""

    answers: list[ImportedAnswer]
    matchups: dict[str, str | None]  # campaign slug: the matchup cell of its first row
    reviewers: list[str]  # in order of first appearance
    warnings: list[str]


@dataclass
class ScoreImportReport:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return f"created {self.created}, updated {self.updated}, unchanged {self.unchanged}"


def check_utf8(stream: BinaryIO) -> None:
    """Read `stream` to its end; ScoreImportError naming the first byte that is not UTF-8.

    Reads a megabyte at a time, so a file of any size is checked before any of it is parsed.
    """
    problem = utf8_problem(stream, READ_SIZE)
    if problem is not None:
        raise ScoreImportError([problem])


def _passes(validate: Callable[[str], object], value: str, passed: set[str]) -> bool:
    """Whether `value` passes `validate`; values in `passed` (those that passed before) are
    not checked again, and a value that passes joins them."""
    if value not in passed:
        try:
            validate(value)
        except ValidationError:
            return False
        passed.add(value)
    return True


class _RowParser:
    """Turns one CSV record into its parts, collecting `line: column: reason` problems.

    Values that repeat on every row (slugs, usernames, task types) are checked once each.
    """

    def __init__(self, columns: list[str]) -> None:
        self.columns = columns
        self.resolved: dict[str, TaskType | None] = {}
        self.slugs: set[str] = set()
        self.usernames: set[str] = set()
        self.rubrics = set(Rubric.objects.values_list("version", flat=True))
        self.last_generation: tuple[tuple[str | None, ...], tuple[Any, ...]] = ((), ())

    def task_type(self, spelling: str) -> TaskType | None:
        if spelling not in self.resolved:
            self.resolved[spelling] = TaskType.objects.resolve(spelling)
        return self.resolved[spelling]

    def is_slug(self, value: str) -> bool:
        return _passes(validate_slug, value, self.slugs)

    def is_username(self, value: str) -> bool:
        return _passes(_username, value, self.usernames)

    def parse(
        self, line: int, record: list[str], problems: list[str]
    ) -> tuple[str, str, str, int, str, str | None, tuple[Any, ...], ImportedScore] | None:
        """(campaign, item_id, model, sample, reviewer, matchup, generation_fields, score)."""
        start = len(problems)
        cells = dict(zip(self.columns, record, strict=True))

        def problem(column: str, reason: str) -> None:
            problems.append(f"{line}: {column}: {reason}")

        def text(column: str, max_length: int | None = None) -> str | None:
            value = cells.get(column)
            if value is not None and max_length is not None and len(value) > max_length:
                problem(column, f"longer than {max_length} characters")
            return value

        def slug(column: str, max_length: int) -> str:
            value = (text(column, max_length) or "").strip()
            if not value:
                problem(column, "empty")
            elif not self.is_slug(value):
                problem(column, f"{value!r} is not a valid slug (letters, digits, . _ -)")
            return value

        def integer(column: str, default: int | None, high: int) -> int | None:
            value = (cells.get(column) or "").strip()
            if not value:
                return default
            # ASCII digits only: str.isdigit alone would take "²", which int() refuses.
            if not (value.isascii() and value.isdigit()) or int(value) > high:
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
        if not self.is_username(reviewer):
            problem("reviewer", f"{reviewer!r} is not a valid username")

        spelling = cells["task_type"].strip()
        task_type = self.task_type(spelling)
        if task_type is None:
            problem("task_type", f"unknown task type {spelling!r}")

        if not cells["score"].strip():
            problem("score", "empty; a score is a whole number from 0 to 10")
        score = integer("score", None, 10)

        flagged: bool | None = None
        if "flagged" in cells:
            word = cells["flagged"].strip().casefold()
            flagged = TRUE_WORDS.get(word, False) if word else False
            if word and word not in TRUE_WORDS:
                problem("flagged", f"{cells['flagged']!r} is not true or false")

        scored_at: datetime.datetime | None = None
        value = (cells.get("scored_at") or "").strip()
        if value:
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

        # The rows of one answer repeat its timings: a row like the one before is not re-read.
        raw = tuple(map(cells.get, GENERATION_COLUMNS))
        if raw == self.last_generation[0]:
            generation_fields = self.last_generation[1]
        else:
            before = len(problems)
            usage_source = (cells.get("usage_source") or "").strip()
            if usage_source and usage_source not in USAGE_SOURCES:
                problem("usage_source", f"{usage_source!r} is not server or estimated")
            generation_fields = (
                *[number(name) for name in TIMING_COLUMNS],
                *[integer(name, None, 2**31 - 1) for name in TOKEN_COLUMNS],
                (text("finish_reason", 32) or "").strip(),
                usage_source,
            )
            if len(problems) == before:
                self.last_generation = (raw, generation_fields)

        sample = integer("sample", 0, 32767) or 0
        position = integer("position", None, 32767)
        if len(problems) > start or task_type is None or score is None:
            return None
        # Checked last, and only on an otherwise valid row, as the import always has.
        matchup = text("matchup", 100)
        imported = ImportedScore(
            line=line,
            task_type=task_type.pk,
            score=score,
            comment=text("comment", COMMENT_MAX_CHARS),
            flagged=flagged,
            position=position,
            scored_at=scored_at,
            rubric_version=rubric_version,
        )
        return campaign, item_id, model, sample, reviewer, matchup, generation_fields, imported


def parse_scores(data: bytes | BinaryIO) -> ParsedScores:
    """Read a scores CSV (bytes or a binary file): its rows, or ScoreImportError with every problem.

    Required columns are `REQUIRED_COLUMNS`; the other columns of `COLUMNS` are optional, and a
    column outside `COLUMNS` is ignored with a warning. Each cell loses the quote `neutralise`
    put in front of a formula trigger. A file is read as it streams in: only the parsed rows
    are kept, grouped by the answer they score.
    """
    if isinstance(data, bytes):
        stream: BinaryIO = io.BytesIO(data)
    elif not data.seekable():  # a pipe: read once, kept whole, as it must be read twice
        stream = io.BytesIO(data.read())
    else:
        stream = data
    check_utf8(stream)
    stream.seek(0)
    # utf-8-sig drops the byte order mark Excel writes, if there is one.
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")
    try:
        return _parse(csv.reader(text))
    finally:
        text.detach()  # leave the caller's file open


def _parse(reader: Any) -> ParsedScores:
    try:
        header = next(reader)
    except StopIteration:
        raise ScoreImportError(["1: header: the file is empty"]) from None
    except csv.Error as error:
        raise ScoreImportError([f"1: header: {error}"]) from None
    columns = [name.strip() for name in header]
    problems = header_problems(columns, REQUIRED_COLUMNS)
    if problems:
        raise ScoreImportError(problems)
    warnings = [
        f"1: {name or '(unnamed)'}: unknown column ignored"
        for name in columns
        if name not in COLUMNS
    ]

    parser = _RowParser(columns)
    answers: dict[tuple[str, str, str, int], ImportedAnswer] = {}
    matchups: dict[str, str | None] = {}
    # Each username once: a million rows share the strings of a few reviewers.
    reviewers: dict[str, str] = {}
    line = reader.line_num + 1
    try:
        for record in reader:
            start, line = line, reader.line_num + 1
            joined = "".join(record)
            if not joined.strip():
                continue
            if len(record) != len(columns):
                problems.append(
                    f"{start}: row: has {len(record)} cells, the header has {len(columns)}"
                )
                continue
            if "'" in joined:
                record = [restore(cell) for cell in record]
            parsed = parser.parse(start, record, problems)
            if parsed is None:
                continue
            campaign, item_id, model, sample, reviewer, matchup, fields, score = parsed
            answer = answers.get((campaign, item_id, model, sample))
            if answer is None:
                answer = answers[campaign, item_id, model, sample] = ImportedAnswer(
                    campaign, item_id, model, sample, fields, score.scored_at
                )
                matchups.setdefault(campaign, matchup)
            elif reviewer in answer.scores:
                problems.append(
                    f"{start}: reviewer: {reviewer} scores this answer again "
                    f"(first on line {answer.scores[reviewer].line})"
                )
                continue
            answer.scores[reviewers.setdefault(reviewer, reviewer)] = score
    except csv.Error as error:
        problems.append(f"{line}: row: {error}")
    if problems:
        raise ScoreImportError(problems)
    return ParsedScores(list(answers.values()), matchups, list(reviewers), warnings)


def _chunks(items: Iterable[T], size: int = BATCH_SIZE) -> Iterator[list[T]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def _batches(answers: list[ImportedAnswer]) -> Iterator[list[ImportedAnswer]]:
    """The answers in file order, in batches of about BATCH_SIZE scores."""
    batch: list[ImportedAnswer] = []
    scores = 0
    for answer in answers:
        batch.append(answer)
        scores += len(answer.scores)
        if scores >= BATCH_SIZE:
            yield batch
            batch, scores = [], 0
    if batch:
        yield batch


@dataclass
class _Campaign:
    pk: int
    suite_id: int
    review: ReviewSettings | None  # set when this import created the campaign


class _Loader:
    """Writes a parsed file: looks up what it refers to in bulk (one query per kind and
    BATCH_SIZE keys), creates what is missing, then creates or updates the scores.

    Creates in the order the rows name things, as a row-by-row import would. Problems are
    collected as (line, `line: column: reason`), so they can be reported in file order.
    """

    def __init__(self, parsed: ParsedScores, source: str, report: ScoreImportReport) -> None:
        self.parsed = parsed
        self.answers = parsed.answers
        self.source = source
        self.report = report
        self.now = timezone.now()
        self.problems: list[tuple[int, str]] = []

    def load(self) -> None:
        self.campaigns = self.find_campaigns()
        self.endpoints = self.find_endpoints()
        self.items = self.find_items()
        self.add_members()
        self.reviewers = self.find_reviewers()
        self.find_generations()
        self.write_scores()

    def find_campaigns(self) -> dict[str, _Campaign]:
        """Every campaign by slug; a missing one is created, finished, in a suite of its own."""
        slugs = list(self.parsed.matchups)
        found = {
            slug: _Campaign(pk, suite_id, None)
            for chunk in _chunks(slugs)
            for slug, pk, suite_id in Campaign.objects.filter(slug__in=chunk)
            .order_by()
            .values_list("slug", "pk", "suite_id")
        }
        missing = [slug for slug in slugs if slug not in found]
        if not missing:
            return found
        names = {slug: f"{IMPORTED_SUITE_PREFIX}{slug}"[:100] for slug in missing}
        suites = {
            name: pk
            for chunk in _chunks(dict.fromkeys(names.values()))
            for name, pk in Suite.objects.filter(name__in=chunk).values_list("name", "pk")
        }
        new_suites = Suite.objects.bulk_create(
            Suite(name=name, description=f"Items of scores imported from {self.source}.")
            for name in dict.fromkeys(names.values())
            if name not in suites
        )
        suites |= {suite.name: suite.pk for suite in new_suites}
        campaigns = Campaign.objects.bulk_create(
            Campaign(
                slug=slug,
                name=f"{slug} (imported)",
                matchup=(self.parsed.matchups[slug] or "").strip(),
                suite_id=suites[names[slug]],
                status=CampaignStatus.FINISHED,
                launched_at=self.now,
            )
            for slug in missing
        )
        # Restricted below to the campaign's own (imported, inactive) reviewers, so its
        # placeholder answers never reach a real reviewer's queue.
        reviews = ReviewSettings.objects.bulk_create(
            ReviewSettings(campaign_id=campaign.pk) for campaign in campaigns
        )
        for campaign, review in zip(campaigns, reviews, strict=True):
            found[campaign.slug] = _Campaign(campaign.pk, campaign.suite_id, review)
        return found

    def find_endpoints(self) -> dict[str, int]:
        """Every model's pk by slug; a missing one is created with a placeholder base URL."""
        slugs = list(dict.fromkeys(answer.model for answer in self.answers))
        found = {
            slug: pk
            for chunk in _chunks(slugs)
            for slug, pk in ModelEndpoint.objects.filter(slug__in=chunk).values_list("slug", "pk")
        }
        created = ModelEndpoint.objects.bulk_create(
            ModelEndpoint(
                slug=slug, name=f"{slug} (imported)", model=slug, base_url=PLACEHOLDER_BASE_URL
            )
            for slug in slugs
            if slug not in found
        )
        return found | {endpoint.slug: endpoint.pk for endpoint in created}

    def find_items(self) -> dict[tuple[int, str], tuple[int, int]]:
        """(pk, task type pk) of every item by (suite, id); a missing one is created with the
        task type of the first row that names it and a placeholder prompt."""
        wanted: dict[tuple[int, str], int] = {}
        for answer in self.answers:
            first = next(iter(answer.scores.values()))
            suite = self.campaigns[answer.campaign].suite_id
            wanted.setdefault((suite, answer.item_id), first.task_type)
        by_suite: dict[int, list[str]] = {}
        for suite, item_id in wanted:
            by_suite.setdefault(suite, []).append(item_id)
        found = {
            (suite, item_id): (pk, task_type)
            for suite, item_ids in by_suite.items()
            for chunk in _chunks(item_ids)
            for item_id, pk, task_type in TaskItem.objects.filter(
                suite_id=suite, external_id__in=chunk
            )
            .order_by()
            .values_list("external_id", "pk", "task_type_id")
        }
        for chunk in _chunks(key for key in wanted if key not in found):
            created = TaskItem.objects.bulk_create(
                TaskItem(
                    suite_id=suite,
                    external_id=item_id,
                    task_type_id=wanted[suite, item_id],
                    prompt=PLACEHOLDER_PROMPT,
                    tags=["imported"],
                    content_hash="imported",
                )
                for suite, item_id in chunk
            )
            for item in created:
                found[item.suite_id, item.external_id] = (item.pk, item.task_type_id)
        return found

    def add_members(self) -> None:
        """Add each model to the campaigns it answers in, after their models, in file order."""
        pairs = dict.fromkeys(
            (self.campaigns[answer.campaign].pk, self.endpoints[answer.model])
            for answer in self.answers
        )
        existing = {
            pair
            for chunk in _chunks({campaign for campaign, _ in pairs})
            for pair in CampaignModel.objects.filter(campaign_id__in=chunk)
            .order_by()
            .values_list("campaign_id", "endpoint_id")
        }
        count = Counter(campaign for campaign, _ in existing)
        new = []
        for campaign, endpoint in pairs:
            if (campaign, endpoint) not in existing:
                position = count[campaign]
                new.append(
                    CampaignModel(campaign_id=campaign, endpoint_id=endpoint, position=position)
                )
                count[campaign] += 1
        CampaignModel.objects.bulk_create(new)

    def find_reviewers(self) -> dict[str, int]:
        """Every reviewer's pk by username; a missing one is created inactive, unable to log in."""
        usernames = self.parsed.reviewers
        found = {
            username: pk
            for chunk in _chunks(usernames)
            for username, pk in User.objects.filter(username__in=chunk).values_list(
                "username", "pk"
            )
        }
        for chunk in _chunks(username for username in usernames if username not in found):
            new = [User(username=username, is_active=False) for username in chunk]
            for user in new:
                user.set_unusable_password()
            found |= {user.username: user.pk for user in User.objects.bulk_create(new)}
        return found

    def item(self, answer: ImportedAnswer) -> tuple[int, int]:
        """The (pk, task type pk) of the item `answer` answers."""
        return self.items[self.campaigns[answer.campaign].suite_id, answer.item_id]

    def find_generations(self) -> None:
        """Set each answer's generation: the stored one, or a new succeeded placeholder answer
        with the timings of its first row."""
        # Only a campaign that existed before the import can hold answers already.
        wanted: dict[tuple[int, int, int, int], ImportedAnswer] = {}
        by_campaign: dict[int, set[int]] = {}
        for answer in self.answers:
            campaign = self.campaigns[answer.campaign]
            if campaign.review is None:
                item = self.item(answer)[0]
                wanted[campaign.pk, item, self.endpoints[answer.model], answer.sample] = answer
                by_campaign.setdefault(campaign.pk, set()).add(item)
        for campaign_pk, items in by_campaign.items():
            for chunk in _chunks(items):
                stored = (
                    Generation.objects.filter(campaign_id=campaign_pk, item_id__in=chunk)
                    .order_by()
                    .values_list("item_id", "endpoint_id", "sample", "pk")
                )
                for item, endpoint, sample, pk in stored:
                    found = wanted.get((campaign_pk, item, endpoint, sample))
                    if found is not None:
                        found.generation_id, found.existed = pk, True
        del wanted
        for batch in _chunks(answer for answer in self.answers if not answer.existed):
            new = [
                Generation(
                    campaign_id=self.campaigns[answer.campaign].pk,
                    item_id=self.item(answer)[0],
                    endpoint_id=self.endpoints[answer.model],
                    sample=answer.sample,
                    status=GenerationStatus.SUCCEEDED,
                    content=PLACEHOLDER_ANSWER,
                    source=GenerationSource.IMPORTED,
                    placeholder=True,
                    finished_at=answer.finished_at,
                    **dict(zip(GENERATION_COLUMNS, answer.generation_fields, strict=True)),
                )
                for answer in batch
            ]
            Generation.objects.bulk_create(new)
            for answer, generation in zip(batch, new, strict=True):
                answer.generation_id = generation.pk

    def write_scores(self) -> None:
        """Create the new scores and update the changed ones that were imported before, a batch
        at a time. A problem for each row whose item has another task type, and for each
        changed score given in gradebench itself."""
        current_rubric = Rubric.objects.current().pk
        rubrics = dict(Rubric.objects.values_list("version", "pk"))
        codes = dict(TaskType.objects.values_list("pk", "code"))
        imported_reviewers: dict[int, set[int]] = {}
        for batch in _batches(self.answers):
            # Only an answer that existed before the import can have scores already.
            existed = [answer.generation_id for answer in batch if answer.existed]
            stored = {
                (score["generation_id"], score["reviewer_id"]): score
                for score in (
                    Score.objects.filter(generation_id__in=existed).values(*STORED_FIELDS)
                    if existed
                    else []
                )
            }
            new: list[Score] = []
            changed: dict[tuple[str, ...], list[Score]] = {}
            for answer in batch:
                campaign = self.campaigns[answer.campaign]
                item_type = self.item(answer)[1]
                for username, row in answer.scores.items():
                    if row.task_type != item_type:
                        self.problem(
                            row.line,
                            f"task_type: item {answer.item_id!r} of campaign {answer.campaign!r} "
                            f"is {codes[item_type]}, not {codes[row.task_type]}",
                        )
                        continue
                    reviewer = self.reviewers[username]
                    if campaign.review is not None:
                        imported_reviewers.setdefault(campaign.pk, set()).add(reviewer)
                    rubric = None if row.rubric_version is None else rubrics[row.rubric_version]
                    score = stored.get((answer.generation_id, reviewer))
                    if score is None:
                        new.append(
                            Score(
                                generation_id=answer.generation_id,
                                reviewer_id=reviewer,
                                score=row.score,
                                comment=row.comment or "",
                                flagged=bool(row.flagged),
                                position=row.position or 0,
                                rubric_id=rubric or current_rubric,
                                scored_at=row.scored_at or self.now,
                                imported=True,
                            )
                        )
                        continue
                    changes = _changes(score, row, rubric)
                    if not changes:
                        self.report.unchanged += 1
                    elif not score["imported"]:
                        differ = ", ".join(sorted(changes))
                        self.problem(
                            row.line,
                            f"score: {username} already scored this answer in gradebench "
                            f"({differ} differ); not overwritten",
                        )
                    else:
                        # updated_at: what save() would set, and bulk_update does not.
                        update = Score(pk=score["id"], updated_at=self.now, **changes)
                        changed.setdefault(tuple(sorted(changes)), []).append(update)
            Score.objects.bulk_create(new)
            self.report.created += len(new)
            # One UPDATE per set of changed fields: each writes only what the file changed.
            for fields, updates in changed.items():
                Score.objects.bulk_update(updates, [*fields, "updated_at"])
                self.report.updated += len(updates)
        for campaign in self.campaigns.values():
            if campaign.review is not None and campaign.pk in imported_reviewers:
                campaign.review.reviewers.add(*imported_reviewers[campaign.pk])

    def problem(self, line: int, message: str) -> None:
        self.problems.append((line, f"{line}: {message}"))


def _changes(score: dict[str, Any], row: ImportedScore, rubric: int | None) -> dict[str, Any]:
    """The fields whose value in the file differs from the stored score (given columns only)."""
    wanted: dict[str, Any] = {"score": row.score}
    for name in ("comment", "flagged", "position", "scored_at"):
        if getattr(row, name) is not None:
            wanted[name] = getattr(row, name)
    if rubric is not None:
        wanted["rubric_id"] = rubric
    return {name: value for name, value in wanted.items() if score[name] != value}


def load_scores(data: bytes | BinaryIO, *, source: str = "file") -> ScoreImportReport:
    """Import a scores CSV in one transaction: every row, or none if anything is wrong.

    `data` is the file's bytes or the file itself, opened in binary mode (read twice: checked
    as UTF-8 first, then parsed). The whole file is parsed and checked before anything is
    written; then what the rows refer to is looked up and created in bulk, a few queries per
    thousand rows.

    Missing campaigns, suites (`imported-<campaign>`), items (placeholder prompt), endpoints
    (placeholder base URL), answers (succeeded, placeholder text, timings from the file) and
    reviewers (inactive, unusable password) are created; scores are created with
    `imported=True`. A score that exists for the same answer and reviewer is unchanged when the
    file agrees with it, updated when it was imported before, and a problem when it was given
    in gradebench itself (never overwritten). Raises ScoreImportError with every problem.
    """
    parsed = parse_scores(data)
    report = ScoreImportReport(warnings=parsed.warnings)
    with transaction.atomic():
        loader = _Loader(parsed, source, report)
        loader.load()
        if loader.problems:
            raise ScoreImportError([problem for _, problem in sorted(loader.problems)])
        if report.created or report.updated:
            ReviewSettings.objects.scores_changed(c.pk for c in loader.campaigns.values())
    return report
