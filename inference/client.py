"""The one HTTP boundary to model servers: a streaming chat completion, timed.

Speaks to any OpenAI-compatible server, with the dialects of DESIGN §2: reasoning in
`delta.reasoning` / `delta.reasoning_content` or inline `<think>` text, FastDeploy's thinking
switch and its error events inside a 200 stream, several tokens (or several choices) per chunk,
a usage-only last chunk. The request is the one the `openai` package would send (its headers
included); it goes out on the process's one stream loop (`stream_loop`) through `http_stream`
rather than the SDK's HTTP client, and the streamed body is read as raw lines parsed with
orjson, in the connection's read callback: `stream_chat_async` says why. Every failure becomes
a `ModelError` that says whether trying again could help.
"""

from __future__ import annotations

import email.utils
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import openai
import orjson

from . import http_stream, scheduling_lag, stream_loop
from .metrics import ThinkTracker, Timings, estimate_tokens, split_think

CONNECT_TIMEOUT_S = 10.0
WRITE_TIMEOUT_S = 120.0
POOL_TIMEOUT_S = 30.0
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


USER_AGENT = f"OpenAI/Python {openai.__version__}"  # the header the SDK sends


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


def _status_error(status: int, headers: dict[str, str], content: bytes) -> ModelError:
    """The error of a response that is not 2xx, its message as the server wrote it (the
    `message` of an OpenAI-style `{"error": {...}}` or of a flat body), else as the SDK words it."""
    text = content.decode("utf-8", "replace").strip()
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
        retry_after_s=_retry_after(headers),
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

    The request goes through `http_stream`, not the `openai` package's HTTP client (httpx):
    the body is read as raw server-sent-event lines parsed by orjson into plain dicts, inside
    the connection's read callback (`_ChunkReader`), and this coroutine wakes only when the
    answer is complete or has failed. The SDK's chunk objects cost eight times the CPU per
    streamed token, and httpx's own reading most of what was left (`http_stream` says how
    much); a loop short of CPU reads its chunks late.

    `heartbeat` is called on the loop for every chunk and may raise to abandon the stream
    (a cancelled generation): it must return at once, never wait or query a database.
    """
    body = request if isinstance(request, bytes) else encode_request(request)
    watch = scheduling_lag.watch()
    try:
        return await _stream(config, body, heartbeat, watch)
    finally:
        watch.stop()


def _timeouts(config: EndpointConfig) -> http_stream.Timeouts:
    return http_stream.Timeouts(
        connect=CONNECT_TIMEOUT_S, read=config.read_timeout_s, write=WRITE_TIMEOUT_S,
        pool=POOL_TIMEOUT_S,
    )  # fmt: skip


_heads: dict[tuple[str, str], bytes] = {}


def _request_head(config: EndpointConfig, pool: Any) -> bytes:
    """The request line and headers of an endpoint's chat requests (the SDK's headers)."""
    head = _heads.get((config.base_url, config.api_key))
    if head is None:
        path = urlsplit(config.base_url.rstrip("/") + "/chat/completions")
        head = http_stream.request_head(
            pool,
            path.path + (f"?{path.query}" if path.query else ""),
            {
                "Accept": "application/json",
                "Accept-Encoding": "identity",
                "Authorization": f"Bearer {config.api_key or 'EMPTY'}",
                "Content-Type": "application/json",
                "User-Agent": USER_AGENT,
            },
        )
        _heads[(config.base_url, config.api_key)] = head
    return head


async def _stream(
    config: EndpointConfig,
    body: bytes,
    heartbeat: Callable[[], None] | None,
    watch: scheduling_lag.Watch,
) -> StreamResult:
    result = StreamResult(started_at=datetime.now(UTC))
    reader = _ChunkReader(config, result, heartbeat)
    try:
        pool = http_stream.pool_for(config.base_url, config.api_key)
        response = await http_stream.post(
            pool, _request_head(config, pool), body, reader, _timeouts(config)
        )
        if response.status >= 300:
            raise _status_error(response.status, response.headers, response.body)
    except ModelError as error:
        if result.http_status is None:
            raise  # refused with an HTTP error status (`_status_error`): nothing was streamed
        reader.finish(watch)
        error.partial = result
        raise
    except (_ErrorEvent, _Malformed, json.JSONDecodeError, http_stream.HTTPFailure) as error:
        reader.finish(watch)
        raise _stream_failure(_describe(error, config), result) from None
    reader.finish(watch)
    if not result.received_text:
        raise ModelError(
            "the stream ended without any text",
            retryable=True,
            http_status=result.http_status,
            partial=result,
        )
    return result


class _ChunkReader:
    """A chat completion's server-sent events, read as they arrive (an `http_stream.Receiver`):
    each complete event is parsed and counted in the `StreamResult` right in the connection's
    read callback, timed by the read that completed it (`at`, taken before any byte of it was
    parsed; events completed by one read share its time). The data lines of an event are
    joined by newlines, as the SSE format says; comments and the id and retry fields carry
    nothing used here."""

    def __init__(
        self,
        config: EndpointConfig,
        result: StreamResult,
        heartbeat: Callable[[], None] | None,
    ) -> None:
        self.config = config
        self.result = result
        self.heartbeat = heartbeat
        self.think = ThinkTracker() if config.reasoning == "think_tags" else None
        self.timings: dict[str, float | None] = {}
        self.content_parts: list[str] = []
        self.reasoning_parts: list[str] = []
        self.last_text: float | None = None
        self.t0 = 0.0
        self.previous = 0.0
        self.pending = b""
        self.event = b""
        self.data_lines: list[bytes] = []

    def start(self, status: int, headers: dict[str, str], t0: float, at: float) -> None:
        self.t0 = t0
        self.timings["t_headers"] = self.previous = at - t0
        self.result.http_status = status
        self.result.simulated = headers.get("x-simulator") == "gradebench"

    def data(self, block: bytes, at: float) -> bool:
        if self.pending:
            block = self.pending + block
        lines = block.split(b"\n")
        self.pending = lines.pop()
        data = self.data_lines
        for line in lines:
            if line.endswith(b"\r"):
                line = line[:-1]
            if not line:  # end of an event
                if data:
                    joined = data[0] if len(data) == 1 else b"\n".join(data)
                    data.clear()
                    if self.chunk(at, self.event, joined):
                        return True
                self.event = b""
            elif line.startswith(b"data:"):
                data.append(line[6:] if line.startswith(b"data: ") else line[5:])
            elif line.startswith(b"event:"):
                self.event = line[6:].strip()
        return False

    def end(self, at: float) -> None:
        pending, data = self.pending, self.data_lines
        if pending.startswith(b"data:"):
            data.append(pending[6:] if pending.startswith(b"data: ") else pending[5:])
        if data and self.chunk(at, self.event, b"\n".join(data)):
            return  # a last [DONE] without its blank line
        self.timings["t_end"] = time.perf_counter() - self.t0

    def chunk(self, read_at: float, event: bytes, data: bytes) -> bool:
        """Count one event in the result; True for `[DONE]`."""
        result, timings = self.result, self.timings
        if data.startswith(b"[DONE]"):
            timings["t_end"] = time.perf_counter() - self.t0
            return True
        now = read_at - self.t0
        result.chunks += 1
        if now - self.previous > result.max_gap_s:
            result.max_gap_s = now - self.previous
        self.previous = now
        deadline = self.config.timeout_s
        if now > deadline:
            raise ModelError(
                f"no complete answer within the {deadline:.0f} s deadline", retryable=False
            )
        if self.heartbeat is not None:
            self.heartbeat()
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
                    self.reasoning_parts.append(reasoning)
                    had_text = True
                if text:
                    if not isinstance(text, str):
                        raise _Malformed("content is not a string")
                    self.content_parts.append(text)
                    had_text = True
                    if timings.get("t_first_answer") is None:
                        think = self.think
                        if think.feed(text) if think else bool(text.strip()):
                            timings["t_first_answer"] = now
            finish_reason = choice.get("finish_reason")
            if finish_reason:
                result.finish_reason = str(finish_reason)
        if had_text:
            result.text_chunks += 1
            self.last_text = now
            if timings.get("t_first_token") is None:
                timings["t_first_token"] = now
        return False

    def finish(self, watch: scheduling_lag.Watch) -> None:
        """Put the text and timings read so far into the result (after success or failure)."""
        _finish(
            self.result,
            self.content_parts,
            self.reasoning_parts,
            self.timings,
            self.last_text,
            self.config,
            watch,
        )


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
    if isinstance(error, http_stream.HTTPTimeout):
        return f"timed out ({error})"
    if isinstance(error, http_stream.HTTPFailure):
        return f"connection failed: {error}"
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
