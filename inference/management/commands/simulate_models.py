"""``manage.py simulate_models``: serve the model simulator (DESIGN §8) for the demo and tests."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from inference.simulator.profiles import load_profiles
from inference.simulator.running import add_arguments, run


class Command(BaseCommand):
    help = (
        "Serve a FastDeploy-style server (ERNIE profiles) and a vLLM-style server (the others) "
        "that simulate the study's models, until Ctrl-C or SIGTERM."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        add_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        if options["speed"] <= 0:
            raise CommandError("--speed must be > 0")
        try:
            profiles = load_profiles(options["profiles"])
        except ValueError as exc:
            raise CommandError(str(exc)) from exc

        def out(line: str) -> None:
            # Flush each line: a parent process waits for the bound URLs (port 0).
            self.stdout.write(line)
            self.stdout.flush()

        try:
            run(
                host=options["host"],
                fastdeploy_port=options["fastdeploy_port"],
                vllm_port=options["vllm_port"],
                profiles=profiles,
                speed=options["speed"],
                out=out,
            )
        except OSError as exc:
            raise CommandError(f"cannot listen: {exc}") from exc
