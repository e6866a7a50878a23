"""What people think of the answers: rubrics and each campaign's review settings."""

from __future__ import annotations

from collections.abc import Iterable

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils.translation import get_language
from django.utils.translation import gettext_lazy as _

from inference.models import Campaign, TaskType, new_public_id

REVIEWERS_GROUP = "reviewers"


class RubricQuerySet(models.QuerySet["Rubric"]):
    def current(self) -> Rubric:
        """The rubric new scores are given under: the highest version."""
        return self.order_by("-version")[:1].get()


class Rubric(models.Model):
    """A versioned scoring guide: the 0–10 bands plus a scoring focus per task type.

    Every score records the rubric version it was given under, so a rubric is never edited
    after use; a changed rubric is a new version.
    """

    version = models.PositiveIntegerField(unique=True)
    name = models.CharField(max_length=200)
    notes = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = RubricQuerySet.as_manager()

    class Meta:
        ordering = ["-version"]

    def __str__(self) -> str:
        return f"v{self.version} {self.name}"


def _localised(zh: str, en: str) -> str:
    return zh if (get_language() or "").startswith("zh") else en


class RubricBand(models.Model):
    """A score range with its label, e.g. 9–10 卓越 excellent."""

    rubric = models.ForeignKey(Rubric, on_delete=models.CASCADE, related_name="bands")
    low = models.PositiveSmallIntegerField(validators=[MaxValueValidator(10)])
    high = models.PositiveSmallIntegerField(validators=[MaxValueValidator(10)])
    label_zh = models.CharField(max_length=32)
    label_en = models.CharField(max_length=64)
    description_zh = models.CharField(max_length=200)
    description_en = models.CharField(max_length=200)

    class Meta:
        ordering = ["rubric", "-high"]
        constraints = [
            models.UniqueConstraint(fields=["rubric", "low"], name="unique_band_low"),
            models.CheckConstraint(
                condition=models.Q(low__lte=models.F("high")), name="band_low_le_high"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.range_label} {self.label_zh} {self.label_en}"

    @property
    def range_label(self) -> str:
        return str(self.low) if self.low == self.high else f"{self.low}–{self.high}"

    @property
    def label(self) -> str:
        return _localised(self.label_zh, self.label_en)

    @property
    def description(self) -> str:
        return _localised(self.description_zh, self.description_en)


class ScoringFocus(models.Model):
    """What a reviewer weighs for one task type under one rubric (the seed's 评分重点)."""

    rubric = models.ForeignKey(Rubric, on_delete=models.CASCADE, related_name="focuses")
    task_type = models.ForeignKey(TaskType, on_delete=models.CASCADE, related_name="focuses")
    focus_zh = models.CharField(max_length=200)
    focus_en = models.CharField(max_length=200)

    class Meta:
        ordering = ["rubric", "task_type__position"]
        constraints = [
            models.UniqueConstraint(fields=["rubric", "task_type"], name="unique_focus_per_type")
        ]
        verbose_name_plural = "scoring focuses"

    def __str__(self) -> str:
        return f"{self.task_type.code}: {self.focus_zh}"

    @property
    def focus(self) -> str:
        return _localised(self.focus_zh, self.focus_en)


class Layout(models.TextChoices):
    SIDE_BY_SIDE = "side_by_side", _("all responses side by side")
    SINGLE = "single", _("one response at a time")


class IdentityLeakPolicy(models.TextChoices):
    MASK = "mask", _("mask the words for reviewers")
    HOLD = "hold", _("hold the output for an admin")


class Purpose(models.TextChoices):
    """What a review unit, and the scores given on it, are for (DESIGN §11).

    Only `regular` scores enter results and agreement. Gold and calibration units show answers
    an admin has scored in advance (`GoldAnswer`); their scores measure the reviewer.
    """

    REGULAR = "regular", _("counted in results")
    GOLD = "gold", _("gold answer check")
    CALIBRATION = "calibration", _("calibration")


class ReviewSettingsQuerySet(models.QuerySet["ReviewSettings"]):
    def scores_changed(self, campaign_ids: Iterable[int]) -> int:
        """Record that these campaigns' scores changed (call it where scores are written)."""
        return self.filter(campaign_id__in=list(campaign_ids)).update(
            scores_version=models.F("scores_version") + 1
        )


class ReviewSettings(models.Model):
    """How a campaign's outputs are reviewed."""

    campaign = models.OneToOneField(Campaign, on_delete=models.CASCADE, related_name="review")
    reviewers_per_output = models.PositiveSmallIntegerField(
        default=2, validators=[MinValueValidator(1), MaxValueValidator(20)]
    )
    layout = models.CharField(max_length=16, choices=Layout.choices, default=Layout.SIDE_BY_SIDE)
    show_reasoning = models.BooleanField(default=False)
    identity_leaks = models.CharField(
        max_length=8, choices=IdentityLeakPolicy.choices, default=IdentityLeakPolicy.MASK
    )
    scores_version = models.PositiveBigIntegerField(
        default=0,
        editable=False,
        help_text=_(
            "Goes up whenever a score of this campaign is written; the results pages' cache "
            "keys on it."
        ),
    )
    results_open = models.BooleanField(
        default=False,
        help_text=_("Reviewers may read this campaign's comparison; it then takes no more scores."),
    )
    grading_ended_at = models.DateTimeField(
        null=True,
        blank=True,
        editable=False,
        help_text=_(
            "When this campaign stopped taking scores because its results were opened to "
            "reviewers. Permanent: hiding the results again does not re-open grading."
        ),
    )
    judge_guided_order = models.BooleanField(
        default=False,
        help_text=_(
            "Serve first the items whose judge scores are closest between models, or that a "
            "judge could not score: early human scores go where the judge decides least."
        ),
    )
    gold_rate = models.FloatField(
        default=0.1,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text=_(
            "Share of the items a reviewer is given that are gold answers (answers an admin has "
            "scored in advance), when the campaign has any. Their scores never enter results."
        ),
    )
    calibration = models.BooleanField(
        default=False,
        help_text=_(
            "New reviewers first score this campaign's calibration answers and see the expected "
            "range and note after each; until they finish, they get no other work."
        ),
    )
    disagreement_spread = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(10)],
        help_text=_(
            "When the first scores of an answer differ by at least this many points, its item is "
            "offered to more reviewers, up to the maximum below. Empty: never."
        ),
    )
    reviewers_max = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(20)],
        help_text=_("How many reviewers an item may have at most once its scores disagree."),
    )
    max_chars_per_s = models.PositiveIntegerField(
        null=True,
        blank=True,
        default=50,
        validators=[MinValueValidator(1)],
        help_text=_(
            "Scores given faster than reading the answers at this many characters per second "
            "are counted as too fast on the reviewer quality page (never dropped). Empty: off."
        ),
    )
    reviewers = models.ManyToManyField(
        settings.AUTH_USER_MODEL,
        blank=True,
        related_name="+",
        help_text=_("Leave empty to let every reviewer work on this campaign."),
    )
    excluded_reviewers = models.ManyToManyField(
        settings.AUTH_USER_MODEL,
        blank=True,
        related_name="+",
        help_text=_(
            "Reviewers whose scores this campaign's figures leave out. Their scores are kept "
            "and still exported one by one; including them again restores the figures."
        ),
    )

    objects = ReviewSettingsQuerySet.as_manager()

    class Meta:
        verbose_name_plural = "review settings"

    def __str__(self) -> str:
        return f"review of {self.campaign.slug}"

    @property
    def grading_ended(self) -> bool:
        return self.grading_ended_at is not None


