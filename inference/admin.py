from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from .models import Campaign, CampaignModel, ModelEndpoint, Suite, TaskType


@admin.register(TaskType)
class TaskTypeAdmin(admin.ModelAdmin[TaskType]):
    list_display = ["code", "name_zh", "name_en", "modality", "position"]
    list_filter = ["modality"]
    search_fields = ["code", "name_zh", "name_en"]


@admin.register(Suite)
class SuiteAdmin(admin.ModelAdmin[Suite]):
    list_display = ["name", "created_at"]
    search_fields = ["name"]


class ModelEndpointForm(forms.ModelForm[ModelEndpoint]):
    """The API key is write-only: the form never renders the stored value."""

    base_url = forms.URLField(max_length=500, assume_scheme="https")

    api_key = forms.CharField(
        label=_("API key"),
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text=_(
            "Write-only. Leave empty to keep the current key. Prefer api_key_env, which names "
            "an environment variable holding the key."
        ),
    )
    clear_api_key = forms.BooleanField(label=_("Remove the stored API key"), required=False)

    class Meta:
        model = ModelEndpoint
        fields = [
            "slug",
            "name",
            "model",
            "dialect",
            "base_url",
            "base_url_env",
            "api_key_env",
            "api_key",
            "vision",
            "reasoning",
            "max_concurrency",
            "max_pixels",
            "timeout_s",
        ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.initial.pop("api_key", None)

    def clean_api_key(self) -> str:
        typed: str = self.cleaned_data.get("api_key", "")
        if typed:
            return typed
        # Keep what is stored: empty means "unchanged", not "erase".
        return self.instance.api_key if self.instance.pk else ""

    def save(self, commit: bool = True) -> ModelEndpoint:
        endpoint = super().save(commit=False)
        if self.cleaned_data.get("clear_api_key"):
            endpoint.api_key = ""
        if commit:
            endpoint.save()
            self.save_m2m()
        return endpoint


@admin.register(ModelEndpoint)
class ModelEndpointAdmin(admin.ModelAdmin[ModelEndpoint]):
    form = ModelEndpointForm
    list_display = ["slug", "name", "model", "dialect", "base_url", "vision", "reasoning"]
    list_filter = ["dialect", "vision", "reasoning"]
    search_fields = ["slug", "name", "model"]
    readonly_fields = ["has_api_key", "created_at", "updated_at"]

    @admin.display(boolean=True, description=_("API key stored"))
    def has_api_key(self, endpoint: ModelEndpoint) -> bool:
        return bool(endpoint.api_key)


class CampaignModelInline(admin.TabularInline[CampaignModel, Campaign]):
    model = CampaignModel
    extra = 0
    autocomplete_fields = ["endpoint"]


@admin.register(Campaign)
class CampaignAdmin(admin.ModelAdmin[Campaign]):
    list_display = ["slug", "name", "matchup", "suite", "samples", "status"]
    list_filter = ["status", "matchup"]
    search_fields = ["slug", "name"]
    filter_horizontal = ["task_types"]
    inlines = [CampaignModelInline]
    readonly_fields = ["public_id", "created_at", "updated_at"]

    def get_readonly_fields(self, request: HttpRequest, obj: Campaign | None = None) -> Any:
        fields = list(super().get_readonly_fields(request, obj))
        if obj is not None and obj.has_generations():
            # Once launched, the sampling settings are part of the record.
            fields += ["params", "samples", "suite"]
        return fields
