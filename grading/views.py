"""Pages of the grading app."""

from __future__ import annotations

from django.contrib.auth.decorators import login_not_required
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from inference.models import Campaign, ModelEndpoint, Suite, TaskType

from .models import Rubric
from .roles import is_admin


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    """The start page: what the viewer can do next, by role."""
    context: dict[str, object] = {}
    if is_admin(request.user):
        context["campaigns"] = Campaign.objects.select_related("suite").order_by("slug")
        context["counts"] = {
            "task_types": TaskType.objects.count(),
            "endpoints": ModelEndpoint.objects.count(),
            "suites": Suite.objects.count(),
        }
    return render(request, "grading/home.html", context)


@require_GET
def rubric(request: HttpRequest) -> HttpResponse:
    """The current rubric: the 0–10 bands and every task type's scoring focus."""
    current = Rubric.objects.current()
    bands = current.bands.all()
    focuses = current.focuses.select_related("task_type").order_by("task_type__position")
    return render(
        request, "grading/rubric.html", {"rubric": current, "bands": bands, "focuses": focuses}
    )


@login_not_required
@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness for load balancers and `make demo`: the app answers and reaches its database."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})
