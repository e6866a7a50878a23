"""Writing the product's CSV exports (DESIGN §4.2, §4.4): one set of rules for every file.

- UTF-8, a header row, then one line per record, written by the stdlib `csv` module with its
  default `excel` dialect: fields quoted only when they need it (a comma, a quote, a line break),
  quotes doubled, and every line — the last included — ending in `\\r\\n` as RFC 4180 and Excel
  expect. Streams must therefore be opened with `newline=""` so nothing translates the endings.
- Optionally a UTF-8 byte order mark first, so Excel reads the file as UTF-8 (Chinese prompts
  otherwise turn into mojibake); no BOM by default, which every other tool prefers.
- Cells: see `format_cell`; text cells are neutralised against formula injection (`neutralise`).
- A file is written next to its destination and renamed into place only when the export
  succeeded, so a failed export never leaves half a file (`output_stream`).
"""

from __future__ import annotations

import csv
import datetime
import io
import math
import os
import secrets
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol, TextIO

from django.core.management.base import OutputWrapper

BOM = "\ufeff"
# What a spreadsheet may read as the start of a formula (OWASP "CSV Injection").
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
FLOAT_DECIMALS = 3


class TextSink(Protocol):
    """Anything text can be written to: an open file, a command's output."""

    def write(self, text: str, /) -> object: ...


def neutralise(text: str) -> str:
    """Make a text cell safe to open in a spreadsheet (formula injection, DESIGN §4.2).

    Text starting with `=`, `+`, `-`, `@`, a tab or a carriage return gets a single quote in
    front, as OWASP recommends: spreadsheets then show it as text instead of evaluating it
    (`=cmd|' /C calc'!A0` becomes `'=cmd|' /C calc'!A0`). The quote is visible in the cell and
    stays in the data; a reader that wants the original drops one leading quote before one of
    these characters. Quotes and separators inside the text need nothing more: the `csv` module
    quotes such fields.

    Only text is neutralised: numbers are written by `format_cell`, never passed here, so a
    negative number such as `-1.5` stays a number.
    """
    if text.startswith(FORMULA_TRIGGERS):
        return "'" + text
    return text


def format_number(value: float | Decimal) -> str:
    """A fixed-point number with at most three decimals and no needless zeros.

    `123.456789` → `123.457`, `42.0` → `42`, `0.5` → `0.5`, `-0.0001` → `0`. Never an exponent,
    so every spreadsheet reads it as a number. Three decimals keep microseconds for the `*_ms`
    timings and thousandths of a token per second, more than the measurements can resolve.
    NaN and infinities are no measurement at all and are written as empty cells.
    """
    if not math.isfinite(value):
        return ""
    text = f"{value:.{FLOAT_DECIMALS}f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def format_cell(value: object) -> str:
    """The text of one CSV cell.

    None is an empty cell (a missing value, never 0); booleans are `true` / `false`; integers are
    written plainly; floats and decimals by `format_number`; dates and datetimes in ISO 8601 (with
    the offset when the datetime is aware); anything else as its text, neutralised.
    """
    # The common exact types first, by one dictionary lookup: a million-row export formats
    # twenty-odd million cells, and the isinstance chain below was most of its cost.
    exact = _BY_TYPE.get(type(value))
    if exact is not None:
        return exact(value)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float | Decimal):
        return format_number(value)
    if isinstance(value, datetime.date):  # datetime.datetime included
        return value.isoformat()
    return neutralise(str(value))


def _format_bool(value: bool) -> str:
    return "true" if value else "false"


_BY_TYPE: dict[type, Callable[[Any], str]] = {
    str: neutralise,
    int: str,
    bool: _format_bool,
    float: format_number,
    datetime.datetime: datetime.datetime.isoformat,
}

RowCells = Callable[[Sequence[Any]], Sequence[str]]
"""Turns one row's values into its cells' text."""


def format_row(row: Sequence[Any]) -> list[str]:
    """Every value of the row through `format_cell`: the cells of any export."""
    return [format_cell(value) for value in row]


# The text of one cell by the kind of its column, None excepted (an empty cell): for each
# kind, exactly what `format_cell` writes for a value of that type.
_CELL_BY_KIND = {
    "text": '("\'" + {v} if {v}.startswith(TRIGGERS) else {v})',
    "int": "str({v})",
    "bool": '("true" if {v} else "false")',
    "float": "format_number({v})",
    "datetime": "{v}.isoformat()",
}


