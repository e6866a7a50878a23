"""Benchmark: how late the stream loop runs behind busy task threads, by switch interval.

A worker's stream loop (`inference/stream_loop.py`) reads every stream; its task threads store
answers in the database meanwhile, pure Python that holds the interpreter lock. A thread that
waits for the lock gets it after at most the switch interval (`sys.setswitchinterval`, 5 ms by
default), so that is how late the loop can read a chunk because of them. This measures the
loop's lateness (a coroutine sleeping 5 ms at a time, as `scheduling_lag` does) with 0, 1 and
3 threads busy 15 ms out of every 20, at switch intervals of 5, 2, 1 and 0.5 ms, and the work
the busy threads got done (what the shorter interval costs them).

    python tests/benchmarks/bench_switch_interval.py [--samples 300]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from inference import stream_loop
from tests.benchmarks.harness import percentile

INTERVALS_MS = (5.0, 2.0, 1.0, 0.5)


def busy(stop: threading.Event, done: list[int]) -> None:
    """A task thread storing answers: 15 ms of Python, 5 ms waiting, over and over."""
    while not stop.is_set():
        start = time.perf_counter()
        while time.perf_counter() - start < 0.015:
            sum(i * i for i in range(200))
            done[0] += 1
        time.sleep(0.005)


async def lateness(samples: int) -> list[float]:
    late = []
    for _ in range(samples):
        due = time.perf_counter() + 0.005
        await asyncio.sleep(0.005)
        late.append(1000 * (time.perf_counter() - due))
    return late


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=300, help="wake-ups per measurement")
    args = parser.parse_args()
    before = sys.getswitchinterval()
    print("| busy threads | switch interval | loop lateness p50 / p95 / p99 | busy threads' work |")
    print("|---|---|---|---|")
    try:
        for threads in (0, 1, 3):
            stop, done = threading.Event(), [0]
            workers = [threading.Thread(target=busy, args=(stop, done)) for _ in range(threads)]
            for worker in workers:
                worker.start()
            for interval_ms in INTERVALS_MS:
                sys.setswitchinterval(interval_ms / 1000)
                done[0], start = 0, time.perf_counter()
                late = stream_loop.run(lateness(args.samples))
                rate = done[0] / (time.perf_counter() - start)
                print(
                    f"| {threads} | {interval_ms:g} ms | {statistics.median(late):.2f} / "
                    f"{percentile(late, 95):.2f} / {percentile(late, 99):.2f} ms | "
                    f"{rate:,.0f} units/s |",
                    flush=True,
                )
            stop.set()
            for worker in workers:
                worker.join()
    finally:
        sys.setswitchinterval(before)


if __name__ == "__main__":
    main()
