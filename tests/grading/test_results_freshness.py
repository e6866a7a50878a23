"""After a new score the results pages answer at once with their previous figures, marked
"updating", while exactly one rebuild runs (in a Celery worker, or in a thread when none
answers); a failed rebuild keeps the old figures and waits for its cool-down."""

from __future__ import annotations

import logging
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.cache import cache
from django.db import connection
from django.utils import timezone

from grading import comparison, freshness
from grading.models import FigureBuild, ReviewSettings, Rubric, Score
from inference.models import Campaign, Generation
from tests.conftest import all_at_once, logged_in
from tests.grading.test_results_pages import (
    build_fixed_study,
    join_rebuild_threads,
    rebuild_in_threads,
    results_url,
    table_rows,
    wait_until_fresh,
)

POLL = {"HX-Request": "true", "HX-Target": "results", "HX-Trigger": "freshness"}
UPDATING = re.compile(r"Figures as of (\d\d:\d\d:\d\d) — updating")


class BuildSpy:
    """Counts `comparison.build` calls in this process, where they ran, and how many at once.

    `gate`, when set up, holds every build until it is opened; `fail` makes builds raise.
    """

    def __init__(self, original: Callable[..., comparison.Base]) -> None:
        self.original = original
        self.calls: list[str] = []
        self.running = 0
        self.most_at_once = 0
        self.lock = threading.Lock()
        self.entered = threading.Event()
        self.gate: threading.Event | None = None
        self.fail = False

    def __call__(self, *args: Any, **kwargs: Any) -> comparison.Base:
        with self.lock:
            self.calls.append(threading.current_thread().name)
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        try:
            self.entered.set()
            if self.gate is not None:
                assert self.gate.wait(60), "the test never opened the gate"
            if self.fail:
                raise RuntimeError("the statistics ran out of memory")
            return self.original(*args, **kwargs)
        finally:
            with self.lock:
                self.running -= 1

    def reset(self) -> None:
        self.calls.clear()
        self.entered.clear()


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> BuildSpy:
    watcher = BuildSpy(comparison.build)
    monkeypatch.setattr(comparison, "build", watcher)
    return watcher


@pytest.fixture
def study(db: None) -> Iterator[Campaign]:
    cache.clear()
    yield build_fixed_study()
    join_rebuild_threads()


def add_score(campaign: Campaign) -> None:
    """A late reviewer gives alpha-m's TC-0 answer a 10: its TC cell goes from 3.0 to 5.0."""
    generation = Generation.objects.get(
        campaign=campaign, item__external_id="TC-0", endpoint__slug="alpha-m", status="succeeded"
    )
    Score.objects.create(
        generation=generation, reviewer=User.objects.get_or_create(username="late")[0],
        score=10, position=0, rubric=Rubric.objects.current(), scored_at=timezone.now(),
    )  # fmt: skip
    ReviewSettings.objects.scores_changed([campaign.pk])


def scope_key(campaign: Campaign) -> str:
    chosen = list(comparison.campaigns_queryset().filter(pk=campaign.pk))
    return freshness.scope_of(chosen, reviewer="", scored_only=False).key


def test_next_request_after_a_score_shows_previous_figures_marked_and_builds_nothing(
    study: Campaign, admin: User, spy: BuildSpy, django_capture_on_commit_callbacks: Any
) -> None:
    client = logged_in(admin)
    first = client.get(results_url(study)).content.decode()
    assert spy.calls == [threading.current_thread().name]  # a first visit builds, as before
    assert not UPDATING.search(first) and 'hx-trigger="every 2s"' not in first
    add_score(study)

    with django_capture_on_commit_callbacks() as dispatched:
        html = client.get(results_url(study)).content.decode()

    assert len(spy.calls) == 1  # the request did not build
    assert table_rows(html)["TC"]["a"] == "3.0"  # the previous figures
    shown = UPDATING.search(html)
    assert shown, html
    built: freshness.Built = cache.get(f"figures:{scope_key(study)}")
    assert shown[1] == timezone.localtime(built.as_of).strftime("%H:%M:%S")
    assert f'hx-get="{results_url(study)}" hx-trigger="every 2s" hx-target="#results"' in html
    # One rebuild was claimed and handed on, to start once the request's transaction commits.
    assert FigureBuild.objects.filter(key=scope_key(study)).count() == 1
    assert len(dispatched) == 1
    # The status line's poll gets "nothing new" while the figures are stale.
    assert client.get(results_url(study), headers=POLL).status_code == 204


def test_the_mark_speaks_chinese(study: Campaign, admin: User) -> None:
    client = logged_in(admin)
    client.post("/i18n/setlang/", {"language": "zh-hans", "next": "/"})
    client.get(results_url(study))
    add_score(study)
    html = client.get(results_url(study)).content.decode()
    assert re.search(r"数据截至 \d\d:\d\d:\d\d — 正在更新", html), html


