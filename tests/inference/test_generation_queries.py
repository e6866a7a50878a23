"""What a worker reads per generation: a chained generation costs a bounded number of queries,
and the request and identity terms come from its own campaign's models (several campaigns)."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from inference import dispatch, generate
from inference.leaks import terms_from_settings
from inference.models import CampaignStatus, Generation, GenerationStatus, ModelEndpoint
from inference.simulator import SimulatorThread
from tests import builders

ERNIE = "baidu/ERNIE-4.5-0.3B-Paddle"
# Per generation handed over in a chain: finish and the next claim, whose row comes whole
# (one transaction: its BEGIN and COMMIT are counted on SQLite), the item (its images only for
# a model that sees them), the stored request; the campaign's models (which also give the server
# version once probed) are read once per chain and campaign, again after a few seconds. It was
# 14, then 11.
QUERIES_PER_CHAINED_GENERATION = 6


@pytest.mark.django_db(transaction=True)
def test_a_chained_generation_costs_a_bounded_number_of_queries(
    simulator: SimulatorThread, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dispatch, "_enqueue", lambda ids: None)
    settings.DISPATCH_CHAIN_MAX = 10
    served = ModelEndpoint.objects.create(
        slug="ernie", name="Zorblax", model=ERNIE, dialect="fastdeploy",
        base_url=simulator.base_url(ERNIE), timeout_s=30,
    )  # fmt: skip
    suite = builders.suite("chain", ["QA", "QA"])
    items = list(suite.items.order_by("pk"))
    for item in items:
        item.prompt = "hi [[sim: tps=3000, tokens=5]]"
        item.save()
    campaign = builders.campaign(
        "chain", suite, [served, builders.endpoint("other-model")], samples=4,
        status=CampaignStatus.RUNNING, params={"max_tokens": 50, "seed": 7},
        overrides={"ernie": {"temperature": 0.3}},
    )  # fmt: skip
    generations: list[Generation] = []

    def chain_of(count: int) -> int:
        """Queries of one task that runs `count` queued generations, one after the other."""
        queued = [
            builders.generation(
                campaign,
                items[n % 2],
                served,
                sample=len(generations) // 2 + n // 2,
                status=GenerationStatus.QUEUED,
                timings=builders.NO_TIMINGS,
            )
            for n in range(count)
        ]
        generations.extend(queued)
        with CaptureQueriesContext(connection) as captured:
            generate.run_generation(queued[0].pk)
        return len(captured.captured_queries)

    # The first claim and the last pump are the same in both: the difference is 4 chained.
    # (The short chain first: it probes the server's version, once per run.)
    short = chain_of(2)
    per_chained = (chain_of(6) - short) / 4

    assert per_chained <= QUERIES_PER_CHAINED_GENERATION
    states = list(Generation.objects.filter(pk__in=[g.pk for g in generations]))
    assert len(states) == 8 and {g.status for g in states} == {GenerationStatus.SUCCEEDED}
    for generation in states:  # its own model's parameters, whatever the chain
        assert generation.request["temperature"] == 0.3
        assert generation.request["seed"] == 7 + generation.sample


@pytest.mark.django_db
def test_leak_terms_name_the_models_of_the_generations_own_campaign_only() -> None:
    suite = builders.suite("terms", ["QA"])
    acme, bolt, crux = (
        builders.endpoint("acme", name="Acmetron"),
        builders.endpoint("bolt", name="Boltzmann-7B"),
        builders.endpoint("crux", name="Cruxify"),
    )
    mine = builders.campaign("mine", suite, [acme, bolt])
    builders.campaign("theirs", suite, [crux, bolt])
    generation = builders.generation(mine, suite.items.get(), acme)

    terms = generate.leak_terms(generation)

    assert {"Acmetron", "Boltzmann"} <= set(terms)
    assert "Cruxify" not in terms
    assert set(terms_from_settings()) <= set(terms)
    members = generate.campaign_members(generation)
    assert terms == generate.leak_terms(generation, members)
    assert generate.request_params(generation, members) == generate.request_params(generation)


@pytest.mark.django_db(transaction=True)
def test_a_chain_hands_its_endpoint_back_to_the_queue_after_its_time(
    simulator: SimulatorThread, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A task stops taking its endpoint's next generation once it has run DISPATCH_CHAIN_MAX_S
    seconds, however many DISPATCH_CHAIN_MAX allows: the rest are enqueued again, behind the
    other endpoints' messages, so a worker with fewer threads than slots moves every model on."""
    enqueued: list[list[int]] = []
    monkeypatch.setattr(dispatch, "_enqueue", lambda ids, work: enqueued.append(list(ids)))
    settings.DISPATCH_CHAIN_MAX, settings.DISPATCH_CHAIN_MAX_S = 50, 25
    ticks = iter(range(0, 1000, 10))  # each look at the clock: ten seconds later
    monkeypatch.setattr(dispatch, "_chain_clock", lambda: next(ticks))
    served = ModelEndpoint.objects.create(
        slug="ernie", name="ERNIE", model=ERNIE, dialect="fastdeploy",
        base_url=simulator.base_url(ERNIE), timeout_s=30, max_concurrency=1,
    )  # fmt: skip
    suite = builders.suite("timed-chain", ["QA"])
    item = suite.items.get()
    item.prompt = "hi [[sim: tps=3000, tokens=3]]"
    item.save()
    campaign = builders.campaign(
        "timed-chain", suite, [served], samples=6, status=CampaignStatus.RUNNING
    )
    queued = [
        builders.generation(
            campaign,
            item,
            served,
            sample=n,
            status=GenerationStatus.QUEUED,
            timings=builders.NO_TIMINGS,
        )
        for n in range(6)
    ]

    assert generate.run_generation(queued[0].pk) == "succeeded"

    states = dict(Generation.objects.filter(campaign=campaign).values_list("sample", "status"))
    # Clock at 0 (deadline 25), then 10 and 20 before the first two hand-overs, 30 before the
    # third: three generations ran, the slot went back to the queue for the fourth.
    assert [states[n] for n in range(6)] == [GenerationStatus.SUCCEEDED] * 3 + [
        GenerationStatus.QUEUED
    ] * 3
    assert enqueued == [[queued[3].pk]]


@pytest.mark.django_db
def test_a_chain_reads_its_campaigns_models_again_for_another_campaign_or_after_a_while() -> None:
    suite = builders.suite("members", ["QA"])
    item = suite.items.get()
    alpha, beta = builders.endpoint("alpha"), builders.endpoint("beta")
    first = builders.campaign("first", suite, [alpha, beta])
    second = builders.campaign("second", suite, [alpha])
    one, two = (builders.generation(c, item, alpha) for c in (first, second))
    known = generate._ChainMembers()

    with CaptureQueriesContext(connection) as captured:
        assert {m.endpoint_id for m in known.of(one)} == {alpha.pk, beta.pk}
        known.of(one)
    assert len(captured.captured_queries) == 1  # the second generation of the chain: none

    ModelEndpoint.objects.filter(pk=alpha.pk).update(base_url="http://edited.example/v1")
    known.read_at -= known.MEMBERS_MAX_AGE_S + 1  # a while later
    (member,) = (m for m in known.of(one) if m.endpoint_id == alpha.pk)
    assert member.endpoint.base_url == "http://edited.example/v1"  # the edit is used

    with CaptureQueriesContext(connection) as captured:
        assert [m.endpoint_id for m in known.of(two)] == [alpha.pk]  # another campaign
    assert len(captured.captured_queries) == 1
