"""Answers produced elsewhere (DESIGN §4.4a): what `import_generations` reads.

The format is the generations CSV that `export_generations --with-text` writes
(`generations_export.columns(with_text=True)`), as `.csv` or `.jsonl` (one object a line, the
same keys). `REQUIRED_COLUMNS` must be present; every other column is optional, and a column
the export does not write is ignored with a warning. So an export imports back unchanged, apart
from what this database records itself: `source` (always `imported` here).

Rules, each broken one reported as `line: column: reason`, the whole file refused, nothing
written:

- `campaign` is a campaign slug; a missing campaign is created (finished, so it is open for
  review) on the suite given with `--suite`, or else on the suite that holds the most of the
  items the file names for it (a tie is a problem: name the suite). An existing campaign keeps
  its suite, and `--suite` naming another is a problem.
- `item_id` must be an item of that suite, and `task_type` (code, alias or name) its task type.
- `model` is an endpoint's slug or, when no endpoint has that slug, the model name one endpoint
  sends (`acme/Acme-7B-Chat`; a name several endpoints send is a problem: use the slug). A model
  the database does not know becomes an external endpoint, with no base URL, which gradebench
  never calls: its model name is the file's, its slug made from it.
- `sample` defaults to 0. One row per (campaign, item, model, sample): a second one in the file
  is refused, and so is one that clashes with an answer our workers generated or a placeholder
  of `import_scores`. An answer imported before is unchanged when the row agrees with it and
  refused when it differs: imported answers are never rewritten (they may have scores).
- `status` defaults to `succeeded`, which needs non-empty `content`; `failed` and `cancelled`
  rows (an export's failures) are kept as such and never reviewed. Nothing else is accepted.
- Timings (`*_ms`, `*_tps`) are non-negative numbers, token counts and `attempts` whole
  numbers; empty cells are missing values, never 0. Without times there are no speed figures:
  an answer with `completion_tokens` and `response_time_ms` but no `e2e_tps` gets it computed.
- `content` and `reasoning` hold at most `MAX_TEXT_CHARS` characters each.
- CSV cells lose the quote `csv_writing.neutralise` put in front of a formula trigger; they are
  stored as text and neutralised again on export.

Imported answers are marked `source = imported`, checked for identity leaks as generated ones
are (`leaks.find_leaks`), and enter the review queue like them. Rows are parsed first, then
written in one transaction with `bulk_create` in batches of `BATCH_SIZE`.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

from .csv_reading import header_problems, restore, utf8_problem
from .generations_export import columns as export_columns
from .leaks import find_leaks, terms_with_models
from .models import (
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
    TimingQuality,
    UsageSource,
    validate_slug,
)

REQUIRED_COLUMNS = ("campaign", "task_type", "item_id", "model", "content")
# What the export writes. `source` is read and ignored: this database records it itself.
KNOWN_COLUMNS = tuple(export_columns(with_text=True))
MAX_TEXT_CHARS = 1_000_000
MAX_MODEL_CHARS = 200
SLUG = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
"""Longest `content` or `reasoning` accepted, in characters (about 1–3 MB of UTF-8)."""
# csv refuses longer cells before we could name their column; larger than MAX_TEXT_CHARS so a
# long answer is reported with its column and length.
CSV_FIELD_LIMIT = 64 * 1024 * 1024
FLOAT_COLUMNS = ("ttft_ms", "ttfa_ms", "response_time_ms", "decode_tps", "e2e_tps", "tpot_ms",
                 "scheduling_lag_ms")  # fmt: skip
INT_COLUMNS = ("attempts", "prompt_tokens", "completion_tokens", "total_tokens", "reasoning_tokens")
TEXT_LIMITS = {"finish_reason": 32, "error": 10_000}
STATUSES = (GenerationStatus.SUCCEEDED, GenerationStatus.FAILED, GenerationStatus.CANCELLED)
TRUE_WORDS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
# The stored fields an imported row sets, in this order (`ParsedAnswer.fields`).
FIELDS = (
    *("status", "attempts", "finish_reason", *FLOAT_COLUMNS, *INT_COLUMNS[1:]),
    *("usage_source", "simulated", "error", "timing_quality", "content", "reasoning"),
)
LOOKUP_FIELDS = ("item_id", "endpoint_id", "sample", "source", "placeholder")
TIMED = ("ttft_ms", "ttfa_ms", "response_time_ms", "decode_tps", "e2e_tps", "tpot_ms")
BATCH_SIZE = 1000
PREVIEW_ROWS = 10


class GenerationImportError(Exception):
    """A file that cannot be imported; `problems` holds every `line: column: reason`."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class ParsedAnswer(NamedTuple):
    """One valid row: where it goes and the values of `FIELDS`."""

    line: int
    campaign: str
    matchup: str
    task_type: int  # pk
    item_id: str
    model: str
    sample: int
    fields: tuple[Any, ...]


