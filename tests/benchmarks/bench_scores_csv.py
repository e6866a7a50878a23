"""Benchmark: `export_scores` of 1,000,000 scores on PostgreSQL, and `import_scores` of that file.

Target (issue): export over 50,000 rows/s with flat memory. The issue sets no import target;
this benchmark compares it with the row-by-row import it replaced (616 rows/s, 2.6 queries per
row) and with 10,000 rows/s, the goal the bulk import was written for.

The data (throwaway PostgreSQL database on 127.0.0.1:5432, built in a child process): one suite
of 50,000 text items (task types cycling over the 18 text codes), 2 endpoints, two finished
campaigns, `big` (45,000 items) and `small` (5,000 items), each item answered once by each model:
100,000 succeeded generations with timings and token counts. 10 reviewers each scored every
generation: 1,000,000 scores (`small` holds 100,000 of them). Items and generations go in with
bulk_create; the scores with one `INSERT ... SELECT` over generations x reviewers (bulk_create of
a million model instances is what makes building slow); the build time is printed apart.

Each measurement runs `manage.py <command>` in a fresh child process (Django set up, a query
counter installed, then `execute_from_command_line`), reporting wall time from spawn to exit,
the command's own time, SQL queries and the child's max RSS (`os.wait4`):

  export all       export_scores --output FILE                 (1,000,000 rows)
  export small     export_scores --campaign small --output FILE (100,000 rows; memory baseline)
  rows only        the same query as `export all`, iterated without formatting or writing
  import           import_scores on a 100,000-row prefix of the export, into an empty, migrated
                   second database; the full file too when the prefix's rate says it would take
                   under --import-budget seconds (default 240; `inf` always imports it)

    python tests/benchmarks/bench_scores_csv.py [--items 50000] [--reviewers 10]
        [--import-rows 100000] [--import-budget 240]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
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
    postgres_available,
    setup_django,
    unused_endpoint,
)

SMALL_SHARE = 10  # `small` gets 1/10 of the items
IMPORT_BUDGET_S = 240.0


def build(items: int, reviewers: int) -> None:
    """Fill the (migrated, empty) database; print a JSON line of timings and counts."""
    setup_django()
    import datetime

    from django.contrib.auth.models import User
    from django.db import connection, transaction

    from grading.models import Rubric
    from inference.models import (
        Generation,
        GenerationStatus,
        Modality,
        TaskItem,
        TaskType,
        UsageSource,
    )

    timings: dict[str, float] = {}
    start = time.perf_counter()
    codes = list(
        TaskType.objects.filter(modality=Modality.TEXT).order_by("position").values_list("id")
    )
    type_ids = [pk for (pk,) in codes]
    with transaction.atomic():
        suite, _ = bulk_suite("bench", items, type_ids, "问题 {n}:请解释这句话。")
        endpoints = [unused_endpoint(slug) for slug in ("ernie-4.5-0.3b", "qwen3-0.6b")]
        campaigns = [
            finished_campaign(slug, suite, endpoints, matchup="ernie-vs-qwen")
            for slug in ("big", "small")
        ]
    timings["items_s"] = time.perf_counter() - start

    start = time.perf_counter()
    t0 = datetime.datetime(2025, 3, 1, 9, 30, tzinfo=datetime.UTC)
    item_ids = list(
        TaskItem.objects.filter(suite=suite).order_by("id").values_list("id", flat=True)
    )
    small_from = items - items // SMALL_SHARE

    def generations() -> Any:
        for n, item_id in enumerate(item_ids):
            campaign = campaigns[1] if n >= small_from else campaigns[0]
            for m, endpoint in enumerate(endpoints):
                tokens = 100 + (n * 7 + m * 13) % 400
                yield Generation(
                    campaign=campaign, item_id=item_id, endpoint=endpoint,
                    status=GenerationStatus.SUCCEEDED, attempts=1, content="answer",
                    finish_reason="stop", prompt_tokens=40, completion_tokens=tokens,
                    total_tokens=40 + tokens, reasoning_tokens=None,
                    usage_source=UsageSource.SERVER, ttft_ms=120.5 + n % 97,
                    ttfa_ms=120.5 + n % 97, response_time_ms=2000.25 + n % 991,
                    decode_tps=55.125 + m, e2e_tps=48.0625 + m, tpot_ms=18.2,
                    started_at=t0, finished_at=t0,
                )  # fmt: skip

    with transaction.atomic():
        Generation.objects.bulk_create(generations(), batch_size=10_000)
    timings["generations_s"] = time.perf_counter() - start

    start = time.perf_counter()
    names = [f"reviewer{n:02d}" for n in range(reviewers)]
    User.objects.bulk_create(User(username=name, password="!") for name in names)
    rubric = Rubric.objects.current()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO grading_score (public_id, generation_id, reviewer_id, assignment_id,
                score, comment, flagged, flag_reason, position, rubric_id, seconds_spent,
                imported, scored_at, updated_at, purpose)
            SELECT 'b' || g.id || '-' || u.id, g.id, u.id, NULL, (g.id * 7 + u.id) %% 11, '',
                false, '', (g.id + u.id) %% 2, %s, NULL, false, %s, %s, 'regular'
            FROM inference_generation g CROSS JOIN auth_user u
            WHERE u.username = ANY(%s)
            """,
            [rubric.pk, t0, t0, names],
        )
        scores = cursor.rowcount
    timings["scores_s"] = time.perf_counter() - start
    start = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    timings["analyze_s"] = time.perf_counter() - start
    print(json.dumps({**timings, "generations": len(item_ids) * 2, "scores": scores}))


