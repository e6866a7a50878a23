"""`manage.py demo`: everything `make demo` runs, supervised as one process.

Sets up the database and the reference study, makes sure the demo admin and reviewer exist,
then runs the model simulator, a Celery worker and the web server side by side. Once all the
answers of a campaign with judges are in (the reference study's small matchup has one), it
runs the judges, so the results pages show judgements next to the reviewers' scores. Ctrl-C (or
SIGTERM) stops every process it started, the worker first: its warm shutdown hands the
generations it is running back to the queue while the simulator still answers, and the next
start runs them.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser

from grading.roles import reviewers_group

CREDENTIALS_FILE = "demo-credentials.txt"
WORKER_STOP_S = 20.0
"""How long the worker gets to stop before it is killed (it hands its work back at once)."""
OTHERS_STOP_S = 10.0
WORKER_CONCURRENCY = 16
"""Streams the demo's worker carries at once. The demo shares two cores or so between the
simulator, the web server and the worker; at 16 streams the worker keeps up, so its timings are
trusted (README, "Timing at load"), where the default 64 marked most of them degraded."""
JUDGES_CHECK_S = 2.0
"""How often the demo looks whether a judged campaign's answers are all in."""


class Command(BaseCommand):
    help = "Set up demo data and run the web server, a Celery worker and the model simulator."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--port", type=int, default=8080, help="Web server port (default 8080)."
        )
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--fastdeploy-port", type=int, default=8180)
        parser.add_argument("--vllm-port", type=int, default=8000)
        parser.add_argument(
            "--setup-only", action="store_true", help="Prepare data and users, start nothing."
        )
        parser.add_argument(
            "--no-launch", action="store_true", help="Do not launch the reference campaigns."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        self.setup()
        credentials = self.demo_users()
        if options["setup_only"]:
            self.print_credentials(credentials, None)
            return
        self.run(
            options["host"],
            options["port"],
            credentials,
            options["fastdeploy_port"],
            options["vllm_port"],
            not options["no_launch"],
        )

    def setup(self) -> None:
        call_command("migrate", interactive=False, verbosity=0)
        call_command("load_study", str(settings.BASE_DIR / "fixtures" / "study.json"))
        sample = settings.BASE_DIR / "fixtures" / "sample"
        if "import_tasks" in _commands() and sample.exists():
            call_command("import_tasks", str(sample))
        # The reference study's published tables, so the results pages have something to show
        # before anyone has scored; importing them again changes nothing.
        seed = settings.BASE_DIR / "fixtures" / "seed" / "seed-scores.csv"
        if seed.exists():
            call_command("import_scores", str(seed))

    def demo_users(self) -> dict[str, str]:
        """Create (once) the demo admin and reviewer; their passwords live in var/."""
        path = Path(settings.VAR_DIR) / CREDENTIALS_FILE
        credentials: dict[str, str] = {}
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                name, _, password = line.partition(" ")
                if name and password:
                    credentials[name] = password
        User = get_user_model()
        for username, staff in (("admin", True), ("reviewer", False)):
            password = credentials.get(username) or secrets.token_urlsafe(9)
            credentials[username] = password
            user, _ = User.objects.get_or_create(username=username)
            user.is_staff = user.is_superuser = staff
            user.is_active = True
            user.set_password(password)
            user.save()
            if not staff:
                user.groups.add(reviewers_group())
        path.write_text("".join(f"{n} {p}\n" for n, p in credentials.items()), encoding="utf-8")
        path.chmod(0o600)
        return credentials

    def run(
        self,
        host: str,
        port: int,
        credentials: dict[str, str],
        fastdeploy_port: int = 8180,
        vllm_port: int = 8000,
        launch: bool = True,
    ) -> None:
        python = sys.executable
        manage = str(settings.BASE_DIR / "manage.py")
        commands: list[tuple[str, list[str]]] = []
        if "simulate_models" in _commands():
            commands.append(
                (
                    "simulator",
                    [
                        python,
                        manage,
                        "simulate_models",
                        "--fastdeploy-port",
                        str(fastdeploy_port),
                        "--vllm-port",
                        str(vllm_port),
                    ],
                )
            )
        commands.append(
            (
                "worker",
                [
                    python,
                    "-m",
                    "celery",
                    "-A",
                    "grading",
                    "worker",
                    "--loglevel",
                    "INFO",
                    "--concurrency",
                    str(WORKER_CONCURRENCY),
                ],
            )
        )
        commands.append(("web", [python, manage, "runserver", f"{host}:{port}", "--noreload"]))

        processes: dict[str, subprocess.Popen[bytes]] = {}
        # The reference study's endpoints read their base URLs from these: point them at the
        # simulator this demo starts.
        env = {
            **os.environ,
            "FASTDEPLOY_URL": f"http://127.0.0.1:{fastdeploy_port}/v1",
            "VLLM_URL": f"http://127.0.0.1:{vllm_port}/v1",
        }

        stopping = False

        def stop(*_: object) -> None:
            nonlocal stopping
            if stopping:
                # Asked again while stopping: stop waiting.
                for process in processes.values():
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(process.pid, signal.SIGKILL)
                raise SystemExit(1)
            stopping = True
            stop_processes(processes)
            raise SystemExit(0)

        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, stop)
        for name, command in commands:
            self.stdout.write(f"starting {name}: {' '.join(command[1:])}")
            # Each child leads its own process group so stopping reaches its children too.
            processes[name] = subprocess.Popen(
                command, cwd=settings.BASE_DIR, env=env, start_new_session=True
            )

        url = f"http://{host}:{port}/"
        to_judge: set[int] = set()
        if _wait_for(url + "healthz", list(processes.values()), timeout_s=90):
            if launch:
                self.launch_campaigns()
            to_judge = judged_campaigns()
            self.print_credentials(credentials, url)
        last_check = 0.0
        while True:
            for process in processes.values():
                if process.poll() is not None:
                    self.stderr.write(f"a demo process exited with status {process.returncode}")
                    stop()
            if to_judge and time.monotonic() - last_check > JUDGES_CHECK_S:
                to_judge = self.judge_answered(to_judge)
                last_check = time.monotonic()
            time.sleep(0.5)

    def launch_campaigns(self) -> None:
        """Launch the reference matchups against the simulator (once; later runs resume)."""
        from django.db.models import Count

        from inference import dispatch
        from inference.models import Campaign, GenerationSource

        imported = Campaign.objects.filter(generations__source=GenerationSource.IMPORTED)
        campaigns = Campaign.objects.exclude(pk__in=imported).annotate(judged=Count("judges"))
        # A campaign with judges first: its answers are in soonest, so its judges start early.
        for campaign in campaigns.order_by("-judged", "slug"):
            created = dispatch.launch(campaign)
            self.stdout.write(f"campaign {campaign.slug}: {created} new generations queued")

    def judge_answered(self, waiting: set[int]) -> set[int]:
        """Run the judges of each campaign in `waiting` whose answers are all in (none queued
        or running); return the campaigns still waiting for answers."""
        from grading.judging import JudgingError, create_judgements
        from inference.models import Campaign

        still = set()
        for campaign in Campaign.objects.filter(pk__in=waiting).order_by("slug"):
            answers = campaign.generations.all()
            if not answers.exists() or answers.in_flight().exists():
                still.add(campaign.pk)
                continue
            try:
                created = create_judgements(campaign)
            except JudgingError as error:
                self.stderr.write(str(error))
                continue
            self.stdout.write(
                f"campaign {campaign.slug}: answers are in, {created} new judgements queued"
            )
        return still

    def print_credentials(self, credentials: dict[str, str], url: str | None) -> None:
        lines = ["", "gradebench demo is ready" if url else "gradebench demo data is ready"]
        if url:
            lines.append(f"  open       {url}")
        lines.append(f"  admin      admin / {credentials['admin']}")
        lines.append(f"  reviewer   reviewer / {credentials['reviewer']}")
        if url:
            lines.append("  stop       Ctrl-C")
        self.stdout.write(self.style.SUCCESS("\n".join(lines)))


