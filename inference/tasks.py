"""Celery tasks of the inference app: thin wrappers taking ids. Task names are a contract."""

from __future__ import annotations

import sys
from typing import Any

from celery import shared_task
from celery.signals import (
    task_postrun,
    task_prerun,
    worker_init,
    worker_ready,
    worker_shutting_down,
)
from django.conf import settings
from django.db import close_old_connections

from . import dispatch, generate, judging, stream_loop


@shared_task(name="inference.run_generation", ignore_result=True)
def run_generation(generation_id: int) -> str:
    """Run one generation; a redelivered message for a finished one does nothing."""
    return generate.run_generation(generation_id)


@shared_task(name="inference.run_judgement", ignore_result=True)
def run_judgement(judgement_id: int) -> str:
    """Run one judgement; a redelivered message for a finished one does nothing."""
    return judging.run_judgement(judgement_id)


@shared_task(name="inference.sweep", ignore_result=True)
def sweep() -> int:
    """Requeue the work of dead workers and fill free endpoint slots."""
    return dispatch.sweep()


@worker_init.connect
def _switch_threads_often(**_: Any) -> None:
    # The stream loop waits for the interpreter lock behind task threads doing database work;
    # a shorter switch interval bounds how late it reads a chunk because of them.
    sys.setswitchinterval(settings.WORKER_SWITCH_INTERVAL_MS / 1000)


@worker_init.connect
def _keep_database_connections(**_: Any) -> None:
    # Before any task thread opens a connection: each keeps its own for this long (Django
    # reads CONN_MAX_AGE when it connects), with a health check before its first use in a task.
    age = settings.WORKER_DATABASE_CONN_MAX_AGE
    if age:
        for database in settings.DATABASES.values():
            database["CONN_MAX_AGE"] = age
            database["CONN_HEALTH_CHECKS"] = True


@task_prerun.connect
@task_postrun.connect
def _close_unusable_connections(sender: Any = None, **_: Any) -> None:
    # What Django does around a request: close this thread's connection if it broke (an
    # error left it unusable) or outlived its CONN_MAX_AGE, and check it before its next use.
    # Celery's Django fixup does not, while it is told to reuse connections (settings.py).
    # Not around a task run eagerly, inside its caller's transaction (as the fixup).
    eager = getattr(getattr(sender, "request", None), "is_eager", False)
    if settings.WORKER_DATABASE_CONN_MAX_AGE and not eager:
        close_old_connections()


@worker_ready.connect
def _start_sweeper(**_: Any) -> None:
    # Every worker keeps dispatch moving on its own, so `celery -A grading worker` needs no
    # beat and serves endpoints added after it started.
    dispatch.start_sweeper()
    # What is loaded by now lives as long as the process: keep it out of the garbage
    # collector's passes, and make full passes rare: their pauses stall every stream in flight.
    stream_loop.settle_memory()


@worker_shutting_down.connect
def _hand_back_on_shutdown(**_: Any) -> None:
    # Sent from the worker's signal handler when a warm (or cold) shutdown begins. A warm
    # shutdown waits for the tasks that are running: make them end now, their generations and
    # judgements handed back to the queue, rather than after answers that can take minutes.
    # (In the default threads pool, and the solo pool, the tasks run in this process.)
    dispatch.begin_stopping()
