"""What a reviewer sees of an assignment, built so nothing in it can reveal a model.

Views hand templates only what this module returns: answers are labelled A, B, … in the
assignment's stored order and carry their text (Markdown rendered through a sanitiser, model
and vendor names masked when the campaign says so), never a model name, slug, endpoint, timing,
token count or database id.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.core.paginator import Paginator
from django.utils.safestring import SafeString

from inference.leaks import mask_leaks, terms_with_models
from inference.models import Generation, ModelEndpoint, TaskItem

from .markdown import render_markdown, render_plain
from .models import (
    Assignment,
    AssignmentStatus,
    GoldAnswer,
    Purpose,
    ReviewSettings,
    Rubric,
    Score,
    ScoringFocus,
)

LABELS = string.ascii_uppercase


def label(position: int) -> str:
    return LABELS[position] if position < len(LABELS) else f"#{position + 1}"


@dataclass(frozen=True)
class Answer:
    position: int
    label: str
    html: SafeString
    reasoning_html: SafeString | None
    cut_off: bool
    masked: int
    score: int | None = None
    comment: str = ""
    flag_reason: str = ""


@dataclass(frozen=True)
class Band:
    """A score band of the rubric, in the page's language."""

    range_label: str
    label: str
    description: str


@dataclass(frozen=True)
class Prompt:
    """What the reviewer reads of the item: its task type, prompt and notes."""

    task_type_code: str
    task_type_name_en: str
    task_type_name_zh: str
    prompt: str
    system: str
    reference: str


@dataclass(frozen=True)
class Sheet:
    """Everything the scoring page shows for one assignment, as plain values: no model instance
    reaches the template, so nothing there can follow a relation to a model's name."""

    assignment_id: str
    """The assignment's opaque public id."""
    item: Prompt
    focus: str
    bands: tuple[Band, ...]
    answers: tuple[Answer, ...]
    image_ids: tuple[str, ...]
    submitted: bool
    calibration: bool = False
    """A calibration item (the reviewer is told, and sees the expected range after submitting).
    Gold items are not told apart: for them, as for regular items, this is False."""


def masked_terms(campaign_id: int) -> list[str]:
    """The words masked in a campaign's answers wherever they are shown blind: the configured
    model and vendor names and the family names of the campaign's own models."""
    models = ModelEndpoint.objects.filter(members__campaign_id=campaign_id)
    return terms_with_models(models.values_list("name", "model"))


def build_sheet(assignment: Assignment) -> Sheet:
    """The blinded content of an assignment, answers in the reviewer's order."""
    unit = assignment.unit
    settings_row = ReviewSettings.objects.filter(campaign_id=unit.campaign_id).first()
    # Names are always masked for reviewers: under the "hold" policy an item reaches them only
    # after an admin released it, and its names must still not show.
    mask = True
    show_reasoning = bool(settings_row and settings_row.show_reasoning)
    item = TaskItem.objects.select_related("task_type").with_images().get(pk=unit.item_id)
    rubric = Rubric.objects.current()
    generations = {
        g.public_id: g
        for g in Generation.objects.filter(public_id__in=assignment.order).only(
            "public_id", "content", "reasoning", "finish_reason"
        )
    }
    previous = {
        s.generation_id: s
        for s in Score.objects.filter(assignment=assignment, reviewer_id=assignment.reviewer_id)
    }
    terms = masked_terms(unit.campaign_id)
    answers = []
    for position, public_id in enumerate(assignment.order):
        generation = generations[public_id]
        content, masked = mask_leaks(generation.content, terms) if mask else (generation.content, 0)
        reasoning_html = None
        if show_reasoning and generation.reasoning:
            reasoning, hidden = (
                mask_leaks(generation.reasoning, terms) if mask else (generation.reasoning, 0)
            )
            masked += hidden
            reasoning_html = render_plain(reasoning)
        score = previous.get(generation.pk)
        answers.append(
            Answer(
                position=position,
                label=label(position),
                html=render_markdown(content),
                reasoning_html=reasoning_html,
                cut_off=generation.finish_reason == "length",
                masked=masked,
                score=score.score if score else None,
                comment=score.comment if score else "",
                flag_reason=score.flag_reason if score else "",
            )
        )
    focus = ScoringFocus.objects.filter(rubric=rubric, task_type=item.task_type).first()
    return Sheet(
        assignment_id=assignment.public_id,
        item=Prompt(
            task_type_code=item.task_type.code,
            task_type_name_en=item.task_type.name_en,
            task_type_name_zh=item.task_type.name_zh,
            prompt=item.prompt,
            system=item.system,
            reference=item.reference,
        ),
        focus=focus.focus if focus else "",
        bands=tuple(Band(b.range_label, b.label, b.description) for b in rubric.bands.all()),
        answers=tuple(answers),
        image_ids=tuple(image.public_id for image in item.ordered_images()),
        submitted=assignment.status == AssignmentStatus.SUBMITTED,
        calibration=unit.purpose == Purpose.CALIBRATION,
    )


