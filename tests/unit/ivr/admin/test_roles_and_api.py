"""Roles, permissions, secret hashing, the users/roles cross checks and the OpenAPI document
(pure: no sockets, no event loop)."""

from __future__ import annotations

import re

import pytest

from ivr.admin.api import OPENAPI, ROUTES
from ivr.config import Settings
from ivr.roles import (
    Directory,
    Permission,
    RoleConfig,
    UserConfig,
    check_access,
    hash_pin,
    hash_token,
    new_token,
    sip_ha1,
    verify_pin,
)
from sipstack.auth import ha1


def directory() -> Directory:
    users = [
        UserConfig(name="root", role="admin", tokens=(hash_token("t-root"),)),
        UserConfig(name="mgr", role="manager", teams=("sales",), tokens=(hash_token("t-mgr"),)),
        UserConfig(name="sup", role="supervisor"),
        UserConfig(name="ag", role="agent", teams=("sales",)),
        UserConfig(name="tr", role="trainee"),
    ]
    roles = {"trainee": RoleConfig(permissions=("calls.view", "monitor.listen"), scope="all")}
    return Directory(users, roles)


def test_builtin_roles_and_calls_end_defaults() -> None:
    d = directory()
    root, mgr, sup, ag = (d.users[n] for n in ("root", "mgr", "sup", "ag"))
    assert root.allowed(Permission.CALLS_END, ["anything"])
    assert mgr.allowed(Permission.CALLS_END, ["sales"])
    assert not mgr.allowed(Permission.CALLS_END, ["support"]), "managers: their teams only"
    assert not mgr.allowed(Permission.MONITOR_LISTEN, []), "a call of no team is not theirs"
    assert not sup.can(Permission.CALLS_END)
    assert sup.allowed(Permission.MONITOR_BARGE, ["support"])
    assert not any(ag.can(p) for p in Permission)


def test_custom_role_combines_permissions() -> None:
    tr = directory().users["tr"]
    assert tr.can(Permission.MONITOR_LISTEN) and tr.can(Permission.CALLS_VIEW)
    assert not tr.can(Permission.MONITOR_COACH) and not tr.can(Permission.CALLS_END)


def test_tokens_are_looked_up_by_hash_only() -> None:
    d = directory()
    assert d.by_token("t-root") is d.users["root"]
    assert d.by_token("t-roo") is None and d.by_token(hash_token("t-root")) is None
    token = new_token()
    assert token.startswith("shk_") and len(token) > 40
    assert re.fullmatch(r"sha256\$[0-9a-f]{64}", hash_token(token))


def test_pins_are_salted_scrypt() -> None:
    first, second = hash_pin("4321"), hash_pin("4321")
    assert first != second and first.startswith("scrypt$")
    assert verify_pin("4321", first) and verify_pin("4321", second)
    assert not verify_pin("4322", first) and not verify_pin("4321", "scrypt$garbage")


def test_sip_credentials_are_ha1_per_algorithm() -> None:
    block = sip_ha1("sam", "pw", "switchhook")
    assert block["ha1_md5"] == ha1("sam", "switchhook", "pw", "MD5")
    assert block["ha1_sha256"] == ha1("sam", "switchhook", "pw", "SHA-256")
    d = Directory([UserConfig(name="sam", role="supervisor", sip=block)], {})
    assert d.sip_ha1("sam", "switchhook", "SHA-256") == block["ha1_sha256"]
    assert d.sip_ha1("sam", "switchhook", "MD5") == block["ha1_md5"]
    assert d.sip_ha1("eve", "switchhook", "MD5") is None


def test_cross_checks_report_every_problem() -> None:
    users = (
        UserConfig(name="a", role="nope"),
        UserConfig(name="a", role="admin"),
        UserConfig(name="b", role="admin", extension="100"),
        UserConfig(name="c", role="admin", tokens=(hash_token("x"),)),
        UserConfig(name="d", role="admin", tokens=(hash_token("x"),)),
    )
    found = dict(check_access(users, {"admin": RoleConfig()}))
    assert "built in" in found[("roles", "admin")]
    assert "unknown role 'nope'" in found[("users", 0, "role")]
    assert "duplicate user 'a'" in found[("users", 1, "name")]
    assert "needs a pin" in found[("users", 2, "pin")]
    assert "already belongs" in found[("users", 4, "tokens", 0)]


def test_settings_accept_users_roles_and_monitoring() -> None:
    settings = Settings.model_validate(
        {
            "users": [
                {"name": "m", "role": "lead", "teams": ["sales"], "tokens": [hash_token("t")]}
            ],
            "roles": {"lead": {"permissions": ["monitor.listen", "calls.end"]}},
            "monitoring": {
                "feature_code": "*77",
                "stuck_calls": {"enabled": True, "connected_seconds": 18000},
            },
        }
    )
    assert settings.monitoring.feature_code == "*77"
    assert settings.roles["lead"].scope == "teams"
    with pytest.raises(Exception, match="monitor.everything"):
        Settings.model_validate({"roles": {"x": {"permissions": ["monitor.everything"]}}})
    with pytest.raises(Exception, match="tokens"):
        Settings.model_validate(
            {"users": [{"name": "m", "role": "admin", "tokens": ["plain-text-token"]}]}
        )


def test_openapi_documents_every_route_and_nothing_else() -> None:
    documented = {
        (method.upper(), path) for path, item in OPENAPI["paths"].items() for method in item
    }
    routed = {(r.method, r.template) for r in ROUTES} | {("GET", "/openapi.json")}
    assert documented == routed
    for path, item in OPENAPI["paths"].items():
        for method, operation in item.items():
            assert operation.get("summary"), (method, path)
            assert operation["responses"], (method, path)
            if "{id}" in path:
                assert any(
                    p["name"] == "id" and p["in"] == "path" for p in operation.get("parameters", ())
                ), (method, path)
    refs = re.findall(r"#/components/schemas/(\w+)", repr(OPENAPI))
    assert set(refs) <= set(OPENAPI["components"]["schemas"])
