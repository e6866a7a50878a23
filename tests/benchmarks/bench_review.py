"""Benchmark: the review queue ("next item" and "submit score") on a big PostgreSQL database.

The data (built with bulk_create in a child process, in a throwaway database): one finished
campaign of 2 models x 50,000 items = 100,000 succeeded generations, reviewed by 3 people per
output (`reviewers_per_output` = k = 3). Its 50,000 review units (made by
`grading.assignment.sync_units`) have each been reviewed by 2 of the 20 reviewers already:
100,000 submitted assignments x 2 answers = 200,000 scores, every reviewer with ~5,000 reviews
of history. So every unit has exactly one place left: the app must hand each one to exactly one
more reviewer, and the 20 reviewers all compete for the same least-reviewed units. (With k = 2,
200,000 scores on 100,000 generations would leave no work to hand out.) The tables are
VACUUM ANALYZEd after loading.

Part 1, in process (Django's test Client, one reviewer force-logged-in), on the big database
and on a small one built the same way (1,000 items): server time (perf_counter around the
client call) and SQL queries of each request, N repetitions of
  next item  = GET /review/next/ (reserves a unit, 302) + GET /review/a/<id>/ (the page);
               the unit is then submitted directly through `grading.assignment.submit`
  submit     = POST /review/a/<id>/ with score-0, score-1 (stores the scores, reserves the next
               unit, 302 to it)
  submit htmx = the same POST with `HX-Request: true` (what the page does: the response is
               the next item's HTML fragment)
Part 2: gunicorn (`-w 4 -k gthread --threads 4`, DEBUG=1 so plain http works) on the big
database, 20 reviewer threads (httpx2) that log in through /login/ and loop
GET /review/next/ -> GET /review/a/<id>/ -> POST scores (random 0-10), without pause, for
60 s. Each request opens a new connection, as from a reverse proxy without upstream keep-alive
(`--keep-alive` reuses them; gunicorn then pins each reviewer to the worker that accepted it,
and in trial runs a single worker served all 20). Latency is reported as the client saw it and
as gunicorn's access log measured it (server side). Then the database is checked: no unit
with more than k live (reserved or submitted) assignments, `holders` and `submitted` equal to
the assignments, and exactly 2 new scores per successful submit.

With `--production`, part 2 runs the web server as deployed: `gunicorn -c
deploy/gunicorn.conf.py` with DEBUG=0 and collected static files (its workers and threads still
set by `--workers` / `--threads`), the reviewers speaking as from behind the TLS proxy
(`X-Forwarded-Proto: https`, `Origin`; the session and CSRF cookies are not marked Secure, as
the load generator speaks plain HTTP). `--conn-max-age 0 600` runs part 2 once per value on the
same database (DATABASE_CONN_MAX_AGE of the web server). `--pace S` makes each reviewer thread
start a cycle (next, page, submit) every S seconds on average, after the flat-out runs: 20 threads
at `--pace 3` are 200 reviewers submitting once per 30 s each.

Reviewer-quality checks are on, as a campaign using them would have them: `GOLD_ANSWERS` answers
(of as many items) are gold, mixed in at `gold_rate` = 0.1, and extra reviews on disagreement
are on (`disagreement_spread` = 5, `reviewers_max` = 4; scores are random 0–10, so most units
reaching k = 3 reviews ask for a 4th). The checks allow a regular unit k + its extra reviews,
and a gold unit one review per reviewer; the printout counts gold units given and extra reviews
asked.

    python tests/benchmarks/bench_review.py [--items 50000] [--seconds 60] [--reps 200]
        [--conn-max-age 0 [600 ...]] [--keep-alive] [--production] [--pace S]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.benchmarks.harness import (
    REPO,
    bulk_suite,
    create_database,
    drop_database,
    finished_campaign,
    migrate,
    percentile,
    postgres_available,
    run_child,
    setup_django,
    unused_endpoint,
)

PASSWORD = "a-long-benchmark-password-42"
REVIEWERS = 20
MODELS = 2
K = 3
GOLD_ANSWERS = 100
GOLD_RATE = 0.1
SPREAD, K_MAX = 5, 4
CLK_TCK = os.sysconf("SC_CLK_TCK")
ANSWER = (
    "## 解答\n\n这道题考查的是对基本概念的理解。首先,我们需要明确题目中的条件:{n} 个对象"
    "按照规则排列,每一步都要满足约束。\n\n1. 第一步,列出已知条件;\n2. 第二步,逐一验证;\n"
    "3. 第三步,得出结论。\n\n因此答案是 **{answer}**。`示例代码` 与 *强调* 都应被正常渲染。\n\n"
    "> 注意:如果条件改变,结论也可能随之改变。\n\n" + "补充说明。" * 40
)


# --- Helpers ------------------------------------------------------------------------------------


def summary(values: Sequence[float]) -> str:
    if not values:
        return "no samples"
    return (
        f"median {statistics.median(values):6.1f} ms  p95 {percentile(values, 95):6.1f} ms  "
        f"max {max(values):6.1f} ms"
    )


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields) - idle) / CLK_TCK, sum(fields) / CLK_TCK


def process_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def children_of(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


# --- Child: build the data ----------------------------------------------------------------------


def build(items: int) -> dict[str, Any]:
    setup_django()
    from datetime import timedelta

    from django.contrib.auth.hashers import make_password
    from django.contrib.auth.models import User
    from django.db import connection
    from django.utils import timezone

    from grading import assignment as queue
    from grading.models import (
        Assignment,
        AssignmentStatus,
        GoldAnswer,
        ReviewSettings,
        ReviewUnit,
        Rubric,
        Score,
    )
    from grading.roles import reviewers_group
    from inference.models import (
        Generation,
        TaskType,
    )

    rng = random.Random(7)
    phases: dict[str, float] = {}
    start = time.perf_counter()
    qa = TaskType.objects.get(code="QA")
    endpoints = [
        unused_endpoint(f"bench-model-{m}", name=f"Bench model {m}", model=f"bench/model-{m}")
        for m in range(MODELS)
    ]
    suite, task_items = bulk_suite(
        "bench-review",
        items,
        [qa.pk],
        "第{n}题:请解释下面这句话的含义,并举一个生活中的例子。",
        batch_size=5000,
        reference="参考答案要点",
    )
    campaign = finished_campaign(
        "bench-review", suite, endpoints, reviewers_per_output=K, name="Review benchmark"
    )
    phases["items"] = time.perf_counter() - start
    mark = time.perf_counter()
    answers: dict[int, list[tuple[str, int]]] = {}  # item pk -> [(public_id, pk)] per model
    chunk = 5000
    for first in range(0, items, chunk):
        batch = [
            Generation(
                campaign=campaign,
                item=item,
                endpoint=endpoint,
                status="succeeded",
                content=ANSWER.format(n=item.pk, answer=rng.randint(1, 99)),
                finish_reason="stop",
                completion_tokens=300,
                simulated=True,
            )
            for item in task_items[first : first + chunk]
            for endpoint in endpoints
        ]
        Generation.objects.bulk_create(batch, batch_size=chunk)
        for generation in batch:
            answers.setdefault(generation.item_id, []).append((generation.public_id, generation.pk))
    phases["generations"] = time.perf_counter() - mark
    mark = time.perf_counter()
    units_made = queue.sync_units(campaign)
    phases["sync_units"] = time.perf_counter() - mark
    mark = time.perf_counter()
    hashed = make_password(PASSWORD)  # one hash for every reviewer: the password is the same
    users = User.objects.bulk_create(
        [User(username=f"reviewer{n:02d}", password=hashed) for n in range(REVIEWERS)]
    )
    group = reviewers_group()
    membership = User.groups.through
    membership.objects.bulk_create([membership(user_id=u.pk, group_id=group.pk) for u in users])
    rubric = Rubric.objects.current()
    now = timezone.now()
    units = list(
        ReviewUnit.objects.filter(campaign=campaign).order_by("pk").values_list("pk", "item_id")
    )
    scores = 0
    assignments = 0
    for first in range(0, len(units), 10_000):
        batch_a: list[Assignment] = []
        for unit_id, item_id in units[first : first + 10_000]:
            for reviewer in rng.sample(users, K - 1):
                order = [public_id for public_id, _ in answers[item_id]]
                rng.shuffle(order)
                batch_a.append(
                    Assignment(
                        unit_id=unit_id,
                        reviewer=reviewer,
                        status=AssignmentStatus.SUBMITTED,
                        order=order,
                        expires_at=now + timedelta(minutes=30),
                        finished_at=now,
                    )
                )
        Assignment.objects.bulk_create(batch_a, batch_size=5000)
        pk_of = {
            public_id: pk
            for _, item_id in units[first : first + 10_000]
            for public_id, pk in answers[item_id]
        }
        batch_s = [
            Score(
                generation_id=pk_of[public_id],
                reviewer_id=held.reviewer_id,
                assignment=held,
                score=rng.randint(0, 10),
                position=position,
                rubric=rubric,
                seconds_spent=30.0,
                scored_at=now,
            )
            for held in batch_a
            for position, public_id in enumerate(held.order)
        ]
        Score.objects.bulk_create(batch_s, batch_size=5000)
        assignments += len(batch_a)
        scores += len(batch_s)
    ReviewUnit.objects.filter(campaign=campaign).update(holders=K - 1, submitted=K - 1)
    phases["reviews"] = time.perf_counter() - mark
    mark = time.perf_counter()
    ReviewSettings.objects.filter(campaign=campaign).update(
        gold_rate=GOLD_RATE, disagreement_spread=SPREAD, reviewers_max=K_MAX
    )
    gold_items = rng.sample(sorted(answers), min(GOLD_ANSWERS, len(answers)))
    GoldAnswer.objects.bulk_create(
        [GoldAnswer(generation_id=answers[item][0][1], low=4, high=7) for item in gold_items]
    )
    gold_units = queue.sync_units(campaign)
    phases["gold"] = time.perf_counter() - mark
    mark = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
        cursor.execute("SELECT pg_database_size(current_database())")
        row = cursor.fetchone()
    phases["vacuum_analyze"] = time.perf_counter() - mark
    return {
        "items": items,
        "generations": Generation.objects.count(),
        "units": ReviewUnit.objects.count(),
        "units_made": units_made,
        "gold_units": gold_units,
        "assignments": assignments,
        "scores": Score.objects.count(),
        "score_rows_made": scores,
        "reviewers": REVIEWERS,
        "db_mb": (row[0] if row else 0) / 2**20,
        "phases": phases,
        "seconds": time.perf_counter() - start,
    }


# --- Child: part 1, in-process timing -----------------------------------------------------------


def part1(reps: int) -> dict[str, Any]:
    setup_django()
    from django.contrib.auth.models import User
    from django.db import connection, reset_queries
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from grading import assignment as queue
    from grading.models import Assignment

    rng = random.Random(11)
    user = User.objects.get(username="reviewer00")
    client = Client()
    client.force_login(user, backend="django.contrib.auth.backends.ModelBackend")
    times: dict[str, list[float]] = {}
    queries: dict[str, list[int]] = {}
    statements: dict[str, list[str]] = {}  # the SQL of each request's last run

    def timed(name: str, call: Callable[[], Any]) -> Any:
        # CaptureQueriesContext stops requests from clearing connection.queries, which keeps
        # at most 9,000 entries: once full, every request would count 0 queries. Clear it first.
        reset_queries()
        with CaptureQueriesContext(connection) as captured:
            begin = time.perf_counter()
            response = call()
            elapsed = (time.perf_counter() - begin) * 1000
        times.setdefault(name, []).append(elapsed)
        queries.setdefault(name, []).append(len(captured.captured_queries))
        statements[name] = [query["sql"] for query in captured.captured_queries]
        return response

    def form() -> dict[str, str]:
        return {f"score-{n}": str(rng.randint(0, 10)) for n in range(MODELS)}

    def submit_directly(url: str) -> None:
        held = Assignment.objects.select_related("unit").get(
            public_id=url.rstrip("/").rsplit("/", 1)[-1]
        )
        assert queue.submit(held, {pid: {"score": rng.randint(0, 10)} for pid in held.order})

    # Warm-up (templates, code paths), not counted.
    for _ in range(5):
        response = client.get("/review/next/")
        assert response.status_code == 302, response.status_code
        assert client.get(response["Location"]).status_code == 200
        submit_directly(response["Location"])
    times.clear()
    queries.clear()

    # next item: nothing is held before each GET /review/next/, so it reserves a unit.
    for _ in range(reps):
        response = timed("GET /review/next/", lambda: client.get("/review/next/"))
        assert response.status_code == 302, response.status_code
        url = response["Location"]
        page = timed("GET /review/a/<id>/", lambda: client.get(url))  # noqa: B023
        assert page.status_code == 200 and b'name="score-1"' in page.content
        for record in (times, queries):
            pair = record["GET /review/next/"][-1] + record["GET /review/a/<id>/"][-1]
            record.setdefault("next item (both GETs)", []).append(pair)  # type: ignore[arg-type]
        submit_directly(url)

    # submit (plain form POST): stores the scores, reserves the next unit, redirects to it.
    url = client.get("/review/next/")["Location"]
    for _ in range(reps):
        response = timed("POST (submit, 302)", lambda: client.post(url, form()))  # noqa: B023
        assert response.status_code == 302 and "/review/a/" in response["Location"]
        url = response["Location"]

    # submit as the page does it (htmx): the response is the next item's fragment.
    htmx = {"HX-Request": "true"}
    for _ in range(reps):
        response = timed(
            "POST htmx (submit + next fragment)",
            lambda: client.post(url, form(), headers=htmx),  # noqa: B023
        )
        assert response.status_code == 200 and "HX-Push-Url" in response
        url = response["HX-Push-Url"]

    # The reviewer home page (runs sync_units for every campaign on each visit).
    for _ in range(max(3, reps // 20)):
        assert timed("GET /review/ (home)", lambda: client.get("/review/")).status_code == 200
    return {"times": times, "queries": queries, "explained": explain_selects(statements)}


def explain_selects(statements: dict[str, list[str]]) -> dict[str, list[tuple[float, int, str]]]:
    """Re-run each request's plain SELECTs under EXPLAIN ANALYZE: (best of 3 ms, index, label)."""
    from django.db import connection

    explained: dict[str, list[tuple[float, int, str]]] = {}
    with connection.cursor() as cursor:
        for name, sqls in statements.items():
            rows = []
            for index, sql in enumerate(sqls):
                if not sql.startswith("SELECT") or "FOR UPDATE" in sql:
                    continue
                best = math.inf
                for _ in range(3):
                    cursor.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}")
                    row = cursor.fetchone()
                    assert row is not None
                    plan = row[0] if isinstance(row[0], list) else json.loads(row[0])
                    best = min(best, float(plan[0]["Execution Time"]))
                rows.append((best, index, sql_label(sql)))
            explained[name] = rows
    return explained


