"""The parts every CSV export command shares: options, campaign selection, writing the file."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from .csv_writing import RowCells, format_row, output_stream, write_csv
from .models import Campaign


class CsvExportCommand(BaseCommand):
    """Base of the CSV export commands: `--campaign`, `--output`, `--bom`."""

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--campaign",
            action="append",
            dest="campaigns",
            metavar="SLUG",
            help="Only this campaign (repeat for several; default: every campaign).",
        )
        parser.add_argument(
            "--output", type=Path, metavar="FILE", help="Write to FILE (default: stdout)."
        )
        parser.add_argument(
            "--bom", action="store_true", help="Start with a UTF-8 byte order mark (for Excel)."
        )

    def campaigns(self, options: dict[str, Any]) -> list[str]:
        """The requested campaign slugs, each checked to exist."""
        wanted = list(dict.fromkeys(options["campaigns"]))
        found = set(Campaign.objects.filter(slug__in=wanted).values_list("slug", flat=True))
        unknown = [slug for slug in wanted if slug not in found]
        if unknown:
            known = ", ".join(Campaign.objects.values_list("slug", flat=True)) or "none"
            names = ", ".join(repr(slug) for slug in unknown)
            raise CommandError(f"no campaign {names} (known: {known})")
        return wanted

    def write(
        self,
        options: dict[str, Any],
        header: Iterable[str],
        rows: Iterable[Sequence[Any]],
        *,
        unit: str,
        total: Callable[[], int] | None = None,
        cells: RowCells = format_row,
    ) -> None:
        """Write the CSV to `--output` (atomically) or stdout, each row's cells by `cells`.

        `total` counts the rows for a progress bar, asked only when writing a file with a
        terminal on stderr.
        """
        path: Path | None = options["output"]
        show = path is not None and total is not None and options["verbosity"] > 0
        if show and total is not None and self.stderr.isatty():
            rows = tqdm(rows, total=total(), unit="row", file=sys.stderr, leave=False)
        try:
            with output_stream(path, self.stdout) as stream:
                written = write_csv(stream, list(header), rows, bom=options["bom"], cells=cells)
        except OSError as error:
            if path is None:
                raise
            raise CommandError(f"cannot write {path}: {error.strerror or error}") from error
        if path is not None and options["verbosity"] > 0:
            self.stderr.write(f"wrote {written} {unit} to {path}")
