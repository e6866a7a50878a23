"""Handing review work to reviewers: a balanced queue that never over-assigns.

Every item of a campaign whose answers are ready becomes a `ReviewUnit`. A reviewer asking for
work gets the least-reviewed unit they have not seen, reserved for a while; at most
`reviewers_per_output` people ever hold (or have submitted) one unit. The choice and the
reservation happen in one short transaction that holds a row lock on the campaign's review
settings, so concurrent reviewers of a campaign pick one after another (SQLite serialises
writing transactions the same way). `FOR UPDATE SKIP LOCKED` on the units was tried first: it
lets a reviewer find "nothing left" while other transactions hold the last free units, and
waiting on those rows instead can deadlock.

What is reviewed: every answer with text (`GenerationQuerySet.reviewable`) — those our workers
generated and those `import_generations` brought in from another tool, which reviewers cannot
tell apart. The placeholders `import_scores` creates for answers scored elsewhere carry no text
(`Generation.placeholder`) and never become units, in their own campaigns or in a live one.
The rule rests on the answer, not its source or campaign, because both importers mark answers
`source = imported` and `import_scores` may add placeholders to a campaign that is reviewed.

Reviewer quality (DESIGN §11). Answers an admin scored in advance (`GoldAnswer`) get units of
their own, beside the regular ones: one per campaign × item × sample holding all of the item's
answers, exactly as the regular unit shows them (side-by-side layout), or one for the marked
answer (single layout). Such a unit has no holders cap: every reviewer may see it once. Its
`purpose` (gold or calibration) is copied onto the scores given on it, which keeps them out of
every figure (`Score.objects.counted`) and out of `export_scores` (see `grading.scores_export`).

- Gold units are mixed in unmarked: when a reviewer is handed a regular unit of a campaign, a
  random draw at the campaign's `gold_rate` hands them one of its gold units instead, if any is
  left for them. So gold only comes while they still have regular work there, and where it comes
  cannot be predicted.
- Calibration: while a campaign has `calibration` on, a reviewer who has calibration units of it
  left gets those, and nothing else of that campaign, first. A campaign without calibration
  answers blocks no one.
- A reviewer is never given two units of one item and sample (a gold or calibration unit and the
  regular one: a reviewer scores an answer once, `one_score_per_reviewer`).
- Removing a mark: `sync_units` deletes the unit if nobody was ever given it; a unit someone was
  given is kept, with its assignments and scores (still gold or calibration, still uncounted),
  and is simply no longer served. Marking the answer again serves the same unit again.

Extra reviews on disagreement: when a regular unit reaches `reviewers_per_output` submitted
reviews and the scores of one of its answers spread (max − min) by at least the campaign's
`disagreement_spread`, the submit that brought it there sets `extra_reviews` so the unit is
offered to `reviewers_max` reviewers in all. It is decided once, in that transaction (later
edits of the scores do not change it); the queue's cap is `reviewers_per_output +
extra_reviews`. `tests/benchmarks/bench_extra_reviews.py` measures what it buys.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Exists, F, Max, Min, OuterRef, Q
from django.utils import timezone

from inference.models import Campaign, CampaignStatus, Generation, GenerationStatus

from . import judge_order
from .blind_sheet import label as answer_label
from .models import (
    Assignment,
    AssignmentStatus,
    GoldAnswer,
    IdentityLeakPolicy,
    Layout,
    Purpose,
    ReviewSettings,
    ReviewUnit,
)

_random = random.SystemRandom()


def reservation_s() -> int:
    return int(settings.REVIEW_RESERVATION_S)


def _allowed(reviewer: Any) -> Any:
    """Campaigns open to this reviewer (to all, or naming them) whose grading has not ended."""
    return Campaign.objects.filter(
        Q(review__reviewers__isnull=True) | Q(review__reviewers=reviewer)
    ).exclude(review__grading_ended_at__isnull=False)


def campaigns_for(reviewer: Any) -> list[int]:
    """Launched campaigns this reviewer may work on (open to all, or naming them)."""
    launched = _allowed(reviewer).launched()
    return list(launched.values_list("pk", flat=True).distinct())


def still_gradable(reviewer: Any) -> Any:
    """Campaigns this reviewer can grade now or later: launched ones, and drafts that will be.

    A reviewer never reads results about a model of one of these (DESIGN §6): what they read
    could sway the scores they still give, or the ones they can still edit.
    """
    return _allowed(reviewer).exclude(status=CampaignStatus.CANCELLED)


def sync_units(campaign: Campaign) -> int:
    """Create review units for items whose answers are all in (at least one succeeded).

    Then bring the judge-guided order up to date (`judge_order.refresh`).
    """
    review, _ = ReviewSettings.objects.get_or_create(campaign=campaign)
    created = _create_units(campaign, review)
    created += _sync_marked_units(campaign, review)
    judge_order.refresh(campaign, review)
    return created


def _create_units(campaign: Campaign, review: ReviewSettings) -> int:
    # .order_by(): these are sets; the model's default ordering would add joins and a sort.
    busy = set(campaign.generations.in_flight().order_by().values_list("item_id", "sample"))
    answered = campaign.generations.reviewable()
    ready = set(answered.order_by().values_list("item_id", "sample"))
    if review.layout == Layout.SINGLE:
        return _sync_single_units(campaign, review, busy)
    existing = set(
        campaign.review_units.filter(generation__isnull=True, purpose=Purpose.REGULAR)
        .order_by()
        .values_list("item_id", "sample")
    )
    held: set[tuple[int, int]] = set()
    if review.identity_leaks == IdentityLeakPolicy.HOLD:
        # Answers naming a model wait for an admin instead of reaching reviewers.
        held = set(
            campaign.generations.succeeded()
            .exclude(identity_leaks=[])
            .order_by()
            .values_list("item_id", "sample")
        )
    new = [
        ReviewUnit(
            campaign=campaign,
            item_id=item_id,
            sample=sample,
            shuffle_key=_random.randrange(2**31),
            held_for_admin=(item_id, sample) in held,
        )
        for item_id, sample in sorted(ready - busy - existing)
    ]
    ReviewUnit.objects.bulk_create(new, batch_size=500, ignore_conflicts=True)
    return len(new)


def _sync_single_units(
    campaign: Campaign, review: ReviewSettings, busy: set[tuple[int, int]]
) -> int:
    """Single-response layout: one unit per succeeded answer."""
    existing = set(
        campaign.review_units.filter(generation__isnull=False, purpose=Purpose.REGULAR).values_list(
            "generation_id", flat=True
        )
    )
    answers = (
        campaign.generations.reviewable()
        .order_by()
        .values_list("pk", "item_id", "sample", "identity_leaks")
    )
    hold = review.identity_leaks == IdentityLeakPolicy.HOLD
    new = [
        ReviewUnit(
            campaign=campaign,
            item_id=item_id,
            sample=sample,
            generation_id=pk,
            shuffle_key=_random.randrange(2**31),
            held_for_admin=hold and bool(leaks),
        )
        for pk, item_id, sample, leaks in answers
        if pk not in existing and (item_id, sample) not in busy
    ]
    ReviewUnit.objects.bulk_create(new, batch_size=500, ignore_conflicts=True)
    return len(new)


def marked() -> Q:
    """A gold or calibration unit whose answers still carry a mark of the unit's purpose (on a
    reviewable answer): the whole item's, for a side-by-side unit; its own, for a single one."""
    reviewable = {
        "generation__status": GenerationStatus.SUCCEEDED,
        "generation__placeholder": False,
    }
    of_item = GoldAnswer.objects.filter(
        purpose=OuterRef("purpose"),
        generation__campaign_id=OuterRef("campaign_id"),
        generation__item_id=OuterRef("item_id"),
        generation__sample=OuterRef("sample"),
        **reviewable,
    )
    of_answer = GoldAnswer.objects.filter(
        purpose=OuterRef("purpose"), generation_id=OuterRef("generation_id"), **reviewable
    )
    return (Q(generation__isnull=True) & Q(Exists(of_item))) | (
        Q(generation__isnull=False) & Q(Exists(of_answer))
    )


