"""The two roles: admins (staff) and reviewers (members of the `reviewers` group).

Every view carries exactly one of the decorators below (or `login_not_required`); see
`inference.access` for the mechanism and the test that enforces it.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import Group

from inference.access import admin_required, is_admin, role_required

from .models import REVIEWERS_GROUP

__all__ = [
    "admin_required",
    "is_admin",
    "is_reviewer",
    "member_required",
    "reviewer_required",
    "reviewers_group",
    "signed_in",
]


def is_reviewer(user: Any) -> bool:
    if not (user.is_authenticated and user.is_active):
        return False
    return user.groups.filter(name=REVIEWERS_GROUP).exists()


def is_member(user: Any) -> bool:
    """An admin or a reviewer: someone with a role."""
    return is_admin(user) or is_reviewer(user)


def reviewers_group() -> Group:
    group, _ = Group.objects.get_or_create(name=REVIEWERS_GROUP)
    return group


reviewer_required = role_required("reviewer", is_reviewer)
"""Reviewers only: the blind review pages. Admins review too by joining the group."""

member_required = role_required("admin or reviewer", is_member)
"""Admins and reviewers: pages both read, each seeing what their role allows (results)."""

signed_in = role_required("signed in", lambda user: bool(user.is_authenticated))
"""Anyone signed in, with or without a role (the start page tells them what they can do)."""
