"""A NUL character in a URL is refused with a 400 on every page, never a server error.

PostgreSQL refuses NUL in text, so these were 500s there (CI runs this file on PostgreSQL too).
"""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from tests.grading.test_results_pages import build_fixed_study

pytestmark = pytest.mark.django_db

# A path or a query each view looks up in the database, with a NUL in it.
WITH_NUL: list[tuple[str, dict[str, str]]] = [
    ("/results/x\x00y/", {}),
    ("/results/", {"reviewer": "rev\x00one"}),
    ("/results/", {"task_type": "Q\x00A"}),
    ("/results/items/", {"task_type": "Q\x00A"}),
    ("/results/items/", {"task_type": "QA", "campaign": "x\x00y"}),
    ("/items/", {"task_type": "Q\x00A"}),
    ("/items/x\x00y/", {}),
    ("/campaigns/x\x00y/", {}),
    ("/generations/x\x00y/", {}),
    ("/images/x\x00y/", {}),
    ("/review/a/x\x00y/", {}),
    ("/items/", {"key\x00": "value"}),
]


def server_errors_as_responses(user: User) -> Client:
    client = Client(raise_request_exception=False)
    client.force_login(user, backend="django.contrib.auth.backends.ModelBackend")
    return client


@pytest.mark.parametrize(("path", "query"), WITH_NUL, ids=repr)
def test_a_nul_character_in_the_url_is_a_bad_request(
    admin: User, path: str, query: dict[str, Any]
) -> None:
    build_fixed_study()
    response = server_errors_as_responses(admin).get(path, query)
    assert response.status_code == 400
    assert b"NUL" in response.content


def test_a_nul_character_is_refused_before_login_too(db: None) -> None:
    assert Client().get("/campaigns/x\x00y/").status_code == 400


def test_urls_without_nul_reach_their_views(admin: User) -> None:
    campaign = build_fixed_study()
    client = server_errors_as_responses(admin)
    assert client.get(f"/results/{campaign.public_id}/", {"reviewer": "rev-one"}).status_code == 200
    # Other control characters and percent signs are not refused: only NUL is.
    assert client.get("/results/", {"task_type": "QA\x01", "reviewer": "%00"}).status_code == 200