def sql_label(sql: str) -> str:
    """A short description of a SELECT: what it counts or reads, from where, in which order."""
    table = re.search(r'FROM "(\w+)"', sql)
    selected = sql.split(" FROM ", 1)[0]
    label = (
        "count of " if "COUNT(" in selected else "sum over " if "SUM(" in selected else "rows of "
    )
    label += table.group(1) if table else "?"
    if "NOT (EXISTS" in sql:
        label += ", not the reviewer's own"
    order = re.search(r"ORDER BY (.*?)(?: LIMIT|$)", sql)
    if order:
        label += ", by " + re.sub(r'"\w+"\.', "", order.group(1)).replace('"', "")
    return label


# --- Child: consistency check -------------------------------------------------------------------


def check() -> dict[str, Any]:
    setup_django()
    from django.db.models import Count, F, Max, Q

    from grading.models import (
        Assignment,
        AssignmentStatus,
        Purpose,
        ReviewSettings,
        ReviewUnit,
        Score,
    )

    live = [AssignmentStatus.RESERVED, AssignmentStatus.SUBMITTED]
    k = ReviewSettings.objects.get().reviewers_per_output
    all_units = ReviewUnit.objects.annotate(
        live=Count("assignments", filter=Q(assignments__status__in=live)),
        done=Count("assignments", filter=Q(assignments__status=AssignmentStatus.SUBMITTED)),
    )
    units = all_units.filter(purpose=Purpose.REGULAR)
    gold = all_units.filter(purpose=Purpose.GOLD)
    per_generation = (
        Score.objects.filter(purpose=Purpose.REGULAR).values("generation").annotate(n=Count("id"))
    )
    per_reviewer_item = Assignment.objects.values(
        "reviewer", "unit__item_id", "unit__sample"
    ).annotate(n=Count("id"))
    submitted = Assignment.objects.filter(status=AssignmentStatus.SUBMITTED)
    return {
        "k": k,
        "units_over_k": units.filter(live__gt=k + F("extra_reviews")).count(),
        "max_live": units.aggregate(m=Max("live"))["m"],
        "holders_mismatch": all_units.exclude(holders=F("live")).count(),
        "submitted_mismatch": all_units.exclude(submitted=F("done")).count(),
        "generations_over_k": per_generation.filter(n__gt=K_MAX).count(),
        "items_twice": per_reviewer_item.filter(n__gt=1).count(),
        "extra_units": units.filter(extra_reviews__gt=0).count(),
        "gold_given": Assignment.objects.filter(
            unit__purpose=Purpose.GOLD, status__in=live
        ).count(),
        "gold_units": gold.count(),
        "gold_scores_counted": Score.objects.counted()
        .filter(assignment__unit__purpose=Purpose.GOLD)
        .count(),
        "submitted_without_all_scores": submitted.annotate(n=Count("scores"))
        .exclude(n=MODELS)
        .count(),
        "reserved_with_scores": Assignment.objects.filter(
            status=AssignmentStatus.RESERVED, scores__isnull=False
        ).count(),
        "scores": Score.objects.count(),
        "submitted": submitted.count(),
        "reserved": Assignment.objects.filter(status=AssignmentStatus.RESERVED).count(),
        "skipped": Assignment.objects.filter(status=AssignmentStatus.SKIPPED).count(),
        "units_full": units.filter(holders__gte=k + F("extra_reviews")).count(),
    }


