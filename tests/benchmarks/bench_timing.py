"""Benchmark: timing fidelity of the client against the simulator's scripted timing.

Default: a concurrency sweep that runs the project's client and AIPerf (NVIDIA's benchmark
client, the reference) alternately against one `python -m inference.simulator` process, every
request scripted by `[[sim: ttft_ms=200, tps=RATE, tokens=100]]`, and prints both side by side:

* ours: `inference.client.complete_with_retries` (one attempt) from a thread pool of N threads
  in this process, as the worker runs it (each thread hands its stream to the process's one
  stream loop and waits), N requests in flight at all times;
* AIPerf (`aiperf profile --concurrency N`, pinned below) from its own virtualenv, `.venv-aiperf`
  at the repository root, created on first use so it never enters the app's dependencies. It
  reads a local word-level tokenizer this script builds (its builtin one downloads a
  vocabulary) and counts tokens from the server's usage; its per-request records
  (`profile_export.jsonl`) give TTFT and output tokens/s per user.

Errors against the script, per request: TTFT error = measured − scripted (ms); decode_tps error
= measured / scripted − 1 (%), with decode_tps = (completion_tokens − 1) / (t_last − t_first)
for both clients. The simulator records when each chunk was due and when its write returned
(`GET /_sim/streams`), so each request is also measured against what the simulator really did
("net"): net TTFT error = measured TTFT − the first text chunk's write time after the request
arrived (its last bytes reached the simulator's machine, by the kernel's receive stamp; what is
left is the request's trip there and the client's own lateness); net decode error
= measured / the rate the simulator really wrote at − 1. "sim late" is the simulator's own
lateness: first write − due (ms, p95) and its written rate against the script (|%|, p95). CPU
% is the share of one core each process used while our client ran (this process / simulator).

    python tests/benchmarks/bench_timing.py [--points 8x100,64x100] [--waves 3] [--no-aiperf]

Points are streams x tok/s (default: 8, 32, 64, 128, 256 x 30, 100, 300; also from
BENCH_TIMING_POINTS), each with waves x streams requests per client (default 3; also from
BENCH_TIMING_WAVES). The default sweep should take about 10 minutes on 2 cores (estimate).

`--grid` runs the earlier fidelity grid instead: sequential requests and 8 at once over TTFT
50/200/800 ms x 30/100/400 tok/s, 200 tokens, with two placements of the simulator:

* subprocess (reported): `python -m inference.simulator` in its own process, so the client
  does not share a GIL with the server's event loop — as with a real model server;
* thread: `SimulatorThread` inside the client's process (as the test suite runs it), on a
  reduced grid, to show what sharing the GIL costs.

The simulator counts TTFT from the moment it has read the request body, the client from just
before it sends the request, so the TTFT error includes the loopback trip.

    python tests/benchmarks/bench_timing.py --grid [--reps 3] [--batches 1] [--tokens 200]
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
import tempfile
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

from inference import stream_loop  # noqa: E402
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

    def __init__(
        self, base_url: str, log: Callable[[], list[dict[str, Any]]], pid: int | None = None
    ) -> None:
        self.base_url = base_url
        self.log = log
        self.pid = pid  # the simulator's process, when it has its own


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
        yield Simulator(url, lambda: _http_log(url), process.pid)
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
            arrivals[match.group(1)] = float(entry.get("arrived_at") or entry["received_at"])
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


def grid_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--grid", action="store_true")
    parser.add_argument("--reps", type=int, default=3, help="sequential repetitions per setting")
    parser.add_argument("--batches", type=int, default=1, help="rounds of 8 concurrent streams")
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--skip-thread", action="store_true", help="only the subprocess server")
    args = parser.parse_args(argv)
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


# --- The concurrency sweep: ours beside AIPerf --------------------------------------------------

AIPERF_PIN = "aiperf==0.13.*"
AIPERF_VENV = REPO / ".venv-aiperf"
SWEEP_POINTS = "8x30,8x100,8x300,32x30,32x100,32x300,64x30,64x100,64x300,128x30,128x100,128x300,256x30,256x100,256x300"  # noqa: E501
SWEEP_TTFT_MS = 200
SWEEP_TOKENS = 100
# Issue 13's bar, up to this many streamed tokens per second in one process.
TARGET_LOAD = 64 * 100
# Run by the AIPerf virtualenv's Python (its dependencies include `tokenizers` and
# `transformers`): a word-level tokenizer, saved where AIPerf's --tokenizer can load it offline.
TOKENIZER_SCRIPT = """
import sys
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast
words = ["[UNK]", "[PAD]", "<s>", "</s>"] + [chr(c) for c in range(33, 127)]
words += ["bench", "sim", "ttft_ms", "tps", "tokens"]
vocab = {word: index for index, word in enumerate(dict.fromkeys(words))}
tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
PreTrainedTokenizerFast(
    tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[PAD]", bos_token="<s>",
    eos_token="</s>",
).save_pretrained(sys.argv[1])
"""


@dataclass(frozen=True)
class Measured:
    """One request as a client measured it, beside what the simulator really did for it."""

    ttft_ms: float
    decode_tps: float
    first_write_ms: float | None = None  # the first text chunk's write, after arrival
    written_tps: float | None = None  # (tokens − 1) / (last write − first write)
    first_late_ms: float | None = None  # the first text chunk's write − when it was due
    send_ms: float | None = None  # ours: t0 → the request reached the simulator (wall clocks)
    read_wait_ms: float | None = None  # ours: how long it then waited for the simulator's read


@dataclass
class ClientRun:
    """One client's requests at one point of the sweep."""

    samples: list[Measured] = dataclasses.field(default_factory=list)
    problems: list[str] = dataclasses.field(default_factory=list)
    unmatched: int = 0  # requests the simulator kept no write times for
    cpu: str = ""
    skipped: str = ""  # why this client did not run


