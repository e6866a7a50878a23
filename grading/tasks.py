"""Celery tasks of the grading app. Task names are a contract: never rename one."""

from __future__ import annotations

import socket

from celery import shared_task
from django.core.cache import cache

from . import exports, freshness
from .worker_ping import PING_KEY


@shared_task(name="gradebench.ping", ignore_result=True)
def ping(token: str) -> None:
    """Answer a liveness probe: record which worker host took the message."""
    cache.set(PING_KEY.format(token=token), socket.gethostname(), timeout=300)


@shared_task(name="gradebench.write_export", ignore_result=True)
def write_export(export_id: int) -> str:
    """Write a queued export's file; a redelivered message for a started one does nothing."""
    return exports.run_export(export_id)


@shared_task(name="gradebench.rebuild_results", ignore_result=True)
def rebuild_results(
    campaign_ids: list[int], reviewer: str, key: str, token: str, kind: str = freshness.COMPARISON
) -> str:
    """Build a results page's figures in the background; a late or repeated message does nothing.

    `kind` is the kind of figure set (`freshness.COMPARISON`, `freshness.ANALYSES`).
    """
    return freshness.rebuild(campaign_ids, reviewer, key, token, runner="worker", kind=kind)
