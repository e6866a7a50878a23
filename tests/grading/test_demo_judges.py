"""`manage.py demo` runs the judges of the reference study's judged matchup once its answers
are in, so a new user finds judgements next to the reviewers' scores."""

from __future__ import annotations

import re
import sqlite3
import time
from contextlib import closing
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command

from grading.judge_prompt import PROMPT_VERSION
from grading.management.commands.demo import Command, judged_campaigns
from inference.models import Campaign, GenerationStatus, Judgement, JudgementStatus
from tests import builders
from tests.conftest import REPO
from tests.grading.test_demo import ctrl_c, free_port, start_demo

STUDY = REPO / "fixtures" / "study.json"


@pytest.mark.django_db
def test_demo_judges_a_campaign_once_all_its_answers_are_in() -> None:
    call_command("load_study", str(STUDY), stdout=StringIO())
    small = Campaign.objects.get(slug="small")
    assert judged_campaigns() == {small.pk}
    ernie, r1 = (member.endpoint for member in small.members.order_by("position"))
    items = [builders.item(small.suite, f"ar-{n}", "AR") for n in range(3)]
    for item in items:
        builders.generation(small, item, ernie)
        builders.generation(small, item, r1, status=GenerationStatus.FAILED)
    builders.generation(small, items[0], ernie, sample=1, status=GenerationStatus.RUNNING)
    out = StringIO()
    demo = Command(stdout=out, stderr=StringIO())

    assert demo.judge_answered({small.pk}) == {small.pk}  # an answer is still running
    assert not Judgement.objects.exists()

    small.generations.filter(status=GenerationStatus.RUNNING).update(
        status=GenerationStatus.SUCCEEDED, content="done"
    )
    assert demo.judge_answered({small.pk}) == set()
    assert "campaign small: answers are in, 4 new judgements queued" in out.getvalue()
    judgements = Judgement.objects.filter(campaign=small)
    assert {(j.judge.slug, j.status, j.prompt_version) for j in judgements} == {
        ("ernie-4.5-21b-a3b", JudgementStatus.QUEUED, PROMPT_VERSION)
    }


@pytest.mark.worker
def test_demo_shows_judgements_once_the_small_matchups_answers_are_in(tmp_path: Path) -> None:
    """Needs the dispatch to run judgements (a worker finishing them): the whole demo, until
    every judgement of the judged matchup has an outcome."""
    web, fastdeploy, vllm = free_port(), free_port(), free_port()
    log = tmp_path / "demo.log"
    demo = start_demo(tmp_path, web, fastdeploy, vllm)
    try:
        deadline = time.monotonic() + 900
        while not re.search(r"campaign small: answers are in, \d+ new judgements", log.read_text()):
            assert demo.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(1)
        while True:
            counts = judgement_counts(tmp_path)
            if counts and not counts.keys() & {"queued", "running"}:
                break
            assert demo.poll() is None and time.monotonic() < deadline, (counts, log.read_text())
            time.sleep(1)
    finally:
        ctrl_c(demo)
    assert counts.keys() <= {"parsed", "unparseable"}, counts
    answers = answer_count(tmp_path, "small")
    assert sum(counts.values()) == answers > 0


def judgement_counts(tmp_path: Path) -> dict[str, int]:
    with closing(sqlite3.connect(tmp_path / "gradebench.sqlite3")) as db:
        rows = db.execute("SELECT status, COUNT(*) FROM inference_judgement GROUP BY status")
        return dict(rows.fetchall())


def answer_count(tmp_path: Path, campaign: str) -> int:
    with closing(sqlite3.connect(tmp_path / "gradebench.sqlite3")) as db:
        (count,) = db.execute(
            "SELECT COUNT(*) FROM inference_generation g JOIN inference_campaign c"
            " ON c.id = g.campaign_id WHERE c.slug = ? AND g.status = 'succeeded'"
            " AND NOT g.placeholder",
            (campaign,),
        ).fetchone()
        return int(count)
