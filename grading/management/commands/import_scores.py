from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from grading.scores_import import REQUIRED_COLUMNS, ScoreImportError, load_scores


class Command(BaseCommand):
    help = (
        "Import scores from a CSV in the export_scores per-score format (UTF-8, with or without "
        f"a BOM). Required columns: {', '.join(REQUIRED_COLUMNS)}; the other export columns are "
        "optional; an unknown column is ignored with a warning. A score is a whole number from "
        "0 to 10. Missing campaigns, items, models, answers and reviewers are created as "
        "imported records (reviewers as inactive users); rubric versions must already exist "
        "(an empty rubric_version means the current one). The whole file imports in one "
        "transaction, or nothing does; each problem is reported as `line: column: reason`. "
        "Importing the same file again changes nothing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path, metavar="FILE")

    def handle(self, *args: Any, **options: Any) -> None:
        path: Path = options["file"]
        try:
            # Streamed, not read whole: a million-row file is over 100 MB.
            with path.open("rb") as file:
                report = load_scores(file, source=path.name)
        except OSError as error:
            raise CommandError(f"cannot read {path}: {error.strerror or error}") from error
        except ScoreImportError as error:
            for problem in error.problems:
                self.stderr.write(problem)
            raise CommandError(
                f"{len(error.problems)} problem(s) in {path}; nothing was imported"
            ) from None
        for warning in report.warnings:
            self.stderr.write(self.style.WARNING(f"warning: {warning}"))
        self.stdout.write(report.summary())
