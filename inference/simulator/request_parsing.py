"""Reading a chat-completions request the way the real servers would, or refusing it.

``parse_chat_request`` validates the body (messages, images as base64 data URLs, sampling
options, ``enable_thinking``) and takes the directives out of the last user message; a refusal is
an ``ApiError`` in the dialect's wording. ``estimate_prompt_tokens`` stands in for the chat
template and tokenizer.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

from . import text as simtext
from .directives import DirectiveError, Directives, extract_directives
from .profiles import Dialect, ModelProfile

ROLES = frozenset({"system", "user", "assistant", "tool", "developer"})
PROMPT_OVERHEAD_PER_MESSAGE = 4
PROMPT_OVERHEAD = 3

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
