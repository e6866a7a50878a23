"""The reproducibility record (DESIGN §12): gradebench's version, the server-version probe
against real HTTP servers (the simulator and small stand-ins for llama.cpp and FastAPI servers),
and what a generation run by the worker's code stores."""

from __future__ import annotations

import json
import socket
import threading
import tomllib
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from inference import generate, record
from inference.models import Campaign, CampaignModel, CampaignStatus, Generation, GenerationStatus
from inference.record import (
    PROBE_MAX_AGE,
    probe_server_version,
    server_root,
    server_version_for,
)
from inference.simulator import SimulatorThread
from inference.version import gradebench_version
from tests import builders
from tests.conftest import REPO

VLLM_MODEL = "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B"
FASTDEPLOY_MODEL = "baidu/ERNIE-4.5-0.3B-Paddle"
FAST = "[[sim: ttft_ms=1, tps=5000, tokens=12]]"


def pyproject_version() -> str:
    with (REPO / "pyproject.toml").open("rb") as handle:
        return str(tomllib.load(handle)["project"]["version"])


def test_gradebench_version_is_the_one_in_pyproject() -> None:
    assert gradebench_version() == pyproject_version() != ""


@pytest.mark.parametrize(
    ("base_url", "root"),
    [
        ("http://h:8000/v1", "http://h:8000"),
        ("http://h:8000/v1/", "http://h:8000"),
        ("https://h/proxy/v1", "https://h/proxy"),
        ("http://h:8000", "http://h:8000"),
    ],
)
def test_server_root_drops_the_api_version(base_url: str, root: str) -> None:
    assert server_root(base_url) == root


# --- The probe against real HTTP servers -------------------------------------------------------


def test_probe_reads_the_simulated_vllm_servers_version(
    simulator_server: SimulatorThread,
) -> None:
    version = probe_server_version(simulator_server.vllm_url)
    assert version == f"gradebench-simulator {pyproject_version()}"


def test_probe_of_a_fastdeploy_server_is_empty_as_fastdeploy_has_no_version_route(
    simulator_server: SimulatorThread,
) -> None:
    assert probe_server_version(simulator_server.fastdeploy_url) == ""


def test_probe_of_an_unreachable_server_or_a_malformed_url_is_empty() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    assert probe_server_version(f"http://127.0.0.1:{port}/v1", timeout=1) == ""
    assert probe_server_version("not a url") == ""


class StandIn:
    """A plain HTTP server answering fixed routes: (status, body) per path, 404 elsewhere."""

    def __init__(self, routes: dict[str, tuple[int, str]]) -> None:
        self.seen: list[tuple[str, str]] = []
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                stand_in.seen.append((self.path, self.headers.get("Authorization", "")))
                status, body = routes.get(self.path, (404, '{"detail": "Not Found"}'))
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> StandIn:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def served(**routes: Any) -> dict[str, tuple[int, str]]:
    return {f"/{path.replace('_', '.')}": answer for path, answer in routes.items()}


def openapi(title: str, version: str) -> str:
    return json.dumps({"openapi": "3.1.0", "info": {"title": title, "version": version}})


OPENAPI_LLAMA = openapi("🦙 llama.cpp Python API", "0.3.36")  # llama-cpp-python's server
OPENAPI_UNTITLED = openapi("FastAPI", "0.1.0")  # FastAPI's defaults, as FastDeploy's server


@pytest.mark.parametrize(
    ("routes", "expected"),
    [
        (served(version=(200, '{"version": "0.8.5"}')), "0.8.5"),
        (
            served(props=(200, '{"build_info": "b5170-9f2da587", "total_slots": 1}')),
            "llama.cpp b5170-9f2da587",
        ),
        (served(openapi_json=(200, OPENAPI_LLAMA)), "🦙 llama.cpp Python API 0.3.36"),
        # What FastDeploy serves: FastAPI's untitled defaults, which say nothing.
        (served(openapi_json=(200, OPENAPI_UNTITLED)), ""),
        # A route that answers something else is passed over for the next one.
        (
            served(version=(200, "<html>hello</html>"), props=(200, '{"build_info": "b1"}')),
            "llama.cpp b1",
        ),
        (served(version=(500, '{"version": "x"}'), props=(200, '{"total_slots": 1}')), ""),
        ({}, ""),
    ],
)
def test_probe_asks_vllm_then_llama_cpp_then_openapi(
    routes: dict[str, tuple[int, str]], expected: str
) -> None:
    with StandIn(routes) as server:
        assert probe_server_version(server.url) == expected


def test_probe_sends_the_api_key_and_stops_at_the_first_answer() -> None:
    with StandIn(served(version=(200, '{"version": "0.9.0"}'))) as server:
        assert probe_server_version(server.url, "sk-test") == "0.9.0"
    assert server.seen == [("/version", "Bearer sk-test")]


