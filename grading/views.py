"""Pages of the grading app."""

from __future__ import annotations

import operator
from functools import reduce
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_not_required
from django.contrib.auth.models import User
from django.db import connection
from django.db.models import Q, QuerySet
from django.http import (
    FileResponse,
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    JsonResponse,
    QueryDict,
    StreamingHttpResponse,
)
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import content_disposition_header, url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from inference.access import HtmxHttpRequest
from inference.csv_writing import csv_lines
from inference.models import (
    Campaign,
    CampaignModel,
    Generation,
    Modality,
    ModelEndpoint,
    Suite,
    TaskImage,
    TaskType,
)
from inference.pages import HttpResponseClientRedirect, fragment_wanted, push_url, render_page

from . import (
    analyses,
    analysis_charts,
    analysis_export,
    assignment,
    blind_sheet,
    charts,
    comparison,
    drilldown,
    exclusion,
    exports,
    freshness,
    judge_stats,
    progress,
)
from . import operations as operations_checks
from .models import (
    Assignment,
    AssignmentStatus,
    Export,
    ExportKind,
    ExportStatus,
    FlagReason,
    Purpose,
    ReviewSettings,
    Rubric,
    Score,
)
from .roles import (
    admin_required,
    is_admin,
    member_required,
    reviewer_required,
    signed_in,
)


@signed_in
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


@signed_in
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


@admin_required
@require_GET
@never_cache
def operations(request: HtmxHttpRequest) -> HttpResponse:
    """Admins: is everything up? Database, broker, queues, work per endpoint, version; whether
    a worker answers comes in its own request (`#workers`: a ping can take seconds)."""
    if fragment_wanted(request, {"workers"}) or "ping" in request.GET:
        context: dict[str, object] = {"workers": operations_checks.check_workers()}
    else:
        context = {"status": operations_checks.status(), "workers": None}
    return render_page(request, "grading/operations.html", context, fragments={"workers"})


# --- Review (reviewers) ----------------------------------------------------------------------


def _own_assignment(request: HttpRequest, public_id: str) -> Assignment:
    """The reviewer's own assignment, or 404 (never someone else's, never a hint it exists)."""
    return get_object_or_404(
        Assignment.objects.live().select_related("unit"),
        public_id=public_id,
        reviewer_id=request.user.pk,
    )


@reviewer_required
@require_GET
def review_home(request: HttpRequest) -> HttpResponse:
    for campaign in Campaign.objects.filter(pk__in=assignment.campaigns_for(request.user)):
        assignment.sync_units(campaign)
    context = {
        "scored": Score.objects.filter(reviewer_id=request.user.pk).count(),
        "available": assignment.available_count(request.user),
    }
    return render(request, "grading/review_home.html", context)


@reviewer_required
@require_GET
def review_next(request: HtmxHttpRequest) -> HttpResponse:
    held = assignment.next_assignment(request.user)
    if held is None:
        # Runs may have finished since units were last made: make them, then ask again.
        for campaign in Campaign.objects.filter(pk__in=assignment.campaigns_for(request.user)):
            assignment.sync_units(campaign)
        held = assignment.next_assignment(request.user)
    if held is None:
        return render(request, "grading/review_done.html")
    return redirect("review-assignment", public_id=held.public_id)


