"""Launching campaigns and handing work to workers, at most `max_concurrency` per endpoint.

Two kinds of work go through here (`Work`): generations (a model answers an item) and
judgements (a judge scores an answer, DESIGN §10). An endpoint can be both a campaign's model
and a judge, so its cap counts both: its running generations and its running judgements share
its `max_concurrency` slots, and its free slots go to queued generations first, then to queued
judgements.

The limit holds across every worker process on every machine because it is kept in the
database: a row is claimed (queued → running, with a lease) inside a transaction that locks its
endpoint's row, after counting the endpoint's live leases of both kinds. Only as many messages
as an endpoint has free slots are ever enqueued, so a slow or saturated server never fills the
queue in front of the others. A worker renews the leases of what it is running; when a worker
dies its leases run out, `recover_expired` queues that work again, and the claim token makes
sure a late answer from a presumed-dead worker is never stored twice.

A worker that is asked to stop (Celery's warm shutdown: SIGTERM, or the first Ctrl-C) sets
`stopping`: it claims and enqueues nothing more, and hands everything it runs back to the
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
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from celery import current_app
from django.conf import settings
from django.db import close_old_connections, connection, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from .models import (
    IN_FLIGHT_STATUSES,
    JUDGEMENT_IN_FLIGHT_STATUSES,
    JUDGEMENT_RETRYABLE_STATUSES,
    RETRYABLE_STATUSES,
    Campaign,
    CampaignStatus,
    Generation,
    GenerationStatus,
    Judgement,
    JudgementStatus,
    ModelEndpoint,
    TaskItem,
)

logger = logging.getLogger(__name__)
HOSTNAME = socket.gethostname()
RUN_GENERATION = "inference.run_generation"
"""The name of the task in `tasks.py` that runs a generation (task names are a contract)."""
RUN_JUDGEMENT = "inference.run_judgement"
"""The name of the task in `tasks.py` that runs a judgement."""


# --- Kinds of work ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Work:
    """One kind of work dispatched per endpoint: its rows, the field naming the endpoint that
    runs them, its status values and the task that runs one (by id)."""

    name: str
    model: type[Generation] | type[Judgement]
    endpoint_field: str
    queued: str
    running: str
    cancelled: str
    in_flight: tuple[str, ...]
    retryable: tuple[str, ...]
    task: str
    related: tuple[str, ...]
    """What a claim loads with the row."""

    def rows(self) -> QuerySet[Any]:
        return self.model._default_manager.all()

    def of_endpoint(self, endpoint_id: int) -> QuerySet[Any]:
        return self.rows().filter(**{f"{self.endpoint_field}_id": endpoint_id})

    def endpoint_id(self, row: Generation | Judgement) -> int:
        return int(getattr(row, f"{self.endpoint_field}_id"))


GENERATIONS = Work(
    name="generation",
    model=Generation,
    endpoint_field="endpoint",
    queued=GenerationStatus.QUEUED,
    running=GenerationStatus.RUNNING,
    cancelled=GenerationStatus.CANCELLED,
    in_flight=tuple(IN_FLIGHT_STATUSES),
    retryable=tuple(RETRYABLE_STATUSES),
    task=RUN_GENERATION,
    related=("endpoint", "campaign", "item__task_type"),
)
JUDGEMENTS = Work(
    name="judgement",
    model=Judgement,
    endpoint_field="judge",
    queued=JudgementStatus.QUEUED,
    running=JudgementStatus.RUNNING,
    cancelled=JudgementStatus.CANCELLED,
    in_flight=tuple(JUDGEMENT_IN_FLIGHT_STATUSES),
    retryable=tuple(JUDGEMENT_RETRYABLE_STATUSES),
    task=RUN_JUDGEMENT,
    related=("judge", "campaign", "generation__item__task_type"),
)
WORK = (GENERATIONS, JUDGEMENTS)
"""Every kind, in the order an endpoint's free slots are given to them."""

Row = TypeVar("Row", Generation, Judgement)


def work_of(row: Generation | Judgement) -> Work:
    return JUDGEMENTS if isinstance(row, Judgement) else GENERATIONS


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
    """Cancel the generations and judgements that have not finished; running requests stop at
    their next chunk. Returns how many were cancelled."""
    count = 0
    with transaction.atomic():
        for work in WORK:
            count += (
                work.rows()
                .filter(campaign=campaign, status__in=work.in_flight)
                .update(
                    status=work.cancelled,
                    error="cancelled by an admin",
                    finished_at=timezone.now(),
                    lease_expires_at=None,
                )
            )
        Campaign.objects.filter(pk=campaign.pk).update(status=CampaignStatus.CANCELLED)
    return count


