"""The client against the simulator: dialects, usage, timings and every fault (DESIGN §5, §8)."""

from __future__ import annotations

import base64
import io
import time
from typing import Any

import pytest
from PIL import Image

from inference.client import (
    EndpointConfig,
    ModelError,
    build_request,
    complete_with_retries,
    stream_chat,
)
from inference.simulator import SimulatorThread

ERNIE = "baidu/ERNIE-4.5-0.3B-Paddle"
ERNIE_VL = "baidu/ERNIE-4.5-VL-28B-A3B-Paddle"
R1 = "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B"
R1_PARSER = "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B-reasoning-parser"
R1_PARSER_OLD = "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B-reasoning-parser-old"
QWEN_VL = "Qwen/Qwen2.5-VL-32B-Instruct"


def endpoint(
    sim: SimulatorThread, model: str, reasoning: str = "none", timeout_s: float = 30
) -> EndpointConfig:
    dialect = "fastdeploy" if "ERNIE" in model else "vllm"
    return EndpointConfig(sim.base_url(model), "", model, dialect, reasoning, timeout_s, timeout_s)


def ask(config: EndpointConfig, prompt: str, **params: Any) -> dict[str, Any]:
    return build_request(
        config, [{"role": "user", "content": prompt}], {"max_tokens": 400, **params}
    )


def run(config: EndpointConfig, prompt: str, **params: Any):  # type: ignore[no-untyped-def]
    return complete_with_retries(
        config,
        ask(config, prompt, **params),
        max_attempts=3,
        backoff_base_s=0.01,
        backoff_cap_s=0.05,
    )


def test_fastdeploy_answer_with_server_usage_and_timings(simulator: SimulatorThread) -> None:
    result, attempts = run(
        endpoint(simulator, ERNIE), "介绍一下长城 [[sim: ttft_ms=80, tps=400, tokens=60]]"
    )
    assert attempts == 1 and result.finish_reason == "stop" and result.simulated
    counts = result.token_counts()
    assert counts["usage_source"] == "server" and counts["completion_tokens"] == 60
    assert result.reasoning == "" and result.content
    t = result.timings
    assert (
        t.t_first_chunk is not None and t.t_first_token is not None and t.t_last_token is not None
    )
    assert 0.075 <= t.t_first_token < 0.5  # precision is measured by make bench, not here
    assert t.t_first_answer == t.t_first_token
    assert (60 - 1) / (t.t_last_token - t.t_first_token) == pytest.approx(400, rel=0.25)


def test_inline_think_tags_without_opening_tag_are_split(simulator: SimulatorThread) -> None:
    result, _ = run(
        endpoint(simulator, R1, "think_tags"), "1+1=? [[sim: tps=4000]]", max_tokens=4000
    )
    assert result.reasoning and result.content
    assert "</think>" not in result.content and "<think>" not in result.reasoning
    t = result.timings
    assert t.t_first_answer is not None and t.t_first_token is not None
    assert t.t_first_answer > t.t_first_token  # the answer comes after the reasoning
    assert result.token_counts()["reasoning_tokens"] > 0


@pytest.mark.parametrize("model", [R1_PARSER, R1_PARSER_OLD])
def test_reasoning_field_in_both_vllm_spellings(simulator: SimulatorThread, model: str) -> None:
    result, _ = run(endpoint(simulator, model, "field"), "why is the sky blue? [[sim: tps=2000]]")
    assert result.reasoning and result.content and "</think>" not in result.content


def test_fastdeploy_thinking_switch(simulator: SimulatorThread) -> None:
    config = endpoint(simulator, ERNIE_VL, "field")
    thinking, _ = run(config, "描述一下 [[sim: tps=2000]]", thinking=True)
    silent, _ = run(config, "描述一下 [[sim: tps=2000]]", thinking=False)
    assert thinking.reasoning and not silent.reasoning
    sent = simulator.requests(ERNIE_VL)
    assert [r["enable_thinking"] for r in sent][-2:] == [True, False]


def test_images_are_sent_as_data_urls(simulator: SimulatorThread) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 16), "red").save(buffer, "PNG")
    url = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    config = endpoint(simulator, QWEN_VL)
    content = [
        {"type": "text", "text": "what colour? [[sim: tps=2000]]"},
        {"type": "image_url", "image_url": {"url": url}},
    ]
    result = stream_chat(config, build_request(config, [{"role": "user", "content": content}], {}))
    assert result.content
    logged = simulator.requests(QWEN_VL)[-1]
    assert len(logged["images"]) == 1


def test_429_then_success_counts_two_attempts(simulator: SimulatorThread) -> None:
    start = time.monotonic()
    result, attempts = run(endpoint(simulator, ERNIE), "hello [[sim: fault=429x1, tps=2000]]")
    assert attempts == 2 and result.content
    assert time.monotonic() - start >= 0.05  # Retry-After 1 s is capped at our 0.05 s cap


