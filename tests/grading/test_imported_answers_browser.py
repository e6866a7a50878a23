"""In Chromium: a reviewer scores answers imported from another tool, blind and masked, and an
admin imports them through the upload page (preview, then confirm)."""

from __future__ import annotations

from pathlib import Path

import pytest

from grading.models import Score
from inference.models import Generation, Suite
from tests import builders
from tests.conftest import browser_login
from tests.grading.test_imported_answers import ANSWERS, import_answers
from tests.grading.test_review_browser import assert_blind_dom, wait_for_next_item

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_reviewer_scores_imported_answers_blind_and_masked(  # type: ignore[no-untyped-def]
    page, live_server, alice, tmp_path: Path
) -> None:
    import_answers(tmp_path)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    browser_login(page, live_server.url, "alice")
    page.goto(f"{live_server.url}/review/next/")
    for _ in range(2):
        page.wait_for_selector("#work [data-answer]")
        assert_blind_dom(page)
        assert "■" in page.inner_text("#work")  # 文心一言 masked in both items
        assert "imported" not in page.content().casefold()
        url = page.url
        page.keyboard.press("7")
        page.keyboard.press("8")
        page.keyboard.press("Enter")
        wait_for_next_item(page, url)
    assert Score.objects.filter(reviewer=alice).count() == 4
    assert errors == []


def test_admin_imports_answers_with_preview_and_confirm(  # type: ignore[no-untyped-def]
    page, live_server, admin, tmp_path: Path
) -> None:
    suite = Suite.objects.create(name="blind")
    builders.item(suite, "q0", "AR")
    builders.item(suite, "q1", "AR")
    good = tmp_path / "harness.csv"
    good.write_text(ANSWERS, encoding="utf-8", newline="")
    bad = tmp_path / "broken.csv"
    bad.write_text(ANSWERS + "harness,h,CK,q0,gpt-x,0,,,x\r\n", encoding="utf-8", newline="")
    browser_login(page, live_server.url, "admin")
    page.goto(f"{live_server.url}/campaigns/")
    page.click("text=Import answers made elsewhere")
    page.wait_for_url(f"{live_server.url}/campaigns/import/")

    page.set_input_files("#id_file", str(bad))
    page.click("button[name=preview]")
    page.locator("#result .problems").wait_for()
    text = page.inner_text("#result .problems")
    assert "1 problem — nothing was imported" in text
    assert "6: task_type: item 'q0' of suite blind is AR, not CK" in text
    assert page.locator("button[name=confirm]").count() == 0

    page.evaluate("window.__sameDocument = true")
    page.set_input_files("#id_file", str(good))
    page.click("button[name=preview]")
    preview = page.locator("#result .preview")
    preview.wait_for()
    assert "Preview of harness.csv" in preview.inner_text()
    assert page.evaluate("window.__sameDocument") is True
    assert page.locator("#result table.counts tbody tr").count() == 2
    assert not Generation.objects.exists()
    page.screenshot(path=str(tmp_path / "answers-preview.png"), full_page=True)

    page.click("button[name=confirm]")
    page.wait_for_url(f"{live_server.url}/campaigns/")
    assert "Answers from harness.csv: created 4, unchanged 0." in page.inner_text(".messages")
    assert Generation.objects.filter(source="imported").count() == 4
