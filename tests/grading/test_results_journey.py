"""What a new user does first, in Chromium: the demo's data, a reviewer scoring from the
keyboard, then an admin reading every results page.

The data is what `manage.py demo` sets up (its own `setup` and `demo_users`: the reference
study, the sample suite, the reference study's published scores, the demo accounts), and its
campaigns are launched as the demo launches them. A worker would then run the generations;
here the first items of the small matchup are run in this process, through the same code a
worker runs, against the model simulator. The reviewer scores five of them, and every results
page the admin opens must answer 200, draw every chart, log no console error and fail no
request. A screenshot of each kind of page is kept in `var/test-artifacts/`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from io import StringIO
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from django.core.cache import cache

from grading.celery import app
from grading.management.commands.demo import Command as Demo
from grading.models import Score
from inference import generate
from inference.models import Campaign, GenerationStatus
from inference.simulator import SimulatorThread
from tests.conftest import REPO, browser_login

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ARTIFACTS = REPO / "var" / "test-artifacts"
ANSWERED_ITEMS = 6
SCORED_ITEMS = 5
# Per item: the key for answer A, then for answer B (T is 10), as a reviewer types them.
KEYS = [("8", "5"), ("t", "7"), ("3", "3"), ("6", "9"), ("0", "4")]


@pytest.fixture
def private_queue(settings: Any) -> Iterator[str]:
    """Launching enqueues generations for workers: into a queue of this test's own, emptied
    afterwards, so that no worker anywhere picks up generations of the test database."""
    queue = f"journey-{uuid.uuid4().hex[:8]}"
    settings.CELERY_TASK_DEFAULT_QUEUE = queue
    yield queue
    with app.connection_for_write() as connection, connection.SimpleQueue(queue) as left:
        left.clear()
        channel: Any = connection.default_channel
        channel.exchange_delete(queue)


@pytest.fixture
def demo(
    settings: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, private_queue: str
) -> dict[str, str]:
    """The demo's data and accounts, its campaigns launched and the first small items answered.

    Returns the demo accounts' passwords by username.
    """
    cache.clear()
    settings.VAR_DIR = tmp_path  # where `demo_users` keeps the passwords it made
    # One generation per call: the test decides which items get answers.
    settings.DISPATCH_CHAIN_MAX = 1
    command = Demo(stdout=StringIO(), stderr=StringIO())
    command.setup()
    credentials = command.demo_users()
    with SimulatorThread(speed=50) as simulator:
        # What `manage.py demo` does to point the reference study's endpoints at its simulator.
        monkeypatch.setenv("FASTDEPLOY_URL", simulator.fastdeploy_url)
        monkeypatch.setenv("VLLM_URL", simulator.vllm_url)
        command.launch_campaigns()
        small = Campaign.objects.get(slug="small")
        # The first item of each of the first task types, as a worker would have got to them.
        first_items: dict[int, int] = {}
        for type_id, item_id in small.generations.order_by(
            "item__task_type__position", "item__external_id"
        ).values_list("item__task_type_id", "item_id"):
            first_items.setdefault(type_id, item_id)
        chosen = list(first_items.values())[:ANSWERED_ITEMS]
        for generation in small.generations.filter(item_id__in=chosen):
            assert generate.run_generation(generation.pk) == "succeeded"
    answered = small.generations.filter(status=GenerationStatus.SUCCEEDED)
    assert answered.count() == 2 * ANSWERED_ITEMS
    return credentials


def score_from_the_keyboard(page: Any, base_url: str, items: int) -> None:
    """Score `items` items from the keyboard only, each submitted with Enter."""
    page.goto(f"{base_url}/review/next/")
    for a, b in KEYS[:items]:
        page.wait_for_selector("#work [data-answer]")
        shown = page.url
        page.keyboard.press(a)
        page.keyboard.press(b)
        page.keyboard.press("Enter")
        page.wait_for_function("url => location.href !== url", arg=shown)


class Watcher:
    """Everything that went wrong on the pages visited: statuses, console errors, failed
    requests and charts that did not draw, each with the page it happened on."""

    def __init__(self, page: Any) -> None:
        self.problems: list[str] = []
        self.where = ""
        page.on("pageerror", lambda error: self.note(f"page error: {error}"))
        page.on(
            "console",
            lambda msg: (
                self.note(f"console {msg.type}: {msg.text}") if msg.type == "error" else None
            ),
        )
        page.on("requestfailed", self.request_failed)
        page.on(
            "response",
            lambda response: (
                self.note(f"{response.status} from {response.url}")
                if response.status >= 400
                else None
            ),
        )

    def note(self, problem: str) -> None:
        self.problems.append(f"{self.where}: {problem}")

    def request_failed(self, request: Any) -> None:
        # Leaving a page aborts what it was still loading (its icon, say): not a failure. A
        # server error arrives as a response, a server away as another network error.
        if request.failure != "net::ERR_ABORTED":
            self.note(f"request failed: {request.url} ({request.failure})")


def visit(page: Any, watcher: Watcher, url: str, screenshot: str = "") -> int:
    """Open `url`, wait until every chart is drawn; return how many charts the page has."""
    watcher.where = url
    response = page.goto(url)
    if response is None or response.status != 200:
        watcher.note(f"HTTP {response.status if response else 'no response'}")
    else:
        try:
            page.wait_for_function(
                "() => [...document.querySelectorAll('.plot')].every("
                "p => p.dataset.drawn === 'true' && p.querySelector('svg'))",
                timeout=15_000,
            )
        except Exception:  # Playwright's TimeoutError: name the charts that did not draw
            undrawn = page.eval_on_selector_all(
                ".plot", "ps => ps.filter(p => !p.querySelector('svg')).map(p => p.dataset.chart)"
            )
            watcher.note(f"charts not drawn: {undrawn}")
    if screenshot:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / screenshot), full_page=True)
    return int(page.locator(".plot").count())


def test_demo_reviewer_scores_then_admin_reads_every_results_page(
    page: Any, live_server: Any, demo: dict[str, str]
) -> None:
    watcher = Watcher(page)
    small = Campaign.objects.get(slug="small")
    seed_small = Campaign.objects.get(slug="seed-small")

    # The reviewer scores five items, from the keyboard only.
    watcher.where = "reviewing"
    browser_login(page, live_server.url, "reviewer", demo["reviewer"])
    score_from_the_keyboard(page, live_server.url, SCORED_ITEMS)
    scores = Score.objects.filter(reviewer__username="reviewer")
    assert sorted(scores.values_list("score", flat=True)) == sorted(
        int(key.replace("t", "10")) for pair in KEYS[:SCORED_ITEMS] for key in pair
    )
    assert set(scores.values_list("generation__campaign__slug", flat=True)) == {"small"}

    # The admin reads the results.
    page.context.clear_cookies()
    watcher.where = "logging in"
    browser_login(page, live_server.url, "admin", demo["admin"])
    base = f"{live_server.url}/results/"

    if visit(page, watcher, base, screenshot="journey-overview.png") == 0:
        watcher.note("no chart at all")
    # The reviewer's scores are in the overview, beside the reference study's.
    for slug in ("small", "seed-small"):
        if page.locator(f'.results-table[data-matchup="{slug}"]').count() != 1:
            watcher.note(f"no table of campaign {slug}")
    for query in ({"modality": "text"}, {"task_type": "AR"}):
        visit(page, watcher, f"{base}?{urlencode(query)}")
    for campaign in Campaign.objects.order_by("slug"):
        url = f"{base}{campaign.public_id}/"
        shot = "journey-campaign.png" if campaign == small else ""
        visit(page, watcher, url, screenshot=shot)
        for query in ({"modality": "text"}, {"task_type": "AR"}):
            visit(page, watcher, f"{url}?{urlencode(query)}")
    # Two campaigns of the same matchup, chosen together: the reference run and the new one.
    assert small.matchup == seed_small.matchup
    chosen = urlencode({"campaign": [seed_small.public_id, small.public_id]}, doseq=True)
    visit(page, watcher, f"{base}?{chosen}", screenshot="journey-same-matchup.png")

    assert not watcher.problems, "\n".join(watcher.problems)