def _sync_marked_units(campaign: Campaign, review: ReviewSettings) -> int:
    """Gold and calibration units for the campaign's marked answers (see the module docstring);
    units whose mark is gone are deleted when nobody was ever given them."""
    busy = set(campaign.generations.in_flight().order_by().values_list("item_id", "sample"))
    marks = list(
        GoldAnswer.objects.filter(
            generation__campaign=campaign,
            generation__status=GenerationStatus.SUCCEEDED,
            generation__placeholder=False,
        )
        .order_by()
        .values_list("generation_id", "generation__item_id", "generation__sample", "purpose")
    )
    hold = review.identity_leaks == IdentityLeakPolicy.HOLD
    leaking: set[tuple[int | None, int, int]] = set()
    if hold:
        for pk, item_id, sample in (
            campaign.generations.succeeded()
            .exclude(identity_leaks=[])
            .order_by()
            .values_list("pk", "item_id", "sample")
        ):
            leaking.update({(pk, item_id, sample), (None, item_id, sample)})
    single = review.layout == Layout.SINGLE
    of_answer = {(generation_id, purpose) for generation_id, _, _, purpose in marks}
    of_item = {(item_id, sample, purpose) for _, item_id, sample, purpose in marks}
    # The campaign's gold and calibration units are few: compare them with the marks here
    # (an EXISTS per unit cost PostgreSQL 0.3 s at 50,000 units).
    special = list(
        campaign.review_units.exclude(purpose=Purpose.REGULAR)
        .order_by()
        .values_list("pk", "generation_id", "item_id", "sample", "purpose")
    )
    existing = {
        (generation_id, item_id, sample, purpose)
        for _, generation_id, item_id, sample, purpose in special
        if (generation_id is not None) == single
    }
    wanted = {
        (generation_id if single else None, item_id, sample, purpose)
        for generation_id, item_id, sample, purpose in marks
        if (item_id, sample) not in busy
    }
    new = [
        ReviewUnit(
            campaign=campaign,
            item_id=item_id,
            sample=sample,
            generation_id=generation_id,
            purpose=purpose,
            shuffle_key=_random.randrange(2**31),
            held_for_admin=(generation_id, item_id, sample) in leaking,
        )
        for generation_id, item_id, sample, purpose in sorted(
            wanted - existing, key=lambda key: (key[1], key[2], key[0] or 0, key[3])
        )
    ]
    ReviewUnit.objects.bulk_create(new, batch_size=500, ignore_conflicts=True)
    unmarked = [
        pk
        for pk, generation_id, item_id, sample, purpose in special
        if (generation_id, purpose) not in of_answer
        and (generation_id is not None or (item_id, sample, purpose) not in of_item)
    ]
    if unmarked:
        ReviewUnit.objects.filter(pk__in=unmarked).exclude(
            Exists(Assignment.objects.filter(unit=OuterRef("pk")))
        ).delete()
    return len(new)