@reviewer_required
@require_http_methods(["GET", "POST"])
def review_assignment(request: HtmxHttpRequest, public_id: str) -> HttpResponse:
    """The scoring page; POST submits (or skips) and moves on to the next item."""
    held = _own_assignment(request, public_id)
    calibration = held.unit.purpose == Purpose.CALIBRATION
    if calibration and held.status == AssignmentStatus.SUBMITTED:
        # A calibration item, once scored, shows how the scores compare; it is not edited.
        return _calibration_page(request, held)
    error = ""
    if request.method == "POST":
        if "skip" in request.POST and held.status == AssignmentStatus.RESERVED:
            if calibration:
                error = _("Calibration items cannot be skipped: score them to go on.")
                return render_page(
                    request,
                    "grading/review.html",
                    _sheet_context(request, held, error),
                    fragments={"work"},
                )
            assignment.skip(held)
            return _next_page(request)
        scores = blind_sheet.read_form(request.POST, held)
        try:
            if held.status == AssignmentStatus.SUBMITTED:
                assignment.edit(held, scores)
                messages.success(request, "Your scores were updated.")
                if request.htmx:
                    return HttpResponseClientRedirect(reverse("my-scores"))
                return redirect("my-scores")
            seconds = (timezone.now() - held.reserved_at).total_seconds()
            assignment.submit(held, scores, seconds_spent=min(seconds, 3600.0))
            request.session["last-submitted"] = held.public_id
        except assignment.ScoreError as problem:
            error = str(problem)
        else:
            if calibration:
                here = reverse("review-assignment", kwargs={"public_id": held.public_id})
                if not request.htmx:
                    return redirect(here)
                held.refresh_from_db()
                return push_url(_calibration_page(request, held), here)
            return _next_page(request)
    return render_page(
        request, "grading/review.html", _sheet_context(request, held, error), fragments={"work"}
    )


def _calibration_page(request: HtmxHttpRequest, held: Assignment) -> HttpResponse:
    """A submitted calibration item: the reviewer's scores next to the expected ranges."""
    context = {
        "feedback": blind_sheet.calibration_feedback(held),
        "progress": progress.reviewer_progress(request.user, held.unit.campaign_id),
    }
    return render_page(request, "grading/review_calibration.html", context, fragments={"work"})


def _sheet_context(request: HttpRequest, held: Assignment, error: str = "") -> dict[str, object]:
    return {
        "sheet": blind_sheet.build_sheet(held),
        "error": error,
        "progress": progress.reviewer_progress(request.user, held.unit.campaign_id),
        "score_range": range(11),
        "comment_max_chars": assignment.COMMENT_MAX_CHARS,
        "flag_reasons": FlagReason.choices,
        "last_submitted": request.session.get("last-submitted", ""),
    }


def _next_page(request: HtmxHttpRequest) -> HttpResponse:
    """After a submit: the next item, swapped in by htmx or reached by a redirect."""
    nxt = assignment.next_assignment(request.user)
    if not request.htmx:
        if nxt is None:
            return redirect("review-next")
        return redirect("review-assignment", public_id=nxt.public_id)
    if nxt is None:
        response = render_page(request, "grading/review_done.html", fragments={"work"})
        return push_url(response, reverse("review-next"))
    response = render_page(
        request, "grading/review.html", _sheet_context(request, nxt), fragments={"work"}
    )
    return push_url(response, reverse("review-assignment", kwargs={"public_id": nxt.public_id}))


@reviewer_required
@require_GET
def my_scores(request: HttpRequest) -> HttpResponse:
    """The reviewer's own submitted work, newest first; each can be reopened and edited."""
    rows, pager = blind_sheet.scored_work(request.user.pk, request.GET.get("page"))
    return render(request, "grading/my_scores.html", {"rows": rows, "pager": pager})


@reviewer_required
@require_GET
def review_image(request: HttpRequest, public_id: str) -> HttpResponse:
    """An image of an item the reviewer holds or has reviewed (full size or thumbnail)."""
    image = get_object_or_404(
        TaskImage.objects.filter(
            item_links__item__review_units_as_item__assignments__reviewer_id=request.user.pk
        ).distinct(),
        public_id=public_id,
    )
    thumb = request.GET.get("size") == "thumb"
    body = bytes(image.thumbnail) if thumb else image.payload
    response = HttpResponse(body, content_type="image/webp" if thumb else image.mime)
    response["Cache-Control"] = "private, max-age=3600"
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "default-src 'none'"
    return response


