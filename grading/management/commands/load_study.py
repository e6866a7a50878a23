from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from grading.study import StudyError, load_study, read_study_file


class Command(BaseCommand):
    help = "Create or update model endpoints and campaigns from a study file (JSON)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path, help="Study file, e.g. fixtures/study.json")

    def handle(self, *args: Any, **options: Any) -> None:
        path: Path = options["file"]
        try:
            result = load_study(read_study_file(path))
        except StudyError as error:
            for problem in error.problems:
                self.stderr.write(
                    f"{path}: {problem}" if not problem.startswith(str(path)) else problem
                )
            raise CommandError(
                f"{path}: {len(error.problems)} problem(s); nothing was loaded"
            ) from None
        if options["verbosity"] >= 2:
            for kind, labels in (("created", result.created), ("updated", result.updated)):
                for label in labels:
                    self.stdout.write(f"{kind} {label}")
        for note in result.notes:
            self.stdout.write(self.style.WARNING(note))
        self.stdout.write(result.summary())