def release_expired() -> int:
    """Drop reservations nobody finished in time, freeing their place for someone else.

    One short transaction per reservation, outside any other: it locks the assignment, then its
    unit, the order `submit` takes them in, so neither can wait on the other in a cycle; and a
    reservation submitted or released meanwhile is left alone (its place counted once).
    """
    now = timezone.now()
    expired = list(
        Assignment.objects.reserved()
        .filter(expires_at__lt=now)
        .order_by("unit_id", "pk")
        .values_list("pk", "unit_id")
    )
    released = 0
    for pk, unit_id in expired:
        with transaction.atomic():
            if Assignment.objects.reserved().filter(pk=pk, expires_at__lt=now).delete()[0]:
                ReviewUnit.objects.filter(pk=unit_id).update(holders=F("holders") - 1)
                released += 1
    return released


def end_grading(campaign: Campaign) -> int:
    """Stop a campaign taking scores for good (its results are being opened to reviewers):
    record when, and drop its unfinished reservations. Returns how many were dropped.

    Ending is permanent: hiding the results again leaves grading ended, since reviewers may
    already have read which model wrote what.
    """
    with transaction.atomic():
        ReviewSettings.objects.get_or_create(campaign=campaign)
        ReviewSettings.objects.filter(campaign=campaign, grading_ended_at__isnull=True).update(
            grading_ended_at=timezone.now()
        )
        reserved = Assignment.objects.reserved().filter(unit__campaign=campaign)
        units = Counter(reserved.values_list("unit_id", flat=True))
        reserved.delete()
        for unit_id, count in units.items():
            ReviewUnit.objects.filter(pk=unit_id).update(holders=F("holders") - count)
    return sum(units.values())


