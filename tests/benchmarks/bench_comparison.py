"""Benchmark: the comparison pages (`/results/`, `/results/<campaign>/`) on 300,000 scores.

Target (issue #6): the page under 300 ms p95 (caching allowed, invalidated when a score
arrives) with a query count that does not grow with the data.

The data (throwaway PostgreSQL database on 127.0.0.1:5432, migrated, built in a child process),
shaped like the reference study: 3 finished campaigns of two models each (`bench-small`,
`bench-medium`, `bench-vision`, 6 endpoints named after the study's models), every campaign
answering one shared suite whose items cycle over all 21 task types. So the overview page is
the full 6 models x 21 task types grid (126 cells, 3 matchups x 21 rows, 63 agreement rows), the
largest page this data can make; the reference study's vision campaign only answered the
3 vision types, which would leave most of the grid empty and the page cheaper. Each campaign
page is 2 models x 21 task types.

- items: `--scores` / 17.2 (about 17,400 for 300,000 scores, ~830 per task type);
- generations: 6 per item (~104,000); 1% failed (HTTP 503, no timings), the rest succeeded
  with per-model timings: log-normal TTFT around the model's median, decode tokens/s around
  the model's speed, log-normal completion tokens per task type capped at 2,048 (those get
  finish_reason=length, a few percent), response time = TTFT + decode time, e2e_tps;
- 10 reviewers; each succeeded output scored by 3 of them (2% by 2, 1% by 1, 2% unscored);
  a score is round(model x task-type mean + item difficulty + reviewer severity + noise),
  clipped to 0-10, so bootstrap, Wilcoxon, Krippendorff and severity have real work. The scores
  go in with one `INSERT ... SELECT` over generations x reviewer slots; VACUUM ANALYZE after.

Measurements (in a child process: Django's test Client, an admin force-logged-in; server time
is perf_counter around the client call, queries from `CaptureQueriesContext`), with the Redis
cache (REDIS_URL=redis://127.0.0.1:6379/13, flushed first: production's configuration), then
again with the default file-based cache:

  cold         the page with an empty cache: the full `comparison.build`
  warm         the page again (`stamps` queries + cached `Base` + select + charts + render)
  filter       htmx change (HX-Request, HX-Target: results) to ?task_type=MT, ?modality=vision
  reviewer     htmx ?reviewer=reviewer03: first (cold: a build of its own), then warm
  new score    one Score created (`--score-reps` times), then: the first page request after it
               (it answers from the previous figures, marked "updating", and starts the
               rebuild); the status line's polls (204 while updating); the seconds from the
               score's commit until a poll is answered with the fresh figures (polled every
               0.1 s here; the page polls every 2 s, which adds up to 2 s for a person); and the
               cost of the rebuild itself (its own log line). Twice: rebuilds in a thread of
               the web process (no worker), then in a real Celery worker process. Beforehand,
               `--reps` times, the first request with no rebuild running anywhere (diagnostic:
               this code's own cost, without the rebuild competing for the CPU)
  breakdown    the parts of a warm request, and of `comparison.build` (its two big queries,
               each statistic of `grading.stats` summed over its calls)

and the same on a small database (`--small-scores`, default 30,000) to show that the warm
page's query count does not grow with the data.

    python tests/benchmarks/bench_comparison.py [--scores 300000] [--small-scores 30000]
        [--reps 30] [--score-reps 10] [--no-file-cache]
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import pickle
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.benchmarks.harness import (
    ADMIN_URL,
    REPO,
    bulk_suite,
    create_database,
    drop_database,
    finished_campaign,
    migrate,
    percentile,
    run_child,
    setup_django,
    unused_endpoint,
)

REDIS_URL = "redis://127.0.0.1:6379/13"
REVIEWERS = 10
FAILED_SHARE = 0.01
SCORES_PER_ITEM = 6 * (1 - FAILED_SHARE) * (0.95 * 3 + 0.02 * 2 + 0.01 * 1)
MAX_TOKENS = 2048
TARGET_MS = 300.0
CAMPAIGNS = {
    # slug: (matchup, [(model slug, base quality, ttft median ms, decode tok/s)] * 2)
    "bench-small": (
        "small",
        [("ernie-4.5-0.3b", 6.2, 90.0, 140.0), ("deepseek-r1-distill-qwen-1.5b", 3.6, 140.0, 95.0)],
    ),
    "bench-medium": (
        "medium",
        [
            ("ernie-4.5-21b-a3b", 7.4, 260.0, 48.0),
            ("deepseek-r1-distill-qwen-32b", 6.6, 420.0, 22.0),
        ],
    ),
    "bench-vision": (
        "vision",
        [("ernie-4.5-vl-28b-a3b", 6.8, 380.0, 41.0), ("qwen2.5-vl-32b", 6.1, 450.0, 24.0)],
    ),
}


# --- Helpers ------------------------------------------------------------------------------------


# --- Child: build the data ----------------------------------------------------------------------


def build(target_scores: int) -> dict[str, Any]:
    """Fill the migrated, empty database (see the module docstring)."""
    setup_django()
    import datetime

    from django.contrib.auth.models import User
    from django.db import connection, transaction

    from grading.models import ReviewSettings, Rubric
    from inference.models import (
        Campaign,
        CampaignModel,
        Generation,
        GenerationStatus,
        TaskItem,
        TaskType,
        UsageSource,
    )

    rng = random.Random(6)
    phases: dict[str, float] = {}
    start = time.perf_counter()
    items = max(21, round(target_scores / SCORES_PER_ITEM))
    types = list(TaskType.objects.order_by("position", "code"))
    # Task types differ in difficulty and answer length, the same for every model.
    difficulty = {t.pk: rng.uniform(-1.8, 1.2) for t in types}
    length = {t.pk: rng.choice((80, 150, 300, 500, 900)) for t in types}
    with transaction.atomic():
        suite, _ = bulk_suite("bench-comparison", items, [t.pk for t in types], "问题 {n}:请回答。")
        campaigns = []
        mu: list[tuple[int, int, float]] = []  # (task type, endpoint, mean score)
        profile: dict[int, tuple[float, float]] = {}  # endpoint -> (ttft ms, decode tok/s)
        for slug, (matchup, models) in CAMPAIGNS.items():
            endpoints = []
            for model, quality, ttft, decode in models:
                endpoint = unused_endpoint(model)
                endpoints.append(endpoint)
                profile[endpoint.pk] = (ttft, decode)
                mu += [
                    (t.pk, endpoint.pk, quality + difficulty[t.pk] + rng.gauss(0, 0.6))
                    for t in types
                ]
            campaign = finished_campaign(
                slug, suite, endpoints, reviewers_per_output=3,
                name=slug.replace("-", " ").title(), matchup=matchup,
                params={"temperature": 0.7, "max_tokens": MAX_TOKENS},
            )  # fmt: skip
            campaigns.append(campaign)
    phases["items"] = time.perf_counter() - start

    mark = time.perf_counter()
    t0 = datetime.datetime(2025, 3, 1, 9, 30, tzinfo=datetime.UTC)
    task_items = list(
        TaskItem.objects.filter(suite=suite).order_by("pk").values_list("pk", "task_type_id")
    )
    members = list(
        CampaignModel.objects.order_by("campaign_id", "position").values_list(
            "campaign_id", "endpoint_id"
        )
    )

    def generations() -> Any:
        for n, (item_id, type_id) in enumerate(task_items):
            for campaign_id, endpoint_id in members:
                started = t0 + datetime.timedelta(seconds=n * 3)
                common = {
                    "campaign_id": campaign_id, "item_id": item_id, "endpoint_id": endpoint_id,
                    "simulated": False, "started_at": started, "prompt_tokens": 40,
                }  # fmt: skip
                if rng.random() < FAILED_SHARE:
                    yield Generation(
                        **common, status=GenerationStatus.FAILED, http_status=503,
                        error="HTTP 503: upstream overloaded", attempts=3,
                        finished_at=started + datetime.timedelta(seconds=30),
                    )  # fmt: skip
                    continue
                base_ttft, base_decode = profile[endpoint_id]
                ttft = rng.lognormvariate(math.log(base_ttft), 0.45)
                decode = max(2.0, rng.gauss(base_decode, base_decode * 0.12))
                tokens = min(
                    MAX_TOKENS, max(1, int(rng.lognormvariate(math.log(length[type_id]), 0.7)))
                )
                response = ttft + (tokens - 1) / decode * 1000
                yield Generation(
                    **common, status=GenerationStatus.SUCCEEDED, attempts=1, content="answer",
                    finish_reason="length" if tokens >= MAX_TOKENS else "stop",
                    completion_tokens=tokens, total_tokens=40 + tokens,
                    usage_source=UsageSource.SERVER, ttft_ms=ttft, ttfa_ms=ttft,
                    response_time_ms=response, decode_tps=decode,
                    e2e_tps=tokens / response * 1000, tpot_ms=1000 / decode,
                    finished_at=started + datetime.timedelta(milliseconds=response),
                )  # fmt: skip

    with transaction.atomic():
        Generation.objects.bulk_create(generations(), batch_size=10_000)
    phases["generations"] = time.perf_counter() - mark

    mark = time.perf_counter()
    users = User.objects.bulk_create(
        User(username=f"reviewer{n:02d}", password="!") for n in range(REVIEWERS)
    )
    User.objects.create_user("bench-admin", password="!", is_staff=True, is_superuser=True)
    rubric = Rubric.objects.current()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("CREATE TEMP TABLE bench_cell (type_id int, endpoint_id int, mu float)")
        cursor.executemany("INSERT INTO bench_cell VALUES (%s, %s, %s)", mu)
        cursor.execute("CREATE TEMP TABLE bench_reviewer (n int, user_id int, bias float)")
        cursor.executemany(
            "INSERT INTO bench_reviewer VALUES (%s, %s, %s)",
            [(n, u.pk, rng.uniform(-1.0, 0.8)) for n, u in enumerate(users)],
        )
        cursor.execute("SELECT setseed(0.6)")
        cursor.execute(
            "CREATE TEMP TABLE bench_item AS SELECT id AS item_id, (random() - 0.5) * 3.5 AS "
            "effect FROM inference_taskitem"
        )
        # Per output: k reviewer slots (hash of the id: 2% none, 1% one, 2% two, else three);
        # slot j goes to reviewer (7·id + 3j) mod 10, three different people.
        cursor.execute(
            """
            INSERT INTO grading_score (public_id, generation_id, reviewer_id, assignment_id,
                score, comment, flagged, flag_reason, position, rubric_id, seconds_spent,
                imported, scored_at, updated_at)
            SELECT 'b' || g.id || '-' || slot.j, g.id, r.user_id, NULL,
                LEAST(10, GREATEST(0, round(c.mu + e.effect + r.bias
                    + (random() + random() + random() + random() - 2) * 1.7)))::int,
                '', false, '', (g.id + slot.j) %% 2, %s, 20 + 60 * random(), false,
                g.finished_at + interval '1 day' + slot.j * interval '1 hour',
                g.finished_at + interval '1 day' + slot.j * interval '1 hour'
            FROM inference_generation g
            JOIN inference_taskitem i ON i.id = g.item_id
            JOIN bench_cell c ON c.type_id = i.task_type_id AND c.endpoint_id = g.endpoint_id
            JOIN bench_item e ON e.item_id = g.item_id
            CROSS JOIN generate_series(0, 2) AS slot(j)
            JOIN bench_reviewer r ON r.n = (g.id * 7 + slot.j * 3) %% 10
            WHERE g.status = 'succeeded'
              AND slot.j < CASE WHEN (g.id * 2654435761) %% 1000 < 20 THEN 0
                                WHEN (g.id * 2654435761) %% 1000 < 30 THEN 1
                                WHEN (g.id * 2654435761) %% 1000 < 50 THEN 2 ELSE 3 END
            """,
            [rubric.pk],
        )
        scores = cursor.rowcount
    # Written behind the review queue's back: stamp the change as its writers do.
    ReviewSettings.objects.scores_changed(Campaign.objects.values_list("pk", flat=True))
    phases["scores"] = time.perf_counter() - mark
    mark = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
        cursor.execute("SELECT pg_database_size(current_database())")
        row = cursor.fetchone()
        cursor.execute(
            "SELECT count(*) FILTER (WHERE finish_reason = 'length'), "
            "count(*) FILTER (WHERE status = 'failed') FROM inference_generation"
        )
        cut, failed = cursor.fetchone() or (0, 0)
    phases["analyze"] = time.perf_counter() - mark
    return {
        "items": items,
        "generations": len(task_items) * len(members),
        "cut_off": cut,
        "failed": failed,
        "scores": scores,
        "db_mb": (row[0] if row else 0) / 2**20,
        "phases": phases,
    }


# --- Child: measure -----------------------------------------------------------------------------


class Recorder:
    """Server time, queries and response size of each request, by measurement name."""

    def __init__(self) -> None:
        self.times: dict[str, list[float]] = {}
        self.queries: dict[str, list[int]] = {}
        self.sizes: dict[str, int] = {}
        self.sql: dict[str, list[str]] = {}

    def timed(self, name: str, call: Callable[[], Any]) -> Any:
        from django.db import connection, reset_queries
        from django.test.utils import CaptureQueriesContext

        # CaptureQueriesContext keeps requests from clearing connection.queries (at most 9,000
        # entries, after which every request would count 0): clear it first.
        reset_queries()
        with CaptureQueriesContext(connection) as captured:
            begin = time.perf_counter()
            response = call()
            elapsed = (time.perf_counter() - begin) * 1000
        assert response.status_code == 200, (name, response.status_code)
        self.times.setdefault(name, []).append(elapsed)
        self.queries.setdefault(name, []).append(len(captured.captured_queries))
        self.sizes[name] = len(response.content)
        self.sql[name] = [query["sql"] for query in captured.captured_queries]
        return response

    def line(self, name: str) -> str:
        times, queries = self.times[name], self.queries[name]
        counts = sorted(set(queries))
        shown = str(counts[0]) if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
        if len(times) == 1:
            figures = f"{times[0]:8.1f} ms (once)                  "
        else:
            figures = (
                f"median {statistics.median(times):7.1f} ms  p95 {percentile(times, 95):7.1f} ms"
                f"  (n={len(times)})"
            )
        return f"  {name:<34} {figures}  {shown:>5} queries  {self.sizes[name] / 1024:6.0f} KiB"


def instrumented(names: Sequence[str]) -> tuple[dict[str, list[float]], Callable[[], None]]:
    """Wrap `grading.stats` functions with timers; returns (seconds per call, undo)."""
    from grading import stats

    spent: dict[str, list[float]] = {name: [] for name in names}
    originals = {name: getattr(stats, name) for name in names}

    def wrap(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            begin = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                spent[name].append(time.perf_counter() - begin)

        return timed

    for name, function in originals.items():
        setattr(stats, name, wrap(name, function))

    def undo() -> None:
        for name, function in originals.items():
            setattr(stats, name, function)

    return spent, undo


def measure(reps: int, cold_reps: int, score_reps: int, label: str) -> dict[str, Any]:
    setup_django()
    from django.contrib.auth.models import User
    from django.core.cache import cache
    from django.db import connection
    from django.test import Client, RequestFactory

    from grading import charts, comparison
    from grading.models import Score
    from inference.models import Campaign, Generation

    cache.clear()
    client = Client()
    client.force_login(
        User.objects.get(username="bench-admin"),
        backend="django.contrib.auth.backends.ModelBackend",
    )
    one = Campaign.objects.get(slug="bench-small")
    overview, page = "/results/", f"/results/{one.public_id}/"
    htmx = {"HX-Request": "true", "HX-Target": "results"}
    record = Recorder()
    print(f"\n{label}", flush=True)

    # Warm the code paths (imports, templates) on a throwaway build, then empty the cache.
    client.get(overview)
    cache.clear()

    for _ in range(cold_reps):
        cache.clear()
        record.timed("cold overview (build)", lambda: client.get(overview))
    for _ in range(reps):
        record.timed("warm overview", lambda: client.get(overview))
    cache.clear()
    record.timed("cold campaign page (build)", lambda: client.get(page))
    for _ in range(reps):
        record.timed("warm campaign page", lambda: client.get(page))
    client.get(overview)  # the overview's Base is cached again
    for name, url, query in (
        ("htmx filter task_type=MT", overview, "?task_type=MT"),
        ("htmx filter modality=vision", overview, "?modality=vision"),
        ("htmx sort by difference", overview, "?sort=-diff"),
        ("htmx campaign page task_type=MT", page, "?task_type=MT"),
    ):
        for _ in range(reps):
            record.timed(name, lambda: client.get(url + query, headers=htmx))  # noqa: B023
    record.timed(
        "htmx reviewer=reviewer03 (cold)",
        lambda: client.get(overview + "?reviewer=reviewer03", headers=htmx),
    )
    for _ in range(reps):
        record.timed(
            "htmx reviewer=reviewer03 (warm)",
            lambda: client.get(overview + "?reviewer=reviewer03", headers=htmx),
        )

    # A score arrives: the next requests answer from the previous figures while one rebuild
    # runs, first in a thread of this process, then in a Celery worker process (and, to tell
    # this code's cost from the rebuild's competition for the CPU, with no rebuild at all).
    nothing_competing(client, overview, record, reps)
    fresh = {
        "thread": new_scores(client, overview, record, score_reps, worker=False),
        "worker": new_scores(client, overview, record, score_reps, worker=True),
    }
    for name in record.times:
        print(record.line(name), flush=True)
    for runner, found in fresh.items():
        print(f"  after a new score, rebuilds in {WHERE[runner]}:")
        for name, unit in (("poll_ms", "ms per status poll while updating (204)"),
                           ("until_fresh", "s until the fresh figures are served"),
                           ("rebuild", "s per rebuild (its own time)")):  # fmt: skip
            values = found[name]
            print(
                f"    median {statistics.median(values):6.2f}  p95 {percentile(values, 95):6.2f}"
                f"  max {max(values):6.2f} {unit} (n={len(values)})",
                flush=True,
            )

    # --- What a warm request spends its time on. -------------------------------------------
    from grading import freshness, views

    request = RequestFactory().get(overview)
    request.user = User.objects.get(username="bench-admin")

    def timed_ms(call: Callable[[], Any], n: int = 5) -> tuple[float, Any]:
        result, best = None, math.inf
        for _ in range(n):
            begin = time.perf_counter()
            result = call()
            best = min(best, (time.perf_counter() - begin) * 1000)
        return best, result

    parts: dict[str, float] = {}
    visible = views._results_campaigns(request)
    parts["campaign list (overview query)"], chosen = timed_ms(lambda: list(visible))
    pks = [campaign.pk for campaign in chosen]
    infos = comparison.campaign_infos(chosen)
    parts["stamps (2 aggregate queries)"], _ = timed_ms(lambda: comparison.stamps(pks))
    parts["load (stamps + cache get)"], base = timed_ms(
        lambda: freshness.figures(chosen, scored_only=True).base
    )
    pickled = pickle.dumps(base, pickle.HIGHEST_PROTOCOL)
    parts["unpickle Base"], _ = timed_ms(lambda: pickle.loads(pickled))  # noqa: S301
    filters = comparison.Filters()
    parts["select (all task types)"], selection = timed_ms(lambda: comparison.select(base, filters))
    parts["select (task_type=MT)"], _ = timed_ms(
        lambda: comparison.select(base, comparison.Filters(task_types=("MT",)))
    )
    parts["charts"], figures = timed_ms(lambda: charts.charts(selection))
    figure_bytes = sum(len(json.dumps(chart.figure)) for chart in figures)
    print(f"  warm request parts (best of 5), {label}:")
    for name, ms in parts.items():
        print(f"    {name:<36} {ms:7.1f} ms")
    print(
        f"    cached Base: {len(pickled) / 1024:,.0f} KiB pickled; figures' JSON "
        f"{figure_bytes / 1024:,.0f} KiB; page {record.sizes['warm overview'] / 1024:,.0f} KiB"
    )
    explain(record.sql["warm overview"])

    # --- What the cold build spends its time on. --------------------------------------------
    from django.db.models import Q

    def score_rows() -> int:
        rows = Score.objects.filter(generation__campaign_id__in=pks).order_by().values_list(
            "generation__campaign_id", "generation__item__task_type_id",
            "generation__endpoint__slug", "generation__item_id", "generation_id",
            "reviewer__username", "score",
        )  # fmt: skip
        return sum(1 for _ in rows.iterator(chunk_size=5000))

    def generation_rows() -> int:
        rows = Generation.objects.filter(
            Q(campaign_id__in=pks), Q(status__in=comparison.SPEED_STATUSES)
        ).order_by().values_list(
            "pk", "campaign_id", "item__task_type_id", "endpoint__slug", "status", "ttft_ms",
            "decode_tps", "e2e_tps", "response_time_ms", "completion_tokens", "finish_reason",
        )  # fmt: skip
        return sum(1 for _ in rows.iterator(chunk_size=5000))

    score_ms, n_scores = timed_ms(score_rows, 2)
    generation_ms, n_generations = timed_ms(generation_rows, 2)
    names = ("summarise", "histogram", "paired_difference", "agreement", "severity", "pooled_speed")
    spent, undo = instrumented(names)
    try:
        begin = time.perf_counter()
        built = comparison.build(infos)
        build_ms = (time.perf_counter() - begin) * 1000
        comparison.select(built, filters)  # `speed` runs here, per model
    finally:
        undo()
    in_stats = sum(sum(v) for k, v in spent.items() if k != "pooled_speed") * 1000
    print(f"  comparison.build, {label}: {build_ms:,.0f} ms, of which")
    print(f"    score rows        {score_ms:7.0f} ms  ({n_scores:,} rows: query + iteration)")
    print(f"    generation rows   {generation_ms:7.0f} ms  ({n_generations:,} rows)")
    for name in names:
        calls = spent[name]
        where = "in select, per model" if name == "pooled_speed" else ""
        print(
            f"    stats.{name:<18} {sum(calls) * 1000:7.0f} ms  ({len(calls)} calls, "
            f"max {max(calls, default=0) * 1000:.0f} ms) {where}"
        )
    rest = build_ms - score_ms - generation_ms - in_stats
    print(f"    the rest (pooling, coverage, small queries) {rest:7.0f} ms")
    print(f"    statistics alone (without speed): {in_stats:,.0f} ms", flush=True)
    connection.close()
    return {
        "fresh": fresh,
        "times": record.times,
        "queries": record.queries,
        "parts": parts,
        "pickled_kib": len(pickled) / 1024,
        "build_ms": build_ms,
        "stats_ms": in_stats,
    }


WHERE = {"thread": "a thread of the web process", "worker": "a Celery worker process"}
POLL = {"HX-Request": "true", "HX-Target": "results", "HX-Trigger": "freshness"}
REBUILT = re.compile(r'msg="results rebuilt".*?outcome=built.*?seconds=([0-9.]+)')


class Rebuilds(logging.Handler):
    """Collects the seconds of each rebuild that built, from grading.freshness's log line."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds: list[float] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage() == "results rebuilt" and getattr(record, "outcome", "") == "built":
            self.seconds.append(float(getattr(record, "seconds", 0.0)))