def parse_points(text: str) -> list[tuple[int, float]]:
    """`"8x100,64x30"` → [(8, 100.0), (64, 30.0)]."""
    points = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        match = re.fullmatch(r"(\d+)\s*[x×]\s*(\d+(?:\.\d+)?)", item)
        if match is None or int(match.group(1)) < 1 or float(match.group(2)) <= 0:
            raise argparse.ArgumentTypeError(
                f"bad point {item!r}: expected STREAMSxTOKENS_PER_S, e.g. 64x100"
            )
        points.append((int(match.group(1)), float(match.group(2))))
    if not points:
        raise argparse.ArgumentTypeError("no points given")
    return points


def _sim_get(sim: Simulator, path: str) -> list[dict[str, Any]]:
    root = sim.base_url.rsplit("/v1", 1)[0]
    with urllib.request.urlopen(f"{root}{path}", timeout=60) as response:  # noqa: S310
        return list(json.load(response)["data"])


def _sim_clear(sim: Simulator) -> None:
    """Forget the simulator's request log and stream records (before a measured run)."""
    root = sim.base_url.rsplit("/v1", 1)[0]
    request = urllib.request.Request(f"{root}/_sim/requests", method="DELETE")  # noqa: S310
    with urllib.request.urlopen(request, timeout=60):  # noqa: S310
        pass


def _written(record: dict[str, Any]) -> dict[str, float | None]:
    """What the simulator really did for one stream, from its write-time record."""
    first, last, tokens = record["first_write_s"], record["last_write_s"], record["tokens"]
    if first is None:
        return {}
    written_tps = (tokens - 1) / (last - first) if tokens >= 2 and last > first else None
    return {
        "first_write_ms": 1000 * first,
        "written_tps": written_tps,
        "first_late_ms": 1000 * (first - record["first_scheduled_s"]),
    }


class CpuMeter:
    """Share of one core used by this process and by the simulator over a `with` block."""

    def __init__(self, sim_pid: int | None) -> None:
        self.sim_pid = sim_pid
        self.text = ""

    def __enter__(self) -> CpuMeter:
        self._wall = time.perf_counter()
        self._own = time.process_time()
        self._sim = _cpu_s(self.sim_pid)
        return self

    def __exit__(self, *exc_info: object) -> None:
        wall = time.perf_counter() - self._wall
        own = 100 * (time.process_time() - self._own) / wall
        sim_now, sim_then = _cpu_s(self.sim_pid), self._sim
        sim = (
            f"{100 * (sim_now - sim_then) / wall:.0f}"
            if sim_now is not None and sim_then is not None
            else "?"
        )
        self.text = f"{own:.0f} / {sim}"


