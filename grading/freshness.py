"""Results figures that never keep a page waiting once they exist.

A figure set is what one KIND of page computes for one scope (the same campaigns, the same
reviewer filter, the same sampling settings): the `comparison.Base` of the results pages
(`COMPARISON`), or the `analyses.Analyses` of the bias and ranking pages (`ANALYSES`). Its
cache entry (`Built`) remembers which data it was built from (`comparison.fingerprint` of the
campaigns' `stamps`) and when that data was read. A page asks `figures` and gets one of:

- the data has not changed since: the cached figures, fresh;
- it has (a new score, a finished generation): the cached figures all the same, marked stale
  with their time, and a rebuild of the scope in the background unless one is under way. The
  page polls until the figures are fresh again. The request never builds: a build takes about
  10 s at 300,000 scores, a warm page well under 300 ms (tests/benchmarks/bench_comparison.py);
- no figures of that scope at all (a first visit): built in the request, as before, except
  that a request finding another one building the same scope waits for its figures (up to
  `RESULTS_FIRST_BUILD_WAIT_S`) instead of building them a second time.

One build per scope at a time, across threads, web processes and Celery workers: a
`FigureBuild` row, unique per scope, is the lock. The database is what every process shares on
every setup, and its unique constraint is atomic on SQLite and PostgreSQL alike, where the file
cache's `add` is not atomic across processes. A claim expires (`RESULTS_BUILD_LOCK_S`), so a
crashed builder never blocks its scope for good; a failed build logs why and keeps its claim
for `RESULTS_BUILD_COOLDOWN_S`: the old figures stay on the page and the build is tried again
once per cool-down, not in a tight loop.

Where a rebuild runs: in a Celery worker (the task `gradebench.rebuild_results`), or in a
thread of the web process when no worker answers. Asking a worker (`grading.worker_ping`) takes
seconds, never affordable in a request, so the rebuild task is its own ping: the request
enqueues it and leaves a watcher thread; the task, once started, records in the cache that a
worker answers. If no worker has started it after `RESULTS_WORKER_START_S`, the watcher builds
in the web process and records that no worker answers, so that for `WORKER_MEMORY_S` the next
rebuilds start in a thread at once.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import ModuleType
from typing import Any

from celery import current_app
from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, connections, transaction
from django.utils import timezone

from inference.models import Campaign

from . import analyses, comparison
from .comparison import CampaignInfo
from .models import FigureBuild

logger = logging.getLogger(__name__)

REBUILD_RESULTS = "gradebench.rebuild_results"
"""The name of the task in `tasks.py` that runs `rebuild` (task names are a contract)."""
WORKER_KEY = "results-rebuild:worker"
"""In the cache: the host of the worker that last ran a rebuild, or "" if none took one."""
WORKER_MEMORY_S = 60
WAIT_STEP_S = 0.2
THREAD_NAME = "rebuild-results"
COMPARISON = "comparison"
ANALYSES = "analyses"
BUILDERS: dict[str, ModuleType] = {COMPARISON: comparison, ANALYSES: analyses}
"""Per kind of figure set: the module whose `build(infos, reviewer=...)` computes it."""


@dataclass(frozen=True)
class Built:
    """A cached figure set: the figures, the data they rest on, and when that data was read."""

    data: str
    as_of: datetime
    base: Any
    """A `comparison.Base` or an `analyses.Analyses`, by the kind of the scope."""


@dataclass(frozen=True)
class Figures:
    """What a page shows: the latest figures of its scope, and whether newer data exists."""

    base: Any
    as_of: datetime
    stale: bool
    """Newer data exists; a rebuild is under way (or waits for the end of a cool-down)."""


@dataclass(frozen=True)
class Scope:
    """Which figure set a page needs, and the data it should rest on."""

    infos: list[CampaignInfo]
    reviewer: str
    key: str
    """The same for the same campaigns, reviewer filter and sampling settings."""
    data: str
    """Changes with any score or generation of these campaigns."""
    read_at: datetime
    kind: str = COMPARISON

    @property
    def cache_key(self) -> str:
        return f"figures:{self.key}"

    @property
    def campaign_ids(self) -> list[int]:
        return [info.pk for info in self.infos]


def scope_of(
    campaigns: Sequence[Campaign], *, reviewer: str, scored_only: bool, kind: str = COMPARISON
) -> Scope:
    """The scope of these campaigns (those with a score, if `scored_only`) and its data now."""
    if kind not in BUILDERS:
        raise ValueError(f"unknown kind of figures {kind!r}")
    read_at = timezone.now()
    found = comparison.stamps([c.pk for c in campaigns])
    if scored_only:
        campaigns = [c for c in campaigns if c.pk in found and found[c.pk].scored]
    simulated = {pk for pk, stamp in found.items() if stamp.simulated}
    imported = {pk for pk, stamp in found.items() if stamp.imported}
    infos = comparison.campaign_infos(campaigns, simulated=simulated, imported=imported)
    pks = [info.pk for info in infos]
    parts: tuple[Any, ...] = (
        comparison.CACHE_VERSION,
        reviewer,
        [(i.pk, i.slug, i.models, i.params) for i in infos],
    )
    if kind != COMPARISON:  # the results pages' keys stay as they were
        parts = (*parts, kind, analyses.CACHE_VERSION)
    key = hashlib.sha256(repr(parts).encode()).hexdigest()[:32]
    data = comparison.fingerprint(found, pks, reviewer)
    return Scope(infos, reviewer, key, data, read_at, kind)


def figures(
    campaigns: Sequence[Campaign],
    *,
    reviewer: str = "",
    scored_only: bool = False,
    kind: str = COMPARISON,
) -> Figures:
    """The latest figures of these campaigns, fresh or marked stale (see the module doc).

    `scored_only` leaves out the campaigns without a score (the overview); `kind` is the kind
    of figure set (`COMPARISON` or `ANALYSES`).
    """
    scope = scope_of(campaigns, reviewer=reviewer, scored_only=scored_only, kind=kind)
    built: Built | None = cache.get(scope.cache_key)
    if built is None:
        built = _first_build(scope)
    stale = built.data != scope.data
    if stale:
        refresh(scope)
    return Figures(built.base, built.as_of, stale)


# --- The lock --------------------------------------------------------------------------------


def claim(key: str) -> str | None:
    """Take the build of scope `key` unless someone holds it; return the claim's token."""
    now = timezone.now()
    if FigureBuild.objects.filter(key=key, expires_at__gt=now).exists():
        return None
    token = secrets.token_hex(8)
    fields = {
        "token": token,
        "claimed_at": now,
        "started_at": None,
        "expires_at": now + timedelta(seconds=settings.RESULTS_BUILD_LOCK_S),
        "error": "",
    }
    # An expired claim (a crashed builder's, or a failure's cool-down) is taken over; the
    # condition is evaluated on the locked row, so of two takers one moves it.
    if FigureBuild.objects.filter(key=key, expires_at__lte=now).update(**fields):
        return token
    try:
        with transaction.atomic():
            FigureBuild.objects.create(key=key, **fields)
    except IntegrityError:
        return None
    return token


