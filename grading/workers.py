"""Is a Celery worker taking work? Asked before starting jobs a user waits for."""

from __future__ import annotations

import secrets
import time

from django.core.cache import cache

from .tasks import PING_KEY, ping


def worker_responds(timeout_s: float = 3.0, queue: str | None = None) -> str | None:
    """Send a ping through the broker; return the answering worker's host name, or None."""
    token = secrets.token_hex(8)
    if queue:
        ping.apply_async(args=(token,), queue=queue)
    else:
        ping.apply_async(args=(token,))
    deadline = time.monotonic() + timeout_s
    key = PING_KEY.format(token=token)
    while time.monotonic() < deadline:
        host = cache.get(key)
        if host:
            return str(host)
        time.sleep(0.1)
    return None