def test_500_three_times_fails_after_three_attempts(simulator: SimulatorThread) -> None:
    with pytest.raises(ModelError) as caught:
        run(endpoint(simulator, ERNIE), "hello [[sim: fault=500x3]]")
    assert caught.value.http_status == 500 and caught.value.attempts == 3
    assert "HTTP 500" in caught.value.message and "gave up after 3 attempts" in caught.value.message


def test_unknown_model_is_not_retried(simulator: SimulatorThread) -> None:
    config = EndpointConfig(simulator.vllm_url, "", "no-such-model", "vllm", "none", 30, 30)
    with pytest.raises(ModelError) as caught:
        run(config, "hello")
    assert caught.value.http_status == 404 and caught.value.attempts == 1
    assert not caught.value.retryable


def test_image_sent_to_a_text_model_is_a_permanent_error(simulator: SimulatorThread) -> None:
    config = endpoint(simulator, ERNIE)
    url = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n").decode()
    content = [{"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": url}}]
    with pytest.raises(ModelError) as caught:
        complete_with_retries(
            config,
            build_request(config, [{"role": "user", "content": content}], {}),
            max_attempts=3,
            backoff_base_s=0.01,
            backoff_cap_s=0.05,
        )
    assert caught.value.http_status == 400 and caught.value.attempts == 1


def test_stall_times_out_and_is_retried_then_fails(simulator: SimulatorThread) -> None:
    config = endpoint(simulator, ERNIE, timeout_s=0.5)
    with pytest.raises(ModelError) as caught:
        complete_with_retries(
            config,
            ask(config, "hi [[sim: fault=stall, stall_s=5]]"),
            max_attempts=2,
            backoff_base_s=0.01,
            backoff_cap_s=0.05,
        )
    assert "timed out" in caught.value.message and caught.value.attempts == 2


@pytest.mark.parametrize("shape", ["vllm", "fastdeploy_a", "fastdeploy_b"])
def test_error_event_mid_stream_fails_with_the_servers_message(
    simulator: SimulatorThread, shape: str
) -> None:
    model = R1 if shape == "vllm" else ERNIE
    with pytest.raises(ModelError) as caught:
        run(
            endpoint(simulator, model),
            f"hi [[sim: fault=error_event, shape={shape}, after=3, tps=2000]]",
        )
    error = caught.value
    assert (
        "error event in the stream" in error.message
        and "after the answer had started" in error.message
    )
    assert error.attempts == 1 and error.partial is not None and error.partial.content


def test_malformed_chunk_is_a_readable_failure(simulator: SimulatorThread) -> None:
    with pytest.raises(ModelError) as caught:
        run(endpoint(simulator, ERNIE), "hi [[sim: fault=malformed, tps=2000]]")
    assert "malformed chunk" in caught.value.message


def test_dropped_connection_after_first_token_is_not_retried(simulator: SimulatorThread) -> None:
    with pytest.raises(ModelError) as caught:
        run(endpoint(simulator, QWEN_VL), "hi [[sim: fault=drop, tps=2000]]")
    assert "connection failed" in caught.value.message and caught.value.attempts == 1
    assert "after the answer had started" in caught.value.message


def test_missing_usage_is_estimated_and_marked(simulator: SimulatorThread) -> None:
    result, _ = run(endpoint(simulator, ERNIE), "你好 [[sim: fault=no_usage, tps=2000]]")
    counts = result.token_counts()
    assert counts["usage_source"] == "estimated" and counts["completion_tokens"] > 0


def test_length_limit_is_reported(simulator: SimulatorThread) -> None:
    result, _ = run(endpoint(simulator, ERNIE), "写一篇长文 [[sim: tps=2000]]", max_tokens=20)
    assert result.finish_reason == "length"
    assert result.token_counts()["completion_tokens"] == 20


def test_server_down_is_retryable_and_readable() -> None:
    config = EndpointConfig("http://127.0.0.1:9/v1", "", "m", "vllm", "none", 5, 5)
    with pytest.raises(ModelError) as caught:
        complete_with_retries(
            config, ask(config, "hi"), max_attempts=2, backoff_base_s=0.01, backoff_cap_s=0.02
        )
    assert caught.value.retryable and caught.value.attempts == 2
    assert "connection failed" in caught.value.message


def test_inline_reasoning_cut_off_by_the_length_limit_is_reasoning(
    simulator: SimulatorThread,
) -> None:
    result, _ = run(endpoint(simulator, R1, "think_tags"), "1+1=? [[sim: tps=4000]]", max_tokens=10)
    assert result.finish_reason == "length"
    assert result.reasoning and result.content == ""
    assert result.timings.t_first_answer is None


def test_identity_leaks_are_detected_when_generated(simulator: SimulatorThread) -> None:
    from inference.generate import _outcome

    result, _ = run(endpoint(simulator, ERNIE), "你是谁 [[sim: fault=identity, tps=3000]]")
    assert _outcome(result)["identity_leaks"]
    clean, _ = run(endpoint(simulator, ERNIE), "你是谁 [[sim: tps=3000]]")
    assert _outcome(clean)["identity_leaks"] == []
