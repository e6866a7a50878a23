"""Benchmark: a campaign's judges page (`/results/<campaign>/judges/`) on 300,000 human scores
and 100,000 judgements of one judge (110,000 with the second judge's).

Target: the warm page under 300 ms p95, with a query count that does not grow with the data.

The data (a throwaway PostgreSQL database on 127.0.0.1:5432, migrated, built in a child
process with bulk inserts): one finished campaign of three models (so two matchups) whose suite
cycles over all 21 task types; each model answers every item once; 10 reviewers, 3 of them
score each answer (round(model × task-type level + item difficulty + reviewer severity +
noise), clipped to 0–10); one outside judge scores every answer, near the people on most task
types and loosely on a few, with 3% unparseable and 1% failed replies; a second judge — one of
the campaign's models — scores a tenth of the answers. Items: scores / 9 (33,334 at 300,000).

Measured in a child process (Django's test Client, an admin force-logged-in, the Redis cache
flushed first; time is perf_counter around the client call, queries from
`CaptureQueriesContext`):

  first build   the page with an empty cache: `judge_stats.build` and the render
  warm          the page again (the cache key's queries + the cached results + render)
  htmx          the page's `#judges` fragment, warm
  csv           the agreement CSV, warm
  disagreements the admin's disagreements page, warm

and the same on a database a tenth the size, to show that the warm page's query count is the
same whatever the data.

    python tests/benchmarks/bench_judge_results.py [--scale 1.0] [--reps 30] [--database NAME]

`--scale` multiplies both sizes (0.05: 15,000 scores and 5,500 judgements, a quick check).
"""

from __future__ import annotations

import argparse
import json
import os
import random
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
    finished_campaign,
    migrate,
    percentile,
    postgres_available,
    run_child,
    setup_django,
    unused_endpoint,
)

SCORES = 300_000
JUDGEMENTS = 100_000
REVIEWERS = 10
PER_ANSWER = 3
MODELS = ("ernie-4.5-21b-a3b", "deepseek-r1-distill-qwen-32b", "qwen2.5-vl-32b")
TARGET_MS = 300.0
BATCH = 10_000
DEFAULT_REDIS = "redis://127.0.0.1:6379/13"


