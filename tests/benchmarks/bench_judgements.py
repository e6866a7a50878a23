"""Benchmark: LLM-judge throughput through the real dispatch, a real Celery worker and the
model simulator.

Scenario (the default): 10,000 judgements = 5,000 answers × 2 judges, at each judge endpoint
`max_concurrency` of `--caps` (8 and 32). Two judges rather than 10,000 answers × 1: a campaign
is judged by several judges (their agreement is one of the results), the prompt of an answer is
built once for all its judges (`create_judgements` does that work per answer), and the two
judges speak the two dialects — a FastDeploy server, sent no structured output, and a vLLM
server, sent the `gradebench_judgement` JSON schema — as the dispatch benchmark's two
endpoints do, so the ideal is cap × 2 slots.

The data, per cap in a fresh copy of a migrated throwaway PostgreSQL database, built with bulk
inserts: a finished campaign of two answering models (never called) over items that cycle over
the text task types, each answer a succeeded generation with a few sentences of content ending
in `[[sim: ttft_ms=100, tps=200]]`. The answer is part of the judge prompt, so the directive
scripts every judge reply: 100 ms to the first token, then the reply's tokens (a short JSON
object, `{"rationale": …, "score": N}`, about 20–25 tokens) at 200 tokens/s, so each
judgement's service time is known exactly from its stored completion tokens (≈ 0.2 s).

Measured:

* `grading.judging.create_judgements(campaign)`: judgements created per second (prompts built,
  rows inserted). The judges have `max_concurrency` 0 meanwhile, so nothing starts while it
  runs; then their caps are set and `dispatch.pump` fills their slots, as a sweep would — the
  start of the run, t0.
* the run: one `celery worker --pool threads` process (the stock worker, started through
  `bench_dispatch.py --worker --no-probe`) with 2 × cap threads on a private queue on Redis;
  judgements per second = finished judgements / (last `finished_at` − t0), against the ideal,
  2 × cap / mean scripted service time; the most judgements running at once per judge (rows
  with a live lease, sampled every 0.2 s); the stored TTFT against the scripted 100 ms.
* CPU from /proc over the run (t0 to the last judgement seen finished): the worker process's
  utime + stime per judgement (and the most judgements per second one such process could finish
  with a core to itself), the simulator's and the whole machine's share of the cores.
* the judgements' statuses at the end: all should be `parsed`; anything else is reported with
  an example of its problem or error.

A small number of judgements fills the slots for only a few service times, so the ramp up and
the tail weigh more in % of ideal than at full size.

    python tests/benchmarks/bench_judgements.py [--judgements 10000] [--caps 8,32]
        [--concurrency THREADS (default 2 x cap)] [--database NAME] [--redis URL]

Needs PostgreSQL on 127.0.0.1:5432 (databases NAME_template and NAME_<cap>, default NAME
`gradebench_bench_judgements`, dropped at the end) and Redis (`--redis`, default db 13: a
private queue, whose keys are deleted at the end).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.benchmarks.bench_dispatch import (
    ERNIE,
    QWEN,
    machine_busy,
    process_cpu_s,
    simulator_process,
    ts,
    worker_process,
)
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

TTFT_MS = 100.0
TPS = 200.0
DIRECTIVE = f"[[sim: ttft_ms={TTFT_MS:g}, tps={TPS:g}]]"
JUDGES = 2
POLL_S = 0.2
STALL_S = 120.0
"""Give up when no judgement has finished for this long."""
DEFAULT_REDIS = "redis://127.0.0.1:6379/13"
SENTENCES = (
    "天空呈现蓝色,是因为大气分子对短波长的蓝光散射更强,这就是瑞利散射。",
    "日落时阳光穿过更厚的大气层,蓝光大多被散射掉,所以天空偏红。",
    "例如,在高原上天空显得更深蓝,因为空气更稀薄、杂质更少。",
    "再如,雾霾天天空发白,是因为较大的颗粒对各种波长的光散射得差不多。",
    "人眼对紫光不太敏感,而且部分紫光被高层大气吸收,所以我们看到的是蓝色而不是紫色。",
    "总之,散射的强弱与波长的四次方成反比,这解释了大部分现象。",
)


def service_s(completion_tokens: int) -> float:
    """The scripted service time of a reply of `completion_tokens` tokens."""
    return TTFT_MS / 1000 + (completion_tokens - 1) / TPS


def answer_text(rng: random.Random, n: int) -> str:
    """An answer of a few sentences, its judge reply scripted by `DIRECTIVE`."""
    body = "".join(rng.choice(SENTENCES) for _ in range(rng.randint(2, 8)))
    return f"回答 {n}:{body}\n{DIRECTIVE}"


# --- In the child process: one cap -----------------------------------------------------------


def build(answers: int, fastdeploy_url: str, vllm_url: str) -> tuple[Any, list[Any]]:
    """The finished campaign with `answers` answers and its two judges, paused (cap 0)."""
    from django.utils import timezone

    from inference.models import (
        Generation,
        GenerationStatus,
        Modality,
        ModelEndpoint,
        TaskType,
    )

    rng = random.Random(20)
    types = list(TaskType.objects.filter(modality=Modality.TEXT).values_list("pk", flat=True))
    items = math.ceil(answers / 2)
    suite, made = bulk_suite(
        "bench-judgements", items, types, "问题 {n}:为什么天空是蓝色的?请举两个例子。"
    )
    models = [
        unused_endpoint("answerer-ernie", model="baidu/ERNIE-4.5-21B-A3B-Paddle"),
        unused_endpoint("answerer-qwen", model="Qwen/Qwen3-32B"),
    ]
    campaign = finished_campaign("bench-judgements", suite, models)
    judges = [
        ModelEndpoint.objects.create(
            slug=f"judge-{dialect}",
            name=f"judge ({dialect})",
            model=model,
            dialect=dialect,
            base_url=url,
            max_concurrency=0,  # paused until the judgements are made
            timeout_s=120,
        )
        for model, dialect, url in [(ERNIE, "fastdeploy", fastdeploy_url), (QWEN, "vllm", vllm_url)]
    ]
    campaign.judges.set(judges)
    now = timezone.now()
    # The answers cycle over the models: with an odd count the last item has one answer only.
    Generation.objects.bulk_create(
        (
            Generation(
                campaign=campaign,
                item=made[n // 2],
                endpoint=models[n % 2],
                status=GenerationStatus.SUCCEEDED,
                content=answer_text(rng, n),
                attempts=1,
                started_at=now,
                finished_at=now,
            )
            for n in range(answers)
        ),
        batch_size=5_000,
    )
    return campaign, judges


def run(cap: int, judgements: int, concurrency: int, work: Path) -> dict[str, Any]:
    """Build the data, create the judgements, run them through a worker; print the report and
    return the summary."""
    setup_django()
    from django.db.models import Count, Q
    from django.utils import timezone

    from grading.judging import create_judgements
    from inference import dispatch
    from inference.models import (
        JUDGEMENT_FINISHED_STATUSES,
        Judgement,
        JudgementStatus,
        ModelEndpoint,
    )

    env = dict(os.environ)
    answers = judgements // JUDGES
    print(
        f"\n== cap {cap} × {JUDGES} judges: {judgements} judgements = {answers} answers × "
        f"{JUDGES} judges; 1 worker × {concurrency} threads",
        flush=True,
    )
    with simulator_process(env) as (sim, fastdeploy_url, vllm_url):
        campaign, judges = build(answers, fastdeploy_url, vllm_url)
        judge_ids = [judge.pk for judge in judges]
        with worker_process(
            env, env["CELERY_DEFAULT_QUEUE"], concurrency, work, f"worker-{cap}", probe=False
        ) as (worker, _):
            time.sleep(1.0)  # let the worker settle (its sweeper's first pass, connections)
            began = time.perf_counter()
            created = create_judgements(campaign)
            creating = time.perf_counter() - began
            if created != judgements:
                raise RuntimeError(f"create_judgements made {created}, not {judgements}")
            ModelEndpoint.objects.filter(pk__in=judge_ids).update(max_concurrency=cap)

            worker_cpu0, sim_cpu0 = process_cpu_s(worker.pid), process_cpu_s(sim.pid)
            busy0, total0 = machine_busy()
            t0 = timezone.now()
            dispatch.pump(judge_ids)
            peak: dict[int, int] = dict.fromkeys(judge_ids, 0)
            done = last_done = 0
            last_progress = time.monotonic()
            while done < judgements and time.monotonic() - last_progress < STALL_S:
                time.sleep(POLL_S)
                live = Q(status=JudgementStatus.RUNNING, lease_expires_at__gt=timezone.now())
                rows = (
                    Judgement.objects.filter(campaign=campaign)
                    .values("judge_id")
                    .annotate(
                        running=Count("pk", filter=live),
                        done=Count("pk", filter=Q(status__in=JUDGEMENT_FINISHED_STATUSES)),
                    )
                )
                done = 0
                for row in rows:
                    peak[row["judge_id"]] = max(peak[row["judge_id"]], row["running"])
                    done += row["done"]
                if done > last_done:
                    last_done, last_progress = done, time.monotonic()
            worker_cpu = process_cpu_s(worker.pid) - worker_cpu0
            sim_cpu = process_cpu_s(sim.pid) - sim_cpu0
            busy1, total1 = machine_busy()
    cpu = {"worker": worker_cpu, "simulator": sim_cpu, "busy": busy1 - busy0}
    cpu["total"] = total1 - total0
    return report(campaign, cap, judgements, creating, t0, peak, cpu)


def report(
    campaign: Any,
    cap: int,
    judgements: int,
    creating: float,
    t0: Any,
    peak: dict[int, int],
    cpu: dict[str, float],
) -> dict[str, Any]:
    from django.db.models import Q

    from inference.models import Judgement, JudgementStatus

    rows = list(
        Judgement.objects.filter(campaign=campaign).values(
            "judge__dialect",
            "status",
            "started_at",
            "finished_at",
            "completion_tokens",
            "ttft_ms",
            "problem",
            "error",
            structured=Q(request__has_key="response_format"),
        )
    )
    statuses = Counter(str(row["status"]) for row in rows)
    summary: dict[str, Any] = {
        "cap": cap,
        "judgements": judgements,
        "created_per_s": judgements / creating,
        "statuses": dict(statuses),
        "peak": sorted(peak.values()),
    }
    print(
        f"  create_judgements: {judgements} in {creating:.2f} s = "
        f"{judgements / creating:.0f} judgements created/s",
        flush=True,
    )
    finished = [row for row in rows if row["finished_at"] is not None]
    if not finished:
        print("  !! no judgement finished")
        return summary
    wall = max(ts(row["finished_at"]) for row in finished) - ts(t0)
    tokens = [row["completion_tokens"] for row in finished if row["completion_tokens"]]
    mean_service = statistics.mean(map(service_s, tokens)) if tokens else service_s(25)
    ideal = JUDGES * cap / mean_service
    rate = len(finished) / wall
    cores = os.cpu_count() or 1
    per_judgement = cpu["worker"] / len(finished)
    summary.update(
        wall=wall,
        rate=rate,
        ideal=ideal,
        worker_ms=1000 * per_judgement,
        worker_most=1 / per_judgement if per_judgement else None,
        worker_share=cpu["worker"] / max(cpu["total"], 1e-9),
        sim_ms=1000 * cpu["simulator"] / len(finished),
        sim_share=cpu["simulator"] / max(cpu["total"], 1e-9),
        busy=cpu["busy"] / max(cpu["total"], 1e-9),
    )
    print(
        f"  run: {len(finished)} finished in {wall:.2f} s (t0 -> last finished_at) = "
        f"{rate:.1f} judgements/s; ideal {ideal:.1f}/s ({JUDGES} judges × cap {cap} / "
        f"{1000 * mean_service:.0f} ms mean scripted service): {100 * rate / ideal:.1f}% of ideal"
    )
    if tokens:
        print(
            f"  replies: {statistics.mean(tokens):.1f} tokens on average "
            f"({min(tokens)}–{max(tokens)}), {TTFT_MS:g} ms + (tokens − 1) / {TPS:g} tokens/s each"
        )
    print(
        f"  most running at once per judge (sampled): {', '.join(map(str, sorted(peak.values())))}"
        f" of {cap}"
    )
    early = sum(1 for row in rows if row["started_at"] and ts(row["started_at"]) < ts(t0))
    if early:
        print(f"  !! {early} judgements started before t0, while they were being created")
    sent = Counter((row["judge__dialect"], row["structured"]) for row in finished)
    print(
        "  structured output sent: "
        + ", ".join(
            f"{dialect} {sent[dialect, True]} of {sent[dialect, True] + sent[dialect, False]}"
            for dialect in sorted({dialect for dialect, _ in sent})
        )
    )
    ttfts = [row["ttft_ms"] - TTFT_MS for row in finished if row["ttft_ms"] is not None]
    if ttfts:
        print(
            f"  stored TTFT − scripted: median {statistics.median(ttfts):.1f} ms, "
            f"p95 {percentile(ttfts, 95):.1f} ms"
        )
    print(
        f"  CPU over the run ({cpu['total'] / cores:.1f} s × {cores} cores): worker "
        f"{cpu['worker']:.1f} s = {1000 * per_judgement:.1f} ms/judgement (one process, one "
        f"GIL: at most {1 / per_judgement:.0f}/s), {100 * summary['worker_share']:.0f}% of the "
        f"machine; simulator {cpu['simulator']:.1f} s = {summary['sim_ms']:.1f} ms/judgement, "
        f"{100 * summary['sim_share']:.0f}%; whole machine {100 * summary['busy']:.0f}% busy"
    )
    line = ", ".join(f"{status} {count}" for status, count in sorted(statuses.items()))
    print(f"  statuses: {line}")
    for status in sorted(set(statuses) - {JudgementStatus.PARSED}):
        example = next(row for row in rows if row["status"] == status)
        print(
            f"  !! {statuses[status]} {status}, e.g. "
            f"{(example['problem'] or example['error'] or '(no message)')[:200]}"
        )
    return summary


# --- In the parent process -------------------------------------------------------------------


def redis_available(url: str) -> bool:
    try:
        import redis

        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except Exception:
        return False
    return True


def forget_queue(url: str, queue: str) -> None:
    """Delete the broker's keys of the private queue."""
    import redis

    client = redis.Redis.from_url(url)
    for key in list(client.scan_iter(match=f"*{queue}*")):
        client.delete(key)