# --- Part 2: gunicorn + 20 reviewer threads -----------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_gunicorn(
    env: dict[str, str],
    port: int,
    workers: int,
    threads: int,
    log: Path,
    access: Path,
    production: bool = False,
) -> subprocess.Popen[bytes]:
    import httpx2

    config = ["-c", "deploy/gunicorn.conf.py"] if production else []
    # fmt: off
    command = [
        sys.executable, "-m", "gunicorn", *config, "grading.wsgi", "-w", str(workers),
        "-k", "gthread", "--threads", str(threads), "-b", f"127.0.0.1:{port}",
        "--log-level", "warning", "--access-logfile", str(access),
        "--access-logformat", "%(p)s %(m)s %(U)s %(s)s %(D)s",
    ]
    # fmt: on
    proxy = {"X-Forwarded-Proto": "https"} if production else {}
    handle = log.open("wb")
    process = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
    )
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None or time.monotonic() > deadline:
            stop_process(process)
            raise RuntimeError(f"gunicorn did not start:\n{log.read_text(errors='replace')}")
        try:
            url = f"http://127.0.0.1:{port}/healthz"
            if httpx2.get(url, timeout=2, headers=proxy).status_code == 200:
                break
        except httpx2.HTTPError:
            pass
        time.sleep(0.3)
    # Wait until every worker has booted (each answers /healthz after loading Django).
    while len(children_of(process.pid)) < workers and time.monotonic() < deadline:
        time.sleep(0.2)
    return process


