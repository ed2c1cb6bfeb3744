"""Graceful stop: requests in flight finish, then kedge exits 0."""

from __future__ import annotations

import os
import signal
import subprocess
import time

from conftest import (
    can_connect,
    endpoint_slice,
    ingress,
    path_rule,
    poll,
    raw_connect,
    read_response,
    service,
    timeout,
)


def start(env, *extra):
    e = env.echo("slow")
    env.write("apps.yaml", service("slow"), endpoint_slice("slow", e.port, [e.endpoint()]))
    env.write("ingress.yaml", ingress("slow", [("slow.test", [path_rule("/", "slow")])]))
    return env.kedge(*extra)


def in_flight(k) -> bool:
    return (k.metric("kedge_active_connections") or 0) >= 1


def test_sigterm_lets_request_in_flight_finish(env):
    k = start(env, "--shutdown-grace-ms", "10000")
    s = raw_connect(k.http_port, timeout_s=20)
    with s, s.makefile("rb") as f:
        t0 = time.monotonic()
        s.sendall(b"GET /slow?delay_ms=1000 HTTP/1.1\r\nHost: slow.test\r\n\r\n")
        poll(lambda: in_flight(k), timeout(5), what="the request to be in flight")
        os.kill(k.proc.pid, signal.SIGTERM)
        # New connections are refused once the listeners close (polled, bounded).
        poll(lambda: not can_connect("127.0.0.1", k.http_port, 0.2), timeout(5),
             what="the listener to close")
        r = read_response(f)
        elapsed = time.monotonic() - t0
        assert r.status == 200, r
        assert r.json()["path"] == "/slow?delay_ms=1000"
        assert elapsed >= 0.9
        # Draining: the connection is not kept alive.
        assert (r.header("connection") or "").lower() == "close"
        assert f.read() == b""
    code = k.proc.proc.wait(timeout=timeout(15))
    assert code == 0, k.proc.log_tail()


def test_sigterm_idle_exits_promptly(env):
    k = start(env)
    assert k.service_of("slow.test") == "slow"
    t0 = time.monotonic()
    os.kill(k.proc.pid, signal.SIGTERM)
    code = k.proc.proc.wait(timeout=timeout(10))
    assert code == 0, k.proc.log_tail()
    assert time.monotonic() - t0 < timeout(3)


def test_grace_period_is_bounded(env):
    """A request slower than the grace period does not hold kedge up past it."""
    k = start(env, "--shutdown-grace-ms", "300")
    s = raw_connect(k.http_port, timeout_s=20)
    with s:
        s.sendall(b"GET /slow?delay_ms=20000 HTTP/1.1\r\nHost: slow.test\r\n\r\n")
        poll(lambda: in_flight(k), timeout(5), what="the request to be in flight")
        t0 = time.monotonic()
        os.kill(k.proc.pid, signal.SIGTERM)
        try:
            code = k.proc.proc.wait(timeout=timeout(10))
        except subprocess.TimeoutExpired:
            code = None
        assert code == 0, k.proc.log_tail()
        assert time.monotonic() - t0 < timeout(5)


def test_sigterm_closes_idle_keepalive_connections(env):
    """Connections waiting for their next request do not hold up the stop: they close at once,
    while the grace period is long."""
    k = start(env, "--shutdown-grace-ms", "20000")
    conns = []
    for _ in range(4):
        s = raw_connect(k.http_port)
        f = s.makefile("rb")
        s.sendall(b"GET / HTTP/1.1\r\nHost: slow.test\r\n\r\n")
        assert read_response(f).status == 200
        conns.append((s, f))
    try:
        t0 = time.monotonic()
        os.kill(k.proc.pid, signal.SIGTERM)
        code = k.proc.proc.wait(timeout=timeout(10))
        assert code == 0, k.proc.log_tail()
        assert time.monotonic() - t0 < timeout(3)
        for s, f in conns:
            s.settimeout(timeout(5))
            assert f.read() == b""  # closed without an answer
    finally:
        for s, f in conns:
            f.close()
            s.close()
