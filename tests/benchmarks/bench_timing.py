"""Benchmark: timing fidelity of the client against the simulator's scripted timing.

Drives `inference.client.complete_with_retries` (one attempt, so one `stream_chat`) directly —
no Django, no Celery — against the simulator, with each request's timing scripted by a
`[[sim: ttft_ms=…, tps=…, tokens=…]]` directive, and compares what the client measured with
what the server scheduled:

* TTFT error   = measured `ttft_ms` − scripted TTFT (ms). The simulator counts TTFT from the
  moment it has read the request body, the client from just before it sends the request, so
  the error is the client's own overhead plus the loopback round trip.
* decode error = measured `decode_tps` (from `inference.metrics.speed_metrics` with the timings
  and the server's usage) ÷ scripted rate − 1. The simulator schedules token k at
  TTFT + (k−1)/rate, so the exact answer is the scripted rate.

Each setting runs sequentially (one stream at a time, `--reps` times) and with 8 streams at
once (`--batches` rounds of 8). Two placements of the simulator:

* subprocess (reported): `python -m inference.simulator` in its own process, so the client
  does not share a GIL with the server's event loop — as with a real model server;
* thread: `SimulatorThread` inside the client's process (as the test suite runs it), on a
  reduced grid, to show what sharing the GIL costs.

    python tests/benchmarks/bench_timing.py [--reps 3] [--batches 1] [--tokens 200]
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import gc
import io
import itertools
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from inference.client import (  # noqa: E402
    EndpointConfig,
    ModelError,
    build_request,
    complete_with_retries,
)
from inference.metrics import speed_metrics  # noqa: E402
from tests.benchmarks.harness import percentile  # noqa: E402

MODEL = "baidu/ERNIE-4.5-0.3B-Paddle"  # FastDeploy dialect, one token per chunk
VISION_MODEL = "baidu/ERNIE-4.5-VL-28B-A3B-Paddle"  # same server, accepts images
TTFTS_MS = (50, 200, 800)
RATES = (30, 100, 400)
CONCURRENT = 8
TAG_RE = re.compile(r"bench ([0-9a-f]{32})")


@dataclass(frozen=True)
class Sample:
    ttft_ms: float
    rate: float
    concurrency: int
    ttft_error_ms: float
    decode_error: float  # relative: measured / scripted - 1
    tag: str = ""
    started_at: float = 0.0  # wall clock just before t0 (StreamResult.started_at)
    short: bool = False  # the simulator sent fewer tokens than `tokens=` asked for
    send_ms: float | None = None  # t0 -> the simulator has read the request (its TTFT origin)


class GcPauses:
    """Full (generation 2) garbage collections of this process and how long each stopped it."""

    def __init__(self) -> None:
        self.pauses: list[float] = []
        self._start = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if info.get("generation") != 2:
            return
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.pauses.append(1000 * (time.perf_counter() - self._start))

    def __enter__(self) -> GcPauses:
        gc.callbacks.append(self)
        return self

    def __exit__(self, *exc_info: object) -> None:
        gc.callbacks.remove(self)

    def describe(self) -> str:
        if not self.pauses:
            return "no full GC in this process"
        return (
            f"{len(self.pauses)} full GC(s) in this process, longest "
            f"{max(self.pauses):.0f} ms (every thread stops meanwhile)"
        )


class Simulator:
    """A running simulator: the FastDeploy-style base URL and a way to read its request log."""

    def __init__(self, base_url: str, log: Callable[[], list[dict[str, Any]]]) -> None:
        self.base_url = base_url
        self.log = log


def _http_log(base_url: str) -> list[dict[str, Any]]:
    root = base_url.rsplit("/v1", 1)[0]
    with urllib.request.urlopen(f"{root}/_sim/requests", timeout=30) as response:  # noqa: S310
        return list(json.load(response)["data"])


@contextmanager
def simulator_subprocess() -> Iterator[Simulator]:
    """`python -m inference.simulator` on free ports, in its own process."""
    process = subprocess.Popen(
        [sys.executable, "-m", "inference.simulator", "--fastdeploy-port", "0", "--vllm-port", "0"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        url = None
        assert process.stdout is not None
        deadline = time.monotonic() + 30
        while url is None and time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                raise RuntimeError("simulator exited before listening")
            if line.startswith("fastdeploy "):
                url = line.split()[1]
        if url is None:
            raise RuntimeError("simulator did not report its URL")
        # Keep draining its output so it never blocks on a full pipe.
        threading.Thread(target=process.stdout.read, daemon=True).start()
        yield Simulator(url, lambda: _http_log(url))
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def simulator_thread() -> Iterator[Simulator]:
    """`SimulatorThread`: the simulator's event loop in a thread of this process."""
    from inference.simulator import SimulatorThread

    with SimulatorThread() as sim:
        yield Simulator(sim.base_url(MODEL), sim.requests)


