"""The judgements CSV (DESIGN §10): what `export_judgements` writes.

One row per judgement, in the columns of `COLUMNS`: the answer judged (campaign, matchup, task
type code, item id, model slug, sample), the judge's slug, the prompt version, the score (empty
when none was read), the status (`parsed`, `unparseable`, `failed`, … see `JudgementStatus`),
the rationale, `judged_at` (when the judgement finished, ISO 8601 with its offset; empty while
it has not) and the judge's own timings and token counts. Rows are ordered by campaign, task
type (the study's order), item, model, sample, judge and prompt version. Cells follow
`inference.csv_writing`: the rationale, which a model wrote, is neutralised against formula
injection like every text cell.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.db.models import QuerySet

from .models import Judgement

# Column → field, in the order of DESIGN §10.
COLUMNS = {
    "campaign": "campaign__slug",
    "matchup": "campaign__matchup",
    "task_type": "generation__item__task_type__code",
    "item_id": "generation__item__external_id",
    "model": "generation__endpoint__slug",
    "sample": "generation__sample",
    "judge": "judge__slug",
    "prompt_version": "prompt_version",
    "score": "score",
    "status": "status",
    "rationale": "rationale",
    "judged_at": "finished_at",
    "ttft_ms": "ttft_ms",
    "response_time_ms": "response_time_ms",
    "prompt_tokens": "prompt_tokens",
    "completion_tokens": "completion_tokens",
}
ORDER = (
    "campaign__slug",
    "generation__item__task_type__position",
    "generation__item__external_id",
    "generation__endpoint__slug",
    "generation__sample",
    "judge__slug",
    "prompt_version",
)
CHUNK_SIZE = 2000


def judgements_for(campaigns: list[str] | None = None) -> QuerySet[Judgement]:
    """Every judgement, or those of the named campaigns, in export order."""
    judgements = Judgement.objects.order_by(*ORDER)
    if campaigns:
        judgements = judgements.filter(campaign__slug__in=campaigns)
    return judgements


def judgement_rows(judgements: QuerySet[Judgement]) -> Iterator[tuple[Any, ...]]:
    """The export's rows, streamed in one query whatever their number."""
    return judgements.values_list(*COLUMNS.values()).iterator(chunk_size=CHUNK_SIZE)
