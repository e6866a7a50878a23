"""A campaign against a real llama-cpp-python server through a real worker (`make test-real`).

That server sends no usage while streaming, so every generation's tokens are estimated and
marked `estimated`; our simulator is not the only server the pipeline has talked to.
"""

from __future__ import annotations

import os
import subprocess
from typing import TYPE_CHECKING

import pytest
from django.utils import timezone

from inference import generate
from inference.models import Campaign, CampaignModel, Generation, ModelEndpoint, Suite
from inference.record import probe_server_version
from inference.version import gradebench_version
from tests.inference.test_pipeline import make_campaign, make_item, run_campaign

if TYPE_CHECKING:
    from tests.real_server import LlamaServer

pytest_plugins = ["tests.real_server"]
pytestmark = [pytest.mark.real_server, pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def test_campaign_against_a_real_server_succeeds_with_estimated_usage(
    llama_server: LlamaServer, celery_worker_process, settings
) -> None:
    settings.CELERY_TASK_DEFAULT_QUEUE = "real-server"
    suite = Suite.objects.create(name="stories")
    for n, prompt in enumerate(
        ["Once upon a time", "The little dog", "A girl named Lily", "One day"]
    ):
        make_item(suite, f"s{n}", prompt)
    endpoint = ModelEndpoint.objects.create(
        slug="stories260k",
        name="stories260K",
        model=llama_server.model,
        dialect="openai",
        base_url=llama_server.base_url,
        max_concurrency=1,
        timeout_s=60,
    )
    campaign = make_campaign("real", suite, [endpoint], max_tokens=48, temperature=0.8, seed=3)
    worker = celery_worker_process(queue="real-server", concurrency=2)

    out, err, ok = run_campaign("real")
    assert ok, out + err + worker.output()[-3000:]
    generations = Generation.objects.filter(campaign=campaign)
    assert generations.count() == 4
    for generation in generations:
        assert generation.status == "succeeded" and not generation.simulated
        assert generation.content.strip()
        assert generation.usage_source == "estimated"
        assert generation.completion_tokens and generation.completion_tokens > 5
        assert generation.finish_reason in {"length", "stop"}
        assert generation.ttft_ms and generation.ttft_ms > 0
        # The tiny model writes its answer in about a millisecond: when one read carries every
        # token, the first and last token arrive together and decode speed is unknown (empty).
        if generation.response_time_ms == generation.ttft_ms:
            assert generation.decode_tps is None and generation.tpot_ms is None
        else:
            assert generation.decode_tps and generation.decode_tps > 0
        assert generation.attempts == 1


def test_real_server_version_is_probed_and_recorded_with_a_generation(
    llama_server: LlamaServer, settings
) -> None:
    """llama-cpp-python names itself only in its FastAPI description (`/openapi.json`)."""
    installed = subprocess.run(
        [os.environ["LLAMA_SERVER_PYTHON"], "-c", "import llama_cpp; print(llama_cpp.__version__)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    expected = f"🦙 llama.cpp Python API {installed}"
    assert probe_server_version(llama_server.base_url) == expected

    settings.DISPATCH_CHAIN_MAX = 1
    suite = Suite.objects.create(name="stories-record")
    item = make_item(suite, "s0", "Once upon a time")
    endpoint = ModelEndpoint.objects.create(
        slug="stories260k-record",
        name="stories260K",
        model=llama_server.model,
        base_url=llama_server.base_url,
        max_concurrency=1,
        timeout_s=60,
    )
    campaign = make_campaign("real-record", suite, [endpoint], max_tokens=16, seed=3)
    Campaign.objects.filter(pk=campaign.pk).update(status="running", launched_at=timezone.now())
    generation = Generation.objects.create(campaign=campaign, item=item, endpoint=endpoint)
    assert generate.run_generation(generation.pk) == "succeeded"  # the worker's code, in process
    generation.refresh_from_db()
    assert generation.served_model == llama_server.model
    assert generation.server_version == expected
    assert generation.gradebench_version == gradebench_version()
    assert generation.request["model"] == llama_server.model
    member = CampaignModel.objects.get(campaign=campaign, endpoint=endpoint)
    assert (member.server_version, member.server_probed_at is not None) == (expected, True)
