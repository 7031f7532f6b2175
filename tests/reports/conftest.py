from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import postgres


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request, tmp_path: Path) -> Iterator[str]:
    """A migrated-on-demand database URL on each supported backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/ledger.db"
        return
    if not postgres.available():
        pytest.skip(f"PostgreSQL not reachable at {postgres.SHARED_DSN}")
    with postgres.fresh_database() as url:
        yield url
