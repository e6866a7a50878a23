"""The one asyncio event loop per process that carries every model stream (DESIGN §5).

A worker's task threads (Celery's threads pool) do not read their streams themselves: each
hands its stream to this loop as a coroutine and waits for the answer (`run`). Timing is then
done in one place, by one thread that only reads sockets, parses chunks and takes timestamps,
instead of by up to `CELERY_WORKER_CONCURRENCY` threads taking turns at the interpreter lock:
with threads, a chunk was read when its thread next got the lock (up to a switch interval per
waiting thread later); on the loop, it is read when the loop gets to it, and the loop's own
lateness is what `scheduling_lag` watches. Measured with `bench_timing.py` (README, "Timing at
load").

The loop runs in a daemon thread, started on first use. A process forked from one that had a
loop (Celery's prefork pool, a test worker) starts its own: the parent's thread does not exist
in the child, nor do the connections its clients held.
"""

from __future__ import annotations

import asyncio
import gc
import os
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

# A full pass of the garbage collector stops every thread, this loop's included, and a process
# streaming 64 answers allocates fast enough for several a minute with gc's defaults (700, 10,
# 10): each pause is read as lateness by every stream in flight. These make young passes rarer
# (each still short) and full ones about a hundred times rarer. `bench_timing.py`: a sweep's
# client process saw 4 full passes of up to 12 ms with gc's defaults, none with these.
GC_THRESHOLDS = (20_000, 50, 100)


def settle_memory() -> None:
    """Call once a streaming process has loaded what it keeps (a worker once ready, the
    simulator once serving): what is loaded leaves the collector's passes (`gc.freeze`) and
    the thresholds become `GC_THRESHOLDS`."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


class _StreamLoop:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pid = 0

    def get(self) -> asyncio.AbstractEventLoop:
        """This process's loop, started if it is not running yet."""
        loop = self._loop
        if loop is not None and self._pid == os.getpid():
            return loop
        with self._lock:
            if self._loop is None or self._pid != os.getpid():
                ready = threading.Event()
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=self._run, args=(loop, ready), name="stream-loop", daemon=True
                )
                thread.start()
                ready.wait()
                self._loop, self._thread, self._pid = loop, thread, os.getpid()
            return self._loop

    @staticmethod
    def _run(loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
        asyncio.set_event_loop(loop)
        loop.call_soon(ready.set)
        loop.run_forever()

    def in_loop_thread(self) -> bool:
        return self._thread is threading.current_thread() and self._pid == os.getpid()


_stream_loop = _StreamLoop()


def get_loop() -> asyncio.AbstractEventLoop:
    """The process's stream loop (started on first use)."""
    return _stream_loop.get()


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run `coroutine` on the process's stream loop and wait for its result or its exception.

    Called from any thread but the loop's own (a coroutine already on the loop awaits instead).
    If the waiting thread is interrupted, the coroutine is cancelled, so its stream is closed.
    """
    if _stream_loop.in_loop_thread():
        coroutine.close()
        raise RuntimeError("stream_loop.run called from the stream loop itself; await instead")
    future = asyncio.run_coroutine_threadsafe(coroutine, get_loop())
    try:
        return future.result()
    except BaseException:
        future.cancel()
        raise