class ReviewUnit(models.Model):
    """What one reviewer looks at once: an item's answers (campaign × item × sample).

    Side-by-side review shows every model's answer to the item together, so the unit of
    assignment is the item, not a single answer. `holders` counts live reservations plus
    submitted reviews; it is only changed inside the transaction that locks the row, which
    is what keeps more than `reviewers_per_output` people from ever holding one unit.
    """

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="review_units")
    item = models.ForeignKey(
        "inference.TaskItem", on_delete=models.CASCADE, related_name="review_units_as_item"
    )
    sample = models.PositiveSmallIntegerField(default=0)
    # Set in single-response layout: the unit is one answer, not the whole item.
    generation = models.ForeignKey(
        "inference.Generation", on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    holders = models.PositiveSmallIntegerField(default=0)
    submitted = models.PositiveSmallIntegerField(default=0)
    # A random key fixed at creation: ties between equally-reviewed units are broken in an
    # order that does not follow creation (and so reveals nothing).
    shuffle_key = models.PositiveIntegerField(default=0)
    held_for_admin = models.BooleanField(default=False)
    # The judge-guided order's rank (grading/judge_order.py): 0 for every unit when it is off.
    judge_rank = models.PositiveIntegerField(default=0)
    # Regular units are reviewed `reviewers_per_output` times (plus `extra_reviews`); gold and
    # calibration units hold answers scored in advance, and their scores measure the reviewer.
    purpose = models.CharField(max_length=12, choices=Purpose.choices, default=Purpose.REGULAR)
    # Reviews asked beyond `reviewers_per_output` because the first scores disagreed.
    extra_reviews = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["campaign", "item", "sample", "purpose"],
                condition=models.Q(generation__isnull=True),
                name="unique_review_unit",
            ),
            models.UniqueConstraint(
                fields=["generation", "purpose"],
                condition=models.Q(generation__isnull=False),
                name="unique_single_answer_unit",
            ),
        ]
        # The order next_assignment walks: least submitted, then least held, then (with the
        # judge-guided order) what the judges decide least, then shuffled.
        indexes = [
            models.Index(
                fields=["campaign", "submitted", "holders", "judge_rank", "shuffle_key"],
                name="review_unit_queue_order",
            )
        ]

    def __str__(self) -> str:
        return f"{self.campaign.slug}/{self.item_id}#{self.sample}"


