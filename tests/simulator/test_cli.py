"""`python -m gateway.simulator.cli` serves the simulator with the flags it was given."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_cli_serves_with_faults_and_model_list() -> None:
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "gateway.simulator.cli",
        "--port",
        str(port),
        "--model",
        "gpt-4o",
        "--fault",
        "status=503,count=1",
        "--max-tokens",
        "8",
        "--min-tokens",
        "8",
    ]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(f"{base}/_sim/health")
                break
            except httpx.ConnectError:
                assert process.poll() is None, process.stderr.read().decode()
                assert time.monotonic() < deadline
                time.sleep(0.1)
        request = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
        headers = {"authorization": "Bearer sk"}
        url = f"{base}/v1/chat/completions"
        assert httpx.post(url, json=request, headers=headers).status_code == 503
        ok = httpx.post(url, json=request, headers=headers).json()
        assert ok["usage"]["completion_tokens"] == 8
        unknown = httpx.post(url, json={**request, "model": "gpt-9"}, headers=headers)
        assert unknown.status_code == 404
    finally:
        process.terminate()
        process.wait(timeout=10)
