"""The ledger on SQLite and PostgreSQL, and zero rows lost while the database is down."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import openai
import pytest
from sqlalchemy import create_engine, func, select

from gateway.db.engine import sync_url
from gateway.db.models import LedgerEntry
from tests.support import postgres

MESSAGES = [{"role": "user", "content": "hello"}]


def count_rows(url: str) -> int:
    engine = create_engine(sync_url(url))
    try:
        with engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(LedgerEntry)).scalar_one()
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_postgres_ledger(make_gateway, postgres_url):
    gw = make_gateway(database_url=postgres_url)
    client = openai.OpenAI(base_url=gw.openai_base_url, api_key=gw.create_key(), max_retries=0)
    for model in ("gpt-4o", "gpt-4o-mini", "claude-sonnet"):
        client.chat.completions.create(model=model, messages=MESSAGES)
    gw.flush_ledger()
    engine = create_engine(sync_url(postgres_url))
    with engine.connect() as conn:
        rows = list(conn.execute(select(LedgerEntry).order_by(LedgerEntry.created_at)))
    engine.dispose()
    assert [r.deployment for r in rows] == ["gpt-4o", "gpt-4o-mini", "claude-sonnet"]
    assert all(r.cost_micros > 0 for r in rows)
    # The baseline is gpt-4o: the same request on gpt-4o costs the same, on gpt-4o-mini less.
    assert rows[0].baseline_cost_micros == rows[0].cost_micros
    assert rows[1].baseline_cost_micros > rows[1].cost_micros


def test_migrations_are_idempotent_and_concurrent_safe(tmp_path):
    from gateway.db.engine import migrate

    url = f"sqlite:///{tmp_path}/m.db"
    migrate(url)
    migrate(url)
    assert count_rows(url) == 0


@pytest.mark.postgres
def test_migrations_from_two_replicas_at_once_on_postgres(postgres_url):
    """Replicas are processes (Alembic itself is not thread-safe): two start at once."""
    code = f"from gateway.db.engine import migrate; migrate({postgres_url!r})"
    replicas = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(2)]
    assert [p.wait(timeout=120) for p in replicas] == [0, 0]
    assert count_rows(postgres_url) == 0


@pytest.mark.postgres
@pytest.mark.slow
def test_database_outage_mid_load_loses_no_ledger_rows(make_gateway):
    """Stop our own PostgreSQL under load: clients keep getting answers, rows are spooled to disk,
    and once the database is back every request has exactly one row."""
    try:
        server = postgres.PrivateServer()
    except (RuntimeError, OSError) as exc:
        pytest.skip(f"cannot run a private PostgreSQL here: {exc}")
    server.start()
    try:
        gw = make_gateway(database_url=server.url)
        key = gw.create_key()

        async def load(n: int) -> int:
            client = openai.AsyncOpenAI(base_url=gw.openai_base_url, api_key=key, max_retries=0)
            ok = 0

            async def one(i: int) -> None:
                nonlocal ok
                await client.chat.completions.create(
                    model="gpt-4o-mini", messages=[{"role": "user", "content": f"q{i}"}], stream=i % 3 == 0
                )
                ok += 1

            for start in range(0, n, 10):
                await asyncio.gather(*(one(i) for i in range(start, min(start + 10, n))))
                await asyncio.sleep(0.02)
            await client.close()
            return ok

        served = asyncio.run(load(60))
        server.stop()  # the database goes away mid-load
        served += asyncio.run(load(120))
        time.sleep(0.3)
        assert gw.app.state.ledger.spool.pending_rows() > 0, (
            "rows written while the DB was down must be spooled"
        )
        server.start()
        served += asyncio.run(load(60))
        deadline = time.monotonic() + 30
        while gw.app.state.ledger.spool.pending_rows() and time.monotonic() < deadline:
            time.sleep(0.2)
        gw.flush_ledger()
        assert served == 240
        assert gw.app.state.ledger.spool.pending_rows() == 0
        assert count_rows(server.url) == 240
    finally:
        server.destroy()
