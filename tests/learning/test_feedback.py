"""POST /v1/feedback: stored against the ledger row, tenant-scoped, OpenAI-style errors."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.learning.conftest import ADMIN, Feedback, rows


def post(gw, body, key: str | None = None, headers: dict | None = None) -> httpx.Response:
    auth = headers if headers is not None else {"authorization": f"Bearer {key}"}
    return httpx.post(f"{gw.openai_base_url}/feedback", json=body, headers=auth, timeout=30)


def answered(gw, key: str) -> str:
    client = openai.OpenAI(base_url=gw.openai_base_url, api_key=key, max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Say hello"}]
    )
    return raw.headers["x-request-id"]


@pytest.fixture
def gw(make_gateway):
    return make_gateway()


def test_key_rates_its_own_request_and_admin_rates_any(gw):
    key = gw.create_key(team="search", project="ranker")
    request_id = answered(gw, key)  # rated at once: the ledger row may still be in the writer's batch

    up = post(gw, {"request_id": request_id, "thumbs": "up", "comment": "spot on"}, key)
    assert up.status_code == 201, up.text
    assert up.json()["score"] == 1.0 and up.json()["thumbs"] == "up"
    scored = post(gw, {"request_id": request_id, "score": 0.25}, headers=ADMIN)
    assert scored.status_code == 201, scored.text

    stored = sorted(rows(gw, Feedback), key=lambda r: r.id)
    assert [(r.request_id, r.team, r.score, r.thumbs, r.comment) for r in stored] == [
        (request_id, "search", 1.0, "up", "spot on"),
        (request_id, "search", 0.25, None, None),
    ]
    assert stored[0].submitted_by != "admin" and stored[1].submitted_by == "admin"


def test_other_tenants_and_unknown_ids_are_404(gw):
    owner = gw.create_key(team="search", project="ranker")
    request_id = answered(gw, owner)
    stranger = gw.create_key(team="ads", project="ranker")
    same_team_other_project = gw.create_key(team="search", project="other")
    for key, rid in (
        (stranger, request_id),
        (same_team_other_project, request_id),
        (owner, "no-such-request-id"),
    ):
        response = post(gw, {"request_id": rid, "thumbs": "down"}, key)
        assert response.status_code == 404, response.text
        error = response.json()["error"]
        assert error["code"] == "request_not_found" and error["param"] == "request_id"
        assert set(error) == {"message", "type", "param", "code"}
    # the same message whether the id exists or not: nothing leaks
    assert (
        post(gw, {"request_id": request_id, "thumbs": "down"}, stranger)
        .json()["error"]["message"]
        .split("'")[0]
        == post(gw, {"request_id": "no-such-request-id", "thumbs": "down"}, stranger)
        .json()["error"]["message"]
        .split("'")[0]
    )
    assert rows(gw, Feedback) == []


INVALID = [
    ({"score": 1.5}, "score"),
    ({"score": -0.1}, "score"),
    ({"thumbs": "sideways"}, "thumbs"),
    ({"score": 0.5, "thumbs": "up"}, None),
    ({}, None),
    ({"score": 0.5, "comment": "x" * 2001}, "comment"),
    ({"score": 0.5, "colour": "red"}, "colour"),
]


def test_invalid_feedback_is_400(gw):
    key = gw.create_key(team="search")
    request_id = answered(gw, key)
    for body, param in INVALID:
        response = post(gw, {"request_id": request_id, **body}, key)
        assert response.status_code == 400, (body, response.text)
        error = response.json()["error"]
        assert error["type"] == "invalid_request_error"
        if param:
            assert error["param"] == param, body
    assert rows(gw, Feedback) == []


def test_bad_key_and_bad_json(gw):
    assert post(gw, {"request_id": "x" * 10, "thumbs": "up"}, "tg-not-a-key").status_code == 401
    assert post(gw, {"request_id": "x" * 10, "thumbs": "up"}, headers={}).status_code == 401
    key = gw.create_key()
    bad = httpx.post(
        f"{gw.openai_base_url}/feedback", content=b"{nope", headers={"authorization": f"Bearer {key}"}
    )
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_json"
