"""The scoring form refuses what it cannot store, says why, and saves nothing of that submit.

Errors answer 200 with the form and its message, as a full page or (to htmx) the `#work`
fragment: htmx 2 does not swap 4xx responses, and the reviewer must see the message.
"""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client

from grading.assignment import COMMENT_MAX_CHARS
from grading.models import Assignment, Score
from inference.models import Campaign
from tests.conftest import logged_in
from tests.grading.test_review_pages import HTMX, build_study, first_assignment, scores_for

pytestmark = pytest.mark.django_db

NOT_SCORES = [
    pytest.param("11", id="eleven"),
    pytest.param("7.5", id="fraction"),
    pytest.param("", id="nothing"),
    pytest.param("-1", id="negative"),
    pytest.param("x", id="letter"),
    pytest.param("²", id="superscript-2"),  # str.isdigit says yes, int() says no
    pytest.param("¹⁰", id="superscript-10"),
    pytest.param("٧", id="arabic-indic-7"),  # int() reads it as 7
    pytest.param("７", id="fullwidth-7"),
    pytest.param("1" * 5000, id="5000-digits"),  # more digits than int() converts
]
FORM_KINDS = [pytest.param({}, id="page"), pytest.param(HTMX, id="htmx")]


@pytest.fixture
def study(db: None) -> Campaign:
    return build_study()


@pytest.fixture
def sheet(study: Campaign, alice: User) -> tuple[Client, str]:
    """Alice signed in, and the URL of the first item she holds."""
    client = logged_in(alice)
    url, _ = first_assignment(client)
    return client, url


def post_sheet(
    client: Client, url: str, data: dict[str, str], headers: dict[str, str]
) -> tuple[int, str]:
    response = client.post(url, data, headers=headers)
    return response.status_code, response.content.decode()


def assert_answered_with_form(status: int, html: str, headers: dict[str, str]) -> None:
    assert status == 200
    assert 'id="work"' in html
    assert ("<html" in html) is not bool(headers)  # htmx gets the fragment, a browser the page


@pytest.mark.parametrize("headers", FORM_KINDS)
@pytest.mark.parametrize("bad", NOT_SCORES)
def test_a_score_that_is_not_ascii_0_to_10_is_refused_and_nothing_saved(
    sheet: tuple[Client, str], alice: User, bad: str, headers: dict[str, str]
) -> None:
    client, url = sheet
    status, html = post_sheet(client, url, {"score-0": "5", "score-1": bad}, headers)
    assert_answered_with_form(status, html, headers)
    assert "a score is a whole number from 0 to 10" in html
    assert "1" * 100 not in html  # a long value is not echoed back whole
    assert Score.objects.count() == 0
    assert Assignment.objects.get(reviewer=alice, status="reserved")


@pytest.mark.parametrize("headers", FORM_KINDS)
@pytest.mark.parametrize("bad", [NOT_SCORES[5], NOT_SCORES[7], NOT_SCORES[9]])
def test_editing_with_a_bad_score_changes_nothing(
    sheet: tuple[Client, str], bad: str, headers: dict[str, str]
) -> None:
    client, url = sheet
    client.post(url, {**scores_for(2, "4"), "comment-0": "first"})
    edit = {"score-0": "9", "comment-0": "second", "score-1": bad}
    status, html = post_sheet(client, url, edit, headers)
    assert_answered_with_form(status, html, headers)
    assert "a score is a whole number from 0 to 10" in html
    assert sorted(Score.objects.values_list("score", "comment")) == [(4, ""), (4, "first")]


@pytest.mark.parametrize("headers", FORM_KINDS)
def test_every_ascii_score_from_0_to_10_is_accepted(
    sheet: tuple[Client, str], headers: dict[str, str]
) -> None:
    client, url = sheet
    client.post(url, scores_for(2, "0"), headers=headers)
    for value in range(11):
        client.post(url, {"score-0": str(value), "score-1": f" {10 - value} "}, headers=headers)
        assert sorted(Score.objects.values_list("position", "score")) == [
            (0, value),
            (1, 10 - value),
        ]


def test_the_comment_box_holds_at_most_the_limit(study: Campaign, alice: User) -> None:
    _, html = first_assignment(logged_in(alice))
    assert html.count(f'maxlength="{COMMENT_MAX_CHARS}"') == 2  # one box per answer


@pytest.mark.parametrize("headers", FORM_KINDS)
@pytest.mark.parametrize(
    ("char", "length"), [("长", COMMENT_MAX_CHARS + 1), ("x", 1_000_000)], ids=["just-over", "1MB"]
)
def test_a_comment_over_the_limit_is_refused_and_nothing_saved(
    sheet: tuple[Client, str], alice: User, char: str, length: int, headers: dict[str, str]
) -> None:
    client, url = sheet
    data = {**scores_for(2), "comment-0": "fine", "comment-1": char * length}
    status, html = post_sheet(client, url, data, headers)
    assert_answered_with_form(status, html, headers)
    assert "a comment is at most 5,000 characters" in html
    assert f"the comment on answer B has {length:,}" in html
    assert char * 100 not in html
    assert Score.objects.count() == 0
    assert Assignment.objects.get(reviewer=alice, status="reserved")


@pytest.mark.parametrize("headers", FORM_KINDS)
def test_editing_with_a_comment_over_the_limit_changes_no_score(
    sheet: tuple[Client, str], headers: dict[str, str]
) -> None:
    client, url = sheet
    client.post(url, {**scores_for(2, "4"), "comment-1": "first"})
    edit = {**scores_for(2, "9"), "comment-0": "new", "comment-1": "x" * (COMMENT_MAX_CHARS + 1)}
    status, html = post_sheet(client, url, edit, headers)
    assert_answered_with_form(status, html, headers)
    assert "a comment is at most 5,000 characters" in html
    assert sorted(Score.objects.values_list("score", "comment")) == [(4, ""), (4, "first")]


def test_a_comment_at_the_limit_is_saved_counting_a_line_break_once(
    sheet: tuple[Client, str],
) -> None:
    client, url = sheet
    # What a browser sends for a full box: textarea line breaks go over the wire as CRLF,
    # but `maxlength` counted each as one character.
    comment = ("x" * 99 + "\r\n") * 49 + "y" * 100
    assert len(comment.replace("\r\n", "\n")) == COMMENT_MAX_CHARS
    response = client.post(url, {**scores_for(2), "comment-0": comment})
    assert response.status_code == 302
    stored = Score.objects.get(position=0).comment
    assert stored == comment.replace("\r\n", "\n") and len(stored) == COMMENT_MAX_CHARS
