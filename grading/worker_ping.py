"""Is a Celery worker taking work? Asked before starting jobs a user waits for."""

from __future__ import annotations

import secrets
import time

from celery import current_app
from django.core.cache import cache

PING = "gradebench.ping"
"""The name of the task in `tasks.py` that answers a ping (task names are a contract)."""
PING_KEY = "worker-ping:{token}"
"""Where the worker that took a ping writes its host name."""


def worker_responds(timeout_s: float = 3.0, queue: str | None = None) -> str | None:
    """Send a ping through the broker; return the answering worker's host name, or None."""
    token = secrets.token_hex(8)
    # By name: the task module imports this one, so this one does not import it back.
    if queue:
        current_app.send_task(PING, args=(token,), queue=queue, ignore_result=True)
    else:
        current_app.send_task(PING, args=(token,), ignore_result=True)
    deadline = time.monotonic() + timeout_s
    key = PING_KEY.format(token=token)
    while time.monotonic() < deadline:
        host = cache.get(key)
        if host:
            return str(host)
        time.sleep(0.1)
    return None
