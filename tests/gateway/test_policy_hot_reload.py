"""Hot reload: two gateway processes share one PostgreSQL database; a policy activated through one
takes effect on the other within seconds, while requests keep flowing without a single failure."""

from __future__ import annotations

import itertools
import os
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest
import yaml

from tests.conftest import sim_deployments
from tests.gateway.test_policies import policy

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_replica(config, port, tmp_path, name):
    env = {
        **os.environ,
        "SIM_KEY": "sk-sim",
        "TIERGATE_ADMIN_KEY": "admin-secret",
        "TIERGATE_SPOOL_DIR": str(tmp_path / f"spool-{name}"),
    }
    log = (tmp_path / f"{name}.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "serve", "--config", str(config), "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError((tmp_path / f"{name}.log").read_text()[-3000:])


def test_activation_reaches_every_replica_without_dropping_requests(tmp_path, simulator, postgres_url):
    config = tmp_path / "tiergate.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "database_url": postgres_url,
                "policy_refresh_interval_s": 0.5,
                "deployments": sim_deployments(simulator),
            }
        )
    )
    ports = free_port(), free_port()
    replicas = [start_replica(config, port, tmp_path, f"replica{i}") for i, port in enumerate(ports)]
    a, b = (f"http://127.0.0.1:{port}" for port in ports)
    admin = {"authorization": "Bearer admin-secret"}
    httpx.post(
        f"{simulator.base_url}/_sim/latency", json={"model": "gpt-4o-mini", "itl_ms": 20, "tokens": 20}
    )
    try:
        only = lambda name: policy(bands=[{"from": 0, "to": 1, "deployment": name}], fallbacks={})  # noqa: E731
        httpx.post(
            f"{a}/admin/policies", headers=admin, json={"document": only("gpt-4o-mini")}
        ).raise_for_status()
        httpx.post(
            f"{a}/admin/policies/balanced/activate", headers=admin, json={"version": 1}
        ).raise_for_status()
        httpx.put(
            f"{a}/admin/assignments", headers=admin, json={"team": "*", "policy": "balanced"}
        ).raise_for_status()
        key = httpx.post(f"{a}/admin/keys", headers=admin, json={"team": "t"}).json()["key"]
        counter = itertools.count()

        def request(stream: bool = True) -> dict:  # every question distinct: served upstream, not cached
            return {
                "model": "auto",
                "messages": [{"role": "user", "content": f"hi #{next(counter)}"}],
                "stream": stream,
            }

        headers = {"authorization": f"Bearer {key}"}

        statuses: list[int] = []
        stop = threading.Event()

        def hammer() -> None:  # streams of ~0.4 s each keep requests in flight across the switch
            with httpx.Client(timeout=30) as client:
                while not stop.is_set():
                    with client.stream(
                        "POST", f"{b}/v1/chat/completions", json=request(), headers=headers
                    ) as r:
                        body = r.read()
                        statuses.append(r.status_code if b"[DONE]" in body else -1)

        def route_on_b() -> str:
            r = httpx.post(
                f"{b}/v1/chat/completions", json=request(stream=False), headers=headers, timeout=30
            )
            return r.headers.get("x-tiergate-route", "")

        deadline = time.monotonic() + 10
        while route_on_b() != "economy/gpt-4o-mini" and time.monotonic() < deadline:
            time.sleep(0.1)
        workers = [threading.Thread(target=hammer) for _ in range(4)]
        for w in workers:
            w.start()
        time.sleep(1)
        httpx.post(
            f"{a}/admin/policies", headers=admin, json={"document": only("local-small")}
        ).raise_for_status()
        activated = time.monotonic()
        httpx.post(
            f"{a}/admin/policies/balanced/activate", headers=admin, json={"version": 2}
        ).raise_for_status()
        while route_on_b() != "selfhost/local-small":
            assert time.monotonic() - activated < 5, "replica B did not pick up the new version within 5 s"
            time.sleep(0.05)
        took = time.monotonic() - activated
        time.sleep(1)
        stop.set()
        for w in workers:
            w.join()
        assert statuses and set(statuses) == {200}, f"dropped or failed requests: {statuses.count(-1)}"
        print(f"replica B switched {took:.2f} s after activation; {len(statuses)} streams, none failed")
    finally:
        httpx.post(
            f"{simulator.base_url}/_sim/latency", json={"model": "gpt-4o-mini", "itl_ms": 0, "tokens": 24}
        )
        for proc in replicas:
            proc.terminate()
        for proc in replicas:
            proc.wait(timeout=20)