def start_worker(queue: str, log: Path) -> subprocess.Popen[str]:
    """A Celery worker process on `queue`, with this process's settings (database, cache)."""
    # fmt: off
    command = [
        sys.executable, "-m", "celery", "-A", "grading", "worker", "-Q", queue,
        "-n", f"{queue}@%h", "--concurrency", "2", "--loglevel", "INFO",
        "--without-mingle", "--without-gossip", "--without-heartbeat",
    ]
    # fmt: on
    env = {**os.environ, "CELERY_DEFAULT_QUEUE": queue, "LOG_LEVEL": "INFO"}
    handle = log.open("w")
    process = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=handle, stderr=subprocess.STDOUT, text=True
    )
    deadline = time.monotonic() + 60
    while "ready." not in log.read_text(errors="replace"):
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"celery worker did not start:\n{log.read_text()}")
        time.sleep(0.2)
    return process


def score_one() -> None:
    """reviewer00 scores an unscored answer, as the review page would."""
    from django.contrib.auth.models import User
    from django.utils import timezone

    from grading.models import ReviewSettings, Rubric, Score
    from inference.models import Generation, GenerationStatus

    generation = (
        Generation.objects.filter(status=GenerationStatus.SUCCEEDED, scores__isnull=True)
        .order_by("pk")
        .first()
    )
    assert generation is not None
    Score.objects.create(
        generation=generation, reviewer=User.objects.get(username="reviewer00"), score=7,
        position=0, rubric=Rubric.objects.current(), scored_at=timezone.now(),
    )  # fmt: skip
    ReviewSettings.objects.scores_changed([generation.campaign_id])