def stop_process(process: subprocess.Popen[Any], timeout: float = 20) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


class Reviewer(threading.Thread):
    """One simulated reviewer: logs in, then loops next -> page -> submit until told to stop."""

    def __init__(
        self,
        base: str,
        username: str,
        ready: threading.Barrier,
        stop_at: list[float],
        keep_alive: bool,
        headers: dict[str, str] | None = None,
        pace: float = 0.0,
    ):
        super().__init__(daemon=True)
        self.keep_alive = keep_alive
        self.headers = headers or {}
        self.pace = pace
        self.base = base
        self.username = username
        self.ready = ready
        self.stop_at = stop_at
        self.latency: dict[str, list[float]] = {}
        self.errors: Counter[str] = Counter()
        self.requests = 0
        self.submits = 0
        self.done_pages = 0
        self.login_s = 0.0
        self.rng = random.Random(username)

    def request(self, client: Any, name: str, method: str, url: str, **kwargs: Any) -> Any:
        begin = time.perf_counter()
        try:
            response = client.request(method, url, **kwargs)
        except Exception as problem:
            self.errors[f"{name}: {type(problem).__name__}"] += 1
            return None
        finally:
            self.requests += 1
        self.latency.setdefault(name, []).append((time.perf_counter() - begin) * 1000)
        return response

    def fail(self, name: str, response: Any) -> None:
        self.errors[f"{name}: HTTP {response.status_code}"] += 1

    def run(self) -> None:
        import httpx2

        # Without keep-alive every request is a new connection, as from a reverse proxy without
        # upstream keep-alive; with it, gunicorn pins each reviewer to the worker that accepted
        # its connection (in trial runs one worker could end up serving all 20).
        limits = httpx2.Limits(max_keepalive_connections=None if self.keep_alive else 0)
        with httpx2.Client(
            base_url=self.base,
            timeout=60,
            follow_redirects=False,
            limits=limits,
            headers=self.headers,
        ) as client:
            try:
                begin = time.perf_counter()
                form = client.get("/login/")
                token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text)
                assert token is not None, "no CSRF token on /login/"
                response = client.post(
                    "/login/",
                    data={
                        "username": self.username,
                        "password": PASSWORD,
                        "csrfmiddlewaretoken": token.group(1),
                    },
                )
                assert response.status_code == 302, f"login: HTTP {response.status_code}"
                self.login_s = time.perf_counter() - begin
            except Exception as problem:
                self.errors[f"login: {problem}"] += 1
                self.ready.wait()
                return
            self.ready.wait()
            if self.pace:  # spread the reviewers' first cycles over one period
                time.sleep(self.rng.uniform(0, self.pace))
            while time.monotonic() < self.stop_at[0]:
                began = time.monotonic()
                self.cycle(client)
                if self.pace:
                    wait = self.rng.uniform(0.5, 1.5) * self.pace - (time.monotonic() - began)
                    time.sleep(max(0.0, min(wait, self.stop_at[0] - time.monotonic())))

    def cycle(self, client: Any) -> None:
        begin = time.perf_counter()
        response = self.request(client, "GET /review/next/", "GET", "/review/next/")
        if response is None:
            return
        if response.status_code == 200:  # nothing left to review
            self.done_pages += 1
            time.sleep(0.5)
            return
        if response.status_code != 302:
            return self.fail("GET /review/next/", response)
        url = response.headers["location"]
        page = self.request(client, "GET /review/a/<id>/", "GET", url)
        if page is None:
            return
        if page.status_code != 200:
            return self.fail("GET /review/a/<id>/", page)
        self.latency.setdefault("next item (both GETs)", []).append(
            (time.perf_counter() - begin) * 1000
        )
        fields = sorted(set(re.findall(r'name="(score-\d+)"', page.text)))
        data = {field: str(self.rng.randint(0, 10)) for field in fields}
        headers = {"X-CSRFToken": client.cookies.get("csrftoken", "")}
        response = self.request(
            client, "POST /review/a/<id>/", "POST", url, data=data, **{"headers": headers}
        )
        if response is None:
            return
        if response.status_code == 302 and "/review/" in response.headers["location"]:
            self.submits += 1
        else:
            self.fail("POST /review/a/<id>/", response)