def retry_failed(campaign: Campaign) -> int:
    """Queue failed (and cancelled) generations and judgements again; their previous error is
    kept until then. Returns how many were queued."""
    count = 0
    endpoint_ids: set[int] = set()
    with transaction.atomic():
        for work in WORK:
            # External endpoints (answers imported from a file) have nothing to call: left as
            # they are.
            retryable = (
                work.rows()
                .filter(campaign=campaign, status__in=work.retryable)
                .exclude(**{f"{work.endpoint_field}__in": ModelEndpoint.objects.external()})
            )
            endpoint_ids.update(retryable.values_list(f"{work.endpoint_field}_id", flat=True))
            count += retryable.update(
                status=work.queued,
                enqueued_at=None,
                claim_token="",
                lease_expires_at=None,
                finished_at=None,
            )
        if count:
            Campaign.objects.filter(pk=campaign.pk).update(status=CampaignStatus.RUNNING)
            transaction.on_commit(lambda: pump(endpoint_ids))
    return count


# --- Slots -----------------------------------------------------------------------------------


def _live_running(endpoint_id: int, now: object) -> int:
    """The endpoint's slots in use: its running generations and judgements with a live lease."""
    return sum(
        work.of_endpoint(endpoint_id).filter(status=work.running, lease_expires_at__gt=now).count()
        for work in WORK
    )


def pump(endpoint_ids: Iterable[int]) -> int:
    """Enqueue queued work into each endpoint's free slots, generations first; returns how many.

    A stopping worker enqueues nothing: what it hands back is left to the next sweep (its own
    tasks finishing all at once would otherwise fill the queue for a worker that is not there).
    External endpoints (no base URL) are never called: their work is left where it is.
    """
    if stopping.is_set():
        return 0
    total = 0
    for endpoint_id in set(endpoint_ids):
        now = timezone.now()
        stale = now - timedelta(seconds=settings.GENERATION_REQUEUE_S)
        with transaction.atomic():
            endpoint = ModelEndpoint.objects.select_for_update().filter(pk=endpoint_id).first()
            if endpoint is None or endpoint.is_external:
                continue
            waiting = {
                work: work.of_endpoint(endpoint_id).filter(status=work.queued) for work in WORK
            }
            in_queue = sum(rows.filter(enqueued_at__gt=stale).count() for rows in waiting.values())
            free = endpoint.max_concurrency - _live_running(endpoint_id, now) - in_queue
            for work, rows in waiting.items():
                if free <= 0:
                    break
                ids = list(
                    rows.filter(Q(enqueued_at__isnull=True) | Q(enqueued_at__lte=stale))
                    .order_by("pk")
                    .values_list("pk", flat=True)[:free]
                )
                if not ids:
                    continue
                work.rows().filter(pk__in=ids).update(enqueued_at=now)
                transaction.on_commit(lambda ids=ids, work=work: _enqueue(ids, work))  # type: ignore[misc]
                total += len(ids)
                free -= len(ids)
    return total


def _enqueue(ids: list[int], work: Work = GENERATIONS) -> None:
    # The queue is read at call time so a deployment (or a test) can point it elsewhere.
    queue = settings.CELERY_TASK_DEFAULT_QUEUE
    for position, pk in enumerate(ids):
        try:
            # By name: the task module imports this one, so this one does not import it back.
            current_app.send_task(work.task, args=(pk,), queue=queue, ignore_result=True)
        except Exception:
            # The broker is away (restarting, unreachable): leave these for the next sweep.
            logger.warning("broker unavailable; will enqueue later", exc_info=True)
            work.rows().filter(pk__in=ids[position:], status=work.queued).update(enqueued_at=None)
            return


def claim(generation_id: int) -> Generation | None:
    """Take a queued generation if its endpoint has a free slot; None if not ours to run."""
    claimed: Generation | None = _claim(GENERATIONS, generation_id)
    return claimed


def claim_judgement(judgement_id: int) -> Judgement | None:
    """Take a queued judgement if its judge has a free slot; None if not ours to run."""
    claimed: Judgement | None = _claim(JUDGEMENTS, judgement_id)
    return claimed


def _claim(work: Work, pk: int) -> Any:
    if stopping.is_set():
        # Leave it to the next worker; clearing enqueued_at makes its first sweep enqueue it.
        work.rows().filter(pk=pk, status=work.queued).update(enqueued_at=None)
        return None
    with transaction.atomic():
        row = work.rows().select_related(*work.related).filter(pk=pk).first()
        if row is None or row.status != work.queued:
            return None
        endpoint_id = work.endpoint_id(row)
        endpoint = ModelEndpoint.objects.select_for_update().get(pk=endpoint_id)
        now = timezone.now()  # after the wait for the lock: when the slot is really taken
        if endpoint.is_external:
            return None  # never called: left queued, and no pump enqueues it again
        if _live_running(endpoint.pk, now) >= endpoint.max_concurrency:
            # No slot: let a finishing row enqueue this one again.
            work.rows().filter(pk=pk).update(enqueued_at=None)
            return None
        if not _claim_queued(work, pk, now):
            return None
    row.refresh_from_db()
    return row