def nothing_competing(client: Any, url: str, record: Recorder, reps: int) -> None:
    """Diagnostic: the first request after a new score when no rebuild competes for the CPU
    (the claim is made, but the rebuild goes to a queue nobody reads, its watcher told to wait
    an hour, and the claim is dropped afterwards, which stops the watcher)."""
    from django.conf import settings
    from django.core.cache import cache

    from grading import freshness
    from grading.models import FigureBuild

    settings.CELERY_TASK_DEFAULT_QUEUE = f"bench-nobody-{os.getpid()}"
    wait_s, settings.RESULTS_WORKER_START_S = settings.RESULTS_WORKER_START_S, 3600
    cache.delete(freshness.WORKER_KEY)
    name = "first request after a new score (no rebuild running)"
    for _ in range(reps):
        score_one()
        first = record.timed(name, lambda: client.get(url))
        assert b'id="freshness"' in first.content, "the first request was not stale"
        FigureBuild.objects.all().delete()
    settings.RESULTS_WORKER_START_S = wait_s


def new_scores(
    client: Any, url: str, record: Recorder, reps: int, *, worker: bool
) -> dict[str, list[float]]:
    """Score `reps` times; each time, time the first request, the status polls while updating
    (ms), the seconds until the fresh figures are served and the rebuild's own cost."""
    from django.conf import settings
    from django.core.cache import cache

    from grading import freshness
    from grading.models import FigureBuild

    runner = "worker" if worker else "thread"
    queue = f"bench-rebuild-{os.getpid()}-{runner}"
    settings.CELERY_TASK_DEFAULT_QUEUE = queue
    rebuilds = Rebuilds()
    logging.getLogger("grading.freshness").addHandler(rebuilds)
    logging.getLogger("grading.freshness").propagate = False  # stdout carries our JSON
    process = None
    log = Path(tempfile.mkdtemp(prefix="bench-worker-")) / "worker.log"
    if worker:
        cache.delete(freshness.WORKER_KEY)  # nothing known: the first rebuild finds the worker
        process = start_worker(queue, log)
    else:
        cache.set(freshness.WORKER_KEY, "", 3600)  # no worker answers: threads at once
    until_fresh: list[float] = []
    polls: list[float] = []
    try:
        for _ in range(reps):
            score_one()
            scored = time.perf_counter()
            first = record.timed(
                f"first request after a new score ({runner})", lambda: client.get(url)
            )
            assert b'id="freshness"' in first.content, "the first request was not stale"
            while True:
                begin = time.perf_counter()
                response = client.get(url, headers=POLL)
                if response.status_code == 200:
                    until_fresh.append(time.perf_counter() - scored)
                    break
                assert response.status_code == 204, response.status_code
                polls.append((time.perf_counter() - begin) * 1000)
                time.sleep(0.1)
                assert time.perf_counter() - scored < 600, "the figures stayed stale"
            deadline = time.monotonic() + 60
            while FigureBuild.objects.exists() and time.monotonic() < deadline:
                time.sleep(0.05)  # the builder lets go of its claim just after storing
    finally:
        logging.getLogger("grading.freshness").removeHandler(rebuilds)
        if process is not None:
            process.terminate()
            process.wait(timeout=30)
    if worker:
        seconds = [float(m) for m in REBUILT.findall(log.read_text(errors="replace"))]
    else:
        seconds = rebuilds.seconds
    return {"until_fresh": until_fresh, "rebuild": seconds, "poll_ms": polls}