@dataclass(frozen=True)
class Expected:
    """One answer of a submitted calibration item: the reviewer's score next to the range an
    admin expected and their note (masked like the answers)."""

    label: str
    score: int | None
    low: int | None
    high: int | None
    note: str

    @property
    def inside(self) -> bool:
        return (
            self.score is not None
            and self.low is not None
            and self.high is not None
            and self.low <= self.score <= self.high
        )

    @property
    def range_label(self) -> str:
        if self.low is None or self.high is None:
            return ""
        return str(self.low) if self.low == self.high else f"{self.low}–{self.high}"


@dataclass(frozen=True)
class CalibrationFeedback:
    assignment_id: str
    answers: tuple[Expected, ...]


def calibration_feedback(assignment: Assignment) -> CalibrationFeedback:
    """What a reviewer sees after submitting a calibration item: for every answer shown, in the
    order shown, their score and, for each calibration answer, the expected range and note."""
    pks = dict(
        Generation.objects.filter(public_id__in=assignment.order).values_list("public_id", "pk")
    )
    scores = dict(Score.objects.filter(assignment=assignment).values_list("generation_id", "score"))
    marks = {
        gold.generation_id: gold
        for gold in GoldAnswer.objects.filter(
            generation_id__in=pks.values(), purpose=Purpose.CALIBRATION
        )
    }
    terms = masked_terms(assignment.unit.campaign_id)
    rows = []
    for position, public_id in enumerate(assignment.order):
        pk = pks.get(public_id)
        mark = marks.get(pk) if pk is not None else None
        rows.append(
            Expected(
                label=label(position),
                score=scores.get(pk) if pk is not None else None,
                low=mark.low if mark else None,
                high=mark.high if mark else None,
                note=mask_leaks(mark.note, terms)[0] if mark else "",
            )
        )
    return CalibrationFeedback(assignment_id=assignment.public_id, answers=tuple(rows))


def read_form(post: Any, assignment: Assignment) -> dict[str, dict[str, Any]]:
    """Form fields named by position (`score-0`, `comment-0`, `flag-0`) → scores by answer."""
    scores: dict[str, dict[str, Any]] = {}
    for position, public_id in enumerate(assignment.order):
        scores[public_id] = {
            "score": post.get(f"score-{position}"),
            "comment": post.get(f"comment-{position}", ""),
            "flag_reason": post.get(f"flag-{position}", ""),
        }
    return scores


# --- The reviewer's own work ---------------------------------------------------------------

MY_SCORES_PER_PAGE = 25


@dataclass(frozen=True)
class ScoredWork:
    """One submitted assignment on the reviewer's "My scores" page."""

    assignment_id: str
    finished_at: datetime | None
    task_type_code: str
    prompt: str
    scores: tuple[tuple[str, int], ...]
    """(answer label, score), in the order the answers were shown."""


@dataclass(frozen=True)
class Pager:
    number: int
    pages: int
    previous: int | None
    next: int | None


def scored_work(reviewer_id: int | None, page_number: str | None) -> tuple[list[ScoredWork], Pager]:
    """A page of a reviewer's submitted work, newest first (any page number is accepted)."""
    done = (
        Assignment.objects.submitted()
        .filter(reviewer_id=reviewer_id)
        .select_related("unit__item__task_type")
        .prefetch_related("scores")
        .order_by("-finished_at", "pk")
    )
    page = Paginator(done, MY_SCORES_PER_PAGE).get_page(page_number)
    rows = [
        ScoredWork(
            assignment_id=held.public_id,
            finished_at=held.finished_at,
            task_type_code=held.unit.item.task_type.code,
            prompt=held.unit.item.prompt,
            scores=tuple(
                (label(s.position), s.score) for s in sorted(held.scores.all(), key=_position)
            ),
        )
        for held in page.object_list
    ]
    pager = Pager(
        number=page.number,
        pages=page.paginator.num_pages,
        previous=page.previous_page_number() if page.has_previous() else None,
        next=page.next_page_number() if page.has_next() else None,
    )
    return rows, pager


def _position(score: Score) -> int:
    return score.position
