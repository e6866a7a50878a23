"""Running the servers: both on the running event loop (``start_servers``), in the foreground
until SIGINT or SIGTERM (``run``, behind ``python -m inference.simulator`` and
``manage.py simulate_models``, with the options of ``add_arguments``), or in a background
thread for tests (``SimulatorThread``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Self

from aiohttp import web, web_protocol, web_server

from .. import stream_loop
from .directives import Directives
from .model_server import ModelServer
from .profiles import Dialect, ModelProfile, load_profiles
from .state import SimulatorState


def _url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/v1"


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=512)


@dataclasses.dataclass
class RunningSimulator:
    """Both servers, started; ``await close()`` stops them."""

    fastdeploy_url: str
    vllm_url: str
    profiles: dict[str, ModelProfile]
    state: SimulatorState
    runners: list[web.AppRunner]

    def models(self, dialect: Dialect) -> list[str]:
        """Model names served by ``dialect``'s server."""
        return [name for name, p in self.profiles.items() if p.dialect == dialect]

    def base_url(self, model: str) -> str:
        """The ``/v1`` base URL of the server that serves ``model``."""
        dialect = self.profiles[model].dialect
        return self.fastdeploy_url if dialect == "fastdeploy" else self.vllm_url

    async def close(self) -> None:
        """Stop both servers; streams still running are cancelled."""
        await asyncio.gather(*(runner.cleanup() for runner in self.runners))
        self.runners.clear()


# The kernel's receive time of each read (Linux; `socket(7)` SO_TIMESTAMPNS), as a control
# message beside the data: a request then counts from when its bytes reached this machine, not
# from when this busy loop got round to reading them.
# Python names the option on few platforms; Linux's value is 35, except on SPARC and PA-RISC.
_SO_TIMESTAMPNS = getattr(
    socket,
    "SO_TIMESTAMPNS",
    35 if sys.platform == "linux" and os.uname().machine[:5] not in ("sparc", "paris") else None,
)
_STAMP = struct.Struct("@qq")  # struct timespec
_STAMP_SPACE = socket.CMSG_SPACE(_STAMP.size) if hasattr(socket, "CMSG_SPACE") else 0


class _StampingSocket(socket.socket):
    """A connected socket whose `recv` also takes the kernel's receive stamp of what it read.

    The event loop's transport reads with `recv`; this class is put on the transport's socket
    (same layout, so `__class__` can be switched) and keeps the newest stamp, as wall-clock
    seconds, in `_kernel_stamps` under the socket's file descriptor.
    """

    __slots__ = ()

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        data, ancillary, _, _ = self.recvmsg(bufsize, _STAMP_SPACE, flags)
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS:
                seconds, nanoseconds = _STAMP.unpack_from(payload)
                _kernel_stamps[self.fileno()] = seconds + nanoseconds / 1e9
        return data


_kernel_stamps: dict[int, float] = {}


def _stamp_receives(transport: asyncio.BaseTransport) -> int:
    """Switch `transport`'s socket to `_StampingSocket` and return its file descriptor; -1 where
    that cannot be done (not Linux, another event loop's transport): reads are then stamped
    when the loop handles them."""
    sock = getattr(transport, "_sock", None)  # asyncio's selector transport keeps it there
    if _SO_TIMESTAMPNS is None or type(sock) is not socket.socket:
        return -1
    try:
        sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
        sock.__class__ = _StampingSocket
    except (OSError, TypeError):
        return -1
    return sock.fileno()


class _StampedHandler(web_protocol.RequestHandler):
    """aiohttp's connection handler, noting when each read from the client arrived.

    A request's scripted TTFT counts from when the read that completed it arrived (`read_at`,
    loop time), not from when its handler first got the loop: 64 requests arriving together
    are handled one after another (about half a millisecond each), and the last handler started
    tens of milliseconds late, a lateness every client measured as its own. Where the kernel
    stamps receives, `read_at` is the kernel's stamp, so the time a request waited for this
    loop to read it (while it wrote other streams' chunks) is not charged to the client either;
    `read_wait` is that wait (seconds).
    """

    __slots__ = ("_stamped_fd", "read_at", "read_wait")

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._stamped_fd = _stamp_receives(transport)
        super().connection_made(transport)

    def connection_lost(self, exc: BaseException | None) -> None:
        _kernel_stamps.pop(self._stamped_fd, None)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if data:  # aiohttp calls it with nothing too, to go on parsing what it holds
            now = self._loop.time()
            stamp = _kernel_stamps.pop(self._stamped_fd, None)
            # The stamp is wall-clock time; the loop's clock is monotonic.
            wait = max(0.0, time.time() - stamp) if stamp is not None else 0.0
            self.read_at, self.read_wait = now - wait, wait
        super().data_received(data)


class _StampedServer(web_server.Server):
    __slots__ = ()

    def __call__(self) -> web_protocol.RequestHandler:
        return _StampedHandler(self, loop=self._loop, **self._kwargs)


class _StampedRunner(web.AppRunner):
    async def _make_server(self) -> web_server.Server:
        server = await super()._make_server()
        server.__class__ = _StampedServer
        return server


