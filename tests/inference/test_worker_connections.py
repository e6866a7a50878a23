"""A worker keeps its database connection from task to task (WORKER_DATABASE_CONN_MAX_AGE),
and still drops one that broke or grew too old, as Django does around a request; its threads
take turns at the interpreter lock often (WORKER_SWITCH_INTERVAL_MS)."""

from __future__ import annotations

import sys
from types import SimpleNamespace
from typing import Any

import pytest
from django.db import connection, transaction

from inference import tasks
from inference.models import ModelEndpoint


@pytest.fixture
def worker_settings(settings: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """This process set up as a worker whose connections live 600 s (undone afterwards)."""
    settings.WORKER_DATABASE_CONN_MAX_AGE = 600
    database = connection.settings_dict
    monkeypatch.setitem(database, "CONN_MAX_AGE", database["CONN_MAX_AGE"])
    monkeypatch.setitem(database, "CONN_HEALTH_CHECKS", database["CONN_HEALTH_CHECKS"])
    connection.close()  # so that the next connection is opened with the worker's settings
    tasks._keep_database_connections()
    yield settings
    connection.close()


def a_task() -> None:
    """What Celery does around a task, with a query inside."""
    tasks._close_unusable_connections()  # task_prerun
    ModelEndpoint.objects.count()
    tasks._close_unusable_connections()  # task_postrun


@pytest.mark.django_db(transaction=True)
def test_a_worker_keeps_its_connection_from_task_to_task(worker_settings: Any) -> None:
    assert connection.settings_dict["CONN_MAX_AGE"] == 600
    assert connection.settings_dict["CONN_HEALTH_CHECKS"] is True
    a_task()
    opened = connection.connection
    assert opened is not None
    for _ in range(3):
        a_task()
    assert connection.connection is opened


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="an SQLite file has no server to lose"
)
@pytest.mark.django_db(transaction=True)
def test_a_connection_that_broke_in_a_task_is_replaced_for_the_next(worker_settings: Any) -> None:
    a_task()
    broken = connection.connection
    broken.close()  # the server went away under it
    tasks._close_unusable_connections()  # task_prerun
    ModelEndpoint.objects.count()  # the health check finds it broken and reconnects
    tasks._close_unusable_connections()  # task_postrun
    a_task()
    assert connection.connection is not None and connection.connection is not broken


@pytest.mark.django_db(transaction=True)
def test_a_connection_older_than_its_max_age_is_closed_after_the_task(
    worker_settings: Any,
) -> None:
    a_task()
    first = connection.connection
    assert connection.close_at is not None
    connection.close_at -= 601  # as if opened ten minutes ago
    a_task()
    assert connection.connection is not None and connection.connection is not first


def test_a_worker_switches_threads_every_millisecond(settings: Any) -> None:
    """So that the stream loop waits at most that long behind a busy task thread."""
    before = sys.getswitchinterval()
    settings.WORKER_SWITCH_INTERVAL_MS = 1
    try:
        tasks._switch_threads_often()
        assert sys.getswitchinterval() == pytest.approx(0.001)
    finally:
        sys.setswitchinterval(before)


@pytest.mark.django_db(transaction=True)
def test_a_task_run_eagerly_leaves_its_callers_transaction_alone(worker_settings: Any) -> None:
    eager_task = SimpleNamespace(request=SimpleNamespace(is_eager=True))
    with transaction.atomic():
        ModelEndpoint.objects.create(slug="kept", name="Kept", model="org/kept")
        tasks._close_unusable_connections(sender=eager_task)  # task_prerun of an eager task
        assert connection.in_atomic_block and connection.connection is not None
        assert ModelEndpoint.objects.filter(slug="kept").exists()
    assert ModelEndpoint.objects.filter(slug="kept").exists()