def _cpu_s(pid: int | None) -> float | None:
    """user + system CPU seconds of a live process, from /proc (None where there is none)."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_ours(sim: Simulator, streams: int, rate: float, requests: int) -> ClientRun:
    """`requests` requests through our client, `streams` in flight at all times."""
    run = ClientRun()
    config = EndpointConfig(sim.base_url, "", MODEL, "fastdeploy", "none", 600.0, 300.0)
    with ThreadPoolExecutor(streams) as pool:
        # Warm-up: one connection per thread, the imports and the first parse.
        list(pool.map(lambda _n: one_stream(config, 10, 1000, 20), range(streams)))
        _sim_clear(sim)
        with CpuMeter(sim.pid) as cpu:
            outcomes = list(
                pool.map(
                    lambda _n: one_stream(config, SWEEP_TTFT_MS, rate, SWEEP_TOKENS),
                    range(requests),
                )
            )
    run.cpu = cpu.text
    tags, received, read_wait = {}, {}, {}
    for entry in _sim_get(sim, "/_sim/requests"):
        match = TAG_RE.search(entry.get("prompt") or "")
        if match:
            tags[match.group(1)] = entry["id"]
            received[match.group(1)] = float(entry.get("arrived_at") or entry["received_at"])
            read_wait[match.group(1)] = entry.get("read_wait_ms")
    records = {record["request"]: record for record in _sim_get(sim, "/_sim/streams")}
    for outcome in outcomes:
        if isinstance(outcome, str):
            run.problems.append(outcome)
            continue
        record = records.get(tags.get(outcome.tag, -1))
        if record is None:
            run.unmatched += 1
        run.samples.append(
            Measured(
                SWEEP_TTFT_MS + outcome.ttft_error_ms,
                rate * (1 + outcome.decode_error),
                **(_written(record) if record else {}),
                send_ms=(
                    1000 * (received[outcome.tag] - outcome.started_at)
                    if outcome.tag in received
                    else None
                ),
                read_wait_ms=read_wait.get(outcome.tag),
            )
        )
    return run


class AiPerf:
    """AIPerf in its own virtualenv, with a local tokenizer; `unavailable` says why not."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.tokenizer = workdir / "tokenizer"
        self.unavailable = ""
        self.version = ""

    def prepare(self) -> None:
        python = AIPERF_VENV / "bin" / "python"
        marker = AIPERF_VENV / f".installed-{AIPERF_PIN.replace('*', 'x')}"
        try:
            if not marker.exists():
                print(f"installing {AIPERF_PIN} into {AIPERF_VENV} (once) ...", flush=True)
                if not python.exists():
                    _check([sys.executable, "-m", "venv", str(AIPERF_VENV)], "python -m venv")
                _check(
                    [str(python), "-m", "pip", "install", "--quiet", AIPERF_PIN],
                    f"pip install {AIPERF_PIN}",
                )
                marker.touch()
            _check(
                [str(python), "-c", TOKENIZER_SCRIPT, str(self.tokenizer)],
                "building the local tokenizer",
            )
            self.version = (
                _check([str(python), "-m", "pip", "show", "aiperf"], "pip show aiperf")
                .split("Version:", 1)[1]
                .split()[0]
            )
        except RuntimeError as error:
            self.unavailable = str(error)

    def run(self, sim: Simulator, streams: int, rate: float, requests: int) -> ClientRun:
        run = ClientRun()
        if self.unavailable:
            run.skipped = self.unavailable
            return run
        point = self.workdir / f"{streams}x{rate:g}"
        point.mkdir()
        prompt = (
            f"bench aiperf [[sim: ttft_ms={SWEEP_TTFT_MS}, tps={rate:g}, tokens={SWEEP_TOKENS}]]"
        )
        inputs = point / "inputs.jsonl"
        inputs.write_text("".join(json.dumps({"text": prompt}) + "\n" for _ in range(requests)))
        root = sim.base_url.rsplit("/v1", 1)[0]
        command = [
            str(AIPERF_VENV / "bin" / "aiperf"), "profile", "--model", MODEL, "--url", root,
            "--endpoint-type", "chat", "--streaming", "--tokenizer", str(self.tokenizer),
            "--input-file", str(inputs), "--custom-dataset-type", "single_turn",
            "--concurrency", str(streams), "--request-count", str(requests),
            "--warmup-request-count", str(streams), "--use-server-token-count",
            "--artifact-dir", str(point / "artifacts"), "--ui-type", "none",
            "--no-server-metrics", "--random-seed", "1",
        ]  # fmt: skip
        # Not HF_HUB_OFFLINE: with it, AIPerf looks a path up in the hub's cache only.
        env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "VIRTUAL_ENV")}
        _sim_clear(sim)
        # Its start-up, its warm-up wave and the measured waves, with room for a slow machine.
        waves = 1 + requests / streams
        limit = 180 + 20 * waves * (SWEEP_TTFT_MS / 1000 + SWEEP_TOKENS / rate)
        try:
            out = subprocess.run(
                command, capture_output=True, text=True, env=env, cwd=point, timeout=limit
            )
        except subprocess.TimeoutExpired:
            run.skipped = f"aiperf did not finish within {limit:.0f} s"
            return run
        if out.returncode != 0:
            tail = (out.stdout + out.stderr).strip().splitlines()[-5:]
            run.skipped = f"aiperf exited with {out.returncode}: {' | '.join(tail)}"
            return run
        records = {
            record["request_id"]: record
            for record in _sim_get(sim, "/_sim/streams")
            if record["request_id"]
        }
        export = point / "artifacts" / "profile_export.jsonl"
        for line in export.read_text().splitlines():
            row = json.loads(line)
            if (row.get("metadata") or {}).get("benchmark_phase") != "profiling":
                continue  # its warm-up wave
            metrics = row.get("metrics") or {}
            ttft = (metrics.get("time_to_first_token") or {}).get("value")
            decode = (metrics.get("output_token_throughput_per_user") or {}).get("value")
            if row.get("error") or ttft is None or decode is None:
                error = row.get("error") or {}
                run.problems.append(
                    str(error.get("message") or error)
                    if error
                    else "no time_to_first_token or output_token_throughput_per_user"
                )
                continue
            record = records.get((row.get("metadata") or {}).get("x_request_id"))
            if record is None:
                run.unmatched += 1
            run.samples.append(
                Measured(float(ttft), float(decode), **(_written(record) if record else {}))
            )
        return run


