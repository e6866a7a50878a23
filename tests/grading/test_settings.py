"""Settings come from the environment; production settings pass `check --deploy` clean."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

PRODUCTION_ENV = {
    "DEBUG": "0",
    "SECRET_KEY": "x7Gq2vN9pL4mR8tW1zY6bC3dF5hJ0kS2aE9uI7oP4lK1nM6vB8xZ3cQ5wT0yR2e",
    "ALLOWED_HOSTS": "grading.example.org",
    "CSRF_TRUSTED_ORIGINS": "https://grading.example.org",
}


def read_settings(env: dict[str, str], *names: str) -> dict[str, object]:
    """Import the settings module in a fresh interpreter with exactly this environment."""
    code = (
        "import json, grading.settings as s;"
        f"print(json.dumps({{n: getattr(s, n) for n in {list(names)!r}}}, default=str))"
    )
    base = {"PATH": "/usr/bin:/bin", "HOME": "/tmp"}
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env={**base, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


def test_database_url_selects_postgresql() -> None:
    values = read_settings(
        {"DATABASE_URL": "postgres://grader:s3cret@db.internal:5433/gradebench"}, "DATABASES"
    )
    default = values["DATABASES"]["default"]  # type: ignore[index]
    assert default["ENGINE"] == "django.db.backends.postgresql"
    assert (default["NAME"], default["HOST"], default["PORT"], default["USER"]) == (
        "gradebench",
        "db.internal",
        5433,
        "grader",
    )


def test_without_database_url_sqlite_runs_in_wal_mode() -> None:
    values = read_settings({}, "DATABASES")
    default = values["DATABASES"]["default"]  # type: ignore[index]
    assert default["ENGINE"] == "django.db.backends.sqlite3"
    assert default["NAME"].endswith("gradebench.sqlite3")
    assert "journal_mode=WAL" in default["OPTIONS"]["init_command"]


def test_redis_url_is_broker_and_cache() -> None:
    values = read_settings(
        {"REDIS_URL": "redis://cache.internal:6380/2"},
        "CELERY_BROKER_URL",
        "CACHES",
        "CELERY_BROKER_TRANSPORT_OPTIONS",
        "CELERY_TASK_TIME_LIMIT",
    )
    assert values["CELERY_BROKER_URL"] == "redis://cache.internal:6380/2"
    assert values["CACHES"]["default"]["LOCATION"] == "redis://cache.internal:6380/2"  # type: ignore[index]
    visibility = values["CELERY_BROKER_TRANSPORT_OPTIONS"]["visibility_timeout"]  # type: ignore[index]
    assert visibility > values["CELERY_TASK_TIME_LIMIT"]  # type: ignore[operator]


def test_without_redis_url_the_broker_is_embedded() -> None:
    values = read_settings({}, "CELERY_BROKER_URL", "CACHES")
    assert values["CELERY_BROKER_URL"] == "filesystem://"
    assert "FileBasedCache" in values["CACHES"]["default"]["BACKEND"]  # type: ignore[index]


def test_celery_is_configured_for_safe_redelivery() -> None:
    values = read_settings(
        {},
        "CELERY_TASK_ACKS_LATE",
        "CELERY_WORKER_PREFETCH_MULTIPLIER",
        "CELERY_TASK_SERIALIZER",
        "CELERY_ACCEPT_CONTENT",
        "CELERY_TASK_REJECT_ON_WORKER_LOST",
    )
    assert values == {
        "CELERY_TASK_ACKS_LATE": True,
        "CELERY_WORKER_PREFETCH_MULTIPLIER": 1,
        "CELERY_TASK_SERIALIZER": "json",
        "CELERY_ACCEPT_CONTENT": ["json"],
        "CELERY_TASK_REJECT_ON_WORKER_LOST": True,
    }


def test_a_malformed_boolean_is_an_error_not_a_guess() -> None:
    result = subprocess.run(
        [sys.executable, "-c", "import grading.settings"],
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", "DEBUG": "maybe"},
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert "DEBUG='maybe' is not a boolean" in result.stderr


def check_deploy(var_dir: Path, *, without: str = "") -> subprocess.CompletedProcess[str]:
    """`manage.py check --deploy` failing on warnings, in a fresh interpreter with the production
    environment, less the variable `without`."""
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "GRADEBENCH_VAR_DIR": str(var_dir)}
    env.update(PRODUCTION_ENV)
    env.pop(without, None)
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )


def test_check_deploy_is_clean_with_production_settings(tmp_path: Path) -> None:
    result = check_deploy(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_check_deploy_warns_about_the_development_secret_key(tmp_path: Path) -> None:
    result = check_deploy(tmp_path, without="SECRET_KEY")
    assert result.returncode != 0
    assert "security.W009" in result.stdout + result.stderr
