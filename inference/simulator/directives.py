"""Scripting one request: ``[[sim: fault=500x3, ttft_ms=100, tps=200, tokens=40]]``.

A directive in the last user message, or an entry scripted per model through
``POST /_sim/faults``, chooses the fault and the timing or length overrides of a request
(``Directives``). For a judging request, ``quality=N`` sets the judged answer's true score and
``reply=KIND`` makes the judge's reply misbehave (see ``judging``).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

from .judging import MAX_SCORE, REPLY_KINDS

HTTP_FAULT_RE = re.compile(r"^[45]\d\d$")
NAMED_FAULTS = frozenset(
    {"stall", "error_event", "malformed", "drop", "no_usage", "length", "identity"}
)
ERROR_SHAPES = frozenset({"vllm", "fastdeploy_a", "fastdeploy_b"})
DEFAULT_STALL_S = 30.0
# A mid-stream error or malformed line comes after this many tokens unless `after=` says.
DEFAULT_FAULT_AFTER = 4

_DIRECTIVE_RE = re.compile(r"\[\[\s*sim\s*:(?P<body>.*?)\]\]", re.IGNORECASE | re.DOTALL)
_FAULT_RE = re.compile(r"^(?P<name>[a-z_]+|\d{3})(?:x(?P<times>\d+))?$")


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
    quality: int | None = None
    reply: str | None = None

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
            if key == "reply":
                if raw.lower() not in REPLY_KINDS:
                    raise DirectiveError(f"reply must be one of {sorted(REPLY_KINDS)}")
                return {"reply": raw.lower()}
            if key == "quality":
                quality = int(raw)
                if not 0 <= quality <= MAX_SCORE:
                    raise DirectiveError(f"quality out of range 0–{MAX_SCORE}: {raw}")
                return {"quality": quality}
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
