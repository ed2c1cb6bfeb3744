"""Client connections: keep-alive, pipelining and WebSocket tunnels."""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import struct
import time

import pytest

from conftest import (
    endpoint_slice,
    ingress,
    is_closed,
    path_rule,
    raw_connect,
    read_response,
    service,
    timeout,
)


@pytest.fixture(scope="module")
def proxy(module_env):
    env = module_env
    e = env.echo("conn")
    env.write("apps.yaml", service("conn"), endpoint_slice("conn", e.port, [e.endpoint()]))
    env.write("ingress.yaml", ingress("conn", [("conn.test", [path_rule("/", "conn")])]))
    return env.kedge()


# --------------------------------------------------------------------------------------------
# Keep-alive


def test_keep_alive_reuses_connection(proxy):
    before = proxy.metric("kedge_accepted_connections_total")
    c = proxy.connection()
    try:
        c.connect()
        local = c.sock.getsockname()
        for i in range(5):
            c.request("GET", f"/ka/{i}", headers={"Host": "conn.test"})
            r = c.getresponse()
            body = r.read()
            assert r.status == 200
            assert r.headers.get("Connection", "").lower() != "close"
            assert f"/ka/{i}".encode() in body
            assert c.sock is not None and c.sock.getsockname() == local, "reconnected"
    finally:
        c.close()
    after = proxy.metric("kedge_accepted_connections_total")
    # The same local address throughout shows the reuse; the counter shows kedge saw it too
    # (a slow build may still count a connection an earlier test closed before its accept).
    assert after - before >= 1


def test_connection_close_is_honoured(proxy):
    s = raw_connect(proxy.http_port)
    with s, s.makefile("rb") as f:
        s.sendall(b"GET /bye HTTP/1.1\r\nHost: conn.test\r\nConnection: close\r\n\r\n")
        r = read_response(f)
        assert r.status == 200
        assert (r.header("connection") or "").lower() == "close"
        assert f.read() == b""  # and closed


def test_http10_client(proxy):
    s = raw_connect(proxy.http_port)
    with s, s.makefile("rb") as f:
        s.sendall(b"GET /old HTTP/1.0\r\nHost: conn.test\r\n\r\n")
        r = read_response(f)
        assert r.status == 200
        assert r.json()["path"] == "/old"
        assert f.read() == b""  # HTTP/1.0 without keep-alive: closed after the response


def test_pipelined_requests_answered_in_order(proxy):
    s = raw_connect(proxy.http_port)
    with s, s.makefile("rb") as f:
        # The first one is slowest: answers must still come back in request order.
        reqs = b"".join(
            b"GET /pipe/%d?delay_ms=%d HTTP/1.1\r\nHost: conn.test\r\n\r\n" % (i, d)
            for i, d in enumerate([300, 100, 0, 0]))
        reqs += b"POST /pipe/4 HTTP/1.1\r\nHost: conn.test\r\nContent-Length: 5\r\n\r\nhello"
        reqs += b"GET /pipe/5 HTTP/1.1\r\nHost: conn.test\r\nConnection: close\r\n\r\n"
        s.sendall(reqs)
        paths = []
        for _ in range(6):
            r = read_response(f)
            assert r.status == 200, r
            paths.append(r.json()["path"].split("?")[0])
        assert paths == [f"/pipe/{i}" for i in range(6)]
        assert f.read() == b""


def test_pipelined_with_404_in_between(proxy):
    s = raw_connect(proxy.http_port)
    with s, s.makefile("rb") as f:
        s.sendall(b"GET /a HTTP/1.1\r\nHost: conn.test\r\n\r\n"
                  b"GET /b HTTP/1.1\r\nHost: nowhere.test\r\n\r\n"
                  b"GET /c HTTP/1.1\r\nHost: conn.test\r\n\r\n")
        a, b, c = read_response(f), read_response(f), read_response(f)
    assert (a.status, b.status, c.status) == (200, 404, 200)
    assert a.json()["path"] == "/a" and c.json()["path"] == "/c"


