"""Simulated judges: a judging request is answered with a score as JSON, not with an answer.

A chat request is a **judging request** when its ``response_format`` is a JSON schema named
``gradebench_judgement`` (``{"type": "json_schema", "json_schema": {"name":
"gradebench_judgement", …}}``), or, for servers that are sent no ``response_format``, when a
system message states the reply format: it contains ``gradebench_judgement``, or both quoted
keys ``"rationale"`` and ``"score"`` (as the judge prompt's ``{"rationale": "…", "score": …}``
does).

The FastDeploy-style server refuses a request for structured output (``response_format`` of type
``json_schema`` or ``json_object``, or a ``guided_*`` option) with HTTP 400, as FastDeploy does
unless started with ``--guided-decoding-backend``; the vLLM-style server takes it.

The reply is ``{"rationale": "…", "score": N}`` (rationale first, as schema-ordered decoding
writes it), and N follows a rule tests can recompute:

* the **judged text** is the text of the last user message, directives taken out (it holds the
  answer being judged);
* its **true score** is the directive ``quality=Q`` when the text carries ``[[sim: quality=Q]]``,
  else ``sha256("quality\\0" + judged text)`` (first 8 bytes, big-endian) modulo 11;
* each judge model adds its own **noise**: ``sha256("noise\\0" + model + "\\0" + judged text)``
  (first 8 bytes, big-endian) modulo 3, minus 1, so −1, 0 or +1;
* N is the true score plus the noise, clamped to 0–10.

The same request gets the same reply (temperature or seed change nothing); two judge models
agree to within two points on every answer.

The directive ``reply=KIND`` (or a scripted ``{"reply": KIND}`` in ``POST /_sim/faults``) makes
the judge misbehave instead, in one of the ways a real judge does (``REPLY_KINDS``): no score,
11, −1, 7.5, ``"7"``, ``true``, the key ``score`` twice, two objects, a list, text around the
JSON, an empty reply, a refusal. A reply cut off by the length limit is the usual
``fault=length`` (or a small ``max_tokens``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from .text import Language, make_rng

RESPONSE_FORMAT_NAME = "gradebench_judgement"
REPLY_KINDS = frozenset(
    {
        "no_score",
        "out_of_range",
        "negative",
        "fraction",
        "string_score",
        "bool_score",
        "two_scores",
        "two_objects",
        "list",
        "extra_text",
        "empty",
        "refusal",
    }
)
MAX_SCORE = 10

_RATIONALES: dict[Language, list[str]] = {
    "en": [
        "The answer addresses the question directly and is mostly accurate.",
        "The answer is relevant but leaves out part of what was asked.",
        "The reasoning is clear, though some details are imprecise.",
        "The answer follows the requested format and covers the main points.",
        "Several statements are unsupported, which lowers the score.",
    ],
    "zh": [
        "回答直接回应了问题,内容基本准确。",
        "回答相关,但遗漏了部分要求。",
        "推理清楚,但个别细节不够准确。",
        "回答符合要求的格式,涵盖了要点。",
        "部分说法缺乏依据,因此扣分。",
    ],
}
_REFUSALS: dict[Language, str] = {
    "en": "I'm sorry, but I can't evaluate this answer.",
    "zh": "抱歉,我无法评价这个回答。",
}


def _system_texts(body: Mapping[str, Any]) -> list[str]:
    texts: list[str] = []
    for message in body.get("messages") or []:
        if not isinstance(message, Mapping) or message.get("role") != "system":
            continue
        content = message.get("content")
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            texts.extend(
                part["text"]
                for part in content
                if isinstance(part, Mapping) and isinstance(part.get("text"), str)
            )
    return texts


def is_judging(body: Mapping[str, Any]) -> bool:
    """Whether a chat request asks for a judgement (module docstring)."""
    response_format = body.get("response_format")
    if isinstance(response_format, Mapping):
        schema = response_format.get("json_schema")
        if isinstance(schema, Mapping) and schema.get("name") == RESPONSE_FORMAT_NAME:
            return True
    return any(
        RESPONSE_FORMAT_NAME in text or ('"rationale"' in text and '"score"' in text)
        for text in _system_texts(body)
    )


def _hashed(*parts: str) -> int:
    digest = hashlib.sha256("\0".join(parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big")


def true_score(judged_text: str, quality: int | None = None) -> int:
    """The score every judge starts from (module docstring)."""
    return quality if quality is not None else _hashed("quality", judged_text) % (MAX_SCORE + 1)


def judge_score(model: str, judged_text: str, quality: int | None = None) -> int:
    """The score `model` gives (module docstring)."""
    noise = _hashed("noise", model, judged_text) % 3 - 1
    return max(0, min(MAX_SCORE, true_score(judged_text, quality) + noise))


def judge_reply(
    model: str, judged_text: str, language: Language, quality: int | None, kind: str | None
) -> str:
    """The judge's whole reply: well formed, or misbehaving as `kind` says."""
    score = judge_score(model, judged_text, quality)
    rationale = make_rng("rationale", model, judged_text).choice(_RATIONALES[language])

    def reply(value: Any) -> str:
        return json.dumps({"rationale": rationale, "score": value}, ensure_ascii=False)

    other = (score + 3) % (MAX_SCORE + 1)
    variants: dict[str | None, str] = {
        None: reply(score),
        "no_score": json.dumps({"rationale": rationale}, ensure_ascii=False),
        "out_of_range": reply(MAX_SCORE + 1),
        "negative": reply(-1),
        "fraction": reply(score + 0.5 if score < MAX_SCORE else score - 0.5),
        "string_score": reply(str(score)),
        "bool_score": reply(True),
        "two_scores": reply(score)[:-1] + f', "score": {other}}}',
        "two_objects": reply(score) + "\n" + reply(other),
        "list": f"[{reply(score)}, {reply(other)}]",
        "extra_text": f"Here is my judgement:\n{reply(score)}\nI hope this helps.",
        "empty": "",
        "refusal": _REFUSALS[language],
    }
    return variants[kind]
