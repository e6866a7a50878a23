"""My scores: a reviewer reaches every piece of their own work, page by page."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from grading import assignment as queue
from tests.conftest import logged_in
from tests.grading.test_review_pages import assert_blind, build_study

pytestmark = pytest.mark.django_db


def submit_all(reviewer: User) -> list[str]:
    """Score every item the reviewer can get; their public ids, newest first."""
    submitted = []
    while (held := queue.next_assignment(reviewer)) is not None:
        queue.submit(held, {pid: {"score": "6"} for pid in held.order})
        submitted.append(held)
    # One minute apart, so "newest first" is one order whatever the clock's resolution.
    start = timezone.now()
    for minutes, held in enumerate(submitted):
        type(held).objects.filter(pk=held.pk).update(finished_at=start + timedelta(minutes=minutes))
    return [held.public_id for held in reversed(submitted)]


def pager_links(html: str) -> dict[str, str]:
    nav = re.search(r'<nav class="pager">(.*?)</nav>', html, re.S)
    assert nav is not None, "no pager"
    found = re.findall(r'<a href="([^"]+)" rel="(prev|next)"', nav.group(1))
    return {rel: href.replace("&amp;", "&") for href, rel in found}


def test_the_26th_newest_score_is_reached_through_the_pager(alice: User) -> None:
    build_study(items=26)
    newest_first = submit_all(alice)
    assert len(newest_first) == 26
    client = logged_in(alice)

    with CaptureQueriesContext(connection) as first_queries:
        first = assert_blind(client.get("/review/mine/"))
    assert "page 1 of 2" in first
    assert all(public_id in first for public_id in newest_first[:25])
    assert newest_first[25] not in first
    links = pager_links(first)
    assert set(links) == {"next"}

    with CaptureQueriesContext(connection) as second_queries:
        second = assert_blind(client.get("/review/mine/" + links["next"]))
    assert "page 2 of 2" in second
    assert f'href="/review/a/{newest_first[25]}/"' in second
    assert not any(public_id in second for public_id in newest_first[:25])
    assert set(pager_links(second)) == {"prev"}
    assert len(second_queries) == len(first_queries)  # a row costs no query of its own

    back = client.get("/review/mine/" + pager_links(second)["prev"]).content.decode()
    assert "page 1 of 2" in back and newest_first[0] in back
    assert client.get(f"/review/a/{newest_first[25]}/").status_code == 200  # and can be edited


def test_one_page_of_scores_shows_no_pager(alice: User) -> None:
    build_study(items=3)
    submit_all(alice)
    html = logged_in(alice).get("/review/mine/").content.decode()
    assert 'class="pager"' not in html and "page 1 of" not in html