def explain(sqls: Sequence[str]) -> None:
    """EXPLAIN ANALYZE each SELECT of a request (best of 3): which ones cost, and their plans."""
    from django.db import connection

    print("  the warm overview's queries (EXPLAIN ANALYZE, best of 3):")
    with connection.cursor() as cursor:
        for sql in sqls:
            if not sql.startswith("SELECT"):
                continue
            best, nodes = math.inf, ""
            for _ in range(3):
                cursor.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}")
                row = cursor.fetchone()
                assert row is not None
                plan = row[0] if isinstance(row[0], list) else json.loads(row[0])
                best = min(best, float(plan[0]["Execution Time"]))
                nodes = ", ".join(sorted(set(scan_nodes(plan[0]["Plan"]))))
            table = sql.split(' FROM "', 1)[1].split('"', 1)[0] if ' FROM "' in sql else "?"
            print(f"    {best:7.2f} ms  {table:<28} {nodes}")


def scan_nodes(plan: dict[str, Any]) -> list[str]:
    found = []
    if "Scan" in plan["Node Type"]:
        found.append(f"{plan['Node Type']} on {plan.get('Relation Name', '?')}")
    for child in plan.get("Plans", []):
        found.extend(scan_nodes(child))
    return found


# --- Parent -------------------------------------------------------------------------------------


