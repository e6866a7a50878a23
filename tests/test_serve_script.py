"""`deploy/serve.sh` (what `make serve` runs) refuses, before touching anything, to start
production mode without PostgreSQL, Redis and a secret key, and says what is missing."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO

COMPLETE = {
    "DATABASE_URL": "postgres://gradebench@127.0.0.1:1/gradebench",
    "REDIS_URL": "redis://127.0.0.1:1/0",
    "SECRET_KEY": "a-long-random-production-key-for-the-refusal-test-0123456789",
}


def serve(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "ENV_FILE": str(tmp_path / "absent.env"),
        "GRADEBENCH_VAR_DIR": str(tmp_path / "var"),
        "PYTHON": "/bin/false",  # nothing may run past the checks
    }
    return subprocess.run(
        ["deploy/serve.sh"], cwd=REPO, env={**base, **env}, capture_output=True, text=True
    )


@pytest.mark.parametrize("missing", sorted(COMPLETE))
def test_serve_refuses_without_each_required_variable(tmp_path: Path, missing: str) -> None:
    result = serve(tmp_path, {k: v for k, v in COMPLETE.items() if k != missing})
    assert result.returncode == 2
    assert f"serve: {missing} not set" in result.stderr
    assert not (tmp_path / "var").exists()


def test_serve_refuses_sqlite_and_points_to_the_demo(tmp_path: Path) -> None:
    result = serve(tmp_path, {**COMPLETE, "DATABASE_URL": "sqlite:///var/db.sqlite3"})
    assert result.returncode == 2
    assert "DATABASE_URL must be a PostgreSQL URL" in result.stderr
    assert "make demo" in result.stderr


def test_serve_reads_missing_variables_from_the_env_file_but_the_environment_wins(
    tmp_path: Path,
) -> None:
    env_file = tmp_path / "team.env"
    env_file.write_text(
        "# a comment\nREDIS_URL=redis://127.0.0.1:1/0\nDATABASE_URL=sqlite:///from-the-file\n"
    )
    result = serve(
        tmp_path,
        {
            "ENV_FILE": str(env_file),
            "DATABASE_URL": COMPLETE["DATABASE_URL"],
            "SECRET_KEY": COMPLETE["SECRET_KEY"],
        },
    )
    # Past every check (REDIS_URL from the file, DATABASE_URL from the environment), it tried
    # to migrate with PYTHON=/bin/false.
    assert "not set" not in result.stderr and "must be" not in result.stderr, result.stderr
    assert result.returncode == 1
