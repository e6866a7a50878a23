"""Benchmark: dispatch efficiency of a real Celery worker against two simulated endpoints.

Scenario "stream" (the issue's): 2,000 generations (1,000 items x 2 endpoints) through a real
`celery worker --pool threads` process, each generation's service time scripted by
`[[sim: ttft_ms=100, tps=200, tokens=100]]` (~0.6 s), at each endpoint `max_concurrency` of
`--caps` (default 8, 32 and 64; the issue's figure is cap 32), the worker with 2 x cap threads
so it can fill both endpoints. The ideal wall time is the total scripted service time /
(2 x cap); the report gives the measured wall time as a percentage of that ideal throughput,
the most generations ever running at once per endpoint, and where the rest of the time went.
A diagnostic scenario follows: "light" (0.5 s of TTFT and only 10 tokens: the same service
time with almost nothing to stream), at cap 32.

CPU is read from /proc for the worker, the simulator, this launcher and the whole machine, so
the summary says who saturates the machine: each process's share of the cores, its CPU per
generation and the most generations per second it could carry on one core (both the worker's
threads and the simulator's event loop run under one GIL each), against what the ideal needs.

Running at once is counted three ways: the database (RUNNING rows with a live lease, sampled
every 0.2 s), the HTTP requests in flight in the worker (exact), and the stored
started_at/finished_at — the last overstates, since `claim` takes started_at before it waits
for the endpoint's row lock.

Database: a throwaway PostgreSQL database on 127.0.0.1:5432 (user postgres) when it answers,
else SQLite in a temporary folder. Broker: Redis 127.0.0.1:6379 db 13 with a private queue when
it answers, else the embedded broker in the temporary folder. The simulator runs in its own
process (`python -m inference.simulator`). The worker is started through this script
(`--worker`), which wraps `dispatch.claim/finish/pump`, `generate.run_generation`,
`generate.complete_with_retries` and database connects with timers, counts SQL per phase and
records each HTTP request's interval, then runs the stock `celery worker` (`app.worker_main`)
— nothing of the app is changed.

    python tests/benchmarks/bench_dispatch.py [--only stream] [--caps 8,32,64] [--workers 1]
        [--generations 2000] [--concurrency THREADS (default 2 x cap)]
"""

from __future__ import annotations

import argparse
import atexit
import gc
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.benchmarks.harness import (
    ADMIN_URL,
    REPO,
    create_database,
    drop_database,
    percentile,
    postgres_available,
    setup_django,
)

REDIS_URL = "redis://127.0.0.1:6379/13"
ERNIE = "baidu/ERNIE-4.5-0.3B-Paddle"  # FastDeploy dialect
QWEN = "Qwen/Qwen2.5-VL-32B-Instruct"  # vLLM dialect
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --- Small helpers (also used by bench_overhead.py) -------------------------------------------


def process_cpu_s(pid: int) -> float:
    """user + system CPU seconds of a live process (all its threads), from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])
    return (total - idle) / CLK_TCK, total / CLK_TCK


def postgres_cpu_s() -> float | None:
    """CPU seconds used so far by the local PostgreSQL server: the postmaster, its live
    children (backends, WAL writer, ...) and its reaped ones (every closed connection); None
    when the server's processes cannot be seen. Other users of the server count too."""
    from django.db import connection

    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        row = cursor.fetchone()

    def stat(pid: int | str) -> list[str]:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()

    try:
        postmaster = int(stat(row[0])[1])
        ticks = sum(int(value) for value in stat(postmaster)[11:15])
    except (OSError, IndexError, TypeError, ValueError):
        return None  # PostgreSQL on another machine or in a container
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = stat(entry.name)
        except OSError:
            continue  # gone meanwhile
        if int(fields[1]) == postmaster:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / CLK_TCK


def redis_available() -> bool:
    try:
        import redis

        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except Exception:
        return False
    return True


@dataclass
class Environment:
    label: str
    env: dict[str, str]
    pg_name: str | None
    queue: str
    redis: bool


