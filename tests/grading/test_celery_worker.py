"""A real Celery worker process takes tasks through the embedded broker and through Redis."""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Mapping

import pytest
from django.conf import settings
from django.core.cache import cache
from kombu import Connection

from grading.celery import app
from grading.tasks import PING_KEY

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def _ping_through(
    broker_url: str, transport_options: Mapping[str, object], queue: str
) -> str | None:
    token = secrets.token_hex(8)
    with Connection(broker_url, transport_options=dict(transport_options)) as conn:
        app.send_task("gradebench.ping", args=[token], queue=queue, connection=conn)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        host = cache.get(PING_KEY.format(token=token))
        if host:
            return str(host)
        time.sleep(0.1)
    return None


def test_worker_process_runs_task_through_embedded_broker(celery_worker_process) -> None:
    worker = celery_worker_process(broker_url="filesystem://")
    options = {
        "data_folder_in": str(settings.EMBEDDED_BROKER_DIR / "queue"),
        "data_folder_out": str(settings.EMBEDDED_BROKER_DIR / "queue"),
        "control_folder": str(settings.EMBEDDED_BROKER_DIR / "control"),
    }
    host = _ping_through("filesystem://", options, worker.queue)
    assert host, worker.output()
    assert "gradebench.ping" in worker.output()


@pytest.mark.redis
def test_worker_process_runs_task_through_redis(celery_worker_process) -> None:
    redis_url = os.environ["REDIS_URL"]
    worker = celery_worker_process(broker_url=redis_url)
    host = _ping_through(redis_url, {"visibility_timeout": 3600}, worker.queue)
    assert host, worker.output()
    assert "redis://" in worker.output()


def test_worker_responds_is_none_without_a_worker(db) -> None:
    from grading.worker_ping import worker_responds

    assert worker_responds(timeout_s=0.5, queue=f"nobody-listens-{secrets.token_hex(4)}") is None
