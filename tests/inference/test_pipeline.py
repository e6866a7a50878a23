"""The whole pipeline through real Celery worker processes and the simulator over HTTP.

The broker is the configured one: the embedded broker by default, Redis when REDIS_URL is set
(CI runs the suite both ways).
"""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from PIL import Image

from inference import dispatch
from inference.images import process_image
from inference.models import (
    Campaign,
    CampaignStatus,
    Generation,
    ModelEndpoint,
    Suite,
    TaskImage,
    TaskItem,
    TaskItemImage,
)
from inference.simulator import SimulatorThread
from tests import builders
from tests.conftest import REPO, subprocess_env

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

ERNIE = "baidu/ERNIE-4.5-0.3B-Paddle"
R1 = "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B"
QWEN_VL = "Qwen/Qwen2.5-VL-32B-Instruct"
WORKER_ENV = {
    "GENERATION_LEASE_S": "2",
    "GENERATION_REQUEUE_S": "3",
    "DISPATCH_SWEEP_S": "1",
    "MODEL_RETRY_BASE_S": "0.01",
    "MODEL_RETRY_CAP_S": "0.2",
    "MODEL_MAX_ATTEMPTS": "3",
}


@pytest.fixture
def fast_dispatch(
    settings: Any, celery_worker_process: Callable[..., Any]
) -> Iterator[Callable[..., Any]]:
    """Start workers that share one private queue, with short leases and back-off."""
    settings.GENERATION_LEASE_S = 2
    settings.GENERATION_REQUEUE_S = 3
    queue = f"pipeline-{os.getpid()}-{time.monotonic_ns()}"
    settings.CELERY_TASK_DEFAULT_QUEUE = queue

    def start(**env: str) -> Any:
        return celery_worker_process(queue=queue, **{**WORKER_ENV, **env})

    yield start


def endpoint(sim: SimulatorThread, slug: str, model: str, **fields: Any) -> ModelEndpoint:
    defaults: dict[str, Any] = {
        "name": slug,
        "model": model,
        "dialect": "fastdeploy" if "ERNIE" in model else "vllm",
        "base_url": sim.base_url(model) if model in sim.profiles else sim.vllm_url,
        "reasoning": "think_tags" if "R1" in model else "none",
        "vision": "VL" in model,
        "max_concurrency": 4,
        "timeout_s": 20,
    }
    defaults.update(fields)
    return ModelEndpoint.objects.create(slug=slug, **defaults)


def png(colour: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (900, 900), colour).save(buffer, "PNG")
    return buffer.getvalue()


def make_item(
    suite: Suite, external_id: str, prompt: str, code: str = "QA", image: bytes | None = None
) -> TaskItem:
    item = builders.item(suite, external_id, code, prompt=prompt)
    if image is not None:
        processed = process_image(image)
        stored, _ = TaskImage.objects.get_or_create(
            sha256=processed.sha256,
            defaults={
                "format": processed.format,
                "mime": processed.mime,
                "width": processed.width,
                "height": processed.height,
                "original": processed.original,
                "thumbnail": processed.thumbnail,
                "size_bytes": len(processed.original),
            },
        )
        TaskItemImage.objects.create(item=item, image=stored, position=0)
    return item


def make_campaign(
    slug: str, suite: Suite, endpoints: list[ModelEndpoint], **params: Any
) -> Campaign:
    """A draft campaign of these endpoints, ready to run."""
    return builders.campaign(
        slug,
        suite,
        endpoints,
        params={"max_tokens": 300, "temperature": 0.7, **params},
        status=CampaignStatus.DRAFT,
    )


def run_campaign(slug: str) -> tuple[str, str, bool]:
    out, err = StringIO(), StringIO()
    try:
        call_command("run_campaign", slug, "--wait", stdout=out, stderr=err)
        return out.getvalue(), err.getvalue(), True
    except CommandError as error:
        return out.getvalue(), err.getvalue() + str(error), False


