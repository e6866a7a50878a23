"""The two roles: admins (staff) and reviewers (members of the `reviewers` group)."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, Group
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse

from .models import REVIEWERS_GROUP

User = AbstractBaseUser | AnonymousUser


def is_admin(user: Any) -> bool:
    return bool(user.is_authenticated and user.is_active and (user.is_staff or user.is_superuser))


def is_reviewer(user: Any) -> bool:
    if not (user.is_authenticated and user.is_active):
        return False
    return user.groups.filter(name=REVIEWERS_GROUP).exists()


def reviewers_group() -> Group:
    group, _ = Group.objects.get_or_create(name=REVIEWERS_GROUP)
    return group


def admin_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Let only admins through; everyone else gets 403 (login is enforced by middleware)."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not is_admin(request.user):
            raise PermissionDenied
        return view(request, *args, **kwargs)

    return wrapped
