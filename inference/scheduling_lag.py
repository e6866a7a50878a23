"""How late this process's stream loop runs while it times streams (DESIGN §5).

Every stream of a worker process is read by one event loop (`stream_loop`), and a chunk is
timestamped when the loop gets to it. When the loop is busy with other streams' chunks, or the
process is short of CPU, or another thread (a task storing its answer, the lease keeper) holds
the interpreter lock, the loop gets there late and the timing is late by as much, silently. So
while any stream is open, a task on the same loop sleeps `INTERVAL_S` at a time and measures how
late it wakes: a stream whose data arrived at the same moment waited about as long for its turn.
Each stream keeps the worst lateness seen while it was open (`Watch.stop`), and the worker marks
a generation whose worst lateness passed `TIMING_LAG_THRESHOLD_MS` as degraded.

5 ms: a tenth of the smallest time between two tokens worth timing (200 tok/s), and as often as
the interpreter switches threads by default, so a loop that waited for the lock through a whole
switch interval shows it. It costs a few microseconds per wake-up, only while streaming. (The
loop's timers run on a millisecond clock, so an idle loop shows up to about 1 ms.)

Watches are started and stopped on the stream loop only, so they need no lock.
"""

from __future__ import annotations

import asyncio
import time

INTERVAL_S = 0.005


class Watch:
    """One stream's view of the monitor: the worst lateness seen since it started."""

    __slots__ = ("_monitor", "_result", "worst_s")

    def __init__(self, monitor: _Monitor) -> None:
        self._monitor = monitor
        self._result: float | None = None
        self.worst_s = 0.0

    def stop(self) -> float:
        """Stop watching; the worst lateness seen, in milliseconds (the same on every call)."""
        if self._result is None:
            self._result = round(1000.0 * self._monitor.release(self), 3)
        return self._result


class _Monitor:
    def __init__(self) -> None:
        self._watches: set[Watch] = set()
        self._due: float | None = None  # when the monitor should wake next, while it sleeps
        self._task: asyncio.Task[None] | None = None

    def watch(self) -> Watch:
        watch = Watch(self)
        self._watches.add(watch)
        loop = asyncio.get_running_loop()
        task = self._task
        # None yet, ended with the last watch, or left behind on a parent's loop by a fork.
        if task is None or task.done() or task.get_loop() is not loop:
            self._task = loop.create_task(self._run(), name="scheduling-lag")
        return watch

    def release(self, watch: Watch) -> float:
        self._watches.discard(watch)
        # A monitor still waiting for its turn now is late by this much already.
        due = self._due
        if due is not None:
            watch.worst_s = max(watch.worst_s, time.perf_counter() - due)
        return watch.worst_s

    async def _run(self) -> None:
        perf_counter, sleep = time.perf_counter, asyncio.sleep
        try:
            while self._watches:
                watches = tuple(self._watches)
                due = perf_counter() + INTERVAL_S
                self._due = due
                await sleep(INTERVAL_S)
                lag = perf_counter() - due
                for watch in watches:
                    if lag > watch.worst_s:
                        watch.worst_s = lag
        finally:
            self._due = None


_monitor = _Monitor()


def watch() -> Watch:
    """Start watching the loop's lateness for one stream; call `stop()` at its end.

    Call it from a coroutine on the stream loop."""
    return _monitor.watch()