class AssignmentStatus(models.TextChoices):
    RESERVED = "reserved", _("reserved")
    SUBMITTED = "submitted", _("submitted")
    SKIPPED = "skipped", _("skipped")
    EXPIRED = "expired", _("expired")


class AssignmentQuerySet(models.QuerySet["Assignment"]):
    def live(self) -> AssignmentQuerySet:
        """Assignments a reviewer can still open: reserved, or submitted (to edit the scores)."""
        return self.filter(status__in=[AssignmentStatus.RESERVED, AssignmentStatus.SUBMITTED])

    def reserved(self) -> AssignmentQuerySet:
        """Assignments held by a reviewer who has not scored them yet (expired or not)."""
        return self.filter(status=AssignmentStatus.RESERVED)

    def submitted(self) -> AssignmentQuerySet:
        """Assignments whose scores were submitted."""
        return self.filter(status=AssignmentStatus.SUBMITTED)


class Assignment(models.Model):
    """A review unit given to one reviewer, with the order its answers are shown in."""

    public_id = models.CharField(max_length=32, unique=True, default=new_public_id, editable=False)
    unit = models.ForeignKey(ReviewUnit, on_delete=models.CASCADE, related_name="assignments")
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="assignments"
    )
    status = models.CharField(
        max_length=16, choices=AssignmentStatus.choices, default=AssignmentStatus.RESERVED
    )
    # Public ids of the generations in the order shown: position 0 is "A".
    order = models.JSONField(default=list)
    reserved_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = AssignmentQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["unit", "reviewer"], name="one_assignment_per_reviewer")
        ]
        indexes = [models.Index(fields=["reviewer", "status"])]

    def __str__(self) -> str:
        return f"{self.unit} → {self.reviewer_id} ({self.status})"


class FlagReason(models.TextChoices):
    IDENTITY = "identity", _("reveals the model")
    BROKEN = "broken", _("broken output")
    PROMPT = "prompt", _("problem with the prompt")


class ScoreQuerySet(models.QuerySet["Score"]):
    def counted(self) -> ScoreQuerySet:
        """The scores the results count: regular ones (not gold or calibration checks), not
        those of a reviewer excluded from the score's campaign
        (`ReviewSettings.excluded_reviewers`). Every figure reads scores through this."""
        excluded = ReviewSettings.excluded_reviewers.through.objects.filter(
            reviewsettings__campaign_id=models.OuterRef("generation__campaign_id"),
            user_id=models.OuterRef("reviewer_id"),
        )
        return self.filter(purpose=Purpose.REGULAR).exclude(models.Exists(excluded))


class Score(models.Model):
    """One reviewer's 0–10 score of one answer, under one rubric version."""

    public_id = models.CharField(max_length=32, unique=True, default=new_public_id, editable=False)
    generation = models.ForeignKey(
        "inference.Generation", on_delete=models.CASCADE, related_name="scores"
    )
    # PROTECT: deleting a reviewer must not silently change every figure their scores are in.
    # Deactivate them, or exclude them from a campaign's results (`excluded_reviewers`).
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="scores"
    )
    assignment = models.ForeignKey(
        Assignment, on_delete=models.SET_NULL, null=True, blank=True, related_name="scores"
    )
    score = models.PositiveSmallIntegerField(validators=[MaxValueValidator(10)])
    comment = models.TextField(blank=True)
    flagged = models.BooleanField(default=False)
    flag_reason = models.CharField(max_length=16, choices=FlagReason.choices, blank=True)
    position = models.PositiveSmallIntegerField(help_text=_("0 = shown as A, 1 = B, …"))
    rubric = models.ForeignKey(Rubric, on_delete=models.PROTECT, related_name="scores")
    seconds_spent = models.FloatField(null=True, blank=True)
    imported = models.BooleanField(default=False)
    # Copied from the unit at submission: only regular scores enter results (`counted`).
    purpose = models.CharField(max_length=12, choices=Purpose.choices, default=Purpose.REGULAR)
    scored_at = models.DateTimeField()
    updated_at = models.DateTimeField(auto_now=True)

    objects = ScoreQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["generation", "reviewer"], name="one_score_per_reviewer"
            ),
            models.CheckConstraint(condition=models.Q(score__lte=10), name="score_at_most_10"),
        ]
        indexes = [models.Index(fields=["reviewer", "scored_at"])]

    def __str__(self) -> str:
        return f"{self.score} by {self.reviewer_id} for {self.generation_id}"


