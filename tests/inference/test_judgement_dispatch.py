"""Judgements in the dispatch, in this process: one cap per endpoint over answers and
judgements, answers first, leases, recovery, stopping, cancel and retry. The same paths through
real worker processes are in test_judgement_pipeline."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from inference import dispatch
from inference.models import (
    Campaign,
    CampaignStatus,
    Generation,
    GenerationStatus,
    Judgement,
    JudgementStatus,
    ModelEndpoint,
)
from tests import builders

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _no_broker_not_stopping(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    sent: list[tuple[str, int]] = []
    # The broker's edge: record what would be sent instead of sending it.
    monkeypatch.setattr(
        dispatch.current_app,
        "send_task",
        lambda name, args, **_: sent.append((name, args[0])),
    )
    dispatch.stopping.clear()
    yield
    dispatch.stopping.clear()


class Study:
    """Endpoint `both` answers campaign `run` (4 items, answers queued) and judges campaign
    `old`'s 4 answers (judgements queued), with a cap of `cap`; `other` answered `old`."""

    def __init__(self, cap: int) -> None:
        suite = builders.suite("s", ["AR"] * 4)
        self.both = builders.endpoint("both")
        ModelEndpoint.objects.filter(pk=self.both.pk).update(max_concurrency=cap)
        self.other = builders.endpoint("other")
        self.old = builders.campaign("old", suite, [self.other])
        self.run = builders.campaign("run", suite, [self.both], status=CampaignStatus.RUNNING)
        self.answers = [
            builders.generation(self.old, item, self.other) for item in suite.items.all()
        ]
        self.queued_answers = [
            builders.generation(
                self.run, item, self.both, status="queued", timings=builders.NO_TIMINGS, error=""
            )
            for item in suite.items.all()
        ]
        self.judgements = [builders.judgement(answer, self.both) for answer in self.answers]


def enqueued(rows: Any) -> int:
    return int(rows.filter(enqueued_at__isnull=False).count())


def run(row: Generation | Judgement, *, lease_s: float = 60) -> None:
    """Mark `row` running with a live lease (or an expired one, for a negative `lease_s`)."""
    type(row).objects.filter(pk=row.pk).update(
        status="running",
        claim_token=f"token-{row.pk}",
        started_at=timezone.now(),
        lease_expires_at=timezone.now() + timedelta(seconds=lease_s),
    )
    row.refresh_from_db()


def test_pump_gives_free_slots_to_answers_first_then_to_judgements() -> None:
    study = Study(cap=6)
    answers = Generation.objects.filter(campaign=study.run)
    judgements = Judgement.objects.filter(judge=study.both)
    assert dispatch.pump([study.both.pk]) == 6
    assert (enqueued(answers), enqueued(judgements)) == (4, 2)
    # Both kinds enqueued count against the cap: nothing more until a slot frees.
    assert dispatch.pump([study.both.pk]) == 0


def test_running_answers_and_judgements_share_the_cap() -> None:
    study = Study(cap=3)
    run(study.queued_answers[0])
    run(study.judgements[0])
    run(study.judgements[1], lease_s=-1)  # its worker is gone: its slot is free
    assert dispatch.pump([study.both.pk]) == 1
    assert enqueued(Generation.objects.filter(campaign=study.run)) == 1
    assert dispatch.claim(study.queued_answers[1].pk) is not None  # the third slot
    waiting = study.judgements[2]
    assert dispatch.claim_judgement(waiting.pk) is None
    waiting.refresh_from_db()
    assert waiting.status == "queued" and waiting.enqueued_at is None


def test_a_claimed_judgement_is_leased_and_finishing_hands_over_the_next_unless_answers_wait() -> (
    None
):
    study = Study(cap=2)
    Generation.objects.filter(campaign=study.run).update(status=GenerationStatus.SUCCEEDED)
    first = dispatch.claim_judgement(study.judgements[0].pk)
    assert first is not None and first.status == "running" and first.claim_token
    assert first.lease_expires_at and first.lease_expires_at > timezone.now()
    assert first.generation.item.task_type.code == "AR"  # loaded with the claim

    successor = dispatch.finish(first, hand_over=True, status=JudgementStatus.PARSED, score=7)
    assert successor is not None and successor.pk == study.judgements[1].pk
    assert successor.status == "running"
    assert Judgement.objects.get(pk=first.pk).score == 7

    # An answer waits on the endpoint: the slot goes back to the pump, which serves it first.
    Generation.objects.filter(pk=study.queued_answers[0].pk).update(status="queued")
    assert dispatch.finish(successor, hand_over=True, status=JudgementStatus.PARSED) is None
    assert dispatch.pump([study.both.pk]) == 2
    assert enqueued(Generation.objects.filter(campaign=study.run)) == 1


