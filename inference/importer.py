"""Import task fixtures (DESIGN §4.1): `.json`, `.jsonl`, `.csv`, a folder, or a `.zip`.

A file imports whole or not at all. Every problem is collected and reported as
`file:line: field: reason`; nothing is written unless there are none. The formats are read by
`inference.fixture_formats`; this module validates the rows and writes the items.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from .fixture_formats import KNOWN_FIELDS, FixtureError, Row, open_source, read_rows
from .images import ImageError, ProcessedImage, decode_data_url, process_image
from .models import Suite, TaskImage, TaskItem, TaskItemImage, TaskType, validate_slug

MAX_ID_LENGTH = 200
_BATCH = 500


@dataclass
class ParsedItem:
    line: int
    external_id: str
    task_type: TaskType
    prompt: str
    system: str
    reference: str
    tags: list[str]
    images: list[ProcessedImage | str]  # processed new image, or the sha256 of a stored one

    def image_hashes(self) -> list[str]:
        return [image if isinstance(image, str) else image.sha256 for image in self.images]

    def content_hash(self) -> str:
        content = {
            "task_type": self.task_type.code,
            "prompt": self.prompt,
            "system": self.system,
            "reference": self.reference,
            "tags": self.tags,
            "images": self.image_hashes(),
        }
        encoded = json.dumps(content, ensure_ascii=False, sort_keys=True).encode("utf-8")
        return hashlib.sha256(encoded).hexdigest()

    def stored_fields(self) -> dict[str, Any]:
        """The TaskItem fields this item sets, on creation and on update alike."""
        return {
            "task_type": self.task_type,
            "prompt": self.prompt,
            "system": self.system,
            "reference": self.reference,
            "tags": self.tags,
            "content_hash": self.content_hash(),
        }


@dataclass
class ImportReport:
    suite: str
    source: str
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    new_images: int = 0
    by_task_type: Counter[str] = field(default_factory=Counter)
    warnings: list[str] = field(default_factory=list)
    preview: list[dict[str, Any]] = field(default_factory=list)
    dry_run: bool = False

    @property
    def task_type_counts(self) -> list[tuple[str, int]]:
        """(code, items) pairs, largest first (templates cannot call Counter methods)."""
        return self.by_task_type.most_common()

    @property
    def total(self) -> int:
        return self.created + self.updated + self.unchanged

    def summary(self) -> str:
        return f"created {self.created}, updated {self.updated}, unchanged {self.unchanged}"


# --- Validating ------------------------------------------------------------------------------


class _ImageReader:
    """Reads each referenced image once and remembers it by content hash."""

    def __init__(self, base: Path) -> None:
        self.base = base.resolve()
        self.hash_of: dict[str, str] = {}
        self.data_of: dict[str, bytes] = {}

    def read(self, reference: str) -> str:
        """Return the sha256 of the referenced image's bytes (ImageError if unreadable)."""
        if reference not in self.hash_of:
            data = (
                decode_data_url(reference)
                if reference.startswith("data:")
                else self._read(reference)
            )
            sha = hashlib.sha256(data).hexdigest()
            self.hash_of[reference] = sha
            self.data_of.setdefault(sha, data)
        return self.hash_of[reference]

    def _read(self, reference: str) -> bytes:
        relative = PurePosixPath(reference.replace("\\", "/"))
        if relative.is_absolute() or reference.startswith(("/", "\\")) or ":" in relative.parts[0]:
            raise ImageError("absolute paths are not accepted; give a path relative to the file")
        real = self.base.joinpath(*relative.parts).resolve()
        if not real.is_relative_to(self.base):
            raise ImageError("path leaves the fixture's folder")
        if not real.is_file():
            raise ImageError("file not found")
        return real.read_bytes()


def _text(row: Row, name: str, problems: list[str], where: str, *, required: bool = False) -> str:
    value = row.data.get(name)
    if value is None:
        if required:
            problems.append(f"{where}: {name}: missing")
        return ""
    if name == "id" and isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        problems.append(f"{where}: {name}: must be a string, not {type(value).__name__}")
        return ""
    if required and not value.strip():
        problems.append(f"{where}: {name}: may not be empty")
    return value.strip() if name in ("id", "task_type") else value


def _string_list(row: Row, name: str, problems: list[str], where: str) -> list[str]:
    value = row.data.get(name)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        problems.append(f"{where}: {name}: must be a list of strings")
        return []
    return [v.strip() for v in value if v.strip()]


