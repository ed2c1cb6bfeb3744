"""Faults around kedge: upstreams that never answer, reset mid-response, vanish while a request
body streams; a manifest folder with half-written, garbage, huge,
deleted and re-created files; SIGHUP. The client gets the right status or a cleanly cut stream,
other requests are unaffected, and the last good configuration keeps serving."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import struct
import subprocess
import threading
import time

import pytest

from conftest import (
    RawBackend,
    endpoint_slice,
    free_port,
    ingress,
    path_rule,
    poll,
    raw_connect,
    read_response,
    read_until_closed,
    service,
    timeout,
)
from test_tls import make_cert, tls_secret

READ_TIMEOUT_MS = 600


@pytest.fixture
def backends():
    started: list[RawBackend] = []

    def start(handler, **where) -> RawBackend:
        b = RawBackend(handler, **where)
        started.append(b)
        return b
    yield start
    for b in started:
        b.close()


def serve(env, raw: RawBackend, *flags: str, extra: list | None = None, workers: int = 2,
          read_timeout_ms: int = READ_TIMEOUT_MS, tls_dir=None):
    """raw.test → the raw backend (and `extra` endpoints on its port); good.test → echo. With
    `tls_dir`, raw.test is also served over HTTPS, on k.https_port."""
    good = env.echo("good")
    eps = [{"addresses": [raw.ip], "conditions": {"ready": True}}, *(extra or [])]
    secrets = [tls_secret("raw", *make_cert(tls_dir, "raw", ["raw.test"]))] if tls_dir else []
    env.write("apps.yaml",
              service("raw"), endpoint_slice("raw", raw.port, eps),
              service("good"), endpoint_slice("good", good.port, [good.endpoint()]), *secrets)
    ing = ingress("faults", [("raw.test", [path_rule("/", "raw")]),
                             ("good.test", [path_rule("/", "good")])],
                  annotations={"nginx.ingress.kubernetes.io/ssl-redirect": "false"})
    if tls_dir:
        ing["spec"]["tls"] = [{"hosts": ["raw.test"], "secretName": "raw"}]
        https_port = free_port()
        flags = (*flags, "--https-listen", f"127.0.0.1:{https_port}")
    env.write("ingress.yaml", ing)
    k = env.kedge("--upstream-read-timeout", str(read_timeout_ms), *flags, workers=workers)
    if tls_dir:
        k.https_port = https_port
    return k


def reset(sock: socket.socket) -> None:
    """Closes with RST instead of FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def test_upstream_that_never_answers_is_504_and_others_are_served(env, backends):
    release = threading.Event()

    def silent(sock, head):
        release.wait(timeout(10))
        return False
    k = serve(env, backends(silent))
    result = {}

    def slow():
        t0 = time.monotonic()
        result["status"] = k.request("raw.test", "/hang").status
        result["elapsed"] = time.monotonic() - t0
    t = threading.Thread(target=slow)
    t.start()
    try:
        for _ in range(5):  # meanwhile, other requests are served at once
            t0 = time.monotonic()
            assert k.service_of("good.test") == "good"
            assert time.monotonic() - t0 < timeout(1)
        t.join(timeout(10))
    finally:
        release.set()
    assert result["status"] == 504
    assert READ_TIMEOUT_MS / 1000 * 0.9 <= result["elapsed"] < timeout(5)


def test_upstream_reset_mid_response_cuts_the_stream(env, backends):
    def half_then_reset(sock, head):
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 1000)
        time.sleep(0.1)
        reset(sock)
        return False
    k = serve(env, backends(half_then_reset))
    s = raw_connect(k.http_port)
    with s:
        s.sendall(b"GET /cut HTTP/1.1\r\nHost: raw.test\r\n\r\n")
        data = bytearray()
        s.settimeout(timeout(5))
        for _ in range(1000):
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            data += chunk
    head, _, body = bytes(data).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), data[:200]
    assert b"content-length: 100000" in head.lower()
    assert 0 < len(body) < 100000, "the client must see the stream cut short"
    assert k.service_of("good.test") == "good"