def open_results(campaign: Campaign) -> int:
    """Let reviewers read a campaign's results, which ends its grading for good (`end_grading`).
    Returns how many unfinished reservations were dropped."""
    with transaction.atomic():
        dropped = end_grading(campaign)
        ReviewSettings.objects.filter(campaign=campaign).update(results_open=True)
    return dropped


def hide_results(campaign: Campaign) -> None:
    """Hide a campaign's results from reviewers again; its grading stays ended."""
    ReviewSettings.objects.filter(campaign=campaign).update(results_open=False)


def _review_closed(assignment: Assignment) -> bool:
    return ReviewSettings.objects.filter(
        campaign__review_units=assignment.unit_id, grading_ended_at__isnull=False
    ).exists()


Key = tuple[int, int, int, int | None]
"""What a reviewer may be given once: (campaign, item, sample, answer of a single-layout unit)."""


def _key(unit: ReviewUnit) -> Key:
    return (unit.campaign_id, unit.item_id, unit.sample, unit.generation_id)


def _open_regular(reviewer: Any, allowed: list[int]) -> Any:
    """Regular units of these campaigns with a place left that the reviewer never had, least
    reviewed first (the queue order)."""
    return (
        ReviewUnit.objects.filter(
            campaign_id__in=allowed,
            held_for_admin=False,
            purpose=Purpose.REGULAR,
            holders__lt=F("campaign__review__reviewers_per_output") + F("extra_reviews"),
        )
        .exclude(assignments__reviewer=reviewer)
        .order_by("submitted", "holders", "judge_rank", "shuffle_key")
    )


@dataclass(frozen=True)
class _Left:
    """What of the gold and calibration work a reviewer can still be given."""

    special: list[ReviewUnit]
    """Gold and calibration units still marked that the reviewer never had and may have."""
    checked: set[Key]
    """Items the reviewer had as gold or calibration units: never theirs as regular units."""


def _special_left(reviewer: Any, allowed: list[int]) -> _Left:
    """Two queries whatever the size of the campaigns: gold and calibration units are few."""
    # Found through the marks (few) and the units' item index, not by scanning every unit.
    marked_items = GoldAnswer.objects.filter(generation__campaign_id__in=allowed).values(
        "generation__item_id"
    )
    special = list(
        ReviewUnit.objects.filter(
            campaign_id__in=allowed, item_id__in=marked_items, held_for_admin=False
        )
        .exclude(purpose=Purpose.REGULAR)
        .filter(marked())
        .exclude(assignments__reviewer=reviewer)
        .order_by("pk")
    )
    had = (
        Assignment.objects.filter(reviewer=reviewer, unit__campaign_id__in=allowed)
        .filter(
            ~Q(unit__purpose=Purpose.REGULAR) | Q(unit__item_id__in={u.item_id for u in special})
        )
        .values_list(
            "unit__campaign_id",
            "unit__item_id",
            "unit__sample",
            "unit__generation_id",
            "unit__purpose",
        )
    )
    taken: set[Key] = set()
    checked: set[Key] = set()
    for campaign_id, item_id, sample, generation_id, purpose in had:
        key = (campaign_id, item_id, sample, generation_id)
        taken.add(key)
        if purpose != Purpose.REGULAR:
            checked.add(key)
    return _Left([u for u in special if _key(u) not in taken], checked)


