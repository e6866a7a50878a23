from __future__ import annotations

from django.contrib import admin

from inference.admin import CampaignAdmin
from inference.models import Campaign

from .models import ReviewSettings, Rubric, RubricBand, ScoringFocus

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


class ReviewSettingsInline(admin.StackedInline[ReviewSettings, Campaign]):
    model = ReviewSettings
    can_delete = False
    filter_horizontal = ["reviewers"]
    # Changed on the Review progress page, which also marks the campaign's figures stale.
    readonly_fields = ["excluded_reviewers"]


class CampaignWithReviewAdmin(CampaignAdmin):
    inlines = [*CampaignAdmin.inlines, ReviewSettingsInline]  # type: ignore[list-item]


admin.site.unregister(Campaign)
admin.site.register(Campaign, CampaignWithReviewAdmin)