def test_campaign_runs_end_to_end(simulator: SimulatorThread, fast_dispatch) -> None:
    suite = Suite.objects.create(name="e2e")
    for n in range(4):
        make_item(suite, f"t{n}", f"问题 {n}:为什么天空是蓝色的?[[sim: tps=3000]]")
    make_item(suite, "v0", "图片是什么颜色?[[sim: tps=3000]]", code="VQA", image=png("red"))
    ernie = endpoint(simulator, "ernie", ERNIE)
    r1 = endpoint(simulator, "r1", R1)
    qwen = endpoint(simulator, "qwen-vl", QWEN_VL, max_pixels=250_000)
    campaign = make_campaign("e2e", suite, [ernie, r1, qwen], seed=11)
    worker = fast_dispatch()

    out, err, ok = run_campaign("e2e")
    assert ok, out + err + worker.output()
    assert "succeeded 13, failed 0, cancelled 0" in out  # 4 text × 3 models + 1 vision × qwen
    generations = Generation.objects.filter(campaign=campaign)
    assert generations.count() == 13
    assert not generations.filter(endpoint__in=[ernie, r1], item__external_id="v0").exists()
    for generation in generations:
        assert generation.status == "succeeded" and generation.simulated
        assert generation.ttft_ms and generation.response_time_ms and generation.decode_tps
        assert generation.usage_source == "server" and generation.completion_tokens
        assert generation.timings["t_first_token"] is not None
    r1_answer = generations.filter(endpoint=r1).first()
    assert r1_answer is not None and r1_answer.reasoning and "</think>" not in r1_answer.content
    vision = generations.get(endpoint=qwen, item__external_id="v0")
    image = vision.request["messages"][-1]["content"][1]["image"]
    assert image["resized"] and image["width"] * image["height"] <= 250_000
    assert "base64" not in str(vision.request)
    sent = [r for r in simulator.requests(QWEN_VL) if r.get("images")]
    assert sent and sent[-1]["images"][0]["format"] == "png"
    assert {r["params"].get("seed") for r in simulator.requests(ERNIE)} == {11}
    assert Campaign.objects.get(pk=campaign.pk).status == CampaignStatus.FINISHED
    # The reproducibility record: the simulator's vLLM port has a version, FastDeploy none.
    for generation in generations.select_related("endpoint"):
        assert generation.served_model == generation.endpoint.model
        assert generation.gradebench_version
        vllm = generation.endpoint.dialect == "vllm"
        assert generation.server_version.startswith("gradebench-simulator ") == vllm
    # Launching again creates nothing new.
    assert dispatch.launch(campaign) == 0


def test_every_fault_ends_in_the_right_state(simulator: SimulatorThread, fast_dispatch) -> None:
    suite = Suite.objects.create(name="faults")
    prompts = {
        "ok": "[[sim: tps=3000]] hello",
        "429-then-ok": "[[sim: fault=429x1, tps=3000]] hello",
        "500-thrice": "[[sim: fault=500x3]] hello",
        "stall": "[[sim: fault=stall, stall_s=6]] hello",
        "error-event": "[[sim: fault=error_event, after=3, tps=3000]] hello",
        "malformed": "[[sim: fault=malformed, tps=3000]] hello",
        "drop": "[[sim: fault=drop, tps=3000]] hello",
        "no-usage": "[[sim: fault=no_usage, tps=3000]] 你好",
        "length": "[[sim: fault=length, tps=3000]] write a lot",
    }
    for external_id, prompt in prompts.items():
        make_item(suite, external_id, prompt)
    ernie = endpoint(simulator, "ernie", ERNIE, timeout_s=1)
    campaign = make_campaign("faults", suite, [ernie])
    other = Suite.objects.create(name="other")
    make_item(other, "img", "what is this?", code="VQA", image=png("blue"))
    make_item(other, "plain", "hello [[sim: tps=3000]]")
    text_model_as_vision = endpoint(simulator, "rejects-images", ERNIE, vision=True)
    unknown = endpoint(simulator, "unknown", "no-such-model", base_url=simulator.vllm_url)
    make_campaign("other", other, [text_model_as_vision, unknown])
    worker = fast_dispatch()

    out, err, ok = run_campaign("faults")
    assert not ok and "failed" in err, out + err
    state = {
        g.item.external_id: g
        for g in Generation.objects.filter(campaign=campaign).select_related("item")
    }
    assert len(state) == len(prompts)
    expect = {
        "ok": ("succeeded", 1, ""),
        "429-then-ok": ("succeeded", 2, ""),
        "500-thrice": ("failed", 3, "HTTP 500"),
        "stall": ("failed", 3, "timed out"),
        "error-event": ("failed", 1, "error event in the stream"),
        "malformed": ("failed", 1, "malformed chunk"),
        "drop": ("failed", 1, "connection failed"),
        "no-usage": ("succeeded", 1, ""),
        "length": ("succeeded", 1, ""),
    }
    for external_id, (status, attempts, error) in expect.items():
        generation = state[external_id]
        assert (generation.status, generation.attempts) == (status, attempts), (
            external_id,
            generation.error,
            worker.output()[-2000:],
        )
        assert error in generation.error, (external_id, generation.error)
    assert state["no-usage"].usage_source == "estimated" and state["no-usage"].completion_tokens
    assert state["length"].finish_reason == "length"
    assert state["error-event"].content  # what arrived before the error is kept for diagnosis

    out, err, ok = run_campaign("other")
    assert not ok
    other_state = {
        (g.endpoint.slug, g.item.external_id): g
        for g in Generation.objects.filter(campaign__slug="other").select_related(
            "endpoint", "item"
        )
    }
    assert other_state[("rejects-images", "img")].http_status == 400
    assert other_state[("rejects-images", "img")].attempts == 1
    assert other_state[("rejects-images", "plain")].status == "succeeded"
    assert other_state[("unknown", "plain")].http_status == 404
    assert "HTTP 404" in other_state[("unknown", "plain")].error