def available_count(reviewer: Any) -> int:
    """Units this reviewer could still be given: regular units with a place left, and, in the
    campaigns where they have some, the gold units they have not seen (they come mixed in with
    those), and calibration units where calibration is on.

    Gold units count like any other, so that the number waiting moves the same way whether the
    reviewer was given a gold unit or a regular one.
    """
    allowed = campaigns_for(reviewer)
    left = _special_left(reviewer, allowed)
    regular = _open_regular(reviewer, allowed).order_by()
    per_campaign = dict(
        regular.values_list("campaign_id").annotate(n=Count("pk")).values_list("campaign_id", "n")
    )
    # An item counts once, whichever of its units the reviewer may get: so the number goes down
    # by one after any unit, gold or not (taking one unit of an item rules out the other).
    items = {u.item_id for u in left.special} | {key[1] for key in left.checked}
    open_keys = {_key(u) for u in regular.filter(item_id__in=items)} if items else set()
    for key in open_keys & left.checked:
        per_campaign[key[0]] -= 1
    calibrating = set(
        ReviewSettings.objects.filter(campaign_id__in=allowed, calibration=True).values_list(
            "campaign_id", flat=True
        )
    )
    special = {
        _key(unit)
        for unit in left.special
        if (unit.purpose == Purpose.GOLD and per_campaign.get(unit.campaign_id, 0) > 0)
        or (unit.purpose == Purpose.CALIBRATION and unit.campaign_id in calibrating)
    }
    return sum(per_campaign.values()) + len(special - open_keys)


def _answers(unit: ReviewUnit) -> list[str]:
    if unit.generation_id is not None:
        return list(
            Generation.objects.filter(pk=unit.generation_id).values_list("public_id", flat=True)
        )
    return list(
        Generation.objects.reviewable()
        .filter(campaign_id=unit.campaign_id, item_id=unit.item_id, sample=unit.sample)
        .values_list("public_id", flat=True)
    )


def _pick(
    reviewer: Any, allowed: list[int], settings_rows: list[tuple[int, bool, float]]
) -> ReviewUnit | None:
    """The unit to give: calibration first, then regular work with gold mixed in."""
    calibrating = {pk for pk, calibration, _ in settings_rows if calibration}
    gold_rate = {pk: rate for pk, _, rate in settings_rows}
    left = _special_left(reviewer, allowed)
    calibration = [
        u for u in left.special if u.purpose == Purpose.CALIBRATION and u.campaign_id in calibrating
    ]
    if calibration:
        return _random.choice(calibration)
    # At most len(checked) open units can be items the reviewer had as gold or calibration
    # units, so one more row is enough to find a unit they may have, if there is one.
    regular = next(
        (
            unit
            for unit in _open_regular(reviewer, allowed)[: len(left.checked) + 1]
            if _key(unit) not in left.checked
        ),
        None,
    )
    if regular is None:
        return None
    gold = [
        u
        for u in left.special
        if u.purpose == Purpose.GOLD and u.campaign_id == regular.campaign_id
    ]
    if gold and _random.random() < gold_rate.get(regular.campaign_id, 0.0):
        fewest = min(u.submitted for u in gold)
        return _random.choice([u for u in gold if u.submitted == fewest])
    return regular


def next_assignment(reviewer: Any, campaign: Campaign | None = None) -> Assignment | None:
    """The reviewer's current reservation, or a newly reserved unit; None when nothing is left."""
    release_expired()
    now = timezone.now()
    with transaction.atomic():
        current = (
            Assignment.objects.reserved()
            .filter(reviewer=reviewer, expires_at__gte=now)
            .select_related("unit")
            .order_by("reserved_at")
        )
        if campaign is not None:
            current = current.filter(unit__campaign=campaign)
        held = current.first()
        if held is not None:
            return held
        allowed = campaigns_for(reviewer)
        if campaign is not None:
            allowed = [pk for pk in allowed if pk == campaign.pk]
        # One reviewer at a time picks from a campaign: lock its review settings (in pk order,
        # so two reviewers of overlapping campaigns cannot deadlock). The pick is a few indexed
        # queries, so the wait is short; SQLite serialises writers the same way.
        settings_rows = list(
            ReviewSettings.objects.select_for_update()
            .filter(campaign_id__in=allowed)
            .order_by("pk")
            .values_list("campaign_id", "calibration", "gold_rate")
        )
        unit = _pick(reviewer, allowed, settings_rows)
        if unit is None:
            return None
        order = _answers(unit)
        _random.shuffle(order)
        assignment = Assignment.objects.create(
            unit=unit,
            reviewer=reviewer,
            order=order,
            expires_at=now + timedelta(seconds=reservation_s()),
        )
        ReviewUnit.objects.filter(pk=unit.pk).update(holders=F("holders") + 1)
    return assignment


