"""Timing quality (DESIGN §5): a generation timed while its worker process ran late is stored
as degraded with the worst lag seen; one timed on time is ok. Run as the worker runs them
(`run_generation`, in this process) against the simulator."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from inference import generate
from inference.models import (
    CampaignStatus,
    Generation,
    GenerationStatus,
    ModelEndpoint,
    TimingQuality,
)
from inference.simulator import SimulatorThread
from tests import builders

ERNIE = "baidu/ERNIE-4.5-0.3B-Paddle"
# Generous, so that a test machine busy with other work does not pass it by itself; the
# interpreter held for a quarter of a second at a time below passes it every time.
THRESHOLD_MS = 100.0


@pytest.fixture
def lag_threshold(settings: Any) -> float:
    settings.TIMING_LAG_THRESHOLD_MS = THRESHOLD_MS
    return THRESHOLD_MS


def answered(simulator: SimulatorThread, prompt: str) -> Generation:
    """A queued generation of `prompt` by the simulator's FastDeploy model, run to its end."""
    endpoint = ModelEndpoint.objects.create(
        slug="ernie", name="ERNIE", model=ERNIE, dialect="fastdeploy",
        base_url=simulator.base_url(ERNIE), timeout_s=30,
    )  # fmt: skip
    suite = builders.suite("timing", ["QA"])
    item = suite.items.get()
    item.prompt = prompt
    item.save()
    campaign = builders.campaign(
        "timing", suite, [endpoint], status=CampaignStatus.RUNNING, params={"max_tokens": 400}
    )
    generation = builders.generation(
        campaign, item, endpoint, status=GenerationStatus.QUEUED, timings=builders.NO_TIMINGS
    )
    generate.run_generation(generation.pk)
    generation.refresh_from_db()
    return generation


@pytest.fixture
def interpreter_held() -> Iterator[None]:
    """A thread that keeps the interpreter lock for about a quarter of a second at a time (one
    long call into C), as a busy worker process starves its streams' threads."""
    stop = threading.Event()

    def hog() -> None:
        while not stop.is_set():
            sum(range(10_000_000))

    thread = threading.Thread(target=hog, daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join()


@pytest.mark.django_db(transaction=True)
def test_a_generation_timed_while_the_process_lagged_is_degraded_with_its_lag(
    simulator: SimulatorThread, lag_threshold: float, interpreter_held: None
) -> None:
    generation = answered(simulator, "hi [[sim: ttft_ms=50, tps=100, tokens=30]]")
    assert generation.status == GenerationStatus.SUCCEEDED
    assert generation.timing_quality == TimingQuality.DEGRADED
    assert generation.scheduling_lag_ms is not None
    assert generation.scheduling_lag_ms > lag_threshold


@pytest.mark.django_db(transaction=True)
def test_a_generation_timed_on_time_is_ok(simulator: SimulatorThread, lag_threshold: float) -> None:
    generation = answered(simulator, "hi [[sim: ttft_ms=50, tps=100, tokens=30]]")
    assert generation.status == GenerationStatus.SUCCEEDED
    assert generation.timing_quality == TimingQuality.OK
    assert generation.scheduling_lag_ms is not None
    assert 0 <= generation.scheduling_lag_ms <= lag_threshold
    assert generation.ttft_ms is not None and generation.ttft_ms > 0
    assert generation.decode_tps is not None and generation.decode_tps > 0


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "directive",
    [
        "fault=no_usage, tps=400, tokens=30",  # no usage: counted by estimate
        "tps=400, tokens=30, chunk=5",  # several tokens per chunk
    ],
)
def test_bad_input_is_stored_with_positive_timings_or_none(
    simulator: SimulatorThread, lag_threshold: float, directive: str
) -> None:
    generation = answered(simulator, f"讲个故事 [[sim: ttft_ms=20, {directive}]]")
    assert generation.status == GenerationStatus.SUCCEEDED
    for field in ("ttft_ms", "ttfa_ms", "response_time_ms", "decode_tps", "e2e_tps", "tpot_ms"):
        value = getattr(generation, field)
        assert value is None or value > 0, field
    assert generation.ttft_ms is not None and generation.completion_tokens
    assert generation.timing_quality == TimingQuality.OK


@pytest.mark.django_db(transaction=True)
def test_a_failure_before_any_text_stores_no_timing_quality(
    simulator: SimulatorThread, lag_threshold: float
) -> None:
    generation = answered(simulator, "hi [[sim: fault=400]]")
    assert generation.status == GenerationStatus.FAILED
    assert generation.ttft_ms is None and generation.decode_tps is None
    assert generation.timing_quality == "" and generation.scheduling_lag_ms is None
