"""Reading back the product's CSV files (DESIGN §4.2, §4.4): the inverse of `csv_writing`.

- `utf8_problem` checks a whole file is UTF-8 before any of it is parsed, a megabyte at a time.
- `header_problems` names the required columns a header lacks and the ones it repeats.
- `restore` undoes `csv_writing.neutralise`: one quote in front of a formula trigger is dropped,
  so a cell that left as `'=SUM(A1)` comes back as `=SUM(A1)`, stored as text, and is
  neutralised again when it is exported.
"""

from __future__ import annotations

import codecs
from collections.abc import Sequence
from typing import BinaryIO

from .csv_writing import FORMULA_TRIGGERS

READ_SIZE = 2**20


def header_problems(columns: list[str], required: Sequence[str]) -> list[str]:
    """`1: column: reason` for each required column missing and each column given twice."""
    problems = [
        f"1: {name}: missing column (required: {', '.join(required)})"
        for name in required
        if name not in columns
    ]
    problems += [
        f"1: {name}: the column appears twice"
        for name in sorted({name for name in columns if columns.count(name) > 1})
    ]
    return problems


def restore(cell: str) -> str:
    """Undo `csv_writing.neutralise`: drop one quote in front of a formula trigger."""
    if cell.startswith("'") and cell[1:].startswith(FORMULA_TRIGGERS):
        return cell[1:]
    return cell


def utf8_problem(stream: BinaryIO, read_size: int = READ_SIZE) -> str | None:
    """Read `stream` to its end, `read_size` bytes at a time; `line: file: reason` for the
    first byte that is not UTF-8, or None when the whole stream is UTF-8."""
    offset = lines = 0
    pending = b""
    while True:
        chunk = stream.read(read_size)
        data = pending + chunk
        try:
            _, decoded = codecs.utf_8_decode(data, "strict", not chunk)
        except UnicodeDecodeError as error:
            line = lines + data[: error.start].count(b"\n") + 1
            byte = data[error.start : error.start + 1].hex()
            return (
                f"{line}: file: not UTF-8 (byte 0x{byte} at offset {offset + error.start}); "
                "save as UTF-8"
            )
        lines += data.count(b"\n", 0, decoded)
        offset += decoded
        pending = data[decoded:]
        if not chunk:
            return None
