"""What a judge is asked to reply, and the strict reading of its reply (DESIGN §10).

A judge replies with one JSON object, `{"rationale": "…", "score": N}`, N an integer 0–10. The
request asks for it as structured output (`RESPONSE_FORMAT`, named `gradebench_judgement`) where
the server accepts it, and the judge prompt states the same format in words, so a server that
ignores `response_format` can still comply.

`read_reply` accepts exactly that and nothing near it: the whole reply (surrounding whitespace
aside) must be one JSON object with an integer `score` from 0 to 10 and a string `rationale`;
other keys are ignored. Anything else gives no score and says why (`Reply.problem`): a missing
or repeated score, a score out of range, fractional, quoted or boolean, text around the JSON,
an empty reply, a refusal, a reply cut off by the length limit. A default score is never made
up: the judgement is then `unparseable`, its raw text kept.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

RESPONSE_FORMAT_NAME = "gradebench_judgement"
"""The name of the reply's JSON schema; the model simulator knows a judging request by it."""
MIN_SCORE, MAX_SCORE = 0, 10
REPLY_SCHEMA: dict[str, Any] = {
    "type": "object",
    # Rationale first: a model decoding in schema order explains before it scores.
    "properties": {
        "rationale": {"type": "string"},
        "score": {"type": "integer", "minimum": MIN_SCORE, "maximum": MAX_SCORE},
    },
    "required": ["rationale", "score"],
    "additionalProperties": False,
}
RESPONSE_FORMAT: dict[str, Any] = {
    "type": "json_schema",
    "json_schema": {"name": RESPONSE_FORMAT_NAME, "schema": REPLY_SCHEMA, "strict": True},
}
"""`response_format` as OpenAI, vLLM, llama.cpp and FastDeploy (with a guided-decoding backend)
accept it."""
MAX_PROBLEM = 500  # Judgement.problem
QUOTE_CHARS = 60


@dataclass(frozen=True)
class Reply:
    """A judge's reply as read: a score and its rationale, or no score and the reason why."""

    score: int | None
    rationale: str
    problem: str

    @property
    def parsed(self) -> bool:
        return self.score is not None


class _Unreadable(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise _Unreadable(f"the key {key!r} appears more than once")
        seen[key] = value
    return seen


def _no_constants(name: str) -> Any:
    raise _Unreadable(f"{name} is not JSON")


def _quote(text: str) -> str:
    text = " ".join(text.split())
    return repr(text if len(text) <= QUOTE_CHARS else text[:QUOTE_CHARS] + "…")


def _problem(text: str) -> Reply:
    return Reply(None, "", text[:MAX_PROBLEM])


def read_reply(text: str, finish_reason: str = "") -> Reply:
    """Read a judge's reply (the answer content, reasoning apart); see the module docstring."""
    if finish_reason == "length":
        return _problem("the reply was cut off by the length limit (finish_reason=length)")
    body = text.strip()
    if not body:
        return _problem("empty reply")
    if body.startswith("["):
        return _problem("a JSON list, not one object")
    if not body.startswith("{"):
        if "{" in body:
            return _problem(f"text before the JSON object: {_quote(body)}")
        return _problem(f"not a JSON object: {_quote(body)}")
    try:
        value = json.loads(body, object_pairs_hook=_unique_keys, parse_constant=_no_constants)
    except _Unreadable as error:
        return _problem(str(error))
    except json.JSONDecodeError as error:
        if error.msg == "Extra data":
            return _problem(f"text after the JSON object: {_quote(body[error.pos :])}")
        return _problem(f"not valid JSON ({error.msg} at character {error.pos})")
    return _read_object(value)


def _read_object(value: dict[str, Any]) -> Reply:
    # A reply starting with "{" that parses whole is an object.
    rationale = value.get("rationale")
    if "score" not in value:
        return _problem("no score in the reply")
    score = value["score"]
    if isinstance(score, bool) or not isinstance(score, int):
        return _problem(f"the score is not an integer: {json.dumps(score, ensure_ascii=False)}")
    if not MIN_SCORE <= score <= MAX_SCORE:
        return _problem(f"the score {score} is outside {MIN_SCORE}–{MAX_SCORE}")
    if not isinstance(rationale, str):
        problem = "no rationale" if rationale is None else "the rationale is not a string"
        return _problem(problem)
    return Reply(score, rationale.strip(), "")
