"""The one HTTP boundary to model servers: a streaming chat completion, timed.

Uses the `openai` package against any OpenAI-compatible server, with the dialects of
DESIGN §2: reasoning in `delta.reasoning` / `delta.reasoning_content` or inline `<think>` text,
FastDeploy's thinking switch and its error events inside a 200 stream, several tokens (or
several choices) per chunk, a usage-only last chunk. The SDK (`AsyncOpenAI`, on the process's
one stream loop: `stream_loop`) sends the request; the streamed
body is read as raw lines and parsed with orjson, which costs an eighth of the SDK's own chunk
objects. Every failure becomes a `ModelError` that says whether trying again could help.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import random
import select
import socket
import ssl
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import anyio
import httpcore2 as httpcore
import httpx2 as httpx
import openai
import orjson

from . import scheduling_lag, stream_loop
from .metrics import ThinkTracker, Timings, estimate_tokens, split_think

CONNECT_TIMEOUT_S = 10.0
WRITE_TIMEOUT_S = 120.0
POOL_TIMEOUT_S = 30.0
DRAIN_S = 0.5
RETRYABLE_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class ModelError(Exception):
    """A request that did not produce a complete answer.

    `retryable` says whether the same request may succeed later (connection trouble, timeouts,
    408/429/5xx, a stream that broke before the first token); input errors are not retryable.
    """

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        http_status: int | None = None,
        retry_after_s: float | None = None,
        partial: StreamResult | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.attempts = 1
        self.retryable = retryable
        self.http_status = http_status
        self.retry_after_s = retry_after_s
        self.partial = partial


@dataclass(frozen=True)
class EndpointConfig:
    """What the client needs to know about a server (no database objects here)."""

    base_url: str
    api_key: str
    model: str
    dialect: str
    reasoning: str
    timeout_s: float
    read_timeout_s: float


@dataclass
class StreamResult:
    content: str = ""
    reasoning: str = ""
    finish_reason: str = ""
    http_status: int | None = None
    usage: dict[str, Any] | None = None
    timings: Timings = field(default_factory=Timings)
    chunks: int = 0
    text_chunks: int = 0
    max_gap_s: float = 0.0
    simulated: bool = False
    served_model: str = ""  # the first `model` a chunk named
    system_fingerprint: str = ""  # the first non-empty one a chunk sent
    scheduling_lag_ms: float | None = None  # worst lag of this process while streaming
    started_at: datetime | None = None

    @property
    def received_text(self) -> bool:
        return self.timings.t_first_token is not None

    def token_counts(self) -> dict[str, Any]:
        """prompt/completion/total/reasoning tokens and where they came from (DESIGN §5)."""
        usage = self.usage or {}
        completion = usage.get("completion_tokens")
        if isinstance(completion, int) and completion >= 0:
            details = usage.get("completion_tokens_details") or {}
            reasoning = details.get("reasoning_tokens") if isinstance(details, dict) else None
            if not isinstance(reasoning, int) or (reasoning == 0 and self.reasoning):
                reasoning = estimate_tokens(self.reasoning) if self.reasoning else 0
            prompt = usage.get("prompt_tokens")
            total = usage.get("total_tokens")
            if not isinstance(total, int) and isinstance(prompt, int):
                total = prompt + completion
            return {
                "prompt_tokens": prompt if isinstance(prompt, int) else None,
                "completion_tokens": completion,
                "total_tokens": total if isinstance(total, int) else None,
                "reasoning_tokens": reasoning,
                "usage_source": "server",
            }
        reasoning_tokens = estimate_tokens(self.reasoning)
        completion = estimate_tokens(self.content) + reasoning_tokens
        return {
            "prompt_tokens": None,
            "completion_tokens": completion,
            "total_tokens": None,
            "reasoning_tokens": reasoning_tokens,
            "usage_source": "estimated",
        }


# One HTTP client (and connection pool) per endpoint, on the stream loop of this process: a
# client's connections belong to the loop that opened them, so the clients are kept per loop (a
# forked child starts its own loop, hence its own clients). Only the loop thread touches them.
_clients: dict[tuple[asyncio.AbstractEventLoop, str, str, float], httpx.AsyncClient] = {}
USER_AGENT = f"OpenAI/Python {openai.__version__}"


def client_for(config: EndpointConfig) -> httpx.AsyncClient:
    """The endpoint's HTTP client on the running stream loop (call from a coroutine on it):
    the `openai` package's own async client (`DefaultAsyncHttpxClient`, its connection limits
    and redirects), with our timeouts and the headers the SDK would send."""
    loop = asyncio.get_running_loop()
    key = (loop, config.base_url, config.api_key, config.read_timeout_s)
    client = _clients.get(key)
    if client is None:
        for stale in [other for other in _clients if other[0] is not loop]:
            del _clients[stale]  # a parent's loop, before a fork
        transport = httpx.AsyncHTTPTransport(limits=openai.DEFAULT_CONNECTION_LIMITS)
        pool = transport._pool  # httpcore's pool: its network backend is not a parameter
        pool._network_backend = _OneWriteBackend(pool._network_backend)
        client = openai.DefaultAsyncHttpxClient(
            transport=transport,
            timeout=httpx.Timeout(
                connect=CONNECT_TIMEOUT_S,
                read=config.read_timeout_s,
                write=WRITE_TIMEOUT_S,
                pool=POOL_TIMEOUT_S,
            ),
            headers={
                "Authorization": f"Bearer {config.api_key or 'EMPTY'}",
                "Accept": "application/json",
                "User-Agent": USER_AGENT,
            },
        )
        _clients[key] = client
    return client


class _OneWriteStream(httpcore.AsyncNetworkStream):
    """A connection that holds each write back until the next write or read, so that a
    request's headers and body leave in one write.

    httpcore writes them separately and the stream yields to the loop after each write, so
    with many streams on one loop the body left a whole loop iteration after the headers (tens
    of milliseconds with 64 streams), and the server, which waits for the body, started that
    much later than t0. Measured with `bench_timing.py` (README, "Timing at load").
    """

    def __init__(self, stream: httpcore.AsyncNetworkStream) -> None:
        self._stream = stream
        self._held = b""
        self._socket: socket.socket | None = stream.get_extra_info("socket")

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        if not self._held:
            self._held = buffer
            return
        buffer, self._held = self._held + buffer, b""
        await self._stream.write(buffer, timeout)

    async def _flush(self, timeout: float | None) -> None:
        if self._held:
            buffer, self._held = self._held, b""
            await self._stream.write(buffer, timeout)

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        await self._flush(timeout)
        return await self._stream.read(max_bytes, timeout)

    async def aclose(self) -> None:
        self._held = b""
        await self._stream.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        await self._flush(timeout)
        return _OneWriteStream(await self._stream.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable" and self._socket is not None:
            # httpcore asks it of every idle connection each time it assigns a request (a
            # server that closed one makes it readable); anyio's stream answers by building
            # all its socket attributes anew, a fifth of the loop's time at 64 streams.
            return _readable(self._socket)
        return self._stream.get_extra_info(info)


def _readable(sock: socket.socket) -> bool:
    """Whether reading `sock` would not block (data, or the peer closed it), as httpcore checks."""
    descriptor = sock.fileno()
    if descriptor == -1:
        return True
    if not hasattr(select, "poll"):  # Windows; select() is limited to low descriptors elsewhere
        readable, _, _ = select.select([descriptor], [], [], 0)
        return bool(readable)
    poll = select.poll()
    poll.register(descriptor, select.POLLIN)
    return bool(poll.poll(0))


class _OneWriteBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, its connections wrapped in `_OneWriteStream`."""

    def __init__(self, backend: httpcore.AsyncNetworkBackend) -> None:
        self._backend = backend

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._backend.connect_tcp(host, port, timeout, local_address, socket_options)
        return _OneWriteStream(stream)

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._backend.connect_unix_socket(path, timeout, socket_options)
        return _OneWriteStream(stream)

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)


