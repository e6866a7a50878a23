"""A real tiny model as a judge, through a real worker (`make test-real`).

stories260K writes children's stories and follows no instructions: its replies are never the
JSON object the judge prompt asks for. Each judgement must therefore end `unparseable`, with
the model's text kept and no score made up, and the campaign's human figures must not move.
"""

from __future__ import annotations

from io import StringIO
from typing import TYPE_CHECKING

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from grading.judge_prompt import PROMPT_VERSION
from grading.models import Score
from grading.scores_export import aggregate_rows, scores_for
from inference.models import (
    Campaign,
    GenerationSource,
    Judgement,
    JudgementStatus,
    ModelEndpoint,
    Suite,
)
from tests import builders

if TYPE_CHECKING:
    from tests.real_server import LlamaServer

pytest_plugins = ["tests.real_server"]
pytestmark = [pytest.mark.real_server, pytest.mark.worker, pytest.mark.django_db(transaction=True)]

ANSWERS = {
    "s0": ("Paris is the capital of France.", "It is Paris."),
    "s1": ("Water boils at 100 degrees Celsius at sea level.", "At 90 degrees."),
    "s2": ("A spider has eight legs.", "Spiders have six legs."),
}


def human_figures(slug: str) -> list[tuple[object, ...]]:
    """The campaign's per task type × model figures, as the results pages compute them."""
    return list(aggregate_rows(scores_for([slug])))


def test_a_tiny_model_judge_leaves_every_judgement_unparseable_with_its_text_kept(
    llama_server: LlamaServer, celery_worker_process, settings
) -> None:
    settings.CELERY_TASK_DEFAULT_QUEUE = "real-server-judges"
    suite = Suite.objects.create(name="facts")
    items = {key: builders.item(suite, key, "QA", prompt=f"Question {key}?") for key in ANSWERS}
    first, second = builders.endpoint("model-a"), builders.endpoint("model-b")
    judge = ModelEndpoint.objects.create(
        slug="stories260k",
        name="stories260K",
        model=llama_server.model,
        dialect="openai",
        base_url=llama_server.base_url,
        max_concurrency=1,
        timeout_s=60,
    )
    campaign = builders.campaign("judged-real", suite, [first, second])
    campaign.judges.set([judge])
    Campaign.objects.filter(pk=campaign.pk).update(judge_params={"max_tokens": 32, "seed": 3})
    alice, bob = builders.reviewer("alice"), builders.reviewer("bob")
    for key, (good, bad) in ANSWERS.items():
        a = builders.generation(campaign, items[key], first, content=good)
        b = builders.generation(campaign, items[key], second, content=bad)
        for reviewer, (x, y) in ((alice, (9, 3)), (bob, (8, 2))):
            builders.score(a, reviewer, x)
            builders.score(b, reviewer, y)
    # An answer imported from another tool is judged like a generated one.
    campaign.generations.filter(endpoint=second, item=items["s2"]).update(
        source=GenerationSource.IMPORTED
    )
    builders.scores_written(campaign)
    figures = human_figures("judged-real")
    scores = sorted(Score.objects.values_list("pk", "score", "generation_id"))
    worker = celery_worker_process(queue="real-server-judges", concurrency=2)

    out, err = StringIO(), StringIO()
    try:
        call_command("run_judges", "judged-real", "--wait", stdout=out, stderr=err)
    except CommandError as error:
        pytest.fail(f"{error}\n{out.getvalue()}{err.getvalue()}{worker.output()[-3000:]}")

    judgements = list(Judgement.objects.filter(campaign=campaign).order_by("pk"))
    assert len(judgements) == 6, out.getvalue()
    assert out.getvalue().splitlines()[-1] == (
        "stories260k: parsed 0, unparseable 6, failed 0, cancelled 0"
    ), [(j.status, j.error, j.raw_output[:80]) for j in judgements]
    for judgement in judgements:
        assert judgement.status == JudgementStatus.UNPARSEABLE
        assert judgement.score is None
        assert judgement.raw_output.strip(), "the judge's reply must be kept"
        assert judgement.problem
        assert judgement.prompt_version == PROMPT_VERSION
        assert not judgement.simulated
        assert judgement.finished_at is not None and judgement.attempts >= 1
        roles = [message["role"] for message in judgement.request["messages"]]
        assert roles == ["system", "user"]
    # Judge scores never enter the human figures.
    assert human_figures("judged-real") == figures
    assert sorted(Score.objects.values_list("pk", "score", "generation_id")) == scores