@admin_required
@require_GET
def review_progress(request: HttpRequest, public_id: str) -> HttpResponse:
    """Admins: how far review of a campaign has got, per reviewer."""
    campaign = get_object_or_404(Campaign, public_id=public_id)
    assignment.sync_units(campaign)
    context = progress.campaign_progress(campaign)
    return render(request, "grading/review_progress.html", context)


@admin_required
@require_POST
def review_exclusion(request: HtmxHttpRequest, public_id: str) -> HttpResponse:
    """Admins: leave a reviewer's scores out of the campaign's figures, or count them again.

    Nothing is deleted. htmx gets the page's reviewers table (`#reviewers`) with the outcome;
    a plain form post is redirected to the page with it as a message.
    """
    campaign = get_object_or_404(Campaign, public_id=public_id)
    reviewer = get_object_or_404(User, username=request.POST.get("reviewer", ""))
    name = reviewer.get_username()
    refused = ""
    action = request.POST.get("action", "")
    if action not in ("exclude", "include"):
        return HttpResponseBadRequest("Say whether to exclude or include.")
    if action == "include":
        exclusion.include(campaign, reviewer)
        notice = _("%(reviewer)s's scores count in this campaign's results again.") % {
            "reviewer": name
        }
    else:
        try:
            exclusion.exclude(campaign, reviewer)
        except exclusion.ExclusionRefused as error:
            refused = str(error)
        notice = (
            ""
            if refused
            else _("%(reviewer)s is excluded from this campaign's results; their scores are kept.")
            % {"reviewer": name}
        )
    if fragment_wanted(request, {"reviewers"}):
        context = {
            "campaign": campaign,
            **progress.reviewers_context(campaign),
            "notice": notice,
            "refused": refused,
        }
        return render_page(
            request, "grading/review_progress.html", context, fragments={"reviewers"}
        )
    if refused:
        messages.error(request, refused)
    else:
        messages.success(request, notice)
    return redirect("review-progress", public_id=campaign.public_id)


@admin_required
@require_http_methods(["GET", "POST"])
def held_items(request: HttpRequest, public_id: str) -> HttpResponse:
    """Admins: items held back because an answer names a model; release them to reviewers."""
    campaign = get_object_or_404(Campaign, public_id=public_id)
    held = campaign.review_units.filter(
        held_for_admin=True, purpose=Purpose.REGULAR
    ).select_related("item__task_type")
    if request.method == "POST":
        unit_id = request.POST.get("unit", "")
        if "release_all" in request.POST:
            chosen = held
        else:
            chosen = held.filter(pk=int(unit_id)) if unit_id.isdigit() else held.none()
        # Gold and calibration units show the same answers: they are released with the item.
        same = [
            Q(item_id=item_id, sample=sample, generation_id=generation_id)
            for item_id, sample, generation_id in chosen.values_list(
                "item_id", "sample", "generation_id"
            )
        ]
        if same:
            campaign.review_units.filter(held_for_admin=True).exclude(
                purpose=Purpose.REGULAR
            ).filter(reduce(operator.or_, same)).update(held_for_admin=False)
        released = chosen.update(held_for_admin=False)
        messages.success(request, f"Released {released} item(s) to reviewers, names masked.")
        return redirect("held-items", public_id=campaign.public_id)
    units = list(held.order_by("item__external_id")[:200])
    answers = (
        Generation.objects.succeeded()
        .filter(campaign=campaign, item_id__in=[u.item_id for u in units])
        .select_related("endpoint")
    )
    by_item: dict[int, list[Generation]] = {}
    for generation in answers:
        by_item.setdefault(generation.item_id, []).append(generation)
    rows = [{"unit": u, "answers": by_item.get(u.item_id, [])} for u in units]
    return render(
        request,
        "grading/held_items.html",
        {"campaign": campaign, "rows": rows, "total": held.count()},
    )