def parse_items(
    rows: list[Row],
    label: str,
    base: Path,
    *,
    progress: Callable[[Iterable[Any]], Iterable[Any]] | None = None,
) -> tuple[list[ParsedItem], list[str], list[str]]:
    """Validate rows; return the items, the problems and the warnings (unknown fields).

    Images are read and hashed first; only those not stored yet are decoded by Pillow, which
    is what makes re-importing an unchanged suite cheap.
    """
    spellings = {spelling: t for t in TaskType.objects.all() for spelling in t.spellings()}
    reader = _ImageReader(base)
    pending: list[tuple[Row, ParsedItem | None, list[tuple[int, str, str]]]] = []
    problems: list[str] = []
    warnings: list[str] = []
    first_line: dict[str, int] = {}
    for row in rows:
        where = f"{label}:{row.line}"
        row_problems: list[str] = []
        for key in row.data:
            if key not in KNOWN_FIELDS:
                warnings.append(f"{where}: {key}: unknown field ignored")
        external_id = _text(row, "id", row_problems, where, required=True)
        if len(external_id) > MAX_ID_LENGTH:
            row_problems.append(f"{where}: id: longer than {MAX_ID_LENGTH} characters")
        if external_id in first_line:
            row_problems.append(
                f"{where}: id: duplicate id {external_id!r} "
                f"(first used on line {first_line[external_id]})"
            )
        elif external_id:
            first_line[external_id] = row.line
        spelling = _text(row, "task_type", row_problems, where, required=True)
        task_type = spellings.get(spelling.casefold()) or (
            TaskType.objects.resolve(spelling) if spelling else None
        )
        if spelling and task_type is None:
            row_problems.append(
                f"{where}: task_type: unknown task type {spelling!r} "
                "(use a code such as AR, an alias such as CodeGen, or the Chinese name)"
            )
        prompt = _text(row, "prompt", row_problems, where, required=True)
        system = _text(row, "system", row_problems, where)
        reference = _text(row, "reference", row_problems, where)
        tags = _string_list(row, "tags", row_problems, where)
        references = _string_list(row, "images", row_problems, where)
        if task_type is not None and isinstance(row.data.get("images", []), list):
            if task_type.is_vision and not references:
                row_problems.append(
                    f"{where}: images: a {task_type.code} (vision) item needs at least one image"
                )
            if not task_type.is_vision and references:
                row_problems.append(
                    f"{where}: images: a {task_type.code} (text) item takes no images"
                )
        hashes: list[tuple[int, str, str]] = []
        for position, reference_text in enumerate(references):
            shown = reference_text if len(reference_text) < 80 else reference_text[:60] + "…"
            try:
                hashes.append((position, shown, reader.read(reference_text)))
            except ImageError as error:
                row_problems.append(f"{where}: images[{position}]: {shown}: {error}")
            except OSError as error:
                row_problems.append(f"{where}: images[{position}]: {shown}: cannot read ({error})")
        if row_problems:
            problems.extend(row_problems)
            pending.append((row, None, []))
            continue
        assert task_type is not None
        item = ParsedItem(row.line, external_id, task_type, prompt, system, reference, tags, [])
        pending.append((row, item, hashes))

    stored = _stored_hashes(reader.data_of)
    processed: dict[str, ProcessedImage | ImageError] = {}
    new_hashes = [sha for sha in reader.data_of if sha not in stored]
    for sha in progress(new_hashes) if progress else new_hashes:
        try:
            processed[sha] = process_image(reader.data_of[sha])
        except ImageError as error:
            processed[sha] = error

    items: list[ParsedItem] = []
    for row, parsed, hashes in pending:
        if parsed is None:
            continue
        item = parsed
        broken = False
        for position, shown, sha in hashes:
            result = processed.get(sha, sha)
            if isinstance(result, ImageError):
                problems.append(f"{label}:{row.line}: images[{position}]: {shown}: {result}")
                broken = True
            else:
                item.images.append(result)
        if not broken:
            items.append(item)
    problems.sort(key=_line_of)
    return items, problems, warnings


def _line_of(problem: str) -> int:
    parts = problem.split(":")
    for part in parts[1:3]:
        if part.isdigit():
            return int(part)
    return 0


def _stored_hashes(hashes: Iterable[str]) -> set[str]:
    wanted = sorted(hashes)
    found: set[str] = set()
    for start in range(0, len(wanted), _BATCH):
        chunk = wanted[start : start + _BATCH]
        found.update(TaskImage.objects.filter(sha256__in=chunk).values_list("sha256", flat=True))
    return found


# --- Writing ---------------------------------------------------------------------------------


