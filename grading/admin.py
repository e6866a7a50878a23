from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from inference.admin import CampaignAdmin
from inference.models import Campaign

from .models import ReviewSettings, Rubric, RubricBand, ScoringFocus
from .reviewer_quality import calibration_count

admin.site.site_header = "gradebench"
admin.site.site_title = "gradebench admin"


class RubricBandInline(admin.TabularInline[RubricBand, Rubric]):
    model = RubricBand
    extra = 0


class ScoringFocusInline(admin.TabularInline[ScoringFocus, Rubric]):
    model = ScoringFocus
    extra = 0


@admin.register(Rubric)
class RubricAdmin(admin.ModelAdmin[Rubric]):
    list_display = ["version", "name", "created_at"]
    inlines = [RubricBandInline, ScoringFocusInline]


CALIBRATION_EMPTY = gettext_lazy(
    "Calibration is on but this campaign has no calibration answers: new reviewers go straight "
    "to real work. Mark some answers as calibration (drill-down pages or manage.py import_gold)."
)


class ReviewSettingsForm(forms.ModelForm[ReviewSettings]):
    """The campaign page's review settings: `reviewers_max` at least `reviewers_per_output`."""

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        per_output, most = cleaned.get("reviewers_per_output"), cleaned.get("reviewers_max")
        if per_output is not None and most is not None and most < per_output:
            self.add_error(
                "reviewers_max",
                _("At least the reviewers per output (%(n)s), or empty.") % {"n": per_output},
            )
        return cleaned


class ReviewSettingsInline(admin.StackedInline[ReviewSettings, Campaign]):
    model = ReviewSettings
    form = ReviewSettingsForm
    can_delete = False
    filter_horizontal = ["reviewers"]
    # Changed on the Review progress page, which also marks the campaign's figures stale.
    readonly_fields = ["excluded_reviewers", "calibration_set"]

    @admin.display(description="calibration answers")
    def calibration_set(self, review: ReviewSettings) -> str:
        """How many calibration answers the campaign has, with a warning when calibration is
        on and there are none."""
        if review.pk is None:
            return "0"
        count = calibration_count(review.campaign)
        if review.calibration and not count:
            return f"0 — {CALIBRATION_EMPTY}"
        return str(count)


class CampaignWithReviewAdmin(CampaignAdmin):
    inlines = [*CampaignAdmin.inlines, ReviewSettingsInline]  # type: ignore[list-item]

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        review = ReviewSettings.objects.filter(campaign=form.instance).first()
        if review and review.calibration and not calibration_count(form.instance):
            messages.warning(request, str(CALIBRATION_EMPTY))


admin.site.unregister(Campaign)
admin.site.register(Campaign, CampaignWithReviewAdmin)
