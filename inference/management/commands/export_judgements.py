from __future__ import annotations

from typing import Any

from inference.csv_export_command import CsvExportCommand
from inference.judgements_export import COLUMNS, judgement_rows, judgements_for


class Command(CsvExportCommand):
    help = (
        "Export one CSV row per judgement (DESIGN §10): the answer judged, the judge, the prompt "
        "version, the score (empty when none could be read), the status, the rationale and the "
        "judge's timings and token counts."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        judgements = judgements_for(self.campaigns(options) if options["campaigns"] else None)
        self.write(
            options, COLUMNS, judgement_rows(judgements), unit="judgements", total=judgements.count
        )
