"""Launching campaigns and handing generations to workers, at most `max_concurrency` per endpoint.

The limit holds across every worker process on every machine because it is kept in the
database: a generation is claimed (queued → running, with a lease) inside a transaction that
locks its endpoint's row, after counting the endpoint's live leases. Only as many messages as an
endpoint has free slots are ever enqueued, so a slow or saturated server never fills the queue
in front of the others. A worker renews the leases of what it is running; when a worker dies its
leases run out, `recover_expired` queues those generations again, and the claim token makes sure
a late answer from a presumed-dead worker is never stored twice.

A worker that is asked to stop (Celery's warm shutdown: SIGTERM, or the first Ctrl-C) sets
`stopping`: it claims and enqueues nothing more, and hands every generation it runs back to the
queue at once, as if never started, instead of waiting for answers that may take minutes. Their
streams are abandoned at their next chunk; the next worker to start (or another worker's sweep)
takes them up again.
"""

from __future__ import annotations

import logging
import secrets
import socket
import threading
import time
from collections.abc import Iterable
from datetime import datetime, timedelta

from celery import current_app
from django.conf import settings
from django.db import close_old_connections, connection, transaction
from django.db.models import Count, Q
from django.utils import timezone

from .models import (
    Campaign,
    CampaignStatus,
    Generation,
    GenerationStatus,
    ModelEndpoint,
    TaskItem,
)

logger = logging.getLogger(__name__)
HOSTNAME = socket.gethostname()
RUN_GENERATION = "inference.run_generation"
"""The name of the task in `tasks.py` that runs a generation (task names are a contract)."""


# --- Launching -------------------------------------------------------------------------------


def campaign_items(campaign: Campaign) -> Iterable[TaskItem]:
    items = TaskItem.objects.filter(suite=campaign.suite).select_related("task_type")
    task_types = list(campaign.task_types.values_list("pk", flat=True))
    if task_types:
        items = items.filter(task_type__in=task_types)
    return items.order_by("task_type__position", "external_id")


def launch(campaign: Campaign) -> int:
    """Create the campaign's generations (each exactly once) and start dispatching them.

    Launching again creates only what is missing (new items or models) and restarts dispatch.
    External models (answers imported from a file, no base URL) are never called: skipped.
    Returns the number of generations created.
    """
    everyone = list(campaign.members.select_related("endpoint"))
    members = [member for member in everyone if not member.endpoint.is_external]
    if everyone and not members:
        return 0  # only external models: nothing to call, and the campaign stays as it is
    items = list(campaign_items(campaign))
    rows = [
        Generation(campaign=campaign, item=item, endpoint=member.endpoint, sample=sample)
        for member in members
        for item in items
        if member.endpoint.vision
        or not item.task_type.is_vision
        or campaign.vision_items_to_text_models
        for sample in range(campaign.samples)
    ]
    with transaction.atomic():
        before = campaign.generations.count()
        Generation.objects.bulk_create(rows, batch_size=500, ignore_conflicts=True)
        created = campaign.generations.count() - before
        Campaign.objects.filter(pk=campaign.pk).update(
            status=CampaignStatus.RUNNING, launched_at=campaign.launched_at or timezone.now()
        )
        endpoint_ids = [member.endpoint_id for member in members]
        transaction.on_commit(lambda: pump(endpoint_ids))
    campaign.refresh_from_db()
    return created


def cancel(campaign: Campaign) -> int:
    """Cancel what has not finished; running requests stop at their next chunk."""
    with transaction.atomic():
        count = campaign.generations.in_flight().update(
            status=GenerationStatus.CANCELLED,
            error="cancelled by an admin",
            finished_at=timezone.now(),
            lease_expires_at=None,
        )
        Campaign.objects.filter(pk=campaign.pk).update(status=CampaignStatus.CANCELLED)
    return count


