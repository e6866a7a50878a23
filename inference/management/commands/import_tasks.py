from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from inference.fixture_formats import FixtureError
from inference.importer import import_fixture

T = TypeVar("T")
PROGRESS_FROM = 200


class Command(BaseCommand):
    help = (
        "Import task items from a .json, .jsonl or .csv file, a folder holding one plus its "
        "images, or a .zip of such a folder. The whole file imports, or nothing does."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", type=Path)
        parser.add_argument("--suite", help="Suite name (default: the data file's name).")
        parser.add_argument(
            "--dry-run", action="store_true", help="Validate and report; write nothing."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        def progress(items: Iterable[T]) -> Iterable[T]:
            items = list(items)
            if len(items) < PROGRESS_FROM or options["verbosity"] == 0:
                return items
            return tqdm(items, desc="images", unit="img", file=sys.stderr, leave=False)

        try:
            report = import_fixture(
                options["path"],
                suite=options["suite"],
                dry_run=options["dry_run"],
                progress=progress,
            )
        except FixtureError as error:
            for problem in error.problems:
                self.stderr.write(problem)
            counts = f"rejected {error.rejected} of {error.total} items, " if error.total else ""
            raise CommandError(
                f"{counts}{len(error.problems)} problem(s); nothing was imported"
            ) from None
        for warning in report.warnings:
            self.stderr.write(self.style.WARNING(f"warning: {warning}"))
        if options["verbosity"] >= 2:
            counts = ", ".join(f"{code} {n}" for code, n in sorted(report.by_task_type.items()))
            self.stdout.write(f"suite {report.suite}: {counts}")
        if report.dry_run:
            self.stdout.write("dry run: nothing was written")
        self.stdout.write(report.summary())
