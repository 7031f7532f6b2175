"""PostgreSQL for tests: a fresh database on the machine's server, or a private server we own.

`fresh_database()` creates a throw-away database on 127.0.0.1:5432 (trust auth on dev and CI
machines). `PrivateServer` runs its own postmaster from the Debian binaries in a temp dir, so a
test can stop and restart the database mid-load without touching the shared server.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import psycopg

SHARED_DSN = os.environ.get("TIERGATE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def available(dsn: str = SHARED_DSN) -> bool:
    try:
        with psycopg.connect(dsn, connect_timeout=3):
            return True
    except psycopg.Error:
        return False


@contextmanager
def fresh_database(dsn: str = SHARED_DSN) -> Iterator[str]:
    """Yields a SQLAlchemy URL of a new, empty database; drops it afterwards."""
    name = f"tiergate_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    info = psycopg.conninfo.conninfo_to_dict(dsn)
    url = f"postgresql://{info.get('user', 'postgres')}@{info.get('host', '127.0.0.1')}:{info.get('port', 5432)}/{name}"
    try:
        yield url
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _bin_dir() -> str | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return os.path.dirname(found[-1]) if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivateServer:
    """A postmaster of our own (initdb + pg_ctl). As root, runs them as the `postgres` user."""

    def __init__(self) -> None:
        bin_dir = _bin_dir()
        if bin_dir is None:
            raise RuntimeError("PostgreSQL server binaries not found under /usr/lib/postgresql")
        self._bin = bin_dir
        self.dir = tempfile.mkdtemp(prefix="tiergate-pg-")
        self.port = _free_port()
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            shutil.chown(self.dir, "postgres", "postgres")
        self._run("initdb", "-D", f"{self.dir}/data", "-A", "trust", "-U", "postgres", "--no-sync")

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        command = [f"{self._bin}/{tool}", *args]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", f"{self.dir}/data", "-o", options, "-l", f"{self.dir}/log", "-w", "start")
        deadline = time.monotonic() + 30
        while not available(self.url):
            if time.monotonic() > deadline:
                raise RuntimeError("private PostgreSQL did not accept connections")
            time.sleep(0.1)

    def stop(self) -> None:
        self._run("pg_ctl", "-D", f"{self.dir}/data", "-m", "fast", "-w", "stop")

    def destroy(self) -> None:
        with suppress(subprocess.CalledProcessError):
            self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