def retry_failed(campaign: Campaign) -> int:
    """Queue failed (and cancelled) generations again; their previous error is kept until then."""
    with transaction.atomic():
        # External models (answers imported from a file) have nothing to call: left as they are.
        retryable = campaign.generations.retryable().exclude(
            endpoint__in=ModelEndpoint.objects.external()
        )
        count = retryable.update(
            status=GenerationStatus.QUEUED,
            enqueued_at=None,
            claim_token="",
            lease_expires_at=None,
            finished_at=None,
        )
        if count:
            Campaign.objects.filter(pk=campaign.pk).update(status=CampaignStatus.RUNNING)
            endpoint_ids = list(campaign.members.values_list("endpoint_id", flat=True))
            transaction.on_commit(lambda: pump(endpoint_ids))
    return count


# --- Slots -----------------------------------------------------------------------------------


def _live_running(endpoint_id: int, now: object) -> int:
    return Generation.objects.filter(
        endpoint_id=endpoint_id, status=GenerationStatus.RUNNING, lease_expires_at__gt=now
    ).count()


def pump(endpoint_ids: Iterable[int]) -> int:
    """Enqueue queued generations into each endpoint's free slots; returns how many.

    A stopping worker enqueues nothing: what it hands back is left to the next sweep (its own
    tasks finishing all at once would otherwise fill the queue for a worker that is not there).
    """
    if stopping.is_set():
        return 0
    total = 0
    for endpoint_id in set(endpoint_ids):
        now = timezone.now()
        stale = now - timedelta(seconds=settings.GENERATION_REQUEUE_S)
        with transaction.atomic():
            endpoint = ModelEndpoint.objects.select_for_update().filter(pk=endpoint_id).first()
            if endpoint is None:
                continue
            waiting = Generation.objects.filter(
                endpoint_id=endpoint_id, status=GenerationStatus.QUEUED
            )
            in_queue = waiting.filter(enqueued_at__gt=stale).count()
            free = endpoint.max_concurrency - _live_running(endpoint_id, now) - in_queue
            if free <= 0:
                continue
            ids = list(
                waiting.filter(Q(enqueued_at__isnull=True) | Q(enqueued_at__lte=stale))
                .order_by("pk")
                .values_list("pk", flat=True)[:free]
            )
            if not ids:
                continue
            Generation.objects.filter(pk__in=ids).update(enqueued_at=now)
            transaction.on_commit(lambda ids=ids: _enqueue(ids))  # type: ignore[misc]
            total += len(ids)
    return total


def _enqueue(ids: list[int]) -> None:
    # The queue is read at call time so a deployment (or a test) can point it elsewhere.
    queue = settings.CELERY_TASK_DEFAULT_QUEUE
    for position, pk in enumerate(ids):
        try:
            # By name: the task module imports this one, so this one does not import it back.
            current_app.send_task(RUN_GENERATION, args=(pk,), queue=queue, ignore_result=True)
        except Exception:
            # The broker is away (restarting, unreachable): leave these for the next sweep.
            logger.warning("broker unavailable; will enqueue later", exc_info=True)
            Generation.objects.filter(pk__in=ids[position:], status=GenerationStatus.QUEUED).update(
                enqueued_at=None
            )
            return


def claim(generation_id: int) -> Generation | None:
    """Take a queued generation if its endpoint has a free slot; None if not ours to run."""
    if stopping.is_set():
        # Leave it to the next worker; clearing enqueued_at makes its first sweep enqueue it.
        Generation.objects.filter(pk=generation_id, status=GenerationStatus.QUEUED).update(
            enqueued_at=None
        )
        return None
    now = timezone.now()
    with transaction.atomic():
        generation = (
            Generation.objects.select_related("endpoint", "campaign", "item__task_type")
            .filter(pk=generation_id)
            .first()
        )
        if generation is None or generation.status != GenerationStatus.QUEUED:
            return None
        endpoint = ModelEndpoint.objects.select_for_update().get(pk=generation.endpoint_id)
        now = timezone.now()  # after the wait for the lock: when the slot is really taken
        if _live_running(endpoint.pk, now) >= endpoint.max_concurrency:
            # No slot: let a finishing generation enqueue this one again.
            Generation.objects.filter(pk=generation_id).update(enqueued_at=None)
            return None
        if not _claim_queued(generation_id, now):
            return None
    generation.refresh_from_db()
    return generation