@pytest.mark.django_db(transaction=True)
def test_threads_of_a_worker_probe_a_server_once_per_run() -> None:
    suite = builders.suite("threads", [])
    model = builders.endpoint("alpha")
    campaign = builders.campaign("threads", suite, [model], status=CampaignStatus.RUNNING)
    Campaign.objects.filter(pk=campaign.pk).update(launched_at=timezone.now())
    answers: list[str] = []
    with StandIn(served(version=(200, '{"version": "0.8.5"}'))) as server:
        start = threading.Barrier(8)

        def generation_finishes() -> None:
            start.wait()
            try:
                answers.append(server_version_for(campaign.pk, model.pk, server.url))
            finally:
                connection.close()

        threads = [threading.Thread(target=generation_finishes) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    assert answers == ["0.8.5"] * 8
    assert server.seen == [("/version", "")]  # one probe for eight generations
    assert CampaignModel.objects.get(campaign=campaign).server_version == "0.8.5"


@pytest.mark.django_db
def test_a_judge_outside_the_campaigns_models_is_probed_once_per_process_and_hour(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    suite = builders.suite("judged", [])
    model, judge = builders.endpoint("alpha"), builders.endpoint("judge")
    campaign = builders.campaign("judged", suite, [model])
    with StandIn(served(version=(200, '{"version": "0.8.5"}'))) as server:
        assert server_version_for(campaign.pk, judge.pk, server.url) == "0.8.5"
        assert server_version_for(campaign.pk, judge.pk, server.url) == "0.8.5"
        assert len(server.seen) == 1  # kept in memory: no CampaignModel to keep it on
        later = timezone.now() + record.PROBE_MAX_AGE + timedelta(minutes=1)
        monkeypatch.setattr(record.timezone, "now", lambda: later)
        assert server_version_for(campaign.pk, judge.pk, server.url) == "0.8.5"
        assert len(server.seen) == 2  # an hour on: asked again
    assert not CampaignModel.objects.filter(endpoint=judge).exists()


# --- What a generation stores ------------------------------------------------------------------


@pytest.fixture
def record_setup(
    simulator: SimulatorThread, settings: Any
) -> tuple[Campaign, dict[str, Any], SimulatorThread]:
    settings.MODEL_RETRY_BASE_S = 0.01
    settings.MODEL_RETRY_CAP_S = 0.05
    settings.MODEL_MAX_ATTEMPTS = 2
    settings.DISPATCH_CHAIN_MAX = 1
    suite = builders.suite("record", [])
    vllm = builders.endpoint("r1")
    fastdeploy = builders.endpoint("ernie")
    for endpoint, model, dialect, url in (
        (vllm, VLLM_MODEL, "vllm", simulator.vllm_url),
        (fastdeploy, FASTDEPLOY_MODEL, "fastdeploy", simulator.fastdeploy_url),
    ):
        endpoint.model, endpoint.dialect, endpoint.base_url = model, dialect, url
        endpoint.reasoning = "think_tags" if dialect == "vllm" else "none"
        endpoint.timeout_s = 20
        endpoint.save()
    campaign = builders.campaign(
        "record", suite, [vllm, fastdeploy], params={"max_tokens": 50}, status=CampaignStatus.DRAFT
    )
    Campaign.objects.filter(pk=campaign.pk).update(
        status=CampaignStatus.RUNNING, launched_at=timezone.now()
    )
    return campaign, {"vllm": vllm, "fastdeploy": fastdeploy}, simulator


def run_one(campaign: Campaign, endpoint: Any, external_id: str, prompt: str) -> Generation:
    """Queue one generation and run it through the worker's code, in this process."""
    item = builders.item(campaign.suite, external_id, "QA", prompt=prompt)
    generation = builders.generation(campaign, item, endpoint, status=GenerationStatus.QUEUED)
    generate.run_generation(generation.pk)
    generation.refresh_from_db()
    return generation


def probed_at(campaign: Campaign, endpoint: Any) -> Any:
    return CampaignModel.objects.get(campaign=campaign, endpoint=endpoint).server_probed_at


SIM_FINGERPRINT = "gradebench-simulator"  # what the simulator sends in every chunk


@pytest.mark.django_db(transaction=True)
def test_a_generation_stores_its_record_and_the_server_is_probed_once_per_run(
    record_setup: tuple[Campaign, dict[str, Any], SimulatorThread],
) -> None:
    campaign, endpoints, _ = record_setup
    vllm = endpoints["vllm"]
    first = run_one(campaign, vllm, "q1", f"Why is the sky blue? {FAST}")
    assert first.status == GenerationStatus.SUCCEEDED, first.error
    assert first.served_model == VLLM_MODEL
    assert first.system_fingerprint == SIM_FINGERPRINT
    assert first.server_version == f"gradebench-simulator {pyproject_version()}"
    assert first.gradebench_version == pyproject_version()
    assert first.request["model"] == VLLM_MODEL  # the request as sent, already stored
    member = CampaignModel.objects.get(campaign=campaign, endpoint=vllm)
    assert member.server_version == first.server_version
    assert member.server_probed_at is not None

    # The next generation of the run reuses the probe.
    second = run_one(campaign, vllm, "q2", f"And the sea? {FAST}")
    assert second.server_version == first.server_version
    assert probed_at(campaign, vllm) == member.server_probed_at

    # A campaign launched again after the probe (or a probe grown old) is probed again.
    Campaign.objects.filter(pk=campaign.pk).update(launched_at=timezone.now())
    third = run_one(campaign, vllm, "q3", f"And the grass? {FAST}")
    assert third.server_version == first.server_version
    reprobed = probed_at(campaign, vllm)
    assert reprobed > member.server_probed_at
    CampaignModel.objects.filter(pk=member.pk).update(
        server_probed_at=reprobed - PROBE_MAX_AGE - timedelta(seconds=1), server_version="old"
    )
    fourth = run_one(campaign, vllm, "q4", f"And snow? {FAST}")
    assert fourth.server_version == first.server_version
    assert probed_at(campaign, vllm) > reprobed


@pytest.mark.django_db(transaction=True)
def test_a_fastdeploy_generation_records_an_empty_server_version(
    record_setup: tuple[Campaign, dict[str, Any], SimulatorThread],
) -> None:
    campaign, endpoints, _ = record_setup
    answer = run_one(campaign, endpoints["fastdeploy"], "q1", f"你好 {FAST}")
    assert answer.status == GenerationStatus.SUCCEEDED, answer.error
    assert answer.served_model == FASTDEPLOY_MODEL
    assert answer.server_version == ""
    assert answer.gradebench_version == pyproject_version()
    # Probed (the server answered, it has no version to give), so not asked again this run.
    assert probed_at(campaign, endpoints["fastdeploy"]) is not None


@pytest.mark.django_db(transaction=True)
def test_failed_generations_keep_what_is_known_of_the_record(
    record_setup: tuple[Campaign, dict[str, Any], SimulatorThread],
) -> None:
    campaign, endpoints, _ = record_setup
    vllm = endpoints["vllm"]
    broken = run_one(campaign, vllm, "q1", "[[sim: fault=error_event, after=3, tps=3000]] hi")
    assert broken.status == GenerationStatus.FAILED and broken.content  # partly answered
    assert broken.served_model == VLLM_MODEL
    assert broken.server_version == f"gradebench-simulator {pyproject_version()}"
    refused = run_one(campaign, vllm, "q2", "[[sim: fault=500x5]] hi")
    assert refused.status == GenerationStatus.FAILED and "HTTP 500" in refused.error
    assert refused.served_model == "" and refused.system_fingerprint == ""
    assert refused.server_version == broken.server_version
    assert refused.gradebench_version == pyproject_version()


@pytest.mark.django_db(transaction=True)
def test_an_unreachable_server_is_recorded_empty_and_probed_again_next_time(
    record_setup: tuple[Campaign, dict[str, Any], SimulatorThread],
) -> None:
    campaign, endpoints, _ = record_setup
    vllm = endpoints["vllm"]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    vllm.base_url = f"http://127.0.0.1:{port}/v1"
    vllm.save()
    failed = run_one(campaign, vllm, "q1", "hi")
    assert failed.status == GenerationStatus.FAILED and "connection failed" in failed.error
    assert failed.server_version == "" and failed.gradebench_version == pyproject_version()
    assert probed_at(campaign, vllm) is None  # nothing learned: the next generation asks again


@pytest.fixture
def answered_generation(db: None) -> Iterator[Generation]:
    suite = builders.suite("page", ["QA"])
    model = builders.endpoint("alpha")
    campaign = builders.campaign("page", suite, [model])
    item = builders.item(suite, "p1", "QA")
    yield builders.generation(campaign, item, model)


def test_admin_generation_page_shows_the_record(admin_client: Any, answered_generation) -> None:
    generation = answered_generation
    Generation.objects.filter(pk=generation.pk).update(
        request={"model": "org/alpha-7b", "messages": []},
        served_model="org/alpha-7b-awq",
        system_fingerprint="fp_3b2a",
        server_version="0.8.5",
        gradebench_version="9.9.9",
    )
    html = admin_client.get(f"/generations/{generation.public_id}/").content.decode()
    record = html[html.index('id="record"') :]
    for expected in ("org/alpha-7b", "org/alpha-7b-awq", "fp_3b2a", "0.8.5", "9.9.9"):
        assert expected in record
    assert "differs from the model requested" in record
