"""LLM judges next to human reviewers (DESIGN §10): who judges a campaign, and the judgements
to make.

`create_judgements` makes one judgement per reviewable answer (generated or imported, never a
placeholder) × judge of the campaign × prompt version, each exactly once: the unique
(generation, judge, prompt version) constraint and `ignore_conflicts` make running it again
create only what is missing, and a new `PROMPT_VERSION` create new judgements while the old
ones stay as they were. It stores the request (the messages of `grading.judge_prompt`) and
hands the rest to the dispatch, which runs judgements like generations: per-endpoint caps,
leases, retries. Judge scores never enter the human figures.
"""

from __future__ import annotations

from django.db import transaction
from django.db.models import Prefetch

from inference import dispatch
from inference.models import (
    Campaign,
    Generation,
    Judgement,
    ModelEndpoint,
    TaskItem,
    TaskItemImage,
)

from .blind_sheet import masked_terms
from .judge_prompt import PROMPT_VERSION, RubricText, judge_input, request_for

BATCH_SIZE = 500


class JudgingError(Exception):
    """A campaign that cannot be judged as it stands; the message says why."""


def self_judges(campaign: Campaign) -> list[ModelEndpoint]:
    """The campaign's judges that are also its models: each scores its own answers (among the
    others), which the results pages point out next to that judge's figures."""
    return list(
        ModelEndpoint.objects.filter(judged_campaigns=campaign, members__campaign=campaign)
        .distinct()
        .order_by("slug")
    )


def create_judgements(campaign: Campaign, *, prompt_version: str = PROMPT_VERSION) -> int:
    """Queue a judgement of every reviewable answer of `campaign` by each of its judges and
    start dispatching them after commit; returns how many were created (those that existed
    for this prompt version are left alone).

    Raises `JudgingError` when the campaign has no judges, or a judge has no server to call.
    """
    judges = list(campaign.judges.order_by("slug"))
    if not judges:
        raise JudgingError(
            f'campaign {campaign.slug} has no judges: list them under "judges" in the study file'
        )
    external = [judge.slug for judge in judges if judge.is_external]
    if external:
        raise JudgingError(
            f"campaign {campaign.slug}: {', '.join(external)} cannot judge: an external model "
            "(no base URL) is never called"
        )
    done = set(
        Judgement.objects.filter(campaign=campaign, prompt_version=prompt_version).values_list(
            "generation_id", "judge_id"
        )
    )
    answers = (
        Generation.objects.reviewable()
        .filter(campaign=campaign)
        .only("pk", "item_id", "content")
        .prefetch_related(
            Prefetch(
                "item",
                queryset=TaskItem.objects.select_related("task_type").prefetch_related(
                    Prefetch(
                        "item_images",
                        queryset=TaskItemImage.objects.only("pk", "item_id").order_by(),
                    )
                ),
            )
        )
        .order_by("pk")
    )
    rubric = RubricText()
    terms = masked_terms(campaign.pk)
    made = campaign.judgements.filter(prompt_version=prompt_version)
    before = made.count()
    rows: list[Judgement] = []
    # In batches, each committed on its own: memory stays flat however many answers there
    # are, and no write lock is held while prompts are built. A run cut short leaves whole
    # judgements only, and running again completes it.
    for answer in answers.iterator(chunk_size=BATCH_SIZE):
        missing = [judge for judge in judges if (answer.pk, judge.pk) not in done]
        if not missing:
            continue
        request = request_for(judge_input(answer, answer.item, rubric, terms))
        rows += [
            Judgement(
                campaign=campaign,
                generation=answer,
                judge=judge,
                prompt_version=prompt_version,
                request=request,
            )
            for judge in missing
        ]
        if len(rows) >= BATCH_SIZE:
            Judgement.objects.bulk_create(rows, ignore_conflicts=True)
            rows = []
    Judgement.objects.bulk_create(rows, ignore_conflicts=True)
    created = made.count() - before
    judge_ids = [judge.pk for judge in judges]
    # Also when nothing is new: queued judgements left waiting are started again.
    transaction.on_commit(lambda: dispatch.pump(judge_ids))
    return created