def _claim_queued(generation_id: int, now: datetime) -> bool:
    """The claim itself: move a queued generation to running for this worker, with a new claim
    token and a lease from `now`. False when it was not queued any more (someone else took it,
    or it was cancelled)."""
    moved = Generation.objects.filter(pk=generation_id, status=GenerationStatus.QUEUED).update(
        status=GenerationStatus.RUNNING,
        claim_token=secrets.token_hex(8),
        lease_expires_at=now + timedelta(seconds=settings.GENERATION_LEASE_S),
        started_at=now,
        worker=HOSTNAME,
        enqueued_at=None,
    )
    return moved == 1


def finish(
    generation: Generation, *, hand_over: bool = False, **fields: object
) -> Generation | None:
    """Store the outcome, only if this worker still holds the generation (same claim token).

    With `hand_over`, the same transaction claims the endpoint's next queued generation for
    this worker and returns it: the slot passes straight from one request to the next, so the
    count of running generations never dips and nobody else needs to lock the endpoint to fill
    it. Returns None when there is nothing to hand over, or when this worker is stopping.
    """
    fields.setdefault("finished_at", timezone.now())
    successor: Generation | None = None
    with transaction.atomic():
        stored = Generation.objects.filter(
            pk=generation.pk, claim_token=generation.claim_token, status=GenerationStatus.RUNNING
        ).update(lease_expires_at=None, **fields)
        if not stored:
            logger.warning(
                "result discarded: generation no longer held by this worker",
                extra={"generation": generation.public_id},
            )
        elif hand_over and not stopping.is_set():
            successor = _take_next(generation.endpoint_id)
    if successor is None or successor.campaign_id != generation.campaign_id:
        # (A successor of the same campaign is running: that campaign is not done.)
        _close_campaign_if_done(generation.campaign_id)
    if successor is not None:
        # Whole: the claim loaded only its pk, and each deferred field read later was a query.
        successor = Generation.objects.get(pk=successor.pk)
    return successor


def _take_next(endpoint_id: int) -> Generation | None:
    """Claim the endpoint's oldest queued generation (inside the caller's transaction)."""
    waiting = Generation.objects.filter(
        endpoint_id=endpoint_id, status=GenerationStatus.QUEUED
    ).order_by("pk")
    if connection.features.has_select_for_update_skip_locked:
        waiting = waiting.select_for_update(skip_locked=True)
    candidate = waiting.only("pk", "campaign_id").first()
    if candidate is None:
        return None
    return candidate if _claim_queued(candidate.pk, timezone.now()) else None


def _close_campaign_if_done(campaign_id: int) -> None:
    busy = Generation.objects.in_flight().filter(campaign_id=campaign_id).exists()
    if not busy:
        Campaign.objects.filter(pk=campaign_id, status=CampaignStatus.RUNNING).update(
            status=CampaignStatus.FINISHED
        )


# What a running generation goes back to when its worker is gone or hands it back: queued as
# if never started (attempts are counted only when an answer or a failure is stored), with no
# claim and no lease, waiting to be enqueued by the next pump.
_REQUEUED: dict[str, object] = {
    "status": GenerationStatus.QUEUED,
    "claim_token": "",
    "lease_expires_at": None,
    "enqueued_at": None,
    "worker": "",
}


def recover_expired() -> int:
    """Queue again the generations whose worker stopped renewing its lease."""
    now = timezone.now()
    count = Generation.objects.filter(
        status=GenerationStatus.RUNNING, lease_expires_at__lt=now
    ).update(**_REQUEUED)
    if count:
        logger.warning("requeued generations whose worker stopped", extra={"count": count})
    return count


