"""The production stack, started as an operator starts it (`deploy/serve.sh`, what `make serve`
runs): DEBUG off, collected static files, gunicorn with two workers, a Celery worker on Redis,
PostgreSQL, and the model simulator (`python -m inference.simulator`) as the model servers.

The test stands in for the TLS-terminating reverse proxy (it sends `X-Forwarded-Proto: https`
and `Origin`, and hands back the secure cookies), so every production security setting stays
on. An admin launches a small campaign over HTTP, a reviewer scores every answer, the admin
reads the results, the operator page and an export written by the worker, and a Ctrl-C stops
every process the stack started. Runs only against PostgreSQL and Redis (DATABASE_URL,
REDIS_URL), in a throwaway database of its own.
"""

from __future__ import annotations

import contextlib
import csv
import http.cookiejar
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import psycopg
import pytest

from tests.conftest import REPO

Found = TypeVar("Found")
DATABASE_URL = os.environ.get("DATABASE_URL", "")
REDIS_URL = os.environ.get("REDIS_URL", "")

pytestmark = [
    pytest.mark.worker,
    pytest.mark.redis,
    pytest.mark.skipif(
        not DATABASE_URL.startswith(("postgres://", "postgresql://"))
        or not REDIS_URL.startswith("redis://"),
        reason="the production stack runs on PostgreSQL and Redis: set DATABASE_URL and REDIS_URL",
    ),
]