def test_upstream_closing_before_any_answer_is_502(env, backends):
    def drop(sock, head):
        reset(sock)
        return False
    k = serve(env, backends(drop))
    r = k.request("raw.test", "/drop", method="POST", body=b"x")  # not retried: not idempotent
    assert r.status == 502, r
    assert k.service_of("good.test") == "good"


def test_upstream_vanishing_while_the_request_body_streams(env, backends):
    def take_some_then_reset(sock, head):
        sock.recv(65536)
        time.sleep(0.2)
        reset(sock)
        return False
    k = serve(env, backends(take_some_then_reset), "--max-body-bytes", "0")
    s = raw_connect(k.http_port)
    total = 8 << 20
    sent = [0]
    stop = threading.Event()

    def upload():
        chunk = b"u" * 65536
        try:
            for _ in range(total // len(chunk)):  # 8 MiB, 10 ms apart: more than 1.3 s
                if stop.is_set():
                    return
                s.sendall(chunk)
                sent[0] += len(chunk)
                time.sleep(0.01)
        except OSError:
            pass
    with s, s.makefile("rb") as f:
        s.sendall(b"POST /upload HTTP/1.1\r\nHost: raw.test\r\nContent-Length: %d\r\n\r\n" % total)
        uploader = threading.Thread(target=upload)
        uploader.start()
        try:
            r = read_response(f)
            at = sent[0]
        finally:
            stop.set()
            uploader.join(timeout(10))
    # kedge answers as soon as the backend is gone, while the body still streams, and closes the
    # connection (the rest of the body is read and dropped for a bounded time, as nginx's
    # lingering close, so the client can read the answer).
    assert r.status == 502, r
    assert r.header("connection") == "close"
    assert at < total, "the answer waited for the whole body"
    assert k.service_of("good.test") == "good"


def test_endpoint_that_accepts_and_drops_is_ejected(env, backends):
    raw = backends(lambda sock, head: reset(sock) or False)  # accepts, reads the head, resets
    other = env.echo("raw", pod="raw-other", ip="127.0.0.2", port=raw.port)
    k = serve(env, raw, extra=[other.endpoint()])
    statuses = [k.request("raw.test", f"/{i}").status for i in range(40)]
    # GET is retried on the other endpoint, so every request is answered...
    assert statuses == [200] * 40, statuses
    # ...and after 3 failures in a row a worker ejects the endpoint: without passive health
    # checks, round robin would have sent it about 20 of the 40 (two workers, 3 each, + slack).
    assert raw.connections <= 8, raw.connections


def test_clients_that_leave_count_against_no_endpoint(env, backends):
    """HTTP/2 clients that leave before their answer cancel the upstream attempts: that says
    nothing of the endpoint, which keeps its share of the traffic (it is not ejected)."""
    gate = threading.Event()

    def slow_or_quick(sock, head):
        if b" /slow " in head:
            gate.wait(timeout(5))
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nraw")
        return True
    raw = backends(slow_or_quick)
    other = env.echo("raw", pod="raw-other", ip="127.0.0.2", port=raw.port)
    k = serve(env, raw, extra=[other.endpoint()], workers=1)
    # 12 clients at once, each on a connection of its own, give up after 0.5 s: round robin
    # sends about 6 to the slow endpoint, each on a new upstream connection.
    url = f"http://{k.ip}:{k.http_port}/slow"
    clients = [subprocess.Popen(["curl", "-sS", "--noproxy", "*", "--http2-prior-knowledge",
                                 "--max-time", "0.5", "-H", "Host: raw.test", "-o", "/dev/null",
                                 url], stderr=subprocess.DEVNULL) for _ in range(12)]
    for c in clients:
        c.wait(timeout(10))
    slow_before = sum(b" /slow " in h for h in raw.requests)
    gate.set()
    # Ejected, the endpoint would get none of these for a second; it gets half.
    bodies = [k.request("raw.test", f"/{i}").body for i in range(20)]
    assert slow_before >= 3, raw.requests
    assert 5 <= bodies.count(b"raw") <= 15, bodies


def test_clients_that_leave_while_kedge_connects_blame_no_endpoint(env, backends):
    """An HTTP/2 client that leaves while kedge still connects to an endpoint that does not
    accept ends the attempt: no other endpoint is tried for nobody, and the hanging endpoint is
    not ejected."""
    raw = backends(lambda sock, head: sock.sendall(
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nraw") or True)
    # An endpoint whose accept queue is full: the kernel drops further SYNs, connects hang.
    full = socket.socket()
    full.bind(("127.0.0.3", raw.port))
    full.listen(0)
    fillers = []
    for _ in range(3):
        c = socket.socket()
        c.setblocking(False)
        c.connect_ex(("127.0.0.3", raw.port))
        fillers.append(c)
    try:
        k = serve(env, raw, extra=[{"addresses": ["127.0.0.3"], "conditions": {"ready": True}}],
                  workers=1)
        url = f"http://{k.ip}:{k.http_port}/gone"
        clients = [subprocess.Popen(["curl", "-sS", "--noproxy", "*", "--http2-prior-knowledge",
                                     "--max-time", "0.5", "-H", "Host: raw.test", "-o",
                                     "/dev/null", url], stderr=subprocess.DEVNULL)
                   for _ in range(12)]
        for c in clients:
            c.wait(timeout(10))
        time.sleep(0.3)
    finally:
        for c in fillers:
            c.close()
        full.close()
    # Round robin sent about half to each; those whose connect hung were not tried again.
    gone = sum(b" /gone " in h for h in raw.requests)
    assert 3 <= gone <= 8, raw.requests
    # The endpoint accepts now. Ejected, it would get none of these; it gets half.
    late = backends(lambda sock, head: sock.sendall(
        b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nlate") or True, ip="127.0.0.3",
        port=raw.port)
    bodies = [k.request("raw.test", f"/{i}").body for i in range(20)]
    assert 5 <= bodies.count(b"late") <= 15, bodies
    assert len(late.requests) == bodies.count(b"late")


@pytest.mark.parametrize("keep_alive,tls", [(False, False), (True, False), (True, True)],
                         ids=["first-request", "kept-alive", "tls"])
def test_http1_client_that_leaves_closes_the_upstream_connection(env, backends, tmp_path,
                                                                  keep_alive, tls):
    """An HTTP/1.1 client that closes while its request waits for the upstream abandons it, as
    nginx does: kedge closes the upstream connection at once (not when the upstream answers),
    counts a 499, and holds nothing against the endpoint."""
    upstream_closed = threading.Event()

    def hold_or_answer(sock, head):
        if b" /hold " in head:
            sock.settimeout(timeout(5))
            try:
                if sock.recv(1) == b"":
                    upstream_closed.set()
            except socket.timeout:
                pass
            except OSError:
                upstream_closed.set()  # a reset ends it too
            return False
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nraw")
        return True
    raw = backends(hold_or_answer)
    k = serve(env, raw, workers=1, read_timeout_ms=60_000, tls_dir=tmp_path if tls else None)
    c = raw_connect(k.https_port if tls else k.http_port)
    if tls:
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        c = ctx.wrap_socket(c, server_hostname="raw.test")
    f = c.makefile("rb")
    if keep_alive:
        c.sendall(b"GET /first HTTP/1.1\r\nHost: raw.test\r\n\r\n")
        assert read_response(f).body == b"raw"
    c.sendall(b"GET /hold HTTP/1.1\r\nHost: raw.test\r\n\r\n")
    poll(lambda: any(b" /hold " in h for h in raw.requests), timeout(5), what="the held request")
    time.sleep(0.2)
    assert not upstream_closed.is_set()
    f.close()
    c.close()
    assert upstream_closed.wait(timeout(3)), "the upstream connection outlived its client"
    poll(lambda: 'status="499"' in k.metrics(), timeout(5), what="a 499 in the metrics")
    # The endpoint was not blamed: it answers the next requests.
    assert [k.request("raw.test", f"/{i}").body for i in range(3)] == [b"raw"] * 3


def test_oversized_response_head_is_502(env, backends):
    def huge(sock, head):
        sock.sendall(b"HTTP/1.1 200 OK\r\n" + b"X-Junk: " + b"j" * 200_000 + b"\r\n\r\n")
        return False
    k = serve(env, backends(huge))
    assert k.request("raw.test", "/huge").status == 502
    assert k.service_of("good.test") == "good"


def folder_env(env):
    e = env.echo("web")
    env.write("apps.yaml", service("web"), endpoint_slice("web", e.port, [e.endpoint()]))
    env.write("ingress.yaml", ingress("web", [("web.test", [path_rule("/", "web")])]))
    return env.kedge()


def errors(k) -> list[dict]:
    return k.admin_json("/debug/errors")["issues"]


def test_garbage_half_written_and_huge_files_keep_the_last_good_config(env):
    k = folder_env(env)
    assert k.service_of("web.test") == "web"
    path = env.manifests / "ingress.yaml"

    # Half-written in place (not atomic): the half is a syntax error or a partial object;
    # either way the route stays until the rest arrives.
    full = path.read_text()
    gen = k.generation()
    with open(path, "w") as f:
        f.write(full[: len(full) // 2])
    k.wait_reload(gen)
    assert k.service_of("web.test") == "web"
    gen = k.generation()
    with open(path, "w") as f:
        f.write(full)
    k.wait_reload(gen)
    assert k.service_of("web.test") == "web"
    assert errors(k) == []

    # Garbage: binary junk in a .yaml file.
    gen = k.generation()
    (env.manifests / "junk.yaml").write_bytes(os.urandom(4096) + b"\x00\xff: [")
    k.wait_reload(gen)
    assert k.service_of("web.test") == "web"
    assert any(i["file"].endswith("junk.yaml") for i in errors(k)), errors(k)

    # A 100 MB file: refused as too large, reported, nothing else changes.
    gen = k.generation()
    big = env.manifests / "big.yaml"
    with open(big, "wb") as f:
        block = b"# padding " + b"x" * 1013 + b"\n"
        for _ in range(100 * 1024):
            f.write(block)
    k.wait_reload(gen, timeout_s=30)
    assert k.proc.alive()
    assert k.service_of("web.test") == "web"
    issues = errors(k)
    assert any(i["file"].endswith("big.yaml") and "large" in i["message"] for i in issues), issues
    big.unlink()
    (env.manifests / "junk.yaml").unlink()
    poll(lambda: errors(k) == [], timeout(10), what="errors cleared after removing the files")
    assert k.service_of("web.test") == "web"


def test_delete_and_recreate_and_atomic_rename(env):
    k = folder_env(env)
    path = env.manifests / "ingress.yaml"
    text = path.read_text()
    gen = k.generation()
    path.unlink()
    k.wait_reload(gen)
    assert k.service_of("web.test") == 404  # deleted: its objects are gone
    gen = k.generation()
    path.write_text(text)
    k.wait_reload(gen)
    poll(lambda: k.service_of("web.test") == "web", timeout(5), what="re-created file")
    # Atomic replacement by rename, many times in a row, while a client keeps requesting.
    for i in range(10):
        env.write_text("ingress.yaml", text.replace("web.test", "web.test") + f"# {i}\n")
        assert k.service_of("web.test") == "web"


def test_sighup_reloads_without_dropping_connections(env):
    k = folder_env(env)
    s = raw_connect(k.http_port)
    with s, s.makefile("rb") as f:
        s.sendall(b"GET / HTTP/1.1\r\nHost: web.test\r\n\r\n")
        assert read_response(f).status == 200
        gen = k.generation()
        os.kill(k.proc.pid, signal.SIGHUP)
        k.wait_reload(gen)
        assert k.proc.alive()
        s.sendall(b"GET / HTTP/1.1\r\nHost: web.test\r\n\r\n")  # the same connection
        assert read_response(f).status == 200
