from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError, CommandParser

from grading import exclusion
from grading.analysis_export import COLUMNS, KINDS, rows
from inference.csv_export_command import CsvExportCommand


class Command(CsvExportCommand):
    help = (
        "Export a bias or ranking analysis as CSV (DESIGN §7.1). KIND is 'ranking' (Bradley-Terry "
        "ratings with a bootstrap CI over items, overall and per task type), 'position' (the mean "
        "score shown first minus shown second, per campaign and reviewer), 'length' (per "
        "matchup, the score difference and the difference at equal answer length) or "
        "'association' (per model and task type, Spearman's rho of answer length and score)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("kind", metavar="KIND", help=f"One of: {', '.join(KINDS)}.")
        super().add_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        kind = options["kind"]
        if kind not in KINDS:
            raise CommandError(f"unknown analysis {kind!r} (known: {', '.join(KINDS)})")
        campaigns = self.campaigns(options) if options["campaigns"] else None
        warning = exclusion.warning(campaigns)
        if warning and options["verbosity"] > 0:
            self.stderr.write(warning)
        self.write(options, COLUMNS[kind], rows(kind, campaigns), unit=f"{kind} rows")
