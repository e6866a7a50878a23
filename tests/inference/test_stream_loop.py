"""One event loop per process carries every stream (`inference.stream_loop`): many streams at
once are each timed as the simulator really wrote them, a stream that fails leaves the loop
serving the others, the lag monitor sees a loop that runs late, a forked child gets a loop
of its own; and the connections it uses send a request in one write and are reused."""

from __future__ import annotations

import asyncio
import os
import statistics
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from inference import http_stream, scheduling_lag, stream_loop
from inference.client import EndpointConfig, StreamResult, build_request, complete_with_retries
from inference.simulator import SimulatorThread

ERNIE = "baidu/ERNIE-4.5-0.3B-Paddle"
STREAMS = 16
TTFT_MS, RATE, TOKENS = 150, 40, 12


def config(simulator: SimulatorThread) -> EndpointConfig:
    return EndpointConfig(simulator.base_url(ERNIE), "", ERNIE, "fastdeploy", "none", 30, 30)


def ask(
    endpoint: EndpointConfig, tag: str, heartbeat: Any = None
) -> tuple[StreamResult, int] | BaseException:
    prompt = f"bench {tag} [[sim: ttft_ms={TTFT_MS}, tps={RATE}, tokens={TOKENS}]]"
    request = build_request(endpoint, [{"role": "user", "content": prompt}], {"max_tokens": 50})
    try:
        return complete_with_retries(
            endpoint,
            request,
            max_attempts=1,
            backoff_base_s=0.01,
            backoff_cap_s=0.01,
            heartbeat=heartbeat,
        )
    except BaseException as error:  # returned, so one thread's failure shows in the test
        return error


def stream_records(simulator: SimulatorThread) -> dict[str, dict[str, Any]]:
    """The simulator's write-time record of each stream, by the tag in its prompt."""
    prompts = {entry["id"]: entry.get("prompt") or "" for entry in simulator.requests()}
    records = {}
    for record in simulator.state.streams():
        words = prompts.get(record["request"], "").split()
        if len(words) > 1 and words[0] == "bench":
            records[words[1]] = record
    return records


def test_concurrent_streams_on_one_loop_are_timed_as_the_simulator_wrote_them(
    simulator: SimulatorThread,
) -> None:
    endpoint = config(simulator)
    tags = [uuid.uuid4().hex for _ in range(STREAMS)]
    with ThreadPoolExecutor(STREAMS) as pool:
        # First with a connection each, as a worker that has been running has them.
        list(pool.map(lambda _n: ask(endpoint, uuid.uuid4().hex), range(STREAMS)))
        threads_before = threading.active_count()
        started = time.perf_counter()
        outcomes = list(pool.map(lambda tag: ask(endpoint, tag), tags))
        wall = time.perf_counter() - started
        threads_after = threading.active_count()
    records = stream_records(simulator)

    one_stream_s = TTFT_MS / 1000 + (TOKENS - 1) / RATE
    assert wall < 2.5 * one_stream_s, "the streams did not run at the same time"
    # The pool's threads waited; the loop's thread, already there, read every stream.
    assert threads_after == threads_before
    ttft_excess, span_error = [], []
    for tag, outcome in zip(tags, outcomes, strict=True):
        assert isinstance(outcome, tuple), outcome
        result, attempts = outcome
        assert attempts == 1 and result.content and result.scheduling_lag_ms is not None
        written = records[tag]
        timings = result.timings
        assert timings.t_first_token is not None and timings.t_last_token is not None
        # Read after it was written (the request's trip comes on top), never before.
        ttft_excess.append(1000 * (timings.t_first_token - written["first_write_s"]))
        measured_span = timings.t_last_token - timings.t_first_token
        written_span = written["last_write_s"] - written["first_write_s"]
        span_error.append(abs(measured_span / written_span - 1))
    assert min(ttft_excess) > -1.0
    # Generous for a busy test machine; reading chunks late or all at once misses by hundreds
    # of milliseconds and 100%.
    assert statistics.median(ttft_excess) < 40.0
    assert statistics.median(span_error) < 0.1


class Boom(Exception):
    pass


def test_a_stream_that_raises_leaves_the_loop_serving_the_others(
    simulator: SimulatorThread,
) -> None:
    endpoint = config(simulator)
    loop = stream_loop.get_loop()

    def explode() -> None:
        raise Boom("heartbeat failed")

    with ThreadPoolExecutor(4) as pool:
        failing = pool.submit(ask, endpoint, uuid.uuid4().hex, explode)
        others = [pool.submit(ask, endpoint, uuid.uuid4().hex) for _ in range(3)]
        assert isinstance(failing.result(), Boom)  # raised in the caller, as it was
        assert all(isinstance(other.result(), tuple) for other in others)

    after = ask(endpoint, uuid.uuid4().hex)
    assert isinstance(after, tuple) and after[0].content
    assert stream_loop.get_loop() is loop and loop.is_running()