def command(argv: list[str]) -> None:
    """Run one management command, counting SQL queries; print a JSON line."""
    setup_django()
    from django.core.management import execute_from_command_line
    from django.db import connection

    queries = 0

    def counting(execute, sql, params, many, context):  # type: ignore[no-untyped-def]
        nonlocal queries
        queries += 1
        return execute(sql, params, many, context)

    with connection.execute_wrapper(counting):
        start = time.perf_counter()
        execute_from_command_line(["manage.py", *argv])
        seconds = time.perf_counter() - start
    print(json.dumps({"command_s": seconds, "queries": queries}))


def rows_only() -> None:
    """Iterate the export's rows (query + ORM conversion) without formatting or writing."""
    setup_django()
    from grading.scores_export import score_rows, scores_for

    start = time.perf_counter()
    count = sum(1 for _ in score_rows(scores_for()))
    print(json.dumps({"command_s": time.perf_counter() - start, "rows": count, "queries": 1}))


def run_child(args: list[str], env: dict[str, str], log: Path) -> dict[str, Any]:
    """Run this script with `args` in a child; its JSON line plus wall time and max RSS."""
    with log.open("w") as err, tempfile.TemporaryFile("w+") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, __file__, *args], env=env, cwd=REPO, stdout=out, stderr=err
        )
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read()
    if proc.returncode != 0:
        sys.exit(f"child {args} failed ({proc.returncode}):\n{log.read_text()[-3000:]}")
    *printed, last = text.strip().splitlines()
    result = json.loads(last)
    return {
        **result,
        "stdout": " ".join(printed),
        "wall_s": wall,
        "max_rss_mb": usage.ru_maxrss / 1024,
    }


def prefix(source: Path, target: Path, rows: int) -> None:
    """The header and the first `rows` rows (no cell of this export spans lines)."""
    with source.open("rb") as src, target.open("wb") as dst:
        for _ in range(rows + 1):
            line = src.readline()
            if not line:
                break
            dst.write(line)


def report(label: str, rows: int, r: dict[str, Any], path: Path | None = None) -> None:
    size = f"; file {path.stat().st_size / 2**20:,.1f} MiB" if path else ""
    print(
        f"{label:<13} {rows:>9,} rows: wall {r['wall_s']:7.2f} s = {rows / r['wall_s']:>8,.0f} "
        f"rows/s (command {r['command_s']:7.2f} s = {rows / r['command_s']:>8,.0f} rows/s); "
        f"{r['queries']:,} queries; max RSS {r['max_rss_mb']:,.0f} MB{size}"
    )


