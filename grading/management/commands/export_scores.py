from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from grading.scores_csv import AGGREGATE_COLUMNS, COLUMNS, aggregate_rows, score_rows, scores_for
from inference.csvutil import output_stream, write_csv
from inference.models import Campaign


class Command(BaseCommand):
    help = (
        "Export one CSV row per score: campaign, item, model, reviewer, score, comment, position "
        "shown (0 = A), rubric version and the answer's timings (DESIGN §4.2). With --aggregate, "
        "one row per campaign × task type × model: the mean over items of each item's mean "
        "score, a 95% bootstrap CI over items, and the median, std, min and max of the item "
        "means."
    )

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
            "--aggregate",
            action="store_true",
            help="One row per campaign × task type × model instead of one per score.",
        )
        parser.add_argument(
            "--bom", action="store_true", help="Start with a UTF-8 byte order mark (for Excel)."
        )
        parser.add_argument(
            "--anonymize-reviewers",
            action="store_true",
            help="Write reviewer-1, reviewer-2, … (in order of first appearance) for usernames.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        scores = scores_for(self.campaigns(options) if options["campaigns"] else None)
        header: tuple[str, ...]
        rows: Iterable[tuple[Any, ...]]
        if options["aggregate"]:
            header, rows, unit = AGGREGATE_COLUMNS, aggregate_rows(scores), "aggregate rows"
        else:
            header, unit = COLUMNS, "scores"
            rows = score_rows(scores, anonymize=options["anonymize_reviewers"])
            path_given = options["output"] is not None
            if path_given and options["verbosity"] > 0 and self.stderr.isatty():
                rows = tqdm(rows, total=scores.count(), unit="score", file=sys.stderr, leave=False)

        path: Path | None = options["output"]
        try:
            with output_stream(path, self.stdout) as stream:
                written = write_csv(stream, header, rows, bom=options["bom"])
        except OSError as error:
            if path is None:
                raise
            raise CommandError(f"cannot write {path}: {error.strerror or error}") from error
        if path is not None and options["verbosity"] > 0:
            self.stderr.write(f"wrote {written} {unit} to {path}")

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