@contextmanager
def throwaway_environment(
    work: Path, database: str, broker: str, tag: str
) -> Iterator[Environment]:
    """A fresh database and a private queue; everything is removed on exit.

    Sets the environment of this process too (call `django.setup()` afterwards).
    """
    use_pg = database == "postgres" or (database == "auto" and postgres_available())
    use_redis = broker == "redis" or (broker == "auto" and redis_available())
    queue = f"bench-{tag}-{os.getpid()}"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "grading.settings",
        "GRADEBENCH_VAR_DIR": str(work / "var"),
        "CELERY_DEFAULT_QUEUE": queue,
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("REDIS_URL", None)
    env.pop("CELERY_BROKER_URL", None)
    if use_redis:
        env["CELERY_BROKER_URL"] = REDIS_URL
    pg_name = None
    if use_pg:
        pg_name = f"gradebench_bench_{tag}_{os.getpid()}"
        create_database(pg_name)
        env["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{pg_name}"
    else:
        env["DATABASE_URL"] = f"sqlite:///{work / 'bench.sqlite3'}"
    label = (
        f"{'PostgreSQL' if use_pg else 'SQLite'} + "
        f"{'Redis db 13' if use_redis else 'embedded broker'}, queue {queue}"
    )
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield Environment(label, env, pg_name, queue, use_redis)
    finally:
        try:
            from django.db import connections

            connections.close_all()
        except Exception:  # noqa: S110 (Django may never have been set up)
            pass
        os.environ.clear()
        os.environ.update(saved)
        if pg_name is not None:
            drop_database(pg_name)
        if use_redis:
            import redis

            client = redis.Redis.from_url(REDIS_URL)
            for key in list(client.scan_iter(match=f"*{queue}*")):
                client.delete(key)


def pg_sessions(pg_name: str | None) -> int | None:
    """Connections opened to the database so far (PostgreSQL ≥ 14 statistics)."""
    if pg_name is None:
        return None
    import psycopg

    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        row = conn.execute(
            "SELECT sessions FROM pg_stat_database WHERE datname = %s", (pg_name,)
        ).fetchone()
    return int(row[0]) if row else None


@contextmanager
def simulator_process(env: dict[str, str]) -> Iterator[tuple[subprocess.Popen[str], str, str]]:
    """`python -m inference.simulator` on free ports: (process, FastDeploy URL, vLLM URL)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "inference.simulator", "--fastdeploy-port", "0", "--vllm-port", "0"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        urls: dict[str, str] = {}
        assert process.stdout is not None
        while len(urls) < 2:
            line = process.stdout.readline()
            if not line:
                raise RuntimeError("simulator exited before listening")
            dialect, _, rest = line.partition(" ")
            if dialect in ("fastdeploy", "vllm"):
                urls[dialect] = rest.split()[0]
        threading.Thread(target=process.stdout.read, daemon=True).start()
        yield process, urls["fastdeploy"], urls["vllm"]
    finally:
        stop_process(process)


def stop_process(process: subprocess.Popen[Any], timeout: float = 30) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def worker_process(
    env: dict[str, str], queue: str, concurrency: int, work: Path, name: str, probe: bool = True
) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    """This script in `--worker` mode: a `celery worker` on `queue`, instrumented by `Probe`
    unless `probe` is false.

    Yields the process and the path where it writes its probe's figures when it stops.
    """
    stats = work / f"{name}.json"
    ready = work / f"{name}.ready"
    log = work / f"{name}.log"
    with log.open("w") as handle:
        # fmt: off
        command = [
            sys.executable, str(Path(__file__).resolve().parent / "bench_dispatch.py"),
            "--worker", str(stats), "--ready-file", str(ready), "--queue", queue,
            "--concurrency", str(concurrency), *([] if probe else ["--no-probe"]),
        ]
        # fmt: on
        process = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=handle, stderr=subprocess.STDOUT, text=True
        )
        try:
            deadline = time.monotonic() + 60
            while not ready.exists():
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"worker did not start:\n{log.read_text()[-3000:]}")
                time.sleep(0.1)
            yield process, stats
        finally:
            stop_process(process)
    errors = [line for line in log.read_text().splitlines() if "level=ERROR" in line]
    if errors:
        print(f"  worker log: {len(errors)} error lines, first: {errors[0][:300]}")


# --- The probe inside the worker --------------------------------------------------------------


class Probe:
    """Timers around the dispatch steps of one worker process, and SQL time per step."""

    PHASES = ("task", "claim", "http", "finish", "pump")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.local = threading.local()
        self.calls: dict[str, list[float]] = {}
        self.cpu: dict[str, float] = {}
        self.sql: dict[str, list[float]] = {}  # phase -> [queries, seconds]
        self.dumped = False
        self.gc_pauses: list[float] = []
        self._gc_start = 0.0
        self.http_intervals: list[tuple[str, float, float]] = []

    def on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if info.get("generation") != 2:
            return
        if phase == "start":
            self._gc_start = time.perf_counter()
        else:
            self.gc_pauses.append(time.perf_counter() - self._gc_start)

    def phase(self) -> str:
        stack = getattr(self.local, "stack", None)
        if not stack:
            return "outside a task (sweeper, lease keeper)"
        return stack[-1] if stack[-1] != "task" else "task (rest)"

    def timed(self, name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            stack = self.local.__dict__.setdefault("stack", [])
            stack.append(name)
            cpu0, wall0, began = time.thread_time(), time.perf_counter(), time.time()
            try:
                return function(*args, **kwargs)
            finally:
                wall = time.perf_counter() - wall0
                cpu = time.thread_time() - cpu0
                stack.pop()
                with self.lock:
                    if name == "http":  # per model: the endpoints of a run serve different ones
                        self.http_intervals.append((args[0].model, began, time.time()))
                    # A pump outside a task is the sweeper's; keep it apart.
                    label = name if name != "pump" or stack else "pump (sweeper)"
                    if name == "connect":
                        label = f"connect ({stack[-1] if stack else 'outside a task'})"
                    self.calls.setdefault(label, []).append(wall)
                    self.cpu[label] = self.cpu.get(label, 0.0) + cpu

        return wrapper

    def execute(self, execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        start = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            elapsed = time.perf_counter() - start
            phase = self.phase()
            if "FOR UPDATE" in sql:
                phase += ": SELECT FOR UPDATE"
            with self.lock:
                entry = self.sql.setdefault(phase, [0, 0.0])
                entry[0] += 1
                entry[1] += elapsed

    def install(self) -> None:
        from django.db.backends.base.base import BaseDatabaseWrapper
        from django.db.backends.signals import connection_created

        from inference import dispatch, generate

        def on_connect(sender: Any, connection: Any, **_: Any) -> None:
            # The same wrapper object reconnects after every task: install the timer once.
            if self.execute not in connection.execute_wrappers:
                connection.execute_wrappers.append(self.execute)

        connection_created.connect(on_connect, weak=False)
        gc.callbacks.append(self.on_gc)
        BaseDatabaseWrapper.connect = self.timed("connect", BaseDatabaseWrapper.connect)  # type: ignore[method-assign]
        generate.run_generation = self.timed("task", generate.run_generation)  # type: ignore[method-assign]
        generate.complete_with_retries = self.timed("http", generate.complete_with_retries)  # type: ignore[method-assign]
        dispatch.claim = self.timed("claim", dispatch.claim)  # type: ignore[method-assign]
        dispatch.finish = self.timed("finish", dispatch.finish)  # type: ignore[method-assign]
        dispatch.pump = self.timed("pump", dispatch.pump)  # type: ignore[method-assign]

    def dump(self, path: Path) -> None:
        with self.lock:
            if self.dumped:
                return
            self.dumped = True
            data = {
                "calls": self.calls,
                "cpu": self.cpu,
                "sql": self.sql,
                "gc_pauses": self.gc_pauses,
                "http_intervals": self.http_intervals,
            }
        path.write_text(json.dumps(data))


def worker_main(stats: Path, ready: Path, queue: str, concurrency: int, probe: bool) -> None:
    setup_django()
    from celery.signals import worker_ready, worker_shutdown

    if probe:
        timers = Probe()
        timers.install()
        atexit.register(timers.dump, stats)
        worker_shutdown.connect(lambda **_: timers.dump(stats), weak=False)
    worker_ready.connect(lambda **_: ready.write_text("ready"), weak=False)
    from grading.celery import app

    # The stock worker, as `celery -A grading worker` starts it (default log level WARNING).
    # fmt: off
    app.worker_main([
        "worker", "-Q", queue, "-n", f"{queue}@%h", "--pool", "threads",
        "--concurrency", str(concurrency),
        "--without-mingle", "--without-gossip", "--without-heartbeat",
    ])
    # fmt: on


# --- The benchmark ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    name: str
    ttft_ms: float
    tps: float
    tokens: int
    chunk: int | None = None  # tokens per chunk; None: the model profile's
    generations: int | None = None  # None: --generations
    cap: int | None = None  # None: --cap
    note: str = ""

    @property
    def directive(self) -> str:
        chunk = f", chunk={self.chunk}" if self.chunk else ""
        return f"[[sim: ttft_ms={self.ttft_ms:g}, tps={self.tps:g}, tokens={self.tokens}{chunk}]]"

    def service_s(self, completion_tokens: int | None) -> float:
        n = completion_tokens or self.tokens
        return self.ttft_ms / 1000 + (n - 1) / self.tps


def create_campaign(
    scenario: Scenario, items: int, cap: int, fastdeploy_url: str, vllm_url: str, suffix: str = ""
) -> Any:
    """The scenario's suite, campaign and two endpoints; `suffix` keeps slugs apart when one
    scenario runs more than once in a database."""
    from inference.models import (
        Campaign,
        CampaignModel,
        ModelEndpoint,
        Suite,
        TaskItem,
        TaskType,
    )

    suite = Suite.objects.create(name=f"bench-{scenario.name}{suffix}")
    task_type = TaskType.objects.get(code="QA")
    TaskItem.objects.bulk_create(
        [
            TaskItem(
                suite=suite,
                external_id=f"q{n:05d}",
                task_type=task_type,
                prompt=f"{scenario.name} question {n}: why is the sky blue? {scenario.directive}",
                content_hash=f"{scenario.name}{suffix}-{n}",
            )
            for n in range(items)
        ],
        batch_size=500,
    )
    campaign = Campaign.objects.create(
        slug=f"bench-{scenario.name}{suffix}",
        name=f"bench {scenario.name}{suffix}",
        suite=suite,
        params={"max_tokens": scenario.tokens + 100, "temperature": 0.7},
    )
    for position, (model, dialect, url) in enumerate(
        [(ERNIE, "fastdeploy", fastdeploy_url), (QWEN, "vllm", vllm_url)]
    ):
        endpoint = ModelEndpoint.objects.create(
            slug=f"{scenario.name}{suffix}-{dialect}",
            name=f"{dialect} ({scenario.name}{suffix})",
            model=model,
            dialect=dialect,
            base_url=url,
            max_concurrency=cap,
            timeout_s=120,
        )
        CampaignModel.objects.create(campaign=campaign, endpoint=endpoint, position=position)
    return campaign


def ts(value: datetime | None) -> float:
    if value is None:
        raise ValueError("missing timestamp")
    return value.timestamp()


def peak_and_reached(events: list[tuple[float, int]], cap: int, end: float) -> tuple[int, float]:
    """From (time, +1/-1) events: the highest level, and when it first reached `cap`."""
    level = peak = 0
    reached = end
    for moment, delta in sorted(events, key=lambda e: (e[0], e[1])):  # finishes first
        level += delta
        peak = max(peak, level)
        if level >= cap and reached == end:
            reached = moment
    return peak, reached


def idle_between(events: list[tuple[float, int]], start: float, end: float, cap: int) -> float:
    """Idle slot-seconds (cap − level, floored at 0) between `start` and `end`."""
    level = 0
    idle = 0.0
    previous = start
    for moment, delta in sorted(events, key=lambda e: (e[0], e[1])):
        if moment > start:
            clipped = min(moment, end)
            idle += max(0, cap - level) * max(0.0, clipped - previous)
            previous = max(previous, clipped)
        level += delta
    idle += max(0, cap - level) * max(0.0, end - previous)
    return idle


def run_scenario(
    scenario: Scenario,
    environment: Environment,
    work: Path,
    generations: int,
    cap: int,
    concurrency: int,
    workers: int,
) -> dict[str, Any]:
    """Run one scenario at one cap, print its report and return its summary figures."""
    from django.db.models import Count, Q
    from django.utils import timezone

    from inference import dispatch
    from inference.models import Generation, GenerationStatus

    items = generations // 2
    print(
        f"\n== scenario {scenario.name} ({scenario.note}): {generations} generations = {items} "
        f"items x 2 endpoints, max_concurrency {cap} each, {scenario.directive} per generation; "
        f"{workers} worker(s) x {concurrency} threads"
    )
    with simulator_process(environment.env) as (sim, fastdeploy_url, vllm_url):
        campaign = create_campaign(scenario, items, cap, fastdeploy_url, vllm_url, f"-{cap}")
        sessions0 = pg_sessions(environment.pg_name)
        pg_cpu0 = postgres_cpu_s()
        with ExitStack() as stack:
            started = [
                stack.enter_context(
                    worker_process(
                        environment.env,
                        environment.queue,
                        concurrency,
                        work,
                        f"worker-{scenario.name}-{n}",
                    )
                )
                for n in range(workers)
            ]
            pids = [process.pid for process, _ in started]
            time.sleep(1.0)  # let the workers settle (their sweepers' first pass, connections)
            worker_cpu0 = sum(map(process_cpu_s, pids))
            sim_cpu0 = process_cpu_s(sim.pid)
            self_cpu0 = sum(os.times()[:2])
            busy0, total0 = machine_busy()
            launched_at = timezone.now()
            wall0 = time.perf_counter()
            created = dispatch.launch(campaign)
            assert created == generations, created
            ideal_guess = generations * scenario.service_s(None) / (2 * cap)
            deadline = time.monotonic() + max(120.0, 8 * ideal_guess)
            sampled_peak: dict[int, int] = {}
            done = 0
            while time.monotonic() < deadline:
                rows = (
                    Generation.objects.filter(campaign=campaign)
                    .values("endpoint_id")
                    .annotate(
                        running=Count(
                            "pk",
                            filter=Q(
                                status=GenerationStatus.RUNNING,
                                lease_expires_at__gt=timezone.now(),
                            ),
                        ),
                        done=Count(
                            "pk",
                            filter=Q(
                                status__in=[
                                    GenerationStatus.SUCCEEDED,
                                    GenerationStatus.FAILED,
                                    GenerationStatus.CANCELLED,
                                ]
                            ),
                        ),
                    )
                )
                done = 0
                for row in rows:
                    sampled_peak[row["endpoint_id"]] = max(
                        sampled_peak.get(row["endpoint_id"], 0), row["running"]
                    )
                    done += row["done"]
                if done >= generations:
                    break
                time.sleep(0.2)
            poll_wall = time.perf_counter() - wall0
            worker_cpu = sum(map(process_cpu_s, pids)) - worker_cpu0
            sim_cpu = process_cpu_s(sim.pid) - sim_cpu0
            self_cpu = sum(os.times()[:2]) - self_cpu0
            busy1, total1 = machine_busy()
        sessions1 = pg_sessions(environment.pg_name)
        pg_cpu1 = postgres_cpu_s()  # the workers have stopped: their backends are reaped
    probe = merge_probes([json.loads(path.read_text()) for _, path in started if path.exists()])
    return report(
        scenario,
        campaign,
        launched_at,
        generations,
        cap,
        done,
        poll_wall,
        sampled_peak,
        probe,
        {
            "worker": worker_cpu,
            "simulator": sim_cpu,
            "launcher": self_cpu,
            "machine_busy": (busy1 - busy0),
            "machine_total": (total1 - total0),
            "postgres": -1.0 if pg_cpu0 is None or pg_cpu1 is None else pg_cpu1 - pg_cpu0,
        },
        None if sessions0 is None or sessions1 is None else sessions1 - sessions0,
    )


def report(
    scenario: Scenario,
    campaign: Any,
    launched_at: datetime,
    generations: int,
    cap: int,
    done: int,
    poll_wall: float,
    sampled_peak: dict[int, int],
    probe: dict[str, Any] | None,
    cpu: dict[str, float],
    sessions: int | None,
) -> dict[str, Any]:
    from inference.models import Generation, GenerationStatus

    rows = list(
        Generation.objects.filter(campaign=campaign).values(
            "endpoint_id",
            "endpoint__slug",
            "endpoint__model",
            "status",
            "error",
            "started_at",
            "finished_at",
            "completion_tokens",
            "ttft_ms",
            "decode_tps",
        )
    )
    ok = [r for r in rows if r["status"] == GenerationStatus.SUCCEEDED]
    failed = [r for r in rows if r["status"] == GenerationStatus.FAILED]
    if done < generations:
        print(f"  !! only {done} of {generations} generations finished in {poll_wall:.0f} s")
    if failed:
        print(f"  !! {len(failed)} failed, e.g. {failed[0]['error'][:200]}")
    t0 = launched_at.timestamp()
    finished = [r for r in rows if r["finished_at"] is not None and r["started_at"] is not None]
    summary: dict[str, Any] = {"scenario": scenario.name, "cap": cap, "generations": generations}
    summary["ok"], summary["cpu"] = len(ok), cpu
    if not finished:
        print("  no generation finished")
        return summary
    end = max(ts(r["finished_at"]) for r in finished)
    wall = end - t0
    service = sum(scenario.service_s(r["completion_tokens"]) for r in ok)
    ideal = service / (2 * cap)
    per_endpoint_items = generations // 2
    waves = math.ceil(per_endpoint_items / cap)
    discrete = waves * scenario.service_s(None)
    print(
        f"  wall {wall:.2f} s (launch -> last finished_at) vs ideal {ideal:.2f} s "
        f"(= {service:.0f} s of scripted service / {2 * cap} slots): "
        f"{100 * ideal / wall:.1f}% of ideal throughput"
    )
    print(
        f"  (whole waves: {per_endpoint_items} per endpoint / {cap} slots = {waves} waves of "
        f"{scenario.service_s(None):.3f} s = {discrete:.2f} s, so at most "
        f"{100 * ideal / discrete:.1f}% is reachable; measured is "
        f"{100 * discrete / wall:.1f}% of that)"
    )
    print(f"  succeeded {len(ok)}, failed {len(failed)}; {len(ok) / wall:.1f} generations/s")
    summary.update(wall=wall, ideal=ideal, reachable=ideal / discrete, needs=len(ok) / ideal)

    intervals = (probe or {}).get("http_intervals", [])
    for endpoint_id in sorted({r["endpoint_id"] for r in rows}):
        mine = [r for r in finished if r["endpoint_id"] == endpoint_id]
        model = mine[0]["endpoint__model"]
        print(f"  endpoint {mine[0]['endpoint__slug']} ({model}), cap {cap}:")
        stored = [(ts(r["started_at"]), 1) for r in mine] + [
            (ts(r["finished_at"]), -1) for r in mine
        ]
        stored_peak, _ = peak_and_reached(stored, cap, end)
        http = [(a, b) for m, a, b in intervals if m == model]
        events = [(a, 1) for a, _ in http] + [(b, -1) for _, b in http]
        http_peak, reached = peak_and_reached(events, cap, end)
        print(
            f"    most running at once: {sampled_peak.get(endpoint_id, 0)} (database, sampled "
            f"every 0.2 s), {http_peak if http else '?'} (HTTP requests in flight, from the "
            f"worker), {stored_peak} (from stored started_at/finished_at)"
        )
        if not http:
            continue
        first_start = min(a for a, _ in http)
        last_start = max(a for a, _ in http)
        # Ramp-up: until the cap is first reached or a first request ends, whichever is first.
        ramp_end = min(reached, min(b for _, b in http), last_start)
        capacity = cap * wall
        busy = sum(b - a for a, b in http)
        scripted = sum(scenario.service_s(r["completion_tokens"]) for r in mine)
        ramp = idle_between(events, t0, ramp_end, cap)
        middle = idle_between(events, ramp_end, last_start, cap)
        tail = idle_between(events, last_start, end, cap)
        reached_text = f"{reached - t0:.2f} s" if reached < end else "never"
        print(
            f"    first request {first_start - t0:.2f} s after launch, {cap} in flight: "
            f"{reached_text}, last request sent {last_start - t0:.2f} s, end {wall:.2f} s"
        )
        print(
            f"    slot-seconds ({cap} x wall = {capacity:.0f}): scripted service "
            f"{100 * scripted / capacity:.1f}%, in HTTP beyond the script "
            f"{100 * (busy - scripted) / capacity:.1f}%, no request in the slot: initial fill "
            f"{100 * ramp / capacity:.1f}% + mid-run {100 * middle / capacity:.1f}% + tail "
            f"{100 * tail / capacity:.1f}%"
        )
        # Slot refill: the k-th request after the first `cap` follows the k-th to end.
        starts = sorted(a for a, _ in http)
        ends = sorted(b for _, b in http)
        refill = [a - b for a, b in zip(starts[cap:], ends, strict=False)]
        if refill:
            print(
                f"    slot refill (a request ends -> the next one is sent): median "
                f"{1000 * statistics.median(refill):.0f} ms, p95 "
                f"{1000 * percentile(refill, 95):.0f} ms, max {1000 * max(refill):.0f} ms"
            )
    ttfts = [r["ttft_ms"] - scenario.ttft_ms for r in ok if r["ttft_ms"] is not None]
    decode = [100 * (r["decode_tps"] / scenario.tps - 1) for r in ok if r["decode_tps"]]
    if ttfts and decode:
        print(
            f"  stored timings under this load: ttft - scripted median "
            f"{statistics.median(ttfts):.1f} ms (p95 {percentile(ttfts, 95):.1f}); decode_tps "
            f"error median {statistics.median(decode):+.2f}% (p95 |err| "
            f"{percentile([abs(d) for d in decode], 95):.2f}%)"
        )
    if probe:
        print_probe(probe, len(rows))
    cores = os.cpu_count() or 1
    seconds = cpu["machine_total"] / cores
    others = cpu["machine_busy"] - cpu["worker"] - cpu["simulator"] - cpu["launcher"]
    print(
        f"  CPU during the run ({seconds:.1f} s): worker {cpu['worker']:.1f} s, simulator "
        f"{cpu['simulator']:.1f} s, launcher/poller {cpu['launcher']:.1f} s, everything else "
        f"(PostgreSQL, Redis, kernel) {others:.1f} s; whole machine "
        f"{100 * cpu['machine_busy'] / max(cpu['machine_total'], 1e-9):.0f}% busy "
        f"of {cores} cores"
    )
    per_generation = cpu["worker"] / max(len(ok), 1)
    whole = cpu["machine_busy"] / max(len(ok), 1)
    print(
        f"  CPU per generation: worker {1000 * per_generation:.1f} ms (one worker process, one "
        f"GIL, finishes at most {1 / per_generation:.0f}/s), whole machine "
        f"{1000 * whole:.1f} ms (its {cores} cores finish at most {cores / whole:.0f}/s); "
        f"the ideal needs {len(ok) / ideal:.0f}/s"
    )
    summary["busy"] = cpu["machine_busy"] / max(cpu["machine_total"], 1e-9)
    summary["seconds"] = seconds
    if sessions is not None:
        line = f"  PostgreSQL: {sessions} connections opened during the run"
        if cpu["postgres"] >= 0:
            line += (
                f"; its backends used {cpu['postgres']:.1f} s of CPU "
                f"({1000 * cpu['postgres'] / max(len(ok), 1):.1f} ms per generation)"
            )
        print(line)

    return summary


def merge_probes(probes: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The figures of several workers' probes as if from one."""
    if not probes:
        return None
    merged: dict[str, Any] = {"calls": {}, "cpu": {}, "sql": {}, "gc_pauses": []}
    merged["http_intervals"] = []
    for probe in probes:
        for name, values in probe["calls"].items():
            merged["calls"].setdefault(name, []).extend(values)
        for name, value in probe["cpu"].items():
            merged["cpu"][name] = merged["cpu"].get(name, 0.0) + value
        for name, (queries, seconds) in probe["sql"].items():
            entry = merged["sql"].setdefault(name, [0, 0.0])
            entry[0] += queries
            entry[1] += seconds
        merged["gc_pauses"] += probe["gc_pauses"]
        merged["http_intervals"] += probe["http_intervals"]
    return merged


def print_probe(probe: dict[str, Any], generations: int) -> None:
    calls, cpu, sql = probe["calls"], probe["cpu"], probe["sql"]
    print(
        "  inside the worker, per call: wall mean / p95 (ms), CPU of the calling thread (ms), "
        "SQL queries and their time (ms)"
    )
    rows = [
        ("task", "run_generation, all of it", "task (rest)"),
        ("claim", "dispatch.claim", "claim"),
        ("http", "complete_with_retries", "http"),
        ("finish", "dispatch.finish", "finish"),
        ("pump", "dispatch.pump after a task", "pump"),
        ("pump (sweeper)", "dispatch.pump from the sweeper", None),
    ]
    rows += [(name, "new DB connection", None) for name in sorted(calls) if "connect" in name]
    for name, what, phase in rows:
        timings = calls.get(name)
        if not timings:
            continue
        line = (
            f"    {name:22s} {what:30s} {len(timings):5d} x  "
            f"{1000 * statistics.mean(timings):7.1f} / {1000 * percentile(timings, 95):7.1f}  "
            f"CPU {1000 * cpu.get(name, 0) / len(timings):5.1f}"
        )
        if phase is not None:
            queries, seconds = sql.get(phase, [0, 0.0])
            locked, lock_seconds = sql.get(f"{phase}: SELECT FOR UPDATE", [0, 0.0])
            queries += locked
            per_call = 1000 * (seconds + lock_seconds) / len(timings)
            line += f"  SQL {queries / len(timings):4.1f} q {per_call:6.1f}"
            if locked:
                line += f" (SELECT FOR UPDATE alone {1000 * lock_seconds / len(timings):.1f})"
        print(line)
    print(
        "    (task = claim + prepare + http + finish + pump; its SQL figure is the rest: item, "
        "params, stored request)"
    )
    other = sql.get("outside a task (sweeper, lease keeper)")
    if other:
        print(
            f"    outside tasks (sweeper, lease keeper): {other[0]} queries, "
            f"{1000 * other[1]:.0f} ms"
        )
    pauses = probe.get("gc_pauses") or []
    if pauses:
        print(
            f"    full garbage collections in the worker: {len(pauses)}, longest "
            f"{1000 * max(pauses):.0f} ms, {1000 * sum(pauses):.0f} ms in all"
        )


SCENARIOS = [
    Scenario("stream", ttft_ms=100, tps=200, tokens=100, note="the benchmark of the issue"),
    Scenario(
        "light",
        ttft_ms=500,
        tps=1000,
        tokens=10,
        cap=32,
        note="diagnostic: about the same service time with almost no streaming",
    ),
]


def _rate(value: float | None) -> str:
    return "?" if value is None else f"{value:.0f}"


def print_summary(summaries: list[dict[str, Any]], workers: int) -> None:
    """% of ideal per scenario and cap, and who used the machine's CPU."""
    cores = os.cpu_count() or 1
    print(
        f"\n== summary ({cores} cores; CPU shares are of the whole machine during the run; "
        "most/s = generations per second the process could finish on one core at its CPU per "
        "generation;\n   launcher + rest = this script, PostgreSQL, Redis, the kernel and any "
        "other process on the machine)"
    )
    header = (
        "| scenario | cap × 2 endpoints | generations ok | % of ideal (reachable) | machine busy "
        "| worker share · ms/gen · most/s | simulator share · ms/gen · most/s | launcher + rest "
        "| ideal needs /s | saturated by |"
    )
    print(header)
    print("|" + "---|" * (header.count(" | ") + 1))
    for row in summaries:
        if "wall" not in row:
            print(f"| {row['scenario']} | {row['cap']} | 0 | – | – | – | – | – | – | – |")
            continue
        cpu, ok = row["cpu"], max(row["ok"], 1)
        capacity = row["seconds"] * cores  # CPU seconds the machine had

        def share(seconds: float, capacity: float = capacity) -> str:
            return f"{100 * seconds / max(capacity, 1e-9):.0f}%"

        per_gen = {name: cpu[name] / ok for name in ("worker", "simulator")}
        # Each worker process and the simulator's event loop run under one GIL: one core each.
        most = {
            "worker": workers / per_gen["worker"] if per_gen["worker"] else None,
            "simulator": 1 / per_gen["simulator"] if per_gen["simulator"] else None,
        }
        rest = cpu["machine_busy"] - cpu["worker"] - cpu["simulator"]
        needs = row["needs"]
        limits = [name for name, value in most.items() if value is not None and value < needs]
        if row["busy"] >= 0.9:
            limits.append("machine (≥ 90% busy)")
        print(
            f"| {row['scenario']} | {row['cap']} | {row['ok']} "
            f"| {100 * row['ideal'] / row['wall']:.1f}% ({100 * row['reachable']:.1f}%) "
            f"| {100 * row['busy']:.0f}% "
            f"| {share(cpu['worker'])} · {1000 * per_gen['worker']:.1f} · "
            f"{_rate(most['worker'])} "
            f"| {share(cpu['simulator'])} · {1000 * per_gen['simulator']:.1f} · "
            f"{_rate(most['simulator'])} | {share(rest)} | {needs:.0f} "
            f"| {', '.join(limits) or 'none'} |"
        )
    print(
        "saturated by: a process whose most/s is below what the ideal needs (it cannot keep up "
        "even with a core to itself), or the machine when it was at least 90% busy."
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--generations", type=int, default=2000)
    parser.add_argument(
        "--caps",
        default="8,32,64",
        help="max_concurrency of each endpoint for the stream scenario, comma-separated",
    )
    parser.add_argument(
        "--concurrency", type=int, default=None, help="worker threads (default: 2 x cap)"
    )
    parser.add_argument("--database", choices=["auto", "postgres", "sqlite"], default="auto")
    parser.add_argument("--broker", choices=["auto", "redis", "embedded"], default="auto")
    parser.add_argument(
        "--only", choices=[s.name for s in SCENARIOS], help="run one scenario (default: all)"
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--ready-file", help=argparse.SUPPRESS)
    parser.add_argument("--queue", help=argparse.SUPPRESS)
    parser.add_argument("--no-probe", dest="probe", action="store_false", help=argparse.SUPPRESS)
    parser.add_argument(
        "--workers", type=int, default=1, help="worker processes (each --concurrency threads)"
    )
    args = parser.parse_args()
    if args.worker:
        worker_main(
            Path(args.worker), Path(args.ready_file), args.queue, args.concurrency, args.probe
        )
        return
    try:
        caps = [int(cap) for cap in args.caps.split(",") if cap.strip()]
    except ValueError:
        parser.error("--caps takes whole numbers, e.g. 8,32,64")
    if not caps or min(caps) < 1:
        parser.error("--caps takes whole numbers >= 1, e.g. 8,32,64")
    runs = [
        (scenario, cap)
        for scenario in SCENARIOS
        if args.only in (None, scenario.name)
        for cap in ([scenario.cap] if scenario.cap else caps)
    ]
    with (
        tempfile.TemporaryDirectory(prefix="gradebench-bench-") as tmp,
        throwaway_environment(Path(tmp), args.database, args.broker, "dispatch") as environment,
    ):
        threads = args.concurrency or "2 x cap"
        print(
            f"2 simulated endpoints (FastDeploy + vLLM dialects); {args.workers} x celery worker "
            f"--pool threads --concurrency {threads}; {environment.label}; "
            f"{os.cpu_count()} cores"
        )
        setup_django(migrate=True)
        summaries = [
            run_scenario(
                scenario,
                environment,
                Path(tmp),
                scenario.generations or args.generations,
                cap,
                args.concurrency or 2 * cap,
                args.workers,
            )
            for scenario, cap in runs
        ]
        print_summary(summaries, args.workers)


if __name__ == "__main__":
    main()