def row_formatter(kinds: Sequence[str]) -> RowCells:
    """`format_row` for rows whose columns hold these kinds of values (or None): the same text,
    about half again as fast.

    Kinds: `text` (str), `int`, `bool`, `float`, `datetime` (aware). `format_cell` looks up the
    type of every value; with the types known per column, one expression per cell is compiled
    into a single function instead. A million-row scores export formats 23 million cells, and
    that lookup and call per cell took a third of the export's time (tests/benchmarks/
    bench_scores_csv.py). A value of another type than its column's is a programming error.
    """
    cells = []
    for index, kind in enumerate(kinds):
        value = f"row[{index}]"
        cells.append(f'("" if {value} is None else {_CELL_BY_KIND[kind].format(v=value)})')
    source = "def cells(row):\n    return (" + ", ".join(cells) + ",)\n"
    namespace: dict[str, Any] = {"TRIGGERS": FORMULA_TRIGGERS, "format_number": format_number}
    exec(compile(source, f"<row_formatter {','.join(kinds)}>", "exec"), namespace)  # noqa: S102
    return namespace["cells"]  # type: ignore[no-any-return]


def write_csv(
    stream: TextSink,
    header: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    bom: bool = False,
    cells: RowCells = format_row,
) -> int:
    """Write the header and every row to `stream` as they come; return the number of rows.

    Rows are formatted by `cells` (default: `format_cell` on each value) one at a time, so
    memory stays constant however many there are. `stream` must be opened with `newline=""`
    (see the module docstring).
    """
    # The same text as `csv_lines` (the export page's tests compare the two), written straight to
    # the stream: the generator's extra call per row cost about a tenth of a long export.
    if bom:
        stream.write(BOM)
    writer = csv.writer(stream)
    writer.writerow(header)
    count = 0
    for row in rows:
        writer.writerow(cells(row))
        count += 1
    return count


class _LastLine:
    """What a `csv.writer` wrote last (it writes one whole line per `writerow`)."""

    text = ""

    def write(self, text: str) -> int:
        self.text = text
        return len(text)


def csv_lines(
    header: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    bom: bool = False,
    cells: RowCells = format_row,
) -> Iterator[str]:
    """The CSV's text one line at a time (the byte order mark, when asked, first on its own).

    What `write_csv` writes, for a consumer that pulls instead: a streamed HTTP response sends
    exactly the bytes a command writes to its file.
    """
    if bom:
        yield BOM
    line = _LastLine()
    writer = csv.writer(line)
    writer.writerow(header)
    yield line.text
    for row in rows:
        writer.writerow(cells(row))
        yield line.text


@contextmanager
def atomic_text_file(path: Path) -> Iterator[TextIO]:
    """A UTF-8 text file that replaces `path` only when the block ends without an exception.

    The data goes to a hidden temporary file in the same folder (so the final rename is atomic
    and never crosses file systems), created with the usual permissions; on any failure —
    Ctrl-C included — the temporary file is removed and `path` is left as it was.
    """
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with open(temporary, "x", encoding="utf-8", newline="") as stream:
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        with suppress(FileNotFoundError):
            temporary.unlink()
        raise


class _UnterminatedWriter:
    """Passes text to a management command's output as it is (no line ending added)."""

    def __init__(self, out: OutputWrapper) -> None:
        self.out = out

    def write(self, text: str) -> int:
        self.out.write(text, ending="")
        return len(text)


@contextmanager
def output_stream(path: Path | None, stdout: OutputWrapper) -> Iterator[TextSink]:
    """Where a command's CSV goes: `path` written atomically, or else the command's stdout.

    A real stdout is written through its binary buffer as UTF-8 with untranslated line endings,
    whatever the terminal's encoding; an in-memory one (`call_command(stdout=StringIO())`)
    receives the text unchanged.
    """
    if path is not None:
        with atomic_text_file(path) as stream:
            yield stream
        return
    buffer = getattr(stdout, "buffer", None)
    if buffer is None:
        yield _UnterminatedWriter(stdout)
        return
    stdout.flush()
    stream = io.TextIOWrapper(buffer, encoding="utf-8", newline="", write_through=True)
    try:
        yield stream
    finally:
        stream.flush()
        stream.detach()  # leave the process's stdout open
