"""A worker that begins to stop claims nothing more and hands what it runs back to the queue.

Run in this process: the lease keeper's thread does the handing back, as in a worker, so the
tests commit (transactional) for it to see their rows. The whole path through a real worker
process is in test_pipeline.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from inference import dispatch, generate
from inference.models import (
    Campaign,
    CampaignStatus,
    Generation,
    GenerationStatus,
    ModelEndpoint,
)
from inference.simulator import SimulatorThread
from tests import builders

pytestmark = pytest.mark.django_db(transaction=True)

ERNIE = "baidu/ERNIE-4.5-0.3B-Paddle"


@pytest.fixture(autouse=True)
def _not_stopping() -> Iterator[None]:
    dispatch.stopping.clear()
    yield
    dispatch.stopping.clear()


def queued(count: int) -> tuple[Campaign, list[Generation]]:
    suite = builders.suite("stopping", ["AR"] * count)
    model = builders.endpoint("model")
    campaign = builders.campaign("stopping", suite, [model], status=CampaignStatus.RUNNING)
    generations = [
        builders.generation(
            campaign,
            item,
            model,
            status=GenerationStatus.QUEUED,
            timings=builders.NO_TIMINGS,
            error="",
        )
        for item in suite.items.order_by("external_id")
    ]
    return campaign, generations


def claimed(generation: Generation) -> Generation:
    taken = dispatch.claim(generation.pk)
    assert taken is not None and taken.status == GenerationStatus.RUNNING
    return taken


def assert_requeued(generation: Generation) -> None:
    generation.refresh_from_db()
    assert generation.status == GenerationStatus.QUEUED
    assert (generation.claim_token, generation.lease_expires_at) == ("", None)
    assert (generation.enqueued_at, generation.worker) == (None, "")
    assert (generation.attempts, generation.error, generation.content) == (0, "", "")


def test_a_stopping_worker_claims_nothing_and_leaves_the_message_to_the_next() -> None:
    _, (generation,) = queued(1)
    Generation.objects.filter(pk=generation.pk).update(enqueued_at=timezone.now())
    dispatch.begin_stopping()
    assert dispatch.claim(generation.pk) is None
    assert_requeued(generation)  # enqueued_at cleared: the next worker's first sweep sends it


def test_a_stopping_worker_takes_no_next_generation_after_an_answer() -> None:
    _, (first, second) = queued(2)
    running = claimed(first)
    dispatch.begin_stopping()
    successor = dispatch.finish(running, hand_over=True, status=GenerationStatus.SUCCEEDED)
    assert successor is None
    first.refresh_from_db()
    assert first.status == GenerationStatus.SUCCEEDED  # a finished answer is kept
    assert_requeued(second)


def test_stopping_hands_every_held_generation_back_and_says_so_to_its_stream() -> None:
    campaign, (first, second, third) = queued(3)
    keeper = dispatch.LeaseKeeper()
    lost = [keeper.hold(claimed(g)) for g in (first, second)]
    finished = claimed(third)
    keeper.hold(finished)
    dispatch.finish(finished, status=GenerationStatus.SUCCEEDED)

    dispatch.begin_stopping()
    for event in lost:
        assert event.wait(timeout=10)
    assert_requeued(first)
    assert_requeued(second)
    third.refresh_from_db()
    assert third.status == GenerationStatus.SUCCEEDED  # not ours any more: left alone
    assert Campaign.objects.get(pk=campaign.pk).status == CampaignStatus.RUNNING


def test_a_generation_claimed_as_the_worker_stops_is_handed_back_before_it_is_sent() -> None:
    _, (generation,) = queued(1)
    running = claimed(generation)
    dispatch.begin_stopping()
    lost = dispatch.LeaseKeeper().hold(running)
    assert lost.is_set()
    assert_requeued(generation)


def test_hand_back_needs_the_claim_token() -> None:
    _, (generation,) = queued(1)
    running = claimed(generation)
    assert not dispatch.hand_back(running.pk, "someone-else")
    assert dispatch.hand_back(running.pk, running.claim_token)
    assert_requeued(generation)
    assert not dispatch.hand_back(running.pk, running.claim_token)  # once


def test_a_handed_back_generation_is_enqueued_by_the_next_sweep(settings: Any) -> None:
    settings.CELERY_TASK_DEFAULT_QUEUE = f"stopping-{id(settings)}"  # no worker reads it
    _, (generation,) = queued(1)
    running = claimed(generation)
    Generation.objects.filter(pk=running.pk).update(
        lease_expires_at=timezone.now() + timedelta(minutes=5)
    )
    assert dispatch.hand_back(running.pk, running.claim_token)
    dispatch.stopping.clear()  # the next worker
    assert dispatch.pump([running.endpoint_id]) == 1
    generation.refresh_from_db()
    assert generation.status == GenerationStatus.QUEUED and generation.enqueued_at is not None


def test_a_stopping_worker_enqueues_nothing(settings: Any) -> None:
    settings.CELERY_TASK_DEFAULT_QUEUE = f"stopping-{id(settings)}"  # no worker reads it
    _, (generation,) = queued(1)
    dispatch.begin_stopping()
    assert dispatch.pump([generation.endpoint_id]) == 0
    assert_requeued(generation)


def test_a_generation_waiting_to_retry_is_handed_back_without_waiting_out_its_back_off(
    simulator: SimulatorThread, settings: Any
) -> None:
    settings.MODEL_MAX_ATTEMPTS = 3
    settings.MODEL_RETRY_BASE_S = settings.MODEL_RETRY_CAP_S = 60.0
    endpoint = ModelEndpoint.objects.create(
        slug="ernie", name="ERNIE", model=ERNIE, dialect="fastdeploy",
        base_url=simulator.base_url(ERNIE), timeout_s=30,
    )  # fmt: skip
    suite = builders.suite("stopping", ["QA"])
    suite.items.update(prompt="hi [[sim: fault=500]]")
    campaign = builders.campaign("stopping", suite, [endpoint], status=CampaignStatus.RUNNING)
    generation = builders.generation(
        campaign, suite.items.get(), endpoint, status=GenerationStatus.QUEUED,
        timings=builders.NO_TIMINGS, error="",
    )  # fmt: skip
    outcome: list[str] = []
    worker = threading.Thread(target=lambda: outcome.append(generate.run_generation(generation.pk)))
    worker.start()
    deadline = time.monotonic() + 10
    while not simulator.state.requests() and time.monotonic() < deadline:
        time.sleep(0.05)  # the first attempt has failed once the simulator has answered it
    time.sleep(0.2)

    started = time.monotonic()
    dispatch.begin_stopping()
    worker.join(timeout=10)

    assert not worker.is_alive()
    assert time.monotonic() - started < 5  # not the minute of back-off
    assert outcome == ["cancelled"]
    assert_requeued(generation)
