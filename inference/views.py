"""Admin pages of the model side: browse task items, view their images, import fixtures."""

from __future__ import annotations

import secrets
import shutil
import time
from pathlib import Path

from django.conf import settings
from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import Count
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import urlencode
from django.views.decorators.http import require_GET, require_http_methods

from . import dispatch, progress
from .access import HtmxHttpRequest, admin_required
from .fixture_formats import FixtureError
from .importer import import_fixture
from .models import (
    Campaign,
    Generation,
    Suite,
    TaskImage,
    TaskItem,
    TaskType,
)
from .pages import HttpResponseClientRedirect, render_page

UPLOAD_SUFFIXES = (".json", ".jsonl", ".csv", ".zip")
MAX_UPLOAD_BYTES = 200 * 1024 * 1024
UPLOAD_TTL_S = 24 * 3600
PREVIEW_ROWS = 10
SESSION_KEY = "pending-imports"


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


def _upload_dir() -> Path:
    folder = Path(settings.VAR_DIR) / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _forget_stale_uploads(folder: Path) -> None:
    cutoff = time.time() - UPLOAD_TTL_S
    for path in folder.iterdir():
        if path.stat().st_mtime < cutoff:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


@admin_required
@require_http_methods(["GET", "POST"])
def import_items(request: HtmxHttpRequest) -> HttpResponse:
    """Upload a fixture, preview it as a dry run, then confirm.

    The uploaded file waits in var/uploads under a random token that only this admin's session
    knows, so confirming imports exactly what was previewed.
    """
    context: dict[str, object] = {"suites": Suite.objects.order_by("name")}
    if request.method == "GET":
        return render(request, "inference/import.html", context)

    pending: dict[str, dict[str, str]] = request.session.get(SESSION_KEY, {})
    if "confirm" in request.POST:
        token = request.POST.get("token", "")
        upload = pending.pop(token, None)
        request.session[SESSION_KEY] = pending
        if upload is None or not Path(upload["path"]).exists():
            context["errors"] = [
                "This preview has expired or was already imported; upload the file again."
            ]
            return render_page(request, "inference/import.html", context, fragments={"result"})
        path = Path(upload["path"])
        try:
            report = import_fixture(path, suite=upload["suite"] or None)
        except FixtureError as error:
            context["errors"] = error.problems
            return render_page(request, "inference/import.html", context, fragments={"result"})
        finally:
            shutil.rmtree(path.parent, ignore_errors=True)
        messages.success(request, f"Suite {report.suite}: {report.summary()}.")
        url = f"{reverse('items')}?{urlencode({'suite': report.suite})}"
        if request.htmx:
            return HttpResponseClientRedirect(url)
        return redirect(url)

    uploaded = request.FILES.get("file")
    suite = request.POST.get("suite", "").strip()
    context["suite"] = suite
    if uploaded is None:
        context["errors"] = ["Choose a .json, .jsonl, .csv or .zip file to import."]
        return render_page(request, "inference/import.html", context, fragments={"result"})
    name = Path(uploaded.name or "upload").name
    if not name.lower().endswith(UPLOAD_SUFFIXES):
        context["errors"] = [f"{name}: expected a .json, .jsonl, .csv or .zip file."]
        return render_page(request, "inference/import.html", context, fragments={"result"})
    if uploaded.size and uploaded.size > MAX_UPLOAD_BYTES:
        context["errors"] = [f"{name}: larger than {MAX_UPLOAD_BYTES // 1024**2} MB."]
        return render_page(request, "inference/import.html", context, fragments={"result"})

    folder = _upload_dir()
    _forget_stale_uploads(folder)
    token = secrets.token_urlsafe(16)
    target_dir = folder / token
    target_dir.mkdir()
    path = target_dir / name
    with path.open("wb") as handle:
        for chunk in uploaded.chunks():
            handle.write(chunk)
    try:
        report = import_fixture(path, suite=suite or None, dry_run=True, preview_rows=PREVIEW_ROWS)
    except FixtureError as error:
        shutil.rmtree(target_dir, ignore_errors=True)
        context["errors"] = error.problems
        context["filename"] = name
        return render_page(request, "inference/import.html", context, fragments={"result"})
    pending[token] = {"path": str(path), "suite": suite}
    request.session[SESSION_KEY] = pending
    context.update({"report": report, "token": token, "filename": name})
    return render_page(request, "inference/import.html", context, fragments={"result"})


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
    """The run page: progress per model, rate, ETA, recent errors; launch, cancel, retry."""
    campaign = get_object_or_404(Campaign.objects.select_related("suite"), public_id=public_id)
    if request.method == "POST":
        if "launch" in request.POST:
            created = dispatch.launch(campaign)
            messages.success(request, f"Launched: {created} new generations.")
        elif "cancel" in request.POST:
            messages.success(request, f"Cancelled {dispatch.cancel(campaign)} generations.")
        elif "retry" in request.POST:
            messages.success(
                request, f"Queued {dispatch.retry_failed(campaign)} generations again."
            )
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