def encode_request(request: dict[str, Any]) -> bytes:
    """The JSON body of a `build_request` request, `extra_body` merged in as the SDK does."""
    body = {name: value for name, value in request.items() if name != "extra_body"}
    body.update(request.get("extra_body") or {})
    return orjson.dumps(body)


def build_request(
    config: EndpointConfig, messages: list[dict[str, Any]], params: dict[str, Any]
) -> dict[str, Any]:
    """Keyword arguments for `chat.completions.create`, in the endpoint's dialect."""
    request: dict[str, Any] = {
        "model": config.model,
        "messages": messages,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    for name in ("temperature", "top_p", "max_tokens", "seed", "presence_penalty",
                 "frequency_penalty", "stop"):  # fmt: skip
        if params.get(name) is not None:
            request[name] = params[name]
    extra: dict[str, Any] = {}
    for name in ("top_k", "repetition_penalty"):
        if params.get(name) is not None and config.dialect != "openai":
            extra[name] = params[name]
    thinking = params.get("thinking")
    if thinking is not None and config.dialect in ("fastdeploy", "vllm"):
        extra["chat_template_kwargs"] = {"enable_thinking": bool(thinking)}
        if config.dialect == "fastdeploy":
            # FastDeploy releases before chat_template_kwargs read the switch from metadata.
            extra["metadata"] = {"enable_thinking": bool(thinking)}
    if extra:
        request["extra_body"] = extra
    return request


def _retry_after(headers: Any) -> float | None:
    value = headers.get("retry-after") if headers is not None else None
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value)
        return max(0.0, (parsed - datetime.now(UTC)).total_seconds())


