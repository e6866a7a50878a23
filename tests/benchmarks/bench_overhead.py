"""Benchmark: worker CPU per generation while streaming.

Runs generations against the simulator (in its own process) with one token per chunk, at two
answer lengths, and reports CPU time (user + system) per generation and per 1,000 streamed
tokens; the two lengths separate the fixed cost of a generation from the cost of its tokens
(CPU = fixed + per_token x tokens, fitted through the two points).

Two ways, because each answers a different question:

* worker (reported): a real `celery worker --pool threads` process (started through
  bench_dispatch.py, without its probe), CPU read from /proc/PID/stat around the run, its idle
  rate (measured just before) subtracted. This is what a deployment pays: Celery's consumer,
  acks, the sweeper and lease keeper, and the database connections (kept from task to task,
  WORKER_DATABASE_CONN_MAX_AGE; 0 opens one per task) are all in it.
* in-process: `inference.generate.run_generation` called from a thread pool in this process,
  with `time.thread_time()` around it and around `complete_with_retries`, plus the CPU of the
  stream loop's thread (which reads every stream), which splits a generation's CPU into
  streaming (the HTTP client) and bookkeeping (claim, item, finish, pump). No broker:
  `dispatch._enqueue` is replaced by a no-op, so pump's queries still run.
  Connections stay open per thread, as without Celery. A last run does the short answers one
  at a time, to show the cost without contention for the GIL.

The PostgreSQL server's CPU (postmaster, live and exited backends) is reported beside each
figure: a new connection per task costs more there than in the worker.

Database and broker as in bench_dispatch.py: a throwaway PostgreSQL database (else SQLite) and
Redis db 13 with a private queue (else the embedded broker).

* client only (`--client-only`, no database or broker): `complete_with_retries` called from a
  thread pool, as the worker calls it, with this process's CPU time (`time.process_time()`, all
  threads) around each batch. This is the streaming cost alone; `--compare-client PATH` measures
  another version of `inference/client.py` (e.g. `git show main:inference/client.py > /tmp/c.py`)
  the same way, alternating with this one, for a before/after in one run.

    python tests/benchmarks/bench_overhead.py [--generations 300] [--concurrency 16]
    python tests/benchmarks/bench_overhead.py --client-only [--compare-client /tmp/c.py]
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.benchmarks.bench_dispatch import (  # noqa: E402
    Scenario,
    create_campaign,
    pg_sessions,
    postgres_cpu_s,
    process_cpu_s,
    simulator_process,
    throwaway_environment,
    worker_process,
)
from tests.benchmarks.harness import setup_django  # noqa: E402

SHORT = 20
LONG = 400


@dataclass
class Measure:
    label: str
    tokens: int  # scripted answer length
    generations: int
    streamed_tokens: int
    cpu_s: float  # net CPU of the measured process(es)
    wall_s: float
    extra: dict[str, float]

    @property
    def per_generation_ms(self) -> float:
        return 1000 * self.cpu_s / self.generations

    @property
    def per_1000_tokens_ms(self) -> float:
        return 1000 * self.cpu_s / self.streamed_tokens * 1000


def scenario(tokens: int, run: int) -> Scenario:
    # One token per chunk (chunk=1), the costliest shape for the client.
    return Scenario(f"overhead-{run}-{tokens}", ttft_ms=50, tps=400, tokens=tokens, chunk=1)


def wait_done(campaign: Any, total: int, timeout: float) -> None:
    from inference.models import GenerationStatus

    deadline = time.monotonic() + timeout
    finished = [GenerationStatus.SUCCEEDED, GenerationStatus.FAILED, GenerationStatus.CANCELLED]
    while time.monotonic() < deadline:
        if campaign.generations.filter(status__in=finished).count() >= total:
            return
        time.sleep(0.25)
    raise RuntimeError(f"campaign {campaign.slug} did not finish within {timeout:.0f} s")


def streamed(campaign: Any) -> tuple[int, int]:
    """(succeeded generations, completion tokens they streamed)."""
    from django.db.models import Sum

    from inference.models import GenerationStatus

    done = campaign.generations.filter(status=GenerationStatus.SUCCEEDED)
    return done.count(), int(done.aggregate(n=Sum("completion_tokens"))["n"] or 0)


def through_worker(
    environment: Any, work: Path, generations: int, concurrency: int, tokens: int, run: int
) -> Measure:
    from inference import dispatch

    plan = scenario(tokens, run)
    with simulator_process(environment.env) as (sim, fastdeploy_url, vllm_url):
        cap = concurrency // 2
        campaign = create_campaign(plan, generations // 2, cap, fastdeploy_url, vllm_url)
        with worker_process(
            environment.env,
            environment.queue,
            concurrency,
            work,
            f"overhead-worker-{run}",
            probe=False,
        ) as (worker, _):
            time.sleep(2.0)  # start-up work (first sweep, connections) out of the way
            idle0, idle_wall0 = process_cpu_s(worker.pid), time.perf_counter()
            time.sleep(3.0)
            idle_rate = (process_cpu_s(worker.pid) - idle0) / (time.perf_counter() - idle_wall0)
            sessions0 = pg_sessions(environment.pg_name)
            pg0 = postgres_cpu_s()
            cpu0, sim0 = process_cpu_s(worker.pid), process_cpu_s(sim.pid)
            wall0 = time.perf_counter()
            dispatch.launch(campaign)
            wait_done(campaign, generations, timeout=240)
            wall = time.perf_counter() - wall0
            raw = process_cpu_s(worker.pid) - cpu0
            sim_cpu = process_cpu_s(sim.pid) - sim0
            sessions1 = pg_sessions(environment.pg_name)
        pg1 = postgres_cpu_s()  # the worker has stopped: its backends are reaped
    ok, tokens_streamed = streamed(campaign)
    extra = {"raw_cpu_s": raw, "idle_rate": idle_rate, "simulator_cpu_s": sim_cpu}
    if pg0 is not None and pg1 is not None:
        extra["postgres_cpu_s"] = pg1 - pg0
    if sessions0 is not None and sessions1 is not None:
        extra["connections"] = sessions1 - sessions0
    return Measure("worker", tokens, ok, tokens_streamed, raw - idle_rate * wall, wall, extra)


def in_process(
    environment: Any, generations: int, concurrency: int, tokens: int, run: int
) -> Measure:
    from inference import dispatch, generate

    plan = scenario(tokens, run)
    cpu_task: list[float] = []
    cpu_http: list[float] = []
    lock = threading.Lock()
    original_http = generate.complete_with_retries
    local = threading.local()

    def timed_http(*args: Any, **kwargs: Any) -> Any:
        start = time.thread_time()
        try:
            return original_http(*args, **kwargs)
        finally:
            local.http += time.thread_time() - start  # a task may chain several

    from django.db import connections

    wrappers: dict[int, Any] = {}

    def one(pk: int) -> str:
        local.http = 0.0
        start = time.thread_time()
        outcome = generate.run_generation(pk)
        with lock:
            wrappers[id(connections["default"])] = connections["default"]
            cpu_task.append(time.thread_time() - start)
            cpu_http.append(local.http)
        return outcome

    with simulator_process(environment.env) as (_, fastdeploy_url, vllm_url):
        # The cap never binds: every thread of the pool may run at once.
        campaign = create_campaign(plan, generations // 2, concurrency, fastdeploy_url, vllm_url)
        saved_enqueue = dispatch._enqueue
        dispatch._enqueue = lambda ids, work=None: None  # type: ignore[assignment,misc]
        generate.complete_with_retries = timed_http  # type: ignore[assignment]
        # The app logs every HTTP request (httpx2, INFO) as the worker does; keep that cost
        # but send the lines nowhere instead of onto this report.
        devnull = open(os.devnull, "w")  # noqa: SIM115 (closed in finally)
        streams = [
            (handler, handler.setStream(devnull))
            for handler in logging.getLogger().handlers
            if isinstance(handler, logging.StreamHandler)
        ]
        try:
            dispatch.launch(campaign)
            pg0 = postgres_cpu_s()
            by_endpoint: dict[int, list[int]] = {}
            for pk, endpoint_id in campaign.generations.values_list("pk", "endpoint_id"):
                by_endpoint.setdefault(endpoint_id, []).append(pk)
            interleaved = [pk for pair in zip(*by_endpoint.values(), strict=False) for pk in pair]
            loop_clock = stream_loop_clock()
            times0, wall0 = os.times(), time.perf_counter()
            loop0 = time.clock_gettime(loop_clock)
            with ThreadPoolExecutor(concurrency) as pool:
                outcomes = list(pool.map(one, interleaved))
            wall = time.perf_counter() - wall0
            loop_cpu = time.clock_gettime(loop_clock) - loop0
            times1 = os.times()
            pg1 = postgres_cpu_s()
            for wrapper in wrappers.values():  # the pool's threads are gone: close their own
                if wrapper.connection is not None:
                    wrapper.connection.close()
        finally:
            dispatch._enqueue = saved_enqueue  # type: ignore[method-assign]
            generate.complete_with_retries = original_http  # type: ignore[method-assign]
            for handler, stream in streams:
                handler.setStream(stream)
            devnull.close()
    if outcomes.count("succeeded") != len(outcomes):
        print(f"  !! outcomes: { {o: outcomes.count(o) for o in set(outcomes)} }")
    ok, tokens_streamed = streamed(campaign)
    process = (times1.user - times0.user) + (times1.system - times0.system)
    # The streams are read on the process's stream loop: its thread's CPU is the generations'.
    extra = {"http_cpu_s": sum(cpu_http) + loop_cpu, "process_cpu_s": process}
    if pg0 is not None and pg1 is not None:
        extra["postgres_cpu_s"] = pg1 - pg0
    cpu = sum(cpu_task) + loop_cpu
    return Measure("in-process", tokens, ok, tokens_streamed, cpu, wall, extra)


def stream_loop_clock() -> int:
    """The CPU clock of the thread that runs this process's stream loop (started if need be)."""
    from inference import stream_loop

    stream_loop.get_loop()
    thread = stream_loop._stream_loop._thread
    assert thread is not None and thread.ident is not None
    return time.pthread_getcpuclockid(thread.ident)


