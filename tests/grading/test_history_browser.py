"""The Back button after htmx swapped pages: the browser gets the whole page, never a fragment."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from tests.conftest import browser_login, logged_in
from tests.grading.test_review_browser import wait_for_next_item
from tests.grading.test_review_pages import build_study

# htmx keeps snapshots of pages it pushed in sessionStorage; when the snapshot is gone (evicted,
# too large, another tab) Back makes it ask the server with HX-History-Restore-Request.
FORGET_SNAPSHOTS = "sessionStorage.removeItem('htmx-history-cache')"
WATCH_RESTORE = (
    "window.__restored = false;"
    "document.body.addEventListener('htmx:historyRestore', () => { window.__restored = true })"
)


def assert_whole_page(page) -> None:  # type: ignore[no-untyped-def]
    assert page.locator("header.topbar").count() == 1, page.content()[:500]
    assert page.locator("#work").count() == 1


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_back_after_scoring_shows_the_whole_page(page, live_server, alice) -> None:  # type: ignore[no-untyped-def]
    build_study(items=3)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    browser_login(page, live_server.url, "alice")
    page.goto(f"{live_server.url}/review/next/")
    page.wait_for_selector("#work [data-answer]")
    urls = [page.url]
    for _ in range(2):
        page.keyboard.press("t")
        page.keyboard.press("7")
        page.keyboard.press("Enter")
        wait_for_next_item(page, urls[-1])
        page.wait_for_selector("#work [data-answer]")
        urls.append(page.url)

    page.evaluate(FORGET_SNAPSHOTS)
    page.evaluate(WATCH_RESTORE)
    page.go_back()
    page.wait_for_function("window.__restored === true")
    page.wait_for_function("url => location.href === url", arg=urls[1])
    page.wait_for_selector("#work")
    assert_whole_page(page)

    # Back again, now past a full page load in between: still whole.
    page.goto(f"{live_server.url}/review/mine/")
    page.go_back()
    page.wait_for_selector("#work")
    assert_whole_page(page)
    assert errors == []


@pytest.mark.django_db
def test_fragment_and_page_responses_say_they_vary_on_htmx(alice: User) -> None:
    build_study(items=1)
    client = logged_in(alice)
    response = client.get("/review/next/")
    held_url = response["Location"]
    page = client.get(held_url)
    fragment = client.get(held_url, headers={"HX-Request": "true", "HX-Target": "work"})
    restore = client.get(
        held_url,
        headers={"HX-Request": "true", "HX-Target": "work", "HX-History-Restore-Request": "true"},
    )
    for response in (page, fragment, restore):
        assert "HX-Request" in response["Vary"]
    assert "<header" in page.content.decode()
    assert "<header" not in fragment.content.decode()
    assert "<header" in restore.content.decode()