async def start_servers(
    *,
    host: str = "127.0.0.1",
    fastdeploy_port: int = 8180,
    vllm_port: int = 8000,
    profiles: Mapping[str, ModelProfile] | None = None,
    speed: float = 1.0,
    state: SimulatorState | None = None,
) -> RunningSimulator:
    """Start the FastDeploy-style and vLLM-style servers on the running loop.

    Port 0 picks a free port; the URLs in the result say which.
    """
    if speed <= 0:
        raise ValueError("speed must be > 0")
    profiles = dict(profiles) if profiles is not None else load_profiles()
    state = state or SimulatorState()
    runners: list[web.AppRunner] = []
    urls: dict[Dialect, str] = {}
    try:
        servers: list[tuple[Dialect, int]] = [("fastdeploy", fastdeploy_port), ("vllm", vllm_port)]
        for dialect, port in servers:
            app = ModelServer(dialect, profiles, state, speed).app()
            # Cancel a stream whose client went away, as vLLM aborts such requests; a short
            # shutdown timeout so stopping never waits for a stalled stream.
            runner = _StampedRunner(
                app, handler_cancellation=True, access_log=None, shutdown_timeout=0.5
            )
            await runner.setup()
            runners.append(runner)
            sock = _listen(host, port)
            await web.SockSite(runner, sock).start()
            urls[dialect] = _url(host, sock.getsockname()[1])
    except BaseException:
        for started in reversed(runners):
            await started.cleanup()
        raise
    return RunningSimulator(urls["fastdeploy"], urls["vllm"], profiles, state, runners)


def describe(running: RunningSimulator) -> list[str]:
    """One line per server: dialect, base URL and models."""
    servers: list[tuple[Dialect, str]] = [
        ("fastdeploy", running.fastdeploy_url),
        ("vllm", running.vllm_url),
    ]
    return [
        f"{dialect} {url} models: {', '.join(running.models(dialect))}" for dialect, url in servers
    ]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command-line options of ``python -m inference.simulator`` and
    ``manage.py simulate_models``."""
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument(
        "--fastdeploy-port",
        type=int,
        default=8180,
        help="port of the FastDeploy-style server (default 8180; 0 picks a free port)",
    )
    parser.add_argument(
        "--vllm-port",
        type=int,
        default=8000,
        help="port of the vLLM-style server (default 8000; 0 picks a free port)",
    )
    parser.add_argument(
        "--profiles", metavar="FILE.json", help="JSON file that overrides or adds model profiles"
    )
    parser.add_argument(
        "--speed",
        type=float,
        default=1.0,
        help="speed factor: divides every profile's TTFT and multiplies its token rate",
    )


def run(
    *,
    host: str = "127.0.0.1",
    fastdeploy_port: int = 8180,
    vllm_port: int = 8000,
    profiles: Mapping[str, ModelProfile] | None = None,
    speed: float = 1.0,
    out: Callable[[str], object] = print,
) -> None:
    """Serve both servers until SIGINT or SIGTERM, printing their URLs once bound."""

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            # Not available off the main thread or on Windows; Ctrl-C then raises instead.
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(signum, stop.set)
        running = await start_servers(
            host=host,
            fastdeploy_port=fastdeploy_port,
            vllm_port=vllm_port,
            profiles=profiles,
            speed=speed,
        )
        # A full pass of the garbage collector stops the loop: requests are then read late
        # and every client measures that as its own TTFT (`bench_timing.py`, 64 x 100: net
        # p95 15.6 ms before, 8.5-11.7 ms with this). The request log is bounded.
        stream_loop.settle_memory()
        try:
            for line in describe(running):
                out(line)
            await stop.wait()
        finally:
            await running.close()

    asyncio.run(serve())


class SimulatorThread:
    """Both servers on ephemeral ports, in a background thread with its own event loop.

    Example::

        with SimulatorThread(speed=10) as sim:
            url = sim.base_url("Qwen/Qwen2.5-VL-32B-Instruct")  # http://127.0.0.1:PORT/v1
            client = openai.OpenAI(base_url=url, api_key="unused")
            ...
            sim.requests()  # what the client really sent
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        fastdeploy_port: int = 0,
        vllm_port: int = 0,
        profiles: Mapping[str, ModelProfile] | None = None,
        speed: float = 1.0,
    ) -> None:
        self.host = host
        self.ports = (fastdeploy_port, vllm_port)
        self.profiles = dict(profiles) if profiles is not None else load_profiles()
        self.speed = speed
        self.state = SimulatorState()
        self._running: RunningSimulator | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None

    def start(self, timeout: float = 10.0) -> Self:
        """Start the servers and wait until both listen."""
        if self._thread is not None:
            raise RuntimeError("simulator already started")
        self._thread = threading.Thread(target=self._run, name="gradebench-simulator", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("simulator did not start in time")
        if self._error is not None:
            raise self._error
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the servers and the thread."""
        if self._thread is None:
            return
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stop.set)
        self._thread.join(timeout)
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def running(self) -> RunningSimulator:
        """The started servers (raises if not started)."""
        if self._running is None:
            raise RuntimeError("simulator not started")
        return self._running

    @property
    def fastdeploy_url(self) -> str:
        """Base URL (ending in ``/v1``) of the FastDeploy-style server."""
        return self.running.fastdeploy_url

    @property
    def vllm_url(self) -> str:
        """Base URL (ending in ``/v1``) of the vLLM-style server."""
        return self.running.vllm_url

    def base_url(self, model: str) -> str:
        """Base URL of the server that serves ``model``."""
        return self.running.base_url(model)

    def requests(self, model: str | None = None) -> list[dict[str, Any]]:
        """The request log (a copy), optionally for one model."""
        return self.state.requests(model)

    def reset(self) -> None:
        """Clear the request log, counted-fault counters and scripted faults."""
        self.state.reset()

    def script_faults(self, model: str, faults: Iterable[object]) -> None:
        """Script the next requests of ``model`` (see ``POST /_sim/faults``)."""
        if model not in self.profiles:
            raise KeyError(model)
        self.state.script(model, [Directives.from_script(item) for item in faults])

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        finally:
            loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        try:
            self._running = await start_servers(
                host=self.host,
                fastdeploy_port=self.ports[0],
                vllm_port=self.ports[1],
                profiles=self.profiles,
                speed=self.speed,
                state=self.state,
            )
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await self._running.close()