def skip(assignment: Assignment) -> None:
    """Give a reserved unit back; this reviewer will not be offered it again."""
    with transaction.atomic():
        moved = Assignment.objects.filter(
            pk=assignment.pk, status=AssignmentStatus.RESERVED
        ).update(status=AssignmentStatus.SKIPPED, finished_at=timezone.now())
        if moved:
            ReviewUnit.objects.filter(pk=assignment.unit_id).update(holders=F("holders") - 1)


GRADING_ENDED = (
    "grading of this campaign has ended (its results were opened to reviewers), so it takes no "
    "more scores"
)


class ScoreError(ValueError):
    """Scores that cannot be saved, with a message for the reviewer."""


# The form's radio buttons send exactly these; anything else is typed by hand or by a script.
_SCORES = {str(n): n for n in range(11)}

# Long enough for any note a reviewer writes by hand, short enough that a pasted document
# (or a megabyte sent by a script) is refused rather than stored and shown on every results page.
COMMENT_MAX_CHARS = 5000


def parse_score(value: object) -> int:
    """An integer 0–10 in ASCII digits, or ScoreError.

    "7.5", "", "11", "-1", "seven" are refused, and so are digits other than ASCII ("²", "٧"):
    str.isdigit takes those, and int() reads some and raises on others (or on 5,000 digits).
    """
    text = str(value).strip() if value is not None else ""
    if text not in _SCORES:
        shown = text if len(text) <= 12 else f"{text[:12]}…"
        raise ScoreError(f"a score is a whole number from 0 to 10, not {shown or 'nothing'!r}")
    return _SCORES[text]


def parse_comment(value: object, position: int) -> str:
    """A comment, stripped, its line breaks as LF; ScoreError past COMMENT_MAX_CHARS.

    Browsers send a textarea's line breaks as CRLF but count them as one character for its
    `maxlength`; counting them the same way here keeps the two limits equal.
    """
    text = str(value or "").replace("\r\n", "\n").strip()
    if len(text) > COMMENT_MAX_CHARS:
        raise ScoreError(
            f"a comment is at most {COMMENT_MAX_CHARS:,} characters; "
            f"the comment on answer {answer_label(position)} has {len(text):,}"
        )
    return text


