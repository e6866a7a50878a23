"""The reproducibility record of a generation (DESIGN §12), beside the request stored as sent.

Per generation: the model name the server reported, its `system_fingerprint` when it sent one,
the server's version where the server exposes one, and gradebench's version.

Servers say what they are in different places, so the probe asks, in this order, and keeps the
first answer: vLLM's `GET /version` (`{"version": "0.8.5"}`); llama.cpp's `GET /props`
(`build_info`, recorded as `llama.cpp b5000-…`); and a FastAPI server's `GET /openapi.json`
(`info.title` and `info.version`, e.g. llama-cpp-python's `🦙 llama.cpp Python API 0.3.36`;
FastAPI's untitled default, which is what FastDeploy serves, says nothing and is skipped).
FastDeploy has no version route, so its servers are recorded with an empty version. The paths
are taken from the server's root: the base URL without its trailing `/v1`.

The probe runs once per campaign × endpoint and run, from the worker, after the generation's
own request (so its timings never include it): the answer is kept on the campaign's
`CampaignModel`, and a probe older than the campaign's launch or than `PROBE_MAX_AGE` is made
again (a run started again later re-probes; a server upgraded during a long run is noticed).
Threads of one process wait for one probe instead of sending their own; processes store theirs
with a compare-and-set update, so the worst case is one probe per worker process. A server that
cannot be reached records an empty version and is probed again with its next generation.
An endpoint that is not one of the campaign's models (a judge) has no `CampaignModel` to keep
the answer on: each worker process keeps it in memory for `PROBE_MAX_AGE`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import httpx2 as httpx
from django.db.models import Prefetch, QuerySet
from django.utils import timezone

from .models import CampaignModel, TaskItem, TaskItemImage
from .version import gradebench_version

logger = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 3.0
PROBE_MAX_AGE = timedelta(hours=1)
MAX_FIELD = 200  # the record's CharFields


# --- Probing a server ------------------------------------------------------------------------


def server_root(base_url: str) -> str:
    """The server's root URL: the base URL without a trailing `/v1` (or slash)."""
    root = base_url.rstrip("/")
    return root[: -len("/v1")] if root.endswith("/v1") else root


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def _from_version(body: Any) -> str:
    return _text(body.get("version")) if isinstance(body, dict) else ""


def _from_props(body: Any) -> str:
    build = _text(body.get("build_info")) if isinstance(body, dict) else ""
    return f"llama.cpp {build}" if build else ""


def _from_openapi(body: Any) -> str:
    info = body.get("info") if isinstance(body, dict) else None
    if not isinstance(info, dict):
        return ""
    title, version = _text(info.get("title")), _text(info.get("version"))
    if not title or not version or title == "FastAPI":
        return ""
    return f"{title} {version}"


PROBES: tuple[tuple[str, Callable[[Any], str]], ...] = (
    ("/version", _from_version),
    ("/props", _from_props),
    ("/openapi.json", _from_openapi),
)


def _probe(base_url: str, api_key: str, timeout: float) -> str | None:
    """The server's version, "" when it exposes none, None when it could not be reached."""
    root = server_root(base_url)
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        with httpx.Client(timeout=timeout, headers=headers) as client:
            for path, read in PROBES:
                try:
                    response = client.get(root + path)
                except httpx.TransportError:
                    return None
                if response.status_code != 200:
                    continue
                try:
                    version = read(response.json())
                except ValueError:
                    continue
                if version:
                    return version[:MAX_FIELD]
    except Exception:  # a malformed URL, anything else: a record is never worth a failure
        logger.warning("server version probe failed", extra={"base_url": base_url}, exc_info=True)
        return None
    return ""


def probe_server_version(base_url: str, api_key: str = "", timeout: float = PROBE_TIMEOUT_S) -> str:
    """Ask the server at `base_url` for its version; "" when it exposes none or is unreachable.

    Never raises. See the module docstring for what is asked and how answers are written.
    """
    return _probe(base_url, api_key, timeout) or ""


# --- Once per campaign × endpoint and run ------------------------------------------------------

_probe_locks: dict[int, threading.Lock] = {}
_probe_locks_guard = threading.Lock()
_unlisted: dict[str, tuple[str, datetime]] = {}
"""Per base URL: the version of a server probed for an endpoint outside the campaign's models."""
_unlisted_lock = threading.Lock()


def _lock_for(member_id: int) -> threading.Lock:
    with _probe_locks_guard:
        return _probe_locks.setdefault(member_id, threading.Lock())