def _check(command: list[str], what: str) -> str:
    out = subprocess.run(command, capture_output=True, text=True)
    if out.returncode != 0:
        tail = (out.stdout + out.stderr).strip().splitlines()[-3:]
        raise RuntimeError(f"{what} failed (exit {out.returncode}): {' | '.join(tail)}")
    return out.stdout


def _signed(values: Sequence[float], unit: str, digits: int) -> str:
    if not values:
        return "–"
    return f"{statistics.median(values):+.{digits}f} / {percentile(values, 95):+.{digits}f}{unit}"


def summarize(run: ClientRun, rate: float) -> dict[str, Any]:
    """The run's errors against the script and net of the simulator's own lateness."""
    samples = run.samples
    ttft = [m.ttft_ms - SWEEP_TTFT_MS for m in samples]
    decode = [100 * (m.decode_tps / rate - 1) for m in samples]
    net_ttft = [m.ttft_ms - m.first_write_ms for m in samples if m.first_write_ms is not None]
    net_decode = [100 * abs(m.decode_tps / m.written_tps - 1) for m in samples if m.written_tps]
    late = [m.first_late_ms for m in samples if m.first_late_ms is not None]
    written = [100 * abs(m.written_tps / rate - 1) for m in samples if m.written_tps]
    return {
        "n": len(samples),
        "ttft": _signed(ttft, "", 1) + (f" (max {max(ttft):+.0f})" if ttft else ""),
        "decode": (
            f"{statistics.median(decode):+.1f}% / {percentile([abs(d) for d in decode], 95):.1f}%"
            if decode
            else "–"
        ),
        "net": (
            f"{percentile(net_ttft, 95):+.1f} ms / {percentile(net_decode, 95):.2f}%"
            if net_ttft and net_decode
            else "–"
        ),
        "net_ttft_p95": percentile(net_ttft, 95) if net_ttft else None,
        "net_decode_p95": percentile(net_decode, 95) if net_decode else None,
        "ttft_abs_p95": percentile([abs(t) for t in ttft], 95) if ttft else None,
        "decode_abs_p95": percentile([abs(d) for d in decode], 95) if decode else None,
        "late": late,
        "written": written,
    }


