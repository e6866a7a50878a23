"""An OpenAI-compatible model simulator speaking the FastDeploy 2.x and vLLM dialects.

One process serves two HTTP servers (aiohttp): a FastDeploy-style one for the ERNIE profiles and
a vLLM-style one for the others. Both stream Server-Sent Events on a real socket with the timing
their profile claims, so the simulator is also a timing reference for the app's client:

* the first text-bearing chunk leaves at request arrival + TTFT, right after the role-only chunk
  (real servers emit the role chunk on the first engine output);
* token k (1-based, reasoning included) is ready at arrival + TTFT + (k-1)/rate; a chunk leaves
  when its last token is ready, on absolute deadlines of the loop clock so errors never add up;
* the first text chunk carries one token (as vLLM's stream interval does), later ones up to
  ``tokens_per_chunk``, so (completion_tokens-1)/(t_last-t_first) is exactly the scripted rate.

Faults and timing are scripted per request by a directive in the last user message,
``[[sim: fault=500x3, ttft_ms=100, tps=200, tokens=40]]``, or per model through
``POST /_sim/faults``. Every request is logged for tests at ``GET /_sim/requests``.

This module shares no code with the app's client and does not import Django.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import copy
import dataclasses
import hashlib
import json
import re
import signal
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal, Self

from aiohttp import web

from . import text as simtext
from .profiles import Dialect, ModelProfile, load_profiles

FINGERPRINT = "gradebench-simulator"
ROLES = frozenset({"system", "user", "assistant", "tool", "developer"})
HTTP_FAULT_RE = re.compile(r"^[45]\d\d$")
NAMED_FAULTS = frozenset(
    {"stall", "error_event", "malformed", "drop", "no_usage", "length", "identity"}
)
ERROR_SHAPES = frozenset({"vllm", "fastdeploy_a", "fastdeploy_b"})
DEFAULT_STALL_S = 30.0
# A mid-stream error or malformed line comes after this many tokens unless `after=` says.
DEFAULT_FAULT_AFTER = 4
PROMPT_OVERHEAD_PER_MESSAGE = 4
PROMPT_OVERHEAD = 3

_DIRECTIVE_RE = re.compile(r"\[\[\s*sim\s*:(?P<body>.*?)\]\]", re.IGNORECASE | re.DOTALL)
_FAULT_RE = re.compile(r"^(?P<name>[a-z_]+|\d{3})(?:x(?P<times>\d+))?$")
_DATA_URL_RE = re.compile(
    r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(?:;[\w.+-]+=[^;,]*)*);base64,(?P<data>.*)$",
    re.DOTALL,
)
_IMAGE_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"BM", "bmp"),
)


# --------------------------------------------------------------------------------------------
# Directives


class DirectiveError(ValueError):
    """A ``[[sim: ...]]`` directive or scripted fault that cannot be understood."""


@dataclasses.dataclass(frozen=True)
class Directives:
    """Per-request script: an optional fault and timing or length overrides.

    Timing overrides are exact (the ``--speed`` factor does not scale them); ``times`` makes the
    fault apply only to the first ``times`` requests with the same model and messages.
    """

    fault: str | None = None
    times: int | None = None
    stall_s: float = DEFAULT_STALL_S
    shape: str | None = None
    after: int | None = None
    ttft_ms: float | None = None
    tps: float | None = None
    tokens: int | None = None
    reasoning_tokens: int | None = None
    chunk: int | None = None

    @classmethod
    def parse(cls, body: str) -> Directives:
        """Parse ``key=value, key=value`` (the inside of ``[[sim: ...]]``)."""
        values: dict[str, Any] = {}
        for item in body.split(","):
            item = item.strip()
            if not item:
                continue
            key, sep, raw = (part.strip() for part in item.partition("="))
            if not sep or not raw:
                raise DirectiveError(f"expected key=value, got {item!r}")
            values.update(cls._parse_value(key.lower(), raw))
        return cls(**values)

    @classmethod
    def from_script(cls, item: object) -> Directives | None:
        """One entry of ``POST /_sim/faults``: null, a fault name, a directive body, or an
        object of directive keys."""
        if item is None:
            return None
        if isinstance(item, int) and not isinstance(item, bool):
            item = str(item)
        if isinstance(item, str):
            return cls.parse(item if "=" in item else f"fault={item}")
        if isinstance(item, Mapping):
            return cls.parse(", ".join(f"{key}={value}" for key, value in item.items()))
        raise DirectiveError(f"cannot use {item!r} as a scripted fault")

    @staticmethod
    def _parse_value(key: str, raw: str) -> dict[str, Any]:
        try:
            if key == "fault":
                match = _FAULT_RE.match(raw.lower())
                name = match.group("name") if match else ""
                if not (name in NAMED_FAULTS or HTTP_FAULT_RE.match(name)):
                    raise DirectiveError(f"unknown fault {raw!r}")
                times = match.group("times") if match else None
                return {"fault": name, "times": int(times) if times else None}
            if key == "shape":
                if raw.lower() not in ERROR_SHAPES:
                    raise DirectiveError(f"shape must be one of {sorted(ERROR_SHAPES)}")
                return {"shape": raw.lower()}
            if key in ("stall_s", "ttft_ms", "tps"):
                number = float(raw)
                if number < 0 or (key == "tps" and number == 0):
                    raise DirectiveError(f"{key} out of range: {raw}")
                return {key: number}
            if key in ("tokens", "reasoning_tokens", "chunk", "after"):
                count = int(raw)
                if count < (0 if key in ("reasoning_tokens", "after") else 1):
                    raise DirectiveError(f"{key} out of range: {raw}")
                return {key: count}
        except ValueError as exc:
            if isinstance(exc, DirectiveError):
                raise
            raise DirectiveError(f"bad value for {key}: {raw!r}") from exc
        raise DirectiveError(f"unknown directive key {key!r}")

    def overridden_by(self, other: Directives) -> Directives:
        """These directives with every field that ``other`` sets taken from ``other``."""
        defaults = Directives()
        changes = {
            field.name: getattr(other, field.name)
            for field in dataclasses.fields(other)
            if getattr(other, field.name) != getattr(defaults, field.name)
        }
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        """The fields that differ from the defaults (for the request log)."""
        defaults = Directives()
        return {
            field.name: getattr(self, field.name)
            for field in dataclasses.fields(self)
            if getattr(self, field.name) != getattr(defaults, field.name)
        }


def extract_directives(text: str) -> tuple[str, Directives, bool]:
    """Strip ``[[sim: ...]]`` directives from ``text``; later directives override earlier ones.

    Returns the cleaned text, the directives and whether any directive was present.
    """
    directives = Directives()
    found = False
    for match in _DIRECTIVE_RE.finditer(text):
        directives = directives.overridden_by(Directives.parse(match.group("body")))
        found = True
    if not found:
        return text, directives, False
    return _DIRECTIVE_RE.sub("", text).strip(), directives, True


# --------------------------------------------------------------------------------------------
# Shared state: request log, counted faults, scripted faults


class SimulatorState:
    """What both servers remember, guarded by a lock because tests read it from another thread."""

    def __init__(self, max_log: int = 10_000) -> None:
        self._lock = threading.Lock()
        self._log: deque[dict[str, Any]] = deque(maxlen=max_log)
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

    def reset(self) -> int:
        """Forget logged requests, counted-fault counters and scripted faults."""
        with self._lock:
            cleared = len(self._log)
            self._log.clear()
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


# --------------------------------------------------------------------------------------------
# Request parsing


class ApiError(Exception):
    """An error answered as an OpenAI-style JSON body."""

    def __init__(
        self,
        status: int,
        message: str,
        error_type: str,
        param: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type
        self.param = param
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        """The JSON body: ``{"error": {"message", "type", "param", "code"}}``."""
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.status,
            }
        }


def bad_request(dialect: Dialect, message: str, param: str | None = None) -> ApiError:
    """A 400 in the dialect's wording of the error type."""
    error_type = "BadRequestError" if dialect == "vllm" else "invalid_request_error"
    return ApiError(400, message, error_type, param)


