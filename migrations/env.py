"""Alembic environment: runs migrations with a sync engine built from the gateway's database URL."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, text

from gateway.db.models import Base

# An arbitrary constant: replicas starting together serialise their migrations on this lock.
_PG_MIGRATION_LOCK = 7_310_051_042


def run_migrations_online() -> None:
    engine = create_engine(context.config.get_main_option("sqlalchemy.url"))
    with engine.connect() as connection:
        is_postgres = connection.dialect.name == "postgresql"
        if is_postgres:
            connection.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
            connection.commit()
        try:
            context.configure(
                connection=connection,
                target_metadata=Base.metadata,
                render_as_batch=connection.dialect.name == "sqlite",
            )
            with context.begin_transaction():
                context.run_migrations()
        finally:
            if is_postgres:
                connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _PG_MIGRATION_LOCK})
                connection.commit()
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline SQL generation is not supported; run `gateway migrate` against a database")
run_migrations_online()
