"""Gold and calibration answers (DESIGN §11): answers an admin has scored in advance.

An admin marks a generation with the range a careful reviewer's score falls in (`low`–`high`,
whole numbers 0–10) and a note, from the drill-down page (`mark`, `unmark`) or from a CSV file
(`load_gold`, `manage.py import_gold FILE`). Only an answer with text can be marked: a failed,
queued or empty answer, or the placeholder an imported score stands on, gives a reviewer nothing
to read. The file is checked whole before anything is written and imports in one transaction,
or nothing does; each problem is `line: column: reason`, as the other imports report them.
Importing the same file again changes nothing; a changed row updates the mark.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Any, BinaryIO

from django import forms
from django.db import transaction
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from inference.csv_reading import header_problems, restore, utf8_problem
from inference.models import Campaign, Generation, GenerationStatus

from .models import GoldAnswer, Purpose
from .scores_import import PLACEHOLDER_ANSWER

REQUIRED_COLUMNS = ("campaign", "item_id", "model", "sample", "low", "high", "note")
OPTIONAL_COLUMNS = ("purpose",)
PURPOSES = (Purpose.GOLD.value, Purpose.CALIBRATION.value)


class GoldImportError(Exception):
    """A gold file that cannot be imported; `problems` holds every `line: column: reason`."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class GoldRow:
    line: int
    generation_id: int
    low: int
    high: int
    note: str
    purpose: str


@dataclass
class GoldImportReport:
    created: int = 0
    updated: int = 0
    unchanged: int = 0

    def summary(self) -> str:
        return f"created {self.created}, updated {self.updated}, unchanged {self.unchanged}"


def unmarkable_reason(generation: Generation) -> str | None:
    """Why this answer cannot be a gold or calibration answer, or None when it can."""
    if generation.status != GenerationStatus.SUCCEEDED:
        return _("the answer did not succeed (%(status)s): there is nothing to score") % {
            "status": generation.status
        }
    if not generation.content.strip() or generation.content == PLACEHOLDER_ANSWER:
        return _("the answer has no text (an imported score's placeholder): nothing to score")
    return None


def _whole(value: str) -> int | None:
    value = value.strip()
    if value.isascii() and value.isdigit() and int(value) <= 10:
        return int(value)
    return None


def _rows(reader: Any) -> list[GoldRow]:
    try:
        header = next(reader)
    except StopIteration:
        raise GoldImportError(["1: header: the file is empty"]) from None
    except csv.Error as error:
        raise GoldImportError([f"1: header: {error}"]) from None
    columns = [name.strip() for name in header]
    problems = header_problems(columns, REQUIRED_COLUMNS)
    problems += [
        f"1: {name or '(unnamed)'}: unknown column (known: "
        f"{', '.join((*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS))})"
        for name in columns
        if name not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS
    ]
    if problems:
        raise GoldImportError(problems)
    records: list[tuple[int, dict[str, str]]] = []
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
            records.append((start, dict(zip(columns, map(restore, record), strict=True))))
    except csv.Error as error:
        problems.append(f"{line}: row: {error}")
    if not records and not problems:
        problems.append("2: row: no rows after the header")
    if problems:
        raise GoldImportError(problems)
    return _resolve(records)