def _claim_queued(work: Work, pk: int, now: datetime) -> dict[str, Any] | None:
    """The claim itself: move a queued row to running for this worker, with a new claim token
    and a lease from `now`; returns the fields it set. None when it was not queued any more
    (someone else took it, or it was cancelled)."""
    fields = {
        "status": work.running,
        "claim_token": secrets.token_hex(8),
        "lease_expires_at": now + timedelta(seconds=settings.GENERATION_LEASE_S),
        "started_at": now,
        "worker": HOSTNAME,
        "enqueued_at": None,
    }
    moved = work.rows().filter(pk=pk, status=work.queued).update(**fields)
    return fields if moved == 1 else None


def finish(row: Row, *, hand_over: bool = False, **fields: object) -> Row | None:
    """Store the outcome of a generation or a judgement, only if this worker still holds it
    (same claim token).

    With `hand_over`, the same transaction claims the endpoint's next queued row of the same
    kind for this worker and returns it: the slot passes straight from one request to the next,
    so the count of running rows never dips and nobody else needs to lock the endpoint to fill
    it. A judgement hands over only while the endpoint has no generation waiting (generations
    come first). Returns None when there is nothing to hand over, or when this worker is
    stopping.
    """
    work = work_of(row)
    fields.setdefault("finished_at", timezone.now())
    successor: Row | None = None
    with transaction.atomic():
        stored = (
            work.rows()
            .filter(pk=row.pk, claim_token=row.claim_token, status=work.running)
            .update(lease_expires_at=None, **fields)
        )
        if not stored:
            logger.warning(
                "result discarded: %s no longer held by this worker",
                work.name,
                extra={work.name: row.public_id},
            )
        elif hand_over and not stopping.is_set():
            successor = _take_next(work, work.endpoint_id(row))
    if successor is None or successor.campaign_id != row.campaign_id:
        # (A successor of the same campaign is running: that campaign is not done.)
        _close_campaign_if_done(row.campaign_id)
    return successor


def _take_next(work: Work, endpoint_id: int) -> Any:
    """Claim the endpoint's oldest queued row of this kind (inside the caller's transaction),
    unless a kind that comes first has work waiting there: then the slot is left for `pump`."""
    for earlier in WORK[: WORK.index(work)]:
        if earlier.of_endpoint(endpoint_id).filter(status=earlier.queued).exists():
            return None
    waiting = work.of_endpoint(endpoint_id).filter(status=work.queued).order_by("pk")
    if connection.features.has_select_for_update_skip_locked:
        waiting = waiting.select_for_update(skip_locked=True)
    # The whole row, locked: it is what the worker runs next (a deferred field would cost a
    # query each when read).
    candidate = waiting.first()
    if candidate is None:
        return None
    claimed = _claim_queued(work, candidate.pk, timezone.now())
    if claimed is None:
        return None
    for name, value in claimed.items():
        setattr(candidate, name, value)
    return candidate


def _close_campaign_if_done(campaign_id: int) -> None:
    busy = any(
        work.rows().filter(campaign_id=campaign_id, status__in=work.in_flight).exists()
        for work in WORK
    )
    if not busy:
        Campaign.objects.filter(pk=campaign_id, status=CampaignStatus.RUNNING).update(
            status=CampaignStatus.FINISHED
        )


def _requeued(work: Work) -> dict[str, object]:
    """What a running row goes back to when its worker is gone or hands it back: queued as if
    never started (attempts are counted only when an answer or a failure is stored), with no
    claim and no lease, waiting to be enqueued by the next pump."""
    return {
        "status": work.queued,
        "claim_token": "",
        "lease_expires_at": None,
        "enqueued_at": None,
        "worker": "",
    }


def recover_expired() -> int:
    """Queue again the generations and judgements whose worker stopped renewing its lease."""
    now = timezone.now()
    count = 0
    for work in WORK:
        expired = work.rows().filter(status=work.running, lease_expires_at__lt=now)
        recovered = expired.update(**_requeued(work))
        if recovered:
            logger.warning(
                "requeued %ss whose worker stopped", work.name, extra={"count": recovered}
            )
        count += recovered
    return count


