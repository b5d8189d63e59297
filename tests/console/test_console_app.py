"""The console's app without a browser (Flask's test client): every route refuses without a
session, the mount beside the API, tenants and their tokens, the cookie's flags behind a proxy,
the sign-in's redirect target, the session settings, and both languages' labels."""

from __future__ import annotations

import re

import pytest

from hub.api import make_app
from hub.config import Secret
from hub.console import DEFAULT_IDLE, DEFAULT_MAX, ConsoleSettings, Mounted, console_settings, make_console
from hub.console.labels import LABELS
from hub.errors import ConfigError
from hub.service import TenantServices
from tests.conftest import Env
from tests.test_api import FakeService

DEPLOYMENT = "deployment-token-8c1f0e2a"
ALPHA, BETA = "alpha-token-3b9d7c51e0", "beta-token-6a2e4f80d1"


def fake(tmp_path, name: str, token: str) -> FakeService:
    (tmp_path / name).mkdir()
    service = FakeService(Env(tmp_path / name, devices=4))
    service.token = Secret(token, "test")
    service.env.hub().close()
    return service


@pytest.fixture
def tenants(tmp_path):
    services = {"alpha": fake(tmp_path, "alpha", ALPHA), "beta": fake(tmp_path, "beta", BETA)}
    deployment = TenantServices.of(services, Secret(DEPLOYMENT, "test"))
    return Mounted(make_app(deployment), make_console(deployment))


def client_of(app):
    from werkzeug.test import Client
    from werkzeug.wrappers import Response
    return Client(app, Response, use_cookies=True)


def sign_in(client, token: str, name: str = "Bob", **headers):
    page = client.get("/console/signin", headers=headers)
    pre = re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True)).group(1)
    return client.post("/console/signin", data={"csrf_token": pre, "token": token, "name": name}, headers=headers)


def csrf_of(client) -> str:
    page = client.get("/console/runs").get_data(as_text=True)
    return re.search(r'"X-CSRF-Token": "([^"]+)"', page).group(1)


def console_routes():
    app = make_console(FakeService())
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        if rule.endpoint in ("console.signin", "console.static"):
            continue
        path = re.sub(r"<(?:\w+:)?(\w+)>", "x", rule.rule)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            yield pytest.param(method, path, id=f"{method} {rule.rule}")


@pytest.mark.parametrize("method, path", list(console_routes()))
def test_every_console_route_refuses_without_a_session(method, path):
    """Pages redirect to the sign-in page; fragments and POSTs answer 401; nothing opens a hub."""
    service = FakeService()
    client = make_console(service).test_client()
    response = client.open(path, method=method, data={"csrf_token": "x"})
    if method == "GET" and not path.endswith("/progress"):
        assert response.status_code == 302 and "/console/signin?next=" in response.headers["Location"]
    else:
        assert response.status_code == 401
    assert service.opened == 0 and service.triggered == []


def test_the_mount_redirects_the_root_and_leaves_the_api_to_its_token(tenants):
    client = client_of(tenants)
    root = client.get("/")
    assert root.status_code == 302 and root.headers["Location"] == "/console/"
    assert client.get("/nowhere").status_code == 401            # the API's answer, unchanged
    assert client.get("/tenants", headers={"Authorization": f"Bearer {DEPLOYMENT}"}).status_code == 200
    assert client.get("/console/static/htmx.min.js").status_code == 200
    assert client.get("/consolex").status_code == 401           # not the console's: the API's


def test_the_deployment_token_opens_every_tenant_and_a_tenants_token_only_its_own(tenants):
    admin = client_of(tenants)
    assert sign_in(admin, DEPLOYMENT).status_code == 303
    page = admin.get("/console/runs").get_data(as_text=True)
    assert re.findall(r'<option value="(\w+)"( selected)?>\1</option>', page)[:2] == [("alpha", " selected"),
                                                                                    ("beta", "")]
    switched = admin.post("/console/tenant", data={"tenant": "beta", "csrf_token": csrf_of(admin)})
    assert switched.status_code == 303
    assert '<option value="beta" selected>' in admin.get("/console/runs").get_data(as_text=True)

    own = client_of(tenants)
    assert sign_in(own, ALPHA).status_code == 303
    page = own.get("/console/runs").get_data(as_text=True)
    assert 'name="tenant"' not in page                             # one tenant: no switcher
    refused = own.post("/console/tenant", data={"tenant": "beta", "csrf_token": csrf_of(own)})
    assert refused.status_code == 404 and "no tenant &#39;beta&#39;" in refused.get_data(as_text=True)

    nobody = client_of(tenants)
    wrong = sign_in(nobody, BETA[:-1] + "0")
    assert wrong.status_code == 401 and "opens nothing" in wrong.get_data(as_text=True)
    assert nobody.get("/console/runs").status_code == 302


