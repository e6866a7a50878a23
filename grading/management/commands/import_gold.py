from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from grading.gold import OPTIONAL_COLUMNS, REQUIRED_COLUMNS, GoldImportError, load_gold


class Command(BaseCommand):
    help = (
        "Mark answers as gold or calibration answers from a CSV (UTF-8, with or without a BOM). "
        f"Columns: {', '.join(REQUIRED_COLUMNS)}, and optionally {', '.join(OPTIONAL_COLUMNS)} "
        "(gold or calibration; default gold). `model` is the endpoint's slug, `sample` counts "
        "from 0, `low` and `high` are whole numbers from 0 to 10 with low <= high. Only answers "
        "with text can be marked. The whole file imports in one transaction, or nothing does; "
        "each problem is reported as `line: column: reason`. Importing the same file again "
        "changes nothing; a changed row updates the mark."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path, metavar="FILE")

    def handle(self, *args: Any, **options: Any) -> None:
        path: Path = options["file"]
        try:
            with path.open("rb") as file:
                report = load_gold(file)
        except OSError as error:
            raise CommandError(f"cannot read {path}: {error.strerror or error}") from error
        except GoldImportError as error:
            for problem in error.problems:
                self.stderr.write(problem)
            raise CommandError(
                f"{len(error.problems)} problem(s) in {path}; nothing was imported"
            ) from None
        self.stdout.write(report.summary())
