"""Celery tasks of the inference app: thin wrappers taking ids. Task names are a contract."""

from __future__ import annotations

import gc
from typing import Any

from celery import shared_task
from celery.signals import worker_ready, worker_shutting_down

from . import dispatch, generate, judging


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


@worker_ready.connect
def _start_sweeper(**_: Any) -> None:
    # Every worker keeps dispatch moving on its own, so `celery -A grading worker` needs no
    # beat and serves endpoints added after it started.
    dispatch.start_sweeper()
    # What is loaded by now lives as long as the process: keep it out of the garbage
    # collector's full passes, whose pauses would stall every stream in flight.
    gc.freeze()


@worker_shutting_down.connect
def _hand_back_on_shutdown(**_: Any) -> None:
    # Sent from the worker's signal handler when a warm (or cold) shutdown begins. A warm
    # shutdown waits for the tasks that are running: make them end now, their generations and
    # judgements handed back to the queue, rather than after answers that can take minutes.
    # (In the default threads pool, and the solo pool, the tasks run in this process.)
    dispatch.begin_stopping()
