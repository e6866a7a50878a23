from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from grading.manifest import manifest_json
from inference.csv_writing import output_stream
from inference.models import Campaign


class Command(BaseCommand):
    help = (
        "Write a campaign's manifest (DESIGN §12) as JSON: its study entries as run, the suite's "
        "content hash, each endpoint with its server version, the sampling settings, counts by "
        "status and the time span."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("campaign", metavar="CAMPAIGN", help="The campaign's slug.")
        parser.add_argument(
            "--output", type=Path, metavar="FILE", help="Write to FILE (default: stdout)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        slug: str = options["campaign"]
        campaign = Campaign.objects.select_related("suite").filter(slug=slug).first()
        if campaign is None:
            known = ", ".join(Campaign.objects.values_list("slug", flat=True)) or "none"
            raise CommandError(f"no campaign {slug!r} (known: {known})")
        text = manifest_json(campaign) + "\n"
        path: Path | None = options["output"]
        try:
            with output_stream(path, self.stdout) as stream:
                stream.write(text)
        except OSError as error:
            if path is None:
                raise
            raise CommandError(f"cannot write {path}: {error.strerror or error}") from error
        if path is not None and options["verbosity"] > 0:
            self.stderr.write(f"wrote the manifest of {slug} to {path}")