def _start(key: str, token: str) -> bool:
    """The one builder of a claim: whoever moves it to started (a worker or the web process)."""
    now = timezone.now()
    expires = now + timedelta(seconds=settings.RESULTS_BUILD_LOCK_S)
    started = FigureBuild.objects.filter(key=key, token=token, started_at__isnull=True).update(
        started_at=now, expires_at=expires
    )
    return started == 1


def _release(key: str, token: str) -> None:
    FigureBuild.objects.filter(key=key, token=token).delete()


def _cool_down(key: str, token: str, error: BaseException) -> None:
    """Keep a failed build's claim until the cool-down ends: no retry before that."""
    FigureBuild.objects.filter(key=key, token=token).update(
        expires_at=timezone.now() + timedelta(seconds=settings.RESULTS_BUILD_COOLDOWN_S),
        error=f"{type(error).__name__}: {error}"[:2000],
    )


def _failed(key: str) -> bool:
    return FigureBuild.objects.filter(key=key).exclude(error="").exists()


# --- Building --------------------------------------------------------------------------------


def _build(scope: Scope) -> tuple[Built, bool]:
    """Build and cache the scope's figures, with its claim held; False if they were current."""
    cached: Built | None = cache.get(scope.cache_key)
    if cached is not None and cached.data == scope.data:
        return cached, False
    base = BUILDERS[scope.kind].build(scope.infos, reviewer=scope.reviewer)
    built = Built(scope.data, scope.read_at, base)
    cache.set(scope.cache_key, built, comparison.CACHE_TIMEOUT_S)
    return built, True


