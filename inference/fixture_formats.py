"""Reading task fixtures (DESIGN §4.1): a `.json` array, `.jsonl`, `.csv`, a folder holding
one of them plus its images, or a `.zip` of such a folder.

`open_source` finds the data file (unpacking a zip, checked entry by entry, into a temporary
folder); `read_rows` parses it into rows with their line numbers. A syntax problem is fatal:
`FixtureError`, which lists every `file:line: field: reason`, is also what the whole import
(`inference.importer`) raises.
"""

from __future__ import annotations

import csv
import io
import json
import stat
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

DATA_SUFFIXES = (".json", ".jsonl", ".csv")
KNOWN_FIELDS = ("id", "task_type", "prompt", "images", "system", "reference", "tags")
REQUIRED_FIELDS = ("id", "task_type", "prompt")
MAX_ZIP_MEMBERS = 20_000
MAX_ZIP_BYTES = 2 * 1024**3


class FixtureError(Exception):
    """A fixture that cannot be imported; `problems` holds every `file:line: field: reason`."""

    def __init__(self, problems: list[str], *, rejected: int = 0, total: int = 0) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems
        self.rejected = rejected
        self.total = total


@dataclass
class Row:
    line: int
    data: dict[str, Any]


@contextmanager
def open_source(path: Path) -> Iterator[tuple[Path, str]]:
    """Yield the fixture's data file and the name to use for it in messages.

    A folder must hold exactly one data file; a zip is checked entry by entry and unpacked into a
    temporary folder, which is removed afterwards.
    """
    if not path.exists():
        raise FixtureError([f"{path}: no such file or folder"])
    if path.is_dir():
        data_file = _find_data_file(path, str(path))
        yield data_file, f"{path.name}/{data_file.name}"
    elif path.suffix.lower() == ".zip":
        with tempfile.TemporaryDirectory(prefix="gradebench-import-") as tmp:
            folder = _unpack_zip(path, Path(tmp))
            data_file = _find_data_file(folder, path.name)
            yield data_file, f"{path.name}:{data_file.relative_to(Path(tmp)).as_posix()}"
    elif path.suffix.lower() in DATA_SUFFIXES:
        yield path, path.name
    else:
        raise FixtureError([f"{path}: expected a .json, .jsonl, .csv or .zip file, or a folder"])


def _find_data_file(folder: Path, label: str) -> Path:
    candidates = sorted(
        p for p in folder.iterdir() if p.suffix.lower() in DATA_SUFFIXES and p.is_file()
    )
    if not candidates:
        subfolders = [
            p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))
        ]
        if len(subfolders) == 1:  # a zip of a folder
            return _find_data_file(subfolders[0], label)
        raise FixtureError([f"{label}: no .json, .jsonl or .csv file found"])
    if len(candidates) > 1:
        names = ", ".join(p.name for p in candidates)
        raise FixtureError([f"{label}: holds several data files ({names}); keep exactly one"])
    return candidates[0]


def _unpack_zip(path: Path, target: Path) -> Path:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as error:
        raise FixtureError([f"{path.name}: not a readable zip file ({error})"]) from None
    problems: list[str] = []
    with archive:
        members = archive.infolist()
        if len(members) > MAX_ZIP_MEMBERS:
            raise FixtureError([f"{path.name}: more than {MAX_ZIP_MEMBERS} entries"])
        if sum(member.file_size for member in members) > MAX_ZIP_BYTES:
            raise FixtureError([f"{path.name}: unpacks to more than {MAX_ZIP_BYTES // 1024**3} GB"])
        for member in members:
            name = member.filename
            parts = PurePosixPath(name.replace("\\", "/")).parts
            if name.startswith(("/", "\\")) or (parts and ":" in parts[0]) or ".." in parts:
                problems.append(f"{path.name}: entry {name!r}: path leaves the archive's folder")
            elif stat.S_ISLNK(member.external_attr >> 16):
                problems.append(f"{path.name}: entry {name!r}: symbolic links are not accepted")
        if problems:
            raise FixtureError(problems)
        for member in members:
            if not member.is_dir() and not PurePosixPath(member.filename).name.startswith("."):
                archive.extract(member, target)
    return target


