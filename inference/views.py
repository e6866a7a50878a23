"""Admin pages of the model side: browse task items, view their images, import fixtures."""

from __future__ import annotations

from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import Count
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import urlencode
from django.views.decorators.http import require_GET, require_http_methods

from . import dispatch, progress, uploads
from .access import HtmxHttpRequest, admin_required
from .fixture_formats import FixtureError
from .generations_import import MAX_TEXT_CHARS, REQUIRED_COLUMNS, GenerationImportError
from .models import (
    Campaign,
    Generation,
    ModelEndpoint,
    Suite,
    TaskImage,
    TaskItem,
    TaskType,
)
from .pages import HttpResponseClientRedirect, render_page


@admin_required
@require_GET
def items(request: HtmxHttpRequest) -> HttpResponse:
    """Task items, filtered by suite and task type; htmx requests get just the results."""
    suite = request.GET.get("suite", "")
    task_type = request.GET.get("task_type", "")
    query = TaskItem.objects.select_related("suite", "task_type")
    query = query.annotate(image_count=Count("item_images"))
    if suite:
        query = query.filter(suite__name=suite)
    if task_type:
        query = query.filter(task_type__code=task_type)
    query = query.order_by("suite__name", "task_type__position", "external_id")
    page = Paginator(query, 50).get_page(request.GET.get("page"))
    context = {
        "page": page,
        "suites": Suite.objects.annotate(n=Count("items")).order_by("name"),
        "task_types": TaskType.objects.all(),
        "selected_suite": suite,
        "selected_type": task_type,
        "filter_query": urlencode(
            {k: v for k, v in (("suite", suite), ("task_type", task_type)) if v}
        ),
    }
    return render_page(request, "inference/items.html", context, fragments={"results"})


@admin_required
@require_GET
def item_detail(request: HttpRequest, public_id: str) -> HttpResponse:
    item = get_object_or_404(
        TaskItem.objects.select_related("suite", "task_type").with_images(), public_id=public_id
    )
    return render(request, "inference/item_detail.html", {"item": item})


@admin_required
@require_GET
def image(request: HttpRequest, public_id: str, variant: str = "full") -> HttpResponse:
    """An image's bytes: what models receive (`full`) or the thumbnail (`thumb`)."""
    fields = {"full": ("normalised", "original", "mime"), "thumb": ("thumbnail",)}
    if variant not in fields:
        raise Http404
    stored = get_object_or_404(TaskImage.objects.only(*fields[variant]), public_id=public_id)
    if variant == "thumb":
        response = HttpResponse(bytes(stored.thumbnail), content_type="image/webp")
    else:
        response = HttpResponse(stored.payload, content_type=stored.mime)
    # Content never changes for an id: images are stored once per hash.
    response["Cache-Control"] = "private, max-age=86400, immutable"
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "default-src 'none'"
    return response


@admin_required
@require_http_methods(["GET", "POST"])
def import_items(request: HtmxHttpRequest) -> HttpResponse:
    """Upload a fixture, preview it as a dry run, then confirm (see `inference.uploads`)."""
    context: dict[str, object] = {"suites": Suite.objects.order_by("name")}
    if request.method == "GET":
        return render(request, "inference/import.html", context)
    if "confirm" in request.POST:
        return _confirm_import(request, context)
    suite = request.POST.get("suite", "").strip()
    context["suite"] = suite
    try:
        upload = uploads.keep(request.FILES.get("file"), suite=suite)
        context["filename"] = upload.filename
        context["report"] = uploads.preview(upload)
    except FixtureError as error:
        context["errors"] = error.problems
    else:
        uploads.remember(request.session, upload)
        context["token"] = upload.token
    return render_page(request, "inference/import.html", context, fragments={"result"})


def _confirm_import(request: HtmxHttpRequest, context: dict[str, object]) -> HttpResponse:
    upload = uploads.take(request.session, request.POST.get("token", ""))
    if upload is None:
        context["errors"] = [uploads.EXPIRED]
        return render_page(request, "inference/import.html", context, fragments={"result"})
    try:
        report = uploads.import_upload(upload)
    except FixtureError as error:
        context["errors"] = error.problems
        return render_page(request, "inference/import.html", context, fragments={"result"})
    messages.success(request, f"Suite {report.suite}: {report.summary()}.")
    url = f"{reverse('items')}?{urlencode({'suite': report.suite})}"
    if request.htmx:
        return HttpResponseClientRedirect(url)
    return redirect(url)


