"""Admins' reviewer quality pages (DESIGN §11): marking gold and calibration answers, the list
of a campaign's marks, and each reviewer's quality figures."""

from __future__ import annotations

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.cache import patch_vary_headers
from django.utils.http import content_disposition_header, url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods

from inference.access import HtmxHttpRequest
from inference.csv_writing import csv_lines
from inference.models import Campaign, Generation

from . import gold, reviewer_quality
from .markdown import render_markdown
from .models import GoldAnswer, Purpose, ReviewSettings
from .roles import admin_required


def _mark_of(generation: Generation) -> GoldAnswer | None:
    return GoldAnswer.objects.filter(generation=generation).first()


def _safe_next(request: HttpRequest) -> str:
    wanted = request.POST.get("next", "")
    allowed = url_has_allowed_host_and_scheme(
        wanted, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    )
    return wanted if allowed else ""


@admin_required
@require_http_methods(["GET", "POST"])
def gold_mark(request: HtmxHttpRequest, public_id: str) -> HttpResponse:
    """Admins: mark one answer as gold or calibration (range and note), change or remove it.

    htmx gets the answer's mark fragment back, with the problems next to their fields (status
    200, so htmx swaps it); a plain form post goes back where it came from, or to this page
    with the problems when there are any.
    """
    generation = get_object_or_404(
        Generation.objects.select_related("campaign", "item", "endpoint"), public_id=public_id
    )
    shown = gold.mark_shown(generation, _mark_of(generation))
    if request.method == "POST":
        if "remove" in request.POST:
            removed = gold.unmark(generation)
            notice = _("Mark removed.") if removed else _("The answer had no mark.")
            shown = gold.mark_shown(generation, None, notice=notice)
        else:
            form = gold.GoldForm(request.POST)
            saved = gold.mark(generation, form, by=request.user)
            if saved is None:
                shown = gold.mark_shown(generation, _mark_of(generation), form=form)
            else:
                shown = gold.mark_shown(generation, saved, notice=_("Mark saved."))
        if request.htmx and not request.htmx.history_restore_request:
            response = render(request, "grading/gold_mark_form.html", {"m": shown})
            patch_vary_headers(response, ("HX-Request",))
            return response
        if not (shown.errors or shown.general):
            messages.success(request, shown.notice)
            return redirect(_safe_next(request) or request.path)
    context = {
        "answer": generation,
        "html": render_markdown(generation.content),
        "m": shown,
    }
    response = render(request, "grading/gold_mark.html", context)
    patch_vary_headers(response, ("HX-Request",))
    return response


@admin_required
@require_GET
def gold_list(request: HttpRequest, public_id: str) -> HttpResponse:
    """Admins: a campaign's gold and calibration answers, each with its mark and a remove
    button."""
    campaign = get_object_or_404(Campaign, public_id=public_id)
    review = ReviewSettings.objects.filter(campaign=campaign).first()
    marks = (
        GoldAnswer.objects.filter(generation__campaign=campaign)
        .select_related("generation__item", "generation__endpoint", "created_by")
        .order_by(
            "-purpose",
            "generation__item__external_id",
            "generation__endpoint__slug",
            "generation__sample",
        )
    )
    rows = [(mark, gold.mark_shown(mark.generation, mark)) for mark in marks]
    calibration = sum(mark.purpose == Purpose.CALIBRATION for mark, _shown in rows)
    context = {
        "campaign": campaign,
        "rows": rows,
        "gold_count": len(rows) - calibration,
        "calibration_count": calibration,
        "calibration_empty": bool(review and review.calibration) and not calibration,
    }
    return render(request, "grading/gold_list.html", context)


@admin_required
@require_GET
def reviewer_quality_page(request: HttpRequest, public_id: str) -> HttpResponseBase:
    """Admins: each reviewer's gold accuracy, calibration, severity per week (drift), scores
    given too fast, and exclusion; or one of its tables as CSV (`?csv=reviewers`, `weeks`,
    `drift`, `gold`)."""
    campaign = get_object_or_404(Campaign, public_id=public_id)
    quality = reviewer_quality.measure(campaign)
    wanted = request.GET.get("csv")
    if wanted:
        tables = reviewer_quality.tables(quality)
        if wanted not in tables:
            raise Http404
        header, rows = tables[wanted]
        response = StreamingHttpResponse(csv_lines(header, rows), content_type="text/csv")
        response["Content-Disposition"] = content_disposition_header(
            True, f"{campaign.slug}-reviewers-{wanted}.csv"
        )
        return response
    context = {
        "campaign": campaign,
        "quality": quality,
        "charts": [reviewer_quality.drift_chart(quality), reviewer_quality.gold_chart(quality)],
    }
    return render(request, "grading/reviewer_quality.html", context)
