"""A reviewer scores in Chromium entirely from the keyboard, and nothing reveals a model."""

from __future__ import annotations

from pathlib import Path

import pytest

from grading.models import Score
from tests.conftest import browser_login
from tests.grading.test_review_pages import REVEALING, build_study

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def assert_blind_dom(page) -> None:  # type: ignore[no-untyped-def]
    dom = page.content()
    for word in REVEALING:
        assert word not in dom, word


def test_reviewer_scores_from_the_keyboard(page, live_server, alice, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    build_study(items=4)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    browser_login(page, live_server.url, "alice")
    page.goto(f"{live_server.url}/review/next/")
    page.wait_for_selector("#work [data-answer]")
    assert_blind_dom(page)
    page.evaluate("window.__sameDocument = true")
    first_url = page.url

    # Item 1: A gets 10 (T), B gets 7; Enter submits and htmx swaps in the next item.
    page.keyboard.press("t")
    page.keyboard.press("7")
    page.screenshot(path=str(tmp_path / "scored.png"), full_page=True)
    page.keyboard.press("Enter")
    page.wait_for_function("url => location.href !== url", arg=first_url)
    assert page.evaluate("window.__sameDocument") is True  # no full page load
    assert_blind_dom(page)

    # Item 2: skipped with S.
    second_url = page.url
    page.keyboard.press("s")
    page.wait_for_function("url => location.href !== url", arg=second_url)

    # Item 3: 0 for A (moving with the arrow keys), 5 for B, then submit.
    third_url = page.url
    page.keyboard.press("0")
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("3")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("5")
    page.keyboard.press("Enter")
    page.wait_for_function("url => location.href !== url", arg=third_url)

    scores = sorted(Score.objects.filter(reviewer=alice).values_list("score", flat=True))
    assert scores == [3, 5, 7, 10]  # the 0 typed first was corrected to 3

    # U reopens the last submitted item; change B's score and save.
    page.keyboard.press("u")
    page.wait_for_url(third_url)
    page.keyboard.press("ArrowRight")
    page.keyboard.press("9")
    page.click("button[name=submit]")
    page.wait_for_url(f"{live_server.url}/review/mine/")
    scores = sorted(Score.objects.filter(reviewer=alice).values_list("score", flat=True))
    assert scores == [3, 7, 9, 10]
    assert_blind_dom(page)

    # The help overlay opens with ?.
    page.goto(first_url)
    page.keyboard.press("?")
    assert page.locator("#help-dialog").is_visible()

    # Nothing the answers carried ever ran.
    assert page.evaluate("window.__pwned") is None
    assert errors == []