def read_rows(data_file: Path, label: str) -> tuple[list[Row], list[str]]:
    """Parse the data file into rows with their line numbers; syntax problems are fatal."""
    raw = data_file.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        byte = raw[error.start]
        raise FixtureError(
            [f"{label}:{line}: file: not UTF-8 text (byte 0x{byte:02x}); save the file as UTF-8"]
        ) from None
    suffix = data_file.suffix.lower()
    if suffix == ".jsonl":
        return _read_jsonl(text, label), []
    if suffix == ".json":
        return _read_json(text, label), []
    return _read_csv(text, label)


def _read_jsonl(text: str, label: str) -> list[Row]:
    rows: list[Row] = []
    problems: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as error:
            problems.append(
                f"{label}:{number}: json: invalid JSON ({error.msg} at column {error.colno})"
            )
            continue
        if not isinstance(value, dict):
            problems.append(f"{label}:{number}: json: each line must be a JSON object")
            continue
        rows.append(Row(number, value))
    if problems:
        raise FixtureError(problems)
    return rows


def _read_json(text: str, label: str) -> list[Row]:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise FixtureError(
            [f"{label}:{error.lineno}: json: invalid JSON ({error.msg} at column {error.colno})"]
        ) from None
    if not isinstance(document, list):
        raise FixtureError([f"{label}:1: json: the file must hold a JSON array of objects"])
    # Find where each element starts, for line numbers in messages.
    decoder = json.JSONDecoder()
    position = text.index("[") + 1
    rows: list[Row] = []
    problems: list[str] = []
    for _ in document:
        while text[position] in " \t\r\n,":
            position += 1
        value, end = decoder.raw_decode(text, position)
        line = text.count("\n", 0, position) + 1
        if isinstance(value, dict):
            rows.append(Row(line, value))
        else:
            problems.append(f"{label}:{line}: json: each element must be a JSON object")
        position = end
    if problems:
        raise FixtureError(problems)
    return rows


def _read_csv(text: str, label: str) -> tuple[list[Row], list[str]]:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise FixtureError([f"{label}:1: header: the file is empty"]) from None
    except csv.Error as error:
        raise FixtureError([f"{label}:1: header: {error}"]) from None
    columns = [name.strip() for name in header]
    problems = [
        f"{label}:1: header: missing column {name!r}"
        for name in REQUIRED_FIELDS
        if name not in columns
    ]
    duplicates = {name for name in columns if columns.count(name) > 1}
    problems += [f"{label}:1: header: column {name!r} appears twice" for name in sorted(duplicates)]
    if problems:
        raise FixtureError(problems)
    warnings = [
        f"{label}:1: header: unknown column {name!r} ignored"
        for name in columns
        if name and name not in KNOWN_FIELDS
    ]
    rows: list[Row] = []
    line = reader.line_num + 1
    try:
        for cells in reader:
            start, line = line, reader.line_num + 1
            if not any(cell.strip() for cell in cells):
                continue
            if len(cells) != len(columns):
                problems.append(
                    f"{start}: row: has {len(cells)} cells, the header has {len(columns)}"
                )
                continue
            data: dict[str, Any] = {}
            for name, cell in zip(columns, cells, strict=True):
                if name not in KNOWN_FIELDS:
                    continue
                if name in ("images", "tags"):
                    data[name] = [part.strip() for part in cell.split("|") if part.strip()]
                elif cell != "" or name in REQUIRED_FIELDS:
                    data[name] = cell
            rows.append(Row(start, data))
    except csv.Error as error:
        problems.append(f"{line}: csv: {error}")
    if problems:
        raise FixtureError([f"{label}:{problem}" for problem in problems])
    return rows, warnings