def postgres_cpu_s() -> float:
    """CPU seconds of every `postgres` process so far, exited backends (reaped) included."""
    total = 0.0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            head, rest = (proc / "stat").read_text().rsplit(")", 1)
        except OSError:
            continue
        if not head.endswith("(postgres"):
            continue
        fields = rest.split()
        total += int(fields[11]) + int(fields[12])
        if (Path("/proc") / fields[1]).exists() and fields[1] != "1":
            try:
                parent = (Path("/proc") / fields[1] / "comm").read_text().strip()
            except OSError:
                parent = ""
            if parent == "postgres":
                continue
        total += int(fields[13]) + int(fields[14])  # the postmaster: its reaped backends
    return total / CLK_TCK


def server_times(access: Path) -> tuple[dict[str, list[float]], Counter[str]]:
    """Server-side milliseconds per endpoint and requests per worker, from the access log."""
    times: dict[str, list[float]] = {}
    workers: Counter[str] = Counter()
    for line in access.read_text(errors="replace").splitlines():
        parts = line.split()
        if len(parts) != 5 or not parts[2].startswith("/review/"):
            continue
        pid, method, path, _, micros = parts
        name = f"{method} /review/next/" if path == "/review/next/" else f"{method} /review/a/<id>/"
        times.setdefault(name, []).append(int(micros) / 1000)
        workers[pid.strip("<>")] += 1
    return times, workers