def _resolve(records: list[tuple[int, dict[str, str]]]) -> list[GoldRow]:
    """Each record's answer and mark, or GoldImportError with every problem."""
    slugs = {cells["campaign"].strip() for _, cells in records}
    campaigns = {
        c.slug: c
        for c in Campaign.objects.filter(slug__in=slugs)
        .select_related("suite")
        .prefetch_related("endpoints")
    }
    answers: dict[tuple[str, str, str, int], Generation] = {
        (g.campaign.slug, g.item.external_id, g.endpoint.slug, g.sample): g
        for g in Generation.objects.filter(
            campaign__in=campaigns.values(),
            item__external_id__in={cells["item_id"] for _, cells in records},
        ).select_related("campaign", "item", "endpoint")
    }
    items = {(campaign, external_id) for campaign, external_id, _, _ in answers}
    items |= {
        (c.slug, external_id)
        for c in campaigns.values()
        for external_id in c.suite.items.filter(
            external_id__in={cells["item_id"] for _, cells in records}
        ).values_list("external_id", flat=True)
    }
    problems: list[str] = []
    rows: list[GoldRow] = []
    seen: dict[int, int] = {}
    for line, cells in records:
        start = len(problems)

        def problem(column: str, reason: str, line: int = line) -> None:
            problems.append(f"{line}: {column}: {reason}")

        low, high = _whole(cells["low"]), _whole(cells["high"])
        for column, value in (("low", low), ("high", high)):
            if value is None:
                problem(column, f"{cells[column]!r} is not a whole number from 0 to 10")
        if low is not None and high is not None and low > high:
            problem("low", f"{low} is above high ({high})")
        purpose = (cells.get("purpose") or Purpose.GOLD.value).strip().casefold()
        if purpose not in PURPOSES:
            problem("purpose", f"{cells['purpose']!r} is not gold or calibration")

        slug, item_id, model = cells["campaign"].strip(), cells["item_id"], cells["model"].strip()
        campaign = campaigns.get(slug)
        raw_sample = cells["sample"].strip() or "0"
        sample = int(raw_sample) if raw_sample.isascii() and raw_sample.isdigit() else None
        if campaign is None:
            problem("campaign", f"unknown campaign {slug!r}")
        else:
            models = sorted(e.slug for e in campaign.endpoints.all())
            if (slug, item_id) not in items:
                problem("item_id", f"no item {item_id!r} in campaign {slug}'s suite")
            if model not in models:
                problem(
                    "model",
                    f"{model!r} is not a model of campaign {slug} (its models: "
                    f"{', '.join(models)})",
                )
            if sample is None or sample >= campaign.samples:
                problem(
                    "sample",
                    f"{cells['sample']!r} is not a sample of campaign {slug} "
                    f"(0 to {campaign.samples - 1})",
                )
        if len(problems) > start or sample is None:
            continue
        generation = answers.get((slug, item_id, model, sample))
        if generation is None:
            problem("row", f"{model} has no answer to {item_id!r} (sample {sample}) yet")
            continue
        reason = unmarkable_reason(generation)
        if reason:
            problem("row", reason)
            continue
        if generation.pk in seen:
            problem("row", f"the same answer as line {seen[generation.pk]}")
            continue
        seen[generation.pk] = line
        assert low is not None and high is not None
        rows.append(GoldRow(line, generation.pk, low, high, cells["note"].strip(), purpose))
    if problems:
        raise GoldImportError(problems)
    return rows


def load_gold(data: bytes | BinaryIO, *, by: Any = None) -> GoldImportReport:
    """Import a gold file (bytes or a binary file, UTF-8 with or without a BOM): create or
    update a `GoldAnswer` per row, all in one transaction; GoldImportError with every problem
    and nothing written when any row is wrong."""
    stream: BinaryIO = io.BytesIO(data) if isinstance(data, bytes) else data
    problem = utf8_problem(stream)
    if problem is not None:
        raise GoldImportError([problem])
    stream.seek(0)
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")
    try:
        rows = _rows(csv.reader(text))
    finally:
        text.detach()
    report = GoldImportReport()
    with transaction.atomic():
        existing = {
            gold.generation_id: gold
            for gold in GoldAnswer.objects.select_for_update().filter(
                generation_id__in=[row.generation_id for row in rows]
            )
        }
        for row in rows:
            wanted = {"low": row.low, "high": row.high, "note": row.note, "purpose": row.purpose}
            gold = existing.get(row.generation_id)
            if gold is None:
                GoldAnswer.objects.create(generation_id=row.generation_id, created_by=by, **wanted)
                report.created += 1
            elif any(getattr(gold, key) != value for key, value in wanted.items()):
                for key, value in wanted.items():
                    setattr(gold, key, value)
                gold.save()
                report.updated += 1
            else:
                report.unchanged += 1
    return report