def sweep() -> int:
    """Recover expired leases and fill every endpoint's free slots; safe to run anywhere."""
    recover_expired()
    endpoints = (
        Generation.objects.filter(status=GenerationStatus.QUEUED)
        .values("endpoint_id")
        .annotate(n=Count("pk"))
    )
    return pump(row["endpoint_id"] for row in endpoints)


def hand_back(generation_id: int, claim_token: str) -> bool:
    """Queue again a generation this worker runs (same claim token), as if never started.

    Nothing of its answer so far is kept: only a finished answer or a failure is ever stored.
    False when it was not held with this token any more (finished, cancelled, taken over).
    """
    moved = Generation.objects.filter(
        pk=generation_id, claim_token=claim_token, status=GenerationStatus.RUNNING
    ).update(**_REQUEUED)
    return moved == 1


# --- Leases ----------------------------------------------------------------------------------


class Cancelled(Exception):
    """The generation was cancelled, taken over, or handed back while it ran."""


stopping = threading.Event()
"""Set once this worker process begins to shut down (see `begin_stopping`)."""


def begin_stopping() -> None:
    """Stop this process's work without losing any: claim nothing more, hand back what runs.

    Safe to call from a signal handler (it only sets an event): the lease keeper's thread wakes
    up, hands every generation held here back to the queue and tells their streams to stop.
    """
    stopping.set()


class LeaseKeeper:
    """Renews, from one thread per process, the leases of the generations running here."""

    def __init__(self) -> None:
        self._held: dict[int, tuple[str, threading.Event]] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def hold(self, generation: Generation) -> threading.Event:
        """Keep the generation's lease; the event returned is set when it is no longer ours to
        run (cancelled, taken over, or handed back because this worker is stopping)."""
        lost = threading.Event()
        with self._lock:
            self._held[generation.pk] = (generation.claim_token, lost)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="lease-keeper", daemon=True)
                self._thread.start()
        if stopping.is_set():
            # Claimed just as the worker began to stop: hand it back without sending it.
            hand_back(generation.pk, generation.claim_token)
            lost.set()
        return lost

    def release(self, generation: Generation) -> None:
        with self._lock:
            self._held.pop(generation.pk, None)

    def _run(self) -> None:
        while not stopping.wait(max(0.2, settings.GENERATION_LEASE_S / 3)):
            try:
                self.renew()
            except Exception:
                logger.exception("lease renewal failed")
            finally:
                connection.close()
        try:
            self.hand_back_all()
        except Exception:
            logger.exception("handing generations back failed; their leases will run out")
        finally:
            connection.close()

    def hand_back_all(self) -> int:
        """Queue again every generation held here and tell their streams to stop."""
        with self._lock:
            held = dict(self._held)
        count = 0
        for pk, (token, lost) in held.items():
            count += hand_back(pk, token)
            lost.set()
        if count:
            logger.warning(
                "worker stopping: handed generations back to the queue", extra={"count": count}
            )
        return count

    def renew(self) -> None:
        with self._lock:
            held = dict(self._held)
        if not held:
            return
        until = timezone.now() + timedelta(seconds=settings.GENERATION_LEASE_S)
        still: set[int] = set()
        for pk, (token, _) in held.items():
            if Generation.objects.filter(
                pk=pk, claim_token=token, status=GenerationStatus.RUNNING
            ).update(lease_expires_at=until):
                still.add(pk)
        for pk, (_, lost) in held.items():
            if pk not in still:
                lost.set()


lease_keeper = LeaseKeeper()


def start_sweeper() -> threading.Thread:
    """Run `sweep` every DISPATCH_SWEEP_S seconds in a daemon thread (one per worker process)."""

    def loop() -> None:
        while True:
            try:
                close_old_connections()
                sweep()
            except Exception:
                logger.exception("dispatch sweep failed")
            finally:
                connection.close()
            time.sleep(settings.DISPATCH_SWEEP_S)

    thread = threading.Thread(target=loop, name="dispatch-sweeper", daemon=True)
    thread.start()
    return thread