@dataclass
class GenerationImportReport:
    """What an import did (or, in a dry run, would do)."""

    created: int = 0
    unchanged: int = 0
    dry_run: bool = False
    counts: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    """Rows by (campaign, model, task type code)."""
    preview: list[dict[str, Any]] = field(default_factory=list)
    new_campaigns: list[str] = field(default_factory=list)
    new_models: list[str] = field(default_factory=list)
    untimed: int = 0
    """Succeeded answers without any timing: they enter no speed figure."""
    warnings: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.created + self.unchanged

    def by_campaign_model_type(self) -> list[tuple[str, str, str, int]]:
        return [(*key, n) for key, n in sorted(self.counts.items())]

    def summary(self) -> str:
        return f"created {self.created}, unchanged {self.unchanged}"


# --- Reading ---------------------------------------------------------------------------------


def _records(stream: BinaryIO, suffix: str, problems: list[str]) -> Iterator[tuple[int, dict]]:
    """(line, {column: cell text}) of each non-empty row; the header's problems are fatal."""
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")
    try:
        if suffix == ".jsonl":
            yield from _jsonl_records(text, problems)
        else:
            yield from _csv_records(text, problems)
    finally:
        text.detach()


def _csv_records(text: io.TextIOWrapper, problems: list[str]) -> Iterator[tuple[int, dict]]:
    if csv.field_size_limit() < CSV_FIELD_LIMIT:
        csv.field_size_limit(CSV_FIELD_LIMIT)
    reader = csv.reader(text)
    try:
        header = next(reader)
    except StopIteration:
        raise GenerationImportError(["1: header: the file is empty"]) from None
    except csv.Error as error:
        raise GenerationImportError([f"1: header: {error}"]) from None
    columns = [name.strip() for name in header]
    _check_columns(columns)
    line = reader.line_num + 1
    try:
        for record in reader:
            start, line = line, reader.line_num + 1
            if not "".join(record).strip():
                continue
            if len(record) != len(columns):
                problems.append(
                    f"{start}: row: has {len(record)} cells, the header has {len(columns)}"
                )
                continue
            yield start, dict(zip(columns, map(restore, record), strict=True))
    except csv.Error as error:
        problems.append(f"{line}: row: {error}")


def _check_columns(columns: list[str]) -> None:
    problems = header_problems(columns, REQUIRED_COLUMNS)
    if problems:
        raise GenerationImportError(problems)


def _jsonl_records(text: io.TextIOWrapper, problems: list[str]) -> Iterator[tuple[int, dict]]:
    for number, raw in enumerate(text, start=1):
        if not raw.strip():
            continue
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as error:
            problems.append(f"{number}: json: invalid JSON ({error.msg} at column {error.colno})")
            continue
        if not isinstance(value, dict):
            problems.append(f"{number}: json: each line must be a JSON object")
            continue
        missing = [name for name in REQUIRED_COLUMNS if name not in value]
        for name in missing:
            problems.append(f"{number}: {name}: missing (required: {', '.join(REQUIRED_COLUMNS)})")
        if missing:
            continue
        yield number, {str(key): _cell(cell) for key, cell in value.items()}


