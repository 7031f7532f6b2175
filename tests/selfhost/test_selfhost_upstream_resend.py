"""What the self-hosted upstream does when a replica's connection fails before any answer came back."""

from __future__ import annotations

import socket
from pathlib import Path

import aiohttp
import pytest

from gateway.upstreams import openai_wire
from gateway.upstreams.base import UpstreamResponse
from gateway.upstreams.errors import UpstreamError
from gateway.upstreams.openai_wire import OpenAIWireUpstream
from gateway.upstreams.selfhosted import SelfHostedUpstream, gateway_deployment, prefix_key
from selfhost.pool import _rendezvous
from selfhost.probe import ReplicaLoad
from tests.selfhost.conftest import tiny_deployment

BODY = {"messages": [{"role": "user", "content": "hello"}], "max_tokens": 4}
ANSWER = UpstreamResponse(body=b"{}", data={}, usage=None)


async def test_a_connect_that_times_out_is_a_connect_timeout_not_an_upstream_timeout(monkeypatch):
    """A server whose accept queue is full drops our SYN: aiohttp's connect deadline expires. Nothing was
    sent, which the error class says (the self-hosted tier sends such a request again); the client still
    gets a 504 if that is the end of it."""
    monkeypatch.setattr(openai_wire, "CONNECT_TIMEOUT_S", 0.3)
    with socket.socket() as listener, socket.socket() as filler:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)  # one pending connection fills the accept queue; nobody accepts
        filler.connect(listener.getsockname())
        entry = tiny_deployment(Path("/unused"), base_port=listener.getsockname()[1])
        async with aiohttp.ClientSession() as session:
            wire = OpenAIWireUpstream(gateway_deployment(entry), session)
            with pytest.raises(UpstreamError) as failed:
                await wire.complete("chat", BODY)
    assert failed.value.error_class == "connect_timeout"
    assert failed.value.to_client_error("tiny-test").status == 504


class ScriptedReplica:
    """Stands in for one replica's HTTP client: fails with the scripted error classes, then answers."""

    def __init__(self, *errors: str):
        self.errors, self.calls = list(errors), 0

    async def complete(self, endpoint, body):
        self.calls += 1
        if self.errors:
            raise UpstreamError(self.errors.pop(0), "scripted")
        return ANSWER


@pytest.fixture
async def upstream():
    entry = tiny_deployment(Path("/unused"), replicas=2)
    async with aiohttp.ClientSession() as session:
        upstream = SelfHostedUpstream(entry, gateway_deployment(entry), session)
        for state in upstream.pool.states():
            state.load = ReplicaLoad(healthy=True)  # as scraped: idle
        yield upstream


def ranked(upstream) -> list[str]:
    """The replica ids in the order the pool tries them for BODY (rendezvous hashing of its prefix)."""
    key = prefix_key(BODY)
    return sorted(upstream._upstreams, key=lambda rid: _rendezvous(rid, key), reverse=True)


async def test_a_connect_timeout_is_sent_once_more_to_the_same_replica(upstream):
    """On one replica the request still gets its answer (a CPU-starved event loop misses the connect
    deadline of a connection the kernel accepted at once), and the replica stays in service."""
    first, second = ranked(upstream)
    upstream._upstreams[first] = ScriptedReplica("connect_timeout")
    upstream._upstreams[second] = ScriptedReplica()
    assert await upstream.complete("chat", BODY) is ANSWER
    assert (upstream._upstreams[first].calls, upstream._upstreams[second].calls) == (2, 0)
    assert all(s.in_service and s.in_flight == 0 for s in upstream.pool.states())


async def test_a_replica_that_times_out_twice_leaves_the_request_to_the_next_one_but_stays_in(upstream):
    first, second = ranked(upstream)
    upstream._upstreams[first] = ScriptedReplica("connect_timeout", "connect_timeout")
    upstream._upstreams[second] = ScriptedReplica()
    assert await upstream.complete("chat", BODY) is ANSWER
    assert (upstream._upstreams[first].calls, upstream._upstreams[second].calls) == (2, 1)
    assert all(s.in_service for s in upstream.pool.states())  # slow to connect is not down


async def test_a_killed_replica_seen_through_a_stalled_loop_goes_to_the_survivor(upstream):
    """A refused connect observed by a starved loop surfaces as a connect timeout too: the second try is
    refused outright, which takes the replica out, and the survivor answers (no fallback to another tier)."""
    first, second = ranked(upstream)
    upstream._upstreams[first] = ScriptedReplica("connect_timeout", "connect_error")
    upstream._upstreams[second] = ScriptedReplica()
    assert await upstream.complete("chat", BODY) is ANSWER
    states = {s.replica.id: s for s in upstream.pool.states()}
    assert not states[first].in_service and states[second].in_service


async def test_only_when_every_replica_failed_does_the_error_reach_the_dispatcher(upstream):
    first, second = ranked(upstream)
    upstream._upstreams[first] = ScriptedReplica("connect_timeout", "connect_timeout")
    upstream._upstreams[second] = ScriptedReplica("connect_timeout", "connect_timeout")
    with pytest.raises(UpstreamError) as failed:
        await upstream.complete("chat", BODY)
    assert failed.value.error_class == "connect_timeout"
    assert (upstream._upstreams[first].calls, upstream._upstreams[second].calls) == (2, 2)
