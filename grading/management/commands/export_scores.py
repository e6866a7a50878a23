from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser

from grading import exclusion
from grading.scores_export import (
    AGGREGATE_COLUMNS,
    COLUMNS,
    aggregate_rows,
    format_score_row,
    score_rows,
    scores_for,
)
from inference.csv_export_command import CsvExportCommand


class Command(CsvExportCommand):
    help = (
        "Export one CSV row per score: campaign, item, model, reviewer, score, comment, position "
        "shown (0 = A), rubric version and the answer's timings (DESIGN §4.2). With --aggregate, "
        "one row per campaign × task type × model: the mean over items of each item's mean "
        "score, a 95% bootstrap CI over items, and the median, std, min and max of the item "
        "means, without the scores of reviewers excluded from a campaign's results (a warning on "
        "stderr says so); the per-score rows keep every score."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        parser.add_argument(
            "--aggregate",
            action="store_true",
            help="One row per campaign × task type × model instead of one per score.",
        )
        parser.add_argument(
            "--anonymize-reviewers",
            action="store_true",
            help="Write reviewer-1, reviewer-2, … (in order of first appearance) for usernames.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        campaigns = self.campaigns(options) if options["campaigns"] else None
        scores = scores_for(campaigns)
        if options["aggregate"]:
            warning = exclusion.warning(campaigns)
            if warning and options["verbosity"] > 0:
                self.stderr.write(warning)
            self.write(options, AGGREGATE_COLUMNS, aggregate_rows(scores), unit="aggregate rows")
        else:
            rows = score_rows(scores, anonymize=options["anonymize_reviewers"])
            self.write(
                options, COLUMNS, rows, unit="scores", total=scores.count, cells=format_score_row
            )
