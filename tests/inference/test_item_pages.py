"""Admins browse items and import fixtures in the browser; nobody else can."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.test import Client

from inference.models import Suite, TaskImage, TaskItem
from tests.conftest import REPO
from tests.inference.test_import_tasks import TEXT, VISION, png_bytes

pytestmark = pytest.mark.django_db
HTMX = {"HX-Request": "true"}
HTMX_RESULTS = {**HTMX, "HX-Target": "results"}
HTMX_IMPORT = {**HTMX, "HX-Target": "result"}


@pytest.fixture
def sample(db: None) -> None:
    call_command("import_tasks", str(REPO / "fixtures" / "sample"), stdout=io.StringIO())


def fixture_zip(rows: list[dict], images: dict[str, bytes] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr(
            "upload/upload.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        )
        for name, data in (images or {}).items():
            zf.writestr(f"upload/{name}", data)
    return buffer.getvalue()


def test_items_list_filters_by_suite_and_task_type(admin_client: Client, sample: None) -> None:
    html = admin_client.get("/items/", {"suite": "sample", "task_type": "MT"}).content.decode()
    mt_count = TaskItem.objects.filter(task_type__code="MT").count()
    assert f"{mt_count} items" in html
    assert '<code title="machine translation">MT</code>' in html
    assert '<code title="analogical reasoning">AR</code>' not in html


def test_items_filter_through_htmx_returns_only_the_results(
    admin_client: Client, sample: None
) -> None:
    response = admin_client.get("/items/", {"task_type": "VQA"}, headers=HTMX_RESULTS)
    html = response.content.decode()
    assert html.lstrip().startswith('<section id="results"')
    assert "<html" not in html


def test_items_list_query_count_does_not_grow_with_items(
    admin_client: Client, sample: None, django_assert_max_num_queries
) -> None:
    with django_assert_max_num_queries(8):
        admin_client.get("/items/")
    with django_assert_max_num_queries(8):
        admin_client.get("/items/", {"task_type": "VQA"})


def test_item_detail_shows_prompt_reference_and_images(admin_client: Client, sample: None) -> None:
    item = TaskItem.objects.filter(task_type__code="VQA").first()
    assert item is not None
    html = admin_client.get(f"/items/{item.public_id}/").content.decode()
    assert item.external_id in html
    image = item.ordered_images()[0]
    assert f"/images/{image.public_id}/thumb/" in html
    thumb = admin_client.get(f"/images/{image.public_id}/thumb/")
    assert thumb["Content-Type"] == "image/webp" and thumb.content[:4] == b"RIFF"
    full = admin_client.get(f"/images/{image.public_id}/")
    assert full["Content-Type"] == image.mime and full.content == image.payload


@pytest.mark.parametrize("persona", ["alice", "nobody"])
def test_non_admins_cannot_browse_or_import(request, persona: str, sample: None) -> None:
    from tests.conftest import logged_in

    client = logged_in(request.getfixturevalue(persona))
    item = TaskItem.objects.filter(task_type__code="VQA").first()
    assert item is not None
    image = item.ordered_images()[0]
    for url in (
        "/items/",
        f"/items/{item.public_id}/",
        "/items/import/",
        f"/images/{image.public_id}/",
        f"/images/{image.public_id}/thumb/",
    ):
        assert client.get(url).status_code == 403, url
    upload = SimpleUploadedFile("x.zip", fixture_zip([TEXT]))
    assert client.post("/items/import/", {"file": upload, "preview": "1"}).status_code == 403
    assert not Suite.objects.filter(name="x").exists()


def test_import_preview_then_confirm(admin_client: Client) -> None:
    upload = SimpleUploadedFile(
        "batch.zip", fixture_zip([TEXT, VISION], {"img/a.png": png_bytes()})
    )
    response = admin_client.post(
        "/items/import/", {"file": upload, "suite": "", "preview": "1"}, headers=HTMX_IMPORT
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert "Preview of batch.zip → suite upload" in html
    assert "Import 2 items" in html
    assert TaskItem.objects.count() == 0  # a preview writes nothing
    token = html.split('name="token" value="')[1].split('"')[0]
    response = admin_client.post(
        "/items/import/", {"token": token, "confirm": "1"}, headers=HTMX_IMPORT
    )
    assert response.status_code == 200
    assert response["HX-Redirect"] == "/items/?suite=upload"
    assert TaskItem.objects.filter(suite__name="upload").count() == 2
    assert TaskImage.objects.count() == 1
    # The same token cannot import twice.
    again = admin_client.post(
        "/items/import/", {"token": token, "confirm": "1"}, headers=HTMX_IMPORT
    )
    assert "expired or was already imported" in again.content.decode()


def test_import_without_javascript_redirects_after_confirm(admin_client: Client) -> None:
    upload = SimpleUploadedFile("plain.jsonl", (json.dumps(TEXT) + "\n").encode())
    html = admin_client.post("/items/import/", {"file": upload, "preview": "1"}).content.decode()
    assert "<html" in html and "Import 1 items" in html
    token = html.split('name="token" value="')[1].split('"')[0]
    response = admin_client.post("/items/import/", {"token": token, "confirm": "1"})
    assert response.status_code == 302 and response["Location"] == "/items/?suite=plain"


def test_import_with_problems_lists_every_one_and_writes_nothing(admin_client: Client) -> None:
    rows = [TEXT, {**TEXT, "id": "t2", "prompt": ""}, {**VISION, "images": ["img/missing.png"]}]
    upload = SimpleUploadedFile("bad.zip", fixture_zip(rows))
    html = admin_client.post(
        "/items/import/", {"file": upload, "preview": "1"}, headers=HTMX_IMPORT
    ).content.decode()
    assert "2 problems — nothing was imported" in html
    assert "upload.jsonl:2: prompt: may not be empty" in html
    assert "images[0]: img/missing.png: file not found" in html
    assert 'name="confirm"' not in html
    assert TaskItem.objects.count() == 0
    assert not any(Path(p).exists() for p in admin_client.session.get("pending-imports", {}))


def test_import_refuses_other_file_types(admin_client: Client) -> None:
    upload = SimpleUploadedFile("notes.txt", b"hello")
    html = admin_client.post(
        "/items/import/", {"file": upload, "preview": "1"}, headers=HTMX_IMPORT
    ).content.decode()
    assert "notes.txt: expected a .json, .jsonl, .csv or .zip file" in html