def build(scores: int, judgements: int) -> dict[str, Any]:
    """Fill the migrated, empty database (see the module docstring)."""
    setup_django()

    from django.contrib.auth.models import User
    from django.db import connection
    from django.utils import timezone

    from grading.models import ReviewSettings, Rubric, Score
    from inference.models import Generation, GenerationStatus, Judgement, TaskType

    rng = random.Random(10)
    start = time.perf_counter()
    types = list(TaskType.objects.order_by("position", "code"))
    answers = scores // PER_ANSWER
    items = max(len(types), answers // len(MODELS))
    suite, made = bulk_suite("bench-judges", items, [t.pk for t in types], "问题 {n}")
    endpoints = [unused_endpoint(slug) for slug in MODELS]
    outside = unused_endpoint("judge-large")
    campaign = finished_campaign("bench-judges", suite, endpoints, reviewers_per_output=3)
    campaign.judges.set([outside, endpoints[0]])
    User.objects.create_superuser("bench-admin", "admin@example.org", None)
    people = [User.objects.create_user(f"reviewer{n:02d}") for n in range(REVIEWERS)]
    rubric = Rubric.objects.current()

    now = timezone.now()
    generations = Generation.objects.bulk_create(
        (
            Generation(
                campaign=campaign,
                item=item,
                endpoint=endpoint,
                status=GenerationStatus.SUCCEEDED,
                content="回答",
                attempts=1,
                finished_at=now,
            )
            for item in made
            for endpoint in endpoints
        ),
        batch_size=BATCH,
    )
    level = {(t.pk, e.pk): rng.uniform(3, 8) for t in types for e in endpoints}
    difficulty = [rng.gauss(0, 1) for _ in made]
    severity = [rng.gauss(0, 0.8) for _ in people]
    type_of = {item.pk: item.task_type_id for item in made}
    index_of = {item.pk: n for n, item in enumerate(made)}
    truth = {
        g.pk: level[type_of[g.item_id], g.endpoint_id] + difficulty[index_of[g.item_id]]
        for g in generations
    }

    def clipped(value: float) -> int:
        return round(min(10.0, max(0.0, value)))

    def score_rows() -> Any:
        for g in generations:
            for position, who in enumerate(rng.sample(range(REVIEWERS), PER_ANSWER)):
                yield Score(
                    generation_id=g.pk, reviewer=people[who], rubric=rubric, position=position,
                    score=clipped(truth[g.pk] + severity[who] + rng.gauss(0, 1.2)), scored_at=now,
                )  # fmt: skip

    Score.objects.bulk_create(score_rows(), batch_size=BATCH)
    ReviewSettings.objects.scores_changed([campaign.pk])

    loose = {t.pk: rng.random() < 0.2 for t in types}

    def judgement_rows() -> Any:
        limit = judgements
        chosen = rng.sample(generations, min(len(generations), limit))
        second = chosen[: max(1, len(chosen) // 10)]
        for judge, answers_judged in ((outside, chosen), (endpoints[0], second)):
            for g in answers_judged:
                draw = rng.random()
                common = {
                    "campaign": campaign, "generation_id": g.pk, "judge": judge,
                    "prompt_version": "judge-v1", "finished_at": now,
                    "rationale": "理由:回答基本正确,但缺少步骤。" * 3,
                }  # fmt: skip
                if draw < 0.03:
                    yield Judgement(**common, status="unparseable", raw_output="…")
                elif draw < 0.04:
                    yield Judgement(**common, status="failed", error="HTTP 503")
                else:
                    noise = 3.0 if loose[type_of[g.item_id]] else 0.8
                    yield Judgement(
                        **common,
                        status="parsed",
                        score=clipped(truth[g.pk] + rng.gauss(0.5, noise)),
                    )

    Judgement.objects.bulk_create(judgement_rows(), batch_size=BATCH)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    return {
        "items": items,
        "generations": len(generations),
        "scores": Score.objects.count(),
        "judgements": Judgement.objects.count(),
        "seconds": round(time.perf_counter() - start, 1),
    }


def measure(reps: int, label: str) -> dict[str, Any]:
    setup_django()
    from django.contrib.auth.models import User
    from django.core.cache import cache
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from inference.models import Campaign

    cache.clear()
    client = Client()
    client.force_login(
        User.objects.get(username="bench-admin"),
        backend="django.contrib.auth.backends.ModelBackend",
    )
    campaign = Campaign.objects.get(slug="bench-judges")
    page = f"/results/{campaign.public_id}/judges/"
    disagreements = f"/results/{campaign.public_id}/judges/judge-large/disagreements/"
    print(f"\n{label}", flush=True)

    def timed(call: Callable[[], Any]) -> tuple[float, int]:
        with CaptureQueriesContext(connection) as queries:
            began = time.perf_counter()
            response = call()
            elapsed = (time.perf_counter() - began) * 1000
        assert response.status_code == 200, response.status_code
        return elapsed, len(queries)

    client.get(page)  # imports and templates, on a throwaway build
    figures: dict[str, Any] = {}
    builds = []
    for _ in range(3):
        cache.clear()
        builds.append(timed(lambda: client.get(page)))
    figures["first build"] = builds
    for name, call in (
        ("warm", lambda: client.get(page)),
        ("htmx", lambda: client.get(page, headers={"HX-Request": "true", "HX-Target": "judges"})),
        ("csv", lambda: client.get(page, {"csv": "agreement", "judge": "judge-large"})),
        ("disagreements", lambda: client.get(disagreements)),
    ):
        figures[name] = [timed(call) for _ in range(reps)]
    result = {}
    for name, runs in figures.items():
        times = [t for t, _ in runs]
        queries = sorted({q for _, q in runs})
        result[name] = {
            "p50_ms": round(percentile(times, 50), 1),
            "p95_ms": round(percentile(times, 95), 1),
            "queries": queries,
        }
        print(
            f"  {name:<14} p50 {result[name]['p50_ms']:>9.1f} ms  "
            f"p95 {result[name]['p95_ms']:>9.1f} ms  queries {queries}",
            flush=True,
        )
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--build", nargs=2, type=int, metavar=("SCORES", "JUDGEMENTS"))
    parser.add_argument("--measure", metavar="LABEL")
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--database", default="gradebench_bench_judges")
    args = parser.parse_args()
    if args.build:
        print(json.dumps(build(*args.build)))
        return
    if args.measure:
        print(json.dumps(measure(args.reps, args.measure)))
        return
    if not postgres_available():
        sys.exit("this benchmark needs PostgreSQL on 127.0.0.1:5432")

    redis_url = os.environ.get("REDIS_URL") or DEFAULT_REDIS
    sizes = [
        ("full", round(SCORES * args.scale), round(JUDGEMENTS * args.scale)),
        ("tenth", round(SCORES * args.scale / 10), round(JUDGEMENTS * args.scale / 10)),
    ]
    results = {}
    with tempfile.TemporaryDirectory(prefix="gradebench-bench-") as tmp:
        for size, scores, judgements in sizes:
            name = f"{args.database}_{size}"
            env = {
                **os.environ,
                "GRADEBENCH_VAR_DIR": str(Path(tmp) / "var"),
                "DEBUG": "1",
                "ALLOWED_HOSTS": "testserver",
                "REDIS_URL": redis_url,
                "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{name}",
            }
            create_database(name)
            try:
                migrate(env)
                built = run_child(__file__, env, "--build", str(scores), str(judgements))
                print(f"{size}: {built}", flush=True)
                label = f"{size}: {built['scores']:,} scores, {built['judgements']:,} judgements"
                results[size] = run_child(
                    __file__, env, "--measure", label, "--reps", str(args.reps), echo=True
                )
            finally:
                drop_database(name)

    full, tenth = results["full"], results["tenth"]
    same = full["warm"]["queries"] == tenth["warm"]["queries"]
    print(
        f"\nwarm page p95 {full['warm']['p95_ms']} ms (target < {TARGET_MS:.0f} ms): "
        f"{'met' if full['warm']['p95_ms'] < TARGET_MS else 'MISSED'}; "
        f"queries {full['warm']['queries']} at full size, {tenth['warm']['queries']} at a "
        f"tenth: {'constant' if same else 'NOT constant'}"
    )


if __name__ == "__main__":
    main()