@dataclasses.dataclass(frozen=True)
class ImageInfo:
    """A decoded image part, as the request log reports it."""

    mime: str | None
    format: str
    bytes: int

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return dataclasses.asdict(self)


def sniff_image(data: bytes) -> str | None:
    """The image format from its magic bytes (what PIL on the real servers would accept)."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    for magic, name in _IMAGE_MAGIC:
        if data.startswith(magic):
            return name
    return None


def decode_image_url(url: str, dialect: Dialect) -> ImageInfo:
    """Validate a ``data:<mime>;base64,<data>`` URL and describe the image in it."""
    match = _DATA_URL_RE.match(url)
    if not url.startswith("data:"):
        raise bad_request(dialect, "Only base64 data URLs are supported by the simulator.")
    if match is None:
        raise bad_request(dialect, "Invalid data URL: expected data:<mime>;base64,<data>.")
    try:
        data = base64.b64decode(match.group("data"), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise bad_request(dialect, f"Invalid base64 image data: {exc}") from exc
    image_format = sniff_image(data)
    if not data or image_format is None:
        raise bad_request(dialect, "cannot identify image file")
    return ImageInfo(mime=match.group("mime"), format=image_format, bytes=len(data))


@dataclasses.dataclass
class ChatRequest:
    """A validated chat-completions request."""

    body: dict[str, Any]
    model: str
    stream: bool
    texts: list[str]
    prompt_text: str
    images: list[ImageInfo]
    directives: Directives
    canonical_messages: str
    max_tokens: int | None
    include_usage: bool
    continuous_usage: bool
    thinking: bool | None
    thinking_source: str | None


def _number(body: Mapping[str, Any], key: str) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{key} must be a number")
    return float(value)


def _positive_int(body: Mapping[str, Any], key: str) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{key} must be a positive integer")
    return value


def _requested_thinking(body: Mapping[str, Any]) -> tuple[bool | None, str | None]:
    """``enable_thinking`` as FastDeploy reads it: chat_template_kwargs, the top level (where
    metadata keys are flattened, request keys first), then metadata."""
    kwargs = body.get("chat_template_kwargs")
    if isinstance(kwargs, Mapping) and kwargs.get("enable_thinking") is not None:
        return bool(kwargs["enable_thinking"]), "chat_template_kwargs"
    if body.get("enable_thinking") is not None:
        return bool(body["enable_thinking"]), "top_level"
    metadata = body.get("metadata")
    if isinstance(metadata, Mapping) and metadata.get("enable_thinking") is not None:
        return bool(metadata["enable_thinking"]), "metadata"
    return None, None


def parse_chat_request(body: object, dialect: Dialect) -> ChatRequest:
    """Validate a request body the way the real servers would, or raise ``ApiError`` (400)."""
    if not isinstance(body, dict):
        raise bad_request(dialect, "Request body must be a JSON object.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise bad_request(dialect, "model is required.", "model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise bad_request(dialect, "messages must be a non-empty list.", "messages")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise bad_request(dialect, "stream must be a boolean.", "stream")
    stream_options = body.get("stream_options")
    if stream_options is not None and not stream:
        raise bad_request(
            dialect, "Stream options can only be defined when `stream=True`.", "stream_options"
        )
    if stream_options is not None and not isinstance(stream_options, Mapping):
        raise bad_request(dialect, "stream_options must be an object.", "stream_options")
    try:
        temperature = _number(body, "temperature")
        top_p = _number(body, "top_p")
        max_tokens = _positive_int(body, "max_completion_tokens") or _positive_int(
            body, "max_tokens"
        )
        n = _positive_int(body, "n")
    except ValueError as exc:
        raise bad_request(dialect, str(exc)) from exc
    if temperature is not None and temperature < 0:
        raise bad_request(dialect, "temperature must be >= 0.", "temperature")
    if top_p is not None and not 0 < top_p <= 1:
        raise bad_request(dialect, "top_p must be in (0, 1].", "top_p")
    if n not in (None, 1):
        raise bad_request(dialect, "The simulator supports n=1 only.", "n")
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise bad_request(dialect, "seed must be an integer.", "seed")

    last_user = max(
        (i for i, m in enumerate(messages) if isinstance(m, Mapping) and m.get("role") == "user"),
        default=None,
    )
    texts: list[str] = []
    images: list[ImageInfo] = []
    directives = Directives()
    clean_messages: list[dict[str, Any]] = []
    prompt_parts: list[str] = []
    for index, message in enumerate(messages):
        if not isinstance(message, Mapping) or message.get("role") not in ROLES:
            raise bad_request(dialect, f"messages[{index}] needs a valid role.", "messages")
        content = message.get("content")
        if content is None and message["role"] != "assistant":
            raise bad_request(dialect, f"messages[{index}].content is required.", "messages")
        parts: list[Any] = (
            [{"type": "text", "text": content}] if isinstance(content, str) else content or []
        )
        if not isinstance(parts, list):
            raise bad_request(dialect, f"messages[{index}].content must be text or parts.")
        clean_parts: list[Any] = []
        for part in parts:
            kind = part.get("type") if isinstance(part, Mapping) else None
            if kind == "text" and isinstance(part.get("text"), str):
                part_text = part["text"]
                if index == last_user:
                    try:
                        part_text, found, present = extract_directives(part_text)
                    except DirectiveError as exc:
                        raise bad_request(dialect, f"Invalid simulator directive: {exc}") from exc
                    if present:
                        directives = directives.overridden_by(found)
                    prompt_parts.append(part_text)
                texts.append(part_text)
                clean_parts.append(part_text)
            elif kind == "image_url":
                image_url = part.get("image_url")
                url = image_url.get("url") if isinstance(image_url, Mapping) else image_url
                if not isinstance(url, str):
                    raise bad_request(dialect, "image_url.url must be a string.", "messages")
                images.append(decode_image_url(url, dialect))
                clean_parts.append(hashlib.sha256(url.encode()).hexdigest())
            else:
                raise bad_request(dialect, f"Unsupported content part type: {kind!r}.")
        clean_messages.append({"role": message["role"], "content": clean_parts})
    # The last user message decides the language; without text, whatever text there is.
    prompt_text = "\n".join(prompt_parts) or "\n".join(texts)

    thinking, thinking_source = _requested_thinking(body)
    options = stream_options or {}
    return ChatRequest(
        body=body,
        model=model,
        stream=stream,
        texts=texts,
        prompt_text=prompt_text,
        images=images,
        directives=directives,
        canonical_messages=json.dumps(clean_messages, ensure_ascii=False, sort_keys=True),
        max_tokens=max_tokens,
        # Both servers default include_usage to true once a stream_options object is sent.
        include_usage=stream_options is not None and bool(options.get("include_usage", True)),
        continuous_usage=bool(options.get("continuous_usage_stats", False)),
        thinking=thinking,
        thinking_source=thinking_source,
    )


def estimate_prompt_tokens(request: ChatRequest, profile: ModelProfile) -> int:
    """A deterministic stand-in for the chat template + tokenizer: text units, a fixed overhead
    per message, and ``image_tokens`` per image."""
    messages = request.body.get("messages") or []
    return (
        sum(simtext.count_units(text) for text in request.texts)
        + PROMPT_OVERHEAD_PER_MESSAGE * len(messages)
        + PROMPT_OVERHEAD
        + profile.image_tokens * len(request.images)
    )


# --------------------------------------------------------------------------------------------
# What to generate and when


Field = Literal["content", "reasoning"]


@dataclasses.dataclass
class Plan:
    """The tokens of one response and their schedule."""

    units: list[tuple[Field, str]]
    reasoning_tokens: int
    finish_reason: str
    ttft_s: float
    tokens_per_s: float
    tokens_per_chunk: int
    thinking: bool

    @property
    def completion_tokens(self) -> int:
        """Every token emitted, reasoning included (as both real servers count them)."""
        return len(self.units)

    def chunks(self) -> list[list[tuple[Field, str]]]:
        """Units grouped into stream chunks: the first token alone, then up to
        ``tokens_per_chunk`` per chunk, never mixing reasoning and answer in one chunk."""
        chunks: list[list[tuple[Field, str]]] = []
        for index, unit in enumerate(self.units):
            current = chunks[-1] if chunks else None
            if (
                current is None
                or index == 1
                or len(current) >= self.tokens_per_chunk
                or current[-1][0] != unit[0]
            ):
                chunks.append([unit])
            else:
                current.append(unit)
        return chunks

    def deadline(self, start: float, token_index: int) -> float:
        """When 1-based token ``token_index`` is ready, on the clock that gave ``start``."""
        return start + self.ttft_s + (token_index - 1) / self.tokens_per_s


def build_plan(
    profile: ModelProfile, request: ChatRequest, speed: float, fault: str | None
) -> Plan:
    """Decide the response text, its length, finish reason and timing."""
    directives = request.directives
    body = request.body
    temperature = body.get("temperature")
    # Greedy decoding does not depend on the seed.
    seed = None if temperature == 0 else body.get("seed")
    key = (profile.name, request.canonical_messages, seed, temperature)
    # Separate streams, so the answer does not change with the amount of reasoning before it.
    reasoning_rng = simtext.make_rng(*key, "reasoning")
    rng = simtext.make_rng(*key, "answer")
    language = simtext.detect_language(request.prompt_text)

    if profile.reasoning == "none":
        thinking = False
    elif profile.thinking_switch and request.thinking is not None:
        thinking = request.thinking
    else:
        thinking = profile.thinking_default if profile.thinking_switch else True

    limit = request.max_tokens
    if thinking:
        reasoning_target = (
            directives.reasoning_tokens
            if directives.reasoning_tokens is not None
            else reasoning_rng.randint(*profile.reasoning_tokens)
        )
        reasoning = simtext.compose_reasoning(reasoning_rng, language, reasoning_target)
        if directives.reasoning_tokens is not None:
            reasoning = reasoning[: directives.reasoning_tokens]
        if profile.dialect == "fastdeploy" and limit is not None:
            # FastDeploy caps thinking at reasoning_max_tokens = max(int(max_tokens*0.8), 1).
            reasoning = reasoning[: max(int(limit * 0.8), 1)]
    else:
        reasoning = []

    answer_target = (
        directives.tokens if directives.tokens is not None else rng.randint(*profile.answer_tokens)
    )
    exact_answer = directives.tokens is not None
    if fault == "length":
        # The answer must run past the cut: max_tokens, else `tokens=`, else two thirds of it.
        cut = limit if limit is not None else directives.tokens
        if cut is not None:
            answer_target = max(answer_target, cut + 16)
        exact_answer = False
    identity = simtext.identity_name(profile.name, language) if fault == "identity" else None
    answer = simtext.compose_answer(
        rng,
        language,
        answer_target,
        code=simtext.wants_code(request.prompt_text),
        identity=identity,
    )
    if exact_answer:
        answer = answer[:answer_target]

    units: list[tuple[Field, str]]
    if profile.reasoning == "think_tags" and thinking:
        opening = "<think>\n" if profile.think_open_tag else ""
        inline = opening + "".join(reasoning) + "\n</think>\n\n" + "".join(answer)
        units = [("content", unit) for unit in simtext.split_units(inline)]
        reasoning_count = len(simtext.split_units(opening + "".join(reasoning) + "\n</think>"))
    else:
        units = [("reasoning", unit) for unit in reasoning] + [("content", unit) for unit in answer]
        reasoning_count = len(reasoning)

    finish_reason = "stop"
    if fault == "length" and limit is None:
        limit = directives.tokens if directives.tokens is not None else max(1, len(units) * 2 // 3)
    if limit is not None and len(units) > limit:
        units = units[:limit]
        finish_reason = "length"
    reasoning_count = min(reasoning_count, len(units))

    if directives.ttft_ms is not None:
        ttft_s = directives.ttft_ms / 1000
    else:
        ttft_ms = profile.ttft_ms + profile.ttft_per_image_ms * len(request.images)
        ttft_s = ttft_ms / 1000 / speed
    tokens_per_s = directives.tps if directives.tps is not None else profile.tokens_per_s * speed
    tokens_per_chunk = directives.chunk or profile.tokens_per_chunk
    if directives.chunk is None and profile.dialect == "fastdeploy":
        # FastDeploy batches tokens per chunk only when the request asks for it.
        metadata = body.get("metadata")
        metadata = metadata if isinstance(metadata, Mapping) else {}
        requested = body.get("max_streaming_response_tokens") or metadata.get(
            "max_streaming_response_tokens"
        )
        if isinstance(requested, int) and not isinstance(requested, bool) and requested > 0:
            tokens_per_chunk = requested
    return Plan(
        units=units,
        reasoning_tokens=reasoning_count,
        finish_reason=finish_reason,
        ttft_s=ttft_s,
        tokens_per_s=tokens_per_s,
        tokens_per_chunk=tokens_per_chunk,
        thinking=thinking,
    )


# --------------------------------------------------------------------------------------------
# Wire format


def _dumps(data: object) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


class Wire:
    """Builds the JSON objects of one response in the profile's dialect."""

    def __init__(self, profile: ModelProfile, request_id: str, prompt_tokens: int) -> None:
        self.profile = profile
        self.dialect = profile.dialect
        self.request_id = request_id
        self.created = int(time.time())
        self.prompt_tokens = prompt_tokens

    def envelope(self, choices: list[dict[str, Any]]) -> dict[str, Any]:
        """A ``chat.completion.chunk`` around ``choices``."""
        return {
            "id": self.request_id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.profile.name,
            "system_fingerprint": FINGERPRINT,
            "choices": choices,
        }

    def usage(self, completion_tokens: int, reasoning_tokens: int) -> dict[str, Any]:
        """Usage counts; FastDeploy adds token details, vLLM does not."""
        usage: dict[str, Any] = {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": self.prompt_tokens + completion_tokens,
        }
        if self.dialect == "fastdeploy":
            usage["prompt_tokens_details"] = {"cached_tokens": 0}
            usage["completion_tokens_details"] = {
                "reasoning_tokens": reasoning_tokens,
                "image_tokens": 0,
            }
        return usage

    def role_chunk(self) -> dict[str, Any]:
        """The role-only first chunk."""
        delta: dict[str, Any] = {"role": "assistant", "content": ""}
        if self.dialect == "fastdeploy":
            delta.update(
                reasoning_content="",
                tool_calls=None,
                prompt_token_ids=None,
                completion_token_ids=None,
            )
            return self.envelope([{"index": 0, "delta": delta}])
        return self.envelope(
            [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}]
        )

    def text_chunk(
        self, units: list[tuple[Field, str]], finish_reason: str | None, elapsed: float
    ) -> dict[str, Any]:
        """A chunk carrying ``units`` (all of one field)."""
        if self.dialect == "fastdeploy":
            # FastDeploy's max_streaming_response_tokens batches several one-token choices.
            choices = []
            for index, (field, unit) in enumerate(units):
                choice: dict[str, Any] = {
                    "index": 0,
                    "delta": {
                        "content": unit if field == "content" else "",
                        "reasoning_content": unit if field == "reasoning" else "",
                        "tool_calls": None,
                        "prompt_token_ids": None,
                        "completion_token_ids": None,
                    },
                    "logprobs": None,
                    "draft_logprobs": None,
                    "arrival_time": round(elapsed, 6),
                }
                if finish_reason is not None and index == len(units) - 1:
                    choice["finish_reason"] = finish_reason
                choices.append(choice)
            return self.envelope(choices)
        field = units[0][0]
        key = "content" if field == "content" else self.profile.reasoning_field
        vllm_choice: dict[str, Any] = {
            "index": 0,
            "delta": {key: "".join(unit for _, unit in units)},
            "logprobs": None,
            "finish_reason": finish_reason,
        }
        if finish_reason is not None:
            vllm_choice["stop_reason"] = None
        return self.envelope([vllm_choice])

    def usage_chunk(self, completion_tokens: int, reasoning_tokens: int) -> dict[str, Any]:
        """The usage-only chunk (``choices: []``) sent before ``[DONE]``."""
        chunk = self.envelope([])
        chunk["usage"] = self.usage(completion_tokens, reasoning_tokens)
        return chunk

    def error_event(self, shape: str | None) -> dict[str, Any]:
        """A mid-stream error event in one of the shapes the real servers use."""
        shape = shape or ("fastdeploy_a" if self.dialect == "fastdeploy" else "vllm")
        message = f"request[{self.request_id}] generate stream error: engine step failed"
        if shape == "fastdeploy_b":
            return {"object": "error", "message": message, "code": 500}
        error_type = "internal_error" if shape == "fastdeploy_a" else "InternalServerError"
        return {"error": {"message": message, "type": error_type, "param": None, "code": 500}}

    def completion(self, plan: Plan, include_usage: bool) -> dict[str, Any]:
        """A non-streaming ``chat.completion``."""
        reasoning = "".join(u for f, u in plan.units if f == "reasoning")
        content = "".join(u for f, u in plan.units if f == "content")
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if self.dialect == "fastdeploy":
            message["reasoning_content"] = reasoning or None
            message["tool_calls"] = None
        else:
            if self.profile.reasoning == "field":
                message[self.profile.reasoning_field] = reasoning or None
            message["tool_calls"] = []
        result: dict[str, Any] = {
            "id": self.request_id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.profile.name,
            "system_fingerprint": FINGERPRINT,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": plan.finish_reason,
                }
            ],
        }
        if include_usage:
            result["usage"] = self.usage(plan.completion_tokens, plan.reasoning_tokens)
        return result


