"""The operations page: what an operator checks first — database, broker, queues, work per
endpoint, workers answering, version — for admins only, and never a server error when a part
it reports on is down."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone
from kombu import Connection

from grading import operations
from inference.models import Generation, GenerationStatus, JudgementStatus
from inference.version import gradebench_version
from tests import builders
from tests.conftest import logged_in

pytestmark = pytest.mark.django_db


def endpoint_row(page: str, slug: str) -> list[str]:
    """The cells of one endpoint's row, as text."""
    row = re.search(rf'<tr data-endpoint="{re.escape(slug)}">(.*?)</tr>', page, re.S)
    assert row, page
    return [re.sub(r"<[^>]+>", "", cell).strip() for cell in re.findall(r"<td>(.*?)</td>", row[1])]


def test_admin_sees_work_per_endpoint_counted_by_status(admin: User) -> None:
    fast, slow = builders.endpoint("fast"), builders.endpoint("slow")
    slow.max_concurrency = 3
    slow.save()
    suite = builders.suite("ops", ["AR", "AR", "QA", "QA", "MR"])
    items = list(suite.items.order_by("external_id"))
    run = builders.campaign("ops", suite, [fast, slow], status="running")
    statuses = [
        GenerationStatus.QUEUED,
        GenerationStatus.QUEUED,
        GenerationStatus.RUNNING,
        GenerationStatus.SUCCEEDED,
        GenerationStatus.FAILED,
    ]
    for item, status in zip(items, statuses, strict=True):
        builders.generation(run, item, slow, status=status)
    done = builders.generation(run, items[0], fast)
    builders.judgement(done, slow, status=JudgementStatus.RUNNING)
    builders.judgement(done, fast, status=JudgementStatus.QUEUED)
    builders.judgement(done, fast, status=JudgementStatus.PARSED, score=7, prompt_version="v0")

    page = logged_in(admin).get("/operations/").content.decode()

    # running / slots, generations queued, running, judgements queued, running
    assert endpoint_row(page, "slow")[1:] == ["2 / 3", "2", "1", "0", "1"]
    assert endpoint_row(page, "fast")[1:] == [f"0 / {fast.max_concurrency}", "0", "0", "1", "0"]
    assert re.search(r'id="generations-running">1<', page)
    assert re.search(r'id="generations-queued">2<', page)
    assert f"gradebench {gradebench_version()}" in page
    database = re.search(r'<tr id="database-status">(.*?)</tr>', page, re.S)
    assert database and "reachable" in database[1] and "unreachable" not in database[1]


def test_the_page_never_waits_for_the_workers(admin: User, settings) -> None:
    """The ping, which can take seconds, is its own request (htmx loads it)."""
    page = logged_in(admin).get("/operations/").content.decode()
    workers = re.search(r'<tr id="workers"([^>]*)>', page)
    assert workers and 'hx-trigger="load"' in workers[1]
    assert "asking…" in page


def test_workers_not_answering_are_reported(admin: User, monkeypatch) -> None:
    monkeypatch.setattr(operations, "WORKER_TIMEOUT_S", 0.3)
    headers = {"HX-Request": "true", "HX-Target": "workers"}
    response = logged_in(admin).get("/operations/", headers=headers)
    fragment = response.content.decode()
    assert response.status_code == 200
    assert fragment.lstrip().startswith('<tr id="workers"')  # the row alone
    assert "not answering" in fragment and "no worker answered within 0.3 s" in fragment
    assert "<html" not in fragment


def test_a_worker_busy_behind_a_backlog_is_working_not_dead(admin: User, monkeypatch) -> None:
    """A ping waits behind every message queued before it: a worker streaming answers with a
    backlog would not take it in time. A live lease on running work says it is at work."""
    monkeypatch.setattr(operations, "WORKER_TIMEOUT_S", 0.3)
    pinged: list[object] = []
    monkeypatch.setattr(operations.worker_ping, "worker_responds", lambda **kw: pinged.append(kw))
    alpha = builders.endpoint("alpha")
    suite = builders.suite("ops", ["AR", "QA", "MR"])
    run = builders.campaign("ops", suite, [alpha], status="running")
    first, second, third = (
        builders.generation(run, item, alpha, status=status)
        for item, status in zip(
            suite.items.order_by("external_id"),
            [GenerationStatus.RUNNING, GenerationStatus.RUNNING, GenerationStatus.QUEUED],
            strict=True,
        )
    )
    now = timezone.now()
    live = now + timedelta(seconds=settings.GENERATION_LEASE_S - 4)  # renewed 4 s ago
    Generation.objects.filter(pk=first.pk).update(lease_expires_at=live)
    # An expired lease: its worker is gone (recovery will queue the answer again).
    Generation.objects.filter(pk=second.pk).update(lease_expires_at=now - timedelta(seconds=1))
    headers = {"HX-Request": "true", "HX-Target": "workers"}

    fragment = logged_in(admin).get("/operations/", headers=headers).content.decode()

    assert "working: 1 answers under live leases, the latest renewed 4 s ago" in fragment
    assert "not answering" not in fragment and pinged == []

    Generation.objects.filter(pk=first.pk).update(lease_expires_at=now - timedelta(seconds=1))
    fragment = logged_in(admin).get("/operations/", headers=headers).content.decode()
    assert "not answering" in fragment and len(pinged) == 1  # no live lease: ask by ping
    assert third.lease_expires_at is None  # queued work holds no lease


def test_an_unreachable_broker_is_a_finding_not_an_error(admin: User, monkeypatch) -> None:
    monkeypatch.setattr(operations, "BROKER_TIMEOUT_S", 1)
    monkeypatch.setattr(
        operations.current_app,
        "connection_for_read",
        lambda: Connection("redis://127.0.0.1:1/0", connect_timeout=0.5),
    )
    response = logged_in(admin).get("/operations/")
    assert response.status_code == 200
    broker = re.search(r'<tr id="broker-status">(.*?)</tr>', response.content.decode(), re.S)
    assert broker and "unreachable" in broker[1]
    assert "OperationalError" in broker[1] or "Error" in broker[1]


@pytest.mark.parametrize("persona", ["alice", "nobody"])
def test_only_admins_open_the_operations_page(request, persona: str) -> None:
    user = request.getfixturevalue(persona)
    assert logged_in(user).get("/operations/").status_code == 403
    assert logged_in(user).get("/operations/?ping=1").status_code == 403
    response = Client().get("/operations/")
    assert response.status_code == 302 and "/login/" in response["Location"]
