"""Who may open a page: one decorator per role on every view, and a marker a test can read.

Login itself is enforced for every view by `LoginRequiredMiddleware` (a view that anyone may
open is marked `@login_not_required`). On top of that each view declares who may use it with
exactly one role decorator; each sets `view.required_role`, so a test walks the URL resolver
and fails on a view that declares nothing. Views never check a role in their body.

This module holds the mechanism and the admin role (model-side pages are admins' only);
`grading.roles` adds the reviewer roles.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django_htmx.middleware import HtmxDetails

View = TypeVar("View", bound=Callable[..., Any])


class HtmxHttpRequest(HttpRequest):
    """A request that passed through django-htmx's middleware (for type checking)."""

    htmx: HtmxDetails


def is_admin(user: Any) -> bool:
    return bool(user.is_authenticated and user.is_active and (user.is_staff or user.is_superuser))


def role_required(role: str, allowed: Callable[[Any], bool]) -> Callable[[View], View]:
    """A decorator letting through the users `allowed` accepts; others get 403.

    `role` names the rule for people and tests (`view.required_role`).
    """

    def decorator(view: View) -> View:
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            if not allowed(request.user):
                raise PermissionDenied
            return view(request, *args, **kwargs)

        wrapped.required_role = role  # type: ignore[attr-defined]
        return wrapped  # type: ignore[return-value]

    return decorator


admin_required = role_required("admin", is_admin)
"""Admins (staff users) only."""