# --------------------------------------------------------------------------------------------
# HTTP


LOGGED_PARAMS = (
    "temperature",
    "top_p",
    "top_k",
    "max_tokens",
    "max_completion_tokens",
    "seed",
    "n",
    "stop",
    "presence_penalty",
    "frequency_penalty",
    "repetition_penalty",
    "stream_options",
    "chat_template_kwargs",
    "metadata",
    "enable_thinking",
    "max_streaming_response_tokens",
    "request_id",
    "user",
)


async def _sleep_until(loop: asyncio.AbstractEventLoop, deadline: float) -> None:
    delay = deadline - loop.time()
    if delay > 0:
        await asyncio.sleep(delay)


class ModelServer:
    """The aiohttp application of one dialect, serving its profiles."""

    def __init__(
        self,
        dialect: Dialect,
        profiles: Mapping[str, ModelProfile],
        state: SimulatorState,
        speed: float = 1.0,
    ) -> None:
        self.dialect = dialect
        self.profiles = {name: p for name, p in profiles.items() if p.dialect == dialect}
        # Scripted faults may target a model of either server: both share one state.
        self.all_models = frozenset(profiles)
        self.state = state
        self.speed = speed

    def app(self) -> web.Application:
        """A fresh ``web.Application`` with every route."""
        app = web.Application(client_max_size=256 * 1024 * 1024)
        app.router.add_get("/health", self.health)
        app.router.add_get("/v1/models", self.models)
        app.router.add_post("/v1/chat/completions", self.chat_completions)
        app.router.add_get("/_sim/requests", self.list_requests)
        app.router.add_delete("/_sim/requests", self.clear_requests)
        app.router.add_get("/_sim/faults", self.list_faults)
        app.router.add_post("/_sim/faults", self.script_faults)
        app.router.add_get("/_sim/profiles", self.list_profiles)
        app.on_response_prepare.append(_add_simulator_header)
        return app

    async def health(self, request: web.Request) -> web.Response:
        """``GET /health``: 200 with an empty body, as both servers answer when healthy."""
        return web.Response(status=200)

    async def models(self, request: web.Request) -> web.Response:
        """``GET /v1/models`` in the OpenAI list shape."""
        owner = "FastDeploy" if self.dialect == "fastdeploy" else "vllm"
        created = int(time.time())
        data = [
            {
                "id": name,
                "object": "model",
                "created": created,
                "owned_by": owner,
                "root": name,
                "parent": None,
                "max_model_len": profile.max_model_len,
            }
            for name, profile in self.profiles.items()
        ]
        return web.json_response({"object": "list", "data": data})

    async def list_requests(self, request: web.Request) -> web.Response:
        """``GET /_sim/requests[?model=&server=]``: the request log, oldest first."""
        entries = self.state.requests(request.query.get("model"), request.query.get("server"))
        return web.json_response({"object": "list", "data": entries}, dumps=_dumps)

    async def clear_requests(self, request: web.Request) -> web.Response:
        """``DELETE /_sim/requests``: clear the log, fault counters and scripted faults."""
        return web.json_response({"cleared": self.state.reset()})

    async def list_faults(self, request: web.Request) -> web.Response:
        """``GET /_sim/faults``: scripted faults still pending, per model."""
        return web.json_response({"pending": self.state.scripted()})

    async def script_faults(self, request: web.Request) -> web.Response:
        """``POST /_sim/faults {"model": ..., "faults": ["500", null, "drop"]}``."""
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _error_response(bad_request(self.dialect, "Body must be JSON."))
        if not isinstance(body, Mapping) or not isinstance(body.get("faults"), list):
            return _error_response(bad_request(self.dialect, "Expected {model, faults: [...]}."))
        model = body.get("model")
        if model not in self.all_models:
            return _error_response(_model_not_found(self.dialect, str(model), self.all_models))
        try:
            items = [Directives.from_script(item) for item in body["faults"]]
        except DirectiveError as exc:
            return _error_response(bad_request(self.dialect, f"Invalid scripted fault: {exc}"))
        pending = self.state.script(str(model), items)
        return web.json_response({"model": model, "pending": pending})

    async def list_profiles(self, request: web.Request) -> web.Response:
        """``GET /_sim/profiles``: the profiles this server serves."""
        return web.json_response({"data": [p.as_dict() for p in self.profiles.values()]})

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        """``POST /v1/chat/completions``, streaming or not."""
        raw = await request.read()
        loop = asyncio.get_running_loop()
        arrival = loop.time()
        entry = self.state.record(
            {
                "server": self.dialect,
                "received_at": time.time(),
                "model": None,
                "status": None,
                "has_authorization": "Authorization" in request.headers,
            }
        )
        try:
            return await self._chat(request, raw, arrival, entry)
        except ApiError as error:
            self.state.update(entry, status=error.status, error=error.message)
            return _error_response(error)

    async def _chat(
        self, request: web.Request, raw: bytes, arrival: float, entry: dict[str, Any]
    ) -> web.StreamResponse:
        try:
            body = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise bad_request(self.dialect, f"Invalid JSON body: {exc}") from exc
        if isinstance(body, dict):
            model = body.get("model")
            self.state.update(entry, model=model)
            # Like the real servers, an unknown model is refused before the body is examined.
            if isinstance(model, str) and model and model not in self.profiles:
                raise _model_not_found(self.dialect, model, set(self.profiles))
        parsed = parse_chat_request(body, self.dialect)
        self.state.update(
            entry,
            stream=parsed.stream,
            params={key: body[key] for key in LOGGED_PARAMS if key in body},
            enable_thinking=parsed.thinking,
            enable_thinking_source=parsed.thinking_source,
            messages=len(body["messages"]),
            roles=[m.get("role") for m in body["messages"]],
            prompt=parsed.prompt_text,
            images=[image.as_dict() for image in parsed.images],
            n_images=len(parsed.images),
            directives=parsed.directives.as_dict(),
        )
        profile = self.profiles[parsed.model]
        if parsed.images and not profile.vision:
            raise bad_request(self.dialect, self._no_vision_message(profile, len(parsed.images)))
        if profile.max_images is not None and len(parsed.images) > profile.max_images:
            raise bad_request(
                self.dialect,
                f"Too many image items in prompt, got {len(parsed.images)} "
                f"but limit is {profile.max_images}",
            )
        prompt_tokens = estimate_prompt_tokens(parsed, profile)
        if (
            self.dialect == "vllm"
            and prompt_tokens + (parsed.max_tokens or 0) > profile.max_model_len
        ):
            raise bad_request(
                self.dialect,
                f"This model's maximum context length is {profile.max_model_len} tokens. "
                f"However, you requested {prompt_tokens + (parsed.max_tokens or 0)} tokens "
                f"({prompt_tokens} in the messages, {parsed.max_tokens or 0} in the completion). "
                "Please reduce the length of the messages or completion.",
            )

        directives = self._active_directives(parsed)
        fault = directives.fault
        self.state.update(entry, fault=fault, prompt_tokens=prompt_tokens)
        if fault is not None and HTTP_FAULT_RE.match(fault):
            raise self._http_fault(int(fault), parsed.model)

        parsed = dataclasses.replace(parsed, directives=directives)
        plan = build_plan(profile, parsed, self.speed, fault)
        self.state.update(
            entry,
            completion_tokens=plan.completion_tokens,
            reasoning_tokens=plan.reasoning_tokens,
            finish_reason=plan.finish_reason,
            thinking=plan.thinking,
            scheduled_ttft_ms=round(plan.ttft_s * 1000, 3),
            scheduled_tokens_per_s=plan.tokens_per_s,
            tokens_per_chunk=plan.tokens_per_chunk,
        )
        wire = Wire(profile, f"chatcmpl-{uuid.uuid4().hex}", prompt_tokens)
        handler = self._stream if parsed.stream else self._complete
        try:
            return await handler(request, parsed, plan, wire, directives, arrival, entry)
        except (ConnectionResetError, asyncio.CancelledError):
            self.state.update(entry, outcome="client_disconnected")
            raise

    def _active_directives(self, parsed: ChatRequest) -> Directives:
        """The prompt's directives, overridden by a scripted fault, with counted faults
        switched off once they have fired ``times`` times."""
        directives = parsed.directives
        scripted = self.state.next_scripted(parsed.model)
        if scripted is not None:
            directives = directives.overridden_by(scripted)
        if directives.fault is not None and directives.times is not None:
            key = hashlib.sha256(
                (parsed.model + "\0" + json.dumps(parsed.body["messages"], sort_keys=True)).encode()
            ).hexdigest()
            if self.state.seen_before(key) >= directives.times:
                directives = dataclasses.replace(directives, fault=None, times=None)
        return directives

    def _no_vision_message(self, profile: ModelProfile, count: int) -> str:
        if self.dialect == "vllm":
            return f"{profile.name} is not a multimodal model"
        return (
            f"Model {profile.name} does not support multimodal input; "
            f"the request contains {count} image(s)."
        )

    def _http_fault(self, status: int, model: str) -> ApiError:
        if status == 404:
            return _model_not_found(self.dialect, model, set(self.profiles))
        if status == 429:
            return ApiError(
                429,
                "Too many requests, current max concurrency is 512",
                "RateLimitError" if self.dialect == "vllm" else "rate_limit_error",
                headers={"Retry-After": "1"},
            )
        if status >= 500:
            error_type = "InternalServerError" if self.dialect == "vllm" else "internal_error"
            return ApiError(status, "Internal server error (simulated fault)", error_type)
        return bad_request(self.dialect, f"Request rejected (simulated {status})")

    async def _stream(
        self,
        request: web.Request,
        parsed: ChatRequest,
        plan: Plan,
        wire: Wire,
        directives: Directives,
        arrival: float,
        entry: dict[str, Any],
    ) -> web.StreamResponse:
        loop = asyncio.get_running_loop()
        fault = directives.fault
        response = web.StreamResponse(
            status=200,
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache",
            },
        )
        await response.prepare(request)

        async def send(data: dict[str, Any] | str, trailing: str = "") -> None:
            payload = data if isinstance(data, str) else _dumps(data)
            await response.write(f"data: {payload}{trailing}\n\n".encode())

        # FastDeploy writes its role chunk with a space before the blank line.
        role_trailing = " " if self.dialect == "fastdeploy" else ""
        start = arrival
        role_sent = False
        if fault == "stall":
            await send(wire.role_chunk(), role_trailing)
            role_sent = True
            await asyncio.sleep(directives.stall_s)
            start = arrival + directives.stall_s

        chunks = plan.chunks()
        total = plan.completion_tokens
        # A mid-stream fault always lands inside the stream, even for a short answer.
        after = directives.after if directives.after is not None else DEFAULT_FAULT_AFTER
        after = min(after, total - 1)
        drop_after = max(1, directives.after) if directives.after is not None else 1
        emitted = 0
        malformed_sent = False
        for number, units in enumerate(chunks):
            is_last = number == len(chunks) - 1
            await _sleep_until(loop, plan.deadline(start, emitted + len(units)))
            if not role_sent:
                await send(wire.role_chunk(), role_trailing)
                role_sent = True
            if fault == "error_event" and (emitted >= after or is_last):
                await send(wire.error_event(directives.shape))
                await send("[DONE]")
                self.state.update(entry, status=200, emitted_tokens=emitted, outcome="error_event")
                await response.write_eof()
                return response
            chunk = wire.text_chunk(
                units, plan.finish_reason if is_last else None, loop.time() - arrival
            )
            emitted += len(units)
            if parsed.continuous_usage:
                chunk["usage"] = wire.usage(emitted, min(emitted, plan.reasoning_tokens))
            await send(chunk)
            if fault == "drop" and emitted >= drop_after:
                self.state.update(entry, status=200, emitted_tokens=emitted, outcome="dropped")
                _abort(request)
                return response
            if fault == "malformed" and emitted >= after and not malformed_sent:
                # A JSON object cut short, as a proxy splitting a line would leave it.
                await send('{"id":"' + wire.request_id + '","choices":[{"delta":{"content":"')
                malformed_sent = True

        if parsed.include_usage and fault != "no_usage":
            await send(wire.usage_chunk(total, plan.reasoning_tokens))
        await send("[DONE]")
        self.state.update(entry, status=200, emitted_tokens=emitted, outcome="completed")
        await response.write_eof()
        return response

    async def _complete(
        self,
        request: web.Request,
        parsed: ChatRequest,
        plan: Plan,
        wire: Wire,
        directives: Directives,
        arrival: float,
        entry: dict[str, Any],
    ) -> web.StreamResponse:
        loop = asyncio.get_running_loop()
        fault = directives.fault
        start = arrival + (directives.stall_s if fault == "stall" else 0.0)
        if fault == "drop":
            await _sleep_until(loop, plan.deadline(start, 1))
            self.state.update(entry, outcome="dropped")
            _abort(request)
            return web.Response(status=500)
        await _sleep_until(loop, plan.deadline(start, plan.completion_tokens))
        if fault == "error_event":
            raise ApiError(500, wire.error_event(None)["error"]["message"], "InternalServerError")
        if fault == "malformed":
            self.state.update(entry, status=200, outcome="malformed")
            return web.Response(
                status=200,
                text='{"id":"' + wire.request_id + '","choices":[{"message":',
                content_type="application/json",
            )
        body = wire.completion(plan, include_usage=fault != "no_usage")
        self.state.update(
            entry, status=200, emitted_tokens=plan.completion_tokens, outcome="completed"
        )
        return web.json_response(body, dumps=_dumps)


