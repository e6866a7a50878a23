"""The model simulator, driven over real HTTP by plain consumers (httpx and openai).

These tests pin down what the simulator sends, so that the app's client can be tested against it
and its timing trusted. They do not use the app's client.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2 as httpx
import openai
import pytest
from django.core.management import CommandError, call_command

from inference.simulator import SimulatorThread, load_profiles, merge_profiles, running
from inference.simulator.text import count_units, split_units

REPO = Path(__file__).resolve().parents[2]

ERNIE_SMALL = "baidu/ERNIE-4.5-0.3B-Paddle"
ERNIE_MEDIUM = "baidu/ERNIE-4.5-21B-A3B-Paddle"
ERNIE_VL = "baidu/ERNIE-4.5-VL-28B-A3B-Paddle"
R1_SMALL = "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B"
R1_LARGE = "deepseek-ai/DeepSeek-R1-Distill-Qwen-32B"
QWEN_VL = "Qwen/Qwen2.5-VL-32B-Instruct"
R1_PARSER_NEW = "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B-reasoning-parser"
R1_PARSER_OLD = "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B-reasoning-parser-old"

# Fast by default: timing is tested on its own. INSTANT is for answers of the profile's length.
FAST = "ttft_ms=1, tps=5000"
INSTANT = "ttft_ms=0, tps=1000000"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
JPEG = b"\xff\xd8\xff\xe0" + bytes(200)
LEAK_WORDS = (
    "ernie",
    "文心",
    "deepseek",
    "qwen",
    "通义",
    "gpt",
    "baidu",
    "百度",
    "阿里",
    "simulat",
)


def data_url(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


@dataclass
class Stream:
    """One streamed response as a client saw it: every `data:` payload with its arrival time."""

    status: int
    headers: httpx.Headers
    t0: float
    events: list[tuple[float, str]] = field(default_factory=list)
    error: Exception | None = None

    @property
    def payloads(self) -> list[str]:
        return [payload for _, payload in self.events]

    @property
    def chunks(self) -> list[dict[str, Any]]:
        """The JSON chunks (not [DONE], not malformed lines)."""
        parsed = []
        for payload in self.payloads:
            try:
                parsed.append(json.loads(payload))
            except json.JSONDecodeError:
                continue
        return [chunk for chunk in parsed if "choices" in chunk]

    def text(self, key: str) -> str:
        return "".join(
            choice["delta"].get(key) or "" for chunk in self.chunks for choice in chunk["choices"]
        )

    @property
    def usage(self) -> dict[str, Any] | None:
        usages = [chunk["usage"] for chunk in self.chunks if chunk.get("usage")]
        return usages[-1] if usages else None

    @property
    def finish_reasons(self) -> list[str]:
        return [
            choice["finish_reason"]
            for chunk in self.chunks
            for choice in chunk["choices"]
            if choice.get("finish_reason")
        ]

    def text_times(self) -> list[float]:
        """Arrival times of chunks carrying any text (content or reasoning)."""
        times = []
        for moment, payload in self.events:
            try:
                chunk = json.loads(payload)
            except json.JSONDecodeError:
                continue
            deltas = [choice["delta"] for choice in chunk.get("choices", [])]
            if any(
                delta.get("content") or delta.get("reasoning") or delta.get("reasoning_content")
                for delta in deltas
            ):
                times.append(moment)
        return times


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=httpx.Timeout(10.0)) as client:
        yield client


def body_for(model: str, prompt: str | list[dict[str, Any]], **params: Any) -> dict[str, Any]:
    content = prompt
    return {"model": model, "messages": [{"role": "user", "content": content}], **params}


def stream(
    http: httpx.Client,
    sim: SimulatorThread,
    model: str,
    prompt: str | list[dict[str, Any]],
    *,
    usage: bool | None = True,
    url: str | None = None,
    **params: Any,
) -> Stream:
    """POST a streaming chat completion and record every SSE data payload with its time."""
    body = body_for(model, prompt, stream=True, **params)
    if usage is not None:
        body["stream_options"] = {"include_usage": usage}
    target = (url or sim.base_url(model)) + "/chat/completions"
    t0 = time.perf_counter()
    with http.stream("POST", target, json=body) as response:
        result = Stream(response.status_code, response.headers, t0)
        if response.status_code != 200:
            response.read()
            result.events.append((time.perf_counter(), response.text))
            return result
        try:
            for line in response.iter_lines():
                if line.startswith("data:"):
                    result.events.append((time.perf_counter(), line[5:].strip()))
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.ReadTimeout) as exc:
            result.error = exc
    return result


def complete(
    http: httpx.Client, sim: SimulatorThread, model: str, prompt: Any, **params: Any
) -> httpx.Response:
    return http.post(
        sim.base_url(model) + "/chat/completions", json=body_for(model, prompt, **params)
    )


def logged(http: httpx.Client, sim: SimulatorThread, **query: str) -> list[dict[str, Any]]:
    response = http.get(sim.vllm_url.removesuffix("/v1") + "/_sim/requests", params=query)
    assert response.status_code == 200
    return response.json()["data"]


# --- endpoints --------------------------------------------------------------------------------


def test_each_port_lists_its_own_models(simulator: SimulatorThread, http: httpx.Client) -> None:
    fastdeploy = http.get(simulator.fastdeploy_url + "/models")
    vllm = http.get(simulator.vllm_url + "/models")

    assert fastdeploy.json()["object"] == "list"
    assert {m["id"] for m in fastdeploy.json()["data"]} == {ERNIE_SMALL, ERNIE_MEDIUM, ERNIE_VL}
    vllm_models = {m["id"] for m in vllm.json()["data"]}
    assert {R1_SMALL, R1_LARGE, QWEN_VL} <= vllm_models
    assert not vllm_models & {ERNIE_SMALL, ERNIE_MEDIUM, ERNIE_VL}
    assert all(m["object"] == "model" for m in vllm.json()["data"])
    assert fastdeploy.headers["X-Simulator"] == "gradebench"


def test_health_answers_200_on_both_ports(simulator: SimulatorThread, http: httpx.Client) -> None:
    for base in (simulator.fastdeploy_url, simulator.vllm_url):
        assert http.get(base.removesuffix("/v1") + "/health").status_code == 200


# --- stream shape -----------------------------------------------------------------------------


def test_vllm_stream_is_role_chunk_text_usage_then_done(
    simulator: SimulatorThread, http: httpx.Client
) -> None:
    result = stream(http, simulator, QWEN_VL, f"Describe a sunset. [[sim: {FAST}, tokens=30]]")

    assert result.status == 200
    assert result.headers["content-type"].startswith("text/event-stream")
    assert result.headers["X-Simulator"] == "gradebench"
    assert result.payloads[-1] == "[DONE]"
    chunks = result.chunks
    assert {c["id"] for c in chunks} == {chunks[0]["id"]}
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == QWEN_VL for c in chunks)
    assert all(c["system_fingerprint"] == "gradebench-simulator" for c in chunks)
    assert all(isinstance(c["created"], int) for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {
        "prompt_tokens": chunks[-1]["usage"]["prompt_tokens"],
        "completion_tokens": 30,
        "total_tokens": chunks[-1]["usage"]["prompt_tokens"] + 30,
    }
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-2])
    assert count_units(result.text("content")) == 30


def test_fastdeploy_stream_has_reasoning_field_in_role_chunk_and_token_details(
    simulator: SimulatorThread, http: httpx.Client
) -> None:
    result = stream(http, simulator, ERNIE_SMALL, f"Name three rivers. [[sim: {FAST}, tokens=12]]")

    role = result.chunks[0]["choices"][0]["delta"]
    assert role["role"] == "assistant" and role["content"] == ""
    assert role["reasoning_content"] == ""
    usage = result.chunks[-1]["usage"]
    assert result.chunks[-1]["choices"] == []
    assert usage["completion_tokens"] == 12
    assert usage["completion_tokens_details"]["reasoning_tokens"] == 0
    assert result.finish_reasons == ["stop"]
    assert result.payloads[-1] == "[DONE]"


def test_fastdeploy_without_stream_options_sends_no_usage(
    simulator: SimulatorThread, http: httpx.Client
) -> None:
    result = stream(http, simulator, ERNIE_SMALL, f"Hi [[sim: {FAST}, tokens=8]]", usage=None)

    assert result.usage is None
    assert all(chunk["choices"] for chunk in result.chunks)
    assert result.payloads[-1] == "[DONE]"


def test_fastdeploy_batches_tokens_as_several_choices_when_asked(
    simulator: SimulatorThread, http: httpx.Client
) -> None:
    result = stream(
        http,
        simulator,
        ERNIE_SMALL,
        f"Hi [[sim: {FAST}, tokens=10]]",
        max_streaming_response_tokens=3,
    )

    sizes = [len(chunk["choices"]) for chunk in result.chunks if chunk["choices"]]
    # Role chunk, the first token alone, then batches of three one-token choices.
    assert sizes == [1, 1, 3, 3, 3]
    assert count_units(result.text("content")) == 10


def test_vllm_chunks_carry_several_tokens(simulator: SimulatorThread, http: httpx.Client) -> None:
    result = stream(http, simulator, QWEN_VL, f"Hi [[sim: {FAST}, tokens=10, chunk=4]]")

    pieces = [c["choices"][0]["delta"]["content"] for c in result.chunks[1:-1]]
    assert [count_units(piece) for piece in pieces] == [1, 4, 4, 1]


def test_non_streaming_response_always_has_usage(
    simulator: SimulatorThread, http: httpx.Client
) -> None:
    for model in (ERNIE_SMALL, QWEN_VL):
        response = complete(http, simulator, model, f"Hi [[sim: {FAST}, tokens=9]]")
        body = response.json()
        assert response.status_code == 200
        assert body["object"] == "chat.completion"
        assert body["choices"][0]["finish_reason"] == "stop"
        assert count_units(body["choices"][0]["message"]["content"]) == 9
        assert body["usage"]["completion_tokens"] == 9


def test_openai_package_consumes_the_stream(simulator: SimulatorThread) -> None:
    client = openai.OpenAI(base_url=simulator.vllm_url, api_key="test-key", max_retries=0)
    events = client.chat.completions.create(
        model=R1_PARSER_NEW,
        messages=[{"role": "user", "content": f"Why is the sky blue? [[sim: {FAST}, tokens=15]]"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    content, usage = "", None
    for event in events:
        if event.choices:
            content += event.choices[0].delta.content or ""
        if event.usage:
            usage = event.usage

    assert count_units(content) == 15
    assert usage is not None and usage.completion_tokens > 15
    assert simulator.requests()[-1]["has_authorization"] is True


# --- reasoning --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "field"), [(R1_PARSER_NEW, "reasoning"), (R1_PARSER_OLD, "reasoning_content")]
)
def test_vllm_reasoning_parser_uses_the_profiles_field(
    simulator: SimulatorThread, http: httpx.Client, model: str, field: str
) -> None:
    result = stream(http, simulator, model, f"Why? [[sim: {FAST}, tokens=10, reasoning_tokens=7]]")

    assert count_units(result.text(field)) == 7
    assert count_units(result.text("content")) == 10
    other = "reasoning_content" if field == "reasoning" else "reasoning"
    assert result.text(other) == ""
    assert "</think>" not in result.text("content")
    assert result.usage is not None and result.usage["completion_tokens"] == 17
    assert "completion_tokens_details" not in result.usage
    # Reasoning comes first and no chunk mixes it with the answer.
    kinds = [next(iter(c["choices"][0]["delta"])) for c in result.chunks[1:-1]]
    assert kinds == sorted(kinds, key=lambda kind: kind == "content")


def test_r1_without_parser_thinks_inline_and_lacks_the_opening_tag(
    simulator: SimulatorThread, http: httpx.Client
) -> None:
    result = stream(
        http, simulator, R1_SMALL, f"2+2? [[sim: {FAST}, tokens=10, reasoning_tokens=8]]"
    )

    content = result.text("content")
    reasoning, tag, answer = content.partition("</think>")
    assert tag and "<think>" not in content
    assert count_units(answer) == 10
    assert result.usage is not None
    assert result.usage["completion_tokens"] == count_units(content)
    assert result.text("reasoning") == result.text("reasoning_content") == ""
    assert reasoning.strip()


def test_think_profile_can_emit_the_opening_tag(http: httpx.Client) -> None:
    profiles = merge_profiles([{"name": R1_SMALL, "think_open_tag": True}])
    with SimulatorThread(profiles=profiles) as sim:
        result = stream(http, sim, R1_SMALL, f"Hi [[sim: {FAST}, tokens=5, reasoning_tokens=5]]")

    assert result.text("content").startswith("<think>\n")
    assert "</think>" in result.text("content")


@pytest.mark.parametrize(
    ("switch", "expect_reasoning"),
    [
        ({}, True),
        ({"chat_template_kwargs": {"enable_thinking": False}}, False),
        ({"chat_template_kwargs": {"enable_thinking": True}}, True),
        ({"metadata": {"enable_thinking": False}}, False),
        (
            {
                "chat_template_kwargs": {"enable_thinking": True},
                "metadata": {"enable_thinking": False},
            },
            True,
        ),
    ],
)
def test_ernie_vl_thinking_switch(
    simulator: SimulatorThread,
    http: httpx.Client,
    switch: dict[str, Any],
    expect_reasoning: bool,
) -> None:
    prompt = f"What is in the picture? [[sim: {FAST}, tokens=6, reasoning_tokens=9]]"
    result = stream(http, simulator, ERNIE_VL, prompt, **switch)

    reasoning = result.text("reasoning_content")
    assert result.usage is not None
    details = result.usage["completion_tokens_details"]
    assert count_units(result.text("content")) == 6
    if expect_reasoning:
        assert count_units(reasoning) == 9 == details["reasoning_tokens"]
        assert result.usage["completion_tokens"] == 15
    else:
        assert reasoning == "" and details["reasoning_tokens"] == 0
        assert result.usage["completion_tokens"] == 6


# --- lengths ----------------------------------------------------------------------------------


def test_max_tokens_cuts_the_answer_with_finish_reason_length(
    simulator: SimulatorThread, http: httpx.Client
) -> None:
    streamed = stream(http, simulator, QWEN_VL, f"Essay [[sim: {INSTANT}]]", max_tokens=10)
    whole = complete(http, simulator, QWEN_VL, f"Essay [[sim: {INSTANT}]]", max_tokens=10).json()

    assert streamed.finish_reasons == ["length"]
    assert count_units(streamed.text("content")) == 10
    assert streamed.usage is not None and streamed.usage["completion_tokens"] == 10
    assert whole["choices"][0]["finish_reason"] == "length"
    assert whole["usage"]["completion_tokens"] == 10


def test_max_tokens_counts_reasoning_too(simulator: SimulatorThread, http: httpx.Client) -> None:
    result = stream(
        http, simulator, R1_PARSER_NEW, f"Q [[sim: {FAST}, reasoning_tokens=30]]", max_tokens=12
    )

    assert result.finish_reasons == ["length"]
    assert count_units(result.text("reasoning")) == 12
    assert result.text("content") == ""


def test_default_answer_length_comes_from_the_profile(
    simulator: SimulatorThread, http: httpx.Client
) -> None:
    response = complete(http, simulator, ERNIE_MEDIUM, f"Tell me about tea. [[sim: {INSTANT}]]")

    low, high = load_profiles()[ERNIE_MEDIUM].answer_tokens
    # The answer ends on a finished sentence, so it may run a sentence past the drawn length.
    assert low <= response.json()["usage"]["completion_tokens"] <= high + 60


# --- timing -----------------------------------------------------------------------------------


@pytest.mark.parametrize("model", [QWEN_VL, ERNIE_SMALL])
def test_measured_ttft_and_decode_rate_match_the_script(
    simulator: SimulatorThread, http: httpx.Client, model: str
) -> None:
    ttft_ms, rate, tokens = 100.0, 200.0, 100
    worst: list[str] = []
    for attempt in range(3):  # a loaded machine may hiccup once; a broken scheduler never passes
        prompt = (
            f"Count. {attempt} [[sim: ttft_ms={ttft_ms:g}, tps={rate:g}, tokens={tokens}, chunk=3]]"
        )
        result = stream(http, simulator, model, prompt)
        times = result.text_times()
        assert result.usage is not None and result.usage["completion_tokens"] == tokens
        measured_ttft = (times[0] - result.t0) * 1000
        measured_rate = (tokens - 1) / (times[-1] - times[0])
        # Every chunk is due at first + (k-1)/rate for its last token k: no drift in the middle.
        due, text = [], ""
        for chunk in result.chunks[1:-1]:
            text += "".join(choice["delta"]["content"] for choice in chunk["choices"])
            due.append(times[0] + (count_units(text) - 1) / rate)
        lateness = [abs(arrived - when) * 1000 for arrived, when in zip(times, due, strict=True)]
        ok = (
            ttft_ms - 1 <= measured_ttft <= ttft_ms + 15
            and abs(measured_rate - rate) / rate <= 0.03
            and max(lateness) <= 15
        )
        if ok:
            return
        worst.append(
            f"ttft {measured_ttft:.1f} ms, rate {measured_rate:.1f}/s, "
            f"worst chunk {max(lateness):.1f} ms off"
        )
    pytest.fail("timing off in every attempt: " + "; ".join(worst))


@pytest.mark.parametrize("model", [QWEN_VL, ERNIE_SMALL])
def test_streams_record_when_each_chunk_was_due_and_written(
    simulator: SimulatorThread, http: httpx.Client, model: str
) -> None:
    root = simulator.base_url(model).removesuffix("/v1")
    before = http.get(root + "/_sim/streams").json()["data"]
    since = before[-1]["id"] if before else 0
    prompt = "Count. [[sim: ttft_ms=40, tps=400, tokens=30, chunk=3]]"
    result = stream(http, simulator, model, prompt, request_id="bench-1")
    assert result.usage is not None and result.usage["completion_tokens"] == 30

    records = http.get(root + "/_sim/streams", params={"since": since}).json()["data"]
    assert len(records) == 1
    record = records[0]
    assert record["id"] > since
    assert record["request"] == logged(http, simulator)[-1]["id"]
    assert record["chat_id"] == result.chunks[0]["id"]
    assert record["request_id"] == "bench-1"
    assert (record["model"], record["outcome"], record["tokens"]) == (model, "completed", 30)
    chunks = record["chunks"]
    # The text chunks the client received, each with its token count, due time and write time.
    assert len(chunks) == len(result.text_times())
    assert sum(tokens for tokens, _, _ in chunks) == 30
    scheduled = [due for _, due, _ in chunks]
    written = [at for _, _, at in chunks]
    assert scheduled[0] == pytest.approx(0.040)
    assert scheduled[-1] == pytest.approx(0.040 + 29 / 400)
    assert scheduled == sorted(scheduled) and len(set(scheduled)) == len(scheduled)
    assert written == sorted(written)
    # Never before it was due (asyncio may wake a timer up to its clock resolution early).
    assert all(at >= due - 1e-6 for due, at in zip(scheduled, written, strict=True))
    assert (record["first_scheduled_s"], record["first_write_s"]) == (scheduled[0], written[0])
    assert (record["last_scheduled_s"], record["last_write_s"]) == (scheduled[-1], written[-1])
    assert record["arrival_monotonic"] <= time.monotonic() - written[-1]

    # A non-streaming answer writes no chunks and leaves no record; `since` must be a number.
    complete(http, simulator, model, "Hi [[sim: ttft_ms=1, tps=5000, tokens=3]]")
    assert http.get(root + "/_sim/streams", params={"since": record["id"]}).json()["data"] == []
    assert http.get(root + "/_sim/streams", params={"since": "x"}).status_code == 400


def test_speed_factor_scales_profile_timing_but_not_directives(http: httpx.Client) -> None:
    with SimulatorThread(speed=4) as sim:
        complete(http, sim, ERNIE_SMALL, "Hi", max_tokens=2)
        complete(http, sim, ERNIE_SMALL, "Hi [[sim: ttft_ms=50, tps=10]]", max_tokens=2)
        scaled, exact = sim.requests()

    profile = load_profiles()[ERNIE_SMALL]
    assert scaled["scheduled_ttft_ms"] == pytest.approx(profile.ttft_ms / 4)
    assert scaled["scheduled_tokens_per_s"] == pytest.approx(profile.tokens_per_s * 4)
    assert exact["scheduled_ttft_ms"] == 50
    assert exact["scheduled_tokens_per_s"] == 10


# --- faults -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "status"), [("429", 429), ("500", 500), ("404", 404), ("503", 503)]
)
def test_http_faults_answer_openai_style_errors(
    simulator: SimulatorThread, http: httpx.Client, fault: str, status: int
) -> None:
    result = stream(http, simulator, R1_SMALL, f"Hi [[sim: fault={fault}]]")

    assert result.status == status
    error = json.loads(result.payloads[0])["error"]
    assert error["code"] == status and error["message"]
    assert (result.headers.get("Retry-After") == "1") == (status == 429)


def test_counted_faults_fail_that_many_times_then_succeed(
    simulator: SimulatorThread, http: httpx.Client
) -> None:
    prompt = f"Once [[sim: fault=500x3, {FAST}, tokens=3]]"
    statuses = [stream(http, simulator, ERNIE_SMALL, prompt).status for _ in range(5)]
    other = stream(http, simulator, ERNIE_SMALL, f"Other [[sim: fault=429x1, {FAST}, tokens=3]]")
    again = stream(http, simulator, ERNIE_SMALL, f"Other [[sim: fault=429x1, {FAST}, tokens=3]]")

    assert statuses == [500, 500, 500, 200, 200]
    assert (other.status, again.status) == (429, 200)
    assert http.delete(simulator.fastdeploy_url.removesuffix("/v1") + "/_sim/requests").json() == {
        "cleared": 7
    }
    assert stream(http, simulator, ERNIE_SMALL, prompt).status == 500


def test_stall_sends_headers_and_role_chunk_then_silence(
    simulator: SimulatorThread,
) -> None:
    timeout = httpx.Timeout(5.0, read=0.3)
    with httpx.Client(timeout=timeout) as impatient:
        started = time.perf_counter()
        result = stream(impatient, simulator, QWEN_VL, "Hi [[sim: fault=stall, stall_s=5]]")

    assert result.status == 200
    assert isinstance(result.error, httpx.ReadTimeout)
    assert len(result.chunks) == 1 and result.chunks[0]["choices"][0]["delta"]["role"]
    assert time.perf_counter() - started < 2
    deadline = time.monotonic() + 2
    while simulator.requests()[-1].get("outcome") != "client_disconnected":
        assert time.monotonic() < deadline, "the stalled stream was not cancelled"
        time.sleep(0.02)


def test_stall_then_resumes_when_the_client_waits(
    simulator: SimulatorThread, http: httpx.Client
) -> None:
    result = stream(
        http,
        simulator,
        QWEN_VL,
        "Hi [[sim: fault=stall, stall_s=0.3, ttft_ms=10, tps=1000, tokens=4]]",
    )

    assert result.text_times()[0] - result.t0 >= 0.3
    assert count_units(result.text("content")) == 4
    assert result.payloads[-1] == "[DONE]"


@pytest.mark.parametrize(
    ("model", "shape", "expected"),
    [
        (QWEN_VL, "", {"error"}),
        (ERNIE_SMALL, ", shape=fastdeploy_a", {"error"}),
        (ERNIE_SMALL, ", shape=fastdeploy_b", {"code", "message", "object"}),
    ],
)
def test_error_event_arrives_mid_stream_on_http_200(
    simulator: SimulatorThread, http: httpx.Client, model: str, shape: str, expected: set[str]
) -> None:
    result = stream(
        http, simulator, model, f"Hi [[sim: fault=error_event{shape}, {FAST}, tokens=20, chunk=1]]"
    )

    assert result.status == 200
    event = json.loads(result.payloads[-2])
    assert set(event) == expected
    error = event.get("error", event)
    assert error["code"] == 500 and error["message"]
    assert result.payloads[-1] == "[DONE]"
    assert count_units(result.text("content")) == 4
    assert result.usage is None and result.finish_reasons == []


def test_error_event_can_come_before_the_first_token(
    simulator: SimulatorThread, http: httpx.Client
) -> None:
    result = stream(http, simulator, QWEN_VL, f"Hi [[sim: fault=error_event, after=0, {FAST}]]")

    assert result.text("content") == ""
    assert "error" in json.loads(result.payloads[-2])


def test_malformed_line_is_not_json_and_the_stream_goes_on(
    simulator: SimulatorThread, http: httpx.Client
) -> None:
    result = stream(http, simulator, ERNIE_SMALL, f"Hi [[sim: fault=malformed, {FAST}, tokens=10]]")

    bad = []
    for index, payload in enumerate(result.payloads[:-1]):
        try:
            json.loads(payload)
        except json.JSONDecodeError:
            bad.append(index)
    assert len(bad) == 1 and 1 < bad[0] < len(result.payloads) - 3
    assert count_units(result.text("content")) == 10
    assert result.payloads[-1] == "[DONE]"


def test_drop_closes_the_connection_after_the_first_token(
    simulator: SimulatorThread, http: httpx.Client
) -> None:
    result = stream(http, simulator, R1_LARGE, f"Hi [[sim: fault=drop, {FAST}, tokens=10]]")

    assert isinstance(result.error, httpx.RemoteProtocolError)
    assert len(result.text_times()) == 1
    assert "[DONE]" not in result.payloads
    assert simulator.requests()[-1]["outcome"] == "dropped"


def test_no_usage_fault_omits_the_requested_usage_chunk(
    simulator: SimulatorThread, http: httpx.Client
) -> None:
    streamed = stream(http, simulator, QWEN_VL, f"Hi [[sim: fault=no_usage, {FAST}, tokens=5]]")
    whole = complete(http, simulator, QWEN_VL, f"Hi [[sim: fault=no_usage, {FAST}, tokens=5]]")

    assert streamed.usage is None and streamed.finish_reasons == ["stop"]
    assert streamed.payloads[-1] == "[DONE]"
    assert "usage" not in whole.json()


def test_length_fault_stops_early_with_finish_reason_length(
    simulator: SimulatorThread, http: httpx.Client
) -> None:
    cut = stream(http, simulator, ERNIE_SMALL, f"Hi [[sim: fault=length, {FAST}, tokens=7]]")
    capped = stream(
        http, simulator, ERNIE_SMALL, f"Hi [[sim: fault=length, {INSTANT}]]", max_tokens=25
    )

    assert cut.finish_reasons == ["length"] and count_units(cut.text("content")) == 7
    assert capped.finish_reasons == ["length"] and count_units(capped.text("content")) == 25


def test_identity_fault_names_the_model_and_default_text_never_does(
    simulator: SimulatorThread, http: httpx.Client
) -> None:
    leaked = complete(http, simulator, ERNIE_SMALL, f"你是谁？[[sim: fault=identity, {INSTANT}]]")
    assert "文心" in leaked.json()["choices"][0]["message"]["content"]

    for model in load_profiles():
        for prompt in ("Who are you and who made you?", "请介绍一下你自己，你是谁开发的？"):
            response = complete(http, simulator, model, f"{prompt} [[sim: {INSTANT}]]")
            message = response.json()["choices"][0]["message"]
            text = " ".join(str(value) for value in message.values()).lower()
            assert not [word for word in LEAK_WORDS if word in text], (model, text[:200])


def test_scripted_faults_apply_to_the_next_requests_in_order(
    simulator: SimulatorThread, http: httpx.Client
) -> None:
    control = simulator.vllm_url.removesuffix("/v1") + "/_sim/faults"
    scripted = http.post(
        control, json={"model": ERNIE_SMALL, "faults": ["500", None, "drop", "429"]}
    )
    assert scripted.json() == {"model": ERNIE_SMALL, "pending": 4}
    assert http.get(control).json()["pending"][ERNIE_SMALL][1] is None

    results = [
        stream(http, simulator, ERNIE_SMALL, f"Same [[sim: {FAST}, tokens=3]]") for _ in range(5)
    ]

    assert [r.status for r in results] == [500, 200, 200, 429, 200]
    assert isinstance(results[2].error, httpx.RemoteProtocolError)
    assert results[4].payloads[-1] == "[DONE]"
    assert http.post(control, json={"model": "nope", "faults": [None]}).status_code == 404
    assert http.post(control, json={"model": ERNIE_SMALL, "faults": ["boom"]}).status_code == 400


# --- errors -----------------------------------------------------------------------------------


def test_unknown_model_is_404_with_an_openai_error(
    simulator: SimulatorThread, http: httpx.Client
) -> None:
    for url, model in ((simulator.vllm_url, "no/such-model"), (simulator.vllm_url, ERNIE_SMALL)):
        response = http.post(url + "/chat/completions", json=body_for(model, "Hi"))
        assert response.status_code == 404
        assert response.json()["error"]["code"] == 404
        assert model in response.json()["error"]["message"]
    response = http.post(
        simulator.fastdeploy_url + "/chat/completions", json=body_for(QWEN_VL, "Hi")
    )
    assert response.status_code == 404


@pytest.mark.parametrize(
    ("model", "needle"),
    [(R1_SMALL, "is not a multimodal model"), (ERNIE_SMALL, "does not support multimodal")],
)
def test_image_sent_to_a_text_model_is_400(
    simulator: SimulatorThread, http: httpx.Client, model: str, needle: str
) -> None:
    parts = [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": data_url(PNG, "image/png")}},
    ]
    response = complete(http, simulator, model, parts)

    assert response.status_code == 400
    assert needle in response.json()["error"]["message"]


@pytest.mark.parametrize(
    "url",
    [
        "data:image/png;base64,not base64!!",
        "data:image/png," + base64.b64encode(PNG).decode(),
        "https://example.org/cat.png",
        data_url(b"plain text, not an image", "image/png"),
    ],
)
def test_malformed_image_urls_are_400(
    simulator: SimulatorThread, http: httpx.Client, url: str
) -> None:
    parts = [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": "?"}]
    assert complete(http, simulator, QWEN_VL, parts).status_code == 400


def test_malformed_requests_are_400(simulator: SimulatorThread, http: httpx.Client) -> None:
    url = simulator.vllm_url + "/chat/completions"
    bad_bodies: list[Any] = [
        {"model": QWEN_VL},
        {"model": QWEN_VL, "messages": []},
        {"model": QWEN_VL, "messages": "hi"},
        {"model": QWEN_VL, "messages": [{"role": "user", "content": "hi"}], "stream_options": {}},
        {"model": QWEN_VL, "messages": [{"role": "wizard", "content": "hi"}]},
        {"model": QWEN_VL, "messages": [{"role": "user", "content": "hi [[sim: fault=boom]]"}]},
        {"model": QWEN_VL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 0},
        [1, 2],
    ]
    for body in bad_bodies:
        response = http.post(url, json=body)
        assert response.status_code == 400, body
        assert response.json()["error"]["message"]
    not_json = http.post(url, content=b"{not json", headers={"Content-Type": "application/json"})
    assert not_json.status_code == 400


# --- request log ------------------------------------------------------------------------------


def test_request_log_records_images_and_params(
    simulator: SimulatorThread, http: httpx.Client
) -> None:
    parts: list[dict[str, Any]] = [
        {"type": "image_url", "image_url": {"url": data_url(PNG, "image/png")}},
        {"type": "image_url", "image_url": {"url": data_url(JPEG, "image/jpeg")}},
        {"type": "text", "text": f"Compare the two pictures. [[sim: {FAST}, tokens=5]]"},
    ]
    stream(
        http,
        simulator,
        ERNIE_VL,
        parts,
        temperature=0.7,
        top_p=0.8,
        max_tokens=64,
        seed=42,
        chat_template_kwargs={"enable_thinking": False},
    )
    complete(http, simulator, QWEN_VL, f"Another [[sim: {FAST}, tokens=2]]")

    entries = logged(http, simulator, model=ERNIE_VL)
    assert len(entries) == 1
    entry = entries[0]
    assert entry["server"] == "fastdeploy" and entry["stream"] is True
    assert entry["n_images"] == 2
    assert entry["images"] == [
        {"mime": "image/png", "format": "png", "bytes": len(PNG)},
        {"mime": "image/jpeg", "format": "jpeg", "bytes": len(JPEG)},
    ]
    assert entry["params"]["temperature"] == 0.7
    assert entry["params"]["top_p"] == 0.8
    assert entry["params"]["max_tokens"] == 64
    assert entry["params"]["seed"] == 42
    assert entry["params"]["stream_options"] == {"include_usage": True}
    assert entry["enable_thinking"] is False
    assert entry["enable_thinking_source"] == "chat_template_kwargs"
    assert entry["prompt"] == "Compare the two pictures."
    assert entry["prompt_tokens"] >= 2 * load_profiles()[ERNIE_VL].image_tokens
    assert entry["completion_tokens"] == 5 and entry["outcome"] == "completed"
    assert isinstance(entry["received_at"], float)
    assert len(logged(http, simulator)) == 2

    http.delete(simulator.vllm_url.removesuffix("/v1") + "/_sim/requests")
    assert logged(http, simulator) == []


# --- text -------------------------------------------------------------------------------------


def test_same_request_gives_the_same_text(simulator: SimulatorThread, http: httpx.Client) -> None:
    def answer(prompt: str, **params: Any) -> str:
        response = complete(http, simulator, ERNIE_MEDIUM, f"{prompt} [[sim: {INSTANT}]]", **params)
        return response.json()["choices"][0]["message"]["content"]

    first = answer("Explain photosynthesis.", seed=1, temperature=0.7)
    assert answer("Explain photosynthesis.", seed=1, temperature=0.7) == first
    assert answer("Explain photosynthesis.", seed=2, temperature=0.7) != first
    assert answer("Explain gravity.", seed=1, temperature=0.7) != first
    assert answer("Explain photosynthesis.", seed=1, temperature=0) == answer(
        "Explain photosynthesis.", seed=2, temperature=0
    )
    streamed = stream(
        http,
        simulator,
        ERNIE_MEDIUM,
        f"Explain photosynthesis. [[sim: {INSTANT}]]",
        seed=1,
        temperature=0.7,
    )
    assert streamed.text("content") == first


def test_answers_follow_the_prompt_language_and_use_markdown(
    simulator: SimulatorThread, http: httpx.Client
) -> None:
    def answer(prompt: str) -> str:
        response = complete(http, simulator, ERNIE_MEDIUM, f"{prompt} [[sim: {INSTANT}]]")
        return response.json()["choices"][0]["message"]["content"]

    chinese = answer("请解释什么是光合作用。")
    english = answer("Please explain photosynthesis.")
    code = answer("Write a Python function that removes empty values from a list.")

    assert sum("\u4e00" <= ch <= "\u9fff" for ch in chinese) > len(chinese) / 3
    assert not any("\u4e00" <= ch <= "\u9fff" for ch in english)
    assert "**" in english and ("\n- " in english or "\n1. " in english)
    assert "```" in code


def test_units_split_and_join_back_to_the_same_text() -> None:
    text = "Hello, wonderful world!\n\n你好，世界。 mixed 中文 text\n</think>\n\n```py\nx = 1\n```"
    units = split_units(text)

    assert "".join(units) == text
    assert "\n</think>" in units
    assert units.count("世") == 1
    assert all(len(unit.strip()) <= 8 for unit in units)


# --- profiles and commands --------------------------------------------------------------------


def test_profiles_file_overrides_and_adds_models(tmp_path: Path) -> None:
    path = tmp_path / "profiles.json"
    path.write_text(
        json.dumps(
            [
                {"name": ERNIE_SMALL, "tokens_per_s": 500},
                {"name": "org/new-model", "dialect": "vllm", "answer_tokens": [5, 10]},
            ]
        )
    )
    profiles = load_profiles(path)

    assert profiles[ERNIE_SMALL].tokens_per_s == 500
    assert profiles[ERNIE_SMALL].dialect == "fastdeploy"
    assert profiles["org/new-model"].answer_tokens == (5, 10)
    path.write_text(json.dumps([{"name": ERNIE_SMALL, "colour": "blue"}]))
    with pytest.raises(ValueError, match="colour"):
        load_profiles(path)
    path.write_text(json.dumps([{"name": "org/other"}]))
    with pytest.raises(ValueError, match="profile #1"):
        load_profiles(path)


def test_management_command_rejects_a_bad_profiles_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text("{nope")
    with pytest.raises(CommandError, match="cannot read profiles"):
        call_command("simulate_models", profiles=str(path))


@pytest.mark.parametrize(
    "command",
    [
        [sys.executable, "-m", "inference.simulator"],
        [sys.executable, "manage.py", "simulate_models"],
    ],
    ids=["python-m", "manage.py"],
)
def test_command_serves_on_ephemeral_ports_and_stops_on_sigterm(command: list[str]) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [*command, "--fastdeploy-port", "0", "--vllm-port", "0", "--speed", "5"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline(), process.stdout.readline()]
        assert lines[0].startswith("fastdeploy http://127.0.0.1:"), lines
        assert lines[1].startswith("vllm http://127.0.0.1:"), lines
        assert ERNIE_SMALL in lines[0] and QWEN_VL in lines[1]
        vllm_url = lines[1].split()[1]
        models = httpx.get(vllm_url + "/models", timeout=5).json()
        assert QWEN_VL in {m["id"] for m in models["data"]}
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_the_scripted_ttft_counts_from_the_read_that_completed_the_request(
    simulator: SimulatorThread, http: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With many requests arriving at once the last handler starts late: the script still runs
    from the request's arrival, so that lateness is not passed on to the client's TTFT."""
    from inference.simulator import running

    original = running._StampedHandler.data_received

    def busy_after_reading(handler: Any, data: bytes) -> None:
        original(handler, data)
        if b"late-handler" in data:
            time.sleep(0.15)  # the loop busy with other requests before this one's handler runs

    monkeypatch.setattr(running._StampedHandler, "data_received", busy_after_reading)
    root = simulator.base_url(ERNIE_SMALL).removesuffix("/v1")
    before = http.get(root + "/_sim/streams").json()["data"]
    since = before[-1]["id"] if before else 0

    result = stream(
        http, simulator, ERNIE_SMALL, "late-handler [[sim: ttft_ms=300, tps=400, tokens=4]]"
    )

    entry = logged(http, simulator, server="fastdeploy")[-1]
    assert entry["prompt"].startswith("late-handler") and entry["handler_wait_ms"] >= 140
    (record,) = http.get(root + "/_sim/streams", params={"since": since}).json()["data"]
    assert 0.300 <= record["first_write_s"] < 0.300 + 0.1  # not 0.450: due from arrival
    first_text = result.text_times()[0] - result.t0
    assert 0.300 <= first_text < 0.300 + 0.1