def test_head_request(proxy):
    s = raw_connect(proxy.http_port)
    with s, s.makefile("rb") as f:
        s.sendall(b"HEAD /h?bytes=1000 HTTP/1.1\r\nHost: conn.test\r\n\r\n"
                  b"GET /after HTTP/1.1\r\nHost: conn.test\r\n\r\n")
        h = read_response(f, head_request=True)
        assert h.status == 200 and h.header("content-length") == "1000"
        g = read_response(f)
        assert g.status == 200 and g.json()["path"] == "/after"


# --------------------------------------------------------------------------------------------
# WebSocket


class WebSocket:
    """A minimal RFC 6455 client on a raw socket."""

    def __init__(self, port: int, host: str, path: str = "/ws"):
        self.sock = raw_connect(port)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\n\r\n".encode())
        self.file = self.sock.makefile("rb")
        self.response = read_response(self.file)
        expected = base64.b64encode(hashlib.sha1(
            (key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
        self.accept_ok = self.response.header("sec-websocket-accept") == expected

    def send(self, opcode: int, payload: bytes, fin: bool = True) -> None:
        mask = os.urandom(4)
        head = bytes([(0x80 if fin else 0) | opcode])
        n = len(payload)
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 65536:
            head += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack("!Q", n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(head + mask + masked)

    def _read(self, n: int) -> bytes:
        data = self.file.read(n)
        if len(data) != n:
            raise EOFError("connection closed mid-frame")
        return data

    def recv(self) -> tuple[int, bool, bytes]:
        b0, b1 = self._read(2)
        assert not (b1 & 0x80), "server frames must not be masked"
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self._read(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._read(8))[0]
        return b0 & 0x0F, bool(b0 & 0x80), self._read(n)

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def test_websocket_echo(proxy):
    ws = WebSocket(proxy.http_port, "conn.test")
    try:
        assert ws.response.status == 101, ws.response
        assert (ws.response.header("upgrade") or "").lower() == "websocket"
        assert "upgrade" in (ws.response.header("connection") or "").lower()
        assert ws.accept_ok
        assert ws.response.header("x-echo-pod") == "conn-pod"

        ws.send(0x1, "héllo kedge".encode())
        assert ws.recv() == (0x1, True, "héllo kedge".encode())

        binary = bytes(range(256)) * 3
        ws.send(0x2, binary)
        assert ws.recv() == (0x2, True, binary)

        big = os.urandom(70000)  # 64-bit length form
        ws.send(0x2, big)
        assert ws.recv() == (0x2, True, big)

        ws.send(0x9, b"are you there")
        assert ws.recv() == (0xA, True, b"are you there")

        ws.send(0x8, struct.pack("!H", 1000) + b"done")
        op, fin, payload = ws.recv()
        assert op == 0x8 and payload[:2] == struct.pack("!H", 1000)
        # After the close handshake the tunnel ends.
        assert is_closed(ws.sock)
    finally:
        ws.close()


def test_websocket_many_small_frames(proxy):
    ws = WebSocket(proxy.http_port, "conn.test")
    try:
        assert ws.response.status == 101
        msgs = [f"m{i}".encode() for i in range(200)]
        for m in msgs:
            ws.send(0x1, m)
        got = [ws.recv()[2] for _ in msgs]
        assert got == msgs
    finally:
        ws.close()


def test_websocket_to_unknown_host_is_404(proxy):
    ws = WebSocket(proxy.http_port, "nowhere.test")
    try:
        assert ws.response.status == 404
    finally:
        ws.close()


def test_websocket_tunnel_closes_when_backend_closes(proxy):
    ws = WebSocket(proxy.http_port, "conn.test")
    try:
        assert ws.response.status == 101
        ws.sock.shutdown(socket.SHUT_WR)  # client half-closes: echo ends, kedge closes
        ws.sock.settimeout(timeout(5))
        assert ws.file.read() == b""
    finally:
        ws.close()


def test_idle_keepalive_connection_closed_silently(env):
    e = env.echo("idle")
    env.write("apps.yaml", service("idle"), endpoint_slice("idle", e.port, [e.endpoint()]))
    env.write("ingress.yaml", ingress("idle", [("idle.test", [path_rule("/", "idle")])]))
    k = env.kedge("--keepalive-timeout", "1500", "--client-header-timeout", "100")
    s = raw_connect(k.http_port)
    with s, s.makefile("rb") as f:
        s.sendall(b"GET / HTTP/1.1\r\nHost: idle.test\r\n\r\n")
        assert read_response(f).status == 200
        # Idle past the header timeout: still open, no 408 for a request that never started.
        s.settimeout(0.4)
        with pytest.raises(socket.timeout):
            s.recv(1)
        s.sendall(b"GET /2 HTTP/1.1\r\nHost: idle.test\r\n\r\n")
        assert read_response(f).status == 200
        # Past the keep-alive timeout the connection closes without an answer.
        t0 = time.monotonic()
        s.settimeout(timeout(5))
        assert f.read() == b""
        assert time.monotonic() - t0 >= 1.0


def test_http10_keep_alive(proxy):
    s = raw_connect(proxy.http_port)
    with s, s.makefile("rb") as f:
        for i in range(3):
            s.sendall(b"GET /ka10/%d HTTP/1.0\r\nHost: conn.test\r\nConnection: keep-alive\r\n\r\n"
                      % i)
            r = read_response(f)
            assert r.status == 200 and r.json()["path"] == f"/ka10/{i}"
            assert (r.header("connection") or "").lower() == "keep-alive"


def test_pipelined_after_chunked_body(proxy):
    s = raw_connect(proxy.http_port)
    with s, s.makefile("rb") as f:
        s.sendall(b"POST /first HTTP/1.1\r\nHost: conn.test\r\nTransfer-Encoding: chunked\r\n\r\n"
                  b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
                  b"GET /second HTTP/1.1\r\nHost: conn.test\r\n\r\n")
        a, b = read_response(f), read_response(f)
    assert a.status == 200 and a.json()["body_bytes"] == 11
    assert a.json()["body_sha256"] == hashlib.sha256(b"hello world").hexdigest()
    assert b.status == 200 and b.json()["path"] == "/second"


def test_websocket_frame_sent_with_the_handshake(proxy):
    """Bytes that follow the upgrade request in the same packet belong to the tunnel."""
    s = raw_connect(proxy.http_port)
    key = base64.b64encode(os.urandom(16))
    mask = os.urandom(4)
    payload = b"early bird"
    frame = bytes([0x81, 0x80 | len(payload)]) + mask + bytes(
        c ^ mask[i % 4] for i, c in enumerate(payload))
    with s, s.makefile("rb") as f:
        s.sendall(b"GET /ws HTTP/1.1\r\nHost: conn.test\r\nUpgrade: websocket\r\n"
                  b"Connection: Upgrade\r\nSec-WebSocket-Key: " + key +
                  b"\r\nSec-WebSocket-Version: 13\r\n\r\n" + frame)
        r = read_response(f)
        assert r.status == 101
        assert f.read(2) == bytes([0x81, len(payload)])
        assert f.read(len(payload)) == payload


def test_websocket_idle_tunnel_closed_after_read_timeout(env):
    e = env.echo("wsidle")
    env.write("apps.yaml", service("wsidle"), endpoint_slice("wsidle", e.port, [e.endpoint()]))
    env.write("ingress.yaml", ingress("wsidle", [("ws.test", [path_rule("/", "wsidle")])]))
    k = env.kedge("--upstream-read-timeout", "600")
    ws = WebSocket(k.http_port, "ws.test")
    try:
        assert ws.response.status == 101
        # Active for longer than the timeout: stays open.
        t0 = time.monotonic()
        for i in range(100):
            ws.send(0x1, b"tick %d" % i)
            assert ws.recv() == (0x1, True, b"tick %d" % i)
            if time.monotonic() - t0 > 1.5:
                break
            ws.sock.settimeout(0.2)
            with pytest.raises(socket.timeout):
                ws.sock.recv(1, socket.MSG_PEEK)  # paces the loop, nothing to read
            ws.sock.settimeout(timeout(10))
        assert time.monotonic() - t0 > 1.5
        # Idle: kedge closes the tunnel.
        t1 = time.monotonic()
        assert ws.file.read() == b""
        assert time.monotonic() - t1 >= 0.5
    finally:
        ws.close()


def clients_at_once(k, clients: int, requests: int, one) -> tuple[list[str], list[int]]:
    """`clients` keep-alive clients of kedge `k` at once, each on its own connection, each
    calling `one(conn, client, i)` for i in range(requests); `one` returns what went wrong, or
    None. Returns the problems and the clients that finished."""
    import threading
    errors: list[str] = []
    done: list[int] = []

    def client(n: int) -> None:
        c = k.connection()
        try:
            for i in range(requests):
                if (problem := one(c, n, i)) is not None:
                    errors.append(problem)
            done.append(n)
        except Exception as ex:  # noqa: BLE001
            errors.append(f"client {n}: {ex!r}")
        finally:
            c.close()

    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout(60))
    return errors, done


def test_concurrent_clients_get_their_own_answers(proxy):
    """Many keep-alive clients at once: every answer belongs to its request."""
    def one(c, n: int, i: int) -> str | None:
        path = f"/c{n}/r{i}?delay_ms={i % 3}"
        r = proxy.request("conn.test", path, conn=c)
        return None if r.status == 200 and r.json()["path"] == path else f"{path}: {r!r}"

    errors, done = clients_at_once(proxy, 20, 25, one)
    assert errors == [], errors[:5]
    assert sorted(done) == list(range(20))


@pytest.mark.parametrize("uring", ["true", "false"])
def test_batched_and_unbatched_socket_calls_serve_alike(env, uring):
    """With --io-uring (the default) a worker batches each round's sends and receives; without
    it, or where the kernel refuses io_uring, it makes them one by one. Both serve the same:
    many keep-alive clients at once, bodies larger than a socket takes in one send both ways."""
    e = env.echo("both")
    env.write("apps.yaml", service("both"), endpoint_slice("both", e.port, [e.endpoint()]))
    env.write("ingress.yaml", ingress("both", [("both.test", [path_rule("/", "both")])]))
    k = env.kedge("--io-uring", uring, "--max-body-bytes", "0", workers=1)
    log = k.proc.log_path.read_text(errors="replace")
    batched = "batched through io_uring" in log
    if uring == "false":
        assert not batched and "refused io_uring" not in log, log
    else:
        assert batched or "refused io_uring" in log, log
    body = hashlib.sha256(b"both").digest() * 20000  # 640 KB
    digest = hashlib.sha256(body).hexdigest()

    def one(c, n: int, i: int) -> str | None:
        path = f"/u{n}/r{i}"
        if i % 5 == 4:
            r = k.request("both.test", path, method="POST", body=body, conn=c)
            ok = r.status == 200 and r.json()["body_sha256"] == digest
        elif i % 5 == 3:
            r = k.request("both.test", f"{path}?bytes=300000", conn=c)
            ok = r.status == 200 and len(r.body) == 300000
        else:
            r = k.request("both.test", path, conn=c)
            ok = r.status == 200 and r.json()["path"] == path
        return None if ok else f"{path}: {r!r}"

    errors, _ = clients_at_once(k, 12, 20, one)
    assert errors == [], errors[:5]
