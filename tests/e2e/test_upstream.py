"""Upstream behaviour kedge echo does not produce, from a scripted Python backend: chunked and
close-delimited responses, truncation, invalid responses, 1xx, response hop-by-hop fields,
connection reuse and retries."""

from __future__ import annotations

import time

import pytest

from conftest import (
    RawBackend,
    endpoint_slice,
    free_port,
    ingress,
    path_rule,
    raw_connect,
    read_response,
    read_until_closed,
    service,
    timeout,
)


@pytest.fixture
def backends():
    started: list[RawBackend] = []

    def start(handler, ip: str = "127.0.0.1", port: int = 0) -> RawBackend:
        b = RawBackend(handler, ip, port)
        started.append(b)
        return b
    yield start
    for b in started:
        b.close()


def serve_raw(env, *bs: RawBackend, workers: int = 1):
    port = bs[0].port
    assert all(b.port == port for b in bs)
    env.write("apps.yaml", service("raw"), endpoint_slice(
        "raw", port, [{"addresses": [b.ip], "targetRef": {"kind": "Pod", "name": f"raw-{i}"}}
                      for i, b in enumerate(bs)]))
    env.write("ingress.yaml", ingress("raw", [("raw.test", [path_rule("/", "raw")])]))
    return env.kedge(workers=workers)


def reply(data: bytes):
    def handler(sock, head):
        sock.sendall(data)
    return handler


CHUNKED = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n"
           b"6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n")


def test_chunked_response_to_http11_client(env, backends):
    k = serve_raw(env, backends(reply(CHUNKED)))
    c = k.connection()
    try:
        for _ in range(2):  # and the connection stays usable
            c.request("GET", "/chunked", headers={"Host": "raw.test"})
            r = c.getresponse()
            assert r.status == 200
            assert r.headers["Transfer-Encoding"] == "chunked"
            assert r.read() == b"hello world"
    finally:
        c.close()


LONG = bytes(range(256)) * 4096  # 1 MiB, every byte value: longer than any one read


def long_reply(head: bytes, body: bytes, after: bytes = b""):
    """The head first, the body a moment later (so it is not read with the head), then `after`."""
    def handler(sock, _):
        sock.sendall(head)
        time.sleep(0.05)
        sock.sendall(body + after)
    return handler


def get_long_bodies(k, n: int) -> None:
    """`n` requests on one client connection, each answered with LONG."""
    c = k.connection()
    try:
        for i in range(n):
            r = k.request("raw.test", f"/{i}", conn=c)
            assert r.status == 200
            assert r.body == LONG
    finally:
        c.close()


def test_long_body_arrives_whole_and_the_connection_serves_the_next(env, backends):
    b = backends(long_reply(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(LONG), LONG))
    get_long_bodies(serve_raw(env, b), 3)
    assert b.connections == 1, "the upstream connection was not pooled after a long body"


def test_long_chunked_body_keeps_its_framing(env, backends):
    pieces = [LONG[i:i + 100_000] for i in range(0, len(LONG), 100_000)]
    framed = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
    b = backends(long_reply(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", framed))
    k = serve_raw(env, b)
    s = raw_connect(k.http_port)
    with s:
        f = s.makefile("rb")
        for _ in range(2):
            s.sendall(b"GET /chunks HTTP/1.1\r\nHost: raw.test\r\n\r\n")
            status = f.readline()
            assert status.startswith(b"HTTP/1.1 200"), status
            for _ in range(100):
                if f.readline() == b"\r\n":
                    break
            assert f.read(len(framed)) == framed  # chunk for chunk, as the upstream sent it
    assert b.connections == 1


def test_bytes_past_a_long_body_do_not_reach_the_next_request(env, backends):
    """An upstream that sends more than its response said: the response ends where its length
    says, and the connection, holding bytes no request asked for, is not used again."""
    junk = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstale"
    b = backends(long_reply(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(LONG), LONG,
                            after=junk))
    get_long_bodies(serve_raw(env, b), 2)
    assert b.connections == 2


def test_long_body_delimited_by_close(env, backends):
    def until_close(sock, _):
        sock.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
        time.sleep(0.05)
        sock.sendall(LONG)
        return False  # closes: the end of the body
    k = serve_raw(env, backends(until_close))
    r = k.request("raw.test", "/eof")
    assert r.status == 200
    assert r.body == LONG


def test_chunked_response_decoded_for_http10_client(env, backends):
    k = serve_raw(env, backends(reply(CHUNKED)))
    s = raw_connect(k.http_port)
    with s:
        s.sendall(b"GET /old HTTP/1.0\r\nHost: raw.test\r\n\r\n")
        raw = read_until_closed(s)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), raw
    assert b"transfer-encoding" not in head.lower()
    assert body == b"hello world"


def test_close_delimited_response(env, backends):
    def handler(sock, head):
        sock.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end")
        return False  # close
    k = serve_raw(env, backends(handler))
    s = raw_connect(k.http_port)
    with s, s.makefile("rb") as f:
        s.sendall(b"GET / HTTP/1.1\r\nHost: raw.test\r\n\r\n")
        r = read_response(f)  # no length: read until close
    assert r.status == 200
    assert r.body == b"until the end"
    assert (r.header("connection") or "").lower() == "close"


def test_truncated_response_is_visible_to_client(env, backends):
    def handler(sock, head):
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 500)
        return False
    k = serve_raw(env, backends(handler))
    s = raw_connect(k.http_port)
    with s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: raw.test\r\n\r\n")
        s.settimeout(timeout(10))
        raw = read_until_closed(s)  # kedge must close, not wait or pad
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"Content-Length: 1000" in head
    assert len(body) == 500


