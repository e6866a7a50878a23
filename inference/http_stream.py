"""HTTP/1.1 for the one request that streams: a POST whose answer is read as it arrives.

Why the chat stream no longer goes through httpx (the `openai` package's HTTP client): every
stream of a worker process is read by one event loop (`stream_loop`), and at 64 streams x 100
tok/s that loop spent about three quarters of a core, most of it in httpx, httpcore and h11 per
chunk (a chain of coroutines per read, h11's pure-Python parser, anyio's stream wrappers), so
chunks were read late: TTFT p95 33 ms and decode speed 3% off, net of the simulator's own
lateness (`bench_timing.py`, README "Timing at load"). Here a connection is an asyncio
`Protocol`; httptools (llhttp, the C parser uvicorn uses) parses the response; each read is
timestamped in `data_received` before anything is parsed, and each piece of body goes straight
to the caller's `Receiver`, inside that callback. The coroutine waiting for the answer is woken
once, when the answer is complete or has failed.

What the httpx path gave is kept: a keep-alive pool per endpoint on each loop (a connection
goes back to it once its body has ended, `DRAIN_S` after the end of the answer at most), TLS for
https base URLs (the system's trust store), connect / read / write / pool timeouts, the request
(headers and body) in one write, an idle connection the server closed never reused.
Not supported (a model server is reached directly): proxies from the environment, redirects,
compressed bodies (`Accept-Encoding: identity` is sent), HTTP/2.
"""

from __future__ import annotations

import asyncio
import select
import socket
import ssl
import time
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

import httptools

# As the `openai` package's connection limits were (`openai.DEFAULT_CONNECTION_LIMITS`).
MAX_CONNECTIONS = 1000
MAX_KEEPALIVE = 100
KEEPALIVE_EXPIRY_S = 5.0  # httpx's: an older idle connection is closed rather than reused
DRAIN_S = 0.5


class HTTPFailure(Exception):
    """The exchange failed below HTTP: no connection, a connection that broke, or a response
    that is not HTTP. Its text says what happened, for a person."""


class HTTPTimeout(HTTPFailure):
    """Nothing could be connected, written or read within its timeout."""


class Receiver(Protocol):
    """What a stream's body is handed to, on the loop, as it arrives. Any method may raise to
    abandon the stream: the connection is closed and `post` raises that exception."""

    def start(self, status: int, headers: dict[str, str], t0: float, at: float) -> None:
        """A 2xx status and its headers arrived (read at `at`; the request left at `t0`)."""

    def data(self, data: bytes, at: float) -> bool:
        """A piece of body, read at `at`; True when the answer is complete (the rest of the
        body is then read and dropped, so the connection can be reused)."""
        ...

    def end(self, at: float) -> None:
        """The body ended before `data` said the answer was complete."""


@dataclass(frozen=True)
class Timeouts:
    connect: float
    read: float  # without any data
    write: float
    pool: float  # waiting for a free connection


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes  # of a status that is not 2xx, read whole; a 2xx body went to the receiver
    t0: float  # perf_counter() at the first write to the network for this request
    headers_at: float  # perf_counter() of the read that completed the headers


class _Stale(Exception):
    """A reused keep-alive connection closed before any byte of the answer: the server had
    dropped it while idle, so the request is sent again on a new connection."""