def do_import(label: str, file: Path, rows: int, env: dict[str, str], work: Path) -> dict[str, Any]:
    name = f"gradebench_bench_scores_in_{os.getpid()}"
    create_database(name)
    try:
        in_env = {**env, "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{name}"}
        migrate(in_env)
        r = run_child(["--command", "import_scores", str(file)], in_env, work / "import.log")
        print(f"{label}: import_scores said: {r['stdout']}")
    finally:
        drop_database(name)
    report(label, rows, r)
    print(f"{label}: {r['queries'] / rows:.4f} queries per row")
    return r


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--build", nargs=2, type=int, metavar=("ITEMS", "REVIEWERS"))
    parser.add_argument("--command", nargs=argparse.REMAINDER)
    parser.add_argument("--rows-only", action="store_true")
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--reviewers", type=int, default=10)
    parser.add_argument("--import-rows", type=int, default=100_000)
    parser.add_argument("--import-budget", type=float, default=IMPORT_BUDGET_S)
    args = parser.parse_args()
    if args.build:
        build(*args.build)
        return
    if args.command:
        command(args.command)
        return
    if args.rows_only:
        rows_only()
        return

    if not postgres_available():
        sys.exit("PostgreSQL is not reachable on 127.0.0.1:5432; this benchmark needs it")

    name = f"gradebench_bench_scores_{os.getpid()}"
    with tempfile.TemporaryDirectory(prefix="gradebench-bench-") as tmp:
        work = Path(tmp)
        base_env = {**os.environ, "GRADEBENCH_VAR_DIR": str(work / "var")}
        base_env.pop("REDIS_URL", None)
        env = {**base_env, "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{name}"}
        create_database(name)
        try:
            migrate(env)
            b = run_child(["--build", str(args.items), str(args.reviewers)], env, work / "b.log")
            total = int(b["scores"])
            small = args.items // SMALL_SHARE * 2 * args.reviewers
            print(
                f"data: {args.items:,} items, {b['generations']:,} generations, "
                f"{args.reviewers} reviewers, {total:,} scores ({small:,} in campaign small)"
            )
            print(
                f"build: items+campaigns {b['items_s']:.1f} s, generations (bulk_create) "
                f"{b['generations_s']:.1f} s, scores (INSERT ... SELECT) {b['scores_s']:.1f} s, "
                f"VACUUM ANALYZE {b['analyze_s']:.1f} s; child max RSS {b['max_rss_mb']:,.0f} MB"
            )

            full = work / "scores.csv"
            r = run_child(
                ["--command", "export_scores", "--output", str(full)], env, work / "export.log"
            )
            report("export all", total, r, full)
            part = work / "small.csv"
            s = run_child(
                ["--command", "export_scores", "--campaign", "small", "--output", str(part)],
                env,
                work / "export-small.log",
            )
            report("export small", small, s, part)
            q = run_child(["--rows-only"], env, work / "rows.log")
            report("rows only", int(q["rows"]), q)
            growth = r["max_rss_mb"] - s["max_rss_mb"]
            print(
                f"memory: max RSS {s['max_rss_mb']:,.0f} MB at {small:,} rows vs "
                f"{r['max_rss_mb']:,.0f} MB at {total:,} rows ({growth:+,.0f} MB)"
            )
            share = 100 * q["command_s"] / r["command_s"]
            print(
                f"export split: query + ORM rows {q['command_s']:.2f} s ({share:.0f}% of the "
                f"command), formatting + writing {r['command_s'] - q['command_s']:.2f} s"
            )
            verdict = "meets" if total / r["wall_s"] > 50_000 else "misses"
            print(f"target: export {total / r['wall_s']:,.0f} rows/s {verdict} 50,000 rows/s")
        finally:
            drop_database(name)

        head = work / "prefix.csv"
        prefix(full, head, args.import_rows)
        i = do_import("import prefix", head, args.import_rows, env, work)
        estimate = i["wall_s"] * total / args.import_rows
        if estimate <= args.import_budget:
            a = do_import("import all", full, total, env, work)
            verdict = "meets" if total / a["wall_s"] > 10_000 else "misses"
            rate = total / a["wall_s"]
            print(f"import goal (not the issue's): {rate:,.0f} rows/s {verdict} 10,000 rows/s")
        else:
            print(
                f"import all: skipped; at the prefix's rate {total:,} rows would take about "
                f"{estimate:,.0f} s (> {args.import_budget:.0f} s); imported the first "
                f"{args.import_rows:,} rows only"
            )


if __name__ == "__main__":
    main()
