"""Launcher failure paths, with small executables standing in for the `vllm` binary."""

import socket
import stat

import pytest

from selfhost.catalogue import Deployment
from selfhost.launcher import Launcher, LaunchError, _alive


def executable(tmp_path, body: str) -> str:
    path = tmp_path / "vllm"
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


def deployment(port: int) -> Deployment:
    return Deployment.model_validate(
        {"name": "d", "model": "m", "served_model_name": "m", "base_port": port, "cost": {"hourly_usd": "1"}}
    )


@pytest.fixture
def port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_taken_port_is_refused_before_anything_starts(tmp_path, port):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        launcher = Launcher(state_dir=tmp_path, vllm=executable(tmp_path, "sleep 60"))
        with pytest.raises(LaunchError, match="already in use"):
            launcher.up([deployment(port)])
    assert launcher.running() == []


def test_a_server_that_exits_is_reported_with_its_log(tmp_path, port):
    launcher = Launcher(state_dir=tmp_path, vllm=executable(tmp_path, 'echo "cannot load model: $2"; exit 3'))
    with pytest.raises(LaunchError) as err:
        launcher.up([deployment(port)], timeout=30)
    assert "d-0 exited before it was ready" in str(err.value)
    assert "cannot load model: m" in str(err.value)
    assert launcher.running() == []


def test_a_server_that_never_gets_ready_is_stopped_at_the_timeout(tmp_path, port):
    pid_file = tmp_path / "pid"
    launcher = Launcher(state_dir=tmp_path, vllm=executable(tmp_path, f"echo $$ > {pid_file}; exec sleep 60"))
    with pytest.raises(LaunchError, match=r"\['d-0'\] not ready after 2 s"):
        launcher.up([deployment(port)], timeout=2)
    assert launcher.running() == []
    assert not _alive(int(pid_file.read_text()))