def flush_redis() -> None:
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()


def verdict(result: dict[str, Any], name: str) -> str:
    p95 = percentile(result["times"][name], 95)
    return f"{name}: p95 {p95:.1f} ms {'meets' if p95 < TARGET_MS else 'misses'} {TARGET_MS:.0f} ms"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--build", type=int, metavar="SCORES")
    parser.add_argument("--measure", metavar="LABEL")
    parser.add_argument("--scores", type=int, default=300_000)
    parser.add_argument("--small-scores", type=int, default=30_000)
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--cold-reps", type=int, default=3)
    parser.add_argument("--score-reps", type=int, default=10)
    parser.add_argument("--no-file-cache", action="store_true")
    args = parser.parse_args()
    if args.build:
        print(json.dumps(build(args.build)))
        return
    if args.measure:
        print(json.dumps(measure(args.reps, args.cold_reps, args.score_reps, args.measure)))
        return

    try:
        import psycopg

        psycopg.connect(ADMIN_URL, connect_timeout=2).close()
        flush_redis()
    except Exception as error:
        sys.exit(f"this benchmark needs PostgreSQL on 127.0.0.1:5432 and Redis: {error}")

    results: dict[tuple[str, str], dict[str, Any]] = {}
    sizes = [("big", args.scores)] + ([("small", args.small_scores)] if args.small_scores else [])
    with tempfile.TemporaryDirectory(prefix="gradebench-bench-") as tmp:
        base_env = {
            **os.environ,
            "GRADEBENCH_VAR_DIR": str(Path(tmp) / "var"),
            "DEBUG": "1",  # plain http in the test client, static files without a manifest
            "ALLOWED_HOSTS": "testserver",
        }
        base_env.pop("REDIS_URL", None)
        for size, scores in sizes:
            name = f"gradebench_bench_comparison_{size}_{os.getpid()}"
            env = {**base_env, "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{name}"}
            create_database(name)
            try:
                migrate(env)
                b = run_child(__file__, env, "--build", str(scores), echo=True)
                phases = ", ".join(f"{k} {v:.1f} s" for k, v in b["phases"].items())
                print(
                    f"\n== {size} database: 3 campaigns x 2 models, 21 task types, "
                    f"{b['items']:,} items, {b['generations']:,} generations "
                    f"({b['failed']:,} failed, {b['cut_off']:,} cut off by length), "
                    f"{REVIEWERS} reviewers, {b['scores']:,} scores; {b['db_mb']:,.0f} MB; "
                    f"built in {phases}",
                    flush=True,
                )
                caches: list[tuple[str, dict[str, str]]] = [
                    ("redis", {**env, "REDIS_URL": REDIS_URL, "CACHE_KEY_PREFIX": "bench"})
                ]
                if size == "big" and not args.no_file_cache:
                    caches.append(("file", env))
                for cache_name, cache_env in caches:
                    if cache_name == "redis":
                        flush_redis()
                    reps = args.reps if size == "big" else max(5, args.reps // 3)
                    cold = args.cold_reps if size == "big" else 1
                    label = f"{size} database ({b['scores']:,} scores), {cache_name} cache"
                    score_reps = args.score_reps if size == "big" else max(3, args.score_reps // 2)
                    results[size, cache_name] = run_child(
                        __file__, cache_env, "--measure", label, "--reps", str(reps),
                        "--cold-reps", str(cold), "--score-reps", str(score_reps), echo=True,
                    )  # fmt: skip
            finally:
                drop_database(name)
                flush_redis()

    big = results["big", "redis"]
    print("\n== Summary")
    for name in (
        "warm overview",
        "warm campaign page",
        "htmx filter task_type=MT",
        "first request after a new score (worker)",
        "first request after a new score (thread)",
        "first request after a new score (no rebuild running)",
    ):
        print("  " + verdict(big, name))
    for runner, found in big["fresh"].items():
        until, cost = found["until_fresh"], found["rebuild"]
        print(
            f"  rebuild in {WHERE[runner]}: fresh figures served after median "
            f"{statistics.median(until):.1f} s (max {max(until):.1f} s) from the score; "
            f"a rebuild costs median {statistics.median(cost):.1f} s"
        )
    if ("small", "redis") in results:
        small = results["small", "redis"]
        print("  queries per request, small vs big database:")
        for name in big["queries"]:
            few, many = sorted(set(small["queries"][name])), sorted(set(big["queries"][name]))
            same = "same" if few == many else "DIFFERENT"
            print(f"    {name:<34} {few} vs {many}: {same}")


if __name__ == "__main__":
    main()
