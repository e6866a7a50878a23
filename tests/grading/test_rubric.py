"""Rubric v1 is installed by migrate, covers 0–10 exactly, and is shown to every role."""

from __future__ import annotations

import pytest

from grading.models import Rubric

pytestmark = pytest.mark.django_db


def test_current_rubric_bands_cover_every_score_once() -> None:
    rubric = Rubric.objects.current()
    covered = [s for band in rubric.bands.all() for s in range(band.low, band.high + 1)]
    assert sorted(covered) == list(range(11))
    assert [b.label_zh for b in rubric.bands.all()] == [
        "卓越",
        "优秀",
        "良好",
        "一般",
        "较差",
        "失败",
    ]


def test_current_rubric_has_a_scoring_focus_for_each_task_type() -> None:
    rubric = Rubric.objects.current()
    assert rubric.version == 1
    assert rubric.focuses.count() == 21
    assert rubric.focuses.get(task_type__code="MT").focus_zh == "翻译准确性与流畅度"


def test_a_later_version_becomes_current() -> None:
    Rubric.objects.create(version=2, name="stricter")
    assert Rubric.objects.current().version == 2


def test_rubric_page_lists_bands_and_focuses(alice_client) -> None:
    response = alice_client.get("/rubric/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "卓越" in html and "Logical reasoning" in html and "VQA" in html
    assert "逻辑推理能力" not in html  # the focus follows the chosen language


def test_rubric_page_in_chinese_uses_chinese_focus(alice_client) -> None:
    response = alice_client.get("/rubric/", HTTP_ACCEPT_LANGUAGE="zh-hans")
    html = response.content.decode()
    assert "跨模态理解能力" in html
    assert 'lang="zh-hans"' in html
