"""Request headers kedge adds, replaces and drops on the way upstream."""

from __future__ import annotations

import re

import pytest

from conftest import endpoint_slice, ingress, path_rule, raw_connect, read_response, service


@pytest.fixture(scope="module")
def proxy(module_env):
    env = module_env
    e = env.echo("hdr")
    env.write("apps.yaml", service("hdr"), endpoint_slice("hdr", e.port, [e.endpoint()]))
    env.write("ingress.yaml", ingress("hdr", [("hdr.test", [path_rule("/", "hdr")])]))
    return env.kedge()


def upstream_headers(proxy, headers: dict | None = None, host: str = "hdr.test") -> dict:
    return proxy.get_json(host, "/h", headers=headers)["headers"]


def test_forwarded_for_and_real_ip(proxy):
    h = upstream_headers(proxy)
    assert h["x-forwarded-for"] == "127.0.0.1"
    assert h["x-real-ip"] == "127.0.0.1"


def test_forwarded_host_port_proto(proxy):
    h = upstream_headers(proxy)
    assert h["x-forwarded-host"] == "hdr.test"
    assert h["x-forwarded-port"] == str(proxy.http_port)
    assert h["x-forwarded-proto"] == "http"
    # The Host field itself reaches the backend unchanged, port included.
    h = upstream_headers(proxy, host=f"HDR.test:{proxy.http_port}")
    assert h["host"] == f"HDR.test:{proxy.http_port}"
    assert h["x-forwarded-host"] == f"HDR.test:{proxy.http_port}"


def test_request_id_generated(proxy):
    a = upstream_headers(proxy)["x-request-id"]
    b = upstream_headers(proxy)["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", a), a
    assert re.fullmatch(r"[0-9a-f]{32}", b), b
    assert a != b


def test_request_id_passed_through(proxy):
    h = upstream_headers(proxy, {"X-Request-ID": "my-trace-0123"})
    assert h["x-request-id"] == "my-trace-0123"


def test_client_forwarded_headers_are_replaced(proxy):
    h = upstream_headers(proxy, {
        "X-Forwarded-For": "203.0.113.9",
        "X-Real-IP": "203.0.113.9",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "evil.test",
        "X-Forwarded-Port": "1",
    })
    assert h["x-forwarded-for"] == "127.0.0.1"
    assert h["x-real-ip"] == "127.0.0.1"
    assert h["x-forwarded-proto"] == "http"
    assert h["x-forwarded-host"] == "hdr.test"
    assert h["x-forwarded-port"] == str(proxy.http_port)


def test_hop_by_hop_headers_not_forwarded(proxy):
    # A raw request, so that exactly these fields are sent.
    s = raw_connect(proxy.http_port)
    with s, s.makefile("rb") as f:
        s.sendall(b"GET /hop HTTP/1.1\r\nHost: hdr.test\r\n"
                  b"Connection: keep-alive, Foo\r\nFoo: secret\r\n"
                  b"Keep-Alive: timeout=5\r\nTE: trailers\r\nProxy-Connection: keep-alive\r\n"
                  b"Trailer: X-Checksum\r\nUpgrade: h2c\r\n"
                  b"X-End-To-End: kept\r\n\r\n")
        r = read_response(f)
    assert r.status == 200, r
    h = r.json()["headers"]
    for name in ("foo", "keep-alive", "te", "proxy-connection", "trailer", "upgrade"):
        assert name not in h, (name, h)
    assert "foo" not in h.get("connection", "").lower()
    assert h["x-end-to-end"] == "kept"
    assert h["host"] == "hdr.test"


def test_end_to_end_headers_kept(proxy):
    h = upstream_headers(proxy, {"Authorization": "Bearer t", "X-Custom": "a, b",
                                 "Cookie": "k=v"})
    assert h["authorization"] == "Bearer t"
    assert h["x-custom"] == "a, b"
    assert h["cookie"] == "k=v"


def test_response_headers_reach_client(proxy):
    r = proxy.request("hdr.test", "/resp")
    assert r.status == 200
    assert r.headers["X-Echo-Service"] == "hdr"
    assert r.headers["Content-Type"] == "application/json"
