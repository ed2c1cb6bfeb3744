"""kedge with the Kubernetes API as its source, against tests/kubeapi/fake_apiserver.py over
TLS with a bearer token: initial sync, updates, deletes, paginated lists, dropped watches, 410
Expired, an API outage with traffic running, token rotation, readiness, status and Events."""

from __future__ import annotations

import threading
import time

import pytest

from conftest import SANITIZED, poll, timeout
from kube import Cluster, fixture, start_kedge


@pytest.fixture
def cluster(tmp_path):
    c = Cluster(tmp_path)
    yield c
    c.stop()


def ingress(name: str, host: str, service: str, class_name: str = "kedge") -> dict:
    ing = fixture("ingress-web.json")
    ing["metadata"] = {"name": name, "namespace": "default"}
    ing["spec"]["ingressClassName"] = class_name
    rule = ing["spec"]["rules"][0]
    rule["host"] = host
    rule["http"]["paths"][0]["backend"]["service"]["name"] = service
    return ing


def headless_service(name: str) -> dict:
    svc = fixture("service-web.json")
    svc["metadata"] = {"name": name, "namespace": "default"}
    svc["spec"]["clusterIP"] = svc["spec"]["clusterIPs"][0] = "None"
    return svc


def test_initial_sync_updates_and_deletes(env, cluster):
    web, api_echo = env.echo("web"), env.echo("api")
    cluster.web(web)
    k = start_kedge(env, cluster)
    assert k.service_of("web.example.test") == "web"
    # The objects as kedge holds them, through its read-only API.
    ings = k.admin_json("/apis/networking.k8s.io/v1/ingresses")
    assert [i["metadata"]["name"] for i in ings["items"]] == ["web"]

    # Added while watching.
    gen = k.generation()
    cluster.api.add(headless_service("api"))
    cluster.api.add(cluster.slice_for("api", [api_echo]))
    cluster.api.add(ingress("api", "api.example.test", "api"))
    poll(lambda: k.service_of("api.example.test") == "api", timeout(10), what="api route")
    assert k.generation() > gen

    # Modified: the web Service's endpoints move to the api backend.
    cluster.api.apply(cluster.slice_for("web", [api_echo]))
    poll(lambda: k.service_of("web.example.test") == "api", timeout(10), what="web → api pod")

    # Deleted.
    cluster.api.delete("Ingress", "default", "api")
    poll(lambda: k.service_of("api.example.test") == 404, timeout(10), what="api route gone")
    assert k.service_of("web.example.test") == "api"


def test_paginated_list_and_no_serving_before_every_kind_is_listed(env, cluster):
    web = env.echo("web")
    cluster.web(web)
    for i in range(7):
        cluster.api.add(headless_service(f"extra-{i}"))
    cluster.api.forbidden.add("secrets")
    k = start_kedge(env, cluster, "--api-list-limit", "3", wait_ready=False)

    def not_ready_naming_secret():
        r = k.admin("/readyz")
        return r.status == 503 and b"Secret" in r.body and b"Service" not in r.body
    poll(not_ready_naming_secret, timeout(10), what="/readyz naming Secret only")
    # 8 Services in pages of 3: three list requests, the last two with a continue token.
    lists = [q for m, p, q in list(cluster.api.requests)
             if m == "GET" and p == "/api/v1/services" and "watch" not in q]
    assert len(lists) >= 3 and lists[0]["limit"] == "3" and "continue" not in lists[0]
    assert all("continue" in q for q in lists[1:3])
    time.sleep(0.5)
    r = k.admin("/readyz")
    assert r.status == 503, r

    cluster.api.forbidden.clear()
    poll(lambda: k.admin("/readyz").status == 200, timeout(10), what="ready once Secrets list")
    assert k.service_of("web.example.test") == "web"
    assert len(k.admin_json("/api/v1/services")["items"]) == 8
    # The Secret list asks only for TLS Secrets.
    secret_lists = [q for m, p, q in list(cluster.api.requests) if p == "/api/v1/secrets"]
    assert secret_lists and all(q.get("fieldSelector") == "type=kubernetes.io/tls"
                                for q in secret_lists)