def judged_campaigns() -> set[int]:
    """The campaigns that list judges (ids)."""
    from inference.models import Campaign

    return set(Campaign.objects.filter(judges__isnull=False).values_list("pk", flat=True))


def stop_processes(
    processes: dict[str, subprocess.Popen[bytes]],
    worker_stop_s: float = WORKER_STOP_S,
    others_stop_s: float = OTHERS_STOP_S,
) -> None:
    """Stop the demo's processes without losing work: the worker first, then the others.

    SIGTERM is a Celery worker's warm shutdown: it hands what it runs back to the queue and
    exits. Only once it is gone do the simulator and the web server stop, so no request in
    flight meets a closed port. A process still there after its grace period is killed, with
    its whole process group.
    """
    stages = [
        [p for name, p in processes.items() if name == "worker"],
        [p for name, p in processes.items() if name != "worker"],
    ]
    for stage, grace_s in zip(stages, (worker_stop_s, others_stop_s), strict=True):
        for process in stage:
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + grace_s
        for process in stage:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            _kill_group(process)


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    """Kill what is left of a child's process group (the child leads its own group)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=5)


def _commands() -> set[str]:
    from django.core.management import get_commands

    return set(get_commands())


def _wait_for(url: str, processes: list[subprocess.Popen[bytes]], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if any(process.poll() is not None for process in processes):
            return False
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (local URL)
                if response.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.5)
    return False
