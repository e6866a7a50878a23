from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from inference.csvutil import output_stream, write_csv
from inference.models import Campaign, Generation

# Column → field, in the order of DESIGN §4.4.
COLUMNS = {
    "campaign": "campaign__slug",
    "matchup": "campaign__matchup",
    "task_type": "item__task_type__code",
    "item_id": "item__external_id",
    "model": "endpoint__slug",
    "sample": "sample",
    "status": "status",
    "attempts": "attempts",
    "finish_reason": "finish_reason",
    "ttft_ms": "ttft_ms",
    "ttfa_ms": "ttfa_ms",
    "response_time_ms": "response_time_ms",
    "prompt_tokens": "prompt_tokens",
    "completion_tokens": "completion_tokens",
    "total_tokens": "total_tokens",
    "reasoning_tokens": "reasoning_tokens",
    "decode_tps": "decode_tps",
    "e2e_tps": "e2e_tps",
    "tpot_ms": "tpot_ms",
    "usage_source": "usage_source",
    "simulated": "simulated",
    "error": "error",
}
TEXT_COLUMNS = {"content": "content", "reasoning": "reasoning"}
ORDER = (
    "campaign__slug",
    "item__task_type__position",
    "item__external_id",
    "endpoint__slug",
    "sample",
)
CHUNK_SIZE = 2000


class Command(BaseCommand):
    help = (
        "Export one CSV row per generation: its campaign, item, model, status, timings and token "
        "counts (DESIGN §4.4), optionally with the answer's text."
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
            "--with-text", action="store_true", help="Add the content and reasoning columns."
        )
        parser.add_argument(
            "--bom", action="store_true", help="Start with a UTF-8 byte order mark (for Excel)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        columns = {**COLUMNS, **(TEXT_COLUMNS if options["with_text"] else {})}
        generations = Generation.objects.order_by(*ORDER)
        if options["campaigns"]:
            generations = generations.filter(campaign__slug__in=self.campaigns(options))
        rows: Iterable[tuple[Any, ...]] = generations.values_list(*columns.values()).iterator(
            chunk_size=CHUNK_SIZE
        )

        path: Path | None = options["output"]
        if path is not None and options["verbosity"] > 0 and self.stderr.isatty():
            rows = tqdm(rows, total=generations.count(), unit="gen", file=sys.stderr, leave=False)
        try:
            with output_stream(path, self.stdout) as stream:
                written = write_csv(stream, list(columns), rows, bom=options["bom"])
        except OSError as error:
            if path is None:
                raise
            raise CommandError(f"cannot write {path}: {error.strerror or error}") from error
        if path is not None and options["verbosity"] > 0:
            self.stderr.write(f"wrote {written} generations to {path}")

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
