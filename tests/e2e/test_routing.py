"""Routing: hosts, paths, wildcards, merging, default backend, error statuses, endpoints."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from conftest import (
    endpoint_slice,
    free_port,
    raw_connect,
    read_response,
    ingress,
    path_rule,
    poll,
    service,
    timeout,
)

UPSTREAM_READ_TIMEOUT_MS = 1000


def app(env, name: str, *echo_specs: tuple[str, dict], ns: str = "default"):
    """Starts one echo per (ip, conditions) and returns [Service, EndpointSlice] for them."""
    ips = [ip for ip, _ in echo_specs] or ["127.0.0.1"]
    port = free_port(*ips)
    eps = []
    echos = []
    for i, (ip, conditions) in enumerate(echo_specs):
        e = env.echo(name, pod=f"{name}-{i}", ip=ip, port=port, namespace=ns)
        echos.append(e)
        eps.append(e.endpoint(**conditions))
    return [service(name, ns), endpoint_slice(name, port, eps, ns=ns)], echos


@pytest.fixture(scope="module")
def routed(module_env):
    env = module_env
    docs = []
    for name in ["web", "api", "exact", "long", "wild", "wildexact", "slow"]:
        d, _ = app(env, name, ("127.0.0.1", {}))
        docs += d
    # Round robin over two ready pods; one ready and one not-ready pod; only terminating pods.
    d, _ = app(env, "rr", ("127.0.0.2", {}), ("127.0.0.3", {}))
    docs += d
    d, _ = app(env, "ready", ("127.0.0.4", {"ready": True}), ("127.0.0.5", {"ready": False}))
    docs += d
    d, _ = app(env, "term",
               ("127.0.0.6", {"ready": False, "serving": True, "terminating": True}),
               ("127.0.0.7", {"ready": False, "serving": False, "terminating": True}),
               ("127.0.0.8", {"ready": False}))
    docs += d
    # A Service whose slice lists no endpoint, and one whose endpoint has nothing listening.
    docs += [service("empty"), endpoint_slice("empty", 9, [])]
    dead_port = free_port()
    docs += [service("refused"),
             endpoint_slice("refused", dead_port, [{"addresses": ["127.0.0.1"]}])]
    env.write("apps.yaml", *docs)

    env.write("ingress-hosts.yaml", ingress("hosts", [
        ("web.test", [path_rule("/", "web")]),
        ("api.test", [path_rule("/", "api")]),
    ]))
    env.write("ingress-paths.yaml", ingress("paths", [
        ("paths.test", [
            path_rule("/", "web"),
            path_rule("/api", "api"),
            path_rule("/exact", "exact", "Exact"),
            path_rule("/long", "api"),
            path_rule("/long/path", "long"),
            path_rule("/same", "web"),
            path_rule("/same", "exact", "Exact"),
        ]),
    ]))
    env.write("ingress-wild.yaml", ingress("wild", [
        ("*.example.test", [path_rule("/", "wild")]),
        ("exact.example.test", [path_rule("/", "wildexact")]),
    ]))
    # Two Ingresses for one host: their paths merge.
    env.write("ingress-merge-a.yaml", ingress("merge-a", [("merge.test", [path_rule("/a", "web")])]))
    env.write("ingress-merge-b.yaml", ingress("merge-b", [("merge.test", [path_rule("/b", "api")])]))
    env.write("ingress-errors.yaml", ingress("errors", [
        ("errors.test", [
            path_rule("/empty", "empty"),
            path_rule("/missing", "does-not-exist"),
            path_rule("/refused", "refused"),
            path_rule("/slow", "slow"),
        ]),
        ("rr.test", [path_rule("/", "rr")]),
        ("ready.test", [path_rule("/", "ready")]),
        ("term.test", [path_rule("/", "term")]),
    ]))
    return env.kedge("--upstream-read-timeout", str(UPSTREAM_READ_TIMEOUT_MS))


def test_host_based_routing(routed):
    assert routed.service_of("web.test") == "web"
    assert routed.service_of("api.test") == "api"
    body = routed.get_json("api.test", "/some/path?q=1")
    assert body["path"] == "/some/path?q=1"
    assert body["host"] == "api.test"


def test_prefix_path_routing(routed):
    assert routed.service_of("paths.test", "/api") == "api"
    assert routed.service_of("paths.test", "/api/") == "api"
    assert routed.service_of("paths.test", "/api/v1/users") == "api"
    assert routed.service_of("paths.test", "/api?x=1") == "api"
    # Prefix matches whole path elements: /apifoo is not under /api.
    assert routed.service_of("paths.test", "/apifoo") == "web"
    assert routed.service_of("paths.test", "/ap") == "web"
    assert routed.service_of("paths.test", "/") == "web"


def test_exact_path_matches_only_exactly(routed):
    assert routed.service_of("paths.test", "/exact") == "exact"
    assert routed.service_of("paths.test", "/exact?a=b") == "exact"
    assert routed.service_of("paths.test", "/exact/") == "web"
    assert routed.service_of("paths.test", "/exact/more") == "web"
    assert routed.service_of("paths.test", "/exactly") == "web"


def test_longest_path_wins(routed):
    assert routed.service_of("paths.test", "/long/path") == "long"
    assert routed.service_of("paths.test", "/long/path/deeper") == "long"
    assert routed.service_of("paths.test", "/long/other") == "api"
    assert routed.service_of("paths.test", "/long") == "api"
    assert routed.service_of("paths.test", "/long/pathology") == "api"


def test_exact_beats_prefix_at_equal_length(routed):
    assert routed.service_of("paths.test", "/same") == "exact"
    assert routed.service_of("paths.test", "/same/x") == "web"


def test_wildcard_host(routed):
    assert routed.service_of("a.example.test") == "wild"
    assert routed.service_of("zz-top.example.test") == "wild"
    # A wildcard covers exactly one label, and not the bare domain.
    assert routed.service_of("a.b.example.test") == 404
    assert routed.service_of("example.test") == 404


def test_exact_host_beats_wildcard(routed):
    assert routed.service_of("exact.example.test") == "wildexact"
    assert routed.service_of("other.example.test") == "wild"


def test_host_is_case_insensitive_and_port_ignored(routed):
    assert routed.service_of("WEB.Test") == "web"
    assert routed.service_of(f"web.test:{routed.http_port}") == "web"
    assert routed.service_of("Api.TEST:8080") == "api"
    assert routed.service_of("A.Example.TEST:1234") == "wild"
    assert routed.service_of("EXACT.example.test:99") == "wildexact"


def test_two_ingresses_for_one_host_merge(routed):
    assert routed.service_of("merge.test", "/a") == "web"
    assert routed.service_of("merge.test", "/b/c") == "api"
    assert routed.service_of("merge.test", "/c") == 404


def test_no_match_is_404(routed):
    r = routed.request("unknown.test", "/")
    assert r.status == 404
    assert routed.request("web.test.evil", "/").status == 404
    assert routed.service_of("errors.test", "/nothing-here") == 404


def test_service_without_endpoints_is_503(routed):
    r = routed.request("errors.test", "/empty")
    assert r.status == 503, r


def test_missing_service_is_503(routed):
    r = routed.request("errors.test", "/missing")
    assert r.status == 503, r


def test_refused_endpoint_is_502(routed):
    for _ in range(3):  # also once the endpoint is ejected: no endpoint left is still a 502
        r = routed.request("errors.test", "/refused")
        assert r.status == 502, r


def test_slow_upstream_is_504(routed):
    t0 = time.monotonic()
    r = routed.request("errors.test", f"/slow?delay_ms={UPSTREAM_READ_TIMEOUT_MS * 4}")
    elapsed = time.monotonic() - t0
    assert r.status == 504, r
    assert elapsed >= UPSTREAM_READ_TIMEOUT_MS / 1000 * 0.9
    assert elapsed < UPSTREAM_READ_TIMEOUT_MS * 4 / 1000
    # A delay within the limit is fine.
    r = routed.request("errors.test", "/slow?delay_ms=50")
    assert r.status == 200 and r.json()["service"] == "slow"


def test_round_robin_over_two_endpoints(routed):
    c = routed.connection()
    try:
        pods = [routed.get_json("rr.test", "/", conn=c)["pod"] for _ in range(10)]
    finally:
        c.close()
    counts = Counter(pods)
    assert set(counts) == {"rr-0", "rr-1"}, counts
    assert max(counts.values()) - min(counts.values()) <= 1, counts
    # New connections too (whichever worker takes them).
    pods = {routed.get_json("rr.test", "/")["pod"] for _ in range(12)}
    assert pods == {"rr-0", "rr-1"}


def test_only_ready_endpoints_get_traffic(routed):
    c = routed.connection()
    try:
        pods = Counter(routed.get_json("ready.test", "/", conn=c)["pod"] for _ in range(10))
    finally:
        c.close()
    pods.update(routed.get_json("ready.test", "/")["pod"] for _ in range(10))
    assert pods == Counter({"ready-0": 20})


def test_terminating_serving_endpoints_when_none_ready(routed):
    pods = Counter(routed.get_json("term.test", "/")["pod"] for _ in range(12))
    assert pods == Counter({"term-0": 12})


def test_default_backend(env):
    e = env.echo("fallback")
    w = env.echo("web")
    env.write("apps.yaml",
              service("fallback"), endpoint_slice("fallback", e.port, [e.endpoint()]),
              service("web"), endpoint_slice("web", w.port, [w.endpoint()]))
    env.write("ingress.yaml",
              ingress("with-default", [("web.test", [path_rule("/app", "web")])],
                      default_backend="fallback"))
    k = env.kedge()
    assert k.service_of("web.test", "/app/x") == "web"
    assert k.service_of("web.test", "/other") == "fallback"
    assert k.service_of("nothing.test", "/") == "fallback"
    # The snapshot says so too.
    snap = k.admin_json("/debug/snapshot")
    assert snap["defaultBackend"]["cluster"] == "default/fallback:80"


def test_routing_in_other_namespace(env):
    e = env.echo("shop", namespace="store")
    env.write("apps.yaml", service("shop", ns="store"),
              endpoint_slice("shop", e.port, [e.endpoint()], ns="store"))
    env.write("ingress.yaml", ingress("shop", [("shop.test", [path_rule("/", "shop")])], ns="store"))
    k = env.kedge()
    body = k.get_json("shop.test", "/")
    assert body["service"] == "shop" and body["namespace"] == "store"
    assert k.service_of("shop.test", "/") == "shop"


def test_absolute_form_target_routes_by_its_authority(routed):
    s = raw_connect(routed.http_port)
    with s, s.makefile("rb") as f:
        s.sendall(b"GET http://api.test/abs?x=1 HTTP/1.1\r\nHost: web.test\r\n\r\n")
        r = read_response(f)
    assert r.status == 200, r
    body = r.json()
    assert body["service"] == "api"
    assert body["path"] == "/abs?x=1"  # origin-form upstream
    # The authority replaces the Host field (RFC 9112 §3.2.2), once.
    assert body["host"] == "api.test"
    assert body["headers"]["host"] == "api.test"
    assert body["headers"]["x-forwarded-host"] == "api.test"


def test_path_normalised_before_matching(routed):
    # Dot segments, repeated slashes and escaped unreserved characters route like the plain path.
    assert routed.service_of("paths.test", "/web/../exact") == "exact"
    assert routed.service_of("paths.test", "//api//v1") == "api"
    assert routed.service_of("paths.test", "/%61pi/x") == "api"
    assert routed.service_of("paths.test", "/./exact") == "exact"
    # The backend still receives the target as the client sent it.
    assert routed.get_json("paths.test", "/%61pi/x?q=%20")["path"] == "/%61pi/x?q=%20"


def test_host_with_trailing_dot(routed):
    assert routed.service_of("web.test.") == "web"


def test_external_name_service_follows_its_changes(env):
    """An ExternalName Service added, edited and removed while kedge serves: each change routes
    to the name it now holds (kedge resolves only the names of Services that changed)."""
    port = free_port("127.0.0.2", "127.0.0.3")
    env.echo("first", ip="127.0.0.2", port=port)
    env.echo("second", ip="127.0.0.3", port=port)
    plain, _ = app(env, "plain", ("127.0.0.1", {}))
    env.write("plain.yaml", *plain,
              ingress("plain", [("plain.test", [path_rule("/", "plain")])]))
    env.write("ext-ingress.yaml",
              ingress("ext", [("ext.test", [path_rule("/", "ext", port=port)])]))
    k = env.kedge()
    assert k.service_of("plain.test") == "plain"
    assert k.service_of("ext.test") == 503  # the Service is not there yet

    def external(name: str) -> dict:
        return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "ext"},
                "spec": {"type": "ExternalName", "externalName": name}}

    for name, want in (("127.0.0.2", "first"), ("127.0.0.3", "second")):
        before = k.generation()
        env.write("ext.yaml", external(name))
        k.wait_reload(before)
        poll(lambda: k.service_of("ext.test") == want, timeout(5), what=f"ext.test -> {want}")
    before = k.generation()
    env.remove("ext.yaml")
    k.wait_reload(before)
    poll(lambda: k.service_of("ext.test") == 503, timeout(5), what="ext.test -> 503")
    assert k.service_of("plain.test") == "plain"
