"""Metric arithmetic (DESIGN §5), the reasoning split and the token estimate."""

from __future__ import annotations

import pytest

from inference.client import EndpointConfig, StreamResult, backoff_s, build_request
from inference.metrics import ThinkTracker, Timings, estimate_tokens, speed_metrics, split_think


def test_speed_metrics_follow_the_design_definitions() -> None:
    timings = Timings(t_first_token=0.25, t_first_answer=1.25, t_last_token=2.25)
    metrics = speed_metrics(timings, completion_tokens=101)
    assert metrics["ttft_ms"] == 250.0
    assert metrics["ttfa_ms"] == 1250.0
    assert metrics["response_time_ms"] == 2250.0
    assert metrics["decode_tps"] == pytest.approx(100 / 2.0)  # (n - 1) / (last - first)
    assert metrics["tpot_ms"] == pytest.approx(2000 / 100)
    assert metrics["e2e_tps"] == pytest.approx(101 / 2.25)


def test_a_single_token_has_no_decode_speed() -> None:
    metrics = speed_metrics(Timings(t_first_token=0.1, t_last_token=0.1), completion_tokens=1)
    assert metrics["decode_tps"] is None and metrics["tpot_ms"] is None
    assert metrics["e2e_tps"] == pytest.approx(10.0)


def test_no_tokens_no_speeds() -> None:
    metrics = speed_metrics(Timings(), completion_tokens=None)
    assert set(metrics.values()) == {None}


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("<think>plan</think>answer", ("plan", "answer", True)),
        (
            "plan without opening tag\n</think>\n\nanswer",
            ("plan without opening tag", "answer", True),
        ),
        ("<think>cut off while thinking", ("cut off while thinking", "", False)),
        ("just an answer", ("", "just an answer", False)),
        ("</think>answer only", ("", "answer only", True)),
    ],
)
def test_split_think(content: str, expected: tuple[str, str, bool]) -> None:
    assert split_think(content) == expected


def test_think_tracker_finds_the_answer_across_chunk_boundaries() -> None:
    tracker = ThinkTracker()
    assert not tracker.feed("reasoning </th")
    assert not tracker.feed("ink>")
    assert not tracker.feed("\n\n")
    assert tracker.feed("The answer")


def test_estimate_tokens_counts_cjk_per_character_and_words_by_length() -> None:
    assert estimate_tokens("你好,世界") == 5
    assert estimate_tokens("tokenization") == 3
    assert estimate_tokens("a 1 b") == 3
    assert estimate_tokens("") == 0


def test_usage_from_server_wins_and_missing_usage_is_estimated() -> None:
    served = StreamResult(
        content="答案", usage={"prompt_tokens": 7, "completion_tokens": 12, "total_tokens": 19}
    )
    assert served.token_counts() == {
        "prompt_tokens": 7,
        "completion_tokens": 12,
        "total_tokens": 19,
        "reasoning_tokens": 0,
        "usage_source": "server",
    }
    estimated = StreamResult(content="答案是四", reasoning="想一想")
    assert estimated.token_counts() == {
        "prompt_tokens": None,
        "completion_tokens": 7,
        "total_tokens": None,
        "reasoning_tokens": 3,
        "usage_source": "estimated",
    }


def test_reasoning_tokens_from_completion_details() -> None:
    result = StreamResult(
        reasoning="x",
        usage={
            "prompt_tokens": 1,
            "completion_tokens": 9,
            "completion_tokens_details": {"reasoning_tokens": 4},
        },
    )
    assert result.token_counts()["reasoning_tokens"] == 4


def config(dialect: str) -> EndpointConfig:
    return EndpointConfig("http://127.0.0.1:1/v1", "", "m", dialect, "none", 60, 30)


def test_fastdeploy_request_carries_the_thinking_switch_both_ways() -> None:
    request = build_request(
        config("fastdeploy"), [], {"thinking": True, "top_k": 5, "temperature": 0.7}
    )
    assert request["stream"] is True and request["stream_options"] == {"include_usage": True}
    assert request["extra_body"] == {
        "chat_template_kwargs": {"enable_thinking": True},
        "metadata": {"enable_thinking": True},
        "top_k": 5,
    }
    assert request["temperature"] == 0.7


def test_openai_dialect_sends_only_standard_fields() -> None:
    request = build_request(config("openai"), [], {"thinking": False, "top_k": 5, "max_tokens": 9})
    assert "extra_body" not in request and request["max_tokens"] == 9


def test_backoff_is_capped_jittered_and_honours_retry_after() -> None:
    for attempt in range(1, 8):
        assert 0 <= backoff_s(attempt, 1.0, 8.0, None) <= min(8.0, 2 ** (attempt - 1))
    assert backoff_s(1, 0.01, 60, retry_after_s=2.0) >= 2.0
    assert backoff_s(1, 0.01, 5, retry_after_s=300.0) <= 5.0
