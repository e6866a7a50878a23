"""Benchmark: the bias and ranking pages (`/results/bias-ranking/`, `/results/<c>/bias-ranking/`).

Target: the warm page under 300 ms p95, with a query count that does not grow with the data;
the figures (`analyses.build`) are built once per scope, by a worker after a new score, so the
first build is reported apart.

The data is `bench_comparison`'s (a throwaway PostgreSQL database per size, built in a child
process): 3 campaigns of two models each (6 models), 21 task types, 10 reviewers, every score
with a position and every answer with a completion-token count, `--scores` scores (default
300,000) and `--small-scores` (default 30,000) for the query counts. Measured in a child
process (Django's test Client, an admin, Redis cache on db 9, flushed first):

  first build    the overview and a campaign page with an empty cache (`analyses.build` in the
                 request), and the parts of that build (the read, each analysis)
  warm           the pages again, `--reps` times: p50, p95, queries
  filter         htmx ?task_type=MT on the overview, warm

    python tests/benchmarks/bench_bias_ranking_page.py [--scores 300000] [--small-scores 30000]
        [--reps 30]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.benchmarks import bench_comparison
from tests.benchmarks.harness import (
    ADMIN_URL,
    create_database,
    drop_database,
    migrate,
    percentile,
    run_child,
    setup_django,
)

REDIS_URL = "redis://127.0.0.1:6379/9"
TARGET_MS = 300.0
PARTS = (
    ("analysis_export", "read"),
    ("analysis_export", "answer_cells"),
    ("analysis_export", "ranking_fits"),
    ("analysis_export", "position_figures"),
    ("analysis_export", "balance_figures"),
    ("analysis_export", "length_figures"),
    ("analysis_export", "association_figures"),
)


def flush_redis() -> None:
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()


def measure(reps: int) -> dict[str, Any]:
    setup_django()
    from django.contrib.auth.models import User
    from django.db import connection, reset_queries
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from django.urls import reverse

    from grading import analysis_export
    from inference.models import Campaign

    client = Client()
    client.force_login(User.objects.get(username="bench-admin"))
    campaign = Campaign.objects.get(slug="bench-medium")
    pages = {
        "overview": (reverse("results-analyses"), {}, {}),
        "campaign page": (reverse("campaign-analyses", args=[campaign.public_id]), {}, {}),
        "htmx filter task_type=MT": (
            reverse("results-analyses"),
            {"task_type": "MT"},
            {"HX-Request": "true", "HX-Target": "analyses"},
        ),
    }

    parts: dict[str, float] = {}

    def wrap(module: Any, name: str) -> None:
        real = getattr(module, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            result = real(*args, **kwargs)
            if hasattr(result, "__next__"):  # a generator: time it to the end
                result = list(result)
            parts[name] = parts.get(name, 0.0) + time.perf_counter() - start
            return result

        setattr(module, name, timed)

    for _, name in PARTS:
        wrap(analysis_export, name)

    def get(name: str) -> tuple[float, int]:
        url, query, headers = pages[name]
        reset_queries()
        with CaptureQueriesContext(connection) as queries:
            start = time.perf_counter()
            response = client.get(url, query, headers=headers)
            elapsed = (time.perf_counter() - start) * 1000
        assert response.status_code == 200, (name, response.status_code)
        assert b'id="freshness"' not in response.content
        return elapsed, len(queries)

    result: dict[str, Any] = {"first": {}, "warm": {}, "queries": {}}
    for name in ("overview", "campaign page"):
        parts.clear()
        elapsed, _ = get(name)
        result["first"][name] = {"ms": elapsed, "parts": dict(parts)}
    for name in pages:
        times, counts = [], []
        get(name)
        for _ in range(reps):
            elapsed, n = get(name)
            times.append(elapsed)
            counts.append(n)
        result["warm"][name] = times
        result["queries"][name] = sorted(set(counts))
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--build", type=int, metavar="SCORES")
    parser.add_argument("--measure", action="store_true")
    parser.add_argument("--scores", type=int, default=300_000)
    parser.add_argument("--small-scores", type=int, default=30_000)
    parser.add_argument("--reps", type=int, default=30)
    args = parser.parse_args()
    if args.build:
        print(json.dumps(bench_comparison.build(args.build)))
        return
    if args.measure:
        print(json.dumps(measure(args.reps)))
        return
    try:
        import psycopg

        psycopg.connect(ADMIN_URL, connect_timeout=2).close()
        flush_redis()
    except Exception as error:
        sys.exit(f"this benchmark needs PostgreSQL on 127.0.0.1:5432 and Redis: {error}")

    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="gradebench-bench-") as tmp:
        base_env = {
            **os.environ,
            "GRADEBENCH_VAR_DIR": str(Path(tmp) / "var"),
            "DEBUG": "1",
            "ALLOWED_HOSTS": "testserver",
            "REDIS_URL": REDIS_URL,
            "CACHE_KEY_PREFIX": "bench-bias",
        }
        for size, scores in (("big", args.scores), ("small", args.small_scores)):
            name = f"gb_bpages_bench_{size}_{os.getpid()}"
            env = {**base_env, "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{name}"}
            create_database(name)
            try:
                migrate(env)
                built = run_child(__file__, env, "--build", str(scores))
                flush_redis()
                reps = args.reps if size == "big" else max(5, args.reps // 3)
                found = run_child(__file__, env, "--measure", "--reps", str(reps))
                found["scores"] = built["scores"]
                results[size] = found
            finally:
                drop_database(name)
                flush_redis()

    for size, found in results.items():
        print(f"\n== {size} database: {found['scores']:,} scores, 6 models, 3 campaigns")
        for name, first in found["first"].items():
            breakdown = ", ".join(f"{k} {v:.2f} s" for k, v in first["parts"].items())
            print(f"  first build, {name}: {first['ms'] / 1000:.2f} s ({breakdown})")
        for name, times in found["warm"].items():
            p95 = percentile(times, 95)
            verdict = "OK" if p95 < TARGET_MS else "OVER TARGET"
            print(
                f"  warm {name}: p50 {statistics.median(times):.0f} ms, p95 {p95:.0f} ms "
                f"({len(times)} requests; target < {TARGET_MS:.0f} ms: {verdict}), "
                f"queries {found['queries'][name]}"
            )
    if len(results) == 2:
        print("\n== queries per warm request, small vs big database:")
        for name in results["big"]["queries"]:
            few, many = results["small"]["queries"][name], results["big"]["queries"][name]
            print(f"  {name:<28} {few} vs {many}: {'same' if few == many else 'DIFFERENT'}")


if __name__ == "__main__":
    main()
