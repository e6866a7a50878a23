"""Shared personas and real-process fixtures.

Personas: `admin` (staff), `alice` and `bob` (reviewers), `nobody` (logged-in user with no role).
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.utils import translation

from grading.roles import reviewers_group

REPO = Path(__file__).resolve().parent.parent
PASSWORD = "a-long-test-password-42"


@pytest.fixture(autouse=True, scope="session")
def _plain_http_settings() -> None:
    """Tests speak plain HTTP (test client and live server) and do not run collectstatic.

    Session-scoped and autouse, so it is in place before the live server builds its middleware.
    """
    settings.SECURE_SSL_REDIRECT = False
    settings.SECURE_HSTS_SECONDS = 0
    settings.SESSION_COOKIE_SECURE = settings.CSRF_COOKIE_SECURE = False
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    settings.WHITENOISE_USE_FINDERS = True
    settings.WHITENOISE_AUTOREFRESH = True
    os.makedirs(settings.STATIC_ROOT, exist_ok=True)


def _is_transactional(request: pytest.FixtureRequest) -> bool:
    marker = request.node.get_closest_marker("django_db")
    if marker is not None and marker.kwargs.get("transaction"):
        return True
    return bool({"transactional_db", "live_server"} & set(request.fixturenames))


def _uses_database(request: pytest.FixtureRequest) -> bool:
    return request.node.get_closest_marker("django_db") is not None or "db" in request.fixturenames


@pytest.fixture(autouse=True)
def _reference_data(request: pytest.FixtureRequest) -> None:
    """Every database test finds the migrated reference data (task types, rubric v1).

    A transactional test flushes every table afterwards, that data included, and in random
    order any test can come after one; so put it back (the data migrations' own functions are
    idempotent) whenever it is missing. In an ordinary test that happens inside the test's
    transaction and is rolled back with it.
    """
    if _is_transactional(request):
        request.getfixturevalue("transactional_db")
    elif _uses_database(request):
        request.getfixturevalue("db")
    else:
        return
    from django.apps import apps

    from grading.models import Rubric
    from inference.models import TaskType

    if TaskType.objects.exists() and Rubric.objects.exists():
        return
    for module in ("inference.migrations.0002_task_types", "grading.migrations.0002_rubric_v1"):
        importlib.import_module(module).install(apps, None)


@pytest.fixture
def admin(db: None) -> User:
    return User.objects.create_user(
        "admin", "admin@example.org", PASSWORD, is_staff=True, is_superuser=True
    )


@pytest.fixture
def alice(db: None) -> User:
    user = User.objects.create_user("alice", "alice@example.org", PASSWORD)
    user.groups.add(reviewers_group())
    return user


@pytest.fixture
def bob(db: None) -> User:
    user = User.objects.create_user("bob", "bob@example.org", PASSWORD)
    user.groups.add(reviewers_group())
    return user


@pytest.fixture
def nobody(db: None) -> User:
    return User.objects.create_user("nobody", "nobody@example.org", PASSWORD)


Argument = TypeVar("Argument")
Result = TypeVar("Result")


def all_at_once(work: Callable[[Argument], Result], arguments: Sequence[Argument]) -> list[Result]:
    """`work(argument)` for every argument, each in a thread of its own, all released together
    by a barrier; their results in the order they finished. Each thread closes its database
    connection; the test fails if any of them raised."""
    barrier = threading.Barrier(len(arguments))
    results: list[Result] = []
    errors: list[BaseException] = []

    def run(argument: Argument) -> None:
        try:
            barrier.wait()
            results.append(work(argument))
        except BaseException as error:  # reported below
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(argument,)) for argument in arguments]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    return results


def logged_in(user: User) -> Client:
    client = Client()
    client.force_login(user, backend="django.contrib.auth.backends.ModelBackend")
    return client


@pytest.fixture
def admin_client(admin: User) -> Client:
    return logged_in(admin)


@pytest.fixture
def alice_client(alice: User) -> Client:
    return logged_in(alice)


def database_url_for_subprocess() -> str:
    """The URL of the database this test uses (the test database), for a child process."""
    params = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{params['NAME']}"
    user = params.get("USER") or ""
    password = f":{params['PASSWORD']}" if params.get("PASSWORD") else ""
    auth = f"{user}{password}@" if user else ""
    port = f":{params['PORT']}" if params.get("PORT") else ""
    return f"postgres://{auth}{params.get('HOST') or 'localhost'}{port}/{params['NAME']}"


def subprocess_env(**overrides: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "grading.settings",
            "DATABASE_URL": database_url_for_subprocess(),
            "GRADEBENCH_VAR_DIR": str(settings.VAR_DIR),
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(overrides)
    return env


class WorkerProcess:
    """A real `celery worker` child process consuming one private queue."""

    def __init__(self, process: subprocess.Popen[str], queue: str, log: Path) -> None:
        self.process = process
        self.queue = queue
        self.log = log

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def celery_worker_process(tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Start real Celery worker processes; each gets its own queue and is stopped afterwards.

    The test must use `transactional_db` so the worker sees committed rows.
    """
    started: list[WorkerProcess] = []

    def start(
        broker_url: str | None = None, queue: str | None = None, concurrency: int = 8, **env: str
    ) -> WorkerProcess:
        queue = queue or f"test-{uuid.uuid4().hex[:8]}"
        name = f"{queue}-{len(started)}"
        log = tmp_path / f"{name}.log"
        overrides = {"CELERY_DEFAULT_QUEUE": queue, **env}
        if broker_url is not None:
            overrides["CELERY_BROKER_URL"] = broker_url
        # fmt: off
        command = [
            sys.executable, "-m", "celery", "-A", "grading", "worker",
            "-Q", queue, "-n", f"{name}@%h", "--concurrency", str(concurrency),
            "--loglevel", "INFO", "--without-mingle", "--without-gossip", "--without-heartbeat",
        ]
        # fmt: on
        handle = log.open("w")
        process = subprocess.Popen(
            command,
            cwd=REPO,
            env=subprocess_env(**overrides),
            stdout=handle,
            stderr=subprocess.STDOUT,
            text=True,
        )
        worker = WorkerProcess(process, queue, log)
        started.append(worker)
        deadline = time.monotonic() + 60
        while "ready." not in worker.output():
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"celery worker did not start:\n{worker.output()}")
            time.sleep(0.2)
        return worker

    yield start
    for worker in started:
        worker.process.terminate()
        try:
            worker.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.process.kill()
            worker.process.wait()


