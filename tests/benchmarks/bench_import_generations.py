"""Benchmark: `import_generations` of 100,000 answers (2 models x 50,000 items), then the review
queue on the imported campaign.

In a throwaway PostgreSQL database (SQLite when PostgreSQL does not answer on 127.0.0.1:5432):
a suite of N items is created in bulk and a CSV of 2 x N answers written, as
`export_generations --with-text` writes them (Chinese Markdown answers of ~300 characters, one
in ten naming a model, one in ten without timings). Each step runs in a child process of its
own, so its peak memory (max RSS) is its own:

  import     `inference.generations_import.import_generations` of the file: rows per second,
             SQL queries per row, peak RSS
  re-import  the same file again (every row unchanged; nothing written)
  review     a reviewer force-logged-in with Django's test Client: the first GET /review/next/
             (which makes the campaign's N review units), then R repetitions of
             GET /review/next/ (reserves a unit, 302) + GET /review/a/<id>/ (the page), each
             unit submitted through `grading.assignment.submit`: p50 / p95 server time and
             queries per request. After the first request and a warm-up, the database is
             VACUUM ANALYZEd (on PostgreSQL), as autovacuum would soon do after 100,000 new rows
             and as `bench_review.py` does after loading.

    python tests/benchmarks/bench_import_generations.py [--items 50000] [--reps 200]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.benchmarks.harness import (
    bulk_suite,
    create_database,
    drop_database,
    migrate,
    percentile,
    postgres_available,
    run_child,
    setup_django,
)

MODELS = ("vendor-a-chat", "vendor-b-chat")
TEXT_TYPES = ["AR", "CK", "CR", "CG", "TG", "FP", "GCG", "IE", "MR", "QA", "SP", "SR", "SUM", "TAG"]
ANSWER = (
    "## 解答\n\n这道题考查的是对基本概念的理解。首先,我们需要明确题目中的条件:{n} 个对象"
    "按照规则排列,每一步都要满足约束。\n\n1. 第一步,列出已知条件;\n2. 第二步,逐一验证;\n"
    "3. 第三步,得出结论。\n\n因此答案是 **{answer}**。{leak}"
)


def max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def setup(items: int, path: str) -> None:
    """Create the suite and write the answers file."""
    setup_django()
    from inference.generations_export import columns
    from inference.models import TaskType

    types = dict(TaskType.objects.filter(code__in=TEXT_TYPES).values_list("code", "pk"))
    suite, made = bulk_suite("bench", items, [types[c] for c in TEXT_TYPES], "第{n}题:请解答。")
    codes = {pk: code for code, pk in types.items()}
    header = list(columns(with_text=True))
    rng = random.Random(5)
    rows = 0
    with open(path, "w", encoding="utf-8", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(header)
        for item in made:
            for model in MODELS:
                timed = rng.random() >= 0.1
                tokens = rng.randint(80, 900)
                response = rng.uniform(800, 20000)
                values: dict[str, Any] = {
                    "campaign": "harness",
                    "matchup": "ab",
                    "task_type": codes[item.task_type_id],
                    "item_id": item.external_id,
                    "model": model,
                    "sample": 0,
                    "status": "succeeded",
                    "attempts": 1,
                    "finish_reason": "stop",
                    "ttft_ms": f"{rng.uniform(50, 900):.3f}" if timed else "",
                    "response_time_ms": f"{response:.3f}" if timed else "",
                    "prompt_tokens": 40,
                    "completion_tokens": tokens,
                    "total_tokens": tokens + 40,
                    "e2e_tps": f"{tokens / response * 1000:.3f}" if timed else "",
                    "usage_source": "server",
                    "simulated": "false",
                    "source": "generated",
                    "content": ANSWER.format(
                        n=item.external_id,
                        answer=rng.randint(1, 99),
                        leak="作为文心一言,我认为如此。" if rng.random() < 0.1 else "",
                    ),
                }
                writer.writerow([values.get(name, "") for name in header])
                rows += 1
    print(json.dumps({"rows": rows, "suite": suite.name, "bytes": Path(path).stat().st_size}))


def load(path: str) -> None:
    """Import the file once; print seconds, queries and peak RSS."""
    setup_django()
    from django.db import connection

    from inference.generations_import import import_generations

    queries = 0

    def counting(execute, sql, params, many, context):  # type: ignore[no-untyped-def]
        nonlocal queries
        queries += 1
        return execute(sql, params, many, context)

    with connection.execute_wrapper(counting):
        start = time.perf_counter()
        report = import_generations(Path(path))
        seconds = time.perf_counter() - start
    print(
        json.dumps(
            {
                "seconds": seconds,
                "rows": report.total,
                "created": report.created,
                "unchanged": report.unchanged,
                "untimed": report.untimed,
                "queries": queries,
                "max_rss_mb": max_rss_mb(),
            }
        )
    )


def review(reps: int) -> None:
    """The review queue on the imported campaign, in process (Django's test Client)."""
    setup_django()
    from django.contrib.auth.models import User
    from django.db import connection, reset_queries
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from grading import assignment as queue
    from grading.models import Assignment, ReviewUnit
    from grading.roles import reviewers_group

    rng = random.Random(11)
    user = User.objects.create_user("reviewer00")
    user.groups.add(reviewers_group())
    client = Client()
    client.force_login(user, backend="django.contrib.auth.backends.ModelBackend")
    times: dict[str, list[float]] = {}
    queries: dict[str, list[int]] = {}

    def timed(name: str, call: Callable[[], Any]) -> Any:
        reset_queries()
        with CaptureQueriesContext(connection) as captured:
            begin = time.perf_counter()
            response = call()
            elapsed = (time.perf_counter() - begin) * 1000
        times.setdefault(name, []).append(elapsed)
        queries.setdefault(name, []).append(len(captured.captured_queries))
        return response

    def submit_directly(url: str) -> None:
        held = Assignment.objects.select_related("unit").get(
            public_id=url.rstrip("/").rsplit("/", 1)[-1]
        )
        assert queue.submit(held, {pid: {"score": rng.randint(0, 10)} for pid in held.order})

    first = timed("first GET /review/next/ (makes the units)", lambda: client.get("/review/next/"))
    assert first.status_code == 302, first.status_code
    units = ReviewUnit.objects.count()
    submit_directly(first["Location"])
    for _ in range(5):  # warm-up, not counted
        response = client.get("/review/next/")
        assert client.get(response["Location"]).status_code == 200
        submit_directly(response["Location"])
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE")
    for _ in range(reps):
        response = timed("GET /review/next/", lambda: client.get("/review/next/"))
        assert response.status_code == 302, response.status_code
        url = response["Location"]
        page = timed("GET /review/a/<id>/", lambda: client.get(url))  # noqa: B023
        assert page.status_code == 200 and b'name="score-1"' in page.content
        submit_directly(url)
    print(json.dumps({"times": times, "queries": queries, "units": units}))


def spread(values: list[float]) -> str:
    return (
        f"p50 {percentile(values, 50):.1f} ms, p95 {percentile(values, 95):.1f} ms, "
        f"max {max(values):.1f} ms"
    )


def bench(label: str, env: dict[str, str], work: Path, items: int, reps: int) -> None:
    migrate(env)
    path = work / "answers.csv"
    made = run_child(__file__, env, "--setup", str(path), "--items", str(items))
    print(f"{label}: file of {made['rows']:,} answers, {made['bytes'] / 2**20:.1f} MB")
    for step in ("import", "re-import"):
        result = run_child(__file__, env, "--load", str(path))
        rows = result["rows"]
        print(
            f"{label}: {step:9} {rows:,} rows in {result['seconds']:.1f} s = "
            f"{rows / result['seconds']:,.0f} rows/s; {result['queries']:,} queries "
            f"({result['queries'] / rows:.4f} per row); created {result['created']:,}, "
            f"unchanged {result['unchanged']:,}, without timings {result['untimed']:,}; "
            f"peak RSS {result['max_rss_mb']:.0f} MB"
        )
    measured = run_child(__file__, env, "--review", "--reps", str(reps))
    print(f"{label}: review queue on the imported campaign ({measured['units']:,} units)")
    for name, values in measured["times"].items():
        counts = measured["queries"][name]
        print(
            f"{label}:   {name:45} {spread(values)}; queries {min(counts)}–{max(counts)} "
            f"(n={len(values)})"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--reps", type=int, default=200)
    parser.add_argument("--setup")
    parser.add_argument("--load")
    parser.add_argument("--review", action="store_true")
    args = parser.parse_args()
    if args.setup:
        setup(args.items, args.setup)
        return
    if args.load:
        load(args.load)
        return
    if args.review:
        review(args.reps)
        return
    with tempfile.TemporaryDirectory(prefix="gradebench-bench-") as tmp:
        work = Path(tmp)
        # DEBUG=1: plain http for the test Client, whose host is "testserver".
        base_env = {
            **os.environ,
            "GRADEBENCH_VAR_DIR": str(work / "var"),
            "DEBUG": "1",
            "ALLOWED_HOSTS": "127.0.0.1,testserver",
        }
        base_env.pop("REDIS_URL", None)
        print(f"{args.items:,} items x {len(MODELS)} models; review: {args.reps} repetitions")
        if postgres_available():
            name = f"gradebench_bench_{os.getpid()}"
            create_database(name)
            try:
                url = f"postgres://postgres@127.0.0.1:5432/{name}"
                bench("PostgreSQL", {**base_env, "DATABASE_URL": url}, work, args.items, args.reps)
            finally:
                drop_database(name)
        else:
            print("PostgreSQL: not reachable on 127.0.0.1:5432; SQLite instead")
            url = f"sqlite:///{work / 'bench.sqlite3'}"
            bench("SQLite", {**base_env, "DATABASE_URL": url}, work, args.items, args.reps)


if __name__ == "__main__":
    main()
