"""Celery tasks of the grading app. Task names are a contract: never rename one."""

from __future__ import annotations

import socket

from celery import shared_task
from django.core.cache import cache

PING_KEY = "worker-ping:{token}"


@shared_task(name="gradebench.ping", ignore_result=True)
def ping(token: str) -> None:
    """Answer a liveness probe: record which worker host took the message."""
    cache.set(PING_KEY.format(token=token), socket.gethostname(), timeout=300)
