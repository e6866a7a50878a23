"""Every page needs a login; reviewers and role-less users never reach admin pages."""

from __future__ import annotations

import re
from io import StringIO

import pytest
from django.contrib import admin
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, resolve, reverse

from grading.roles import is_reviewer
from inference.models import ModelEndpoint
from tests.conftest import PASSWORD, logged_in

pytestmark = pytest.mark.django_db

# Pages that must answer without a login.
PUBLIC = {"/login/", "/i18n/setlang/", "/healthz", "/admin/login/"}


def concrete_paths() -> list[str]:
    """Every URL pattern of the project, with sample values for its parameters."""
    paths: list[str] = []

    def walk(patterns: list, prefix: str) -> None:
        for pattern in patterns:
            route = str(pattern.pattern)
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, prefix + route)
            elif isinstance(pattern, URLPattern):
                full = prefix + route
                full = full.lstrip("^").rstrip("$").replace("\\Z", "")
                full = re.sub(r"<(?:\w+:)?object_id>", "1", full)
                full = re.sub(r"<(?:int:)?\w*id>", "1", full)
                full = re.sub(r"<path:\w+>", "x", full)
                full = re.sub(r"<(\w+:)?\w+>", "x", full)
                full = re.sub(r"\(\?P<\w+>[^)]*\)", "x", full)
                full = full.replace("^", "").replace("$", "")
                paths.append("/" + full)

    walk(get_resolver().url_patterns, "")
    return sorted(set(paths))


def test_the_walk_finds_the_pages() -> None:
    paths = concrete_paths()
    assert "/" in paths and "/rubric/" in paths and "/admin/" in paths
    assert any(p.startswith("/admin/inference/modelendpoint/") for p in paths)


def test_every_url_requires_login_except_the_public_ones() -> None:
    client = Client()
    for path in concrete_paths():
        if path in PUBLIC or path.startswith("/static/"):
            continue
        response = client.get(path)
        assert response.status_code in (301, 302, 404), path
        if response.status_code != 404:
            assert "/login/" in response["Location"], path


def test_public_pages_answer_without_login() -> None:
    client = Client()
    assert client.get("/login/").status_code == 200
    assert client.get("/healthz").json() == {"status": "ok"}


@pytest.mark.parametrize("persona", ["alice", "nobody"])
def test_non_admins_cannot_open_any_admin_page(request, persona: str) -> None:
    user: User = request.getfixturevalue(persona)
    client = logged_in(user)
    ModelEndpoint.objects.create(slug="m", name="M", model="m", base_url="http://127.0.0.1:1/v1")
    admin_paths = [
        p
        for p in concrete_paths()
        if p.startswith("/admin/") and p not in ("/admin/login/", "/admin/logout/")
    ]
    assert len(admin_paths) > 20
    for path in admin_paths:
        response = client.get(path)
        assert response.status_code in (302, 404), path
        if response.status_code == 302:
            assert response["Location"].startswith("/admin/login/"), path
    for model in admin.site._registry:
        opts = model._meta
        url = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
        assert client.get(url).status_code == 302, url


def test_admin_reaches_admin_pages(admin_client) -> None:
    for model in admin.site._registry:
        opts = model._meta
        url = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
        assert admin_client.get(url).status_code == 200, url


def test_navigation_shows_admin_link_to_admins_only(admin_client, alice_client) -> None:
    assert 'href="/admin/"' in admin_client.get("/").content.decode()
    assert 'href="/admin/"' not in alice_client.get("/").content.decode()


def test_role_less_user_is_told_to_ask_for_a_role(nobody) -> None:
    html = logged_in(nobody).get("/").content.decode()
    assert "no role yet" in html