SECRET_KEY = "k3Vq8-production-stack-test-9fJw2LxR7tBn4MzP6cYs1HdQ0aEuG5oTiW"
ADMIN_PASSWORD = "stack-admin-password-41"
REVIEWER_PASSWORD = "stack-reviewer-password-73"
ITEMS = [
    {"id": "stack-ar", "task_type": "AR", "prompt": "笔 : 写字 :: 剪刀 : ?"},
    {"id": "stack-qa", "task_type": "QA", "prompt": "What is the boiling point of water?"},
    {"id": "stack-mr", "task_type": "MR", "prompt": "What is 17 × 23? Show the steps."},
]
MODELS = ["ERNIE-4.5-0.3B-Paddle", "DeepSeek-R1-Distill-Qwen-1.5B"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def processes_using(var_dir: Path) -> list[int]:
    """Pids of processes whose environment points at this stack's var folder."""
    marker = f"GRADEBENCH_VAR_DIR={var_dir}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if marker in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


@contextlib.contextmanager
def throwaway_database() -> Iterator[str]:
    """A new, empty database on DATABASE_URL's server; its URL. Dropped afterwards."""
    url = urllib.parse.urlsplit(DATABASE_URL)
    name = f"{url.path.lstrip('/') or 'gradebench'}_stack_{os.getpid()}"
    server = url._replace(path="/postgres").geturl()
    with psycopg.connect(server, autocommit=True) as db:
        db.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        db.execute(f'CREATE DATABASE "{name}"')
    try:
        yield url._replace(path=f"/{name}").geturl()
    finally:
        with psycopg.connect(server, autocommit=True) as db:
            db.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class BehindTheProxy(http.cookiejar.DefaultCookiePolicy):
    """Secure cookies go back over the plain HTTP hop, as from a TLS-terminating proxy."""

    def return_ok_secure(self, cookie: http.cookiejar.Cookie, request: object) -> bool:
        return True


class NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


class Browser:
    """One person's session through the 'proxy': HTTPS as far as Django can tell."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.jar = http.cookiejar.CookieJar(BehindTheProxy())
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.jar), NoRedirects()
        )
        self.origin = "https://" + urllib.parse.urlsplit(base).netloc

    def request(self, path: str, form: dict[str, str] | None = None) -> tuple[int, dict, bytes]:
        """(status, headers, body) of one request; redirects are returned, not followed."""
        data = None
        headers = {"X-Forwarded-Proto": "https"}
        if form is not None:
            form = {"csrfmiddlewaretoken": self.csrf_token(), **form}
            data = urllib.parse.urlencode(form).encode()
            headers["Origin"] = self.origin
        request = urllib.request.Request(self.base + path, data=data, headers=headers)  # noqa: S310
        try:
            with self.opener.open(request, timeout=60) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), error.read()

    def get(self, path: str) -> str:
        status, _, body = self.request(path)
        assert status == 200, (path, status, body[:2000])
        return body.decode()

    def csrf_token(self) -> str:
        for cookie in self.jar:
            if cookie.name == "csrftoken" and cookie.value:
                return cookie.value
        self.request("/login/")
        return next(c.value for c in self.jar if c.name == "csrftoken" and c.value)

    def log_in(self, username: str, password: str) -> None:
        status, _, body = self.request("/login/", {"username": username, "password": password})
        assert status == 302, (status, body[:2000])
        cookies = {cookie.name: cookie for cookie in self.jar}
        assert cookies["sessionid"].secure and cookies["csrftoken"].secure


def wait_for(what: str, check: Callable[[], Found], timeout_s: float, log: Path) -> Found:
    """`check()`'s first truthy answer, asked until `timeout_s` runs out (then the test fails)."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"{what}:\n{log.read_text(errors='replace')[-4000:]}"
        time.sleep(0.3)


def manage(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def generation_counts(database_url: str) -> dict[str, int]:
    with psycopg.connect(database_url) as db:
        rows = db.execute("SELECT status, count(*) FROM inference_generation GROUP BY status")
        return dict(rows.fetchall())


def test_the_production_stack_runs_a_campaign_end_to_end_and_stops_cleanly(
    tmp_path: Path,
) -> None:
    web, fastdeploy, vllm = free_port(), free_port(), free_port()
    var_dir = tmp_path / "var"
    var_dir.mkdir()
    log = tmp_path / "serve.log"
    tag = f"stack{os.getpid()}"
    with throwaway_database() as database_url:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/tmp"),
            "PYTHON": sys.executable,
            "PYTHONUNBUFFERED": "1",
            "ENV_FILE": str(tmp_path / "no.env"),
            "GRADEBENCH_VAR_DIR": str(var_dir),
            "DATABASE_URL": database_url,
            "REDIS_URL": REDIS_URL,
            "SECRET_KEY": SECRET_KEY,
            "ALLOWED_HOSTS": "127.0.0.1",
            "GUNICORN_BIND": f"127.0.0.1:{web}",
            "GUNICORN_WORKERS": "2",
            "GUNICORN_THREADS": "2",
            "CELERY_WORKER_CONCURRENCY": "8",
            # A queue and cache keys of its own: other tests may share this Redis database.
            "CELERY_DEFAULT_QUEUE": tag,
            "CACHE_KEY_PREFIX": tag,
            "FASTDEPLOY_URL": f"http://127.0.0.1:{fastdeploy}/v1",
            "VLLM_URL": f"http://127.0.0.1:{vllm}/v1",
            # Every export goes through the worker, into the var folder the web server reads.
            "EXPORT_INLINE_MAX_ROWS": "1",
        }
        simulator = subprocess.Popen(
            [
                *(sys.executable, "-m", "inference.simulator", "--speed", "20"),
                *("--fastdeploy-port", str(fastdeploy), "--vllm-port", str(vllm)),
            ],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        with log.open("wb") as handle:
            stack = subprocess.Popen(
                ["deploy/serve.sh"],
                cwd=REPO,
                env=env,
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            base = f"http://127.0.0.1:{web}"
            admin = Browser(base)

            def healthy() -> bool:
                assert stack.poll() is None, log.read_text(errors="replace")
                with contextlib.suppress(OSError):
                    return admin.request("/healthz")[0] == 200
                return False

            wait_for("the web server answers", healthy, 90, log)
            output = log.read_text(errors="replace")
            assert "System check identified no issues" in output, output  # check --deploy
            # DEBUG is off: plain HTTP is sent to HTTPS, and a missing page is a bare 404.
            with contextlib.closing(socket.create_connection(("127.0.0.1", web))) as sock:
                sock.sendall(b"GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
                assert sock.recv(200).split(b"\r\n")[0].endswith(b" 301 Moved Permanently")
            status, _, body = admin.request("/no-such-page/")
            assert status in (302, 404) and b"Traceback" not in body and b"URLconf" not in body
            # Two gunicorn workers under the master, and a Celery worker.
            assert len(processes_using(var_dir)) >= 5, processes_using(var_dir)

            suite = tmp_path / "stack.jsonl"
            suite.write_text("".join(json.dumps(i, ensure_ascii=False) + "\n" for i in ITEMS))
            study = json.loads((REPO / "fixtures" / "study.json").read_text())
            endpoints = [e for e in study["endpoints"] if e["name"] in MODELS]
            (tmp_path / "study.json").write_text(
                json.dumps(
                    {
                        "endpoints": endpoints,
                        "campaigns": [
                            {
                                "slug": "stack",
                                "name": "Production stack",
                                "matchup": "small",
                                "models": [e["slug"] for e in endpoints],
                                "suite": "stack",
                                "samples": 1,
                                "params": {"temperature": 0.7, "max_tokens": 48},
                                "reviewers_per_output": 1,
                                "layout": "side_by_side",
                            }
                        ],
                    }
                )
            )
            manage(env, "import_tasks", str(suite))
            manage(env, "load_study", str(tmp_path / "study.json"))
            manage(
                {**env, "DJANGO_SUPERUSER_PASSWORD": ADMIN_PASSWORD},
                *(
                    "createsuperuser",
                    "--noinput",
                    "--username",
                    "admin",
                    "--email",
                    "admin@example.org",
                ),
            )
            manage(env, "createreviewer", "reviewer", "--password", REVIEWER_PASSWORD)

            admin.log_in("admin", ADMIN_PASSWORD)
            campaigns = admin.get("/campaigns/")
            found = re.search(r'href="/campaigns/(?!import/)([A-Za-z0-9_-]+)/"', campaigns)
            assert found, campaigns[:3000]
            campaign = found.group(1)
            status, headers, _ = admin.request(f"/campaigns/{campaign}/", {"launch": "1"})
            assert status == 302, status
            wait_for(
                "the worker answers every prompt",
                lambda: generation_counts(database_url) == {"succeeded": len(ITEMS) * 2},
                60,
                log,
            )

            reviewer = Browser(base)
            reviewer.log_in("reviewer", REVIEWER_PASSWORD)
            given: list[tuple[str, int]] = []
            while True:
                status, headers, body = reviewer.request("/review/next/")
                if status == 200:  # nothing left to review
                    break
                assert status == 302, (status, body[:2000])
                page = reviewer.get(headers["Location"])
                for model in MODELS:
                    assert model not in page  # blind, in production mode as anywhere
                fields = sorted(set(re.findall(r'name="(score-\d+)"', page)))
                assert len(fields) == 2, page[:3000]
                scores = {field: str((len(given) * 3 + n) % 11) for n, field in enumerate(fields)}
                status, _, body = reviewer.request(headers["Location"], scores)
                assert status == 302, (status, body[:2000])
                given.extend((field, int(value)) for field, value in scores.items())
                assert len(given) <= len(ITEMS) * 2
            assert len(given) == len(ITEMS) * 2

            results = admin.get(f"/results/{campaign}/")
            for model in MODELS:
                assert model in results or model.lower() in results
            # The stylesheet and htmx come from the collected, hashed static files.
            static = re.findall(
                r'(?:href|src)="(/static/[^"]+\.[0-9a-f]{12}\.(?:css|js))"', results
            )
            assert static, results[:3000]
            assert admin.request(static[0])[0] == 200

            status, headers, _ = admin.request(f"/campaigns/{campaign}/export/", {"kind": "scores"})
            assert status == 302, status

            def download_link() -> str:
                page = admin.get(f"/campaigns/{campaign}/export/")
                link = re.search(r'href="(/exports/[A-Za-z0-9_-]+/download/)"', page)
                return link.group(1) if link else ""

            link = wait_for("the worker writes the export", download_link, 30, log)
            status, _, exported = admin.request(link)
            assert status == 200
            rows = list(csv.DictReader(io.StringIO(exported.decode())))
            assert len(rows) == len(ITEMS) * 2
            assert {row["reviewer"] for row in rows} == {"reviewer"}
            assert sorted(int(row["score"]) for row in rows) == sorted(s for _, s in given)
            # The operator's page: every part up, the worker answering through Redis.
            operations = admin.get("/operations/")
            assert operations.count(">reachable<") == 2, operations
            assert "connections in use" in operations and "redis://" in operations
            assert ">answering<" in admin.get("/operations/?ping=1")
            # The same bytes as the command writes.
            manage(env, "export_scores", "--campaign", "stack", "--output", str(tmp_path / "s.csv"))
            assert exported == (tmp_path / "s.csv").read_bytes()
        finally:
            # Ctrl-C in the terminal that runs `make serve`.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(stack.pid, signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                stack.wait(timeout=45)
            simulator.terminate()
            simulator.wait(timeout=10)
            time.sleep(0.3)
            left = processes_using(var_dir)
            for pid in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        output = log.read_text(errors="replace")
        assert left == [], output[-3000:]
        assert stack.returncode == 0, output[-3000:]
        assert "Warm shutdown" in output and "Shutting down: Master" in output, output[-3000:]
        with socket.socket() as sock, pytest.raises(OSError):
            sock.connect(("127.0.0.1", web))
        assert "Traceback" not in output, output
