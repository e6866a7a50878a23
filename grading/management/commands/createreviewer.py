from __future__ import annotations

import getpass
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from grading.roles import reviewers_group


class Command(BaseCommand):
    help = "Add a reviewer (or put an existing user in the reviewers group)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument(
            "--password", help="Password to set; asked for interactively when omitted."
        )
        parser.add_argument("--email", default="")

    def handle(self, *args: Any, **options: Any) -> None:
        User = get_user_model()
        username: str = options["username"].strip()
        if not username:
            raise CommandError("the username may not be empty")
        password: str | None = options["password"]
        user = User.objects.filter(username=username).first()
        if password is None and user is None:
            if not options.get("interactive", True) or not self.stdin_isatty():
                raise CommandError("give --password when not running interactively")
            password = getpass.getpass(f"Password for {username}: ")
        if password is not None:
            try:
                validate_password(password, user or User(username=username))
            except ValidationError as error:
                raise CommandError(" ".join(error.messages)) from None

        with transaction.atomic():
            created = user is None
            if user is None:
                user = User.objects.create_user(username, options["email"], password)
            elif password is not None:
                user.set_password(password)
                user.save(update_fields=["password"])
            user.groups.add(reviewers_group())
        verb = "created" if created else "updated"
        self.stdout.write(f"reviewer {username} {verb}")

    def stdin_isatty(self) -> bool:
        import sys

        return sys.stdin.isatty()
