"""Wire format: the JSON objects of one response in the FastDeploy 2.x or vLLM dialect."""

from __future__ import annotations

import json
import time
from typing import Any

from .plan import Field, Plan
from .profiles import ModelProfile

FINGERPRINT = "gradebench-simulator"


def dumps(data: object) -> str:
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
