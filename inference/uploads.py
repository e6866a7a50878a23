"""Files uploaded on the import pages (task fixtures, answers produced elsewhere), kept from
their preview to their import.

An upload is checked (its suffix, at most `MAX_BYTES`), written to
`var/uploads/<token>/<its name>` under a random token, and previewed as a dry run. Only the
admin's session learns the token (`remember`, with the kind of import), so confirming imports
exactly the file that was previewed, once, on the page it was previewed on (`take` forgets
it). A file goes as soon as it is imported or refused; files nobody confirmed go after
`TTL_S`, at the next upload.
"""

from __future__ import annotations

import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.contrib.sessions.backends.base import SessionBase
from django.core.files.uploadedfile import UploadedFile

from .fixture_formats import FixtureError
from .generations_import import (
    GenerationImportError,
    GenerationImportReport,
    import_generations,
)
from .importer import ImportReport, import_fixture

SUFFIXES = (".json", ".jsonl", ".csv", ".zip")
ANSWER_SUFFIXES = (".csv", ".jsonl")
FIXTURES, ANSWERS = "fixtures", "answers"
MAX_BYTES = 200 * 1024 * 1024
TTL_S = 24 * 3600
PREVIEW_ROWS = 10
SESSION_KEY = "pending-imports"
EXPIRED = "This preview has expired or was already imported; upload the file again."


@dataclass(frozen=True)
class Upload:
    """An uploaded fixture waiting for its import, and the suite name typed with it."""

    token: str
    path: Path
    suite: str

    @property
    def filename(self) -> str:
        return self.path.name


def _either(suffixes: tuple[str, ...]) -> str:
    return f"{', '.join(suffixes[:-1])} or {suffixes[-1]}"


def keep(
    uploaded: UploadedFile | None, *, suite: str, suffixes: tuple[str, ...] = SUFFIXES
) -> Upload:
    """Check the upload and write it to a folder of its own under a new token (forgetting stale
    uploads). Raises FixtureError, writing nothing, when there is no file, a file whose name
    does not end in one of `suffixes`, or one larger than `MAX_BYTES`."""
    if uploaded is None:
        raise FixtureError([f"Choose a {_either(suffixes)} file to import."])
    # Only the last part of what the browser sent: a name, never a path.
    name = Path(uploaded.name or "upload").name
    if not name.lower().endswith(suffixes):
        raise FixtureError([f"{name}: expected a {_either(suffixes)} file."])
    if uploaded.size and uploaded.size > MAX_BYTES:
        raise FixtureError([f"{name}: larger than {MAX_BYTES // 1024**2} MB."])
    folder = Path(settings.VAR_DIR) / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    _forget_stale(folder)
    token = secrets.token_urlsafe(16)
    (folder / token).mkdir()
    path = folder / token / name
    with path.open("wb") as handle:
        for chunk in uploaded.chunks():
            handle.write(chunk)
    return Upload(token=token, path=path, suite=suite)


def preview(upload: Upload) -> ImportReport:
    """What importing the upload would do (a dry run). Raises FixtureError listing every
    problem, and then deletes the upload: there is nothing to confirm."""
    try:
        return import_fixture(
            upload.path, suite=upload.suite or None, dry_run=True, preview_rows=PREVIEW_ROWS
        )
    except FixtureError:
        discard(upload)
        raise


def import_upload(upload: Upload) -> ImportReport:
    """Import the upload (FixtureError if it no longer can be), then delete it either way."""
    try:
        return import_fixture(upload.path, suite=upload.suite or None)
    finally:
        discard(upload)


def preview_answers(upload: Upload) -> GenerationImportReport:
    """What importing the uploaded answers would do (a dry run). Raises GenerationImportError
    listing every problem, and then deletes the upload: there is nothing to confirm."""
    try:
        return import_generations(upload.path, suite=upload.suite or None, dry_run=True)
    except GenerationImportError:
        discard(upload)
        raise


def import_answers(upload: Upload) -> GenerationImportReport:
    """Import the uploaded answers (GenerationImportError if they no longer can be), then
    delete the upload either way."""
    try:
        return import_generations(upload.path, suite=upload.suite or None)
    finally:
        discard(upload)


def remember(session: SessionBase, upload: Upload, kind: str = FIXTURES) -> None:
    """Let this session confirm the upload, as an import of `kind` (fixtures or answers)."""
    pending = session.get(SESSION_KEY, {})
    pending[upload.token] = {"path": str(upload.path), "suite": upload.suite, "kind": kind}
    session[SESSION_KEY] = pending


def take(session: SessionBase, token: str, kind: str = FIXTURES) -> Upload | None:
    """The upload this session previewed under `token` for an import of `kind`, forgotten so
    it imports once; None if there is none or its file is gone."""
    pending = session.get(SESSION_KEY, {})
    kept = pending.pop(token, None)
    session[SESSION_KEY] = pending
    if kept is None or kept.get("kind", FIXTURES) != kind or not Path(kept["path"]).exists():
        return None
    return Upload(token=token, path=Path(kept["path"]), suite=kept["suite"])


def discard(upload: Upload) -> None:
    shutil.rmtree(upload.path.parent, ignore_errors=True)


def _forget_stale(folder: Path) -> None:
    cutoff = time.time() - TTL_S
    for path in folder.iterdir():
        if path.stat().st_mtime < cutoff:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