def test_dropped_watch_and_expired_resource_version(env, cluster):
    web, api_echo = env.echo("web"), env.echo("api")
    cluster.web(web)
    k = start_kedge(env, cluster)
    poll(lambda: cluster.api.watch_count() >= 5, timeout(10), what="five watches")
    reloads = k.metric("kedge_config_reloads_total")
    lists_before = cluster.api.count_requests("GET", "/ingresses", watch=False)

    # A broken stream: kedge lists again; nothing changed, so nothing is translated again.
    cluster.api.drop_watches()
    poll(lambda: cluster.api.count_requests("GET", "/ingresses", watch=False) > lists_before,
         timeout(10), what="a fresh list after the dropped watch")
    poll(lambda: cluster.api.watch_count() >= 5, timeout(10), what="watches again")
    time.sleep(0.3)
    assert k.metric("kedge_config_reloads_total") == reloads
    cluster.api.add(ingress("api", "api.example.test", "web"))
    poll(lambda: k.service_of("api.example.test") == "web", timeout(10), what="change after drop")

    # 410: every watch gets an in-stream ERROR Expired, then kedge relists and catches up on
    # what changed meanwhile.
    lists_before = cluster.api.count_requests("GET", "/ingresses", watch=False)
    cluster.api.expire()
    cluster.api.apply(cluster.slice_for("web", [api_echo]))
    poll(lambda: cluster.api.count_requests("GET", "/ingresses", watch=False) > lists_before,
         timeout(10), what="a fresh list after 410")
    poll(lambda: k.service_of("web.example.test") == "api", timeout(10), what="caught up")
    assert "expired" in k.proc.log_tail(200)


def test_token_rotation(env, cluster):
    web, api_echo = env.echo("web"), env.echo("api")
    cluster.web(web)
    k = start_kedge(env, cluster)
    # Every watch is open (with token one) before the token changes.
    poll(lambda: cluster.api.watch_count() >= 5, timeout(10), what="five watches")
    watches = cluster.api.count_requests("GET", "/ingresses", watch=True)
    # The kubelet replaces the projected token; the API server accepts only the new one.
    cluster.api.rotate_token("token-two", str(cluster.token_file))
    cluster.api.drop_watches()
    cluster.api.add(ingress("api", "api.example.test", "web"))
    poll(lambda: k.service_of("api.example.test") == "web", timeout(10), what="seen with token two")
    # The relist may bring the Ingress before the new watch is opened: wait for the watch too.
    poll(lambda: cluster.api.count_requests("GET", "/ingresses", watch=True) > watches,
         timeout(10), what="a new watch with token two")
    assert k.proc.alive()


def test_api_outage_keeps_serving_with_traffic_and_catches_up(env, cluster):
    outage_s = 30.0
    web, api_echo = env.echo("web"), env.echo("api")
    cluster.web(web)
    k = start_kedge(env, cluster)
    failures: list[str] = []
    done = threading.Event()
    count = [0]

    def traffic():
        conn = k.connection(timeout_s=5)
        deadline = time.monotonic() + outage_s + timeout(20)
        while not done.is_set() and time.monotonic() < deadline and count[0] < 100000:
            try:
                r = k.request("web.example.test", "/", conn=conn)
                if r.status != 200:
                    failures.append(f"HTTP {r.status}")
            except Exception as e:  # noqa: BLE001
                failures.append(repr(e))
                conn.close()
                conn = k.connection(timeout_s=5)
            count[0] += 1
            time.sleep(0.01)
        conn.close()

    t = threading.Thread(target=traffic)
    t.start()
    try:
        time.sleep(0.5)
        cluster.api.go_down()
        # While the API server is away the store changes (others keep writing to etcd).
        cluster.api.apply(cluster.slice_for("web", [web, api_echo]))
        cluster.api.add(ingress("api", "api.example.test", "web"))
        time.sleep(outage_s)
        assert k.admin("/readyz").status == 200  # the last good snapshot keeps serving
        assert k.service_of("api.example.test") == 404
        served_during = count[0]
        cluster.api.up()
        poll(lambda: k.service_of("api.example.test") == "web", timeout(15), what="caught up")
    finally:
        done.set()
        t.join()
    assert served_during > 100, served_during
    assert not failures, failures[:5]
    # The EndpointSlice written during the outage arrives too (its second endpoint); each kind
    # is watched on its own stream, so it may come a moment after the Ingress.
    def slice_endpoints():
        slices = k.admin_json("/apis/discovery.k8s.io/v1/endpointslices")["items"]
        web_slice = next(s for s in slices if s["metadata"]["name"] == "web-7xk2p")
        return len(web_slice["endpoints"]) == 2
    poll(slice_endpoints, timeout(15), what="the EndpointSlice written during the outage")