def test_a_late_reply_from_a_worker_that_lost_the_judgement_is_not_stored() -> None:
    study = Study(cap=2)
    taken = dispatch.claim_judgement(study.judgements[0].pk)
    assert taken is not None
    assert dispatch.recover_expired() == 0  # the lease is live
    Judgement.objects.filter(pk=taken.pk).update(lease_expires_at=timezone.now())
    assert dispatch.recover_expired() == 1
    row = Judgement.objects.get(pk=taken.pk)
    assert (row.status, row.claim_token, row.worker, row.attempts) == ("queued", "", "", 0)
    dispatch.finish(taken, status=JudgementStatus.PARSED, score=9)
    assert Judgement.objects.get(pk=taken.pk).score is None


def test_the_lease_keeper_renews_a_judgement_and_notices_when_it_is_cancelled() -> None:
    study = Study(cap=2)
    taken = dispatch.claim_judgement(study.judgements[0].pk)
    assert taken is not None
    Judgement.objects.filter(pk=taken.pk).update(lease_expires_at=timezone.now())
    keeper = dispatch.LeaseKeeper()
    lost = keeper.hold(taken)
    keeper.renew()
    lease = Judgement.objects.get(pk=taken.pk).lease_expires_at
    assert lease and lease > timezone.now() + timedelta(seconds=30) and not lost.is_set()
    assert dispatch.cancel(study.old) == 3 + 1  # this one running, three queued
    keeper.renew()
    assert lost.is_set()
    keeper.release(taken)
    assert Judgement.objects.get(pk=taken.pk).status == "cancelled"


def test_a_stopping_worker_claims_no_judgement_and_hands_back_what_it_runs() -> None:
    study = Study(cap=4)
    taken = dispatch.claim_judgement(study.judgements[0].pk)
    assert taken is not None
    keeper = dispatch.LeaseKeeper()
    lost = keeper.hold(taken)
    dispatch.begin_stopping()
    assert dispatch.claim_judgement(study.judgements[1].pk) is None
    assert dispatch.pump([study.both.pk]) == 0
    assert lost.wait(timeout=10)  # the keeper's thread handed it back
    row = Judgement.objects.get(pk=taken.pk)
    assert (row.status, row.claim_token, row.lease_expires_at, row.attempts) == (
        "queued",
        "",
        None,
        0,
    )
    dispatch.stopping.clear()  # the next worker
    assert dispatch.sweep() == 4


def test_cancel_and_retry_cover_judgements() -> None:
    study = Study(cap=4)
    statuses = ["parsed", "unparseable", "failed", "running"]
    for judgement, status in zip(study.judgements, statuses, strict=True):
        Judgement.objects.filter(pk=judgement.pk).update(status=status, error="HTTP 503")
    assert dispatch.cancel(study.old) == 1
    after = dict(Judgement.objects.values_list("pk", "status"))
    assert [after[j.pk] for j in study.judgements] == [
        "parsed",
        "unparseable",
        "failed",
        "cancelled",
    ]
    assert Campaign.objects.get(pk=study.old.pk).status == CampaignStatus.CANCELLED
    # Answers of another campaign judged by the same endpoint are untouched.
    assert set(Generation.objects.filter(campaign=study.run).values_list("status", flat=True)) == {
        "queued"
    }

    # Failed and cancelled ones go back to the queue; a read reply is never asked again.
    assert dispatch.retry_failed(study.old) == 2
    after = dict(Judgement.objects.values_list("pk", "status"))
    assert [after[j.pk] for j in study.judgements] == ["parsed", "unparseable", "queued", "queued"]
    assert Campaign.objects.get(pk=study.old.pk).status == CampaignStatus.RUNNING


def test_an_external_judge_is_never_called() -> None:
    study = Study(cap=4)
    ModelEndpoint.objects.filter(pk=study.both.pk).update(base_url="")
    Generation.objects.filter(campaign=study.run).delete()
    assert dispatch.pump([study.both.pk]) == 0
    assert dispatch.claim_judgement(study.judgements[0].pk) is None
    Judgement.objects.filter(pk=study.judgements[0].pk).update(status="failed")
    assert dispatch.retry_failed(study.old) == 0
