"""Reviewer pages: blind (read from the HTML and headers), access-controlled, validated."""

from __future__ import annotations

import io
import re
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from PIL import Image

from grading import assignment as queue
from grading.models import Assignment, ReviewSettings, Score
from inference.images import process_image
from inference.models import (
    Campaign,
    CampaignModel,
    Generation,
    ModelEndpoint,
    Suite,
    TaskImage,
    TaskItem,
    TaskItemImage,
    TaskType,
)
from tests.conftest import logged_in

pytestmark = pytest.mark.django_db
HTMX = {"HX-Request": "true", "HX-Target": "work"}
HOSTILE = (
    '<script>window.__pwned=1</script>\n\n<img src=x onerror="window.__pwned=2">\n\n'
    "[click](javascript:window.__pwned=3)\n\n<iframe src='https://example.org'></iframe>\n\n"
    "<style>body{display:none}</style>\n\n**bold** and `code`"
)
# Everything that could tell a reviewer which model wrote an answer.
REVEALING = [
    "ERNIE-4.5-0.3B-Paddle",
    "ernie-4.5-0.3b",
    "baidu/ERNIE",
    "DeepSeek",
    "deepseek-r1",
    "Distill",
    "FastDeploy",
    "fastdeploy",
    "vllm",
    "vLLM",
    "8180",
    "127.0.0.1",
    "123.4",
    "987",
    "ttft",
    "tokens/s",
    "文心",
]


@pytest.fixture
def study(db: None) -> Campaign:
    return build_study()


def build_study(items: int = 3) -> Campaign:
    """A finished campaign of two models with hostile and self-naming answers, ready to review."""
    suite = Suite.objects.create(name="blind")
    vqa = TaskType.objects.get(code="VQA")
    campaign = Campaign.objects.create(slug="blind", name="Blind", suite=suite, status="finished")
    ReviewSettings.objects.create(campaign=campaign, reviewers_per_output=2, show_reasoning=True)
    # Names, dialects and addresses a reviewer must never see.
    served = [
        ("ernie-4.5-0.3b", "ERNIE-4.5-0.3B-Paddle", "baidu/ERNIE-4.5-0.3B-Paddle", "fastdeploy",
         "http://127.0.0.1:8180/v1", "none"),
        ("deepseek-r1-distill-qwen-1.5b", "DeepSeek-R1-Distill-Qwen-1.5B",
         "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B", "vllm", "http://127.0.0.1:8000/v1",
         "think_tags"),
    ]  # fmt: skip
    endpoints = [
        ModelEndpoint.objects.create(
            slug=slug, name=name, model=model, dialect=dialect, base_url=url, reasoning=reasoning
        )
        for slug, name, model, dialect, url, reasoning in served
    ]
    for position, endpoint in enumerate(endpoints):
        CampaignModel.objects.create(campaign=campaign, endpoint=endpoint, position=position)
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), "red").save(buffer, "PNG")
    processed = process_image(buffer.getvalue())
    image = TaskImage.objects.create(
        sha256=processed.sha256,
        format=processed.format,
        mime=processed.mime,
        width=40,
        height=30,
        original=processed.original,
        thumbnail=processed.thumbnail,
        size_bytes=len(processed.original),
    )
    for n in range(items):
        item = TaskItem.objects.create(
            suite=suite,
            external_id=f"q{n}",
            task_type=vqa,
            prompt=f"图里是什么颜色? {n}",
            reference="红色",
            content_hash="h",
        )
        TaskItemImage.objects.create(item=item, image=image, position=0)
        for endpoint in endpoints:
            content = HOSTILE if endpoint.slug.startswith("ernie") else "我是文心一言,答案是红色。"
            Generation.objects.create(
                campaign=campaign,
                item=item,
                endpoint=endpoint,
                status="succeeded",
                content=content,
                reasoning="先想一想" if "deepseek" in endpoint.slug else "",
                ttft_ms=123.4,
                completion_tokens=987,
                decode_tps=55.5,
                simulated=True,
                finish_reason="length" if n == 0 else "stop",
                # The reproducibility record names the model and its server: admins only.
                served_model=endpoint.model,
                system_fingerprint=f"fp-{endpoint.slug}",
                server_version=f"{endpoint.dialect} 0.8.5",
            )
    queue.sync_units(campaign)
    return campaign


def assert_blind(response: Any) -> str:
    html = response.content.decode()
    surface = html + " ".join(f"{k}: {v}" for k, v in response.items())
    for word in REVEALING:
        assert word not in surface, word
    # No sequential database ids in any URL the page links to.
    for url in re.findall(r'(?:href|src|hx-get|hx-post|action)="([^"]*)"', html):
        assert not re.search(r"/\d+/", url), url
    return html


def first_assignment(client: Client) -> tuple[str, str]:
    response = client.get("/review/next/")
    assert response.status_code == 302
    url = response["Location"]
    return url, assert_blind(client.get(url))


def scores_for(count: int, value: str = "7") -> dict[str, str]:
    return {f"score-{n}": value for n in range(count)}


def test_every_reviewer_page_is_blind(study: Campaign, alice: User) -> None:
    client = logged_in(alice)
    assert_blind(client.get("/review/"))
    url, html = first_assignment(client)
    assert "Answer A" in html and "Answer B" in html
    assert '<progress max="3" value="0">' in html  # the reviewer's own progress
    assert '<progress max="6" value="0">' in html  # the campaign's: 3 items × 2 reviewers
    assert_blind(client.get(url, headers=HTMX))
    response = client.post(url, {**scores_for(2), "comment-0": "ok"}, headers=HTMX)
    next_html = assert_blind(response)
    assert 'id="work"' in next_html and response["HX-Push-Url"].startswith("/review/a/")
    # The swapped-in form posts to the next item, not to the one just submitted.
    assert f'hx-post="{response["HX-Push-Url"]}"' in next_html
    assert_blind(client.get("/review/mine/"))
    assert_blind(client.get(url))  # reopened for editing
    thumb = client.get(re.findall(r'src="(/review/images/[^"]+)"', html)[0])
    assert thumb.status_code == 200 and thumb["Content-Type"] == "image/webp"


