"""Limits on slow and oversized clients, against a real `thrifty serve` process over real sockets.

The gateway here runs with 1 s header, body and keep-alive timeouts; each test waits for an
outcome (a response, a closed socket) with a generous bound instead of timing anything.
"""

from __future__ import annotations

import selectors
import socket
import time

import httpx
import pytest

from tests.conftest import start_stack
from tests.ledger_util import wait_row

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def slow(tmp_path_factory):
    def edit(config):
        config["server"].update(header_timeout_s=1.0, body_timeout_s=1.0, keep_alive_timeout_s=1.0)

    s = start_stack(tmp_path_factory.mktemp("limits"), edit=edit, timeout_s=3.0)
    yield s
    s.gateway.stop()
    s.emulator.stop()


def connect(stack) -> socket.socket:
    return socket.create_connection(("127.0.0.1", stack.gateway.port), timeout=10)


def read_until_closed(sock: socket.socket, bound: float = 10.0) -> bytes:
    """Everything the server sends until it closes the connection (fails after `bound` s)."""
    sock.settimeout(bound)
    out = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return out
        out += chunk


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def test_slowloris_connections_are_answered_408_and_closed(slow):
    # 100 clients that send a request line and one header, then nothing more.
    socks = []
    for _ in range(100):
        s = connect(slow)
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n")
        socks.append(s)
    sel = selectors.DefaultSelector()
    for s in socks:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, bytearray())
    open_socks = set(socks)
    answers: list[bytes] = []
    deadline = time.monotonic() + 15
    while open_socks and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=1):
            chunk = key.fileobj.recv(65536)
            if chunk:
                key.data.extend(chunk)
            else:
                sel.unregister(key.fileobj)
                open_socks.discard(key.fileobj)
                answers.append(bytes(key.data))
    assert not open_socks, f"{len(open_socks)} of 100 slow connections still open"
    assert len(answers) == 100 and all(status_of(a) == 408 for a in answers)
    sel.close()
    for s in socks:
        s.close()
    # The gateway is still serving.
    r = httpx.post(f"{slow.url}/v1/chat/completions", json=CHAT, headers={"authorization": f"Bearer {slow.key}"})
    assert r.status_code == 200


def test_slow_headers_get_a_408_in_openai_shape(slow):
    s = connect(slow)
    s.sendall(b"GET /v1/models HTTP/1.1\r\nhost: x\r\n")
    raw = read_until_closed(s)
    assert status_of(raw) == 408 and b"connection: close" in raw
    body = raw.split(b"\r\n\r\n", 1)[1]
    assert httpx.Response(408, content=body).json()["error"]["code"] == "request_timeout"


def test_a_connection_that_sends_nothing_is_closed(slow):
    assert read_until_closed(connect(slow)) == b""


def test_an_idle_keep_alive_connection_is_closed(slow):
    s = connect(slow)
    s.sendall(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
    raw = read_until_closed(s)  # answered, then closed after keep_alive_timeout_s
    assert status_of(raw) == 200 and raw.endswith(b'{"status":"ok"}')


def test_a_slow_body_gets_408_and_the_connection_is_closed(slow):
    s = connect(slow)
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer " + slow.key.encode()
              + b"\r\ncontent-type: application/json\r\ncontent-length: 500\r\n\r\n{\"model\":")
    raw = read_until_closed(s)
    assert status_of(raw) == 408
    rid = next(line.split(b": ", 1)[1] for line in raw.split(b"\r\n") if line.startswith(b"x-thrifty-request-id"))
    row = wait_row(slow.ledger_path, rid.decode())
    assert row.status == 408 and row.error_type == "invalid_request"


def test_one_oversized_header_gets_431_naming_it(slow):
    r = httpx.post(f"{slow.url}/v1/chat/completions", json=CHAT,
                   headers={"authorization": f"Bearer {slow.key}", "x-thrifty-feature": "f" * 20_000})
    err = r.json()["error"]
    assert r.status_code == 431 and err["param"] == "x-thrifty-feature" and "max_header_value_bytes" in err["message"]


def test_an_8_mb_header_is_refused_before_it_is_read_whole(slow):
    r = httpx.post(f"{slow.url}/v1/chat/completions", json=CHAT,
                   headers={"authorization": f"Bearer {slow.key}", "x-thrifty-feature": "f" * (8 * 1024 * 1024)})
    assert r.status_code == 431 and "max_header_bytes" in r.json()["error"]["message"]


def test_too_many_header_bytes_get_431_in_anthropic_shape(slow):
    many = {f"x-extra-{i}": "v" * 4000 for i in range(12)}
    r = httpx.post(f"{slow.url}/v1/messages", json=CHAT, headers={"x-api-key": slow.key, **many})
    assert r.status_code == 431
    body = r.json()
    assert body["type"] == "error" and "max_header_bytes" in body["error"]["message"]


def test_an_endless_header_is_cut_off_at_the_limit(slow):
    # A header value that never ends: refused once the bytes exceed the limit, not buffered.
    s = connect(slow)
    s.sendall(b"GET /v1/models HTTP/1.1\r\nhost: x\r\nx-endless: ")
    try:
        for _ in range(64):  # 64 x 1 KiB, twice the default 32 KiB limit
            s.sendall(b"a" * 1024)
    except (BrokenPipeError, ConnectionResetError):
        pass
    raw = read_until_closed(s)
    assert status_of(raw) == 431


def test_a_long_attribution_header_is_refused_and_the_row_keeps_a_prefix(slow):
    r = httpx.post(f"{slow.url}/v1/chat/completions", json=CHAT,
                   headers={"authorization": f"Bearer {slow.key}", "x-thrifty-task": "t" * 300})
    err = r.json()["error"]
    assert r.status_code == 400 and err["param"] == "x-thrifty-task" and "256" in err["message"]
    row = wait_row(slow.ledger_path, r.headers["x-thrifty-request-id"])
    assert row.status == 400 and row.task == "t" * 256
    ok = httpx.post(f"{slow.url}/v1/chat/completions", json=CHAT,
                    headers={"authorization": f"Bearer {slow.key}", "x-thrifty-task": "t" * 256})
    assert ok.status_code == 200
