"""Security: admin routes refuse tenant keys, keys are stored hashed and compared in constant
time. Routes are enumerated from the app, so a new /admin route is covered without editing this."""

from __future__ import annotations

import hashlib
import hmac
import re
import sqlite3

import httpx
import pytest
from starlette.routing import Mount

from gateway.app import create_app
from gateway.settings import Settings
from tests.hostile.conftest import ADMIN_KEY


def _flatten(routes):
    """(path, route) for every route, also inside included routers (FastAPI includes them lazily)."""
    for route in routes:
        if hasattr(route, "effective_route_contexts"):
            for context in route.effective_route_contexts():
                yield context.path, context.original_route
        else:
            yield getattr(route, "path", ""), route


def admin_routes() -> list[tuple[str, str]]:
    app = create_app(Settings(deployments=[]))
    found = []
    for path, route in _flatten(app.routes):
        if not path.startswith("/admin"):
            continue
        if isinstance(route, Mount):
            found.append(("GET", path + "/x"))
            continue
        methods = getattr(route, "methods", None) or {"GET"}
        concrete = re.sub(r"\{[^}]+\}", "x", path)
        found += [(method, concrete) for method in sorted(methods) if method != "HEAD"]
    return sorted(set(found))


ADMIN_ROUTES = admin_routes()
CONSOLE = "/admin/ui"


def test_the_admin_surface_was_found():
    paths = {path for _, path in ADMIN_ROUTES}
    assert {"/admin/keys", "/admin/policies", "/admin/reports/cost", "/admin/cache/invalidate"} <= paths
    assert any(path.startswith(CONSOLE) for path in paths)
    assert len(ADMIN_ROUTES) >= 20


@pytest.fixture(scope="module")
def tenant_key(module_gateway) -> str:
    return module_gateway.create_key(team="tenant", project="p")


def _call(gw, method: str, path: str, headers: dict[str, str]) -> httpx.Response:
    return httpx.request(
        method,
        gw.base_url + path,
        headers={"content-type": "application/json", **headers},
        content=b'{"team": "t", "document": {}, "version": 1, "policy": "p", "tenant": "t"}',
        timeout=30,
        follow_redirects=False,
    )


@pytest.mark.parametrize(("method", "path"), ADMIN_ROUTES, ids=[f"{m} {p}" for m, p in ADMIN_ROUTES])
def test_admin_routes_refuse_tenant_keys(module_gateway, tenant_key, method, path):
    for headers in (
        {"authorization": f"Bearer {tenant_key}"},
        {"x-api-key": tenant_key},
        {"authorization": f"Bearer {ADMIN_KEY}x"},
        {"authorization": f"Bearer {ADMIN_KEY[:-1]}"},
        {"authorization": "Basic dGVuYW50OnA="},
    ):
        response = _call(module_gateway, method, path, headers)
        assert response.status_code in (401, 403), (headers, response.status_code, response.text[:200])
        assert response.json()["error"]["type"] in ("authentication_error", "permission_error")
    anonymous = _call(module_gateway, method, path, {})
    if path.startswith(CONSOLE):
        # the console's static shell loads without credentials (a browser cannot send the admin key
        # when navigating); it carries no data: everything it shows comes from the admin API
        assert anonymous.status_code in (200, 307, 404, 405), anonymous.text[:200]
        assert tenant_key not in anonymous.text and "tg-" not in anonymous.text
    else:
        assert anonymous.status_code == 401, anonymous.text[:200]


def test_admin_key_still_works_everywhere(module_gateway):
    """The refusals above are not because the routes are broken: the admin key gets through."""
    for path in ("/admin/keys", "/admin/policies", "/admin/ui/", "/admin/reports/key-spend"):
        response = httpx.get(module_gateway.base_url + path, headers={"authorization": f"Bearer {ADMIN_KEY}"})
        assert response.status_code == 200, (path, response.text[:200])


def test_tenant_keys_are_stored_only_as_sha256_hashes(module_gateway):
    created = httpx.post(
        module_gateway.base_url + "/admin/keys",
        json={"team": "stored", "project": "p"},
        headers={"authorization": f"Bearer {ADMIN_KEY}"},
    )
    assert created.status_code == 201, created.text
    key = created.json()["key"]
    assert key.startswith("tg-") and len(key) >= 40
    listed = httpx.get(
        module_gateway.base_url + "/admin/keys", headers={"authorization": f"Bearer {ADMIN_KEY}"}
    )
    assert key not in listed.text
    module_gateway.flush_ledger()
    db_path = module_gateway.settings.database_url.split(":///", 1)[1]
    with sqlite3.connect(db_path) as db:
        row = db.execute(
            "SELECT * FROM virtual_keys WHERE key_hash = ?", (hashlib.sha256(key.encode()).hexdigest(),)
        )
        stored = row.fetchone()
        assert stored is not None
        assert not any(key in str(value) for value in stored)
        for (sql,) in db.execute("SELECT sql FROM sqlite_master WHERE type = 'table'"):
            assert key not in (sql or "")
    with open(db_path, "rb") as f:
        assert key.encode() not in f.read()  # nowhere in the database file, in any table
    # and the key works (so the row found above is the one that authenticates it)
    models = httpx.get(module_gateway.base_url + "/v1/models", headers={"authorization": f"Bearer {key}"})
    assert models.status_code == 200


def test_key_comparisons_are_constant_time(module_gateway, tenant_key, monkeypatch):
    """Tenant and admin keys are compared with hmac.compare_digest (observed, not assumed)."""
    calls: list[tuple[bytes | str, bytes | str]] = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    store = module_gateway.app.state.keys
    assert store.authenticate(tenant_key) is not None
    digest = hashlib.sha256(tenant_key.encode()).hexdigest()
    assert (digest, digest) in calls  # the tenant key's stored hash, compared in constant time
    calls.clear()
    response = httpx.get(module_gateway.base_url + "/admin/keys", headers={"authorization": "Bearer wrong"})
    assert response.status_code == 401
    assert (b"wrong", ADMIN_KEY.encode()) in calls
    assert store.authenticate(tenant_key[:-1] + "A") is None or tenant_key.endswith("A")
