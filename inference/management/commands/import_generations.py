from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from inference.generations_import import (
    MAX_TEXT_CHARS,
    REQUIRED_COLUMNS,
    GenerationImportError,
    import_generations,
)


class Command(BaseCommand):
    help = (
        "Import answers produced elsewhere (.csv or .jsonl, the columns of export_generations "
        f"--with-text; required: {', '.join(REQUIRED_COLUMNS)}) into the review queue. "
        f"Answers hold at most {MAX_TEXT_CHARS:,} characters. The whole file imports, or "
        "nothing does; importing it again changes nothing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path)
        parser.add_argument(
            "--suite",
            help="Suite of campaigns the file creates (default: the one suite holding their "
            "items). An existing campaign keeps its own.",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Check and report; write nothing."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        path: Path = options["file"]
        if not path.is_file():
            raise CommandError(f"{path}: no such file")
        try:
            report = import_generations(path, suite=options["suite"], dry_run=options["dry_run"])
        except GenerationImportError as error:
            for problem in error.problems:
                self.stderr.write(problem)
            raise CommandError(
                f"{len(error.problems)} problem(s) in {path}; nothing was imported"
            ) from None
        for warning in report.warnings:
            self.stderr.write(self.style.WARNING(f"warning: {warning}"))
        for slug in report.new_campaigns:
            self.stdout.write(f"new campaign {slug}")
        for slug in report.new_models:
            self.stdout.write(f"new external model {slug} (answers imported, never called)")
        if options["verbosity"] >= 2:
            for campaign, model, code, n in report.by_campaign_model_type():
                self.stdout.write(f"{campaign} {model} {code}: {n}")
        if report.dry_run:
            self.stdout.write("dry run: nothing was written")
        self.stdout.write(report.summary())
