from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.core.management.base import CommandParser

from inference.csvexport import CsvExportCommand
from inference.models import Generation

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
        columns = {**COLUMNS, **(TEXT_COLUMNS if options["with_text"] else {})}
        generations = Generation.objects.order_by(*ORDER)
        if options["campaigns"]:
            generations = generations.filter(campaign__slug__in=self.campaigns(options))
        rows: Iterable[tuple[Any, ...]] = generations.values_list(*columns.values()).iterator(
            chunk_size=CHUNK_SIZE
        )
        self.write(options, columns, rows, unit="generations", total=generations.count)