def submit(
    assignment: Assignment,
    scores: dict[str, dict[str, Any]],
    *,
    seconds_spent: float | None = None,
) -> bool:
    """Store one score per shown answer and close the assignment.

    `scores` maps each answer's public id to `score` (0–10), `comment`, `flagged`,
    `flag_reason`. Every answer shown must be scored. Submitting an assignment twice stores
    nothing the second time and returns False.
    """
    from .models import FlagReason, Rubric, Score

    if _review_closed(assignment):
        raise ScoreError(GRADING_ENDED)
    missing = [pid for pid in assignment.order if pid not in scores]
    if missing:
        raise ScoreError(f"score every answer ({len(missing)} left)")
    parsed = {pid: parse_score(scores[pid].get("score")) for pid in assignment.order}
    comments = {
        pid: parse_comment(scores[pid].get("comment"), position)
        for position, pid in enumerate(assignment.order)
    }
    for values in scores.values():
        reason = values.get("flag_reason") or ""
        if reason and reason not in FlagReason.values:
            raise ScoreError(f"unknown flag reason {reason!r}")
    now = timezone.now()
    rubric = Rubric.objects.current()
    unit = ReviewUnit.objects.only("pk", "campaign_id", "purpose").get(pk=assignment.unit_id)
    generations = dict(
        Generation.objects.filter(public_id__in=assignment.order).values_list("public_id", "pk")
    )
    with transaction.atomic():
        moved = Assignment.objects.filter(
            pk=assignment.pk, status=AssignmentStatus.RESERVED
        ).update(status=AssignmentStatus.SUBMITTED, finished_at=now)
        if not moved:
            return False
        # Lock the campaign's review settings before the unit, as next_assignment does: taken
        # the other way round, a submit and a pick could each wait for the other.
        ReviewSettings.objects.scores_changed([unit.campaign_id])
        per_answer = seconds_spent / len(assignment.order) if seconds_spent else None
        Score.objects.bulk_create(
            [
                Score(
                    generation_id=generations[pid],
                    reviewer_id=assignment.reviewer_id,
                    assignment=assignment,
                    score=parsed[pid],
                    comment=comments[pid],
                    flagged=bool(scores[pid].get("flagged") or scores[pid].get("flag_reason")),
                    flag_reason=scores[pid].get("flag_reason") or "",
                    position=position,
                    rubric=rubric,
                    seconds_spent=per_answer,
                    purpose=unit.purpose,
                    scored_at=now,
                )
                for position, pid in enumerate(assignment.order)
            ]
        )
        ReviewUnit.objects.filter(pk=unit.pk).update(submitted=F("submitted") + 1)
        if unit.purpose == Purpose.REGULAR:
            _ask_extra_reviews(unit)
    return True


def _ask_extra_reviews(unit: ReviewUnit) -> None:
    """In the transaction of a submit: if it brought the unit to `reviewers_per_output` reviews
    and the scores of one of its answers spread by `disagreement_spread` or more, offer the unit
    to `reviewers_max` reviewers in all. Decided once: the update of `submitted` just before
    locks the unit's row, so exactly one submit sees the count reach k."""
    from .models import Score

    review = ReviewSettings.objects.filter(campaign_id=unit.campaign_id).values_list(
        "reviewers_per_output", "disagreement_spread", "reviewers_max"
    )[:1]
    if not review:
        return
    k, spread, most = review[0]
    if spread is None or most is None or most <= k:
        return
    submitted, extra = (
        ReviewUnit.objects.filter(pk=unit.pk).values_list("submitted", "extra_reviews").get()
    )
    if submitted != k or extra:
        return
    spreads = (
        Score.objects.filter(assignment__unit_id=unit.pk, purpose=Purpose.REGULAR)
        .order_by()
        .values("generation_id")
        .annotate(spread=Max("score") - Min("score"))
        .values_list("spread", flat=True)
    )
    if any(value >= spread for value in spreads):
        ReviewUnit.objects.filter(pk=unit.pk).update(extra_reviews=most - k)


def edit(assignment: Assignment, scores: dict[str, dict[str, Any]]) -> None:
    """Change the scores of a submitted assignment (the reviewer's own, still blind)."""
    from .models import FlagReason, Score

    if _review_closed(assignment):
        raise ScoreError(GRADING_ENDED)
    parsed = {pid: parse_score(values.get("score")) for pid, values in scores.items()}
    comments = {
        pid: parse_comment(scores[pid].get("comment"), position)
        for position, pid in enumerate(assignment.order)
        if pid in scores
    }
    for values in scores.values():
        reason = values.get("flag_reason") or ""
        if reason and reason not in FlagReason.values:
            raise ScoreError(f"unknown flag reason {reason!r}")
    with transaction.atomic():
        for score in Score.objects.filter(assignment=assignment).select_related("generation"):
            given = scores.get(score.generation.public_id)
            if given is None:
                continue
            score.score = parsed[score.generation.public_id]
            score.comment = comments[score.generation.public_id]
            score.flag_reason = given.get("flag_reason") or ""
            score.flagged = bool(score.flag_reason)
            score.save(update_fields=["score", "comment", "flag_reason", "flagged", "updated_at"])
        ReviewSettings.objects.scores_changed([assignment.unit.campaign_id])
