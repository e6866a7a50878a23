"""The generations CSV (DESIGN §4.4): what `export_generations` writes and the campaign page
offers for download.

One row per generation, in the columns of `COLUMNS` (plus `TEXT_COLUMNS` with the answers'
text), ordered by campaign, task type (the study's order), item, model and sample. Cells follow
`inference.csv_writing`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.db.models import QuerySet

from .models import Generation

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
    "timing_quality": "timing_quality",
    "scheduling_lag_ms": "scheduling_lag_ms",
    # `imported` for answers made by another tool (`import_generations`), like `simulated`.
    "source": "source",
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


def columns(*, with_text: bool = False) -> dict[str, str]:
    """Column → field of the export, with the text columns when asked."""
    return {**COLUMNS, **(TEXT_COLUMNS if with_text else {})}


def generations_for(campaigns: list[str] | None = None) -> QuerySet[Generation]:
    """Every generation, or those of the named campaigns, in export order."""
    generations = Generation.objects.order_by(*ORDER)
    if campaigns:
        generations = generations.filter(campaign__slug__in=campaigns)
    return generations


def generation_rows(
    generations: QuerySet[Generation], *, with_text: bool = False
) -> Iterator[tuple[Any, ...]]:
    """The export's rows, streamed in one query whatever their number."""
    fields = columns(with_text=with_text).values()
    return generations.values_list(*fields).iterator(chunk_size=CHUNK_SIZE)