@pytest.mark.django_db(transaction=True)
def test_ten_requests_at_once_after_a_score_start_exactly_one_rebuild(
    study: Campaign, admin: User, spy: BuildSpy
) -> None:
    rebuild_in_threads()
    clients = [logged_in(admin) for _ in range(10)]
    clients[0].get(results_url(study))
    spy.reset()
    spy.gate = threading.Event()  # the rebuild lasts until every request has answered
    add_score(study)

    def ask(client: Any) -> str:
        response = client.get(results_url(study))
        assert response.status_code == 200
        return str(response.content.decode())

    pages = all_at_once(ask, clients)
    assert all(table_rows(page)["TC"]["a"] == "3.0" and UPDATING.search(page) for page in pages)
    spy.gate.set()
    assert table_rows(wait_until_fresh(clients[0], results_url(study)))["TC"]["a"] == "5.0"
    assert len(spy.calls) == 1 and spy.most_at_once == 1
    assert spy.calls[0].startswith(freshness.THREAD_NAME)
    assert not FigureBuild.objects.exists()  # the claim is released


@pytest.mark.django_db(transaction=True)
def test_fresh_figures_replace_the_stale_ones_through_the_poll(
    study: Campaign, admin: User, spy: BuildSpy
) -> None:
    rebuild_in_threads()
    client = logged_in(admin)
    client.get(results_url(study))
    spy.gate = threading.Event()
    add_score(study)
    assert UPDATING.search(client.get(results_url(study)).content.decode())
    assert spy.entered.wait(30)  # the rebuild has started, and waits at the gate
    assert client.get(results_url(study), headers=POLL).status_code == 204
    spy.gate.set()
    deadline = time.monotonic() + 30
    while (response := client.get(results_url(study), headers=POLL)).status_code == 204:
        assert time.monotonic() < deadline, "the figures stayed stale"
        time.sleep(0.05)
    html = response.content.decode()
    assert "<html" not in html and 'id="results"' in html  # swapped into #results
    assert table_rows(html)["TC"]["a"] == "5.0"
    assert 'id="freshness"' not in html and "every 2s" not in html  # the polling stops


@pytest.mark.django_db(transaction=True)
def test_a_failing_rebuild_keeps_the_old_figures_logs_and_cools_down(
    study: Campaign, admin: User, spy: BuildSpy, caplog: pytest.LogCaptureFixture
) -> None:
    rebuild_in_threads()
    client = logged_in(admin)
    client.get(results_url(study))
    spy.reset()
    spy.fail = True
    add_score(study)
    key = scope_key(study)

    with caplog.at_level(logging.ERROR, logger="grading.freshness"):
        assert table_rows(client.get(results_url(study)).content.decode())["TC"]["a"] == "3.0"
        join_rebuild_threads()
    failed = [r for r in caplog.records if getattr(r, "key", None) == key]
    assert len(failed) == 1 and failed[0].exc_info
    assert "ran out of memory" in str(failed[0].exc_info[1])
    claim = FigureBuild.objects.get(key=key)
    assert "RuntimeError: the statistics ran out of memory" in claim.error
    assert claim.expires_at > timezone.now()

    # During the cool-down: the old figures, still marked, and no new attempt.
    for _ in range(3):
        html = client.get(results_url(study)).content.decode()
        assert table_rows(html)["TC"]["a"] == "3.0" and UPDATING.search(html)
    join_rebuild_threads()
    assert len(spy.calls) == 1

    # Once it has cooled down, the next request tries again.
    FigureBuild.objects.filter(key=key).update(expires_at=timezone.now() - timedelta(seconds=1))
    spy.fail = False
    assert table_rows(wait_until_fresh(client, results_url(study)))["TC"]["a"] == "5.0"
    assert len(spy.calls) == 2
    assert not FigureBuild.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_crashed_builders_claim_expires(study: Campaign, admin: User, spy: BuildSpy) -> None:
    rebuild_in_threads()
    client = logged_in(admin)
    client.get(results_url(study))
    spy.reset()
    add_score(study)
    key = scope_key(study)
    now = timezone.now()
    FigureBuild.objects.create(
        key=key, token="crashed", claimed_at=now, started_at=now,
        expires_at=now + timedelta(seconds=600),
    )  # fmt: skip
    assert UPDATING.search(client.get(results_url(study)).content.decode())
    join_rebuild_threads()
    assert spy.calls == []  # the claim holds while it lasts
    FigureBuild.objects.filter(key=key).update(expires_at=now - timedelta(seconds=1))
    assert table_rows(wait_until_fresh(client, results_url(study)))["TC"]["a"] == "5.0"
    assert len(spy.calls) == 1
    assert freshness.rebuild([study.pk], "", key, "crashed", runner="worker") == "skipped"


