from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser

from inference.csv_export_command import CsvExportCommand
from inference.generations_export import columns, generation_rows, generations_for


class Command(CsvExportCommand):
    help = (
        "Export one CSV row per generation: its campaign, item, model, status, timings and token "
        "counts (DESIGN §4.4), optionally with the answer's text."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        parser.add_argument(
            "--with-text", action="store_true", help="Add the content and reasoning columns."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        with_text = options["with_text"]
        generations = generations_for(self.campaigns(options) if options["campaigns"] else None)
        rows = generation_rows(generations, with_text=with_text)
        self.write(
            options,
            columns(with_text=with_text),
            rows,
            unit="generations",
            total=generations.count,
        )