def part2(
    env: dict[str, str], work: Path, args: Any, conn_max_age: int, pace: float
) -> dict[str, Any]:
    seconds, workers, threads = args.seconds, args.workers, args.threads
    port = free_port()
    server_env = {
        **env,
        "DEBUG": "1",
        "ALLOWED_HOSTS": "127.0.0.1",
        "DATABASE_CONN_MAX_AGE": str(conn_max_age),
    }
    headers: dict[str, str] = {}
    if args.production:
        server_env.update(
            {
                "DEBUG": "0",
                "SECRET_KEY": "bench-review-production-secret-key-0123456789abcdefghijklmnop",
                "SESSION_COOKIE_SECURE": "0",
                "CSRF_COOKIE_SECURE": "0",
            }
        )
        subprocess.run(
            [sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"],
            cwd=REPO,
            env=server_env,
            check=True,
        )
        headers = {"X-Forwarded-Proto": "https", "Origin": f"https://127.0.0.1:{port}"}
    run = f"{conn_max_age}-{pace:g}-{port}"
    log, access = work / f"gunicorn-{run}.log", work / f"access-{run}.log"
    process = start_gunicorn(
        server_env, port, workers, threads, log, access, production=args.production
    )
    try:
        base = f"http://127.0.0.1:{port}"
        ready = threading.Barrier(REVIEWERS + 1, timeout=300)
        stop_at = [math.inf]
        reviewers = [
            Reviewer(base, f"reviewer{n:02d}", ready, stop_at, args.keep_alive, headers, pace)
            for n in range(REVIEWERS)
        ]
        login_start = time.perf_counter()
        for reviewer in reviewers:
            reviewer.start()
        ready.wait()
        login_s = time.perf_counter() - login_start
        server_pids = children_of(process.pid)
        server_cpu0 = sum(process_cpu_s(pid) for pid in server_pids)
        busy0, total0 = machine_busy()
        own0 = time.process_time()
        pg0 = postgres_cpu_s()
        load_average = os.getloadavg()[0]
        started = time.monotonic()
        stop_at[0] = started + seconds
        for reviewer in reviewers:
            reviewer.join()
        wall = time.monotonic() - started
        busy1, total1 = machine_busy()
        own_cpu = time.process_time() - own0
        pg_cpu = postgres_cpu_s() - pg0
        server_cpu = sum(process_cpu_s(pid) for pid in server_pids) - server_cpu0
    finally:
        stop_process(process)
    latency: dict[str, list[float]] = {}
    errors: Counter[str] = Counter()
    for reviewer in reviewers:
        for name, values in reviewer.latency.items():
            latency.setdefault(name, []).extend(values)
        errors.update(reviewer.errors)
    server, per_worker = server_times(access)
    problems = [
        line for line in log.read_text(errors="replace").splitlines() if "Traceback" in line
    ]
    return {
        "wall": wall,
        "login_s": login_s,
        "slowest_login_s": max(r.login_s for r in reviewers),
        "requests": sum(r.requests for r in reviewers),
        "submits": sum(r.submits for r in reviewers),
        "per_reviewer_submits": [r.submits for r in reviewers],
        "done_pages": sum(r.done_pages for r in reviewers),
        "latency": latency,
        "server": server,
        "per_worker": sorted(per_worker.values()),
        "load_average_before": load_average,
        "errors": dict(errors),
        "server_tracebacks": len(problems),
        "cpu": {
            "machine_busy_pct": 100 * (busy1 - busy0) / max(total1 - total0, 1e-9),
            "cores": os.cpu_count(),
            "gunicorn_workers_s": server_cpu,
            "load_generator_s": own_cpu,
            "postgres_s": pg_cpu,
            "machine_busy_s": busy1 - busy0,
        },
    }


# --- Orchestration ------------------------------------------------------------------------------


def print_part1(small: dict[str, Any], big: dict[str, Any], small_items: int) -> None:
    reps = len(big["times"]["GET /review/next/"])
    print(f"\nPart 1: in-process server time (Django test Client), {reps} repetitions, reviewer00")
    print(f"  {'big database':36} {'':52} queries big | small")
    for name in big["times"]:
        qb, qs = big["queries"][name], small["queries"].get(name, [0])
        span_b = f"{min(qb)}" if min(qb) == max(qb) else f"{min(qb)}-{max(qb)}"
        span_s = f"{min(qs)}" if min(qs) == max(qs) else f"{min(qs)}-{max(qs)}"
        print(f"  {name:36} {summary(big['times'][name]):52} {span_b} | {span_s}")
    print(f"  small database ({small_items:,} items):")
    for name in small["times"]:
        print(f"  {name:36} {summary(small['times'][name])}")
    print("  slowest SELECTs of each request, re-run with EXPLAIN ANALYZE (big | small database):")
    for name, rows in big["explained"].items():
        if name.startswith("next item"):
            continue
        small_by_index = {index: ms for ms, index, _ in small["explained"].get(name, [])}
        for ms, index, label in sorted(rows, reverse=True)[:2]:
            if ms < 1:
                continue
            other = small_by_index.get(index)
            print(
                f"    {name:36} #{index:<2} {ms:6.1f} ms | "
                f"{'-' if other is None else f'{other:.1f}'} ms  {label}"
            )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", choices=["build", "part1", "check"])
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--small-items", type=int, default=1_000)
    parser.add_argument("--reps", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument(
        "--conn-max-age",
        type=int,
        nargs="+",
        default=[0],
        help="DATABASE_CONN_MAX_AGE of gunicorn (0: default); several values run part 2 for each",
    )
    parser.add_argument(
        "--production", action="store_true", help="gunicorn -c deploy/gunicorn.conf.py, DEBUG=0"
    )
    parser.add_argument(
        "--pace", type=float, default=0.0, help="seconds per cycle of each reviewer (0: no pause)"
    )
    parser.add_argument(
        "--keep-alive", action="store_true", help="reuse each reviewer's HTTP connection"
    )
    args = parser.parse_args()
    if args.child:
        result = {
            "build": lambda: build(args.items),
            "part1": lambda: part1(args.reps),
            "check": check,
        }[args.child]()
        print(json.dumps(result))
        return
    if not postgres_available():
        print("PostgreSQL: not reachable on 127.0.0.1:5432, benchmark skipped")
        return
    overall = time.perf_counter()
    commit = subprocess.run(
        ["git", "log", "-1", "--format=%h %s"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    print(f"code: {commit or 'unknown commit'}")
    base_name = f"gradebench_bench_review_{os.getpid()}"
    big_db, small_db = f"{base_name}_big", f"{base_name}_small"
    with tempfile.TemporaryDirectory(prefix="gradebench-bench-review-") as tmp:
        work = Path(tmp)
        base_env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "grading.settings",
            "GRADEBENCH_VAR_DIR": str(work / "var"),
            "DEBUG": "1",
            "ALLOWED_HOSTS": "127.0.0.1,testserver",
            "PYTHONUNBUFFERED": "1",
        }
        for name in ("REDIS_URL", "CELERY_BROKER_URL", "DATABASE_CONN_MAX_AGE"):
            base_env.pop(name, None)
        big_env = {**base_env, "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{big_db}"}
        small_env = {**base_env, "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{small_db}"}
        try:
            create_database(big_db)
            migrate(big_env)
            create_database(small_db, template=big_db)
            small_built = run_child(
                __file__, small_env, "--child", "build", "--items", str(args.small_items)
            )
            built = run_child(__file__, big_env, "--child", "build", "--items", str(args.items))
            phases = ", ".join(f"{k} {v:.1f} s" for k, v in built["phases"].items())
            print(
                f"data: 1 campaign, {MODELS} models x {built['items']:,} items = "
                f"{built['generations']:,} succeeded generations, {built['units']:,} review "
                f"units (sync_units), k = reviewers_per_output = {K}; {built['assignments']:,} "
                f"submitted assignments ({K - 1} per unit, {REVIEWERS} reviewers) = "
                f"{built['scores']:,} scores; database {built['db_mb']:.0f} MB; built in "
                f"{built['seconds']:.1f} s ({phases}); {built['gold_units']} gold units "
                f"(gold_rate {GOLD_RATE}), extra reviews on (spread >= {SPREAD}, up to {K_MAX})"
            )
            print(
                f"small database: {small_built['generations']:,} generations, "
                f"{small_built['units']:,} units, {small_built['scores']:,} scores"
            )
            small = run_child(__file__, small_env, "--child", "part1", "--reps", str(args.reps))
            big = run_child(__file__, big_env, "--child", "part1", "--reps", str(args.reps))
            print_part1(small, big, args.small_items)

            # Flat out for each connection setting, then at the given pace for each.
            paces = [0.0] + ([args.pace] if args.pace else [])
            for pace in paces:
                for conn_max_age in args.conn_max_age:
                    before = run_child(__file__, big_env, "--child", "check")
                    load = part2(big_env, work, args, conn_max_age, pace)
                    after = run_child(__file__, big_env, "--child", "check")
                    print_part2(load, before, after, args, conn_max_age, pace)
        finally:
            drop_database(small_db)
            drop_database(big_db)
    print(f"\ntotal {time.perf_counter() - overall:.0f} s; throwaway databases dropped")


def print_part2(
    load: dict[str, Any],
    before: dict[str, Any],
    after: dict[str, Any],
    args: Any,
    conn_max_age: int,
    pace: float,
) -> None:
    wall = load["wall"]
    mode = "-c deploy/gunicorn.conf.py, DEBUG=0" if args.production else "DEBUG=1"
    paced = f", each starting a cycle every {pace:g} s on average" if pace else ""
    print(
        f"\nPart 2: gunicorn -w {args.workers} -k gthread --threads {args.threads} ({mode}, "
        f"DATABASE_CONN_MAX_AGE={conn_max_age}), {REVIEWERS} reviewer threads{paced} "
        f"({'keep-alive' if args.keep_alive else 'a new connection per request'}) for "
        f"{wall:.1f} s (logins before the clock: {load['login_s']:.1f} s; load average before: "
        f"{load['load_average_before']:.1f})"
    )
    errors = sum(load["errors"].values())
    print(
        f"  {load['requests']:,} requests = {load['requests'] / wall:.1f} requests/s; "
        f"{load['submits']:,} submits = {load['submits'] / wall:.1f} submits/s; "
        f"errors {errors}{' ' + json.dumps(load['errors']) if errors else ''}; "
        f"server tracebacks {load['server_tracebacks']}; 'nothing left' pages "
        f"{load['done_pages']}"
    )
    submits_per_s = load["submits"] / wall
    print(
        f"  reviewers supported at one submit per 30 s each: {submits_per_s * 30:,.0f} "
        f"({submits_per_s:.1f} submits/s x 30 s)"
    )
    per = load["per_reviewer_submits"]
    print(
        f"  submits per reviewer: min {min(per)}, median {statistics.median(per):.0f}, "
        f"max {max(per)}; requests per gunicorn worker: {load['per_worker']}"
    )
    print("  client-side latency (queueing in gunicorn and PostgreSQL connection included):")
    for name, values in load["latency"].items():
        print(f"    {name:30} n={len(values):6,}  {summary(values)}")
    print("  server-side time (gunicorn access log, from request parsed to response sent):")
    for name, values in sorted(load["server"].items()):
        print(f"    {name:30} n={len(values):6,}  {summary(values)}")
    cpu = load["cpu"]
    rest = (
        cpu["machine_busy_s"]
        - cpu["gunicorn_workers_s"]
        - cpu["load_generator_s"]
        - cpu["postgres_s"]
    )
    print(
        f"  CPU: machine {cpu['machine_busy_pct']:.0f}% busy of {cpu['cores']} cores "
        f"({cpu['machine_busy_s']:.0f} CPU-s): PostgreSQL {cpu['postgres_s']:.0f} s, gunicorn "
        f"workers {cpu['gunicorn_workers_s']:.0f} s, load generator "
        f"{cpu['load_generator_s']:.0f} s, everything else {rest:.0f} s"
    )
    new_scores = after["scores"] - before["scores"]
    new_submitted = after["submitted"] - before["submitted"]
    expected = load["submits"] * MODELS
    print("  checks (database after the run):")
    checks = [
        (
            f"failed requests: {errors}; server tracebacks: {load['server_tracebacks']}",
            errors == 0 and load["server_tracebacks"] == 0,
        ),
        (
            f"regular units with more than k={after['k']} + their extra reviews live (reserved "
            f"or submitted) assignments: {after['units_over_k']} (most on one unit: "
            f"{after['max_live']}; units now full: {after['units_full']:,}; units that asked "
            f"for extra reviews: {after['extra_units'] - before['extra_units']:,} during the run)",
            after["units_over_k"] == 0,
        ),
        (
            f"generations with more than reviewers_max={K_MAX} regular scores: "
            f"{after['generations_over_k']}; reviewers given one item twice: "
            f"{after['items_twice']}",
            after["generations_over_k"] == 0 and after["items_twice"] == 0,
        ),
        (
            f"gold units given during the run: {after['gold_given'] - before['gold_given']:,} of "
            f"{load['submits']:,} submits (gold_rate {GOLD_RATE}, {after['gold_units']} gold "
            f"units); gold scores counted in results: {after['gold_scores_counted']}",
            after["gold_scores_counted"] == 0,
        ),
        (
            f"units whose holders differs from their live assignments: "
            f"{after['holders_mismatch']}; whose submitted differs: {after['submitted_mismatch']}",
            after["holders_mismatch"] == 0 and after["submitted_mismatch"] == 0,
        ),
        (
            f"new Score rows {new_scores:,} = successful submits {load['submits']:,} x {MODELS}"
            f" = {expected:,}; new submitted assignments {new_submitted:,}",
            new_scores == expected and new_submitted == load["submits"],
        ),
        (
            f"submitted assignments without exactly {MODELS} scores: "
            f"{after['submitted_without_all_scores']}; reserved ones with scores: "
            f"{after['reserved_with_scores']}; reservations still held: {after['reserved']}",
            after["submitted_without_all_scores"] == 0 and after["reserved_with_scores"] == 0,
        ),
    ]
    for text, ok in checks:
        print(f"    [{'ok' if ok else 'FAIL'}] {text}")
    if not all(ok for _, ok in checks):
        raise SystemExit("a consistency check failed")


if __name__ == "__main__":
    main()