def _status_error(response: httpx.Response) -> ModelError:
    """The error of a response that is not 2xx, its message as the server wrote it (the
    `message` of an OpenAI-style `{"error": {...}}` or of a flat body), else as the SDK words it."""
    status = response.status_code
    text = response.text.strip()
    detail = f"Error code: {status}" + (f" - {text}" if text else "")
    try:
        body = orjson.loads(text) if text else None
    except orjson.JSONDecodeError:
        body = None
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            detail = inner["message"]
        elif isinstance(body.get("message"), str):
            detail = body["message"]
    return ModelError(
        f"HTTP {status}: {detail}",
        retryable=status in RETRYABLE_STATUS,
        http_status=status,
        retry_after_s=_retry_after(response.headers),
    )


def stream_chat(
    config: EndpointConfig,
    request: dict[str, Any],
    *,
    heartbeat: Callable[[], None] | None = None,
) -> StreamResult:
    """Send one streaming request and time it; raise ModelError on any failure.

    The body is encoded here, in the calling thread; the stream then runs on the process's
    stream loop (`stream_loop`: one event loop carrying every stream of the process) while the
    calling thread waits for it. See `stream_chat_async`.
    """
    body = encode_request(request)
    return stream_loop.run(stream_chat_async(config, body, heartbeat=heartbeat))


async def stream_chat_async(
    config: EndpointConfig,
    request: dict[str, Any] | bytes,
    *,
    heartbeat: Callable[[], None] | None = None,
) -> StreamResult:
    """`stream_chat` as a coroutine on the stream loop (`request` may come encoded already).

    t0 is taken just before the request goes out on the connection (opening a new one
    included): the payload, images included, is already encoded, and the other streams the
    loop serves meanwhile do not count. Each read from the connection is timestamped before
    anything in it is parsed.

    The body is read as raw server-sent-event lines parsed by orjson into plain dicts
    (`_SSEReader`): the `openai` package's chunk objects cost eight times the CPU per streamed
    token (`bench_overhead.py --client-only`), and a loop short of CPU reads its chunks late.
    Building the request through the SDK cost the loop about a millisecond per request, so
    it is posted through the SDK's HTTP client (`client_for`) as bytes.

    `heartbeat` is called on the loop for every chunk and may raise to abandon the stream
    (a cancelled generation): it must return at once, never wait or query a database.
    """
    body = request if isinstance(request, bytes) else encode_request(request)
    watch = scheduling_lag.watch()
    try:
        return await _stream(config, body, heartbeat, watch)
    finally:
        watch.stop()


