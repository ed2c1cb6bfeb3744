"""The test API server itself (tests/kubeapi/fake_apiserver.py) speaks the protocol the kedge
tests and other tests rely on: auth, discovery, paged lists, watches, 410, 409, MicroTime."""

from __future__ import annotations

import http.client
import json
import ssl

import pytest

from kube import FakeApiServer, make_cert


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    cert, key = make_cert(tmp_path_factory.mktemp("pki"))
    srv = FakeApiServer(token="t0ken", cert=cert, key=key, bookmark_interval=0.2).start()
    srv.ca = cert
    yield srv
    srv.stop()


def call(api, method: str, path: str, body=None, token: str = "t0ken", ctype="application/json"):
    ctx = ssl.create_default_context(cafile=api.ca)
    c = http.client.HTTPSConnection("127.0.0.1", api.port, context=ctx, timeout=10)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": ctype}
    c.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, json.loads(data) if data else None


def lease(holder: str, renew: str, rv: str | None = None) -> dict:
    md = {"name": "l", "namespace": "kedge"}
    if rv:
        md["resourceVersion"] = rv
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": md,
            "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15, "renewTime": renew,
                     "acquireTime": renew, "leaseTransitions": 0}}


def test_auth_and_discovery(api):
    status, body = call(api, "GET", "/api/v1/services", token="wrong")
    assert status == 401 and body["kind"] == "Status" and body["code"] == 401
    status, body = call(api, "GET", "/apis/networking.k8s.io/v1")
    names = {r["name"] for r in body["resources"]}
    assert {"ingresses", "ingresses/status", "ingressclasses"} <= names
    status, body = call(api, "GET", "/apis")
    assert "coordination.k8s.io" in {g["name"] for g in body["groups"]}


def test_paged_list_items_without_kind_and_expired_continue(api):
    for i in range(5):
        api.add({"apiVersion": "v1", "kind": "ConfigMap",
                 "metadata": {"name": f"cm{i}", "namespace": "paged"}})
    status, page = call(api, "GET", "/api/v1/namespaces/paged/configmaps?limit=2")
    assert status == 200 and page["kind"] == "ConfigMapList" and len(page["items"]) == 2
    assert "kind" not in page["items"][0] and page["metadata"]["continue"]
    status, page2 = call(api, "GET", "/api/v1/namespaces/paged/configmaps?limit=2&continue="
                         + page["metadata"]["continue"])
    assert [i["metadata"]["name"] for i in page2["items"]] == ["cm2", "cm3"]
    assert page2["metadata"]["resourceVersion"] == page["metadata"]["resourceVersion"]
    status, whole = call(api, "GET", "/api/v1/namespaces/paged/configmaps?limit=2&resourceVersion=0")
    assert len(whole["items"]) == 5 and "continue" not in whole["metadata"]
    api.expire()
    status, body = call(api, "GET", "/api/v1/namespaces/paged/configmaps?limit=2&continue="
                        + page2["metadata"]["continue"])
    assert status == 410 and body["reason"] == "Expired"


def watch_lines(api, path: str, n: int) -> list[dict]:
    ctx = ssl.create_default_context(cafile=api.ca)
    c = http.client.HTTPSConnection("127.0.0.1", api.port, context=ctx, timeout=10)
    c.request("GET", path, headers={"Authorization": "Bearer t0ken"})
    r = c.getresponse()
    assert r.status == 200 and r.getheader("Transfer-Encoding") == "chunked"
    out = []
    for _ in range(n):
        line = r.readline()
        if not line:
            break
        out.append(json.loads(line))
    c.close()
    return out


def test_watch_resume_bookmark_and_in_stream_410(api):
    created = api.add({"apiVersion": "v1", "kind": "ConfigMap",
                       "metadata": {"name": "w", "namespace": "watch"}})
    rv = created["metadata"]["resourceVersion"]
    api.apply({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "w", "namespace": "watch"}, "data": {"a": "1"}})
    api.delete("ConfigMap", "watch", "w")
    events = watch_lines(api, f"/api/v1/namespaces/watch/configmaps?watch=1&resourceVersion={rv}"
                         "&allowWatchBookmarks=true", 3)
    assert [e["type"] for e in events] == ["MODIFIED", "DELETED", "BOOKMARK"]
    assert events[0]["object"]["kind"] == "ConfigMap"
    assert set(events[2]["object"]) == {"kind", "apiVersion", "metadata"}
    api.expire()
    events = watch_lines(api, f"/api/v1/namespaces/watch/configmaps?watch=1&resourceVersion={rv}", 2)
    assert len(events) == 1 and events[0]["type"] == "ERROR"
    assert events[0]["object"]["code"] == 410 and events[0]["object"]["reason"] == "Expired"


def test_lease_conflicts_and_micro_time(api):
    path = "/apis/coordination.k8s.io/v1/namespaces/kedge/leases"
    status, body = call(api, "POST", path, lease("a", "2026-01-01T00:00:00.000000Z"))
    assert status == 201
    rv = body["metadata"]["resourceVersion"]
    status, body = call(api, "POST", path, lease("b", "2026-01-01T00:00:00.000000Z"))
    assert status == 409 and body["reason"] == "AlreadyExists"
    status, body = call(api, "PUT", path + "/l", lease("b", "2026-01-01T00:00:01Z", rv))
    assert status == 400
    status, body = call(api, "PUT", path + "/l", lease("b", "2026-01-01T00:00:01.000000Z", rv))
    assert status == 200 and body["spec"]["holderIdentity"] == "b"
    status, body = call(api, "PUT", path + "/l", lease("c", "2026-01-01T00:00:02.000000Z", rv))
    assert status == 409 and body["reason"] == "Conflict"


def test_status_subresource(api):
    ing = api.add({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                   "metadata": {"name": "s", "namespace": "st"}, "spec": {}})
    path = "/apis/networking.k8s.io/v1/namespaces/st/ingresses/s"
    ing["status"] = {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}}
    ing["spec"] = {"ingressClassName": "ignored"}
    status, body = call(api, "PUT", path + "/status", ing)
    assert status == 200 and body["status"]["loadBalancer"]["ingress"] == [{"ip": "192.0.2.1"}]
    assert body["spec"] == {}  # /status ignores spec changes
    status, body = call(api, "PUT", path + "/status", ing)  # stale resourceVersion
    assert status == 409
    status, body = call(api, "PATCH", path, {"metadata": {"labels": {"x": "y"}}},
                        ctype="application/json")
    assert status == 415
