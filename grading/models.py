"""What people think of the answers: rubrics and each campaign's review settings."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils.translation import get_language
from django.utils.translation import gettext_lazy as _

from inference.models import Campaign, TaskType

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
    reviewers = models.ManyToManyField(
        settings.AUTH_USER_MODEL,
        blank=True,
        related_name="+",
        help_text=_("Leave empty to let every reviewer work on this campaign."),
    )

    class Meta:
        verbose_name_plural = "review settings"

    def __str__(self) -> str:
        return f"review of {self.campaign.slug}"