def _abort(request: web.Request) -> None:
    transport = request.transport
    if transport is not None:
        transport.abort()


def _model_not_found(dialect: Dialect, model: str, known: Iterable[str]) -> ApiError:
    if dialect == "vllm":
        return ApiError(404, f"The model `{model}` does not exist.", "NotFoundError", "model")
    names = ", ".join(sorted(known))
    return ApiError(
        404,
        f"Unsupported model: [{model}], support [{names}] or default",
        "invalid_request_error",
        "model",
    )


def _error_response(error: ApiError) -> web.Response:
    return web.json_response(error.body(), status=error.status, headers=error.headers)


async def _add_simulator_header(request: web.Request, response: web.StreamResponse) -> None:
    response.headers["X-Simulator"] = "gradebench"


# --------------------------------------------------------------------------------------------
# Running the servers


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
            runner = web.AppRunner(
                app, handler_cancellation=True, access_log=None, shutdown_timeout=0.5
            )
            await runner.setup()
            runners.append(runner)
            sock = _listen(host, port)
            await web.SockSite(runner, sock).start()
            urls[dialect] = _url(host, sock.getsockname()[1])
    except BaseException:
        for runner in reversed(runners):
            await runner.cleanup()
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


__all__ = [
    "ApiError",
    "DirectiveError",
    "Directives",
    "ModelServer",
    "Plan",
    "RunningSimulator",
    "SimulatorState",
    "SimulatorThread",
    "build_plan",
    "describe",
    "extract_directives",
    "parse_chat_request",
    "run",
    "start_servers",
]