def _rate(value: float | None) -> str:
    return "?" if value is None else f"{value:.0f}"


def print_summary(summaries: list[dict[str, Any]]) -> None:
    print(
        f"\n== summary ({os.cpu_count()} cores; shares are of the whole machine during the run; "
        "worker most/s = judgements per second one worker process could finish with a core "
        "to itself)"
    )
    header = (
        "| cap × judges | judgements | created/s | judged/s | ideal/s | % of ideal "
        "| worker ms/judgement · most/s · share | simulator ms/judgement · share | machine busy "
        "| most running | statuses |"
    )
    print(header)
    print("|" + "---|" * (header.count(" | ") + 1))
    for row in summaries:
        statuses = ", ".join(f"{s} {n}" for s, n in sorted(row["statuses"].items()))
        if "rate" not in row:
            print(
                f"| {row['cap']} × {JUDGES} | {row['judgements']} | {row['created_per_s']:.0f} "
                f"| – | – | – | – | – | – | – | {statuses} |"
            )
            continue
        print(
            f"| {row['cap']} × {JUDGES} | {row['judgements']} | {row['created_per_s']:.0f} "
            f"| {row['rate']:.1f} | {row['ideal']:.1f} | {100 * row['rate'] / row['ideal']:.1f}% "
            f"| {row['worker_ms']:.1f} · {_rate(row['worker_most'])} · "
            f"{100 * row['worker_share']:.0f}% "
            f"| {row['sim_ms']:.1f} · {100 * row['sim_share']:.0f}% | {100 * row['busy']:.0f}% "
            f"| {'/'.join(map(str, row['peak']))} | {statuses} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--judgements", type=int, default=10_000, help="an even number")
    parser.add_argument("--caps", default="8,32", help="max_concurrency of each judge, e.g. 8,32")
    parser.add_argument(
        "--concurrency", type=int, default=None, help="worker threads (default: 2 x cap)"
    )
    parser.add_argument("--database", default="gradebench_bench_judgements")
    parser.add_argument("--redis", default=DEFAULT_REDIS, help="the broker (a private queue)")
    parser.add_argument("--run", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.judgements < JUDGES or args.judgements % JUDGES:
        parser.error(f"--judgements takes a multiple of {JUDGES} (answers × {JUDGES} judges)")
    if args.run:
        summary = run(args.run, args.judgements, args.concurrency, Path(args.work))
        print(json.dumps(summary, default=str))
        return
    try:
        caps = [int(cap) for cap in args.caps.split(",") if cap.strip()]
    except ValueError:
        parser.error("--caps takes whole numbers, e.g. 8,32")
    if not caps or min(caps) < 1:
        parser.error("--caps takes whole numbers >= 1, e.g. 8,32")
    if not postgres_available():
        sys.exit("this benchmark needs PostgreSQL on 127.0.0.1:5432")
    if not redis_available(args.redis):
        sys.exit(f"this benchmark needs Redis at {args.redis}")

    print(
        f"{args.judgements} judgements ({args.judgements // JUDGES} answers × {JUDGES} simulated "
        f"judges, FastDeploy + vLLM dialects), each reply scripted by {DIRECTIVE}; "
        f"judge caps {', '.join(map(str, caps))}; PostgreSQL + Redis ({args.redis}); "
        f"{os.cpu_count()} cores",
        flush=True,
    )
    template = f"{args.database}_template"
    summaries = []
    with tempfile.TemporaryDirectory(prefix="gradebench-bench-") as tmp:
        base = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "grading.settings",
            "GRADEBENCH_VAR_DIR": str(Path(tmp) / "var"),
            "CELERY_BROKER_URL": args.redis,
            "PYTHONUNBUFFERED": "1",
        }
        base.pop("REDIS_URL", None)  # the cache stays local, as in bench_dispatch
        create_database(template)
        try:
            migrate({**base, "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{template}"})
            for cap in caps:
                name = f"{args.database}_{cap}"
                queue = f"bench-judgements-{os.getpid()}-{cap}"
                env = {
                    **base,
                    "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{name}",
                    "CELERY_DEFAULT_QUEUE": queue,
                }
                create_database(name, template=template)
                try:
                    # fmt: off
                    summaries.append(run_child(
                        __file__, env, "--run", str(cap), "--judgements", str(args.judgements),
                        "--concurrency", str(args.concurrency or JUDGES * cap), "--work", tmp,
                        echo=True,
                    ))
                    # fmt: on
                finally:
                    drop_database(name)
                    forget_queue(args.redis, queue)
        finally:
            drop_database(template)
    print_summary(summaries)


if __name__ == "__main__":
    main()