def sweep() -> int:
    """Recover expired leases and fill every endpoint's free slots; safe to run anywhere."""
    recover_expired()
    endpoint_ids: set[int] = set()
    for work in WORK:
        endpoint_ids.update(
            work.rows()
            .filter(status=work.queued)
            .order_by()
            .values_list(f"{work.endpoint_field}_id", flat=True)
            .distinct()
        )
    return pump(endpoint_ids)


def hand_back(pk: int, claim_token: str, work: Work = GENERATIONS) -> bool:
    """Queue again a row of `work` this worker runs (same claim token), as if never started.

    Nothing of its answer so far is kept: only a finished answer or a failure is ever stored.
    False when it was not held with this token any more (finished, cancelled, taken over).
    """
    held = work.rows().filter(pk=pk, claim_token=claim_token, status=work.running)
    moved = held.update(**_requeued(work))
    return bool(moved == 1)


# --- Leases ----------------------------------------------------------------------------------


class Cancelled(Exception):
    """The work was cancelled, taken over, or handed back while it ran."""


def lease_callbacks(lost: threading.Event) -> tuple[Callable[[], None], Callable[[float], None]]:
    """The `heartbeat` and `sleep` a running request is given: the first raises `Cancelled` once
    the claim is lost; the second is a back-off that wakes early when it is (or the worker
    stops), so a stop never waits on it."""

    def heartbeat() -> None:
        if lost.is_set():
            raise Cancelled

    def back_off(seconds: float) -> None:
        lost.wait(seconds)
        heartbeat()

    return heartbeat, back_off


_chain_clock = time.monotonic  # (a test moves it on)


def run_chain(
    first: Row, endpoint_id: int, run: Callable[[Row, bool], tuple[str, Row | None]]
) -> str:
    """Run a claimed row, then what `run` hands over next (`run(row, hand_over)`), at most
    DISPATCH_CHAIN_MAX in all and none handed over after DISPATCH_CHAIN_MAX_S seconds, then
    fill the endpoint's free slots again (their messages queue behind the other endpoints').
    Returns what happened to the first."""
    first_outcome = ""
    remaining = max(1, settings.DISPATCH_CHAIN_MAX)
    deadline = _chain_clock() + settings.DISPATCH_CHAIN_MAX_S
    current: Row | None = first
    try:
        while current is not None:
            remaining -= 1
            hand_over = remaining > 0 and _chain_clock() < deadline
            outcome, current = run(current, hand_over)
            first_outcome = first_outcome or outcome
    finally:
        pump([endpoint_id])
    return first_outcome


stopping = threading.Event()
"""Set once this worker process begins to shut down (see `begin_stopping`)."""


def begin_stopping() -> None:
    """Stop this process's work without losing any: claim nothing more, hand back what runs.

    Safe to call from a signal handler (it only sets an event): the lease keeper's thread wakes
    up, hands every generation and judgement held here back to the queue and tells their
    streams to stop.
    """
    stopping.set()


class LeaseKeeper:
    """Renews, from one thread per process, the leases of the work running here."""

    def __init__(self) -> None:
        self._held: dict[tuple[Work, int], tuple[str, threading.Event]] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def hold(self, row: Generation | Judgement) -> threading.Event:
        """Keep the row's lease; the event returned is set when it is no longer ours to run
        (cancelled, taken over, or handed back because this worker is stopping)."""
        work = work_of(row)
        lost = threading.Event()
        with self._lock:
            self._held[(work, row.pk)] = (row.claim_token, lost)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="lease-keeper", daemon=True)
                self._thread.start()
        if stopping.is_set():
            # Claimed just as the worker began to stop: hand it back without sending it.
            hand_back(row.pk, row.claim_token, work)
            lost.set()
        return lost

    def release(self, row: Generation | Judgement) -> None:
        with self._lock:
            self._held.pop((work_of(row), row.pk), None)

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
            logger.exception("handing work back failed; its leases will run out")
        finally:
            connection.close()

    def hand_back_all(self) -> int:
        """Queue again everything held here and tell their streams to stop."""
        with self._lock:
            held = dict(self._held)
        count = 0
        for (work, pk), (token, lost) in held.items():
            count += hand_back(pk, token, work)
            lost.set()
        if count:
            logger.warning("worker stopping: handed work back to the queue", extra={"count": count})
        return count

    def renew(self) -> None:
        with self._lock:
            held = dict(self._held)
        if not held:
            return
        until = timezone.now() + timedelta(seconds=settings.GENERATION_LEASE_S)
        still: set[tuple[Work, int]] = set()
        for (work, pk), (token, _) in held.items():
            if (
                work.rows()
                .filter(pk=pk, claim_token=token, status=work.running)
                .update(lease_expires_at=until)
            ):
                still.add((work, pk))
        for key, (_, lost) in held.items():
            if key not in still:
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