def test_login_with_password_then_logout(alice) -> None:
    client = Client()
    response = client.post("/login/", {"username": "alice", "password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == "/"
    assert client.get("/").status_code == 200
    assert client.post("/logout/").status_code == 302
    assert client.get("/").status_code == 302


def test_failed_logins_are_throttled(alice) -> None:
    client = Client()
    for _ in range(4):
        response = client.post("/login/", {"username": "alice", "password": "wrong"})
        assert response.status_code == 200
    # The fifth failure locks the login
    response = client.post("/login/", {"username": "alice", "password": "wrong"})
    assert response.status_code == 429
    # Locked now: even the right password is refused, with a clear message.
    response = client.post("/login/", {"username": "alice", "password": PASSWORD})
    assert response.status_code == 429
    assert "Too many failed logins" in response.content.decode()
    assert client.get("/").status_code == 302


def test_createreviewer_adds_a_reviewer_who_can_log_in() -> None:
    out = StringIO()
    call_command("createreviewer", "carol", "--password", "another-long-pass-77", stdout=out)
    assert "reviewer carol created" in out.getvalue()
    carol = User.objects.get(username="carol")
    assert is_reviewer(carol) and not carol.is_staff
    response = Client().post("/login/", {"username": "carol", "password": "another-long-pass-77"})
    assert response.status_code == 302


def test_createreviewer_refuses_a_weak_password() -> None:
    with pytest.raises(CommandError, match=r"too short|too common"):
        call_command("createreviewer", "dave", "--password", "abc", stdout=StringIO())
    assert not User.objects.filter(username="dave").exists()


def test_language_switch_shows_chinese(alice_client) -> None:
    response = alice_client.post("/i18n/setlang/", {"language": "zh-hans", "next": "/"})
    assert response.status_code == 302
    html = alice_client.get("/").content.decode()
    assert 'lang="zh-hans"' in html
    assert "评分标准" in html  # the "Rubric" navigation link, translated


def test_endpoint_api_key_is_write_only_in_admin(admin_client) -> None:
    endpoint = ModelEndpoint.objects.create(
        slug="m", name="M", model="m", base_url="http://127.0.0.1:1/v1", api_key="sk-very-secret-1"
    )
    url = reverse("admin:inference_modelendpoint_change", args=[endpoint.pk])
    assert "sk-very-secret-1" not in admin_client.get(url).content.decode()
    form = {
        "slug": "m",
        "name": "M2",
        "model": "m",
        "dialect": "openai",
        "base_url": "http://127.0.0.1:1/v1",
        "base_url_env": "",
        "api_key_env": "",
        "api_key": "",
        "reasoning": "none",
        "max_concurrency": "8",
        "max_pixels": "",
        "timeout_s": "600",
    }
    response = admin_client.post(url, form)
    assert response.status_code == 302
    endpoint.refresh_from_db()
    assert (endpoint.name, endpoint.api_key) == ("M2", "sk-very-secret-1")
    admin_client.post(url, {**form, "api_key": "sk-new-2"})
    endpoint.refresh_from_db()
    assert endpoint.api_key == "sk-new-2"
    admin_client.post(url, {**form, "clear_api_key": "on"})
    endpoint.refresh_from_db()
    assert endpoint.api_key == ""


# --- One role decorator on every view -----------------------------------------------------------

# Views of Django's own apps, which enforce their own rules: the admin site (staff, tested
# above), login, logout and the language switch.
DJANGO_OWN = {"login", "logout", "set_language"}

# Who gets past each role (True) and who is refused with 403 (False).
ADMITTED = {
    "admin": {"admin": True, "alice": False, "nobody": False},
    "reviewer": {"admin": False, "alice": True, "nobody": False},
    "admin or reviewer": {"admin": True, "alice": True, "nobody": False},
    "signed in": {"admin": True, "alice": True, "nobody": True},
}


def project_routes() -> list[tuple[str, object]]:
    """(sample path, view function) of every route outside Django's own apps."""
    routes: list[tuple[str, object]] = []
    for path in concrete_paths():
        if path.startswith("/admin/"):
            continue
        match = resolve(path)
        if match.url_name in DJANGO_OWN:
            continue
        routes.append((path, match.func))
    return routes


def test_every_view_declares_its_role_or_that_it_is_public() -> None:
    routes = project_routes()
    assert len(routes) > 20
    for path, view in routes:
        role = getattr(view, "required_role", None)
        public = getattr(view, "login_required", True) is False
        assert (role in ADMITTED) != public, f"{path}: role {role!r}, public {public}"


def test_each_role_reaches_exactly_the_views_it_should(
    admin: User, alice: User, nobody: User
) -> None:
    clients = {"admin": logged_in(admin), "alice": logged_in(alice), "nobody": logged_in(nobody)}
    anonymous = Client()
    for path, view in project_routes():
        role = getattr(view, "required_role", None)
        if role is None:
            assert anonymous.get(path).status_code != 302, path
            continue
        response = anonymous.get(path)
        assert response.status_code == 302 and "/login/" in response["Location"], path
        for persona, client in clients.items():
            status = client.get(path).status_code
            admitted = ADMITTED[role][persona]
            # Past the role check a sample path may name nothing (404) or want a POST (405).
            assert (status != 403) == admitted, f"{persona} on {path} ({role}): {status}"


@pytest.mark.parametrize("name", ["reviewer-quality", "gold-list", "gold-mark"])
def test_reviewer_quality_routes_are_walked_and_admin_only(name: str) -> None:
    path = reverse(name, args=["x"])
    assert path in concrete_paths()
    assert getattr(resolve(path).func, "required_role", None) == "admin"