class GoldAnswer(models.Model):
    """An answer an admin has scored in advance: the range a careful reviewer's score falls in,
    and a note saying why (DESIGN §11). `purpose` says how reviewers meet it: mixed unmarked
    into their queues (gold) or first, with the range and note shown after (calibration)."""

    generation = models.OneToOneField(
        "inference.Generation", on_delete=models.CASCADE, related_name="gold"
    )
    low = models.PositiveSmallIntegerField(validators=[MaxValueValidator(10)])
    high = models.PositiveSmallIntegerField(validators=[MaxValueValidator(10)])
    note = models.TextField(blank=True)
    purpose = models.CharField(
        max_length=12,
        choices=[
            (Purpose.GOLD, Purpose.GOLD.label),
            (Purpose.CALIBRATION, Purpose.CALIBRATION.label),
        ],
        default=Purpose.GOLD,
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(low__lte=models.F("high")), name="gold_low_le_high"
            ),
            models.CheckConstraint(condition=models.Q(high__lte=10), name="gold_high_at_most_10"),
        ]

    def __str__(self) -> str:
        return f"{self.purpose} {self.low}–{self.high} for {self.generation_id}"

    def distance(self, score: int) -> int:
        """How far a score falls outside the range (0 inside it)."""
        return max(self.low - score, 0, score - self.high)


class ExportKind(models.TextChoices):
    SCORES = "scores", _("scores")
    AGGREGATE = "aggregate", _("aggregate scores")
    GENERATIONS = "generations", _("generations")


class ExportStatus(models.TextChoices):
    QUEUED = "queued", _("queued")
    RUNNING = "running", _("running")
    DONE = "done", _("done")
    FAILED = "failed", _("failed")


ACTIVE_EXPORT_STATUSES = (ExportStatus.QUEUED, ExportStatus.RUNNING)
"""An export in one of these is waiting for a worker or being written."""


class ExportQuerySet(models.QuerySet["Export"]):
    def active(self) -> ExportQuerySet:
        """Exports waiting for a worker or being written."""
        return self.filter(status__in=ACTIVE_EXPORT_STATUSES)

    def finished(self) -> ExportQuerySet:
        """Exports that are done or failed (only done ones have a file)."""
        return self.filter(status__in=[ExportStatus.DONE, ExportStatus.FAILED])


class Export(models.Model):
    """A campaign's CSV export too large to download at once, written by a worker to a file.

    The file is `settings.EXPORT_DIR / "<public_id>.csv"` (see `grading.exports.path_of`); it
    exists once the export is done and only then.
    """

    public_id = models.CharField(max_length=32, unique=True, default=new_public_id, editable=False)
    kind = models.CharField(max_length=16, choices=ExportKind.choices)
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="exports")
    bom = models.BooleanField(default=False)
    anonymize_reviewers = models.BooleanField(default=False)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    status = models.CharField(
        max_length=16, choices=ExportStatus.choices, default=ExportStatus.QUEUED
    )
    rows_expected = models.PositiveIntegerField(default=0)
    rows_written = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = ExportQuerySet.as_manager()

    class Meta:
        indexes = [models.Index(fields=["campaign", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.campaign_id} {self.kind} ({self.status})"

    @property
    def active(self) -> bool:
        return self.status in ACTIVE_EXPORT_STATUSES


class FigureBuild(models.Model):
    """A claim on building one set of results figures: a lock shared by every process.

    One row per figure set (`key`, see `grading.freshness`) while its build is claimed or
    running; the builder deletes it when done. A crashed builder's row expires (`expires_at`),
    and a failed build keeps its row, with the error, until a cool-down ends.
    """

    key = models.CharField(max_length=64, unique=True)
    token = models.CharField(max_length=32)
    claimed_at = models.DateTimeField()
    started_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField()
    error = models.TextField(blank=True)

    def __str__(self) -> str:
        return f"{self.key} ({'failed' if self.error else 'running'} until {self.expires_at})"