class GoldForm(forms.Form):
    """An admin's mark on one answer: gold or calibration, the expected range and a note."""

    purpose = forms.ChoiceField(
        label=gettext_lazy("Kind"),
        choices=[
            (Purpose.GOLD.value, gettext_lazy("gold (mixed unmarked into queues)")),
            (Purpose.CALIBRATION.value, gettext_lazy("calibration (scored first, range shown)")),
        ],
    )
    low = forms.IntegerField(label=gettext_lazy("Lowest fair score"), min_value=0, max_value=10)
    high = forms.IntegerField(label=gettext_lazy("Highest fair score"), min_value=0, max_value=10)
    note = forms.CharField(
        label=gettext_lazy("Note"), required=False, widget=forms.Textarea(attrs={"rows": 2})
    )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        low, high = cleaned.get("low"), cleaned.get("high")
        if low is not None and high is not None and low > high:
            self.add_error("high", _("The highest fair score is below the lowest (%s).") % low)
        return cleaned


def mark(generation: Generation, form: GoldForm, *, by: Any) -> GoldAnswer | None:
    """Save the mark `form` holds on `generation`; None, with the problem on the form, when the
    form is invalid or the answer cannot be marked."""
    if not form.is_valid():
        return None
    reason = unmarkable_reason(generation)
    if reason:
        form.add_error(None, reason)
        return None
    values = {key: form.cleaned_data[key] for key in ("low", "high", "note", "purpose")}
    values["note"] = values["note"].strip()
    gold, created = GoldAnswer.objects.update_or_create(generation=generation, defaults=values)
    if created:
        GoldAnswer.objects.filter(pk=gold.pk).update(created_by=by)
    return gold


def unmark(generation: Generation) -> bool:
    """Remove the answer's gold or calibration mark; whether there was one. Scores already
    given on it keep their purpose: they were checks, not results."""
    deleted, _details = GoldAnswer.objects.filter(generation=generation).delete()
    return bool(deleted)


@dataclass(frozen=True)
class MarkShown:
    """What the mark form of one answer shows (`grading/gold_mark_form.html`)."""

    answer_id: str
    """The generation's public id."""
    marked: bool
    purpose: str
    low: Any
    high: Any
    note: str
    unmarkable: str = ""
    """Why the answer cannot be marked; empty when it can."""
    errors: dict[str, list[str]] | None = None
    """The form's problems by field."""
    general: tuple[str, ...] = ()
    """The form's problems that concern no one field."""
    notice: str = ""


def mark_shown(
    generation: Generation,
    gold: GoldAnswer | None,
    *,
    form: GoldForm | None = None,
    notice: str = "",
) -> MarkShown:
    """The mark form of `generation`: its saved mark, or what `form` was sent with its errors."""
    unmarkable = unmarkable_reason(generation) or ""
    if form is not None and form.errors:
        return MarkShown(
            answer_id=generation.public_id,
            marked=gold is not None,
            purpose=form.data.get("purpose", Purpose.GOLD),
            low=form.data.get("low", ""),
            high=form.data.get("high", ""),
            note=form.data.get("note", ""),
            unmarkable=unmarkable,
            errors={
                name: [str(p) for p in problems]
                for name, problems in form.errors.items()
                if name != "__all__"
            },
            general=tuple(str(p) for p in form.non_field_errors()),
        )
    return MarkShown(
        answer_id=generation.public_id,
        marked=gold is not None,
        purpose=gold.purpose if gold else Purpose.GOLD,
        low=gold.low if gold else "",
        high=gold.high if gold else "",
        note=gold.note if gold else "",
        unmarkable=unmarkable,
        notice=notice,
    )