CLIENT_TPS = 4000  # fast, so that the client's CPU, not waiting for tokens, sets the pace


def load_client(path: str | None) -> Any:
    """`inference.client`, or the version of that module in the file at `path`."""
    if path is None:
        from inference import client

        return client
    spec = importlib.util.spec_from_file_location("inference._client_compared", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    module.__package__ = "inference"  # its relative imports (.metrics) resolve as usual
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def client_batch(
    client: Any, label: str, urls: tuple[str, str], generations: int, concurrency: int, tokens: int
) -> Measure:
    """`complete_with_retries` for `generations` answers of `tokens` tokens, one per chunk."""
    from tests.benchmarks.bench_dispatch import ERNIE, QWEN

    configs = [
        client.EndpointConfig(urls[0], "", ERNIE, "fastdeploy", "none", 120.0, 120.0),
        client.EndpointConfig(urls[1], "", QWEN, "vllm", "none", 120.0, 120.0),
    ]
    directive = f"[[sim: ttft_ms=5, tps={CLIENT_TPS}, tokens={tokens}, chunk=1]]"

    def one(n: int) -> int:
        config = configs[n % 2]
        request = client.build_request(
            config,
            [{"role": "user", "content": f"question {n}: why is the sky blue? {directive}"}],
            {"max_tokens": tokens + 100, "temperature": 0.7},
        )
        result, _ = client.complete_with_retries(
            config, request, max_attempts=1, backoff_base_s=0.1, backoff_cap_s=1.0
        )
        return int(result.token_counts()["completion_tokens"])

    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(2 * concurrency)))  # connections, clients, caches warm
        cpu0, wall0 = time.process_time(), time.perf_counter()
        streamed_tokens = sum(pool.map(one, range(generations)))
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return Measure(label, tokens, generations, streamed_tokens, cpu, wall, {})


