"""The one HTTP boundary to model servers: a streaming chat completion, timed.

Uses the `openai` package against any OpenAI-compatible server, with the dialects of
DESIGN §2: reasoning in `delta.reasoning` / `delta.reasoning_content` or inline `<think>` text,
FastDeploy's thinking switch and its error events inside a 200 stream, several tokens (or
several choices) per chunk, a usage-only last chunk. Every failure becomes a `ModelError` that
says whether trying again could help.
"""

from __future__ import annotations

import email.utils
import json
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx2 as httpx
import openai

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
    served_model: str = ""
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


_clients: dict[tuple[str, str, float, float], openai.OpenAI] = {}
_clients_lock = threading.Lock()
# When the request leaves: set by the HTTP client's request hook, after the SDK has built and
# encoded the body (DESIGN §5: t0 is taken with the payload already encoded). Per thread,
# because threads share a client.
_sent = threading.local()


def _mark_sent(request: httpx.Request) -> None:
    _sent.t0 = time.perf_counter()


def client_for(config: EndpointConfig) -> openai.OpenAI:
    """One `OpenAI` client (and connection pool) per endpoint per process, shared by threads."""
    key = (config.base_url, config.api_key, config.read_timeout_s, config.timeout_s)
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            timeout = httpx.Timeout(
                connect=CONNECT_TIMEOUT_S,
                read=config.read_timeout_s,
                write=WRITE_TIMEOUT_S,
                pool=POOL_TIMEOUT_S,
            )
            client = openai.OpenAI(
                base_url=config.base_url,
                api_key=config.api_key or "EMPTY",
                max_retries=0,  # our own loop retries, so every attempt is counted
                timeout=timeout,
                http_client=openai.DefaultHttpxClient(
                    timeout=timeout, event_hooks={"request": [_mark_sent]}
                ),
            )
            _clients[key] = client
        return client


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


def _status_error(error: openai.APIStatusError) -> ModelError:
    status = error.status_code
    detail = error.message
    body = error.body
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
        retry_after_s=_retry_after(error.response.headers),
    )


def _field(obj: Any, name: str) -> Any:
    value = getattr(obj, name, None)
    if value is None:
        extra = getattr(obj, "model_extra", None) or {}
        value = extra.get(name)
    return value


def stream_chat(
    config: EndpointConfig,
    request: dict[str, Any],
    *,
    heartbeat: Callable[[], None] | None = None,
) -> StreamResult:
    """Send one streaming request and time it; raise ModelError on any failure.

    t0 is taken just before the request is sent: the payload (images included) is already
    encoded. Chunks are timestamped as they arrive, before any parsing of their content.
    """
    client = client_for(config)
    result = StreamResult(started_at=datetime.now(UTC))
    timings: dict[str, float | None] = {}
    think = ThinkTracker() if config.reasoning == "think_tags" else None
    content_parts: list[str] = []
    reasoning_parts: list[str] = []
    last_text: float | None = None
    deadline = config.timeout_s
    _sent.t0 = None
    t0 = time.perf_counter()
    try:
        raw = client.chat.completions.with_raw_response.create(**request)
        headers_at = time.perf_counter()
        t0 = _sent.t0 or t0  # the moment the encoded request was handed to the connection
        timings["t_headers"] = headers_at - t0
        result.http_status = raw.http_response.status_code
        result.simulated = raw.headers.get("x-simulator") == "gradebench"
        stream = raw.parse()
        previous = timings["t_headers"] or 0.0
        try:
            for chunk in stream:
                now = time.perf_counter() - t0
                result.chunks += 1
                result.max_gap_s = max(result.max_gap_s, now - previous)
                previous = now
                if now > deadline:
                    raise ModelError(
                        f"no complete answer within the {deadline:.0f} s deadline", retryable=False
                    )
                if heartbeat is not None:
                    heartbeat()
                if getattr(chunk, "choices", None) is None:
                    _raise_error_event(chunk)
                if timings.get("t_first_chunk") is None and chunk.choices:
                    timings["t_first_chunk"] = now
                if chunk.usage is not None:
                    result.usage = chunk.usage.model_dump()
                if getattr(chunk, "model", None):
                    result.served_model = chunk.model
                if getattr(chunk, "system_fingerprint", None) == "gradebench-simulator":
                    result.simulated = True
                had_text = False
                for choice in chunk.choices or []:
                    delta = choice.delta
                    if delta is not None:
                        reasoning = _field(delta, "reasoning") or _field(delta, "reasoning_content")
                        text = delta.content or ""
                        if reasoning:
                            reasoning_parts.append(reasoning)
                            had_text = True
                        if text:
                            content_parts.append(text)
                            had_text = True
                            if timings.get("t_first_answer") is None:
                                answered = think.feed(text) if think else bool(text.strip())
                                if answered:
                                    timings["t_first_answer"] = now
                    if choice.finish_reason:
                        result.finish_reason = choice.finish_reason
                if had_text:
                    result.text_chunks += 1
                    last_text = now
                    if timings.get("t_first_token") is None:
                        timings["t_first_token"] = now
        finally:
            stream.close()
        timings["t_end"] = time.perf_counter() - t0
    except openai.APIStatusError as error:
        raise _status_error(error) from None
    except ModelError as error:
        _finish(result, content_parts, reasoning_parts, timings, last_text, config)
        error.partial = result
        raise
    except (openai.APIError, _ErrorEvent, json.JSONDecodeError) as error:
        _finish(result, content_parts, reasoning_parts, timings, last_text, config)
        raise _stream_failure(_describe(error, config), result) from None
    _finish(result, content_parts, reasoning_parts, timings, last_text, config)
    if not result.received_text:
        raise ModelError(
            "the stream ended without any text",
            retryable=True,
            http_status=result.http_status,
            partial=result,
        )
    return result


class _ErrorEvent(Exception):
    """An error reported inside a 200 stream in FastDeploy's `{"code": …, "message": …}` shape."""


def _raise_error_event(chunk: Any) -> None:
    extra = getattr(chunk, "model_extra", None) or {}
    message = extra.get("message") or extra.get("detail") or json.dumps(extra, ensure_ascii=False)
    code = extra.get("code")
    raise _ErrorEvent(f"{message} (code {code})" if code else str(message))


def _describe(error: Exception, config: EndpointConfig) -> str:
    if isinstance(error, openai.APITimeoutError):
        return f"timed out (no data for {config.read_timeout_s:.0f} s)"
    if isinstance(error, openai.APIConnectionError):
        cause = error.__cause__ or error
        return f"connection failed: {type(cause).__name__}: {cause}"
    if isinstance(error, json.JSONDecodeError):
        return f"malformed chunk in the stream: {error.msg}"
    if isinstance(error, openai.APIError):
        return f"error event in the stream: {error.message}"
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
) -> None:
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
    """Run `stream_chat`, retrying retryable failures; return the result and attempts used."""
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
