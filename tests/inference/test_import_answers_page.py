"""The admin page that imports answers made elsewhere: upload, preview (a dry run), confirm."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from inference.models import Campaign, Generation, ModelEndpoint, Suite
from tests import builders
from tests.conftest import logged_in

pytestmark = pytest.mark.django_db
HTMX = {"HX-Request": "true", "HX-Target": "result"}
ANSWERS = (
    "campaign,task_type,item_id,model,sample,content,response_time_ms,completion_tokens\r\n"
    "harness,AR,ar-1,gpt-x,0,first answer,2000,40\r\n"
    "harness,CK,ck-1,gpt-x,0,second answer,,\r\n"
    "harness,AR,ar-1,llama-y,0,third answer,1000,10\r\n"
)


@pytest.fixture(autouse=True)
def setup(settings: Any, tmp_path: Path) -> None:
    settings.VAR_DIR = tmp_path
    suite = Suite.objects.create(name="sample")
    builders.item(suite, "ar-1", "AR")
    builders.item(suite, "ck-1", "CK")


def upload(client: Client, text: str, name: str = "answers.csv", **extra: str) -> str:
    response = client.post(
        "/campaigns/import/",
        {"file": SimpleUploadedFile(name, text.encode()), "preview": "1", **extra},
        headers=HTMX,
    )
    assert response.status_code == 200
    return response.content.decode()


def test_preview_counts_by_campaign_model_and_task_type_then_confirm_imports(
    admin_client: Client,
) -> None:
    page = admin_client.get("/campaigns/").content.decode()
    assert 'href="/campaigns/import/"' in page

    html = upload(admin_client, ANSWERS)

    assert 'id="result"' in html and "<html" not in html  # the fragment only
    assert "Preview of answers.csv" in html
    counts = re.findall(
        r"<tr><td>(\w+)</td><td>([\w-]+)</td><td><code>(\w+)</code></td><td>(\d+)", html
    )
    assert counts == [
        ("harness", "gpt-x", "AR", "1"),
        ("harness", "gpt-x", "CK", "1"),
        ("harness", "llama-y", "AR", "1"),
    ]
    assert "first answer" in html and "third answer" in html
    assert "<code>gpt-x</code>, <code>llama-y</code>" in html  # new external models
    assert "1 succeeded answer(s) carry no timings" in html
    assert not Generation.objects.exists() and not Campaign.objects.exists()
    assert not ModelEndpoint.objects.exists()

    token = re.search(r'name="token" value="([^"]+)"', html).group(1)  # type: ignore[union-attr]
    response = admin_client.post(
        "/campaigns/import/", {"token": token, "confirm": "1"}, headers=HTMX
    )

    assert response["HX-Redirect"] == "/campaigns/"
    assert Generation.objects.filter(source="imported").count() == 3
    listing = admin_client.get("/campaigns/").content.decode()
    assert "Answers from answers.csv: created 3, unchanged 0." in listing
    assert 'class="badge sim"' in listing and ">imported<" in listing
    # The token is spent: confirming again imports nothing more.
    again = admin_client.post("/campaigns/import/", {"token": token, "confirm": "1"}, headers=HTMX)
    assert "expired or was already imported" in again.content.decode()


def test_every_problem_is_shown_and_there_is_nothing_to_confirm(admin_client: Client) -> None:
    text = ANSWERS + "harness,AR,zz-9,gpt-x,0,a,,\r\nharness,AR,ar-1,gpt-x,1,,-3,\r\n"

    html = upload(admin_client, text)

    assert "3 problems — nothing was imported" in html, html
    assert "5: item_id: no item &#x27;zz-9&#x27; in suite sample (campaign harness)" in html
    assert "6: content: empty; a succeeded answer needs its text" in html
    assert "6: response_time_ms: &#x27;-3&#x27; is negative" in html
    assert 'name="confirm"' not in html
    assert not Generation.objects.exists()


def test_a_fixture_token_cannot_confirm_answers(admin_client: Client) -> None:
    html = upload(admin_client, ANSWERS)
    token = re.search(r'name="token" value="([^"]+)"', html).group(1)  # type: ignore[union-attr]

    response = admin_client.post("/items/import/", {"token": token, "confirm": "1"}, headers=HTMX)

    assert "expired or was already imported" in response.content.decode()
    assert not Generation.objects.exists()


def test_only_csv_and_jsonl_are_taken(admin_client: Client) -> None:
    html = upload(admin_client, "{}", name="answers.zip")
    assert "answers.zip: expected a .csv or .jsonl file." in html


def test_reviewers_cannot_import_answers(alice: Any) -> None:
    response = logged_in(alice).get("/campaigns/import/")
    assert response.status_code in (302, 403)
