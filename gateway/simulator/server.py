"""Run the simulator on a real socket inside the current process (tests, demos, benchmarks)."""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType

import uvicorn

from .app import SimulatorApp, create_app
from .clock import Clock
from .config import SimulatorConfig
from .core import Simulator


class SimulatorServer:
    """uvicorn serving the simulator from a background thread.

    >>> with SimulatorServer() as sim:
    ...     client = openai.OpenAI(base_url=sim.openai_base_url, api_key="sk-test")

    `simulator` is the live state: advance `simulator.clock`, add `simulator.faults`, read
    `simulator.stats` directly, or use the `/_sim/` control API over HTTP.
    """

    def __init__(
        self,
        config: SimulatorConfig | None = None,
        clock: Clock | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.app: SimulatorApp = create_app(config, clock)
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, port))
        self.host, self.port = self._socket.getsockname()[:2]
        uvicorn_config = uvicorn.Config(
            self.app, lifespan="off", log_level="critical", access_log=False, timeout_graceful_shutdown=1
        )
        self._server = uvicorn.Server(uvicorn_config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )

    @property
    def simulator(self) -> Simulator:
        return self.app.simulator

    @property
    def base_url(self) -> str:
        """Root URL: Anthropic clients and litellm `anthropic/...` append `/v1/messages` to it."""
        return f"http://{self.host}:{self.port}"

    @property
    def openai_base_url(self) -> str:
        """For OpenAI clients and litellm `openai/...` (which append `/chat/completions`)."""
        return f"{self.base_url}/v1"

    @property
    def gemini_base_url(self) -> str:
        """For litellm `gemini/...` as `api_base` (it appends `/models/{model}:generateContent`)."""
        return f"{self.base_url}/v1beta"

    def start(self) -> SimulatorServer:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the simulator did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=5)
        self._socket.close()

    def __enter__(self) -> SimulatorServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