def test_the_lag_monitor_sees_a_loop_held_up_by_other_work() -> None:
    async def stream_beside_a_blocking_step() -> float:
        watch = scheduling_lag.watch()
        await asyncio.sleep(0.02)
        time.sleep(0.08)  # what a slow step of another stream does to the loop
        await asyncio.sleep(0.02)
        return watch.stop()

    async def quiet_stream() -> float:
        watch = scheduling_lag.watch()
        await asyncio.sleep(0.05)
        return watch.stop()

    assert stream_loop.run(stream_beside_a_blocking_step()) >= 60.0
    assert stream_loop.run(quiet_stream()) < 60.0


def test_running_on_the_loop_from_the_loop_itself_is_refused() -> None:
    async def nested() -> None:
        stream_loop.run(asyncio.sleep(0))

    with pytest.raises(RuntimeError, match="await instead"):
        stream_loop.run(nested())


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_runs_its_streams_on_a_loop_of_its_own() -> None:
    async def loop_thread() -> str:
        return f"{os.getpid()} {threading.current_thread().name} {id(asyncio.get_running_loop())}"

    parent = stream_loop.run(loop_thread())
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, and leave without running the parent's cleanup
        try:
            os.write(write_end, stream_loop.run(loop_thread()).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    child = os.read(read_end, 200).decode()
    os.close(read_end)
    os.waitpid(pid, 0)
    child_pid, child_thread, _ = child.split()
    assert child_pid == str(pid) and child_thread == "stream-loop"
    assert stream_loop.run(loop_thread()) == parent  # the parent's loop is untouched


def test_a_requests_headers_and_body_leave_in_one_write(
    simulator: SimulatorThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With many streams on the loop, a body written after its headers left a loop iteration
    later; the server, waiting for the body, started late while t0 had been taken."""
    writes: list[bytes] = []
    connection_made = http_stream._Connection.connection_made

    def recorded(self: http_stream._Connection, transport: Any) -> None:
        write = transport.write

        def recording(data: bytes) -> None:
            writes.append(bytes(data))
            write(data)

        transport.write = recording
        connection_made(self, transport)

    monkeypatch.setattr(http_stream._Connection, "connection_made", recorded)
    # An endpoint no other test used, so that its request opens a connection.
    endpoint = EndpointConfig(
        simulator.base_url(ERNIE), "one-write-key", ERNIE, "fastdeploy", "none", 30, 30
    )
    outcome = ask(endpoint, "one-write")
    assert isinstance(outcome, tuple)
    assert len(writes) == 1
    assert writes[0].startswith(b"POST /v1/chat/completions HTTP/1.1\r\n")
    assert writes[0].endswith(b'"stream_options":{"include_usage":true},"max_tokens":50}')


def test_an_idle_connection_the_server_closed_is_seen_as_readable() -> None:
    """How the pool tells a dead keep-alive connection from a live one (`_readable`)."""
    import socket

    from inference.http_stream import _readable

    ours, server = socket.socketpair()
    try:
        assert not _readable(ours)
        server.close()  # the server dropped the idle connection
        assert _readable(ours)
    finally:
        ours.close()
    assert _readable(ours)  # closed here: never reused either


def test_sequential_streams_reuse_one_connection(
    simulator: SimulatorThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The end of the body after `[DONE]` is read, so the connection goes back to the pool: a
    new connection for every request cost the loop more than the whole stream."""
    connects: list[str] = []
    connection_made = http_stream._Connection.connection_made

    def counted(self: http_stream._Connection, transport: Any) -> None:
        connects.append(transport.get_extra_info("peername")[0])
        connection_made(self, transport)

    monkeypatch.setattr(http_stream._Connection, "connection_made", counted)
    # An endpoint no other test used, so that its pool starts with no connection.
    endpoint = EndpointConfig(
        simulator.base_url(ERNIE), "reuse-key", ERNIE, "fastdeploy", "none", 30, 29
    )
    for n in range(4):
        outcome = ask(endpoint, f"reuse-{n}")
        assert isinstance(outcome, tuple) and outcome[0].content
    assert connects == ["127.0.0.1"]
