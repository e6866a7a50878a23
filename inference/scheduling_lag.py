"""How late this process runs its threads while they time streams (DESIGN §5).

A chunk is timestamped when the thread reading it gets to run. When the process is short of CPU,
or of the interpreter lock that every stream of a thread-pool worker shares, that thread runs
late and the timing is late by as much, silently. So one monitor thread per process sleeps
`INTERVAL_S` at a time while any stream is open and measures how late it wakes up: a reading
thread woken by its socket at the same moment waits about as long for its turn. Each stream
keeps the worst lateness seen while it was open (`Watch.stop`), and the worker marks a
generation whose worst lateness passed `TIMING_LAG_THRESHOLD_MS` as degraded.

5 ms: a tenth of the smallest time between two tokens worth timing (200 tok/s), and as often as
the interpreter switches threads by default, so a monitor that waited for the lock through a
whole switch interval shows it. It costs a few microseconds per wake-up, only while streaming.
"""

from __future__ import annotations

import os
import threading
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
        self._condition = threading.Condition()
        self._watches: set[Watch] = set()
        self._due: float | None = None  # when the monitor should wake next, while it sleeps
        self._pid = 0

    def watch(self) -> Watch:
        watch = Watch(self)
        with self._condition:
            if self._pid != os.getpid():  # first use, or a child forked from a process with one
                self._pid = os.getpid()
                threading.Thread(target=self._run, name="scheduling-lag", daemon=True).start()
            self._watches.add(watch)
            self._condition.notify()
        return watch

    def release(self, watch: Watch) -> float:
        with self._condition:
            self._watches.discard(watch)
        # A monitor still waiting for its turn now is late by this much already.
        due = self._due
        if due is not None:
            watch.worst_s = max(watch.worst_s, time.perf_counter() - due)
        return watch.worst_s

    def _run(self) -> None:
        perf_counter, sleep = time.perf_counter, time.sleep
        while True:
            with self._condition:
                while not self._watches:
                    self._due = None
                    self._condition.wait()
                watches = tuple(self._watches)
            due = perf_counter() + INTERVAL_S
            self._due = due
            sleep(INTERVAL_S)
            lag = perf_counter() - due
            for watch in watches:
                if lag > watch.worst_s:
                    watch.worst_s = lag


_monitor = _Monitor()


def watch() -> Watch:
    """Start watching this process's scheduling lag for one stream; call `stop()` at its end."""
    return _monitor.watch()
