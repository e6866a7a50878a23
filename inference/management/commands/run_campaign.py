from __future__ import annotations

import sys
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import Count
from tqdm import tqdm

from inference import dispatch
from inference.models import FINISHED_STATUSES, Campaign, GenerationStatus, ModelEndpoint


class Command(BaseCommand):
    help = "Launch a campaign: create its generations once and hand them to the Celery workers."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug")
        parser.add_argument("--wait", action="store_true", help="Show progress until the run ends.")
        parser.add_argument(
            "--retry-failed", action="store_true", help="Queue failed generations again first."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        campaign = Campaign.objects.filter(slug=options["slug"]).first()
        if campaign is None:
            known = ", ".join(Campaign.objects.values_list("slug", flat=True)) or "none"
            raise CommandError(f"no campaign {options['slug']!r} (known: {known})")
        if not campaign.members.exists():
            raise CommandError(f"campaign {campaign.slug} has no models")
        external = list(
            campaign.members.filter(endpoint__in=ModelEndpoint.objects.external())
            .order_by("position")
            .values_list("endpoint__slug", flat=True)
        )
        if len(external) == campaign.members.count():
            raise CommandError(
                f"campaign {campaign.slug} has only external models ({', '.join(external)}): "
                "their answers were imported, and gradebench never calls them"
            )
        for slug in external:
            self.stdout.write(f"skipped {slug}: an external model (answers imported), never called")
        if options["retry_failed"]:
            self.stdout.write(f"queued again: {dispatch.retry_failed(campaign)}")
        created = dispatch.launch(campaign)
        total = campaign.generations.count()
        if total == 0:
            raise CommandError(
                f"campaign {campaign.slug} has no items: import suite {campaign.suite.name!r} first"
            )
        self.stdout.write(f"campaign {campaign.slug}: {created} new generations, {total} in all")
        if not options["wait"]:
            return
        self.wait(campaign, total)

    def wait(self, campaign: Campaign, total: int) -> None:
        bar = tqdm(total=total, unit="gen", file=sys.stderr, disable=None)
        last_sweep = 0.0
        while True:
            counts = dict(
                campaign.generations.values_list("status").annotate(n=Count("pk")).order_by()
            )
            done = sum(counts.get(state, 0) for state in FINISHED_STATUSES)
            bar.n = done
            bar.set_postfix(
                ok=counts.get(GenerationStatus.SUCCEEDED, 0),
                failed=counts.get(GenerationStatus.FAILED, 0),
                running=counts.get(GenerationStatus.RUNNING, 0),
                refresh=False,
            )
            bar.refresh()
            if done >= total:
                break
            if time.monotonic() - last_sweep > 5:
                # Keeps the run moving even when no worker is sweeping (or one just died).
                dispatch.sweep()
                last_sweep = time.monotonic()
            time.sleep(0.5)
        bar.close()
        failed = counts.get(GenerationStatus.FAILED, 0)
        cancelled = counts.get(GenerationStatus.CANCELLED, 0)
        self.stdout.write(
            f"succeeded {counts.get(GenerationStatus.SUCCEEDED, 0)}, failed {failed}, "
            f"cancelled {cancelled}"
        )
        if failed or cancelled:
            for error, n in (
                campaign.generations.filter(status=GenerationStatus.FAILED)
                .values_list("error")
                .annotate(n=Count("pk"))
                .order_by("-n")[:5]
            ):
                self.stderr.write(f"  {n} × {error}")
            raise CommandError(f"{failed} generation(s) failed, {cancelled} cancelled")
