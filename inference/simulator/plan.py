"""What to generate and when: the tokens of one response, its finish reason and its schedule.

``build_plan`` decides the text (reasoning, then the answer), where ``max_tokens`` or a fault
cuts it, the time to first token and the token rate; ``Plan`` groups the tokens into stream
chunks and says when each is ready.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Literal

from . import judging as simjudging
from . import text as simtext
from .profiles import ModelProfile
from .request_parsing import ChatRequest

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
    judging = simjudging.is_judging(body)
    if judging:
        reply = simjudging.judge_reply(
            profile.name, request.prompt_text, language, directives.quality, directives.reply
        )
        # An empty reply is still one (empty) chunk, which carries the finish reason.
        answer = simtext.split_units(reply) or [""]
    else:
        answer = simtext.compose_answer(
            rng,
            language,
            answer_target,
            code=simtext.wants_code(request.prompt_text),
            identity=identity,
        )
    if exact_answer and not judging:
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
    if fault == "length" and judging:
        # A judge's reply is short: cut it two thirds of the way in, whatever max_tokens says.
        limit = max(1, len(units) * 2 // 3)
    elif fault == "length" and limit is None:
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