async def _stream(
    config: EndpointConfig,
    body: bytes,
    heartbeat: Callable[[], None] | None,
    watch: scheduling_lag.Watch,
) -> StreamResult:
    client = client_for(config)
    result = StreamResult(started_at=datetime.now(UTC))
    timings: dict[str, float | None] = {}
    think = ThinkTracker() if config.reasoning == "think_tags" else None
    content_parts: list[str] = []
    reasoning_parts: list[str] = []
    last_text: float | None = None
    deadline = config.timeout_s
    sent: list[float] = []
    done = False

    async def trace(event: str, info: dict[str, Any]) -> None:
        # The first write to the network: a new connection's connect, else the headers.
        if not sent and event.endswith((".connect_tcp.started", ".send_request_headers.started")):
            sent.append(time.perf_counter())

    t0 = time.perf_counter()
    try:
        post = client.build_request(
            "POST",
            config.base_url.rstrip("/") + "/chat/completions",
            content=body,
            headers={"Content-Type": "application/json"},
            extensions={"trace": trace},
        )
        response = await client.send(post, stream=True)
        headers_at = time.perf_counter()
        t0 = sent[0] if sent else t0
        timings["t_headers"] = headers_at - t0
        if response.status_code >= 300:
            try:
                await response.aread()
            finally:
                await response.aclose()
            raise _status_error(response)
        result.http_status = response.status_code
        result.simulated = response.headers.get("x-simulator") == "gradebench"
        previous = timings["t_headers"] or 0.0
        try:
            events = _SSEReader(response).__aiter__()
            async for read_at, event, data in events:
                if data.startswith(b"[DONE]"):
                    done = True
                    break
                now = read_at - t0
                result.chunks += 1
                if now - previous > result.max_gap_s:
                    result.max_gap_s = now - previous
                previous = now
                if now > deadline:
                    raise ModelError(
                        f"no complete answer within the {deadline:.0f} s deadline", retryable=False
                    )
                if heartbeat is not None:
                    heartbeat()
                if event == b"error":
                    raise _error_event(data)
                chunk = orjson.loads(data)
                if not isinstance(chunk, dict):
                    raise _Malformed("a chunk is not a JSON object")
                choices = chunk.get("choices")
                if choices is None or chunk.get("error"):
                    raise _error_event(chunk)
                if not isinstance(choices, list):
                    raise _Malformed("choices is not a list")
                if choices and timings.get("t_first_chunk") is None:
                    timings["t_first_chunk"] = now
                usage = chunk.get("usage")
                if isinstance(usage, dict):
                    result.usage = usage
                if not result.served_model and isinstance(chunk.get("model"), str):
                    result.served_model = chunk["model"]
                fingerprint = chunk.get("system_fingerprint")
                if not result.system_fingerprint and isinstance(fingerprint, str):
                    result.system_fingerprint = fingerprint
                    result.simulated = result.simulated or fingerprint == "gradebench-simulator"
                had_text = False
                for choice in choices:
                    if not isinstance(choice, dict):
                        raise _Malformed("a choice is not a JSON object")
                    delta = choice.get("delta")
                    if isinstance(delta, dict):
                        reasoning = delta.get("reasoning") or delta.get("reasoning_content")
                        text = delta.get("content")
                        if reasoning:
                            if not isinstance(reasoning, str):
                                raise _Malformed("reasoning is not a string")
                            reasoning_parts.append(reasoning)
                            had_text = True
                        if text:
                            if not isinstance(text, str):
                                raise _Malformed("content is not a string")
                            content_parts.append(text)
                            had_text = True
                            if timings.get("t_first_answer") is None:
                                answered = think.feed(text) if think else bool(text.strip())
                                if answered:
                                    timings["t_first_answer"] = now
                    finish_reason = choice.get("finish_reason")
                    if finish_reason:
                        result.finish_reason = str(finish_reason)
                if had_text:
                    result.text_chunks += 1
                    last_text = now
                    if timings.get("t_first_token") is None:
                        timings["t_first_token"] = now
            timings["t_end"] = time.perf_counter() - t0
        finally:
            if done:
                await _drain(events)
            await response.aclose()
    except ModelError as error:
        if result.http_status is None:
            raise  # refused with an HTTP error status (`_status_error`): nothing was streamed
        _finish(result, content_parts, reasoning_parts, timings, last_text, config, watch)
        error.partial = result
        raise
    except (_ErrorEvent, _Malformed, json.JSONDecodeError, *_READ_ERRORS) as error:
        _finish(result, content_parts, reasoning_parts, timings, last_text, config, watch)
        raise _stream_failure(_describe(error, config), result) from None
    _finish(result, content_parts, reasoning_parts, timings, last_text, config, watch)
    if not result.received_text:
        raise ModelError(
            "the stream ended without any text",
            retryable=True,
            http_status=result.http_status,
            partial=result,
        )
    return result