def test_a_claim_is_held_once_until_it_expires(db: None) -> None:
    key = secrets.token_hex(16)
    token = freshness.claim(key)
    assert token is not None
    assert freshness.claim(key) is None
    FigureBuild.objects.filter(key=key).update(expires_at=timezone.now() - timedelta(seconds=1))
    taken = freshness.claim(key)
    assert taken not in (None, token)
    assert freshness.claim(key) is None


@pytest.mark.django_db(transaction=True)
def test_a_first_visit_waits_for_the_build_already_under_way(
    study: Campaign, admin: User, spy: BuildSpy, monkeypatch: pytest.MonkeyPatch
) -> None:
    refused = threading.Event()
    original_claim = freshness.claim

    def watched_claim(key: str) -> str | None:
        token = original_claim(key)
        if token is None:
            refused.set()
        return token

    monkeypatch.setattr(freshness, "claim", watched_claim)
    spy.gate = threading.Event()
    pages: list[str] = []

    def visit() -> None:
        try:
            pages.append(logged_in(admin).get(results_url(study)).content.decode())
        finally:
            connection.close()

    first = threading.Thread(target=visit)
    first.start()
    assert spy.entered.wait(30)  # the first visit builds, held at the gate
    second = threading.Thread(target=visit)
    second.start()
    assert refused.wait(30)  # the second found the build claimed: it waits
    spy.gate.set()
    first.join(30)
    second.join(30)
    assert len(pages) == 2
    assert all(table_rows(page)["TC"]["a"] == "3.0" for page in pages)
    assert not any(UPDATING.search(page) for page in pages)
    assert len(spy.calls) == 1


@pytest.mark.django_db(transaction=True)
def test_without_a_worker_the_rebuild_runs_in_a_thread(
    study: Campaign, admin: User, spy: BuildSpy, settings: Any
) -> None:
    settings.CELERY_TASK_DEFAULT_QUEUE = f"nobody-listens-{secrets.token_hex(4)}"
    settings.RESULTS_WORKER_START_S = 1
    client = logged_in(admin)
    client.get(results_url(study))
    spy.reset()
    assert cache.get(freshness.WORKER_KEY) is None  # nothing known about workers yet
    add_score(study)
    assert UPDATING.search(client.get(results_url(study)).content.decode())
    assert table_rows(wait_until_fresh(client, results_url(study)))["TC"]["a"] == "5.0"
    assert len(spy.calls) == 1 and spy.calls[0].startswith(freshness.THREAD_NAME)
    # Remembered: the next rebuilds start in a thread at once, without asking a worker.
    assert cache.get(freshness.WORKER_KEY) == ""


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_with_a_worker_the_rebuild_runs_in_the_worker(
    study: Campaign, admin: User, spy: BuildSpy, settings: Any, celery_worker_process: Any
) -> None:
    worker = celery_worker_process()
    settings.CELERY_TASK_DEFAULT_QUEUE = worker.queue
    settings.RESULTS_WORKER_START_S = 120  # the web process would take over only after this
    client = logged_in(admin)
    client.get(results_url(study))
    spy.reset()
    add_score(study)
    assert UPDATING.search(client.get(results_url(study)).content.decode())
    assert table_rows(wait_until_fresh(client, results_url(study)))["TC"]["a"] == "5.0"
    assert spy.calls == []  # not built in this process
    output = worker.output()
    assert "gradebench.rebuild_results" in output, output
    assert "runner=worker" in output and "outcome=built" in output, output
    assert cache.get(freshness.WORKER_KEY)  # a worker answers: the next rebuilds go to it


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_open_page_swaps_in_fresh_figures_and_redraws_its_charts(
    page: Any, live_server: Any, study: Campaign, admin: User, spy: BuildSpy
) -> None:
    from tests.conftest import browser_login
    from tests.grading.test_results_browser import CHARTS, wait_for_charts, watch_console

    rebuild_in_threads()
    errors = watch_console(page)
    browser_login(page, live_server.url, "admin")
    page.goto(f"{live_server.url}{results_url(study)}")
    wait_for_charts(page)
    spy.gate = threading.Event()
    add_score(study)
    page.reload()
    assert UPDATING.search(page.locator("#freshness").inner_text())
    wait_for_charts(page)
    page.evaluate("window.__sameDocument = true")
    spy.gate.set()
    # No reload: the status line's poll brings the fresh figures into #results.
    page.wait_for_function(
        "() => !document.querySelector('#freshness') && [...document.querySelectorAll("
        "'tr[data-task-type=TC] td.mean-a')].some(td => td.textContent.trim() === '5.0')",
        timeout=30_000,
    )
    wait_for_charts(page, CHARTS)
    assert page.evaluate("window.__sameDocument") is True
    bars = page.evaluate("JSON.parse(document.getElementById('figure-bars').textContent)")
    assert {t["name"]: t["y"] for t in bars["data"]}["alpha-m"][1] == 5.0
    assert errors == []
