"""What both servers share and tests read: the request log, counted faults, scripted faults,
and the write times of recent streams."""

from __future__ import annotations

import copy
import threading
from collections import deque
from collections.abc import Iterable
from typing import Any

from .directives import Directives


class SimulatorState:
    """What both servers remember, guarded by a lock because tests read it from another thread."""

    def __init__(self, max_log: int = 10_000, max_streams: int = 2_048) -> None:
        self._lock = threading.Lock()
        self._log: deque[dict[str, Any]] = deque(maxlen=max_log)
        self._streams: deque[dict[str, Any]] = deque(maxlen=max_streams)
        self._next_stream = 1
        self._counters: dict[str, int] = {}
        self._scripted: dict[str, deque[Directives | None]] = {}
        self._next_id = 1

    def record(self, entry: dict[str, Any]) -> dict[str, Any]:
        """Append ``entry`` to the request log (giving it an ``id``) and return it."""
        with self._lock:
            entry["id"] = self._next_id
            self._next_id += 1
            self._log.append(entry)
        return entry

    def update(self, entry: dict[str, Any], **fields: Any) -> None:
        """Change fields of a logged entry."""
        with self._lock:
            entry.update(fields)

    def requests(self, model: str | None = None, server: str | None = None) -> list[dict[str, Any]]:
        """A copy of the request log, oldest first, optionally for one model or server."""
        with self._lock:
            return [
                copy.deepcopy(entry)
                for entry in self._log
                if (model is None or entry.get("model") == model)
                and (server is None or entry.get("server") == server)
            ]

    def record_stream(self, record: dict[str, Any]) -> None:
        """Keep the write times of a finished stream (giving it an ``id``), newest last; the
        oldest are forgotten past ``max_streams``. ``record["chunks"]`` holds flat
        (tokens, scheduled_s, written_s) triples."""
        with self._lock:
            record["id"] = self._next_stream
            self._next_stream += 1
            self._streams.append(record)

    def streams(self, since: int = 0) -> list[dict[str, Any]]:
        """A copy of the stream records whose ``id`` is greater than ``since``, oldest first."""
        with self._lock:
            records = [record for record in self._streams if record["id"] > since]
        return [_with_chunk_list(record) for record in records]

    def reset(self) -> int:
        """Forget logged requests, stream records, counted-fault counters and scripted faults."""
        with self._lock:
            cleared = len(self._log)
            self._log.clear()
            self._streams.clear()
            self._counters.clear()
            self._scripted.clear()
        return cleared

    def seen_before(self, key: str) -> int:
        """How many earlier requests had this key (and count this one)."""
        with self._lock:
            seen = self._counters.get(key, 0)
            self._counters[key] = seen + 1
        return seen

    def script(self, model: str, items: Iterable[Directives | None]) -> int:
        """Queue directives for the next requests to ``model``; returns the queue length."""
        with self._lock:
            queue = self._scripted.setdefault(model, deque())
            queue.extend(items)
            return len(queue)

    def next_scripted(self, model: str) -> Directives | None:
        """The next scripted directives for ``model`` (None when none or a null entry)."""
        with self._lock:
            queue = self._scripted.get(model)
            return queue.popleft() if queue else None

    def scripted(self) -> dict[str, list[dict[str, Any] | None]]:
        """Pending scripted faults per model."""
        with self._lock:
            return {
                model: [item.as_dict() if item else None for item in queue]
                for model, queue in self._scripted.items()
                if queue
            }


def _with_chunk_list(record: dict[str, Any]) -> dict[str, Any]:
    """A copy of a stream record with its flat triples as ``[tokens, scheduled_s, written_s]``."""
    flat = record["chunks"]
    chunks = [[int(flat[i]), flat[i + 1], flat[i + 2]] for i in range(0, len(flat), 3)]
    return {**record, "chunks": chunks}
