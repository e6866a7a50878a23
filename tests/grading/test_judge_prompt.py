"""The judge prompt: what an LLM judge reads of one answer, read back from the stored request."""

from __future__ import annotations

import re

import pytest
from django.utils import translation

from grading.judge_prompt import PROMPT_VERSION, template_fingerprint
from grading.judging import create_judgements
from grading.models import Rubric
from inference.models import Campaign, Generation, Judgement, ModelEndpoint, TaskItem
from tests import builders

pytestmark = pytest.mark.django_db

# The template's fingerprint for each prompt version. Judgements are kept per prompt version,
# so a changed template under an old version would mix two prompts in one set of judgements.
PINNED = {
    "judge-v1": "7da5cdb6f5db56d2880f23d4cfdd93cacb0677dc886ee784310199e960669791",
}


def test_template_cannot_change_without_a_new_prompt_version() -> None:
    fingerprint = template_fingerprint()
    assert PINNED.get(PROMPT_VERSION) == fingerprint, (
        f"The judge prompt template changed but PROMPT_VERSION is still {PROMPT_VERSION!r}: "
        "bump PROMPT_VERSION in grading/judge_prompt.py (old judgements keep their version) "
        f"and pin the new version here with fingerprint {fingerprint}"
    )
    assert len(set(PINNED.values())) == len(PINNED), "two prompt versions share one template"


def study(answer: str, *, reasoning: str = "") -> tuple[Campaign, list[ModelEndpoint]]:
    """Three models (one in-house, unknown to the default terms) and two judges; item `ar-1`
    has a system prompt and reference notes, and ERNIE's answer is `answer`."""
    suite = builders.suite("judged", [])
    ar = builders.item(suite, "ar-1", "AR", prompt="手:手套 对应 脚:?")
    TaskItem.objects.filter(pk=ar.pk).update(
        system="Answer in one word.", reference="袜子: a sock covers a foot."
    )
    ernie = ModelEndpoint.objects.create(
        slug="ernie-4.5-0.3b",
        name="ERNIE-4.5-0.3B-Paddle",
        model="baidu/ERNIE-4.5-0.3B-Paddle",
        base_url="http://127.0.0.1:9/v1",
    )
    acme = ModelEndpoint.objects.create(
        slug="acme-7b", name="Acme-7B-Chat", model="acme/Acme-7B-Chat", base_url="http://x:9/v1"
    )
    r1 = builders.endpoint("deepseek-r1-distill-qwen-1.5b", name="DeepSeek-R1-Distill-Qwen-1.5B")
    judge = ModelEndpoint.objects.create(
        slug="grader-large", name="Grader Large", model="house/Grader-Large", base_url="http://j/v1"
    )
    campaign = builders.campaign("judged", suite, [ernie, acme, r1])
    campaign.judges.set([judge, r1])
    builders.generation(campaign, ar, ernie, content=answer)
    Generation.objects.filter(campaign=campaign, endpoint=ernie).update(reasoning=reasoning)
    builders.generation(campaign, ar, acme, content="I am Acme-7B-Chat by acme: 袜子.")
    builders.generation(campaign, ar, r1, content="As DeepSeek-R1 (Qwen based), I say 袜子.")
    return campaign, [ernie, acme, r1, judge]


def prompts(campaign: Campaign) -> list[str]:
    """The text of every judgement's messages, as sent."""
    create_judgements(campaign)
    return [
        "\n".join(message["content"] for message in request["messages"])
        for request in Judgement.objects.filter(campaign=campaign).values_list("request", flat=True)
    ]


def test_prompt_names_no_model_even_when_the_answer_names_its_own() -> None:
    campaign, endpoints = study("我是文心一言 (ERNIE 4.5, Baidu 百度), not Acme-7B or GPT-4o: 袜子")
    texts = prompts(campaign)
    assert len(texts) == 6
    forbidden = {"ernie", "文心", "百度", "baidu", "acme", "deepseek", "qwen", "gpt", "paddle"}
    for endpoint in endpoints:
        forbidden |= {endpoint.slug, endpoint.name, endpoint.model, endpoint.base_url}
    for text in texts:
        found = [word for word in forbidden if word.casefold() in text.casefold()]
        assert not found, f"{found} in:\n{text}"
        assert "[■■■]" in text and "袜子" in text


def test_prompt_holds_rubric_focus_task_reference_and_answer_but_not_reasoning() -> None:
    campaign, (ernie, *_) = study("袜子。", reasoning="hidden chain of thought")
    create_judgements(campaign)
    judgement = Judgement.objects.get(generation__endpoint=ernie, judge__slug="grader-large")
    system, user = judgement.request["messages"]
    assert (system["role"], user["role"]) == ("system", "user")
    assert '{"rationale": "' in system["content"] and "integer 0-10" in system["content"]
    assert "exactly one JSON object" in system["content"]
    text = user["content"]
    rubric = Rubric.objects.current()
    for band in rubric.bands.all():
        assert f"{band.range_label}  {band.label_zh}: {band.description_zh}" in text
    assert "Scoring focus: 逻辑推理能力" in text  # AR's focus, as the rubric writes it
    assert "AR 类比推理" in text
    assert "[Task prompt]\n手:手套 对应 脚:?\n" in text
    assert "[System prompt of the task]\nAnswer in one word.\n" in text
    assert "[Reference notes]\n袜子: a sock covers a foot.\n" in text
    assert "[Answer to score]\n袜子。\n[End of the answer]" in text
    assert "hidden chain of thought" not in system["content"] + text
    assert set(judgement.request) == {"messages"}


def test_prompt_is_the_rubrics_language_whatever_the_page_language() -> None:
    campaign, _ = study("袜子。")
    with translation.override("en"):
        english = prompts(campaign)
    Judgement.objects.all().delete()
    with translation.override("zh-hans"):
        chinese = prompts(campaign)
    assert english == chinese
    assert "卓越" in english[0] and "excellent" not in english[0]


def test_an_item_without_system_prompt_or_notes_leaves_those_sections_out() -> None:
    campaign, _ = study("袜子。")
    TaskItem.objects.update(system="", reference="")
    for text in prompts(campaign):
        assert "[System prompt of the task]" not in text
        assert "[Reference notes]" not in text
        assert re.search(r"\[Task prompt\]\n.+\n\[End of the task prompt\]", text)