# What reading the body may raise, as the SDK's own stream catches it (`openai._streaming`).
_READ_ERRORS = (httpx.TimeoutException, httpx.RequestError, ssl.SSLError, anyio.EndOfStream)


class _SSEReader:
    """The events of a server-sent-events body: (time of the read that completed the event,
    event name, data), the data lines of an event joined by newlines as the SSE format says.

    The time is `time.perf_counter()` right after the bytes came off the connection, before
    any of them is decoded or parsed; events completed by one read share its time.
    """

    def __init__(self, response: httpx.Response) -> None:
        self.response = response

    async def __aiter__(self) -> AsyncIterator[tuple[float, bytes, bytes]]:
        perf_counter = time.perf_counter
        pending = b""
        event = b""
        data: list[bytes] = []
        async for block in self.response.aiter_bytes():
            read_at = perf_counter()
            if pending:
                block = pending + block
            lines = block.split(b"\n")
            pending = lines.pop()
            for line in lines:
                if line.endswith(b"\r"):
                    line = line[:-1]
                if not line:  # end of an event
                    if data:
                        yield read_at, event, data[0] if len(data) == 1 else b"\n".join(data)
                        data = []
                    event = b""
                elif line.startswith(b"data:"):
                    data.append(line[6:] if line.startswith(b"data: ") else line[5:])
                elif line.startswith(b"event:"):
                    event = line[6:].strip()
                # comments (":") and the id and retry fields carry nothing we use
        if pending.startswith(b"data:"):
            data.append(pending[6:] if pending.startswith(b"data: ") else pending[5:])
        if data:  # a last event without its blank line
            yield perf_counter(), event, b"\n".join(data)


async def _drain(events: AsyncIterator[tuple[float, bytes, bytes]]) -> None:
    """Read what follows `[DONE]` (the end of a chunked body), so that the connection goes back
    to the pool instead of being closed: opening a new one for every request cost the loop
    more than the whole stream. A server that keeps writing, or keeps the body open, gets
    `DRAIN_S`; then the connection is closed as before."""
    try:
        async with asyncio.timeout(DRAIN_S):
            async for _ in events:
                pass
    except (TimeoutError, *_READ_ERRORS):
        pass


class _ErrorEvent(Exception):
    """An error reported inside a 200 stream: `{"error": {"message": …}}` (vLLM and one
    FastDeploy shape), FastDeploy's `{"code": …, "message": …}`, or an `event: error`."""


class _Malformed(Exception):
    """Valid JSON that is not a chat completion chunk."""


def _error_event(payload: dict[str, Any] | bytes) -> _ErrorEvent:
    """The error a chunk without choices, or the data of an `event: error`, reports."""
    if isinstance(payload, bytes):
        try:
            parsed = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return _ErrorEvent(payload.decode("utf-8", "replace").strip())
        if not isinstance(parsed, dict):
            return _ErrorEvent(str(parsed))
        payload = parsed
    error = payload.get("error")
    if error:
        inner = error.get("message") if isinstance(error, dict) else error
        if isinstance(inner, str) and inner:
            return _ErrorEvent(inner)
        return _ErrorEvent("An error occurred during streaming")
    message = payload.get("message") or payload.get("detail")
    message = message or json.dumps(payload, ensure_ascii=False)
    code = payload.get("code")
    return _ErrorEvent(f"{message} (code {code})" if code else str(message))