def _cell(value: object) -> str:
    """A JSON value as the text a CSV cell would hold."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


class _RowParser:
    """Turns one row into a ParsedAnswer, collecting `line: column: reason` problems."""

    def __init__(self) -> None:
        self.task_types: dict[str, TaskType | None] = {}
        self.slugs: dict[str, bool] = {}

    def is_slug(self, value: str) -> bool:
        if value not in self.slugs:
            try:
                validate_slug(value)
            except ValidationError:
                self.slugs[value] = False
            else:
                self.slugs[value] = True
        return self.slugs[value]

    def parse(self, line: int, cells: dict[str, str], problems: list[str]) -> ParsedAnswer | None:
        before = len(problems)

        def problem(column: str, reason: str) -> None:
            problems.append(f"{line}: {column}: {reason}")

        def slug(column: str) -> str:
            value = cells.get(column, "").strip()
            if not value:
                problem(column, "empty")
            elif len(value) > 100 or not self.is_slug(value):
                problem(column, f"{value[:100]!r} is not a valid slug (letters, digits, . _ -)")
            return value

        def whole(column: str, high: int = 2**31 - 1) -> int | None:
            value = cells.get(column, "").strip()
            if not value:
                return None
            if not (value.isascii() and value.isdigit()) or int(value) > high:
                problem(column, f"{value[:40]!r} is not a whole number from 0 to {high}")
                return None
            return int(value)

        def number(column: str) -> float | None:
            value = cells.get(column, "").strip()
            if not value:
                return None
            try:
                parsed = float(value)
            except ValueError:
                parsed = math.nan
            if not math.isfinite(parsed):
                problem(column, f"{value[:40]!r} is not a number")
                return None
            if parsed < 0:
                problem(column, f"{value[:40]!r} is negative (timings and speeds are 0 or more)")
                return None
            return parsed

        def text(column: str, limit: int) -> str:
            value = cells.get(column, "")
            if len(value) > limit:
                problem(column, f"{len(value):,} characters; at most {limit:,} are accepted")
                return ""
            if "\x00" in value:
                problem(column, "contains a NUL character, which text cannot hold")
                return ""
            return value

        def choice(column: str, allowed: tuple[str, ...], default: str) -> str:
            value = cells.get(column, "").strip()
            if not value:
                return default
            if value not in allowed:
                shown = ", ".join(a for a in allowed if a) or "nothing"
                problem(column, f"{value[:40]!r} is not one of {shown}")
                return default
            return value

        campaign = slug("campaign")
        model = cells.get("model", "").strip()
        if not model:
            problem("model", "empty")
        elif len(model) > MAX_MODEL_CHARS:
            problem("model", f"longer than {MAX_MODEL_CHARS} characters")
        item_id = cells.get("item_id", "")
        if not item_id.strip():
            problem("item_id", "empty")
        elif len(item_id) > 200:
            problem("item_id", "longer than 200 characters")
        spelling = cells.get("task_type", "").strip()
        if spelling not in self.task_types:
            self.task_types[spelling] = TaskType.objects.resolve(spelling)
        task_type = self.task_types[spelling]
        if task_type is None:
            problem("task_type", f"unknown task type {spelling[:40]!r}")
        matchup = cells.get("matchup", "").strip()
        if len(matchup) > 100:
            problem("matchup", "longer than 100 characters")
        sample = whole("sample", 32767) or 0
        status = choice("status", tuple(STATUSES), GenerationStatus.SUCCEEDED)
        content = text("content", MAX_TEXT_CHARS)
        reasoning = text("reasoning", MAX_TEXT_CHARS)
        if status == GenerationStatus.SUCCEEDED and not cells.get("content", "").strip():
            problem("content", "empty; a succeeded answer needs its text")
        simulated = False
        word = cells.get("simulated", "").strip().casefold()
        if word:
            if word not in TRUE_WORDS:
                problem("simulated", f"{word[:40]!r} is not true or false")
            simulated = TRUE_WORDS.get(word, False)
        floats = {name: number(name) for name in FLOAT_COLUMNS}
        ints = {name: whole(name) for name in INT_COLUMNS}
        attempts = ints.pop("attempts")
        if attempts is not None and attempts > 32767:
            problem("attempts", f"{attempts} is not a whole number from 0 to 32767")
        if floats["e2e_tps"] is None and ints["completion_tokens"] and floats["response_time_ms"]:
            floats["e2e_tps"] = round(
                ints["completion_tokens"] / (floats["response_time_ms"] / 1000.0), 4
            )
        values = {
            "status": status,
            "attempts": attempts if attempts is not None else 1,
            "finish_reason": text("finish_reason", TEXT_LIMITS["finish_reason"]).strip(),
            **floats,
            **ints,
            "usage_source": choice("usage_source", ("", *UsageSource.values), ""),
            "simulated": simulated,
            "error": text("error", TEXT_LIMITS["error"]),
            "timing_quality": choice("timing_quality", ("", *TimingQuality.values), ""),
            "content": content,
            "reasoning": reasoning,
        }
        if len(problems) > before or task_type is None:
            return None
        return ParsedAnswer(
            line,
            campaign,
            matchup,
            task_type.pk,
            item_id,
            model,
            sample,
            tuple(values[name] for name in FIELDS),
        )


def parse_generations(
    data: BinaryIO, *, suffix: str
) -> tuple[list[ParsedAnswer], list[str], list[str]]:
    """The valid rows of a file (opened in binary mode), the warnings, and the problems of the
    other rows (`line: column: reason`). `suffix` is `.csv` or `.jsonl`. A file that cannot be
    read at all (not UTF-8, no header, a required column missing) raises GenerationImportError.
    """
    suffix = suffix.lower()
    if suffix not in (".csv", ".jsonl"):
        raise GenerationImportError([f"1: file: expected a .csv or .jsonl file, not {suffix!r}"])
    stream: BinaryIO = data if data.seekable() else io.BytesIO(data.read())
    problem = utf8_problem(stream)
    if problem is not None:
        raise GenerationImportError([problem])
    stream.seek(0)
    problems: list[str] = []
    parser = _RowParser()
    rows: list[ParsedAnswer] = []
    seen: dict[tuple[str, str, str, int], int] = {}
    unknown: dict[str, int] = {}
    for line, cells in _records(stream, suffix, problems):
        for name in cells:
            if name not in KNOWN_COLUMNS and name not in unknown:
                unknown[name] = line
        parsed = parser.parse(line, cells, problems)
        if parsed is None:
            continue
        key = (parsed.campaign, parsed.item_id, parsed.model, parsed.sample)
        first = seen.setdefault(key, line)
        if first != line:
            problems.append(
                f"{line}: sample: a second answer of item {parsed.item_id!r} by {parsed.model} "
                f"(sample {parsed.sample}) in {parsed.campaign}; the first is on line {first}"
            )
            continue
        rows.append(parsed)
    warnings = [
        f"{line if suffix == '.jsonl' else 1}: {name or '(unnamed)'}: unknown column ignored"
        for name, line in unknown.items()
    ]
    return rows, warnings, problems


# --- Writing ---------------------------------------------------------------------------------


def _chunks(items: list[Any], size: int = BATCH_SIZE) -> Iterator[list[Any]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


@dataclass
class _Campaign:
    pk: int
    suite_id: int
    suite: str
    status: str
    created: bool


class _Loader:
    """Looks up what the rows name in bulk (a query per kind and BATCH_SIZE keys), creates
    what is missing, and writes the answers a batch at a time. Problems are collected as
    (line, `line: column: reason`)."""

    def __init__(
        self, rows: list[ParsedAnswer], suite: str | None, report: GenerationImportReport
    ) -> None:
        self.rows = rows
        self.suite = suite
        self.report = report
        self.now = timezone.now()
        self.problems: list[tuple[int, str]] = []

    def problem(self, line: int, message: str) -> None:
        self.problems.append((line, f"{line}: {message}"))

    def load(self) -> None:
        before = len(self.problems)
        self.campaigns = self.find_campaigns()
        if len(self.problems) > before:
            return
        self.items = self.find_items()
        if len(self.problems) > before:
            return
        self.endpoints = self.find_endpoints()
        if len(self.problems) > before:
            return
        self.add_members()
        self.write()

    def find_campaigns(self) -> dict[str, _Campaign]:
        """Every campaign by slug; a missing one is created on its suite, finished."""
        first: dict[str, ParsedAnswer] = {}
        for row in self.rows:
            first.setdefault(row.campaign, row)
        found = {
            slug: _Campaign(pk, suite_id, suite, status, False)
            for chunk in _chunks(list(first))
            for slug, pk, suite_id, suite, status in Campaign.objects.filter(slug__in=chunk)
            .order_by()
            .values_list("slug", "pk", "suite_id", "suite__name", "status")
        }
        named = None
        before = len(self.problems)
        if self.suite:
            named = Suite.objects.filter(name=self.suite).values_list("pk", flat=True).first()
            if named is None:
                known = ", ".join(Suite.objects.values_list("name", flat=True)) or "none"
                line = self.rows[0].line if self.rows else 1
                self.problem(line, f"suite: no suite {self.suite!r} (known: {known})")
                return found
        for slug, campaign in found.items():
            if named is not None and campaign.suite_id != named:
                self.problem(
                    first[slug].line,
                    f"campaign: {slug} uses suite {campaign.suite}, not {self.suite}",
                )
        missing = [slug for slug in first if slug not in found]
        suites: dict[str, int] = {}
        for slug in missing:
            suite_id = named if named is not None else self.detect_suite(slug, first[slug].line)
            if suite_id is not None:
                suites[slug] = suite_id
        if len(self.problems) > before or not missing:
            return found
        created = Campaign.objects.bulk_create(
            Campaign(
                slug=slug,
                name=slug,
                matchup=first[slug].matchup,
                suite_id=suites[slug],
                status=CampaignStatus.FINISHED,
                launched_at=self.now,
            )
            for slug in missing
        )
        names = dict(Suite.objects.filter(pk__in=suites.values()).values_list("pk", "name"))
        for new in created:
            found[new.slug] = _Campaign(
                new.pk, new.suite_id, names[new.suite_id], new.status, created=True
            )
        self.report.new_campaigns = missing
        return found

    def detect_suite(self, slug: str, line: int) -> int | None:
        """The suite holding the most of the items the file names for the new campaign `slug`
        (each item it lacks is then reported); a problem when several tie or none holds any."""
        wanted = list(dict.fromkeys(row.item_id for row in self.rows if row.campaign == slug))
        holding: Counter[int] = Counter()
        for chunk in _chunks(wanted):
            holding.update(
                TaskItem.objects.filter(external_id__in=chunk)
                .order_by()
                .values_list("suite_id", flat=True)
            )
        if not holding:
            self.problem(
                line,
                f"campaign: {slug} is new and no suite holds any of its items; import the "
                "suite first (import_tasks) or name it with --suite",
            )
            return None
        most = max(holding.values())
        best = [suite for suite, n in holding.items() if n == most]
        if len(best) == 1:
            return best[0]
        suites = Suite.objects.filter(pk__in=best).values_list("name", flat=True)
        self.problem(
            line,
            f"campaign: {slug} is new and its items are in several suites "
            f"({', '.join(sorted(suites))}); name one with --suite",
        )
        return None

    def find_items(self) -> dict[tuple[int, str], tuple[int, int]]:
        """(pk, task type pk) of each item by (suite, id); a problem for each row whose item is
        not in its campaign's suite or has another task type."""
        by_suite: dict[int, set[str]] = {}
        for row in self.rows:
            by_suite.setdefault(self.campaigns[row.campaign].suite_id, set()).add(row.item_id)
        found = {
            (suite, item_id): (pk, task_type)
            for suite, item_ids in by_suite.items()
            for chunk in _chunks(list(item_ids))
            for item_id, pk, task_type in TaskItem.objects.filter(
                suite_id=suite, external_id__in=chunk
            )
            .order_by()
            .values_list("external_id", "pk", "task_type_id")
        }
        codes = dict(TaskType.objects.values_list("pk", "code"))
        for row in self.rows:
            campaign = self.campaigns[row.campaign]
            item = found.get((campaign.suite_id, row.item_id))
            if item is None:
                self.problem(
                    row.line,
                    f"item_id: no item {row.item_id!r} in suite {campaign.suite} "
                    f"(campaign {row.campaign})",
                )
            elif item[1] != row.task_type:
                self.problem(
                    row.line,
                    f"task_type: item {row.item_id!r} of suite {campaign.suite} is "
                    f"{codes[item[1]]}, not {codes[row.task_type]}",
                )
        return found

    def find_endpoints(self) -> dict[str, int]:
        """Every model's endpoint pk, by slug, else by the model name one endpoint sends; a
        model found neither way is created external (no base URL)."""
        names = list(dict.fromkeys(row.model for row in self.rows))
        found = {
            slug: pk
            for chunk in _chunks(names)
            for slug, pk in ModelEndpoint.objects.filter(slug__in=chunk).values_list("slug", "pk")
        }
        sent_by: dict[str, list[tuple[str, int]]] = {}
        for chunk in _chunks([name for name in names if name not in found]):
            rows = ModelEndpoint.objects.filter(model__in=chunk).values_list("model", "slug", "pk")
            for model, slug, pk in rows.order_by("slug"):
                sent_by.setdefault(model, []).append((slug, pk))
        first_line: dict[str, int] = {}
        for row in self.rows:
            first_line.setdefault(row.model, row.line)
        missing = []
        for name in names:
            endpoints = sent_by.get(name, [])
            if name in found:
                continue
            if len(endpoints) == 1:
                found[name] = endpoints[0][1]
            elif endpoints:
                slugs = ", ".join(slug for slug, _ in endpoints)
                self.problem(
                    first_line[name],
                    f"model: {name!r} is the model of several endpoints ({slugs}): "
                    "give the slug of the one that answered",
                )
            else:
                missing.append(name)
        created = {
            name: ModelEndpoint.objects.create(
                slug=_new_slug(name), name=name, model=name, base_url=""
            ).pk
            for name in missing
        }
        self.report.new_models = missing
        return found | created

    def add_members(self) -> None:
        """Add each model to the campaigns it answers in, after their models, in file order."""
        pairs = dict.fromkeys(
            (self.campaigns[row.campaign].pk, self.endpoints[row.model]) for row in self.rows
        )
        existing = set(
            CampaignModel.objects.filter(campaign_id__in={c for c, _ in pairs})
            .order_by()
            .values_list("campaign_id", "endpoint_id")
        )
        count = Counter(campaign for campaign, _ in existing)
        new = []
        for campaign, endpoint in pairs:
            if (campaign, endpoint) not in existing:
                new.append(
                    CampaignModel(
                        campaign_id=campaign, endpoint_id=endpoint, position=count[campaign]
                    )
                )
                count[campaign] += 1
        CampaignModel.objects.bulk_create(new)

    def write(self) -> None:
        """Create the new answers a batch at a time; compare those imported before."""
        codes = dict(TaskType.objects.values_list("pk", "code"))
        campaigns = [campaign.pk for campaign in self.campaigns.values()]
        models = ModelEndpoint.objects.filter(members__campaign_id__in=campaigns).distinct()
        terms = terms_with_models(models.values_list("name", "model"))
        for batch in _chunks(self.rows):
            keys = {}
            by_campaign: dict[int, set[int]] = {}
            for row in batch:
                campaign = self.campaigns[row.campaign]
                item = self.items[campaign.suite_id, row.item_id][0]
                keys[row.line] = (campaign.pk, item, self.endpoints[row.model], row.sample)
                if not campaign.created:
                    by_campaign.setdefault(campaign.pk, set()).add(item)
            stored: dict[tuple[int, int, int, int], tuple[Any, ...]] = {}
            for campaign_pk, items in by_campaign.items():
                for chunk in _chunks(list(items)):
                    for values in (
                        Generation.objects.filter(campaign_id=campaign_pk, item_id__in=chunk)
                        .order_by()
                        .values_list(*LOOKUP_FIELDS, *FIELDS)
                    ):
                        item, endpoint, sample, *rest = values
                        stored[campaign_pk, item, endpoint, sample] = tuple(rest)
            new = []
            for row in batch:
                key = keys[row.line]
                self.report.counts[row.campaign, row.model, codes[row.task_type]] += 1
                if len(self.report.preview) < PREVIEW_ROWS:
                    self.report.preview.append(_preview(row, codes[row.task_type]))
                values = dict(zip(FIELDS, row.fields, strict=True))
                if values["status"] == GenerationStatus.SUCCEEDED and all(
                    values[name] is None for name in TIMED
                ):
                    self.report.untimed += 1
                existing = stored.get(key)
                if existing is not None:
                    self.compare(row, existing)
                    continue
                new.append(
                    Generation(
                        campaign_id=key[0],
                        item_id=key[1],
                        endpoint_id=key[2],
                        sample=row.sample,
                        source=GenerationSource.IMPORTED,
                        identity_leaks=find_leaks(
                            f"{values['content']}\n{values['reasoning']}", terms
                        ),
                        finished_at=self.now,
                        **values,
                    )
                )
            if not self.problems:
                Generation.objects.bulk_create(new)
            self.report.created += len(new)
        # A campaign waiting to be launched now has answers: it is open for review.
        Campaign.objects.filter(
            pk__in=[c.pk for c in self.campaigns.values()], status=CampaignStatus.DRAFT
        ).update(status=CampaignStatus.FINISHED, launched_at=self.now)

    def compare(self, row: ParsedAnswer, existing: tuple[Any, ...]) -> None:
        source, placeholder, *stored = existing
        where = f"item {row.item_id!r} by {row.model} (sample {row.sample}) in {row.campaign}"
        if placeholder:
            self.problem(
                row.line,
                f"sample: {where} is a placeholder of imported scores; it is not replaced",
            )
        elif source != GenerationSource.IMPORTED:
            self.problem(
                row.line, f"sample: {where} was generated by gradebench; it is not overwritten"
            )
        elif tuple(stored) != row.fields:
            differ = ", ".join(
                name
                for name, old, new in zip(FIELDS, stored, row.fields, strict=True)
                if old != new
            )
            self.problem(
                row.line,
                f"{differ.split(', ')[0]}: {where} was imported before with other values "
                f"({differ} differ); imported answers are not changed",
            )
        else:
            self.report.unchanged += 1