# --- Exports (admins) ------------------------------------------------------------------------


@admin_required
@require_http_methods(["GET", "POST"])
def campaign_export(request: HtmxHttpRequest, public_id: str) -> HttpResponseBase:
    """Admins: a campaign's CSVs. Small ones download at once; large ones are written by a
    worker and listed with their status (polled while any is unfinished) and download links.

    htmx gets the export section (`#export`, embedded in the campaign page) or, when polling,
    just the list (`#exports`); a plain GET gets the whole page.
    """
    campaign = get_object_or_404(Campaign, public_id=public_id)
    if request.method == "POST":
        return _start_export(request, campaign)
    listed = exports.recent(campaign)
    context: dict[str, object] = {
        "campaign": campaign,
        "exports": listed,
        "polling": any(export.active for export in listed),
    }
    if fragment_wanted(request, {"exports"}):
        return render_page(request, "grading/campaign_export.html", context, fragments={"exports"})
    counts = exports.row_counts(campaign)
    context.update(
        {
            "counts": counts,
            "excluded": exclusion.note([campaign], names=True),
            "large": {kind: exports.is_large(kind, counts) for kind in ExportKind.values},
            "inline_max": settings.EXPORT_INLINE_MAX_ROWS,
            # Where the form comes back to: the page showing this section.
            "next": (request.htmx.current_url_abs_path if request.htmx else None)
            or request.get_full_path(),
        }
    )
    return render_page(request, "grading/campaign_export.html", context, fragments={"export"})


