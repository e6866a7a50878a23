"""An admin imports a zip in Chromium: upload, preview (swapped in by htmx), confirm."""

from __future__ import annotations

from pathlib import Path

import pytest

from inference.models import TaskItem
from tests.conftest import browser_login
from tests.inference.test_import_tasks import TEXT, VISION, png_bytes
from tests.inference.test_item_pages import fixture_zip

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
]


def test_admin_imports_a_zip_with_preview_and_confirm(
    page, live_server, admin, tmp_path: Path
) -> None:
    archive = tmp_path / "browser-suite.zip"
    rows = [TEXT, VISION, {**TEXT, "id": "t2", "task_type": "MT", "prompt": "把“你好”译成英文"}]
    archive.write_bytes(fixture_zip(rows, {"img/a.png": png_bytes()}))
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))

    browser_login(page, live_server.url, "admin")
    page.click("text=Import")
    page.wait_for_url(f"{live_server.url}/items/import/")
    page.evaluate("window.__sameDocument = true")
    page.set_input_files("#id_file", str(archive))
    page.fill("#id_suite", "browser")
    page.click("button[name=preview]")
    preview = page.locator("#result .preview")
    preview.wait_for()
    assert "Preview of browser-suite.zip → suite browser" in preview.inner_text()
    assert page.evaluate("window.__sameDocument") is True  # swapped in, not a page load
    assert TaskItem.objects.count() == 0
    page.screenshot(path=str(tmp_path / "preview.png"), full_page=True)

    page.click("button[name=confirm]")
    page.wait_for_url(f"{live_server.url}/items/?suite=browser")
    assert "Suite browser: created 3, updated 0, unchanged 0." in page.inner_text(".messages")
    assert page.locator("#results tbody tr").count() == 3
    assert TaskItem.objects.filter(suite__name="browser").count() == 3
    assert errors == []


def test_admin_sees_every_problem_and_no_confirm_button(
    page, live_server, admin, tmp_path: Path
) -> None:
    archive = tmp_path / "broken.zip"
    archive.write_bytes(
        fixture_zip([TEXT, {**VISION, "images": []}, {**TEXT, "id": "t9", "task_type": "??"}])
    )
    browser_login(page, live_server.url, "admin")
    page.goto(f"{live_server.url}/items/import/")
    page.set_input_files("#id_file", str(archive))
    page.click("button[name=preview]")
    problems = page.locator("#result .problems")
    problems.wait_for()
    text = problems.inner_text()
    assert "2 problems — nothing was imported" in text
    assert "images: a VQA (vision) item needs at least one image" in text
    assert "unknown task type '??'" in text
    assert page.locator("button[name=confirm]").count() == 0
    assert TaskItem.objects.count() == 0