def _member(campaign_id: int, endpoint_id: int) -> dict[str, Any] | None:
    row = (
        CampaignModel.objects.filter(campaign_id=campaign_id, endpoint_id=endpoint_id)
        .values("pk", "server_version", "server_probed_at", "campaign__launched_at")
        .first()
    )
    return dict(row) if row is not None else None


def _is_current(member: dict[str, Any], now: datetime) -> bool:
    return _probe_is_current(member["server_probed_at"], member["campaign__launched_at"], now)


def _probe_is_current(
    probed_at: datetime | None, launched_at: datetime | None, now: datetime
) -> bool:
    """A probe answers for this run: made since the campaign's launch and within the hour."""
    if probed_at is None or probed_at < now - PROBE_MAX_AGE:
        return False
    return launched_at is None or probed_at >= launched_at


def server_version_for(
    campaign_id: int,
    endpoint_id: int,
    base_url: str,
    api_key: str = "",
    known: CampaignModel | None = None,
) -> str:
    """The version of the campaign's server for this endpoint, probed at most once per run.

    `known` is the campaign's `CampaignModel` of this endpoint as the caller loaded it (with
    its campaign) before the generation's request: when its probe is current it is the answer,
    without a query; otherwise the database says.
    """
    if known is not None and known.campaign_id == campaign_id and known.endpoint_id == endpoint_id:
        launched_at = known.campaign.launched_at
        if _probe_is_current(known.server_probed_at, launched_at, timezone.now()):
            return str(known.server_version)
    member = _member(campaign_id, endpoint_id)
    if member is None:  # a judge, or a model that left the campaign after launch
        return _unlisted_version(base_url, api_key)
    if _is_current(member, timezone.now()):
        return str(member["server_version"])
    with _lock_for(member["pk"]):
        member = _member(campaign_id, endpoint_id)  # another thread may have probed meanwhile
        if member is None:
            return _unlisted_version(base_url, api_key)
        if _is_current(member, timezone.now()):
            return str(member["server_version"])
        version = _probe(base_url, api_key, PROBE_TIMEOUT_S)
        if version is None:
            return ""  # unreachable: no answer to keep, ask again next time
        # Compare-and-set: only the first process to probe this run writes its answer.
        CampaignModel.objects.filter(
            pk=member["pk"], server_probed_at=member["server_probed_at"]
        ).update(server_version=version, server_probed_at=timezone.now())
        return version


def _unlisted_version(base_url: str, api_key: str) -> str:
    """The version of a server that is none of the campaign's models, probed once per process
    and `PROBE_MAX_AGE` (one lock for all: such probes are rare)."""
    with _unlisted_lock:
        known = _unlisted.get(base_url)
        if known is not None and known[1] >= timezone.now() - PROBE_MAX_AGE:
            return known[0]
        version = _probe(base_url, api_key, PROBE_TIMEOUT_S)
        if version is None:
            return ""  # unreachable: ask again next time
        _unlisted[base_url] = (version, timezone.now())
        return version


# --- A generation's record -------------------------------------------------------------------


def generation_record(result: Any, server_version: str) -> dict[str, str]:
    """The record fields of a finished (or partly answered) generation, for `Generation`.

    `result` is the client's `StreamResult`, or None when no response arrived.
    """
    return {
        "served_model": str(getattr(result, "served_model", "") or "")[:MAX_FIELD],
        "system_fingerprint": str(getattr(result, "system_fingerprint", "") or "")[:MAX_FIELD],
        "server_version": server_version[:MAX_FIELD],
        "gradebench_version": gradebench_version(),
    }


# --- A suite's content -------------------------------------------------------------------------


def suite_content_hash(items: QuerySet[TaskItem]) -> str:
    """sha256 of the items' canonical JSON, ordered by external id (DESIGN §12).

    Each item is `{"id", "task_type" (code), "prompt", "system", "reference", "tags",
    "images" (sha256 of each original, in order)}`; the list is serialised with sorted keys, no
    whitespace and UTF-8 text (`ensure_ascii=False`). Any change to what a model or a reviewer
    is shown changes the hash; the database's own ids and timestamps do not.
    """
    images = TaskItemImage.objects.select_related("image").only("item", "position", "image__sha256")
    entries = [
        {
            "id": item.external_id,
            "task_type": item.task_type.code,
            "prompt": item.prompt,
            "system": item.system,
            "reference": item.reference,
            "tags": list(item.tags or []),
            "images": [link.image.sha256 for link in item.item_images.all()],
        }
        for item in items.select_related("task_type")
        .prefetch_related(Prefetch("item_images", queryset=images.order_by("position")))
        .order_by("external_id")
    ]
    canonical = json.dumps(entries, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
