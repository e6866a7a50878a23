"""What an operator checks first when reviewers say "nothing loads" (the operations page).

Each check answers on its own and never raises: a database or broker that cannot be reached is a
finding, shown with its error, not a server error of the page that reports it. The checks:

- the database: reachable, and on PostgreSQL how many of `max_connections` are in use (the web
  server and every worker keep connections open: README, "Deploying for a team");
- the broker: reachable, and how many messages wait in the queue workers read;
- the work per endpoint: generations and judgements queued and running, against the endpoint's
  `max_concurrency` (the database's view, the one dispatch acts on);
- the workers: whether one holds a live lease on running work (a worker renews its leases every
  `GENERATION_LEASE_S / 3` while it streams), else whether one takes a ping through the broker
  (`grading.worker_ping`), which can take seconds when none does, so the page asks it
  separately. The lease comes first because a busy worker takes a ping only after the messages
  queued before it: a ping unanswered behind a backlog does not mean no worker is running;
- gradebench's version (`inference.version`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import timedelta

from celery import current_app
from django.conf import settings
from django.db import DatabaseError, connection
from django.db.models import Count, Max
from django.utils import timezone
from django.utils.translation import gettext as _

from inference.models import Generation, GenerationStatus, Judgement, ModelEndpoint
from inference.version import gradebench_version

from . import worker_ping

BROKER_TIMEOUT_S = 3
WORKER_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class Check:
    """One finding: whether the part works, and what to say about it."""

    ok: bool
    detail: str


@dataclass(frozen=True)
class EndpointLoad:
    """Work waiting for and running on one endpoint, by the database's count."""

    slug: str
    name: str
    max_concurrency: int
    generations_queued: int
    generations_running: int
    judgements_queued: int
    judgements_running: int

    @property
    def running(self) -> int:
        return self.generations_running + self.judgements_running

    @property
    def queued(self) -> int:
        return self.generations_queued + self.judgements_queued


@dataclass(frozen=True)
class Status:
    """Everything the operations page shows but the worker ping."""

    version: str
    database: Check
    broker: Check
    queue: str
    messages_waiting: int | None
    endpoints: list[EndpointLoad]

    @property
    def generations_running(self) -> int:
        return sum(row.generations_running for row in self.endpoints)

    @property
    def generations_queued(self) -> int:
        return sum(row.generations_queued for row in self.endpoints)


def check_database() -> Check:
    """Reachable? On PostgreSQL, connections in use against `max_connections` too."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            if connection.vendor != "postgresql":
                return Check(True, connection.display_name)
            cursor.execute(
                "SELECT current_setting('max_connections')::int, count(*), "
                "count(*) FILTER (WHERE datname = current_database()) FROM pg_stat_activity "
                "WHERE backend_type = 'client backend'"
            )
            row = cursor.fetchone()
    except DatabaseError as error:
        return Check(False, f"{type(error).__name__}: {error}".strip())
    assert row is not None
    limit, in_use, ours = row
    message = _(
        "PostgreSQL %(version)s: %(in_use)s of %(limit)s connections in use "
        "(%(ours)s to this database)"
    )
    version = connection.pg_version // 10000  # type: ignore[attr-defined]
    return Check(
        True, message % {"version": version, "in_use": in_use, "limit": limit, "ours": ours}
    )


def check_broker() -> tuple[Check, int | None]:
    """Reachable? And the number of messages waiting in the workers' queue (None if unknown)."""
    queue = settings.CELERY_TASK_DEFAULT_QUEUE
    try:
        with current_app.connection_for_read() as broker:
            broker.ensure_connection(max_retries=1, timeout=BROKER_TIMEOUT_S)
            where = broker.as_uri()
            try:
                with broker.channel() as channel:
                    declared = channel.queue_declare(queue=queue, passive=True)  # type: ignore[attr-defined]
                    waiting = declared.message_count
            except Exception:  # a queue nobody declared yet holds nothing
                waiting = 0
    except Exception as error:  # any broker failure is the finding itself
        return Check(False, f"{type(error).__name__}: {error}".strip()), None
    return Check(True, where), int(waiting)


