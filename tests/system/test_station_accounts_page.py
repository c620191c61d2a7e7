"""``/accounts``, the admin's page for accounts, served in-process by uvicorn over a real archive
(:class:`ThreadedStation`): by role, with CSRF, audited, the last admin kept, a disabled account
locked out at once. Also the audit page: one zone, readable details."""

from __future__ import annotations

import re

import pytest

from tests.fixtures.station import PASSWORD, ThreadedStation


@pytest.fixture(params=["sqlite", "pg"])
def web(request, tmp_path):
    if request.param == "pg":
        station = ThreadedStation(request.getfixturevalue("postgres_url"))
    else:
        station = ThreadedStation(tmp_path / "archive.db")
    for name, role in (("ada", "admin"), ("olga", "operator"), ("victor", "viewer")):
        station.add_user(name, role)
    yield station
    station.close()


def logged_in(web, name, password=PASSWORD):
    c = web.client()
    assert c.login(name, password).status == 303
    return c


def accounts_of(web) -> dict[str, tuple[str, bool, str | None]]:
    return {a.name: (a.role, a.disabled, a.last_login) for a in web.store.account_rows()}


def audit_of(web, path: str) -> list[tuple[str, str, str]]:
    """(who, action, result) of the audited requests to ``path``, oldest first."""
    return [(who, action, result) for _, _, who, _, action, _, result in reversed(web.store.audit_entries(200))
            if action.endswith(" " + path)]


def new_password(page: str) -> str:
    return re.search(r'<code id="new-password">([^<]+)</code>', page).group(1)


@pytest.mark.parametrize("name", ["olga", "victor"])
def test_a_viewer_or_operator_cannot_reach_the_accounts_page_nor_post_to_it(web, name):
    c = logged_in(web, name)
    assert c.get("/accounts").status == 403
    for path, form in (("/accounts", {"username": "mallory", "role": "admin"}), ("/accounts/ada/disable", {}),
                       ("/accounts/victor/role", {"role": "admin"}), ("/accounts/ada/password", {})):
        assert c.post(path, {**form, "csrf": c.csrf()}).status == 403
    assert accounts_of(web)["victor"][0] == "viewer" and "mallory" not in accounts_of(web)
    assert 'href="/accounts"' not in c.get("/").text


def test_the_admin_sees_every_account_with_role_creation_and_last_login(web):
    page = logged_in(web, "ada").get("/accounts").text
    for name, role in (("ada", "admin"), ("olga", "operator"), ("victor", "viewer")):
        assert f'<tr data-account="{name}" data-role="{role}" data-disabled="false">' in page
    assert accounts_of(web)["ada"][2] is not None and "从未 never" in page  # olga and victor never logged in


def test_an_added_account_gets_a_password_shown_once_that_logs_in(web):
    c = logged_in(web, "ada")
    reply = c.post("/accounts", {"username": "vera", "role": "viewer", "csrf": c.csrf()})
    assert reply.status == 200
    password = new_password(reply.text)
    assert accounts_of(web)["vera"][0] == "viewer"
    assert "new-password" not in c.get("/accounts").text  # shown once
    assert logged_in(web, "vera", password).get("/register").status == 200
    assert audit_of(web, "/accounts") == [("ada", "POST /accounts", "200 added vera as viewer")]
    assert password not in str(web.store.audit_entries(200))


def test_a_post_without_the_csrf_token_changes_nothing(web):
    c = logged_in(web, "ada")
    assert c.post("/accounts/victor/role", {"role": "admin"}).status == 403
    assert accounts_of(web)["victor"][0] == "viewer"


def test_a_role_change_is_audited_with_before_and_after(web):
    c = logged_in(web, "ada")
    assert c.post("/accounts/victor/role", {"role": "operator", "csrf": c.csrf()}).status == 303
    assert accounts_of(web)["victor"][0] == "operator"
    assert audit_of(web, "/accounts/victor/role") == [("ada", "POST /accounts/victor/role",
                                                        "303 role of victor: viewer -> operator")]


def test_a_disabled_account_cannot_log_in_and_its_session_ends(web):
    victor = logged_in(web, "victor")
    c = logged_in(web, "ada")
    assert c.post("/accounts/victor/disable", {"csrf": c.csrf()}).status == 303
    assert victor.get("/register").status == 303  # back to the login page
    assert victor.get("/api/doors").status == 401
    assert web.client().login("victor").status == 401
    assert c.post("/accounts/victor/enable", {"csrf": c.csrf()}).status == 303
    assert web.client().login("victor").status == 303


def test_a_password_reset_ends_the_sessions_and_only_the_new_password_works(web):
    victor = logged_in(web, "victor")
    c = logged_in(web, "ada")
    reply = c.post("/accounts/victor/password", {"csrf": c.csrf()})
    password = new_password(reply.text)
    assert victor.get("/api/doors").status == 401
    assert web.client().login("victor").status == 401
    assert web.client().login("victor", password).status == 303
    assert password not in str(web.store.audit_entries(200))


def test_the_last_admin_cannot_be_disabled_or_demoted(web):
    c = logged_in(web, "ada")
    for path, form in (("/accounts/ada/disable", {}), ("/accounts/ada/role", {"role": "operator"})):
        reply = c.post(path, {**form, "csrf": c.csrf()})
        assert reply.status == 409 and "last admin" in reply.text
    assert accounts_of(web)["ada"][:2] == ("admin", False)
    assert c.post("/accounts/olga/role", {"role": "admin", "csrf": c.csrf()}).status == 303
    assert c.post("/accounts/ada/role", {"role": "viewer", "csrf": c.csrf()}).status == 303  # olga is admin now
    assert accounts_of(web)["ada"][0] == "viewer"


def test_a_change_of_an_unknown_account_or_role_is_refused(web):
    c = logged_in(web, "ada")
    assert c.post("/accounts/nobody/disable", {"csrf": c.csrf()}).status == 404
    assert c.post("/accounts/victor/role", {"role": "root", "csrf": c.csrf()}).status == 400
    assert c.post("/accounts/victor/explode", {"csrf": c.csrf()}).status == 404
    assert c.post("/accounts", {"username": "victor", "role": "viewer", "csrf": c.csrf()}).status == 400


def test_the_audit_shows_every_time_in_the_stations_zone_and_details_as_fields(web):
    c = logged_in(web, "ada")
    c.post("/accounts/victor/role", {"role": "operator", "csrf": c.csrf()})
    page = c.get("/audit").text
    assert "Asia/Shanghai" in page and "+08:00" in page and "+00:00" not in page
    assert "<b>role</b>: operator" in page and "{'role'" not in page
