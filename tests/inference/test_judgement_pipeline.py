"""Judgements through real Celery worker processes and simulated judges over HTTP.

Judgements are made here with the test builders, as the grading side makes them (queued, their
messages written), then handed to `dispatch.pump` as it does.
"""

from __future__ import annotations

import hashlib
import re
import signal
import time
from collections.abc import Callable
from datetime import datetime
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command

from inference import dispatch
from inference.models import (
    Campaign,
    CampaignStatus,
    Generation,
    Judgement,
    JudgementStatus,
    ModelEndpoint,
    Suite,
)
from inference.simulator import SimulatorThread
from tests import builders
from tests.inference.test_pipeline import (
    ERNIE,
    QWEN_VL,
    R1,
    endpoint,
    fast_dispatch,
    make_campaign,
    make_item,
    png,
)

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]
__all__ = ["fast_dispatch"]  # the fixture, shared with test_pipeline

DIRECTIVE = re.compile(r"\[\[\s*sim\s*:.*?\]\]", re.DOTALL)


def expected_score(model: str, text: str, quality: int) -> int:
    """The simulated judge's score, recomputed from the rule in `inference.simulator.judging`."""
    judged = DIRECTIVE.sub("", text).strip()
    digest = hashlib.sha256(f"noise\0{model}\0{judged}".encode()).digest()
    noise = int.from_bytes(digest[:8], "big") % 3 - 1
    return max(0, min(10, quality + noise))