def _runs_in_a_transaction(item: Any) -> bool:
    marker = item.get_closest_marker("django_db")
    if marker is not None and marker.kwargs.get("transaction"):
        return True
    return bool({"transactional_db", "live_server"} & set(getattr(item, "fixturenames", ())))


def pytest_collection_modifyitems(config: Any, items: list[Any]) -> None:
    """Transactional tests run after the others; tests needing Redis skip with a reason when
    REDIS_URL is not set."""
    # A transactional test flushes every table when it ends, the migrated reference data (task
    # types, the rubric) included. pytest-django runs them last for that reason, but
    # pytest-randomly shuffles after it: put them last again. The sort is stable, so the
    # random order stays within each group.
    items.sort(key=_runs_in_a_transaction)
    if os.environ.get("REDIS_URL"):
        return
    skip = pytest.mark.skip(reason="REDIS_URL is not set")
    for item in items:
        if "redis" in item.keywords:
            item.add_marker(skip)


CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="session")
def browser_type_launch_args() -> dict[str, Any]:
    """Debian's Chromium (never a downloaded browser), with the flags this machine needs."""
    if not CHROMIUM.exists():
        pytest.skip("Chromium is not installed (apt-get install chromium fonts-noto-cjk)")
    # Playwright's sync API runs an event loop in this thread; the ORM calls the tests make
    # around it are still plain synchronous calls.
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    return {
        "executable_path": str(CHROMIUM),
        "headless": True,
        "args": [
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
        ],
    }


def browser_login(page: Any, base_url: str, username: str, password: str = PASSWORD) -> None:
    page.goto(f"{base_url}/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("main button[type=submit]")
    page.wait_for_url(f"{base_url}/")


@pytest.fixture(autouse=True)
def _default_language() -> Iterator[None]:
    """Every test starts, and leaves, in the default language: a test that switches to Chinese
    (the UI's language switch activates it for the thread) must not change what the next reads."""
    translation.activate(settings.LANGUAGE_CODE)
    yield
    translation.activate(settings.LANGUAGE_CODE)