def _start_export(request: HtmxHttpRequest, campaign: Campaign) -> HttpResponseBase:
    """The export form's POST: a small CSV downloads at once, a large one goes to a worker."""
    kind = request.POST.get("kind", "")
    if kind not in ExportKind.values:
        return HttpResponseBadRequest("Unknown export.")
    bom = bool(request.POST.get("bom"))
    anonymize = bool(request.POST.get("anonymize")) and kind == ExportKind.SCORES
    counts = exports.row_counts(campaign)
    if not exports.is_large(kind, counts):
        chunks = exports.csv_chunks(kind, campaign, bom=bom, anonymize=anonymize)
        response = StreamingHttpResponse(chunks, content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = content_disposition_header(
            True, exports.filename(campaign, kind)
        )
        return response
    _request_export(request, campaign, kind, bom=bom, anonymize=anonymize, expected=counts[kind])
    return redirect(
        _posted_next(request)
        or reverse("campaign-export", kwargs={"public_id": campaign.public_id})
    )


def _request_export(
    request: HttpRequest,
    campaign: Campaign,
    kind: str,
    *,
    bom: bool,
    anonymize: bool,
    expected: int,
) -> None:
    """Hand a large export to a worker, and say whether one took it."""
    try:
        exports.request_export(
            campaign, kind, bom=bom, anonymize=anonymize, user_id=request.user.pk, expected=expected
        )
    except exports.NoWorker:
        messages.error(
            request,
            _(
                "No Celery worker is running, so this export cannot be written. Start one with "
                "“celery -A grading worker”, or export from the command line: “%(command)s”."
            )
            % {"command": exports.equivalent_command(campaign, kind, bom=bom, anonymize=anonymize)},
        )
    else:
        messages.success(
            request, _("The export is being written; a download link appears when it is ready.")
        )


def _posted_next(request: HttpRequest) -> str:
    """The `next` URL the form sent, if it leads to this site; else ""."""
    next_url = request.POST.get("next", "")
    safe = url_has_allowed_host_and_scheme(
        next_url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    )
    return next_url if safe else ""


@admin_required
@require_GET
def export_download(request: HttpRequest, public_id: str) -> FileResponse:
    """Admins: the file of a finished export (any admin's)."""
    export = get_object_or_404(
        Export.objects.select_related("campaign"), public_id=public_id, status=ExportStatus.DONE
    )
    try:
        handle = exports.path_of(export).open("rb")
    except FileNotFoundError:
        raise Http404("This export's file is gone; export again.") from None
    return FileResponse(
        handle,
        as_attachment=True,
        filename=exports.filename(export.campaign, export.kind),
        content_type="text/csv; charset=utf-8",
    )


# --- Results (comparison pages) --------------------------------------------------------------


def _results_campaigns(request: HttpRequest) -> QuerySet[Campaign]:
    """Campaigns whose results the viewer may read: all for admins; for reviewers, opened ones
    none of whose models they can still grade in another campaign (`_opened_but_withheld`)."""
    campaigns = comparison.campaigns_queryset()
    if is_admin(request.user):
        return campaigns
    return campaigns.filter(review__results_open=True).exclude(
        pk__in=_opened_but_withheld(request).values("pk")
    )


def _opened_but_withheld(request: HttpRequest) -> QuerySet[Campaign]:
    """Opened campaigns that share a model with a campaign this reviewer can still grade.

    Reading them would tell the reviewer how those models fare while they still score (or can
    still edit scores of) the same models blind; they open to the reviewer when that grading
    ends (DESIGN §6).
    """
    gradable = CampaignModel.objects.filter(
        campaign__in=assignment.still_gradable(request.user)
    ).values("endpoint_id")
    return Campaign.objects.filter(
        review__results_open=True, members__endpoint_id__in=gradable
    ).distinct()


@member_required
@require_GET
def results_overview(request: HtmxHttpRequest) -> HttpResponseBase:
    """Every campaign with scores side by side: the reference study's tables and charts."""
    visible = list(_results_campaigns(request))
    # Campaign ids that name nothing the viewer may read are ignored, like any unknown filter.
    chosen = {c.public_id for c in visible} & set(request.GET.getlist("campaign"))
    campaigns = [c for c in visible if not chosen or c.public_id in chosen]
    withheld = 0 if is_admin(request.user) else _opened_but_withheld(request).count()
    return _results_page(request, campaigns, campaign=None, withheld=withheld)


@member_required
@require_GET
def campaign_results(request: HtmxHttpRequest, public_id: str) -> HttpResponseBase:
    """One campaign's comparison."""
    withheld = _opened_but_withheld(request).filter(public_id=public_id)
    if not is_admin(request.user) and withheld.exists():
        return render(request, "grading/results_withheld.html", status=403)
    campaign = get_object_or_404(_results_campaigns(request), public_id=public_id)
    return _results_page(request, [campaign], campaign=campaign)


@admin_required
@require_POST
def results_visibility(request: HttpRequest, public_id: str) -> HttpResponse:
    """Open a campaign's results to reviewers (ending its grading for good), or hide them."""
    campaign = get_object_or_404(Campaign, public_id=public_id)
    if "open" in request.POST:
        assignment.open_results(campaign)
        messages.success(
            request, _("Reviewers can now read these results; the campaign takes no more scores.")
        )
    else:
        assignment.hide_results(campaign)
        messages.success(
            request, _("Results are hidden from reviewers again; grading stays ended.")
        )
    return redirect("campaign-results", public_id=campaign.public_id)


def _results_page(
    request: HtmxHttpRequest,
    campaigns: list[Campaign],
    *,
    campaign: Campaign | None,
    withheld: int = 0,
) -> HttpResponseBase:
    """The comparison of `campaigns` (one campaign's page when `campaign` is given), as a page,
    its `results` fragment, one chart's CSV, or 204 to the freshness poll while nothing is new."""
    admin = is_admin(request.user)
    filters = comparison.Filters.from_query(request.GET, allow_reviewer=admin)
    sort = request.GET.get("sort", "type")
    current = freshness.figures(campaigns, reviewer=filters.reviewer, scored_only=campaign is None)
    if current.stale and request.htmx and request.htmx.trigger == "freshness":
        return HttpResponse(status=204)  # the status line's poll: nothing new to show yet
    selection = comparison.select(current.base, filters, sort=sort)
    figures = charts.charts(selection)
    wanted_csv = request.GET.get("csv")
    if wanted_csv:
        return _chart_csv(figures, selection, wanted_csv, campaign)
    context = {
        **_campaign_heading(campaign),
        **_filter_form(request, filters, current.base, campaign=campaign),
        "withheld": withheld,
        "excluded": exclusion.note(campaigns, names=admin),
        "selection": selection,
        "freshness": current,
        "charts": figures,
        "sort": sort,
        "min_items": comparison.MIN_ITEMS,
    }
    return render_page(request, "grading/results.html", context, fragments={"results"})


def _filter_form(
    request: HttpRequest,
    filters: comparison.Filters,
    base: comparison.Base,
    *,
    campaign: Campaign | None,
) -> dict[str, object]:
    """What a results page's filter form, sort and CSV links offer; reviewers' names and the
    drill-down only to admins."""
    admin = is_admin(request.user)
    chosen = request.GET.getlist("campaign") if campaign is None else []
    # The page's sort and CSV links keep the campaigns chosen, as its filter form does.
    link_query = QueryDict(filters.as_query(), mutable=True)
    link_query.setlist("campaign", chosen)
    return {
        "filters": filters,
        "filter_query": link_query.urlencode(),
        "all_task_types": base.task_types,
        "modalities": Modality.choices,
        "reviewers": base.reviewers if admin else [],
        "show_reviewers": admin,
        "drill_url": reverse("results-items") if admin else "",
        "chosen_campaigns": chosen,
    }


def _campaign_heading(campaign: Campaign | None) -> dict[str, object]:
    """A campaign results page's heading: the campaign, and whether reviewers may read it."""
    if campaign is None:
        return {"campaign": None, "results_open": False, "grading_ended": False}
    review = ReviewSettings.objects.filter(campaign=campaign).first()
    return {
        "campaign": comparison.campaign_infos([campaign])[0],
        "results_open": bool(review and review.results_open),
        "grading_ended": bool(review and review.grading_ended),
    }


def _chart_csv(
    figures: list[charts.Chart],
    selection: comparison.Selection,
    wanted: str,
    campaign: Campaign | None,
) -> StreamingHttpResponse:
    tables = {chart.id: (chart.header, chart.rows) for chart in figures}
    tables["table"] = comparison.table_rows(selection)
    if wanted not in tables:
        raise Http404
    header, rows = tables[wanted]
    response = StreamingHttpResponse(csv_lines(header, rows), content_type="text/csv")
    name = f"{campaign.slug if campaign else 'results'}-{wanted}.csv"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


# --- Bias and ranking (DESIGN §7.1) ------------------------------------------------------------


@member_required
@require_GET
def analyses_overview(request: HtmxHttpRequest) -> HttpResponseBase:
    """Bias and ranking over every campaign with scores the viewer may read (or those chosen)."""
    visible = list(_results_campaigns(request))
    chosen = {c.public_id for c in visible} & set(request.GET.getlist("campaign"))
    campaigns = [c for c in visible if not chosen or c.public_id in chosen]
    withheld = 0 if is_admin(request.user) else _opened_but_withheld(request).count()
    return _analyses_page(request, campaigns, campaign=None, withheld=withheld)


@member_required
@require_GET
def campaign_analyses(request: HtmxHttpRequest, public_id: str) -> HttpResponseBase:
    """Bias and ranking of one campaign, from its scores only."""
    withheld = _opened_but_withheld(request).filter(public_id=public_id)
    if not is_admin(request.user) and withheld.exists():
        return render(request, "grading/results_withheld.html", status=403)
    campaign = get_object_or_404(_results_campaigns(request), public_id=public_id)
    return _analyses_page(request, [campaign], campaign=campaign)


def _analyses_page(
    request: HtmxHttpRequest,
    campaigns: list[Campaign],
    *,
    campaign: Campaign | None,
    withheld: int = 0,
) -> HttpResponseBase:
    """The bias and ranking analyses of `campaigns`: a page, its `analyses` fragment, one
    table's or chart's CSV, or 204 to the freshness poll while nothing is new. Per-reviewer
    position figures reach admins only."""
    admin = is_admin(request.user)
    filters = comparison.Filters.from_query(request.GET, allow_reviewer=False)
    current = freshness.figures(campaigns, scored_only=campaign is None, kind=freshness.ANALYSES)
    if current.stale and request.htmx and request.htmx.trigger == "freshness":
        return HttpResponse(status=204)
    selection = analyses.select(current.base, filters, admin=admin)
    figures = analysis_charts.charts(selection)
    chosen = request.GET.getlist("campaign") if campaign is None else []
    link_query = QueryDict(filters.as_query(), mutable=True)
    link_query.setlist("campaign", chosen)
    wanted_csv = request.GET.get("csv")
    if wanted_csv:
        return _analysis_csv(figures, selection, wanted_csv, campaign)
    context = {
        **_campaign_heading(campaign),
        "withheld": withheld,
        "excluded": exclusion.note(campaigns, names=admin),
        "selection": selection,
        "freshness": current,
        "charts": figures,
        "filters": filters,
        "filter_query": link_query.urlencode(),
        "all_task_types": current.base.task_types,
        "modalities": Modality.choices,
        "chosen_campaigns": chosen,
        "show_reviewers": admin,
        "significant": analyses.SIGNIFICANT,
    }
    return render_page(request, "grading/analyses.html", context, fragments={"analyses"})


def analysis_tables(
    selection: analyses.Selection,
) -> dict[str, tuple[tuple[str, ...], list[tuple[Any, ...]]]]:
    """The page's tables as `export_analysis` rows, by the CSV name the page links to."""
    fits = [("", selection.overall), *((t.code, fit) for t, fit in selection.by_type)]
    tables: dict[str, tuple[tuple[str, ...], list[tuple[Any, ...]]]] = {
        "ranking-table": (
            analysis_export.RANKING_COLUMNS,
            [analysis_export.ranking_row(code, r) for code, fit in fits for r in fit],
        ),
        "position-table": (
            analysis_export.POSITION_COLUMNS,
            [
                analysis_export.position_row(r.campaign, r.reviewer, r.result)
                for r in sorted(
                    [*selection.position, *selection.reviewers],
                    key=lambda r: (r.campaign, r.reviewer),
                )
            ],
        ),
        "length-table": (
            analysis_export.LENGTH_COLUMNS,
            [
                analysis_export.length_row(r.campaign, r.task_type, r.a, r.b, r.result)
                for r in selection.length
            ],
        ),
        "association-table": (
            analysis_export.ASSOCIATION_COLUMNS,
            [
                analysis_export.association_row(r.campaign, r.task_type, r.model, r.unit, r.result)
                for r in selection.association
            ],
        ),
    }
    return tables


def _analysis_csv(
    figures: list[charts.Chart],
    selection: analyses.Selection,
    wanted: str,
    campaign: Campaign | None,
) -> StreamingHttpResponse:
    tables = {chart.id: (chart.header, chart.rows) for chart in figures}
    tables.update(analysis_tables(selection))
    if wanted not in tables:
        raise Http404
    header, rows = tables[wanted]
    response = StreamingHttpResponse(csv_lines(header, rows), content_type="text/csv")
    name = f"{campaign.slug if campaign else 'results'}-bias-ranking-{wanted}.csv"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


@admin_required
@require_GET
def results_items(request: HttpRequest) -> HttpResponse:
    """Admins: the items behind one figure, each model's answer and every score it got."""
    task_type = get_object_or_404(TaskType, code=request.GET.get("task_type", ""))
    model = request.GET.get("model", "")
    reviewer = request.GET.get("reviewer", "")
    shown = drilldown.drill_down(
        task_type,
        campaigns=request.GET.getlist("campaign"),
        model=model,
        reviewer=reviewer,
        page_number=request.GET.get("page"),
    )
    query = request.GET.copy()
    query.pop("page", None)
    context = {
        "task_type": task_type,
        "model": model,
        "reviewer": reviewer,
        "page": shown.page,
        "entries": shown.items,
        "query": query.urlencode(),
    }
    return render(request, "grading/results_items.html", context)


# --- Judges (admins) -------------------------------------------------------------------------


def _judged_campaign(public_id: str) -> Campaign:
    campaigns = comparison.campaigns_queryset().prefetch_related("judges")
    return get_object_or_404(campaigns, public_id=public_id)


@admin_required
@require_GET
def campaign_judges(request: HtmxHttpRequest, public_id: str) -> HttpResponseBase:
    """Admins: the campaign's LLM judges next to its reviewers — each judge's own matchup table,
    its agreement with the people per task type and a chart; or one of their CSVs (`?csv=table`,
    `agreement` or `chart`, with `judge=<slug>`)."""
    campaign = _judged_campaign(public_id)
    prompt_version = request.GET.get("prompt_version", "")
    current = judge_stats.results(campaign, prompt_version=prompt_version)
    if current.stale and request.htmx and request.htmx.trigger == "freshness":
        return HttpResponse(status=204)  # the status line's poll: nothing new to show yet
    found = current.results
    wanted_csv = request.GET.get("csv")
    if wanted_csv:
        return _judge_csv(found, wanted_csv, request.GET.get("judge", ""))
    versions = sorted({v for r in found.reports for v in r.judge.prompt_versions})
    context = {
        "campaign": found.campaign,
        "judge_results": found,
        "excluded": exclusion.note([campaign], names=True),
        "freshness": current,
        "reports": list(
            zip(found.reports, charts.judge_charts(campaign, prompt_version, current), strict=True)
        ),
        "prompt_versions": versions,
        "prompt_version": prompt_version,
        "version_query": f"prompt_version={prompt_version}" if prompt_version else "",
        "min_items": comparison.MIN_ITEMS,
        "stand_in_alpha": judge_stats.STAND_IN_ALPHA,
    }
    return render_page(request, "grading/results_judges.html", context, fragments={"judges"})


def _judge_csv(found: judge_stats.JudgeResults, wanted: str, judge: str) -> StreamingHttpResponse:
    report = found.report(judge)
    if report is None:
        raise Http404
    tables = {
        "table": judge_stats.table_rows(report),
        "agreement": judge_stats.agreement_rows(report),
    }
    chart = charts.judge_scatter(report)
    tables["chart"] = (chart.header, chart.rows)
    if wanted not in tables:
        raise Http404
    header, rows = tables[wanted]
    response = StreamingHttpResponse(csv_lines(header, rows), content_type="text/csv")
    name = f"{found.campaign.slug}-judge-{judge}-{wanted}.csv"
    response["Content-Disposition"] = content_disposition_header(True, name)
    return response


@admin_required
@require_GET
def judge_disagreements(request: HttpRequest, public_id: str, judge: str) -> HttpResponse:
    """Admins: the answers where one judge and the people disagree most, with its rationale."""
    campaign = _judged_campaign(public_id)
    prompt_version = request.GET.get("prompt_version", "")
    found = judge_stats.results(campaign, prompt_version=prompt_version).results
    report = found.report(judge)
    if report is None:
        raise Http404("This campaign has no such judge.")
    context = {
        "campaign": found.campaign,
        "report": report,
        "prompt_version": prompt_version,
        "limit": judge_stats.DISAGREEMENTS,
    }
    return render(request, "grading/results_judge_disagreements.html", context)