def suite_name_for(data_file: Path, override: str | None) -> str:
    name = (override or data_file.stem).strip()
    try:
        validate_slug(name)
    except ValidationError:
        raise FixtureError(
            [
                f"suite name {name!r} is not valid (letters, digits, '.', '-', '_'); "
                "pass --suite NAME"
            ]
        ) from None
    return name


def import_fixture(
    path: Path,
    *,
    suite: str | None = None,
    dry_run: bool = False,
    progress: Callable[[Iterable[Any]], Iterable[Any]] | None = None,
    preview_rows: int = 0,
) -> ImportReport:
    """Import a fixture file, folder or zip into a suite.

    Raises FixtureError listing every problem; in that case nothing has been written.
    """
    with open_source(path) as (data_file, label):
        suite_name = suite_name_for(data_file, suite)
        rows, warnings = read_rows(data_file, label)
        if not rows:
            raise FixtureError([f"{label}: holds no items"])
        items, problems, row_warnings = parse_items(
            rows, label, data_file.parent, progress=progress
        )
    report = ImportReport(suite=suite_name, source=label, dry_run=dry_run)
    report.warnings = warnings + row_warnings
    if problems:
        rejected = len(rows) - len(items)
        raise FixtureError(problems, rejected=rejected, total=len(rows))

    with transaction.atomic():
        suite_obj = Suite.objects.filter(name=suite_name).first()
        existing: dict[str, tuple[int, str]] = {}
        if suite_obj is not None:
            existing = {
                ext: (pk, digest)
                for ext, pk, digest in suite_obj.items.values_list(
                    "external_id", "pk", "content_hash"
                )
            }
        to_create: list[ParsedItem] = []
        to_update: list[tuple[int, ParsedItem]] = []
        for item in items:
            report.by_task_type[item.task_type.code] += 1
            known = existing.get(item.external_id)
            if known is None:
                to_create.append(item)
            elif known[1] != item.content_hash():
                to_update.append((known[0], item))
            else:
                report.unchanged += 1
        report.created, report.updated = len(to_create), len(to_update)
        new_images = {
            image.sha256: image
            for item in items
            for image in item.images
            if isinstance(image, ProcessedImage)
        }
        report.new_images = len(new_images)
        report.preview = [_preview(item) for item in items[:preview_rows]]
        if dry_run:
            return report

        if suite_obj is None:
            suite_obj = Suite.objects.create(name=suite_name)
        _write(suite_obj, to_create, to_update, new_images)
    return report


def _write(
    suite: Suite,
    to_create: list[ParsedItem],
    to_update: list[tuple[int, ParsedItem]],
    new_images: dict[str, ProcessedImage],
) -> None:
    TaskImage.objects.bulk_create(
        [
            TaskImage(
                sha256=image.sha256,
                format=image.format,
                mime=image.mime,
                width=image.width,
                height=image.height,
                original=image.original,
                normalised=image.normalised,
                thumbnail=image.thumbnail,
                size_bytes=len(image.original),
            )
            for image in new_images.values()
        ],
        batch_size=50,
        ignore_conflicts=True,
    )
    TaskItem.objects.bulk_create(
        [
            TaskItem(suite=suite, external_id=item.external_id, **item.stored_fields())
            for item in to_create
        ],
        batch_size=_BATCH,
    )
    now = timezone.now()
    TaskItem.objects.bulk_update(
        [TaskItem(pk=pk, updated_at=now, **item.stored_fields()) for pk, item in to_update],
        ["task_type", "prompt", "system", "reference", "tags", "content_hash", "updated_at"],
        batch_size=_BATCH,
    )
    with_images = [item for item in to_create if item.images] + [item for _, item in to_update]
    if not with_images:
        return
    ids = dict(suite.items.values_list("external_id", "pk"))
    TaskItemImage.objects.filter(item_id__in=[pk for pk, _ in to_update]).delete()
    hashes = {sha for item in with_images for sha in item.image_hashes()}
    image_ids: dict[str, int] = {}
    hash_list = sorted(hashes)
    for start in range(0, len(hash_list), _BATCH):
        chunk = hash_list[start : start + _BATCH]
        image_ids.update(TaskImage.objects.filter(sha256__in=chunk).values_list("sha256", "pk"))
    TaskItemImage.objects.bulk_create(
        [
            TaskItemImage(item_id=ids[item.external_id], image_id=image_ids[sha], position=position)
            for item in with_images
            for position, sha in enumerate(item.image_hashes())
        ],
        batch_size=_BATCH,
    )


def _preview(item: ParsedItem) -> dict[str, Any]:
    return {
        "id": item.external_id,
        "task_type": item.task_type.code,
        "prompt": item.prompt[:200],
        "images": len(item.images),
        "reference": bool(item.reference),
    }
