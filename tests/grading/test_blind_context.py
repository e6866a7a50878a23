"""Blinding by construction: reviewer pages are rendered from plain values only.

A template can reach a model's name through any model instance it is given (an assignment's
unit, its campaign, its generations, their endpoint …), so the views reviewers use hand their
templates strings, numbers and frozen dataclasses — never a model instance. This test renders
every reviewer page and fragment and walks everything the view put in the context.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import models
from django.template import loader
from django.urls import reverse

from grading import assignment
from grading.models import Assignment, GoldAnswer, Purpose, ReviewSettings
from inference.models import Generation
from tests.conftest import logged_in
from tests.grading.test_review_pages import build_study

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true", "HX-Target": "work"}


def model_instances(value: Any, path: str, seen: set[int]) -> Iterator[str]:
    """Where, inside `value`, a model instance sits (as dotted paths)."""
    if id(value) in seen or isinstance(value, str | bytes | int | float | bool | type(None)):
        return
    seen.add(id(value))
    if isinstance(value, models.Model):
        yield f"{path}: {type(value).__name__}"
        return
    if isinstance(value, models.QuerySet):
        yield f"{path}: QuerySet of {value.model.__name__}"
        return
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for field in dataclasses.fields(value):
            yield from model_instances(getattr(value, field.name), f"{path}.{field.name}", seen)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from model_instances(item, f"{path}[{key!r}]", seen)
    elif isinstance(value, list | tuple | set | frozenset):
        for n, item in enumerate(value):
            yield from model_instances(item, f"{path}[{n}]", seen)
    elif hasattr(value, "object_list"):  # a paginator's page
        yield from model_instances(list(value.object_list), f"{path}.object_list", seen)


@pytest.fixture
def rendered(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The context each view hands to `render` (before context processors add theirs)."""
    contexts: list[dict[str, Any]] = []
    original = loader.render_to_string

    def recording(template_name: Any, context: Any = None, *args: Any, **kwargs: Any) -> str:
        contexts.append(dict(context or {}))
        return original(template_name, context, *args, **kwargs)

    monkeypatch.setattr(loader, "render_to_string", recording)
    return contexts


def test_reviewer_views_give_templates_no_model_instances(
    alice: User, rendered: list[dict[str, Any]]
) -> None:
    campaign = build_study(items=3)
    client = logged_in(alice)
    held = client.get(reverse("review-next"))["Location"]
    scores = {"score-0": "7", "score-1": "3"}
    results = reverse("campaign-results", args=[campaign.public_id])
    results_hx = {"HX-Request": "true", "HX-Target": "results"}
    found: list[str] = []

    def check(name: str, response: Any) -> None:
        assert response.status_code == 200, name
        assert rendered, f"{name}: nothing rendered"
        for context in rendered:
            for key, value in context.items():
                found.extend(f"{name}: {where}" for where in model_instances(value, key, set()))
        rendered.clear()

    check("review home", client.get(reverse("review")))
    check("scoring page", client.get(held))
    check("scoring fragment", client.get(held, headers=HTMX))
    check("refused submit", client.post(held, {"score-0": "11"}, headers=HTMX))
    check("submit, next item", client.post(held, scores, headers=HTMX))
    check("edit page", client.get(held))
    check("my scores", client.get(reverse("my-scores")))
    # Results, once opened to reviewers (which ends grading): page, fragment, overview.
    assignment.open_results(campaign)
    check("results page", client.get(results))
    check("results fragment", client.get(results, headers=results_hx))
    check("results overview", client.get(reverse("results")))
    check("nothing left", client.get(reverse("review-next")))
    assert not found, "\n".join(found)


def test_gold_and_calibration_pages_give_templates_no_model_instances(
    alice: User, rendered: list[dict[str, Any]]
) -> None:

    campaign = build_study(items=4)
    ReviewSettings.objects.filter(campaign=campaign).update(calibration=True, gold_rate=1.0)
    answers = Generation.objects.filter(campaign=campaign).order_by("item__external_id", "pk")
    calibration, gold = answers[0], answers[2]  # items q0 and q1
    GoldAnswer.objects.create(
        generation=calibration, low=2, high=5, note="why", purpose="calibration"
    )
    GoldAnswer.objects.create(generation=gold, low=2, high=5, note="why")
    assignment.sync_units(campaign)
    client = logged_in(alice)
    found: list[str] = []
    scores = {"score-0": "7", "score-1": "3"}

    def check(name: str, response: Any) -> None:
        assert response.status_code == 200, name
        assert rendered, f"{name}: nothing rendered"
        for context in rendered:
            for key, value in context.items():
                found.extend(f"{name}: {where}" for where in model_instances(value, key, set()))
        rendered.clear()

    held = client.get(reverse("review-next"))["Location"]
    check("calibration page", client.get(held))
    check("calibration fragment", client.get(held, headers=HTMX))
    check("calibration skip refused", client.post(held, {"skip": "1"}, headers=HTMX))
    check("calibration feedback", client.post(held, scores, headers=HTMX))
    check("calibration feedback page", client.get(held))
    gold_held = client.get(reverse("review-next"))["Location"]
    unit = Assignment.objects.get(public_id=gold_held.rstrip("/").rsplit("/", 1)[-1]).unit
    assert unit.purpose == Purpose.GOLD
    check("gold page", client.get(gold_held))
    check("gold fragment", client.get(gold_held, headers=HTMX))
    check("gold submit, next item", client.post(gold_held, scores, headers=HTMX))
    check("my scores", client.get(reverse("my-scores")))
    assert not found, "\n".join(found)