def _overlap(intervals: list[tuple[datetime, datetime]]) -> int:
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    peak = current = 0
    for _, step in events:
        current += step
        peak = max(peak, current)
    return peak


def test_concurrency_cap_holds_across_two_workers(
    simulator: SimulatorThread, fast_dispatch
) -> None:
    suite = Suite.objects.create(name="cap")
    for n in range(12):
        make_item(suite, f"q{n}", f"q{n} [[sim: ttft_ms=300, tps=400, tokens=120]]")
    capped = endpoint(simulator, "capped", ERNIE, max_concurrency=3)
    campaign = make_campaign("cap", suite, [capped])
    fast_dispatch()
    fast_dispatch()
    out, err, ok = run_campaign("cap")
    assert ok, out + err
    intervals = [
        (g.started_at, g.finished_at)
        for g in Generation.objects.filter(campaign=campaign)
        if g.started_at and g.finished_at
    ]
    assert len(intervals) == 12
    assert _overlap(intervals) == 3  # used to the full, never above
    workers = set(Generation.objects.filter(campaign=campaign).values_list("worker", flat=True))
    assert workers  # recorded


def test_worker_killed_mid_request_is_retried_not_lost_not_duplicated(
    simulator: SimulatorThread, fast_dispatch
) -> None:
    suite = Suite.objects.create(name="kill")
    for n in range(4):
        make_item(suite, f"k{n}", f"k{n} [[sim: ttft_ms=1500, tps=200, tokens=200]]")
    slow = endpoint(simulator, "slow", ERNIE)
    campaign = make_campaign("kill", suite, [slow])
    first = fast_dispatch()
    dispatch.launch(campaign)
    deadline = time.monotonic() + 20
    while not simulator.requests(ERNIE):  # a request is in flight (first token after 1.5 s)
        assert time.monotonic() < deadline, first.output()
        time.sleep(0.05)
    os.kill(first.process.pid, signal.SIGKILL)
    assert Generation.objects.filter(campaign=campaign, status="running").exists()
    first.process.wait()
    fast_dispatch()

    out, err, ok = run_campaign("kill")
    assert ok, out + err
    generations = Generation.objects.filter(campaign=campaign)
    assert generations.count() == 4
    assert set(generations.values_list("status", flat=True)) == {"succeeded"}
    prompts = [r["prompt"] for r in simulator.requests(ERNIE)]
    assert all(any(p.startswith(f"k{n}") for p in prompts) for n in range(4))
    assert len(prompts) > 4  # some were sent twice: once to the killed worker