class _Exchange:
    """One request on one connection: httptools' callbacks for its response."""

    def __init__(
        self,
        connection: _Connection,
        receiver: Receiver,
        t0: float,
        read_timeout: float,
    ) -> None:
        self.connection = connection
        self.receiver = receiver
        self.parser = httptools.HttpResponseParser(self)
        self.future: asyncio.Future[Response] = connection.loop.create_future()
        self.t0 = t0
        self.read_timeout = read_timeout
        self.read_at = t0  # the latest read (the write, before any)
        self.got_bytes = False
        self.status = 0
        self.headers: dict[str, str] = {}
        self.headers_at = 0.0
        self.streaming = False  # a 2xx body, handed to the receiver
        self.body: list[bytes] = []
        self.answered = False  # the receiver has the whole answer (or the exchange failed)
        self.complete = False  # the parser saw the end of the message
        self.timer: asyncio.TimerHandle | None = connection.loop.call_later(
            read_timeout, self._check_read
        )

    # -- httptools callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if status < 200:  # an interim response (100 Continue): the real one follows
            self.headers = {}
            return
        self.status, self.headers_at = status, self.read_at
        if 200 <= status < 300:
            self.streaming = True
            try:
                self.receiver.start(status, self.headers, self.t0, self.read_at)
            except BaseException as error:
                self.fail(error)

    def on_body(self, body: bytes) -> None:
        if self.answered:
            return  # after the answer, or after a failure: drained
        if not self.streaming:
            self.body.append(body)
            return
        try:
            if self.receiver.data(body, self.read_at):
                self._answer()
        except BaseException as error:
            self.fail(error)

    def on_message_complete(self) -> None:
        if self.status < 200:
            return
        self.complete = True
        if not self.answered:
            if self.streaming:
                try:
                    self.receiver.end(self.read_at)
                except BaseException as error:
                    self.fail(error)
                    return
            self._answer()
        if self.connection.exchange is self:
            self.connection.release(self.parser.should_keep_alive())
        self._resolve()

    # -- the connection's events

    def received(self, data: bytes, at: float) -> None:
        self.read_at = at
        self.got_bytes = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError:
            pass  # a callback failed the exchange already (`fail`)
        except httptools.HttpParserError as error:
            self.fail(HTTPFailure(f"invalid HTTP response: {error}"))

    def ended(self, error: Exception | None) -> None:
        """The connection closed (`error` if it broke)."""
        if self.answered:
            self._resolve()
            return
        at = time.perf_counter()
        until_close = (
            self.status >= 200
            and "content-length" not in self.headers
            and "chunked" not in self.headers.get("transfer-encoding", "").lower()
        )
        if error is None and until_close:  # a body that ends when the connection does
            if self.streaming:
                try:
                    self.receiver.end(at)
                except BaseException as failure:
                    self.fail(failure)
                    return
            self._answer()
            self._resolve()
        elif not self.got_bytes and self.connection.reused:
            self.fail(_Stale())
        elif error is not None:
            self.fail(HTTPFailure(f"{type(error).__name__}: {error}"))
        elif self.status:
            self.fail(HTTPFailure("the server closed the connection before the end of the body"))
        else:
            self.fail(HTTPFailure("the server closed the connection without an answer"))

    # -- outcomes

    def _answer(self) -> None:
        """The answer is whole; the rest of the body (if any) is drained for `DRAIN_S`."""
        self.answered = True
        if self.timer is not None:
            self.timer.cancel()
        if not self.complete:
            self.timer = self.connection.loop.call_later(DRAIN_S, self._drained)

    def _drained(self) -> None:
        self.timer = None
        self.connection.close()  # the body did not end in time: not reusable
        self._resolve()

    def _resolve(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if not self.future.done():
            body = b"".join(self.body)
            self.future.set_result(
                Response(self.status, self.headers, body, self.t0, self.headers_at)
            )

    def fail(self, error: BaseException) -> None:
        """End the exchange with `error` (raised by `post`) and close the connection."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        already = self.answered
        self.answered = True
        self.connection.close()
        if not already and not self.future.done():
            self.future.set_exception(error)
        else:
            self._resolve()

    def abandon(self) -> None:
        """Nobody waits for the answer any more (the waiting coroutine was cancelled, which
        cancelled the future it waited on too)."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.answered = True
        self.connection.close()
        self.future.cancel()

    def _check_read(self) -> None:
        # One timer per read timeout, not one per read: it is moved on when data came since.
        self.timer = None
        if self.answered:
            return
        quiet = time.perf_counter() - self.read_at
        if quiet >= self.read_timeout:
            self.fail(HTTPTimeout(f"no data for {self.read_timeout:.0f} s"))
        else:
            self.timer = self.connection.loop.call_later(
                self.read_timeout - quiet, self._check_read
            )


class _Connection(asyncio.Protocol):
    def __init__(self, pool: _Pool) -> None:
        self.pool = pool
        self.loop = pool.loop
        self.transport: asyncio.Transport | None = None
        self.exchange: _Exchange | None = None
        self.reused = False
        self.closed = False
        self.idle_since = 0.0
        self.writable: asyncio.Future[None] | None = None  # while the write buffer is full
        self.counted = False  # holds one of the pool's slots

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        at = time.perf_counter()  # before anything is parsed
        exchange = self.exchange
        if exchange is None:  # bytes on an idle connection: it cannot carry a request now
            self.close()
            return
        exchange.received(data, at)

    def eof_received(self) -> bool:
        return False  # close; `connection_lost` follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.forget(self)
        if self.writable is not None and not self.writable.done():
            self.writable.set_result(None)
        exchange, self.exchange = self.exchange, None
        if exchange is not None:
            exchange.ended(exc)

    def pause_writing(self) -> None:
        self.writable = self.loop.create_future()

    def resume_writing(self) -> None:
        if self.writable is not None and not self.writable.done():
            self.writable.set_result(None)
        self.writable = None

    def send(self, request: bytes) -> None:
        """Write a request, headers and body in one write: written separately, the body could
        leave a loop iteration after the headers (tens of milliseconds with 64 streams), and
        the server, which waits for it, would start that much later than t0."""
        assert self.transport is not None
        self.transport.write(request)

    def begin(self, receiver: Receiver, t0: float, read_timeout: float) -> _Exchange:
        self.exchange = _Exchange(self, receiver, t0, read_timeout)
        return self.exchange

    def release(self, keep_alive: bool) -> None:
        """The exchange is over and its body read: back to the pool, or closed."""
        self.exchange = None
        if keep_alive and not self.closed:
            self.pool.put(self)
        else:
            self.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.pool.forget(self)
            if self.transport is not None:
                self.transport.close()


def _readable(sock: socket.socket | Any) -> bool:
    """Whether reading `sock` would not block (data, or the peer closed it): an idle keep-alive
    connection that is readable was closed by the server (or sent what nobody asked for)."""
    descriptor = sock.fileno()
    if descriptor == -1:
        return True
    if not hasattr(select, "poll"):  # Windows; select() is limited to low descriptors elsewhere
        readable, _, _ = select.select([descriptor], [], [], 0)
        return bool(readable)
    poll = select.poll()
    poll.register(descriptor, select.POLLIN)
    return bool(poll.poll(0))


_tls: ssl.SSLContext | None = None


def _tls_context() -> ssl.SSLContext:
    global _tls
    if _tls is None:
        context = ssl.create_default_context()
        context.set_alpn_protocols(["http/1.1"])
        _tls = context
    return _tls


class _Pool:
    """The connections to one origin on one loop (only that loop's thread touches them)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise HTTPFailure(f"not an http(s) URL: {url}")
        self.loop = loop
        self.tls = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or (443 if self.tls else 80)
        self.authority = parts.netloc.rpartition("@")[2]
        self.idle: list[_Connection] = []
        self.slots = asyncio.Semaphore(MAX_CONNECTIONS)

    async def acquire(self, timeouts: Timeouts) -> tuple[_Connection, float | None]:
        """A connection for one request, and when its connect started if it is new."""
        now = time.perf_counter()
        while self.idle:
            connection = self.idle.pop()
            transport = connection.transport
            if (
                connection.closed
                or transport is None
                or now - connection.idle_since > KEEPALIVE_EXPIRY_S
                or _readable(transport.get_extra_info("socket"))
            ):
                connection.close()
                continue
            connection.reused = True
            return connection, None
        try:
            async with asyncio.timeout(timeouts.pool):
                await self.slots.acquire()
        except TimeoutError:
            raise HTTPTimeout(f"no free connection within {timeouts.pool:.0f} s") from None
        connect_started = time.perf_counter()
        try:
            async with asyncio.timeout(timeouts.connect):
                _, protocol = await self.loop.create_connection(
                    lambda: _Connection(self),
                    self.host,
                    self.port,
                    ssl=_tls_context() if self.tls else None,
                    server_hostname=self.host if self.tls else None,
                )
        except TimeoutError:
            self.slots.release()
            raise HTTPTimeout(f"no connection within {timeouts.connect:.0f} s") from None
        except OSError as error:  # refused, unreachable, unknown host, TLS (ssl.SSLError)
            self.slots.release()
            raise HTTPFailure(f"{type(error).__name__}: {error}") from None
        except BaseException:
            self.slots.release()
            raise
        protocol.counted = True
        return protocol, connect_started

    def put(self, connection: _Connection) -> None:
        if len(self.idle) >= MAX_KEEPALIVE or self.slots.locked():
            connection.close()  # enough idle ones, or a request waits for a new connection
            return
        connection.idle_since = time.perf_counter()
        connection.reused = False
        self.idle.append(connection)

    def forget(self, connection: _Connection) -> None:
        """`connection` closed: no longer idle, and its slot is free."""
        if connection in self.idle:
            self.idle.remove(connection)
        if connection.counted:
            connection.counted = False
            self.slots.release()


# One pool per (loop, base URL, key): connections belong to the loop that opened them, so a
# forked child (its own loop) starts with none.
_pools: dict[tuple[asyncio.AbstractEventLoop, str, str], _Pool] = {}


def pool_for(base_url: str, key: str) -> _Pool:
    """The pool of connections for an endpoint on the running loop (call from the loop)."""
    loop = asyncio.get_running_loop()
    pool = _pools.get((loop, base_url, key))
    if pool is None:
        for stale in [other for other in _pools if other[0] is not loop]:
            del _pools[stale]  # a parent's loop, before a fork
        pool = _pools[(loop, base_url, key)] = _Pool(loop, base_url)
    return pool


def request_head(pool: _Pool, path: str, headers: dict[str, str]) -> bytes:
    """The request line and headers up to Content-Length (left open: its value follows)."""
    lines = [f"POST {path} HTTP/1.1", f"Host: {pool.authority}"]
    for name, value in headers.items():
        if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
            raise HTTPFailure(f"invalid value for the {name} header")
        lines.append(f"{name}: {value}")
    lines.append("Content-Length: ")
    return "\r\n".join(lines).encode("latin-1")


async def post(
    pool: _Pool, head: bytes, body: bytes, receiver: Receiver, timeouts: Timeouts
) -> Response:
    """Send `head` (`request_head`) and `body` on a connection of `pool`; hand a 2xx body to
    `receiver` as it arrives. Returns when the answer is complete (the receiver said so, or
    the body ended) or the status is not 2xx (its body read whole); raises `HTTPFailure`, or
    what the receiver raised."""
    request = head + str(len(body)).encode() + b"\r\n\r\n" + body
    for _ in range(2):  # a second time only for a stale keep-alive connection
        connection, connect_started = await pool.acquire(timeouts)
        t0 = connect_started if connect_started is not None else time.perf_counter()
        exchange = connection.begin(receiver, t0, timeouts.read)
        try:
            connection.send(request)
            if connection.writable is not None:  # a large body (images) still being written
                try:
                    async with asyncio.timeout(timeouts.write):
                        await asyncio.shield(connection.writable)
                except TimeoutError:
                    exchange.fail(HTTPTimeout(f"could not send within {timeouts.write:.0f} s"))
            return await exchange.future
        except _Stale:
            continue
        finally:
            if not exchange.answered:
                exchange.abandon()  # cancelled while waiting: the stream is closed
    raise HTTPFailure("the server closed every connection without an answer")
