"""The client against the simulator: dialects, usage, timings and every fault (DESIGN §5, §8)."""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
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
from inference.metrics import speed_metrics
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


# --- Shapes the simulator does not send: a scripted server ---------------------------------


class ScriptedServer:
    """An HTTP server that answers every chat request with the next scripted SSE body: a list
    of (seconds to wait first, bytes to write), written as they are, flushed one by one."""

    def __init__(self) -> None:
        self.scripts: list[list[tuple[float, bytes]]] = []
        scripts = self.scripts

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                script = scripts.pop(0)
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                try:
                    for wait, data in script:
                        time.sleep(wait)
                        self.wfile.write(data)
                        self.wfile.flush()
                except OSError:  # the client gave up (a read timeout): nothing left to do
                    pass
                self.close_connection = True

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def config(self, read_timeout_s: float = 10) -> EndpointConfig:
        url = f"http://127.0.0.1:{self.server.server_port}/v1"
        return EndpointConfig(url, "", "scripted", "vllm", "none", 30, read_timeout_s)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def scripted() -> Iterator[ScriptedServer]:
    server = ScriptedServer()
    yield server
    server.close()


def chunk(content: str | None = None, **fields: Any) -> bytes:
    delta = {} if content is None else {"content": content}
    body = {
        "id": "x",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "served/name",
        "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
        **fields,
    }
    return b"data: " + json.dumps(body).encode() + b"\n\n"


USAGE_END = (
    b'data: {"id":"x","object":"chat.completion.chunk","created":1,"model":"served/name",'
    b'"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":4,"total_tokens":9}}\n\n'
)


def once(server: ScriptedServer, script: list[tuple[float, bytes]], **kwargs: Any):  # type: ignore[no-untyped-def]
    server.scripts.append(script)
    config = server.config(**kwargs)
    return stream_chat(config, ask(config, "hi"))


def test_served_model_and_first_fingerprint_are_kept(simulator: SimulatorThread) -> None:
    result, _ = run(endpoint(simulator, ERNIE), "hi [[sim: tps=2000]]")
    assert result.served_model == ERNIE
    assert result.system_fingerprint == "gradebench-simulator"
    assert result.scheduling_lag_ms is not None and result.scheduling_lag_ms >= 0


def test_clock_skewed_created_and_textless_chunks_do_not_touch_timings(
    scripted: ScriptedServer,
) -> None:
    skewed = int(time.time()) + 86_400 * 365  # a server clock a year ahead
    result = once(
        scripted,
        [
            (0.0, chunk("", created=skewed, system_fingerprint="")),  # role-like, no text
            (0.05, chunk(None, created=-5, system_fingerprint="fp-1")),  # an empty delta
            (0.05, chunk("Hello", created=skewed)),
            (0.02, chunk("", created=skewed, system_fingerprint="fp-2")),  # text-free again
            (0.02, chunk(" world", created=skewed)),
            (0.0, USAGE_END + b"data: [DONE]\n\n"),
        ],
    )
    assert result.content == "Hello world" and result.text_chunks == 2 and result.chunks == 6
    assert result.system_fingerprint == "fp-1" and result.served_model == "served/name"
    t = result.timings
    assert t.t_first_chunk is not None and t.t_first_token is not None
    assert t.t_last_token is not None and t.t_end is not None
    # The first text came after two text-free chunks; the clock in `created` plays no part.
    assert 0.09 <= t.t_first_token < 1.0 and t.t_first_chunk < t.t_first_token
    assert 0.02 <= t.t_last_token - t.t_first_token < 1.0
    metrics = speed_metrics(t, result.token_counts()["completion_tokens"])
    assert all(value is not None and value > 0 for value in metrics.values())


def test_sse_lines_split_across_reads_with_crlf_comments_and_multiline_data(
    scripted: ScriptedServer,
) -> None:
    whole = chunk("Hi").replace(b"\n", b"\r\n")
    result = once(
        scripted,
        [
            (0.0, b": keep-alive comment\r\n\r\nevent: message\r\nid: 1\r\n"),
            (0.02, whole[:20]),  # one event written in two pieces
            (0.02, whole[20:]),
            (0.0, b'data: {"id":"x","object":"chat.completion.chunk","created":1,\n'),
            (0.0, b'data: "choices":[{"index":0,"delta":{"content":"!"}}]}\n\n'),
            (0.0, USAGE_END + b"data: [DONE]\n\n"),
        ],
    )
    assert result.content == "Hi!" and result.text_chunks == 2


def test_error_event_line_fails_with_its_message(scripted: ScriptedServer) -> None:
    with pytest.raises(ModelError) as caught:
        once(
            scripted,
            [
                (0.0, chunk("partial")),
                (0.0, b'event: error\ndata: {"message": "engine died", "code": 503}\n\n'),
            ],
        )
    error = caught.value
    assert "error event in the stream: engine died (code 503)" in error.message
    assert "after the answer had started" in error.message and not error.retryable
    assert error.partial is not None and error.partial.content == "partial"


def test_a_chunk_that_is_not_an_object_is_malformed(scripted: ScriptedServer) -> None:
    with pytest.raises(ModelError) as caught:
        once(scripted, [(0.0, b"data: [1, 2]\n\n")])
    assert "malformed chunk in the stream" in caught.value.message and caught.value.retryable


def test_a_stream_of_textless_chunks_fails_without_timings(scripted: ScriptedServer) -> None:
    with pytest.raises(ModelError) as caught:
        once(scripted, [(0.0, chunk("")), (0.0, chunk(None)), (0.0, b"data: [DONE]\n\n")])
    assert "without any text" in caught.value.message and caught.value.retryable
    partial = caught.value.partial
    assert partial is not None and partial.chunks == 2
    assert partial.timings.t_first_token is None and partial.timings.t_last_token is None
    metrics = speed_metrics(partial.timings, partial.token_counts()["completion_tokens"])
    assert set(metrics.values()) == {None}


def test_a_stream_that_stalls_midway_keeps_what_it_timed(scripted: ScriptedServer) -> None:
    with pytest.raises(ModelError) as caught:
        once(
            scripted,
            [(0.0, chunk("one")), (0.05, chunk(" two")), (3.0, chunk(" late"))],
            read_timeout_s=0.5,
        )
    error = caught.value
    assert "timed out" in error.message and "after the answer had started" in error.message
    assert not error.retryable
    partial = error.partial
    assert partial is not None and partial.content == "one two"
    t = partial.timings
    assert t.t_first_token is not None and t.t_last_token is not None
    assert 0.04 <= t.t_last_token - t.t_first_token < 0.5
    assert t.t_end is None  # the stream never ended