def verdict(streams: int, rate: float, ours: dict[str, Any], theirs: dict[str, Any]) -> str:
    """Issue 13's bar, for points up to 64 x 100: net p95 under 10 ms and 1%, and errors no
    larger than AIPerf's (p95 of |error|)."""
    if streams * rate > TARGET_LOAD:
        return "beyond"
    if ours["net_ttft_p95"] is None or ours["net_decode_p95"] is None:
        return "?"
    misses = []
    if ours["net_ttft_p95"] >= 10:
        misses.append("net TTFT")
    if ours["net_decode_p95"] >= 1:
        misses.append("net decode")
    for key, name in (("ttft_abs_p95", "TTFT"), ("decode_abs_p95", "decode")):
        if theirs[key] is not None and ours[key] > theirs[key]:
            misses.append(f"{name} > AIPerf")
    return "ok" if not misses else "MISS: " + ", ".join(misses)


def sweep_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description="Timing sweep: our client beside AIPerf.")
    parser.add_argument(
        "--points",
        type=parse_points,
        default=parse_points(os.environ.get("BENCH_TIMING_POINTS") or SWEEP_POINTS),
        help="streams x tok/s, comma-separated (default: BENCH_TIMING_POINTS or the full sweep)",
    )
    parser.add_argument(
        "--waves",
        type=int,
        default=int(os.environ.get("BENCH_TIMING_WAVES") or 3),
        help="requests per point and client = waves x streams (default: BENCH_TIMING_WAVES or 3)",
    )
    parser.add_argument("--no-aiperf", action="store_true", help="run our client only")
    args = parser.parse_args(argv)
    if args.waves < 1:
        parser.error("--waves must be >= 1")
    print(
        f"model {MODEL} (FastDeploy dialect, 1 token per chunk); each request scripted "
        f"ttft_ms={SWEEP_TTFT_MS}, {SWEEP_TOKENS} tokens; {args.waves} x streams requests per "
        "point and client; one simulator process for the whole sweep",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="bench-timing-") as workdir:
        aiperf = AiPerf(Path(workdir))
        if args.no_aiperf:
            aiperf.unavailable = "not run (--no-aiperf)"
        else:
            aiperf.prepare()
        if aiperf.unavailable:
            print(f"AIPerf: {aiperf.unavailable}; our client only", flush=True)
        else:
            print(f"AIPerf {aiperf.version} from {AIPERF_VENV}", flush=True)
        rows = []
        with simulator_subprocess() as sim, GcPauses() as pauses:
            # What is loaded by now stays, as in a worker once it is ready (inference/tasks.py):
            # it leaves the collector's passes, which are rarer than gc's defaults.
            stream_loop.settle_memory()
            sys.setswitchinterval(0.001)  # as a worker does (WORKER_SWITCH_INTERVAL_MS)
            for index, (streams, rate) in enumerate(args.points):
                requests = args.waves * streams
                # Alternate which client goes first, so neither always meets a warmer machine.
                if index % 2 == 0:
                    ours = run_ours(sim, streams, rate, requests)
                    theirs = aiperf.run(sim, streams, rate, requests)
                else:
                    theirs = aiperf.run(sim, streams, rate, requests)
                    ours = run_ours(sim, streams, rate, requests)
                row = (streams, rate, ours, theirs)
                rows.append(row)
                print(f"  done {streams} x {rate:g}: {_problems(ours, theirs)}", flush=True)
    print_sweep(rows, pauses)


