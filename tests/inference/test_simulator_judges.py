"""Simulated judges, driven over real HTTP by a plain consumer (openai), and the in-process
run of a judgement against them (the worker's code path without the worker)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import httpx2 as httpx
import openai
import pytest
from django.test import override_settings

from grading.judge_prompt import SYSTEM
from inference import judging
from inference.models import Judgement, ModelEndpoint, Suite
from inference.simulator import SimulatorThread
from inference.simulator.judging import REPLY_KINDS
from tests import builders
from tests.inference.test_pipeline import ERNIE, QWEN_VL, R1, endpoint, make_item, png

SCHEMA = {
    "type": "json_schema",
    "json_schema": {"name": "gradebench_judgement", "schema": {"type": "object"}, "strict": True},
}


def ask(sim: SimulatorThread, model: str, text: str, *, system: str = "", **extra: Any) -> Any:
    client = openai.OpenAI(base_url=sim.base_url(model), api_key="x", max_retries=0)
    messages: list[Any] = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": text})
    return client.chat.completions.create(model=model, messages=messages, **extra)


def score_of(response: Any) -> int:
    """The score in a reply, after any inline reasoning (`<think>…</think>`)."""
    content = response.choices[0].message.content or ""
    return int(json.loads(content.rpartition("</think>")[2])["score"])


def noise(model: str, judged: str) -> int:
    digest = hashlib.sha256(f"noise\0{model}\0{judged}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 3 - 1


def test_a_judging_request_is_known_by_its_response_format_or_its_system_prompt(
    simulator: SimulatorThread,
) -> None:
    by_format = ask(simulator, QWEN_VL, "Answer: blue [[sim: quality=4]]", response_format=SCHEMA)
    by_prompt = ask(simulator, ERNIE, "Answer: blue [[sim: quality=4]]", system=SYSTEM)
    by_name = ask(
        simulator, R1, "Answer: blue [[sim: quality=4]]", system="Reply: gradebench_judgement."
    )
    neither = ask(
        simulator, ERNIE, "Answer: blue [[sim: quality=4, tokens=30]]", system="Be helpful."
    )
    for response, model in ((by_format, QWEN_VL), (by_prompt, ERNIE), (by_name, R1)):
        content = response.choices[0].message.content.rpartition("</think>")[2]
        reply = json.loads(content)
        assert list(reply) == ["rationale", "score"] and reply["rationale"]
        assert reply["score"] == max(0, min(10, 4 + noise(model, "Answer: blue")))
    assert not neither.choices[0].message.content.startswith("{")


def test_the_true_score_without_a_marker_comes_from_the_judged_text_and_judges_agree_closely(
    simulator: SimulatorThread,
) -> None:
    judged = "Answer: the sky is blue because of Rayleigh scattering."
    truth = int.from_bytes(hashlib.sha256(f"quality\0{judged}".encode()).digest()[:8], "big") % 11
    scores = {}
    for model in (ERNIE, QWEN_VL, R1):
        response = ask(simulator, model, judged, system=SYSTEM)
        scores[model] = score_of(response)
        assert scores[model] == max(0, min(10, truth + noise(model, judged)))
        again = ask(simulator, model, judged, system=SYSTEM, temperature=1.0, seed=3)
        assert score_of(again) == scores[model]
    assert max(scores.values()) - min(scores.values()) <= 2


@pytest.mark.parametrize("kind", sorted(REPLY_KINDS))
def test_every_misbehaviour_can_be_asked_for(simulator: SimulatorThread, kind: str) -> None:
    response = ask(simulator, QWEN_VL, f"Answer: x [[sim: reply={kind}]]", response_format=SCHEMA)
    content = response.choices[0].message.content or ""
    if kind == "empty":
        assert content == ""
        return
    try:
        value = json.loads(content)
    except json.JSONDecodeError:
        assert kind in {"two_scores", "two_objects", "extra_text", "refusal"} or kind == "list"
        return
    good = isinstance(value, dict) and type(value.get("score")) is int
    assert not (good and 0 <= value["score"] <= 10 and kind != "two_scores"), (kind, content)


def test_a_scripted_reply_and_a_bad_directive(simulator: SimulatorThread) -> None:
    httpx.post(
        f"{simulator.vllm_url.removesuffix('/v1')}/_sim/faults",
        json={"model": QWEN_VL, "faults": [{"reply": "out_of_range"}]},
    ).raise_for_status()
    first = ask(simulator, QWEN_VL, "Answer: y", response_format=SCHEMA)
    assert json.loads(first.choices[0].message.content)["score"] == 11
    second = ask(simulator, QWEN_VL, "Answer: y", response_format=SCHEMA)
    assert 0 <= json.loads(second.choices[0].message.content)["score"] <= 10
    for bad in ("reply=sloppy", "quality=11", "quality=x"):
        with pytest.raises(openai.BadRequestError):
            ask(simulator, QWEN_VL, f"Answer: y [[sim: {bad}]]", response_format=SCHEMA)


def test_a_judge_cut_off_by_the_length_limit_says_so(simulator: SimulatorThread) -> None:
    response = ask(simulator, QWEN_VL, "Answer: z [[sim: fault=length]]", response_format=SCHEMA)
    assert response.choices[0].finish_reason == "length"
    assert response.choices[0].message.content.startswith('{"rationale"')


# --- The run of one judgement, in this process ------------------------------------------------


def one_judgement(sim: SimulatorThread, judge: ModelEndpoint, text: str, **fields: Any) -> Any:
    suite = Suite.objects.create(name="one")
    make_item(suite, "v0", "What colour is this?", code="VQA", image=png("green"))
    model = endpoint(sim, "model", QWEN_VL)
    campaign = builders.campaign("one", suite, [model], **fields)
    answer = builders.generation(campaign, suite.items.get(), model)
    return builders.judgement(answer, judge, text=text)


@pytest.mark.django_db(transaction=True)
def test_structured_output_follows_the_dialect_and_a_refusal_is_asked_again_without_it(
    simulator: SimulatorThread,
) -> None:
    ernie = endpoint(simulator, "ernie", ERNIE)
    made = one_judgement(simulator, ernie, "Answer: green [[sim: quality=9, tps=3000]]")
    assert judging.run_judgement(made.pk) == "parsed"
    assert "response_format" not in Judgement.objects.get(pk=made.pk).request
    assert "response_format" not in simulator.requests(ERNIE)[-1]["params"]

    # The campaign asks for structured output everywhere; this FastDeploy server refuses it (it
    # was not started with a guided-decoding backend): asked again without, once per process.
    made.campaign.judge_params = {"structured_output": True, "temperature": 0.2}
    made.campaign.save()
    try:
        for version in ("v2", "v3"):
            again = builders.judgement(made.generation, ernie, prompt_version=version)
            assert judging.run_judgement(again.pk) == "parsed"
            done = Judgement.objects.get(pk=again.pk)
            assert "response_format" not in done.request and "structured_output" not in done.request
            assert done.request["temperature"] == 0.2 and done.error == ""
            assert done.attempts == (2 if version == "v2" else 1)
    finally:
        judging._refused.clear()
    logged = simulator.requests(ERNIE)[1:]
    assert [entry["status"] for entry in logged] == [400, 200, 200]
    assert "response_format" in logged[0]["params"] and "guided_backend" in logged[0]["error"]

    # A vLLM server takes it.
    qwen = endpoint(simulator, "qwen", QWEN_VL)
    judged = builders.judgement(made.generation, qwen, text="Answer: green [[sim: tps=3000]]")
    assert judging.run_judgement(judged.pk) == "parsed"
    stored = Judgement.objects.get(pk=judged.pk).request
    assert stored["response_format"]["json_schema"]["name"] == "gradebench_judgement"
    assert stored["response_format"]["json_schema"]["strict"] is True


@pytest.mark.django_db(transaction=True)
def test_a_vision_judge_run_again_is_sent_the_images_again(simulator: SimulatorThread) -> None:
    qwen = endpoint(simulator, "qwen", QWEN_VL)
    made = one_judgement(simulator, qwen, "Answer: green [[sim: fault=500x1, tps=3000]]")
    with override_settings(MODEL_MAX_ATTEMPTS=1):
        assert judging.run_judgement(made.pk) == "failed"
    failed = Judgement.objects.get(pk=made.pk)
    assert "HTTP 500" in failed.error and failed.request["messages"][-1]["content"][1]["image"]

    Judgement.objects.filter(pk=made.pk).update(status="queued", claim_token="")
    assert judging.run_judgement(made.pk) == "parsed"
    done = Judgement.objects.get(pk=made.pk)
    content = done.request["messages"][-1]["content"]
    assert [part["type"] for part in content] == ["text", "image_url"]  # the image once
    assert content[0]["text"] == "Answer: green [[sim: fault=500x1, tps=3000]]"
    assert [entry["n_images"] for entry in simulator.requests(QWEN_VL)] == [1, 1]
    assert done.error == "" and done.problem == "" and done.attempts == 2


@pytest.mark.django_db(transaction=True)
def test_a_judgement_without_a_user_message_fails_clearly(simulator: SimulatorThread) -> None:
    qwen = endpoint(simulator, "qwen", QWEN_VL)
    made = one_judgement(simulator, qwen, "Answer: green")
    Judgement.objects.filter(pk=made.pk).update(
        request={"messages": [{"role": "system", "content": "judge"}]}
    )
    assert judging.run_judgement(made.pk) == "failed"
    failed = Judgement.objects.get(pk=made.pk)
    assert "not a user message" in failed.error and failed.score is None
    assert simulator.requests(QWEN_VL) == []