def one_stream(config: EndpointConfig, ttft_ms: float, rate: float, tokens: int) -> Sample | str:
    tag = uuid.uuid4().hex
    prompt = f"bench {tag} [[sim: ttft_ms={ttft_ms}, tps={rate}, tokens={tokens}]]"
    request = build_request(
        config, [{"role": "user", "content": prompt}], {"max_tokens": tokens + 50}
    )
    try:
        result, _ = complete_with_retries(
            config, request, max_attempts=1, backoff_base_s=0.01, backoff_cap_s=0.01
        )
    except ModelError as error:
        return f"failed: {error.message}"
    counts = result.token_counts()
    if counts["usage_source"] != "server":
        return f"no usage from the server: {counts}"
    metrics = speed_metrics(result.timings, counts["completion_tokens"])
    measured_ttft, decode = metrics["ttft_ms"], metrics["decode_tps"]
    if measured_ttft is None or decode is None or result.started_at is None:
        return f"missing timings {metrics}"
    return Sample(
        ttft_ms,
        rate,
        1,
        measured_ttft - ttft_ms,
        decode / rate - 1,
        tag=tag,
        started_at=result.started_at.timestamp(),
        short=counts["completion_tokens"] != tokens,
    )


def run_grid(
    sim: Simulator,
    ttfts: Sequence[int],
    rates: Sequence[int],
    tokens: int,
    reps: int,
    batches: int,
) -> tuple[list[Sample], list[str]]:
    config = EndpointConfig(sim.base_url, "", MODEL, "fastdeploy", "none", 120.0, 60.0)
    one_stream(config, 10, 1000, 20)  # warm-up: connection, imports, first parse
    samples: list[Sample] = []
    problems: list[str] = []
    grid = list(itertools.product(ttfts, rates))
    for _ in range(reps):
        for ttft_ms, rate in grid:
            outcome = one_stream(config, ttft_ms, rate, tokens)
            if isinstance(outcome, str):
                problems.append(outcome)
            else:
                samples.append(outcome)
    with ThreadPoolExecutor(CONCURRENT) as pool:
        for _ in range(batches):
            for ttft_ms, rate in grid:
                outcomes = list(
                    pool.map(
                        lambda _n, t=ttft_ms, r=rate: one_stream(config, t, r, tokens),
                        range(CONCURRENT),
                    )
                )
                for outcome in outcomes:
                    if isinstance(outcome, str):
                        problems.append(outcome)
                    else:
                        samples.append(dataclasses.replace(outcome, concurrency=CONCURRENT))
    return with_arrivals(sim, samples), problems


def image_payload(sim: Simulator, reps: int) -> list[Sample]:
    """Sequential requests carrying one ~0.75 MB data URL (800x600 JPEG of noise)."""
    from PIL import Image

    noise = Image.frombytes("RGB", (800, 600), os.urandom(800 * 600 * 3))
    buffer = io.BytesIO()
    noise.save(buffer, "JPEG", quality=95)
    data_url = "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()
    config = EndpointConfig(sim.base_url, "", VISION_MODEL, "fastdeploy", "field", 120.0, 60.0)
    samples = []
    for n in range(reps + 1):
        tag = uuid.uuid4().hex
        text = f"bench {tag} [[sim: ttft_ms=200, tps=100, tokens=50]]"
        content = [
            {"type": "text", "text": text},
            {"type": "image_url", "image_url": {"url": data_url}},
        ]
        request = build_request(
            config, [{"role": "user", "content": content}], {"max_tokens": 100, "thinking": False}
        )
        result, _ = complete_with_retries(
            config, request, max_attempts=1, backoff_base_s=0.01, backoff_cap_s=0.01
        )
        ttft = speed_metrics(result.timings, None)["ttft_ms"]
        if n and ttft is not None and result.started_at is not None:  # the first is a warm-up
            samples.append(Sample(200, 100, 1, ttft - 200, 0.0, tag, result.started_at.timestamp()))
    return with_arrivals(sim, samples)


def with_arrivals(sim: Simulator, samples: list[Sample]) -> list[Sample]:
    """Fill `send_ms` from the simulator's log (when it had each request, by wall clock)."""
    arrivals: dict[str, float] = {}
    for entry in sim.log():
        match = TAG_RE.search(entry.get("prompt") or "")
        if match:
            arrivals[match.group(1)] = float(entry["received_at"])
    return [
        dataclasses.replace(s, send_ms=1000 * (arrivals[s.tag] - s.started_at))
        if s.tag in arrivals
        else s
        for s in samples
    ]


