"""Helpers the benchmark scripts share: statistics, Django setup, child processes and
throwaway PostgreSQL databases.

The scripts run as `python tests/benchmarks/bench_*.py`, so each puts the repository on
`sys.path` before importing this module as `tests.benchmarks.harness`.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from inference.models import Campaign, ModelEndpoint, Suite, TaskItem

REPO = Path(__file__).resolve().parents[2]
"""The repository root: the working directory of children and the home of `manage.py`."""

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
"""The maintenance database of the local PostgreSQL server, for creating and dropping others."""


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def setup_django(migrate: bool = False) -> None:
    """Set Django up in this process for `grading.settings` (unless the environment names other
    settings); with `migrate`, also bring the configured database up to date."""
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "grading.settings")
    sys.path.insert(0, str(REPO))
    django.setup()
    if migrate:
        from django.core.management import call_command

        call_command("migrate", verbosity=0)


def bulk_suite(
    name: str,
    items: int,
    task_type_ids: Sequence[int],
    prompt: str,
    *,
    batch_size: int = 10_000,
    **fields: Any,
) -> tuple[Suite, list[TaskItem]]:
    """A suite of `items` items (`q000000`, `q000001`, …) cycling over `task_type_ids`, in
    bulk; `prompt` is formatted with the item's number `n`, `fields` go on every item."""
    from inference.models import Suite, TaskItem

    suite = Suite.objects.create(name=name)
    made = TaskItem.objects.bulk_create(
        (
            TaskItem(
                suite=suite,
                external_id=f"q{n:06d}",
                task_type_id=task_type_ids[n % len(task_type_ids)],
                prompt=prompt.format(n=n),
                content_hash=f"h{n}",
                **fields,
            )
            for n in range(items)
        ),
        batch_size=batch_size,
    )
    return suite, made


def finished_campaign(
    slug: str,
    suite: Suite,
    endpoints: Sequence[ModelEndpoint],
    *,
    reviewers_per_output: int = 2,
    **fields: Any,
) -> Campaign:
    """A finished campaign of `endpoints` (positions in this order) over `suite`, with its
    review settings; `fields` go on the campaign (its name is the slug unless given)."""
    from grading.models import ReviewSettings
    from inference.models import Campaign, CampaignModel, CampaignStatus

    fields.setdefault("name", slug)
    campaign = Campaign.objects.create(
        slug=slug, suite=suite, status=CampaignStatus.FINISHED, **fields
    )
    ReviewSettings.objects.create(campaign=campaign, reviewers_per_output=reviewers_per_output)
    for position, endpoint in enumerate(endpoints):
        CampaignModel.objects.create(campaign=campaign, endpoint=endpoint, position=position)
    return campaign


def unused_endpoint(slug: str, **fields: Any) -> ModelEndpoint:
    """An endpoint never called (its base URL is a closed port); name and model default to the
    slug."""
    from inference.models import ModelEndpoint

    fields.setdefault("name", slug)
    fields.setdefault("model", slug)
    return ModelEndpoint.objects.create(slug=slug, base_url="http://127.0.0.1:9/v1", **fields)


def run_child(
    script: str | Path, env: dict[str, str], *args: str, echo: bool = False
) -> dict[str, Any]:
    """Run `script` with `args` in a child Python process and return its last printed line,
    which must be a JSON object. With `echo`, the lines printed before it are printed here too.

    On failure, writes the tail of the child's output to stderr and raises RuntimeError.
    """
    out = subprocess.run(
        [sys.executable, str(script), *args], env=env, cwd=REPO, capture_output=True, text=True
    )
    if out.returncode != 0:
        sys.stderr.write(out.stdout[-4000:] + out.stderr[-6000:])
        raise RuntimeError(f"child {args} failed with exit code {out.returncode}")
    *printed, last = out.stdout.strip().splitlines()
    if echo:
        for line in printed:
            print(line, flush=True)
    return dict(json.loads(last))


def migrate(env: dict[str, str]) -> None:
    """Apply all migrations to the database that `env` configures, in a child process."""
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], env=env, cwd=REPO, check=True)


def postgres_available() -> bool:
    """Whether the local PostgreSQL server answers within two seconds."""
    try:
        import psycopg

        psycopg.connect(ADMIN_URL, connect_timeout=2).close()
    except Exception:
        return False
    return True


def create_database(name: str, template: str | None = None) -> None:
    """Create the PostgreSQL database `name` (dropping any left over under that name), empty
    or as a copy of the database `template`."""
    import psycopg

    copy = f' TEMPLATE "{template}"' if template else ""
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"{copy}')


def drop_database(name: str) -> None:
    """Drop the PostgreSQL database `name` if it exists, closing its connections."""
    import psycopg

    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
