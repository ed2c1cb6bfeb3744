"""Path normalisation for matching (docs/security.md): no encoding of a path lets a request reach
a rule it should not. One Ingress sends /public to one Service, /admin (Prefix) and /private
(Exact) to others, and everything else to a catch-all; each target is checked for the Service
that answers and for the target the upstream received (always the client's, unchanged)."""

from __future__ import annotations

import pytest

from conftest import (
    endpoint_slice,
    ingress,
    path_rule,
    raw_connect,
    read_response,
    service,
)

HOST = "paths.test"


@pytest.fixture(scope="module")
def proxy(module_env):
    env = module_env
    docs = []
    for name in ("public", "admin", "private", "other"):
        e = env.echo(name)
        docs += [service(name), endpoint_slice(name, e.port, [e.endpoint()])]
    env.write("apps.yaml", *docs)
    env.write("ingress.yaml", ingress("paths", [(HOST, [
        path_rule("/public", "public"),
        path_rule("/admin", "admin"),
        path_rule("/private", "private", "Exact"),
        path_rule("/", "other"),
    ])]))
    return env.kedge()


def send(proxy, target: str) -> tuple[int, dict | None]:
    s = raw_connect(proxy.http_port)
    with s, s.makefile("rb") as f:
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n"
                  .encode("latin-1"))
        r = read_response(f)
    return r.status, (r.json() if r.status == 200 else None)


@pytest.mark.parametrize("target,service_name", [
    ("/public/x", "public"),
    ("/admin", "admin"),
    ("/admin/", "admin"),
    ("/%61dmin/x", "admin"),  # unreserved escapes decoded
    ("/ADMIN", "other"),  # paths are case-sensitive
    ("/public/../admin", "admin"),  # dot segments resolved before matching
    ("/public/./../admin/x", "admin"),
    ("/public/%2e%2e/admin", "admin"),  # encoded dots are dots
    ("/public/%2E%2E/admin", "admin"),
    ("/public/..%2Fadmin", "admin"),  # an encoded slash is a slash
    ("/public%2F..%2Fadmin", "admin"),
    ("/public/%2e%2e%2fadmin", "admin"),
    ("/admin%2Fsecret", "admin"),
    ("//admin", "admin"),  # repeated slashes merged
    ("/public//../admin", "admin"),
    ("/../../admin", "admin"),  # never above the root
    ("/adminx", "other"),  # Prefix matches whole segments
    ("/admin%20x", "other"),
    ("/private", "private"),
    ("/private/", "other"),  # Exact is exact
    ("/public/../private", "private"),
    ("/%70rivate", "private"),
    ("/private%2F", "other"),
    ("/public?x=/../admin", "public"),  # the query takes no part
    ("/public#/../admin", "public"),
    ("/public/%252e%252e/admin", "public"),  # double encoding is decoded once
    ("/public/%5Cadmin", "public"),  # a backslash without a dot segment is data
])
def test_path_reaches_the_rule_its_normal_form_names(proxy, target, service_name):
    status, body = send(proxy, target)
    assert status == 200, (target, status)
    assert body["service"] == service_name, (target, body["service"])
    assert body["path"] == target.split("#")[0] or body["path"] == target, body["path"]


@pytest.mark.parametrize("target", [
    "/public/..%5Cadmin",  # a dot segment next to a backslash: an upstream may read it as /
    "/public/..%5cadmin",
    "/public/..\\admin",
    "/public\\..\\admin",
])
def test_dot_segment_next_to_a_backslash_is_refused(proxy, target):
    status, _ = send(proxy, target)
    assert status == 400, (target, status)


def test_upstream_receives_the_target_unchanged(proxy):
    status, body = send(proxy, "/public/%2e%2e/admin%2Fx?q=%2F")
    assert status == 200
    assert body["service"] == "admin"
    assert body["path"] == "/public/%2e%2e/admin%2Fx?q=%2F"