def describe(samples: Sequence[Sample]) -> str:
    ttft = [s.ttft_error_ms for s in samples]
    send = [s.send_ms for s in samples if s.send_ms is not None]
    after = [s.ttft_error_ms - s.send_ms for s in samples if s.send_ms is not None]
    decode = [100 * s.decode_error for s in samples]
    abs_decode = [abs(d) for d in decode]
    return (
        f"n={len(samples):3d}  TTFT err ms: median {statistics.median(ttft):+6.2f} "
        f"p95 {percentile(ttft, 95):+6.2f} max {max(ttft):+7.2f} "
        f"(= send {statistics.median(send):4.2f} + late {statistics.median(after):4.2f})  "
        f"decode_tps err %: median {statistics.median(decode):+6.3f} "
        f"p95|err| {percentile(abs_decode, 95):5.3f} max|err| {max(abs_decode):6.3f}"
    )


def report(label: str, samples: list[Sample], problems: list[str]) -> None:
    print(f"\n-- {label}")
    for concurrency in sorted({s.concurrency for s in samples}):
        subset = [s for s in samples if s.concurrency == concurrency]
        streams = "1 stream at a time" if concurrency == 1 else f"{concurrency} streams at once"
        print(f"  {streams}:")
        for ttft_ms, rate in sorted({(s.ttft_ms, s.rate) for s in subset}):
            cell = [s for s in subset if (s.ttft_ms, s.rate) == (ttft_ms, rate)]
            print(f"    ttft {ttft_ms:4.0f} ms, {rate:3.0f} tok/s  {describe(cell)}")
        print(f"    {'overall':25s}{describe(subset)}")
    print(f"  {'all':29s}{describe(samples)}")
    short = sum(s.short for s in samples)
    if short:
        print(f"  {short} of {len(samples)} answers had fewer tokens than `tokens=` asked for")
    if problems:
        print(f"  {len(problems)} streams did not complete: {sorted(set(problems))[:3]}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=3, help="sequential repetitions per setting")
    parser.add_argument("--batches", type=int, default=1, help="rounds of 8 concurrent streams")
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--skip-thread", action="store_true", help="only the subprocess server")
    args = parser.parse_args()
    print(
        f"model {MODEL} (FastDeploy dialect, 1 token per chunk), {args.tokens} tokens per answer; "
        f"{args.reps} sequential repetitions and {args.batches} round(s) of {CONCURRENT} "
        "concurrent streams per setting"
    )
    print("TTFT err = measured - scripted (ms); decode_tps err = measured / scripted - 1 (%)")
    print("target: TTFT err median < 5 ms, decode_tps within 2%")
    print(
        "TTFT err split (medians): send = t0 -> the simulator has read the request (its TTFT "
        "origin; wall clocks),\n  late = the rest (scheduling slack, writing, reading, parsing)"
    )

    cpu0 = time.process_time()
    wall0 = time.perf_counter()
    with simulator_subprocess() as sim, GcPauses() as pauses:
        samples, problems = run_grid(sim, TTFTS_MS, RATES, args.tokens, args.reps, args.batches)
        images = image_payload(sim, 5)
    cpu = time.process_time() - cpu0
    wall = time.perf_counter() - wall0
    report(
        f"REPORTED: simulator in a separate process (client process CPU {cpu:.1f} s "
        f"over {wall:.0f} s; {pauses.describe()})",
        samples,
        problems,
    )
    text = [s for s in samples if s.concurrency == 1]
    print(
        f"  with one 0.75 MB image (data URL) in the request, 1 stream at a time:\n"
        f"    ttft  200 ms, 100 tok/s  TTFT err ms: median "
        f"{statistics.median(s.ttft_error_ms for s in images):+6.2f}, of which send "
        f"{statistics.median(s.send_ms or 0.0 for s in images):4.2f} "
        f"(text only: send {statistics.median(s.send_ms or 0.0 for s in text):4.2f})"
    )

    if not args.skip_thread:
        rates = tuple(rate for rate in RATES if rate >= 100)
        with simulator_thread() as sim, GcPauses() as pauses:
            samples, problems = run_grid(sim, TTFTS_MS, rates, args.tokens, args.reps, args.batches)
        report(
            "for comparison: SimulatorThread in the client's process (shares its GIL), "
            f"rates {'/'.join(map(str, rates))} tok/s only; {pauses.describe()}",
            samples,
            problems,
        )


if __name__ == "__main__":
    main()
