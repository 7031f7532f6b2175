"""Virtual keys through the admin API and the CLI; budgets and rate limits."""

from __future__ import annotations

import httpx
import openai
import pytest
from typer.testing import CliRunner

from gateway.auth.keys import hash_key
from gateway.cli import app as cli

MESSAGES = [{"role": "user", "content": "hello"}]


def admin(gw, method, path, **kwargs):
    return httpx.request(
        method,
        f"{gw.base_url}/admin{path}",
        headers={"authorization": "Bearer admin-secret"},
        timeout=10,
        **kwargs,
    )


def test_admin_creates_lists_and_revokes_keys(make_gateway):
    gw = make_gateway(key_refresh_interval_s=0.2)
    created = admin(
        gw, "POST", "/keys", json={"team": "search", "project": "ranker", "budget_daily_usd": "5"}
    )
    assert created.status_code == 201
    body = created.json()
    key = body["key"]
    assert key.startswith("tg-") and body["budget_daily_usd"] == "5"
    listed = admin(gw, "GET", "/keys").json()["data"]
    assert [k["id"] for k in listed] == [body["id"]]
    assert key not in created.text.replace(key, "", 1)  # shown once, in the `key` field only
    assert "key" not in listed[0] and listed[0]["key_prefix"] == key[:10]

    client = openai.OpenAI(base_url=gw.openai_base_url, api_key=key, max_retries=0)
    assert client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES).choices

    assert admin(gw, "DELETE", f"/keys/{body['id']}").json() == {"id": body["id"], "revoked": True}
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert admin(gw, "DELETE", f"/keys/{body['id']}").status_code == 404
    assert admin(gw, "GET", "/keys", params={"include_revoked": True}).json()["data"][0]["revoked_at"]


def test_keys_are_stored_hashed(make_gateway):
    gw = make_gateway()
    key = gw.create_key()
    rows = gw.run(gw.app.state.keys.list())
    assert rows[0].key_hash == hash_key(key) and key not in repr(rows[0])


@pytest.mark.parametrize("auth", [None, "Bearer tg-tenant-key", "Bearer admin-secre"])
def test_admin_endpoints_refuse_anything_but_the_admin_key(make_gateway, auth):
    gw = make_gateway()
    tenant_key = gw.create_key()
    headers = {"authorization": auth.replace("tg-tenant-key", tenant_key)} if auth else {}
    response = httpx.get(f"{gw.base_url}/admin/keys", headers=headers)
    assert response.status_code == 401 and response.json()["error"]["type"] == "authentication_error"


def test_admin_api_disabled_without_admin_key(make_gateway):
    gw = make_gateway(admin_key=None)
    response = httpx.get(f"{gw.base_url}/admin/keys", headers={"authorization": "Bearer anything"})
    assert response.status_code == 403


def test_admin_rejects_invalid_key_specs(make_gateway):
    gw = make_gateway()
    for spec in (
        {"team": ""},
        {"team": "a", "rpm_limit": 0},
        {"team": "a", "budget_daily_usd": -1},
        {"x": 1},
    ):
        response = admin(gw, "POST", "/keys", json=spec)
        assert response.status_code == 400, spec
        assert response.json()["error"]["param"]


def test_rate_limit_per_minute(make_gateway):
    gw = make_gateway()
    client = openai.OpenAI(base_url=gw.openai_base_url, api_key=gw.create_key(rpm_limit=2), max_retries=0)
    for _ in range(2):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert info.value.body["code"] == "rate_limit_exceeded"
    assert int(info.value.response.headers["retry-after"]) >= 1


def test_daily_budget_stops_spending(make_gateway):
    gw = make_gateway()
    # gpt-4o costs a few hundred micro-dollars per call here; a $0.0001 budget allows exactly one.
    client = openai.OpenAI(
        base_url=gw.openai_base_url, api_key=gw.create_key(budget_daily_usd="0.0001"), max_retries=0
    )
    client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert info.value.body["code"] == "budget_exceeded"


def test_spend_survives_a_restart(make_gateway, tmp_path):
    gw = make_gateway()
    key = gw.create_key(budget_daily_usd="0.0001")
    openai.OpenAI(base_url=gw.openai_base_url, api_key=key, max_retries=0).chat.completions.create(
        model="gpt-4o", messages=MESSAGES
    )
    gw.stop()
    again = make_gateway()
    with pytest.raises(openai.RateLimitError):
        openai.OpenAI(base_url=again.openai_base_url, api_key=key, max_retries=0).chat.completions.create(
            model="gpt-4o", messages=MESSAGES
        )


def test_cli_creates_lists_and_revokes_keys(tmp_path, monkeypatch):
    monkeypatch.setenv("TIERGATE_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path}/cli.db")
    runner = CliRunner()
    created = runner.invoke(cli, ["keys", "create", "--team", "ml", "--project", "bot", "--rpm-limit", "10"])
    assert created.exit_code == 0, created.output
    key = next(word for word in created.output.split() if word.startswith("tg-"))
    key_id = created.output.split("id ", 1)[1].split()[0]
    listed = runner.invoke(cli, ["keys", "list"], env={"COLUMNS": "200"})
    assert listed.exit_code == 0 and key_id in listed.output and key not in listed.output
    assert runner.invoke(cli, ["keys", "revoke", key_id]).exit_code == 0
    assert runner.invoke(cli, ["keys", "revoke", key_id]).exit_code == 1
    assert key_id not in runner.invoke(cli, ["keys", "list"], env={"COLUMNS": "200"}).output
    bad = runner.invoke(cli, ["keys", "create", "--team", " "])
    assert bad.exit_code != 0
