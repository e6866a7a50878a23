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


def focused_answer(page) -> str | None:  # type: ignore[no-untyped-def]
    """The answer that has the keyboard focus, if it is also the one marked current."""
    return page.evaluate(
        """() => {
            const focused = document.activeElement?.closest("[data-answer]");
            const current = document.querySelector("#work [data-answer].current");
            return focused && focused === current ? focused.dataset.answer : null;
        }"""
    )


def wait_for_next_item(page, url: str) -> None:  # type: ignore[no-untyped-def]
    """Until htmx has swapped in the next item and wired up its form.

    htmx pushes the new URL before it swaps, and processes the new form only when it settles;
    a key pressed in between would submit the form without htmx (a full page load).
    """
    page.wait_for_function(
        "url => location.href !== url && !document.querySelector('.htmx-added, .htmx-settling')",
        arg=url,
    )


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
    wait_for_next_item(page, first_url)
    assert page.evaluate("window.__sameDocument") is True  # no full page load
    assert_blind_dom(page)

    # Item 2: skipped with S.
    second_url = page.url
    page.keyboard.press("s")
    wait_for_next_item(page, second_url)
    assert page.evaluate("window.__sameDocument") is True

    # Item 3 starts at A. J moves to the next answer and K to the previous (in either case, as
    # in mail and code review tools), and neither goes past the ends.
    third_url = page.url
    page.wait_for_function("() => document.activeElement.dataset.answer === '0'")
    for key, answer in [
        ("j", "1"),
        ("j", "1"),
        ("k", "0"),
        ("k", "0"),
        ("Shift+J", "1"),
        ("Shift+K", "0"),
    ]:
        page.keyboard.press(key)
        assert focused_answer(page) == answer, key

    # 0 for A (moving with the arrow keys), 5 for B, then submit.
    page.keyboard.press("0")
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("3")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("5")
    page.keyboard.press("Enter")
    wait_for_next_item(page, third_url)

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
    keys = " ".join(page.locator("#help-dialog").inner_text().split())
    assert "J / → next answer" in keys and "K / ← previous answer" in keys

    # Nothing the answers carried ever ran.
    assert page.evaluate("window.__pwned") is None
    assert errors == []
