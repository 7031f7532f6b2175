"""The gateway outlasts its clients' idle connections: httpx (and so the OpenAI SDKs) reuses a pooled
connection for up to 5 s after its last read, so a server that closes idle connections at 5 s races
with it, and a loaded machine turns the race into ECONNRESET for the client."""

from __future__ import annotations

import socket
import time

import httpx

from gateway.settings import Settings

REQUEST = b"GET /health HTTP/1.1\r\nHost: gateway\r\n\r\n"


def _response(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, "the gateway closed the connection"
        data += chunk
    return data


def test_an_idle_connection_outlives_the_client_keep_alive_expiry(make_gateway):
    client_expiry = httpx.Limits().keepalive_expiry
    assert client_expiry < Settings().client_keepalive_s
    gw = make_gateway()
    with socket.create_connection(("127.0.0.1", gw.port), timeout=30) as sock:
        sock.sendall(REQUEST)
        assert _response(sock).startswith(b"HTTP/1.1 200")
        time.sleep(client_expiry + 1)  # idle longer than any httpx client would keep it
        sock.sendall(REQUEST)
        assert _response(sock).startswith(b"HTTP/1.1 200")