def _problems(ours: ClientRun, theirs: ClientRun) -> str:
    notes = []
    for name, run in (("ours", ours), ("AIPerf", theirs)):
        notes.append(f"{name} {len(run.samples)} measured")
        if run.problems:
            notes.append(f"{len(run.problems)} failed ({sorted(set(run.problems))[:2]})")
        if run.unmatched:
            notes.append(f"{run.unmatched} without simulator write times")
        if run.skipped:
            notes.append(f"skipped: {run.skipped}")
    return "; ".join(notes)


def print_sweep(rows: list[tuple[int, float, ClientRun, ClientRun]], pauses: GcPauses) -> None:
    print(
        "\nErrors against the script: TTFT ms median / p95 (max); decode_tps median / p95 of "
        "|error|.\nnet = against what the simulator really wrote: TTFT p95 / decode p95 of "
        "|error|. sim late = the\nsimulator's first write after due (ms p95) / its written "
        "rate vs the script (|%| p95, all requests).\nCPU % of one core while the client ran: "
        "this process / the simulator.\ntarget (up to 64 x 100): net "
        "under 10 ms / 1% and p95 |error| no larger than AIPerf's.\n"
    )
    header = (
        "| streams × tok/s | gradebench TTFT error median / p95 | AIPerf "
        "| gradebench decode_tps error median / p95 abs | AIPerf "
        "| gradebench net TTFT p95 / decode p95 | AIPerf net "
        "| sim late TTFT p95 / decode p95 | CPU % ours / sim | target |"
    )
    print(header)
    print("|" + "---|" * header.count(" | ") + "---|")
    for streams, rate, ours, theirs in rows:
        a, b = summarize(ours, rate), summarize(theirs, rate)
        late = a["late"] + b["late"]
        written = a["written"] + b["written"]
        sim = (
            f"{percentile(late, 95):+.1f} ms / {percentile(written, 95):.2f}%"
            if late and written
            else "–"
        )
        print(
            f"| {streams} × {rate:g} | {a['ttft']} ms | {b['ttft']} ms | {a['decode']} "
            f"| {b['decode']} | {a['net']} | {b['net']} | {sim} | {ours.cpu} "
            f"| {verdict(streams, rate, a, b)} |"
        )
    print(
        "\nOurs, net TTFT taken apart (ms, median / p95): the request's trip = t0 → its last "
        "bytes reached\nthe simulator (the kernel's receive stamp: our sending and the "
        "loopback), read lateness =\nfirst text chunk's write → our read (the client's own "
        "share). Not in net: the simulator's\nread wait = how long the request then waited "
        "for the simulator's loop to read it (its own\nlateness; its script counts from the "
        "arrival).\n"
    )
    print(
        "| streams × tok/s | request trip | read lateness | simulator's read wait |\n"
        "|---|---|---|---|"
    )
    for streams, rate, ours, _ in rows:
        pairs = [
            (m.send_ms, m.ttft_ms - m.first_write_ms - m.send_ms)
            for m in ours.samples
            if m.send_ms is not None and m.first_write_ms is not None
        ]
        trip, reading = [p[0] for p in pairs], [p[1] for p in pairs]
        waits = [m.read_wait_ms for m in ours.samples if m.read_wait_ms is not None]
        print(
            f"| {streams} × {rate:g} | {_signed(trip, '', 1)} | {_signed(reading, '', 1)} "
            f"| {_signed(waits, '', 1)} |"
        )
    skipped = {run.skipped for *_, ours, theirs in rows for run in (ours, theirs) if run.skipped}
    for reason in sorted(skipped):
        print(f"\nnot run: {reason}")
    print(f"\nthis process: {pauses.describe()}")


def main() -> None:
    if "--grid" in sys.argv[1:]:
        grid_main(sys.argv[1:])
    else:
        sweep_main(sys.argv[1:])


if __name__ == "__main__":
    main()