def _new_slug(name: str) -> str:
    """An unused endpoint slug for the model `name`: the name itself when it is a slug."""
    if len(name) <= 100 and SLUG.fullmatch(name):
        return name  # not an endpoint's slug, or it would have been found
    base = slugify(name.replace("/", "-"))[:90].strip("-_.") or "model"
    slug, n = base, 1
    while ModelEndpoint.objects.filter(slug=slug).exists():
        n += 1
        slug = f"{base}-{n}"
    return slug


def _preview(row: ParsedAnswer, code: str) -> dict[str, Any]:
    values = dict(zip(FIELDS, row.fields, strict=True))
    return {
        "line": row.line,
        "campaign": row.campaign,
        "model": row.model,
        "task_type": code,
        "item_id": row.item_id,
        "sample": row.sample,
        "status": values["status"],
        "content": values["content"][:200],
        "response_time_ms": values["response_time_ms"],
        "completion_tokens": values["completion_tokens"],
    }


def import_generations(
    path: Path, *, suite: str | None = None, dry_run: bool = False
) -> GenerationImportReport:
    """Import answers from a `.csv` or `.jsonl` file: every row, or none if anything is wrong.

    Raises GenerationImportError listing every problem as `line: column: reason`. With
    `dry_run` everything is checked and counted as for a real import, then rolled back.
    """
    with path.open("rb") as stream:
        return load_generations(stream, suffix=path.suffix, suite=suite, dry_run=dry_run)


def load_generations(
    data: BinaryIO, *, suffix: str, suite: str | None = None, dry_run: bool = False
) -> GenerationImportReport:
    """`import_generations` of an open binary file; see the module docstring for the rules."""
    rows, warnings, problems = parse_generations(data, suffix=suffix)
    if not rows and not problems:
        raise GenerationImportError(["1: file: no answers in the file"])
    report = GenerationImportReport(dry_run=dry_run, warnings=warnings)
    with transaction.atomic():
        loader = _Loader(rows, suite, report)
        # The valid rows are still looked up, so the file's every problem is named at once;
        # with problems nothing is written, and the transaction is rolled back.
        loader.problems = [(int(problem.split(":", 1)[0]), problem) for problem in problems]
        loader.load()
        if loader.problems:
            transaction.set_rollback(True)
            # Sorted by line, stably: a line's problems in the order they were found.
            ordered = sorted(loader.problems, key=lambda problem: problem[0])
            raise GenerationImportError([problem for _, problem in ordered])
        if dry_run:
            transaction.set_rollback(True)
    if report.untimed:
        report.warnings.append(
            f"{report.untimed} succeeded answer(s) carry no timings: they enter no speed figure"
        )
    return report
