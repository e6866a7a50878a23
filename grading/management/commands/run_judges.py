from __future__ import annotations

import sys
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import Count
from tqdm import tqdm

from grading.judge_prompt import PROMPT_VERSION
from grading.judging import JudgingError, create_judgements
from inference import dispatch
from inference.models import (
    JUDGEMENT_FINISHED_STATUSES,
    JUDGEMENT_IN_FLIGHT_STATUSES,
    Campaign,
    JudgementStatus,
)


class Command(BaseCommand):
    help = (
        "Have a campaign's judges score its answers (DESIGN §10): one judgement per answer and "
        "judge under the current judge prompt, each made once, run by the Celery workers."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug", metavar="CAMPAIGN")
        parser.add_argument(
            "--wait", action="store_true", help="Show progress until no judgement is left to run."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        campaign = Campaign.objects.filter(slug=options["slug"]).first()
        if campaign is None:
            known = ", ".join(Campaign.objects.values_list("slug", flat=True)) or "none"
            raise CommandError(f"no campaign {options['slug']!r} (known: {known})")
        try:
            created = create_judgements(campaign)
        except JudgingError as error:
            raise CommandError(str(error)) from None
        total = campaign.judgements.filter(prompt_version=PROMPT_VERSION).count()
        if total == 0:
            raise CommandError(
                f"campaign {campaign.slug} has no answers to judge yet: run_campaign first"
            )
        self.stdout.write(
            f"campaign {campaign.slug}: {created} new judgements, {total} in all "
            f"(prompt {PROMPT_VERSION})"
        )
        if options["wait"]:
            self.wait(campaign)

    def wait(self, campaign: Campaign) -> None:
        """Until no judgement of the campaign is queued or running (whatever its prompt
        version), then the counts by judge and status; non-zero exit if any failed."""
        judgements = campaign.judgements.all()
        total = judgements.count()
        bar = tqdm(total=total, unit="judgement", file=sys.stderr, disable=None)
        last_sweep = 0.0
        while True:
            counts = dict(judgements.values_list("status").annotate(n=Count("pk")).order_by())
            bar.n = sum(counts.get(state, 0) for state in JUDGEMENT_FINISHED_STATUSES)
            bar.set_postfix(
                parsed=counts.get(JudgementStatus.PARSED, 0),
                unparseable=counts.get(JudgementStatus.UNPARSEABLE, 0),
                failed=counts.get(JudgementStatus.FAILED, 0),
                refresh=False,
            )
            bar.refresh()
            if not any(counts.get(state) for state in JUDGEMENT_IN_FLIGHT_STATUSES):
                break
            if time.monotonic() - last_sweep > 5:
                # Keeps the run moving even when no worker is sweeping (or one just died).
                dispatch.sweep()
                last_sweep = time.monotonic()
            time.sleep(0.5)
        bar.close()
        by_judge: dict[str, dict[str, int]] = {}
        for slug, status, n in (
            judgements.values_list("judge__slug", "status").annotate(n=Count("pk")).order_by()
        ):
            by_judge.setdefault(slug, {})[status] = n
        for slug in sorted(by_judge):
            figures = ", ".join(
                f"{status} {by_judge[slug].get(status, 0)}"
                for status in JUDGEMENT_FINISHED_STATUSES
            )
            self.stdout.write(f"{slug}: {figures}")
        failed = counts.get(JudgementStatus.FAILED, 0)
        cancelled = counts.get(JudgementStatus.CANCELLED, 0)
        if failed or cancelled:
            for error, n in (
                judgements.filter(status=JudgementStatus.FAILED)
                .values_list("error")
                .annotate(n=Count("pk"))
                .order_by("-n")[:5]
            ):
                self.stderr.write(f"  {n} × {error}")
            raise CommandError(f"{failed} judgement(s) failed, {cancelled} cancelled")