def test_hostile_output_is_inert_and_names_are_masked(study: Campaign, alice: User) -> None:
    _, html = first_assignment(logged_in(alice))
    assert "<script>window.__pwned" not in html and "&lt;script&gt;" in html
    assert not re.search(r"<img[^>]*onerror", html)
    assert not re.search(r"href=[\"']?\s*javascript:", html, re.I)
    assert "<iframe" not in html and "<style>body" not in html
    assert "<strong>bold</strong>" in html
    assert "■" in html and "model or vendor name" in html
    assert "<details" in html  # reasoning shown collapsed (the campaign shows it)


def test_a_reviewer_cannot_open_someone_elses_assignment(
    study: Campaign, alice: User, bob: User
) -> None:
    url, _ = first_assignment(logged_in(alice))
    assert logged_in(bob).get(url).status_code == 404
    assert logged_in(bob).post(url, scores_for(2)).status_code == 404
    assert Score.objects.count() == 0


def test_reviewers_reach_no_admin_or_generation_page(study: Campaign, alice: User) -> None:
    client = logged_in(alice)
    generation = Generation.objects.first()
    assert generation is not None
    assert client.get(f"/generations/{generation.public_id}/").status_code == 403
    assert client.get(f"/campaigns/{study.public_id}/").status_code == 403
    assert client.get("/admin/").status_code == 302


def test_non_reviewers_cannot_review(study: Campaign, nobody: User) -> None:
    assert logged_in(nobody).get("/review/next/").status_code == 403


@pytest.mark.parametrize("bad", ["11", "7.5", "", "-1", "x"])
def test_bad_scores_are_refused_with_a_message_and_nothing_saved(
    study: Campaign, alice: User, bad: str
) -> None:
    client = logged_in(alice)
    url, _ = first_assignment(client)
    html = client.post(url, {"score-0": bad, "score-1": "5"}, headers=HTMX).content.decode()
    assert "whole number from 0 to 10" in html
    assert Score.objects.count() == 0


def test_double_submit_saves_one_score_per_answer(study: Campaign, alice: User) -> None:
    client = logged_in(alice)
    url, _ = first_assignment(client)
    client.post(url, scores_for(2, "10"))
    client.post(url, scores_for(2, "10"))
    assert Score.objects.filter(reviewer=alice).count() == 2
    assert set(Score.objects.values_list("score", flat=True)) == {10}


def test_skip_moves_on_and_scores_can_be_edited(study: Campaign, alice: User) -> None:
    client = logged_in(alice)
    url, _ = first_assignment(client)
    response = client.post(url, {"skip": "1"})
    assert response.status_code == 302 and response["Location"] != url
    second = response["Location"]
    client.post(second, scores_for(2, "4"))
    client.post(second, scores_for(2, "9"))  # the submitted assignment: an edit
    assert sorted(Score.objects.values_list("score", flat=True)) == [9, 9]
    assert Assignment.objects.filter(status="skipped").count() == 1


def test_reviewer_never_sees_other_reviewers_scores(
    study: Campaign, alice: User, bob: User
) -> None:
    alice_client = logged_in(alice)
    url, _ = first_assignment(alice_client)
    alice_client.post(url, {**scores_for(2, "3"), "comment-0": "alice-secret-comment"})
    bob_client = logged_in(bob)
    while True:
        response = bob_client.get("/review/next/")
        if response.status_code != 302:
            break
        html = bob_client.get(response["Location"]).content.decode()
        assert "alice-secret-comment" not in html
        bob_client.post(response["Location"], scores_for(2, "8"))
    assert "alice-secret-comment" not in bob_client.get("/review/mine/").content.decode()


def test_admin_sees_review_progress_per_reviewer(
    study: Campaign, alice: User, admin_client: Client
) -> None:
    client = logged_in(alice)
    url, _ = first_assignment(client)
    client.post(url, scores_for(2, "6"))
    html = admin_client.get(f"/campaigns/{study.public_id}/review/").content.decode()
    assert "alice" in html
    assert "<td>2</td>" in html  # two answers scored
    assert "3</strong> items to review" in html
    assert "5</strong> reviews still wanted" in html  # 3 items × 2 reviewers − 1 submitted
    assert logged_in(alice).get(f"/campaigns/{study.public_id}/review/").status_code == 403


def test_held_items_reach_reviewers_only_after_release(
    study: Campaign, alice: User, admin_client: Client
) -> None:
    study.review.identity_leaks = "hold"
    study.review.save()
    study.review_units.all().delete()
    Generation.objects.filter(campaign=study, content__contains="文心").update(
        identity_leaks=["文心一言"]
    )
    queue.sync_units(study)
    assert study.review_units.filter(held_for_admin=True).count() == 3
    client = logged_in(alice)
    assert client.get("/review/next/").status_code == 200  # nothing to review: all held
    html = admin_client.get(f"/campaigns/{study.public_id}/held/").content.decode()
    assert "文心一言" in html and "deepseek-r1-distill-qwen-1.5b" in html
    assert logged_in(alice).get(f"/campaigns/{study.public_id}/held/").status_code == 403
    admin_client.post(f"/campaigns/{study.public_id}/held/", {"release_all": "1"})
    assert not study.review_units.filter(held_for_admin=True).exists()
    _, html = first_assignment(client)
    assert "■" in html and "文心" not in html