def _describe(error: Exception, config: EndpointConfig) -> str:
    if isinstance(error, json.JSONDecodeError):
        return f"malformed chunk in the stream: {error.msg}"
    if isinstance(error, _Malformed):
        return f"malformed chunk in the stream: {error}"
    if isinstance(error, httpx.TimeoutException):
        return f"timed out (no data for {config.read_timeout_s:.0f} s)"
    if isinstance(error, _READ_ERRORS):
        return f"connection failed: {type(error).__name__}: {error}"
    return f"error event in the stream: {error}"


def _stream_failure(message: str, result: StreamResult) -> ModelError:
    # Before the first token nothing was lost: the request can simply be sent again.
    before_first_token = not result.received_text
    suffix = "" if before_first_token else " after the answer had started"
    return ModelError(
        message + suffix,
        retryable=before_first_token,
        http_status=result.http_status,
        partial=result,
    )


def _finish(
    result: StreamResult,
    content_parts: list[str],
    reasoning_parts: list[str],
    timings: dict[str, float | None],
    last_text: float | None,
    config: EndpointConfig,
    watch: scheduling_lag.Watch,
) -> None:
    result.scheduling_lag_ms = watch.stop()
    content = "".join(content_parts)
    reasoning = "".join(reasoning_parts)
    first_answer = timings.get("t_first_answer")
    if config.reasoning == "think_tags":
        inline_reasoning, answer, closed = split_think(
            content, cut_off=result.finish_reason == "length"
        )
        if closed or inline_reasoning:
            reasoning = (
                (reasoning + "\n" + inline_reasoning).strip() if reasoning else inline_reasoning
            )
            content = answer
        else:
            # No tags at all: the whole content was the answer, from its first text on.
            first_answer = timings.get("t_first_token")
    result.content = content
    result.reasoning = reasoning
    result.timings = Timings(
        t_headers=timings.get("t_headers"),
        t_first_chunk=timings.get("t_first_chunk"),
        t_first_token=timings.get("t_first_token"),
        t_first_answer=first_answer,
        t_last_token=last_text,
        t_end=timings.get("t_end"),
    )


def backoff_s(attempt: int, base_s: float, cap_s: float, retry_after_s: float | None) -> float:
    """Exponential back-off with full jitter; a server's Retry-After is a floor."""
    delay = random.uniform(0, min(cap_s, base_s * 2 ** (attempt - 1)))  # noqa: S311 (jitter)
    if retry_after_s is not None:
        delay = max(delay, min(retry_after_s, cap_s))
    return delay


def complete_with_retries(
    config: EndpointConfig,
    request: dict[str, Any],
    *,
    max_attempts: int,
    backoff_base_s: float,
    backoff_cap_s: float,
    heartbeat: Callable[[], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[StreamResult, int]:
    """Run `stream_chat`, retrying retryable failures; return the result and attempts used.

    Call it from any thread but the stream loop's (a Celery task thread): each attempt runs on
    the loop while this thread waits, and the back-off (`sleep`) runs in this thread.
    `heartbeat` is called for every chunk on the loop, where it must return at once (check an
    event, raise to abandon the stream), and once before each back-off in this thread.
    """
    attempt = 0
    while True:
        attempt += 1
        try:
            return stream_chat(config, request, heartbeat=heartbeat), attempt
        except ModelError as error:
            if not error.retryable or attempt >= max_attempts:
                if error.retryable:
                    error.message = f"{error.message} (gave up after {attempt} attempts)"
                    error.args = (error.message,)
                error.attempts = attempt
                raise error from None
            delay = backoff_s(attempt, backoff_base_s, backoff_cap_s, error.retry_after_s)
            if heartbeat is not None:
                heartbeat()
            sleep(delay)