def test_the_cookie_is_secure_behind_a_proxy_saying_https_and_the_token_stays_out(tenants, capsys):
    client = client_of(tenants)
    plain = sign_in(client, ALPHA).headers["Set-Cookie"]
    assert "HttpOnly" in plain and "SameSite=Strict" in plain and "Path=/console" in plain and "Secure" not in plain
    behind = sign_in(client_of(tenants), ALPHA, **{"X-Forwarded-Proto": "https"})
    assert "Secure" in behind.headers["Set-Cookie"]
    assert ALPHA not in behind.headers["Set-Cookie"] and ALPHA not in behind.headers["Location"]
    sign_in(client_of(tenants), ALPHA[:-1] + "0")                  # a refused sign-in is logged, not its token
    out = capsys.readouterr()
    assert ALPHA not in out.out + out.err and ALPHA[:-1] + "0" not in out.out + out.err


@pytest.mark.parametrize("target, lands", [("/console/outbox?status=held", "/console/outbox?status=held"),
                                           ("https://evil.test/console/", "/console/"),
                                           ("//evil.test/console/", "/console/"), ("/runs", "/console/")])
def test_after_sign_in_only_a_console_path_is_followed(tenants, target, lands):
    client = client_of(tenants)
    page = client.get("/console/signin")
    pre = re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True)).group(1)
    response = client.post("/console/signin", query_string={"next": target},
                           data={"csrf_token": pre, "token": ALPHA, "name": "Bob"})
    assert response.status_code == 303 and response.headers["Location"] == lands


def test_the_sign_in_form_needs_its_csrf_token_and_a_name(tenants):
    client = client_of(tenants)
    assert client.post("/console/signin", data={"token": ALPHA, "name": "Bob"}).status_code == 403
    no_name = sign_in(client, ALPHA, name="  ")
    assert no_name.status_code == 401 and "Write your name" in no_name.get_data(as_text=True)


def test_session_settings_have_defaults_and_name_the_key_of_a_mistake():
    assert console_settings({}) == ConsoleSettings(idle=DEFAULT_IDLE, absolute=DEFAULT_MAX) == ConsoleSettings(1800,
                                                                                                            43200)
    assert console_settings({"session_idle": "10m", "session_max": "8h"}) == ConsoleSettings(600, 28800)
    with pytest.raises(ConfigError, match=r"admin\.session_idle.*30m"):
        console_settings({"session_idle": "soon"})
    with pytest.raises(ConfigError, match=r"admin\.session_idle.*shorter than session_max"):
        console_settings({"session_idle": "2d"})


def test_both_languages_have_every_label_and_french_is_spoken(tmp_path):
    assert set(LABELS["en"]) == set(LABELS["fr"])
    service = fake(tmp_path, "fr", ALPHA)

    class French:
        report_language = "fr"
    service.config = French()
    page = make_console(service).test_client().get("/console/signin").get_data(as_text=True)
    assert '<html lang="fr">' in page and "Jeton d’administration" in page and "Se connecter" in page


def test_the_session_settings_are_keys_of_admin_for_a_hub_and_a_deployment(tmp_path):
    from hub.config import HubConfig
    from hub.service import admin_settings
    from hub.tenants import ADMIN_KEYS as DEPLOYMENT_KEYS
    config = HubConfig(admin={"host": "127.0.0.1", "port": 8765, "session_idle": "10m", "session_max": "8h"})
    admin_settings(config)      # no unknown key
    assert console_settings(config.admin) == ConsoleSettings(600, 28800)
    assert {"session_idle", "session_max"} <= set(DEPLOYMENT_KEYS)
