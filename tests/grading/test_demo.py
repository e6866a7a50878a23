"""`manage.py demo` (what `make demo` runs) serves the login page, its printed credentials log
in, and Ctrl-C stops every process it started without losing work: what was running is queued
again, and the next start runs it."""

from __future__ import annotations

import contextlib
import http.cookiejar
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.worker


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def processes_using(var_dir: Path) -> list[int]:
    """Pids of processes whose environment points at this demo's var folder."""
    marker = f"GRADEBENCH_VAR_DIR={var_dir}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def log_in(base: str, username: str, password: str, then: str = "") -> str:
    """Log in through the form; return the page shown after it (or the page `then`)."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    page = opener.open(f"{base}/login/").read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert token, page
    form = urllib.parse.urlencode(
        {"username": username, "password": password, "csrfmiddlewaretoken": token.group(1)}
    ).encode()
    landing = opener.open(f"{base}/login/", data=form).read().decode()
    return opener.open(f"{base}{then}").read().decode() if then else landing


def start_demo(tmp_path: Path, web: int, fastdeploy: int, vllm: int) -> subprocess.Popen[bytes]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL"}
    }
    env.update({"DEBUG": "1", "GRADEBENCH_VAR_DIR": str(tmp_path), "PYTHONUNBUFFERED": "1"})
    command = [
        sys.executable,
        "manage.py",
        "demo",
        "--port",
        str(web),
        "--fastdeploy-port",
        str(fastdeploy),
        "--vllm-port",
        str(vllm),
    ]
    with (tmp_path / "demo.log").open("a") as handle:
        return subprocess.Popen(
            command,
            cwd=REPO,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def ctrl_c(demo: subprocess.Popen[bytes]) -> None:
    """What a terminal does on Ctrl-C: SIGINT to the foreground process group."""
    os.killpg(demo.pid, signal.SIGINT)
    demo.wait(timeout=40)


def generations(tmp_path: Path) -> dict[int, tuple[str, str | None, str]]:
    """The demo database's generations: id → (status, started_at, error)."""
    with contextlib.closing(sqlite3.connect(tmp_path / "gradebench.sqlite3")) as db:
        rows = db.execute("SELECT id, status, started_at, error FROM inference_generation")
        return {pk: (status, started, error) for pk, status, started, error in rows}


def test_demo_serves_logs_in_and_stops_everything_on_ctrl_c(tmp_path: Path) -> None:
    web, fastdeploy, vllm = free_port(), free_port(), free_port()
    log = tmp_path / "demo.log"
    demo = start_demo(tmp_path, web, fastdeploy, vllm)
    try:
        deadline = time.monotonic() + 120
        while "demo is ready" not in log.read_text():
            assert demo.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.5)
        output = log.read_text()
        admin_password = re.search(r"admin +admin / (\S+)", output)
        reviewer_password = re.search(r"reviewer +reviewer / (\S+)", output)
        assert admin_password and reviewer_password, output
        base = f"http://127.0.0.1:{web}"
        assert "Welcome, admin" in log_in(base, "admin", admin_password.group(1))
        assert "Welcome, reviewer" in log_in(base, "reviewer", reviewer_password.group(1))
        # The reference study's published tables are there to compare from the start.
        results = log_in(base, "admin", admin_password.group(1), then="/results/")
        assert results.count('class="table results-table"') == 3, results[:3000]
        plotly = re.search(r'src="([^"]*vendor/plotly[^"]*\.js)"', results)
        assert plotly, results[:3000]
        assert b"plotly" in urllib.request.urlopen(f"{base}{plotly.group(1)}").read(4096)  # noqa: S310
        models = urllib.request.urlopen(f"http://127.0.0.1:{fastdeploy}/v1/models").read()
        assert b"ERNIE-4.5-0.3B" in models
        # A fresh machine: the reference study and the sample suite were loaded.
        assert "endpoints: created 6, updated 0, unchanged 0" in output
        assert re.search(r"^created \d{2,}, updated 0, unchanged 0$", output, re.M), output
        assert len(processes_using(tmp_path)) >= 4  # demo, simulator, worker, web
        # The three reference matchups run against the simulator.
        assert re.search(r"campaign small: \d+ new generations queued", output), output
        deadline = time.monotonic() + 60
        while ": 'succeeded'" not in log.read_text():  # a task's return value in the worker log
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
    finally:
        ctrl_c(demo)
    time.sleep(0.5)
    assert processes_using(tmp_path) == [], log.read_text()[-3000:]
    for port in (web, fastdeploy, vllm):
        with socket.socket() as sock, pytest.raises(OSError):
            sock.connect(("127.0.0.1", port))

    assert_nothing_lost(tmp_path)
    stopped = generations(tmp_path)
    assert any(status == "queued" and started for status, started, _ in stopped.values())
    done = sum(status == "succeeded" for status, _, _ in stopped.values())

    # Starting again carries on with the run, with nothing to do by hand (test_pipeline follows
    # handed-back generations to their complete answers); stopping again still loses nothing.
    demo = start_demo(tmp_path, web, fastdeploy, vllm)
    try:
        deadline = time.monotonic() + 120
        while sum(status == "succeeded" for status, _, _ in generations(tmp_path).values()) <= done:
            assert demo.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
    finally:
        ctrl_c(demo)
    assert processes_using(tmp_path) == [], log.read_text()[-3000:]
    assert_nothing_lost(tmp_path)


def assert_nothing_lost(tmp_path: Path) -> None:
    """No generation failed, and none is left running: what ran is queued again."""
    rows = generations(tmp_path).values()
    failed = [row for row in rows if row[0] == "failed"]
    running = [row for row in rows if row[0] == "running"]
    assert not failed and not running, (failed[:5], running[:5])