def test_invalid_response_is_502(env, backends):
    k = serve_raw(env, backends(reply(b"this is not HTTP\r\n\r\n")))
    assert k.request("raw.test", "/").status == 502


def test_early_hints_pass_through(env, backends):
    k = serve_raw(env, backends(reply(
        b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")))
    s = raw_connect(k.http_port)
    with s, s.makefile("rb") as f:
        s.sendall(b"GET / HTTP/1.1\r\nHost: raw.test\r\nConnection: close\r\n\r\n")
        raw = f.read()
    assert raw.startswith(b"HTTP/1.1 103"), raw
    assert b"Link: </a.css>; rel=preload" in raw
    assert b"HTTP/1.1 200" in raw and raw.endswith(b"ok")


def test_response_hop_by_hop_fields_dropped(env, backends):
    k = serve_raw(env, backends(reply(
        b"HTTP/1.1 200 OK\r\nConnection: X-Secret\r\nX-Secret: 1\r\nKeep-Alive: timeout=1\r\n"
        b"Proxy-Connection: keep-alive\r\nX-Kept: yes\r\nContent-Length: 2\r\n\r\nok")))
    r = k.request("raw.test", "/")
    assert r.status == 200 and r.body == b"ok"
    assert r.headers["X-Kept"] == "yes"
    for name in ("X-Secret", "Keep-Alive", "Proxy-Connection"):
        assert name not in r.headers, r.headers
    assert "x-secret" not in (r.headers.get("Connection") or "").lower()


def test_upstream_connections_are_reused(env, backends):
    b = backends(reply(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
    k = serve_raw(env, b)
    for i in range(5):
        r = k.request("raw.test", f"/{i}")  # a new client connection each time
        assert r.status == 200
    assert len(b.requests) == 5
    assert b.connections == 1, "each request opened its own upstream connection"


def test_pooled_connection_closed_by_the_backend(env, backends):
    """A backend that closes each connection after one answer, without saying so: a bodiless
    request that finds its pooled connection closed is sent again on a new one, and a request
    with a body never goes out on a closed one."""
    def once(sock, head):
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        return False
    b = backends(once)
    k = serve_raw(env, b)
    sent = 0
    for i in range(3):
        for method, body in (("GET", None), ("POST", b"payload"), ("DELETE", None)):
            time.sleep(0.05)  # the backend's close has arrived
            r = k.request("raw.test", f"/{method}/{i}", method=method, body=body)
            assert r.status == 200 and r.body == b"ok", (method, i, r.status)
            sent += 1
    assert len(b.requests) == sent  # none went out twice, none was lost
    assert b.connections == sent


def test_idempotent_request_retried_on_another_endpoint(env, backends):
    """An endpoint that accepts and closes without answering: GETs are retried on the other
    endpoint; a POST, whose body went out, is not."""
    port = free_port("127.0.0.2", "127.0.0.3")

    def drop(sock, head):
        return False  # close without a response
    bad = backends(drop, "127.0.0.2", port)
    good = backends(reply(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ngood"), "127.0.0.3", port)
    k = serve_raw(env, bad, good)
    # POSTs first: three failures in a row would eject the endpoint (test_faults.py).
    statuses = [k.request("raw.test", "/post", method="POST", body=b"payload").status
                for _ in range(4)]
    assert 502 in statuses and 200 in statuses, statuses
    assert set(statuses) <= {200, 502}
    before = len(bad.requests)
    for i in range(6):
        r = k.request("raw.test", f"/get/{i}")
        assert r.status == 200 and r.body == b"good", r
    assert len(bad.requests) > before  # round robin sent some there first
