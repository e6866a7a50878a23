"""The two roles: admins (staff) and reviewers (members of the `reviewers` group)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import Group

from inference.access import admin_required, is_admin

from .models import REVIEWERS_GROUP

__all__ = ["admin_required", "is_admin", "is_reviewer", "reviewers_group"]


def is_reviewer(user: Any) -> bool:
    if not (user.is_authenticated and user.is_active):
        return False
    return user.groups.filter(name=REVIEWERS_GROUP).exists()


def reviewers_group() -> Group:
    group, _ = Group.objects.get_or_create(name=REVIEWERS_GROUP)
    return group
