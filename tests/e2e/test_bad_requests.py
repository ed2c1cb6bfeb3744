"""Malformed and abusive requests on raw sockets: kedge answers with the right status and,
where the framing cannot be trusted any more, closes the connection."""

from __future__ import annotations

import socket
import time

import pytest

from conftest import (
    endpoint_slice,
    ingress,
    is_closed,
    parse_status,
    path_rule,
    raw_connect,
    read_response,
    read_until_closed,
    service,
    timeout,
)

HEADER_TIMEOUT_MS = 500
MAX_HEADER_BYTES = 4096


@pytest.fixture(scope="module")
def proxy(module_env):
    env = module_env
    e = env.echo("bad")
    env.write("apps.yaml", service("bad"), endpoint_slice("bad", e.port, [e.endpoint()]))
    env.write("ingress.yaml", ingress("bad", [("bad.test", [path_rule("/", "bad")])]))
    return env.kedge("--client-header-timeout", str(HEADER_TIMEOUT_MS),
                     "--max-header-bytes", str(MAX_HEADER_BYTES))


def exchange(proxy, data: bytes) -> tuple[int, bool]:
    """Sends raw bytes; returns the status of the answer and whether kedge then closed."""
    s = raw_connect(proxy.http_port)
    with s, s.makefile("rb") as f:
        s.sendall(data)
        r = read_response(f)
        closed = is_closed(s)
    return r.status, closed


def test_good_request_keeps_connection(proxy):
    s = raw_connect(proxy.http_port)
    with s, s.makefile("rb") as f:
        s.sendall(b"GET / HTTP/1.1\r\nHost: bad.test\r\n\r\n")
        assert read_response(f).status == 200
        s.sendall(b"GET /2 HTTP/1.1\r\nHost: bad.test\r\n\r\n")
        assert read_response(f).status == 200


@pytest.mark.parametrize("line", [
    b"GARBAGE\r\n\r\n",
    b"GET\r\nHost: bad.test\r\n\r\n",
    b"GET / HTTP/9.9\r\nHost: bad.test\r\n\r\n",
    b"G@T / HTTP/1.1\r\nHost: bad.test\r\n\r\n",
    b"GET / HTTP/1.1 extra\r\nHost: bad.test\r\n\r\n",
])
def test_malformed_request_line_is_400_and_closes(proxy, line):
    s = raw_connect(proxy.http_port)
    with s:
        s.sendall(line)
        s.settimeout(timeout(5))
        raw = read_until_closed(s)  # the answer, then EOF: kedge closed
    assert parse_status(raw) == 400, raw


def test_content_length_and_transfer_encoding_is_400(proxy):
    status, closed = exchange(
        proxy, b"POST / HTTP/1.1\r\nHost: bad.test\r\nContent-Length: 5\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
    assert status == 400
    assert closed


def test_two_different_content_lengths_is_400(proxy):
    status, closed = exchange(
        proxy, b"POST / HTTP/1.1\r\nHost: bad.test\r\nContent-Length: 5\r\nContent-Length: 6\r\n"
               b"\r\nhello!")
    assert status == 400
    assert closed


def test_header_block_too_large_is_431(proxy):
    big = b"X-Big: " + b"a" * (MAX_HEADER_BYTES * 2) + b"\r\n"
    status, closed = exchange(proxy, b"GET / HTTP/1.1\r\nHost: bad.test\r\n" + big + b"\r\n")
    assert status == 431
    assert closed
    # Many small fields add up too.
    many = b"".join(b"X-F%d: %s\r\n" % (i, b"v" * 40) for i in range(200))
    status, closed = exchange(proxy, b"GET / HTTP/1.1\r\nHost: bad.test\r\n" + many + b"\r\n")
    assert status == 431
    # Just under the limit is fine.
    ok = b"X-Ok: " + b"b" * (MAX_HEADER_BYTES // 2) + b"\r\n"
    status, _ = exchange(proxy, b"GET / HTTP/1.1\r\nHost: bad.test\r\n" + ok
                         + b"Connection: close\r\n\r\n")
    assert status == 200


def test_missing_host_on_http11_is_400(proxy):
    status, closed = exchange(proxy, b"GET / HTTP/1.1\r\nAccept: */*\r\n\r\n")
    assert status == 400
    assert closed


def test_two_host_fields_is_400(proxy):
    status, closed = exchange(proxy, b"GET / HTTP/1.1\r\nHost: bad.test\r\nHost: other.test\r\n\r\n")
    assert status == 400
    assert closed


def test_invalid_chunk_size_is_400(proxy):
    status, closed = exchange(
        proxy, b"POST / HTTP/1.1\r\nHost: bad.test\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"zz\r\nhello\r\n0\r\n\r\n")
    assert status == 400
    assert closed


def test_partial_head_times_out_with_408(proxy):
    s = raw_connect(proxy.http_port)
    with s:
        t0 = time.monotonic()
        s.sendall(b"GET / HTTP/1.1\r\nHost: bad.te")
        s.settimeout(timeout(10))
        raw = read_until_closed(s)
        elapsed = time.monotonic() - t0
    assert parse_status(raw) == 408, raw
    assert elapsed >= HEADER_TIMEOUT_MS / 1000 * 0.9
    assert elapsed < timeout(5)


def test_slow_but_steady_head_still_times_out(proxy):
    """The header timeout covers the whole head, not the gap between two reads."""
    s = raw_connect(proxy.http_port)
    with s:
        t0 = time.monotonic()
        s.sendall(b"GET / HTTP/1.1\r\n")
        got = b""
        s.settimeout(0.1)
        for i in range(100):
            try:
                s.sendall(b"X-Drip-%d: y\r\n" % i)
            except (BrokenPipeError, ConnectionResetError):
                break
            try:
                got = s.recv(65536)
                if got:
                    break
            except socket.timeout:
                pass
            if time.monotonic() - t0 > timeout(10):
                break
        elapsed = time.monotonic() - t0
    assert got and parse_status(got) == 408, got
    assert elapsed < timeout(5)


def test_unknown_transfer_encoding_is_rejected(proxy):
    status, closed = exchange(
        proxy, b"POST / HTTP/1.1\r\nHost: bad.test\r\nTransfer-Encoding: gzip\r\n\r\nxxxx")
    assert status in (400, 501)
    assert closed


def test_connect_method_is_rejected(proxy):
    status, closed = exchange(proxy, b"CONNECT bad.test:443 HTTP/1.1\r\nHost: bad.test:443\r\n\r\n")
    assert status in (400, 405)
    assert closed


def test_idle_connection_without_bytes_is_not_408(proxy):
    """A kept-alive connection that sends nothing is closed quietly at the keep-alive timeout,
    not answered; here it is simply still open after the header timeout passed."""
    s = raw_connect(proxy.http_port)
    with s:
        s.settimeout(HEADER_TIMEOUT_MS / 1000 * 2)
        try:
            data = s.recv(1024)
        except socket.timeout:
            data = None
        assert data is None, data
        s.sendall(b"GET /late HTTP/1.1\r\nHost: bad.test\r\n\r\n")
        with s.makefile("rb") as f:
            assert read_response(f).status == 200


def test_request_target_too_long_is_414(proxy):
    status, closed = exchange(
        proxy, b"GET /" + b"a" * (MAX_HEADER_BYTES * 2) + b" HTTP/1.1\r\nHost: bad.test\r\n\r\n")
    assert status in (414, 431)
    assert closed