@pytest.mark.redis
def test_redis_restarted_mid_run_still_completes_every_generation_once(
    simulator: SimulatorThread, fast_dispatch, settings: Any
) -> None:
    """A private Redis (no persistence) is restarted while `run_campaign --wait` runs."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    def start_redis() -> subprocess.Popen[bytes]:
        command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                   "--appendonly", "no"]  # fmt: skip
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    return process
            time.sleep(0.05)
        raise AssertionError("redis-server did not start")

    url = f"redis://127.0.0.1:{port}/0"
    redis = start_redis()
    runner = None
    try:
        suite = Suite.objects.create(name="restart")
        for n in range(10):
            make_item(suite, f"r{n}", f"r{n} [[sim: ttft_ms=200, tps=300, tokens=150]]")
        campaign = make_campaign(
            "restart", suite, [endpoint(simulator, "restart", ERNIE, max_concurrency=2)]
        )
        worker = fast_dispatch(CELERY_BROKER_URL=url)
        env = subprocess_env(
            CELERY_BROKER_URL=url,
            CELERY_DEFAULT_QUEUE=settings.CELERY_TASK_DEFAULT_QUEUE,
            **WORKER_ENV,
        )
        runner = subprocess.Popen(
            [sys.executable, "manage.py", "run_campaign", "restart", "--wait"],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        deadline = time.monotonic() + 30
        while Generation.objects.filter(campaign=campaign, status="succeeded").count() < 2:
            assert time.monotonic() < deadline and runner.poll() is None, worker.output()
            time.sleep(0.1)
        redis.terminate()
        redis.wait()
        time.sleep(1)
        redis = start_redis()  # empty: every message that was waiting is gone
        try:
            output, _ = runner.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            runner.kill()
            output, _ = runner.communicate()
            states = list(
                Generation.objects.filter(campaign=campaign).values_list(
                    "status", "enqueued_at", "worker"
                )
            )
            Path("/tmp/restart-worker.log").write_text(worker.output())
            raise AssertionError(f"{output}\n{states}\n{worker.output()[-4000:]}") from None
        assert runner.returncode == 0, output + worker.output()[-3000:]
        assert "succeeded 10, failed 0, cancelled 0" in output
        generations = Generation.objects.filter(campaign=campaign)
        assert generations.count() == 10
        assert set(generations.values_list("status", flat=True)) == {"succeeded"}
    finally:
        if runner is not None and runner.poll() is None:
            runner.kill()
        redis.terminate()
        redis.wait()


def test_worker_stopping_hands_running_generations_back_and_a_restart_resumes_them(
    simulator: SimulatorThread, fast_dispatch
) -> None:
    """SIGTERM (Celery's warm shutdown) mid-answer: the worker exits in seconds, not after the
    answers, and what it ran is queued again, unfailed; the next worker completes it."""
    suite = Suite.objects.create(name="stop")
    for n in range(4):
        # About 15 s per answer: a chunk every 0.2 s, 75 tokens.
        make_item(suite, f"s{n}", f"s{n} [[sim: ttft_ms=100, tps=5, tokens=75]]")
    slow = endpoint(simulator, "slow", ERNIE, timeout_s=60)
    campaign = make_campaign("stop", suite, [slow])
    first = fast_dispatch()
    dispatch.launch(campaign)
    generations = Generation.objects.filter(campaign=campaign)
    deadline = time.monotonic() + 20
    while generations.filter(status="running").count() < 4 or len(simulator.requests(ERNIE)) < 4:
        assert time.monotonic() < deadline, first.output()
        time.sleep(0.05)
    time.sleep(1)  # every stream is answering

    stopped_at = time.monotonic()
    first.process.send_signal(signal.SIGTERM)
    first.process.wait(timeout=30)
    took = time.monotonic() - stopped_at
    assert took < 8, (took, first.output()[-3000:])  # the answers need another 13 s
    assert first.process.returncode == 0, first.output()[-3000:]
    rows = list(
        generations.values_list("status", "attempts", "claim_token", "lease_expires_at", "content")
    )
    assert rows == [("queued", 0, "", None, "")] * 4, (rows, first.output()[-3000:])
    assert Campaign.objects.get(pk=campaign.pk).status == CampaignStatus.RUNNING

    fast_dispatch()  # no launch, no command: a new worker resumes on its own
    deadline = time.monotonic() + 60
    while generations.filter(status="succeeded").count() < 4:
        assert not generations.filter(status="failed").exists(), list(generations.values())
        assert time.monotonic() < deadline, list(generations.values_list("status", flat=True))
        time.sleep(0.2)
    for generation in generations:
        assert generation.attempts == 1 and generation.completion_tokens == 75, generation.error
    assert Campaign.objects.get(pk=campaign.pk).status == CampaignStatus.FINISHED
    prompts = [r["prompt"] for r in simulator.requests(ERNIE)]
    assert len(prompts) == 8  # each sent twice: the abandoned answer and the complete one