@admin_required
@require_http_methods(["GET", "POST"])
def import_answers(request: HtmxHttpRequest) -> HttpResponse:
    """Upload answers produced elsewhere, preview them as a dry run, then confirm (DESIGN §4.4a;
    see `inference.uploads` and `inference.generations_import`)."""
    context: dict[str, object] = {
        "suites": Suite.objects.order_by("name"),
        "required": ", ".join(REQUIRED_COLUMNS),
        "max_chars": MAX_TEXT_CHARS,
    }
    if request.method == "GET":
        return render(request, "inference/import_answers.html", context)
    if "confirm" in request.POST:
        return _confirm_answers(request, context)
    suite = request.POST.get("suite", "").strip()
    context["suite"] = suite
    try:
        upload = uploads.keep(
            request.FILES.get("file"), suite=suite, suffixes=uploads.ANSWER_SUFFIXES
        )
        context["filename"] = upload.filename
        context["report"] = uploads.preview_answers(upload)
    except (FixtureError, GenerationImportError) as error:
        context["errors"] = error.problems
    else:
        uploads.remember(request.session, upload, uploads.ANSWERS)
        context["token"] = upload.token
    return render_page(request, "inference/import_answers.html", context, fragments={"result"})


def _confirm_answers(request: HtmxHttpRequest, context: dict[str, object]) -> HttpResponse:
    upload = uploads.take(request.session, request.POST.get("token", ""), uploads.ANSWERS)
    if upload is None:
        context["errors"] = [uploads.EXPIRED]
        return render_page(request, "inference/import_answers.html", context, fragments={"result"})
    try:
        report = uploads.import_answers(upload)
    except GenerationImportError as error:
        context["errors"] = error.problems
        return render_page(request, "inference/import_answers.html", context, fragments={"result"})
    messages.success(request, f"Answers from {upload.filename}: {report.summary()}.")
    url = reverse("campaigns")
    if request.htmx:
        return HttpResponseClientRedirect(url)
    return redirect(url)


# --- Campaign runs ---------------------------------------------------------------------------


@admin_required
@require_GET
def campaigns(request: HttpRequest) -> HttpResponse:
    """Every campaign with its run status, from one aggregate query."""
    rows = Campaign.objects.select_related("suite").with_run_counts().order_by("slug")
    return render(request, "inference/campaigns.html", {"campaigns": rows})


@admin_required
@require_http_methods(["GET", "POST"])
def campaign_run(request: HtmxHttpRequest, public_id: str) -> HttpResponse:
    """The run page: progress per model and per judge, rate, ETA, recent errors; launch, and
    cancel or retry the generations and judgements."""
    campaign = get_object_or_404(Campaign.objects.select_related("suite"), public_id=public_id)
    if request.method == "POST":
        external = list(
            campaign.members.filter(endpoint__in=ModelEndpoint.objects.external())
            .order_by("position")
            .values_list("endpoint__slug", flat=True)
        )
        if external and ("launch" in request.POST or "retry" in request.POST):
            messages.warning(
                request,
                f"Skipped external models ({', '.join(external)}): their answers were "
                "imported, and gradebench never calls them.",
            )
        if "launch" in request.POST:
            if external and len(external) == campaign.members.count():
                messages.error(request, "Nothing to launch: every model here is external.")
            else:
                created = dispatch.launch(campaign)
                messages.success(request, f"Launched: {created} new generations.")
        elif "cancel" in request.POST:
            cancelled = dispatch.cancel(campaign)
            messages.success(request, f"Cancelled {cancelled} generations and judgements.")
        elif "retry" in request.POST:
            queued = dispatch.retry_failed(campaign)
            messages.success(request, f"Queued {queued} generations and judgements again.")
        return redirect("campaign-run", public_id=campaign.public_id)
    context = progress.run_progress(campaign)
    return render_page(request, "inference/campaign_run.html", context, fragments={"progress"})


@admin_required
@require_GET
def generation_detail(request: HttpRequest, public_id: str) -> HttpResponse:
    generation = get_object_or_404(
        Generation.objects.select_related("campaign", "endpoint", "item__task_type"),
        public_id=public_id,
    )
    return render(request, "inference/generation_detail.html", {"g": generation})
