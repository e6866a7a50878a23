"""Answers imported from another tool (`import_generations`) are reviewed like generated ones:
blind, masked, k reviewers, both layouts, the results pages; placeholders of `import_scores`
never are."""

from __future__ import annotations

from io import StringIO
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command

from grading import assignment as queue
from grading.models import Layout, ReviewSettings, Score
from inference.models import Campaign, Suite
from tests import builders
from tests.conftest import logged_in
from tests.grading.test_review_pages import assert_blind, first_assignment, scores_for

pytestmark = pytest.mark.django_db

# Model slugs, a leaking answer and timings a reviewer must never see (REVEALING names them).
ANSWERS = (
    "campaign,matchup,task_type,item_id,model,sample,ttft_ms,completion_tokens,content\r\n"
    "harness,h,AR,q0,ernie-4.5-0.3b,0,123.4,987,我是文心一言，答案是红色。\r\n"
    "harness,h,AR,q0,deepseek-r1-distill-qwen-1.5b,0,,,答案是蓝色。\r\n"
    "harness,h,AR,q1,ernie-4.5-0.3b,0,123.4,987,作为文心一言：红色\r\n"
    "harness,h,AR,q1,deepseek-r1-distill-qwen-1.5b,0,,,蓝色\r\n"
)


def import_answers(tmp_path: Path, text: str = ANSWERS) -> Campaign:
    suite = Suite.objects.get_or_create(name="blind")[0]
    for n in range(2):
        if not suite.items.filter(external_id=f"q{n}").exists():
            builders.item(suite, f"q{n}", "AR", prompt=f"什么颜色? {n}")
    path = tmp_path / "answers.csv"
    path.write_text(text, encoding="utf-8", newline="")
    call_command("import_generations", str(path), stdout=StringIO(), stderr=StringIO())
    return Campaign.objects.get(slug="harness")


def test_imported_answers_are_reviewed_side_by_side_blind_and_masked(
    tmp_path: Path, alice: User
) -> None:
    import_answers(tmp_path)
    client = logged_in(alice)

    url, html = first_assignment(client)  # assert_blind: no model, no timing, no 文心

    assert "Answer A" in html and "Answer B" in html
    assert "■" in html and "model or vendor name" in html
    assert "imported" not in html.casefold()  # reviewers see no difference
    response = client.post(url, scores_for(2))
    assert response.status_code == 302
    assert Score.objects.filter(reviewer=alice).count() == 2


def test_k_reviewers_each_review_an_imported_item_once(
    tmp_path: Path, alice: User, bob: User
) -> None:
    campaign = import_answers(tmp_path)
    ReviewSettings.objects.update_or_create(campaign=campaign, defaults={"reviewers_per_output": 1})
    queue.sync_units(campaign)

    first = queue.next_assignment(alice)
    second = queue.next_assignment(bob)

    assert first is not None and second is not None
    assert first.unit_id != second.unit_id
    assert queue.next_assignment(builders.reviewer("carol")) is None
    assert sorted(len(a.order) for a in (first, second)) == [2, 2]


def test_imported_answers_are_reviewed_one_at_a_time_in_the_single_layout(
    tmp_path: Path, alice: User
) -> None:
    campaign = import_answers(tmp_path)
    ReviewSettings.objects.update_or_create(campaign=campaign, defaults={"layout": Layout.SINGLE})

    assert queue.sync_units(campaign) == 4
    _, html = first_assignment(logged_in(alice))
    assert "Answer A" in html and "Answer B" not in html


def test_score_placeholders_stay_out_while_imported_answers_enter(
    tmp_path: Path, alice: User
) -> None:
    campaign = import_answers(tmp_path)
    # Scores from elsewhere for a third model: a placeholder answer in the same campaign.
    scores = tmp_path / "scores.csv"
    scores.write_text(
        "campaign,task_type,item_id,model,reviewer,score\r\nharness,AR,q0,gpt-x,erin,7\r\n",
        encoding="utf-8",
    )
    call_command("import_scores", str(scores), stdout=StringIO(), stderr=StringIO())
    assert campaign.generations.filter(placeholder=True).count() == 1

    queue.sync_units(campaign)
    held = queue.next_assignment(alice)

    assert (
        held is not None and len(held.order) == 2
    )  # the two imported answers, not the placeholder
    assert "(imported score" not in assert_blind(
        logged_in(alice).get(f"/review/a/{held.public_id}/")
    )


def test_results_label_imported_answers_and_count_those_without_timings(
    tmp_path: Path, admin: User, alice: User, bob: User
) -> None:
    campaign = import_answers(tmp_path)
    for reviewer in (alice, bob):
        client = logged_in(reviewer)
        for _ in range(2):
            url, _ = first_assignment(client)
            client.post(url, scores_for(2))

    html = logged_in(admin).get(f"/results/{campaign.public_id}/").content.decode()

    assert "imported" in html
    # deepseek's two answers carry no timings: counted, and left out of the speed figures.
    assert 'class="num untimed"><span class="warning">2</span>' in html


def test_an_answer_naming_its_own_in_house_model_is_flagged_and_masked(
    tmp_path: Path, alice: User
) -> None:
    """The configured terms know nothing of an in-house model: its own name is a term too."""
    campaign = import_answers(
        tmp_path,
        "campaign,task_type,item_id,model,content\r\n"
        "harness,AR,q0,acme/Acme-7B-Chat,I am Acme-7B and the answer is red.\r\n"
        "harness,AR,q0,ernie-4.5-0.3b,The answer is blue.\r\n",
    )
    acme = campaign.generations.get(endpoint__model="acme/Acme-7B-Chat")
    assert acme.identity_leaks == ["Acme"]

    _, html = first_assignment(logged_in(alice))

    assert "acme" not in html.casefold()
    assert "I am ■" in html or "I am [■■■]" in html