def _first_build(scope: Scope) -> Built:
    """Figures of a scope that has none yet: built here, or awaited from whoever builds them."""
    deadline = time.monotonic() + settings.RESULTS_FIRST_BUILD_WAIT_S
    token = claim(scope.key)
    while token is None:
        built: Built | None = cache.get(scope.cache_key)
        if built is not None:
            return built
        if _failed(scope.key) or time.monotonic() > deadline:
            # Nobody is about to deliver: build regardless, as the page always did.
            logger.warning("results built without the claim", extra={"key": scope.key})
            return _build(scope)[0]
        time.sleep(WAIT_STEP_S)
        token = claim(scope.key)
    _start(scope.key, token)
    try:
        built, _ = _build(scope)
    except Exception as error:
        logger.exception("results build failed", extra={"key": scope.key})
        _cool_down(scope.key, token, error)
        raise
    _release(scope.key, token)
    return built


def rebuild(
    campaign_ids: Sequence[int],
    reviewer: str,
    key: str,
    token: str,
    *,
    runner: str,
    kind: str = COMPARISON,
) -> str:
    """Build a scope's figures under a claim made by `refresh` (the task's and the thread's work).

    Returns "built"; "current" when they were fresh already; "skipped" when another runner
    started this claim; "changed" when the campaigns no longer make this scope; "failed".
    """
    if not _start(key, token):
        return "skipped"
    if runner == "worker":
        cache.set(WORKER_KEY, socket.gethostname(), WORKER_MEMORY_S)
    began = time.perf_counter()
    try:
        found = {c.pk: c for c in comparison.campaigns_queryset().filter(pk__in=campaign_ids)}
        campaigns = [found[pk] for pk in campaign_ids if pk in found]
        scope = scope_of(campaigns, reviewer=reviewer, scored_only=False, kind=kind)
        if scope.key == key:
            _, built = _build(scope)
            outcome = "built" if built else "current"
        else:
            outcome = "changed"  # deleted campaigns or new settings: another figure set
    except Exception as error:
        logger.exception(
            "results rebuild failed; the previous figures stay",
            extra={"key": key, "runner": runner},
        )
        _cool_down(key, token, error)
        return "failed"
    _release(key, token)
    logger.info(
        "results rebuilt",
        extra={
            "key": key,
            "runner": runner,
            "outcome": outcome,
            "seconds": round(time.perf_counter() - began, 3),
        },
    )
    return outcome


# --- Dispatch --------------------------------------------------------------------------------


def refresh(scope: Scope) -> None:
    """Start rebuilding the scope in the background, unless a build of it is under way."""
    token = claim(scope.key)
    if token is None:
        return
    args = (scope.campaign_ids, scope.reviewer, scope.key, token)
    kind = scope.kind
    if cache.get(WORKER_KEY) == "":
        transaction.on_commit(lambda: _watch(*args, wait_s=0.0, kind=kind))
    else:
        transaction.on_commit(lambda: _enqueue(*args, kind=kind))


def _enqueue(
    campaign_ids: list[int], reviewer: str, key: str, token: str, *, kind: str = COMPARISON
) -> None:
    wait_s = float(settings.RESULTS_WORKER_START_S)
    try:
        # By name: the task module imports this one, so this one does not import it back.
        current_app.send_task(
            REBUILD_RESULTS,
            args=(campaign_ids, reviewer, key, token),
            kwargs={"kind": kind} if kind != COMPARISON else {},
            queue=settings.CELERY_TASK_DEFAULT_QUEUE,
            expires=settings.RESULTS_BUILD_LOCK_S,
            ignore_result=True,
        )
    except Exception:
        logger.warning("broker unavailable; rebuilding results here", exc_info=True)
        wait_s = 0.0
    _watch(campaign_ids, reviewer, key, token, wait_s=wait_s, kind=kind)


def _watch(
    campaign_ids: list[int],
    reviewer: str,
    key: str,
    token: str,
    *,
    wait_s: float,
    kind: str = COMPARISON,
) -> None:
    """In a thread: give a worker `wait_s` to start the claim, then build here if none did."""

    def run() -> None:
        try:
            deadline = time.monotonic() + wait_s
            waiting = FigureBuild.objects.filter(key=key, token=token, started_at__isnull=True)
            while time.monotonic() < deadline:
                if not waiting.exists():
                    return  # a worker started it
                time.sleep(WAIT_STEP_S)
            outcome = rebuild(campaign_ids, reviewer, key, token, runner="thread", kind=kind)
            if wait_s and outcome != "skipped":
                cache.set(WORKER_KEY, "", WORKER_MEMORY_S)
        except Exception:
            logger.exception("results rebuild thread failed", extra={"key": key})
        finally:
            connections.close_all()

    threading.Thread(target=run, name=f"{THREAD_NAME}-{key[:8]}", daemon=True).start()