@pytest.mark.skipif(running._SO_TIMESTAMPNS is None, reason="no kernel receive stamps here")
def test_the_scripted_ttft_counts_from_when_the_request_reached_the_machine(
    simulator: SimulatorThread, http: httpx.Client
) -> None:
    """A request that arrives while the simulator's loop is busy waits in the kernel until the
    loop reads it: the script runs from the kernel's receive stamp, so that wait is the
    simulator's, logged as `read_wait_ms`, and not part of the client's TTFT."""
    root = simulator.base_url(ERNIE_SMALL).removesuffix("/v1")
    before = http.get(root + "/_sim/streams").json()["data"]
    since = before[-1]["id"] if before else 0
    loop = simulator._loop
    assert loop is not None
    busy = threading.Event()

    def hold_the_loop() -> None:
        busy.set()
        time.sleep(0.2)  # writing other streams' chunks, say

    loop.call_soon_threadsafe(hold_the_loop)
    assert busy.wait(5)
    sent = time.time()
    result = stream(
        http, simulator, ERNIE_SMALL, "late-read [[sim: ttft_ms=300, tps=400, tokens=4]]"
    )

    entry = logged(http, simulator, server="fastdeploy")[-1]
    assert entry["prompt"].startswith("late-read")
    assert entry["read_wait_ms"] >= 120, entry
    assert entry["handler_wait_ms"] >= entry["read_wait_ms"]
    assert abs(entry["arrived_at"] - sent) < 0.05, (entry["arrived_at"] - sent, entry)
    (record,) = http.get(root + "/_sim/streams", params={"since": since}).json()["data"]
    assert 0.300 <= record["first_write_s"] < 0.300 + 0.1  # not 0.500: due from arrival
    first_text = result.text_times()[0] - result.t0
    assert 0.300 <= first_text < 0.300 + 0.1


def test_a_request_read_at_once_has_no_read_wait(
    simulator: SimulatorThread, http: httpx.Client
) -> None:
    stream(http, simulator, ERNIE_SMALL, "prompt-read [[sim: ttft_ms=20, tps=400, tokens=2]]")
    entry = logged(http, simulator, server="fastdeploy")[-1]
    assert 0 <= entry["read_wait_ms"] < 50 and entry["arrived_at"] <= entry["received_at"]