def test_status_events_and_load_balancer_addresses(env, cluster):
    from conftest import free_port
    web = env.echo("web")
    cluster.web(web)
    lb = headless_service("front")
    lb["spec"].update({"type": "LoadBalancer", "clusterIP": "127.10.0.77",
                       "clusterIPs": ["127.10.0.77"]})
    lb["spec"]["ports"][0]["nodePort"] = free_port()
    lb["spec"]["ports"][0]["targetPort"] = 80
    cluster.api.add(lb)
    bad = ingress("bad", "bad.example.test", "web")
    bad["spec"]["rules"][0]["http"]["paths"][0].update({"path": "relative", "pathType": "Exact"})
    cluster.api.add(bad)
    cluster.api.status_conflicts = 1  # someone else writes the object just before kedge
    k = start_kedge(env, cluster, "--publish-status-address", "192.0.2.10",
                    "--lb-pool", "default=127.10.9.0/24")

    def ingress_ips(name):
        obj = cluster.api.get("Ingress", "default", name)
        return [e.get("ip") for e in obj.get("status", {}).get("loadBalancer", {})
                .get("ingress", [])]
    poll(lambda: ingress_ips("web") == ["192.0.2.10"], timeout(10), what="Ingress status")
    # The first status write met a 409 Conflict: kedge read the object again and wrote again.
    assert cluster.api.status_conflicts == 0
    assert cluster.api.count_requests("GET", "/apis/networking.k8s.io/v1/namespaces/default/"
                                      "ingresses/web") + cluster.api.count_requests(
        "GET", "/api/v1/namespaces/default/services/front") >= 1

    # The LoadBalancer Service keeps the API server's ClusterIP and NodePort and gets an
    # address from kedge's pool, written to its status.
    def svc_ips():
        obj = cluster.api.get("Service", "default", "front")
        return [e.get("ip") for e in obj["status"].get("loadBalancer", {}).get("ingress", [])]
    poll(lambda: svc_ips() and svc_ips()[0].startswith("127.10.9."), timeout(10),
         what="Service status")
    assert cluster.api.get("Service", "default", "front")["spec"]["clusterIP"] == "127.10.0.77"

    # The refused Ingress is reported as a Warning Event on it.
    def refused():
        return [e for e in cluster.api.events("default")
                if e["involvedObject"]["name"] == "bad" and e["reason"] == "Refused"]
    events = poll(refused, timeout(10), what="an Event for the refused Ingress")
    assert events[0]["type"] == "Warning", events[0]
    assert "relative" in events[0]["message"], events[0]

    # kedge stops serving the Ingress (another class): its status is removed.
    other = cluster.api.get("Ingress", "default", "web")
    other["spec"]["ingressClassName"] = "someone-else"
    cluster.api.apply(other)
    poll(lambda: ingress_ips("web") == [], timeout(10), what="Ingress status removed")
