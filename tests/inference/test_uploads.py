"""Uploaded fixtures between preview and import: checked, kept under a token, taken once."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
from django.contrib.sessions.backends.signed_cookies import SessionStore
from django.core.files.uploadedfile import SimpleUploadedFile

from inference import uploads
from inference.fixture_formats import FixtureError


@pytest.fixture
def var_dir(settings: Any, tmp_path: Path) -> Path:
    settings.VAR_DIR = tmp_path
    return tmp_path / "uploads"


def test_an_upload_is_kept_under_its_token_by_its_name_only(var_dir: Path) -> None:
    upload = uploads.keep(SimpleUploadedFile("../../etc/batch.jsonl", b"{}\n"), suite="s")
    assert upload.path == var_dir / upload.token / "batch.jsonl"
    assert upload.path.read_bytes() == b"{}\n"
    assert (upload.filename, upload.suite) == ("batch.jsonl", "s")


@pytest.mark.parametrize(
    ("uploaded", "problem"),
    [
        (None, "Choose a .json, .jsonl, .csv or .zip file to import."),
        (SimpleUploadedFile("notes.txt", b"x"), "notes.txt: expected a .json, .jsonl"),
        (SimpleUploadedFile("big.zip", b"x" * 11), "big.zip: larger than 0 MB."),
    ],
)
def test_what_cannot_be_a_fixture_is_refused_and_nothing_is_written(
    var_dir: Path, monkeypatch: pytest.MonkeyPatch, uploaded: Any, problem: str
) -> None:
    monkeypatch.setattr(uploads, "MAX_BYTES", 10)
    with pytest.raises(FixtureError) as refused:
        uploads.keep(uploaded, suite="")
    assert refused.value.problems[0].startswith(problem)
    assert not var_dir.exists() or not any(var_dir.iterdir())


def test_uploads_nobody_confirmed_are_forgotten_after_a_day(var_dir: Path) -> None:
    stale = uploads.keep(SimpleUploadedFile("old.json", b"[]"), suite="")
    day_ago = time.time() - uploads.TTL_S - 1
    os.utime(stale.path.parent, (day_ago, day_ago))
    fresh = uploads.keep(SimpleUploadedFile("new.json", b"[]"), suite="")
    assert not stale.path.parent.exists()
    assert fresh.path.exists()


def test_a_previewed_upload_is_taken_once_and_only_by_its_session(var_dir: Path) -> None:
    mine, theirs = SessionStore(), SessionStore()
    upload = uploads.keep(SimpleUploadedFile("a.json", b"[]"), suite="s")
    uploads.remember(mine, upload)
    assert uploads.take(theirs, upload.token) is None
    assert uploads.take(mine, upload.token) == upload
    assert uploads.take(mine, upload.token) is None


def test_an_upload_whose_file_is_gone_cannot_be_taken(var_dir: Path) -> None:
    session = SessionStore()
    upload = uploads.keep(SimpleUploadedFile("a.json", b"[]"), suite="")
    uploads.remember(session, upload)
    uploads.discard(upload)
    assert uploads.take(session, upload.token) is None