def endpoint_loads() -> list[EndpointLoad]:
    """Queued and running work per endpoint (endpoints with none included), in two queries."""
    counts: dict[tuple[int, str, str], int] = {}
    generations = Generation.objects.in_flight().values_list("endpoint_id", "status")
    judgements = Judgement.objects.in_flight().values_list("judge_id", "status")
    for kind, rows in (("generation", generations), ("judgement", judgements)):
        for endpoint_id, state, n in rows.annotate(n=Count("id")).order_by():
            counts[(endpoint_id, kind, state)] = n
    queued, running = GenerationStatus.QUEUED.value, GenerationStatus.RUNNING.value
    return [
        EndpointLoad(
            slug=endpoint.slug,
            name=endpoint.name,
            max_concurrency=endpoint.max_concurrency,
            generations_queued=counts.get((endpoint.pk, "generation", queued), 0),
            generations_running=counts.get((endpoint.pk, "generation", running), 0),
            judgements_queued=counts.get((endpoint.pk, "judgement", queued), 0),
            judgements_running=counts.get((endpoint.pk, "judgement", running), 0),
        )
        for endpoint in ModelEndpoint.objects.exclude(pk__in=ModelEndpoint.objects.external())
        .order_by("slug")
        .only("slug", "name", "max_concurrency")
    ]


def status() -> Status:
    """Every check of the page but the worker ping."""
    database = check_database()
    broker, waiting = check_broker()
    return Status(
        version=gradebench_version(),
        database=database,
        broker=broker,
        queue=settings.CELERY_TASK_DEFAULT_QUEUE,
        messages_waiting=waiting,
        endpoints=endpoint_loads() if database.ok else [],
    )


def _live_leases() -> tuple[int, float | None]:
    """How many generations and judgements a worker holds under a lease that has not expired,
    and how many seconds ago the freshest was renewed."""
    now = timezone.now()
    held, newest = 0, None
    for model in (Generation, Judgement):
        found = model.objects.filter(
            status=GenerationStatus.RUNNING, lease_expires_at__gt=now
        ).aggregate(n=Count("pk"), newest=Max("lease_expires_at"))
        held += found["n"]
        if found["newest"] is not None and (newest is None or found["newest"] > newest):
            newest = found["newest"]
    if newest is None:
        return held, None
    renewed = newest - timedelta(seconds=settings.GENERATION_LEASE_S)
    return held, max(0.0, (now - renewed).total_seconds())


def check_workers(timeout_s: float | None = None) -> Check:
    """Is a worker at work: does one hold a live lease on running work, or else take a ping
    from the workers' queue within `timeout_s` (default `WORKER_TIMEOUT_S`)?"""
    timeout_s = WORKER_TIMEOUT_S if timeout_s is None else timeout_s
    try:
        held, renewed_s = _live_leases()
    except DatabaseError:
        held, renewed_s = 0, None
    if held:
        return Check(
            True,
            _("working: %(n)s answers under live leases, the latest renewed %(s)s s ago")
            % {"n": held, "s": f"{renewed_s:.0f}"},
        )
    start = time.monotonic()
    try:
        host = worker_ping.worker_responds(
            timeout_s=timeout_s, queue=settings.CELERY_TASK_DEFAULT_QUEUE
        )
    except Exception as error:  # no broker: no worker can answer
        return Check(False, f"{type(error).__name__}: {error}".strip())
    if host is None:
        return Check(False, _("no worker answered within %(s)s s") % {"s": f"{timeout_s:g}"})
    elapsed = f"{(time.monotonic() - start) * 1000:.0f}"
    return Check(True, _("%(host)s answered in %(ms)s ms") % {"host": host, "ms": elapsed})