def wait_until_judged(judgements: Any, worker: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while judgements.filter(status__in=["queued", "running"]).exists():
        assert time.monotonic() < deadline, (
            list(judgements.values_list("status", "error")),
            worker.output()[-3000:],
        )
        time.sleep(0.2)


def answered(slug: str, suite: Suite, models: list[ModelEndpoint]) -> Campaign:
    """A finished campaign of `models` over `suite`, every answer there (made by the builders)."""
    campaign = make_campaign(slug, suite, models)
    Campaign.objects.filter(pk=campaign.pk).update(status=CampaignStatus.FINISHED)
    for model in models:
        for item in suite.items.order_by("pk"):
            if model.vision or not item.task_type.is_vision:
                builders.generation(campaign, item, model)
    return campaign


def test_judges_score_answers_through_the_workers(
    simulator: SimulatorThread, fast_dispatch: Callable[..., Any]
) -> None:
    suite = Suite.objects.create(name="judged")
    for n in range(3):
        make_item(suite, f"t{n}", f"问题 {n}:为什么天空是蓝色的?")
    make_item(suite, "v0", "图片是什么颜色?", code="VQA", image=png("red"))
    ernie = endpoint(simulator, "ernie", ERNIE)
    r1 = endpoint(simulator, "r1", R1)
    qwen = endpoint(simulator, "qwen-vl", QWEN_VL, max_pixels=250_000)
    campaign = answered("judged", suite, [ernie, qwen])
    Campaign.objects.filter(pk=campaign.pk).update(judge_params={"max_tokens": 400})
    campaign.judges.set([qwen, ernie, r1])
    quality: dict[int, int] = {}
    for index, answer in enumerate(Generation.objects.filter(campaign=campaign).order_by("pk")):
        quality[answer.pk] = index % 11
        script = f"quality={index % 11}, tps=3000, reasoning_tokens=30"
        text = f"Question: {answer.item.prompt}\nAnswer: {answer.content} [[sim: {script}]]"
        for judge in (qwen, ernie, r1):
            builders.judgement(answer, judge, text=text)
    judgements = Judgement.objects.filter(campaign=campaign)
    worker = fast_dispatch()

    dispatch.pump([qwen.pk, ernie.pk, r1.pk])  # (or the worker's own sweep, whichever is first)
    wait_until_judged(judgements, worker)

    assert judgements.count() == 7 * 3  # 3 text items × 2 models + 1 vision item × qwen
    for judgement in judgements.select_related("judge"):
        text = judgement.request["messages"][-1]["content"]
        text = text if isinstance(text, str) else text[0]["text"]
        expected = expected_score(judgement.judge.model, text, quality[judgement.generation_id])
        assert judgement.status == JudgementStatus.PARSED, (judgement.problem, judgement.error)
        assert judgement.score == expected
        assert judgement.rationale and judgement.problem == "" and judgement.error == ""
        assert f'"score": {expected}' in judgement.raw_output
        assert judgement.attempts == 1 and judgement.simulated and judgement.finish_reason == "stop"
        assert judgement.ttft_ms and judgement.response_time_ms and judgement.completion_tokens
        assert judgement.usage_source == "server" and judgement.timings["t_first_token"] is not None
        assert judgement.served_model == judgement.judge.model and judgement.gradebench_version
        assert judgement.request["temperature"] == 0 and judgement.request["max_tokens"] == 400
        # Structured output is asked of vLLM; FastDeploy refuses it unless started for it.
        format_sent = "response_format" in judgement.request
        assert format_sent == (judgement.judge.dialect == "vllm")
    # A reasoning judge's reasoning is kept apart; only the reply is read.
    for judgement in judgements.filter(judge=r1):
        assert judgement.reasoning and "</think>" not in judgement.raw_output
    logged = simulator.requests(QWEN_VL)
    assert logged and all(
        entry["params"]["response_format"]["json_schema"]["name"] == "gradebench_judgement"
        for entry in logged
    )
    assert not any("response_format" in entry["params"] for entry in simulator.requests(ERNIE))
    # The vision judge is sent the item's image; the others only the text.
    vision = judgements.get(judge=qwen, generation__item__external_id="v0")
    image = vision.request["messages"][-1]["content"][1]["image"]
    assert image["resized"] and image["width"] * image["height"] <= 250_000
    assert "base64" not in str(vision.request)
    assert [entry["n_images"] for entry in logged].count(1) == 1
    assert not any(entry["n_images"] for entry in simulator.requests(ERNIE))
    assert Campaign.objects.get(pk=campaign.pk).status == CampaignStatus.FINISHED


BAD_REPLIES = {
    "no_score": "no score",
    "out_of_range": "the score 11 is outside",
    "negative": "the score -1 is outside",
    "fraction": "not an integer",
    "string_score": "not an integer",
    "bool_score": "not an integer: true",
    "two_scores": "'score' appears more than once",
    "two_objects": "text after the JSON object",
    "list": "a JSON list",
    "extra_text": "text before the JSON object",
    "refusal": "not a JSON object",
}


def test_every_bad_reply_ends_unparseable_or_failed_and_the_run_goes_on(
    simulator: SimulatorThread, fast_dispatch: Callable[..., Any]
) -> None:
    suite = Suite.objects.create(name="bad")
    cases = [*BAD_REPLIES, "empty", "cut", "500-thrice", "good"]
    for case in cases:
        make_item(suite, case, f"question {case}")
    model = endpoint(simulator, "model", ERNIE)
    judge = endpoint(simulator, "judge", QWEN_VL, max_concurrency=6)
    down = endpoint(simulator, "down", ERNIE, base_url="http://127.0.0.1:9/v1")
    campaign = answered("bad", suite, [model])
    answers = {g.item.external_id: g for g in campaign.generations.select_related("item")}
    directive = {
        **{kind: f"reply={kind}" for kind in BAD_REPLIES},
        "empty": "reply=empty",
        "cut": "fault=length",
        "500-thrice": "fault=500x3",
        "good": "quality=6",
    }
    for case in cases:
        text = f"Answer: {answers[case].content} [[sim: {directive[case]}, tps=3000]]"
        builders.judgement(answers[case], judge, text=text)
    builders.judgement(answers["good"], down)
    worker = fast_dispatch()
    before = list(campaign.generations.order_by("pk").values())

    dispatch.pump([judge.pk, down.pk])
    judgements = Judgement.objects.filter(campaign=campaign)
    wait_until_judged(judgements, worker)

    state = {j.generation.item.external_id: j for j in judgements.filter(judge=judge)}
    for kind, problem in BAD_REPLIES.items():
        judgement = state[kind]
        assert judgement.status == JudgementStatus.UNPARSEABLE, (kind, judgement.error)
        assert judgement.score is None and problem in judgement.problem, (kind, judgement.problem)
        assert judgement.raw_output.strip() and judgement.attempts == 1  # the raw reply is kept
    assert "Here is my judgement" in state["extra_text"].raw_output
    assert "sorry" in state["refusal"].raw_output
    empty = state["empty"]
    assert (empty.status, empty.score, empty.problem) == ("unparseable", None, "empty reply")
    assert empty.raw_output == "" and empty.attempts == 3  # the server was asked again
    cut = state["cut"]
    assert (cut.status, cut.score, cut.finish_reason) == ("unparseable", None, "length")
    assert "cut off" in cut.problem and cut.raw_output.startswith('{"rationale"')
    failed = state["500-thrice"]
    assert (failed.status, failed.score, failed.attempts) == ("failed", None, 3)
    assert "HTTP 500" in failed.error and failed.http_status == 500
    assert (state["good"].status, state["good"].score) == (
        "parsed",
        expected_score(judge.model, f"Answer: {answers['good'].content}", 6),
    )
    unreachable = judgements.get(judge=down)
    assert unreachable.status == "failed" and unreachable.score is None
    assert "connect" in unreachable.error.lower(), unreachable.error
    # Nothing else changed: the answers are as they were, the campaign as it was.
    assert list(campaign.generations.order_by("pk").values()) == before
    assert Campaign.objects.get(pk=campaign.pk).status == CampaignStatus.FINISHED


def _overlap(intervals: list[tuple[datetime, datetime]]) -> int:
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    peak = current = 0
    for _, step in events:
        current += step
        peak = max(peak, current)
    return peak


def test_a_model_that_is_also_a_judge_shares_its_cap_and_answers_first(
    simulator: SimulatorThread, fast_dispatch: Callable[..., Any]
) -> None:
    """The endpoint answers campaign `run` and judges campaign `old`'s answers, 3 at a time."""
    old_suite, new_suite = Suite.objects.create(name="old"), Suite.objects.create(name="new")
    for n in range(6):
        make_item(old_suite, f"o{n}", f"old {n}")
        make_item(new_suite, f"n{n}", f"new {n} [[sim: ttft_ms=300, tps=300, tokens=90]]")
    shared = endpoint(simulator, "shared", ERNIE, max_concurrency=3)
    other = endpoint(simulator, "other", QWEN_VL)
    old = answered("old", old_suite, [other])
    for answer in old.generations.all():
        text = f"Answer: {answer.content} [[sim: ttft_ms=300, tps=60]]"
        builders.judgement(answer, shared, text=text)
    run = make_campaign("run", new_suite, [shared])
    fast_dispatch()
    fast_dispatch()  # two workers: the cap holds across processes

    dispatch.pump([shared.pk])  # the judgements were waiting first
    dispatch.launch(run)
    judgements = Judgement.objects.filter(campaign=old)
    generations = Generation.objects.filter(campaign=run)
    deadline = time.monotonic() + 60
    while (
        judgements.exclude(status="parsed").exists()
        or generations.exclude(status="succeeded").exists()
    ):
        assert time.monotonic() < deadline, list(judgements.values_list("status", "error"))
        time.sleep(0.2)

    judged = [(j.started_at, j.finished_at) for j in judgements if j.started_at and j.finished_at]
    answers = [(g.started_at, g.finished_at) for g in generations if g.started_at and g.finished_at]
    assert len(judged) == len(answers) == 6
    assert _overlap(judged + answers) == 3  # used to the full, never above
    # Judgements were queued first, yet once answers wait they get the free slots first:
    # no judgement starts after the first answer started until every answer has.
    first_answer = min(start for start, _ in answers)
    last_answer = max(start for start, _ in answers)
    assert not [start for start, _ in judged if first_answer < start < last_answer]


def test_a_stopping_worker_hands_its_judgements_back_and_the_next_one_finishes_them(
    simulator: SimulatorThread, fast_dispatch: Callable[..., Any]
) -> None:
    """SIGTERM mid-reply: the worker exits at once and its judgements are queued again, not
    failed; their leases (2 s) are renewed through replies that take longer; a new worker
    completes them."""
    suite = Suite.objects.create(name="stop")
    for n in range(3):
        make_item(suite, f"s{n}", f"s{n}")
    model = endpoint(simulator, "model", QWEN_VL)
    judge = endpoint(simulator, "judge", ERNIE, timeout_s=60)
    campaign = answered("stop", suite, [model])
    for answer in campaign.generations.all():
        # About 4 s per reply (some 20 units at 5 per second): twice the lease.
        builders.judgement(answer, judge, text=f"{answer.content} [[sim: ttft_ms=100, tps=5]]")
    judgements = Judgement.objects.filter(campaign=campaign)
    first = fast_dispatch()
    dispatch.pump([judge.pk])
    deadline = time.monotonic() + 20
    while judgements.filter(status="running").count() < 3 or len(simulator.requests(ERNIE)) < 3:
        assert time.monotonic() < deadline, first.output()[-3000:]
        time.sleep(0.05)
    time.sleep(1)

    stopped_at = time.monotonic()
    first.process.send_signal(signal.SIGTERM)
    first.process.wait(timeout=30)
    assert time.monotonic() - stopped_at < 4, first.output()[-3000:]
    rows = list(judgements.values_list("status", "attempts", "claim_token", "raw_output", "score"))
    assert rows == [("queued", 0, "", "", None)] * 3, (rows, first.output()[-3000:])

    second = fast_dispatch()  # resumes on its own, from its sweep
    wait_until_judged(judgements, second, timeout=60)
    for judgement in judgements:
        assert judgement.status == "parsed" and judgement.attempts == 1, judgement.problem
        assert judgement.response_time_ms and judgement.response_time_ms > 3000  # > 1.5 leases
    # Each sent twice: the abandoned reply and the complete one (never a third time: the
    # leases were renewed while the replies took longer than a lease).
    assert len(simulator.requests(ERNIE)) == 6


def test_a_judgement_of_a_killed_worker_runs_again_once_its_lease_runs_out(
    simulator: SimulatorThread, fast_dispatch: Callable[..., Any]
) -> None:
    suite = Suite.objects.create(name="kill")
    make_item(suite, "k0", "k0")
    model = endpoint(simulator, "model", QWEN_VL)
    judge = endpoint(simulator, "judge", ERNIE)
    campaign = answered("kill", suite, [model])
    answer = campaign.generations.get()
    made = builders.judgement(answer, judge, text=f"{answer.content} [[sim: ttft_ms=1500, tps=50]]")
    first = fast_dispatch()
    dispatch.pump([judge.pk])
    deadline = time.monotonic() + 20
    while not simulator.requests(ERNIE):  # sent; its first token comes 1.5 s later
        assert time.monotonic() < deadline, first.output()[-3000:]
        time.sleep(0.05)
    first.process.send_signal(signal.SIGKILL)
    first.process.wait()
    assert Judgement.objects.get(pk=made.pk).status == "running"  # as the dead worker left it

    second = fast_dispatch()
    judgements = Judgement.objects.filter(pk=made.pk)
    wait_until_judged(judgements, second)
    done = judgements.get()
    assert (done.status, done.attempts) == ("parsed", 1) and done.score is not None
    assert len(simulator.requests(ERNIE)) == 2  # once to the killed worker, once to the next


def test_run_judges_scores_every_answer_with_the_judge_prompt(
    simulator: SimulatorThread, fast_dispatch: Callable[..., Any]
) -> None:
    suite = Suite.objects.create(name="judged")
    for n in range(3):
        make_item(suite, f"q{n}", f"问题 {n}:为什么天空是蓝色的?[[sim: tps=3000]]", code="QA")
    ernie = endpoint(simulator, "ernie", ERNIE)
    r1 = endpoint(simulator, "r1", R1)
    judges = [endpoint(simulator, "judge-vllm", QWEN_VL), endpoint(simulator, "judge-fd", ERNIE)]
    campaign = make_campaign("judged", suite, [ernie, r1])
    campaign.judges.set(judges)
    for model in (ernie, r1):
        for item in suite.items.all():
            builders.generation(campaign, item, model, content=f"{model.slug} says: Rayleigh.")
    worker = fast_dispatch()

    out, err = StringIO(), StringIO()  # the grading side's command, as an admin runs it
    call_command("run_judges", "judged", "--wait", stdout=out, stderr=err)

    judgements = Judgement.objects.filter(campaign=campaign).select_related("judge")
    assert judgements.count() == 6 * 2, out.getvalue()
    for judgement in judgements:
        assert judgement.status == JudgementStatus.PARSED, (
            judgement.problem,
            judgement.error,
            judgement.raw_output[:200],
            worker.output()[-2000:],
        )
        assert judgement.score is not None and 0 <= judgement.score <= 10 and judgement.rationale
        assert ("response_format" in judgement.request) == (judgement.judge.dialect == "vllm")
    assert "judge-vllm: parsed 6" in out.getvalue() and "judge-fd: parsed 6" in out.getvalue()
