"""The gateway outlasts its clients' idle connections: httpx (and so the OpenAI SDKs) reuses a pooled
connection for up to 5 s after its last read, so a server that closes idle connections at 5 s races
with it, and a loaded machine turns the race into ECONNRESET for the client."""

from __future__ import annotations

import re
import socket
import time

import httpx

from gateway.settings import Settings

REQUEST = b"GET /health HTTP/1.1\r\nHost: gateway\r\n\r\n"


def _response(sock: socket.socket) -> bytes:
    """One whole response: its head, and exactly its content-length of body read off the socket (a body
    left unread, when it came in a later packet than the head, would be taken for the next response)."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += _received(sock)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"^content-length: (\d+)", head, re.I | re.M)[1])
    while len(body) < length:
        body += _received(sock)
    assert len(body) == length, "more bytes than one response"
    return head


def _received(sock: socket.socket) -> bytes:
    chunk = sock.recv(65536)
    assert chunk, "the gateway closed the connection"
    return chunk


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