def client_only(generations: int, concurrency: int, compare: str | None) -> None:
    clients = [("this client", load_client(None))]
    if compare:
        clients.append((f"client at {compare}", load_client(compare)))
    print(
        f"client only: complete_with_retries from {concurrency} threads, {generations} "
        f"generations per answer length ({SHORT} and {LONG} tokens, one token per chunk, "
        f"{CLIENT_TPS} tok/s), both simulated dialects; CPU of this process (all threads)"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    results: dict[str, list[Measure]] = {label: [] for label, _ in clients}
    with simulator_process(env) as (_, fastdeploy_url, vllm_url):
        for tokens in (SHORT, LONG):
            for label, module in clients:  # alternating, so both see the same machine
                results[label].append(
                    client_batch(
                        module,
                        label,
                        (fastdeploy_url, vllm_url),
                        generations,
                        concurrency,
                        tokens,
                    )
                )
    for label, (short, long) in results.items():
        print(f"\n-- {label}")
        show(short)
        show(long)
        fixed, per_thousand = fit(short, long)
        print(
            f"    fit: {fixed:.2f} ms per generation + {per_thousand:.1f} ms per 1,000 "
            "streamed tokens"
        )


def fit(short: Measure, long: Measure) -> tuple[float, float]:
    """(fixed ms per generation, ms per 1,000 tokens) through the two points."""
    a_tokens = short.streamed_tokens / short.generations
    b_tokens = long.streamed_tokens / long.generations
    slope = (long.per_generation_ms - short.per_generation_ms) / (b_tokens - a_tokens)
    return short.per_generation_ms - slope * a_tokens, slope * 1000


def show(measure: Measure) -> None:
    per_gen_tokens = measure.streamed_tokens / measure.generations
    line = (
        f"    {measure.tokens:4d}-token answers: {measure.generations} generations, "
        f"{per_gen_tokens:.0f} tokens each on average, {measure.wall_s:.1f} s: "
        f"CPU {measure.per_generation_ms:6.1f} ms per generation, "
        f"{measure.per_1000_tokens_ms:6.1f} ms per 1,000 tokens"
    )
    print(line)
    extra = measure.extra
    if measure.label not in ("worker", "in-process"):
        return
    if measure.label == "worker":
        print(
            f"        (worker CPU {extra['raw_cpu_s']:.2f} s minus idle "
            f"{1000 * extra['idle_rate']:.1f} ms/s x {measure.wall_s:.1f} s; simulator "
            f"{extra['simulator_cpu_s']:.2f} s"
            + (
                f"; {extra['connections']:.0f} database connections opened"
                if "connections" in extra
                else ""
            )
            + ")"
        )
    else:
        http = 1000 * extra["http_cpu_s"] / measure.generations
        print(
            f"        of which streaming (the stream loop's thread and complete_with_retries) "
            f"{http:.1f} ms, bookkeeping "
            f"(claim, item, request, finish, pump) {measure.per_generation_ms - http:.1f} ms; "
            f"whole process {1000 * extra['process_cpu_s'] / measure.generations:.1f} ms "
            "per generation (lease keeper, GC, thread pool included)"
        )
    if "postgres_cpu_s" in extra:
        print(
            f"        PostgreSQL server meanwhile: "
            f"{1000 * extra['postgres_cpu_s'] / measure.generations:.1f} ms CPU per "
            "generation (not in the figures above)"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--generations", type=int, default=300, help="per answer length")
    parser.add_argument("--concurrency", type=int, default=16, help="streams at once")
    parser.add_argument("--database", choices=["auto", "postgres", "sqlite"], default="auto")
    parser.add_argument("--broker", choices=["auto", "redis", "embedded"], default="auto")
    parser.add_argument("--client-only", action="store_true", help="streaming cost alone")
    parser.add_argument("--compare-client", help="another inference/client.py to measure too")
    args = parser.parse_args()
    if args.client_only:
        client_only(args.generations, args.concurrency, args.compare_client)
        return
    with (
        tempfile.TemporaryDirectory(prefix="gradebench-bench-") as tmp,
        throwaway_environment(Path(tmp), args.database, args.broker, "overhead") as environment,
    ):
        print(
            f"{args.generations} generations per answer length ({SHORT} and {LONG} tokens, one "
            f"token per chunk, 400 tok/s), 2 simulated endpoints, {args.concurrency} streams at "
            f"once; {environment.label}"
        )
        setup_django(migrate=True)
        results: dict[str, list[Measure]] = {"worker": [], "in-process": []}
        run = 0
        for tokens in (SHORT, LONG):
            run += 1
            results["worker"].append(
                through_worker(
                    environment, Path(tmp), args.generations, args.concurrency, tokens, run
                )
            )
        for tokens in (SHORT, LONG):
            run += 1
            results["in-process"].append(
                in_process(environment, args.generations, args.concurrency, tokens, run)
            )
        for label, heading in (
            ("worker", "REPORTED: celery worker process (user+sys, /proc/PID/stat, net of idle)"),
            ("in-process", "in-process run_generation (thread CPU, no Celery, connections kept)"),
        ):
            short, long = results[label]
            print(f"\n-- {heading}")
            show(short)
            show(long)
            fixed, per_thousand = fit(short, long)
            print(
                f"    fit: {fixed:.1f} ms per generation + {per_thousand:.1f} ms per 1,000 "
                "streamed tokens"
            )
        run += 1
        alone = in_process(environment, 100, 1, SHORT, run)
        print("\n-- in-process, one generation at a time (no contention for the GIL)")
        show(alone)
        worker_fixed, _ = fit(*results["worker"])
        local_fixed, _ = fit(*results["in-process"])
        print(
            f"\n  Celery and its database connections, fixed part: "
            f"{worker_fixed - local_fixed:+.1f} ms of worker CPU per generation "
            "(worker fit - in-process fit)"
        )
        server = {
            label: [m.extra["postgres_cpu_s"] / m.generations for m in measures]
            for label, measures in results.items()
            if all("postgres_cpu_s" in m.extra for m in measures)
        }
        if len(server) == 2:
            extra_ms = 1000 * (
                statistics.mean(server["worker"]) - statistics.mean(server["in-process"])
            )
            print(
                f"  and {extra_ms:+.1f} ms of PostgreSQL CPU per generation (a new backend per "
                "task through the worker vs connections kept in-process)"
            )


if __name__ == "__main__":
    main()
