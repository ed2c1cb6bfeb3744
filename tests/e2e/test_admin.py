"""The admin listener: health, metrics, debug views and the read-only Kubernetes API."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from conftest import endpoint_slice, ingress, path_rule, service, timeout


@pytest.fixture(scope="module")
def admin(module_env):
    env = module_env
    e = env.echo("adm", namespace="ops")
    env.write("apps.yaml", service("adm", ns="ops"),
              endpoint_slice("adm", e.port, [e.endpoint()], ns="ops"))
    env.write("ingress.yaml",
              ingress("adm", [("adm.test", [path_rule("/", "adm")]),
                              ("*.wild.test", [path_rule("/w", "adm", "Exact")])], ns="ops"))
    return env.kedge()


def test_healthz_and_readyz(admin):
    r = admin.admin("/healthz")
    assert r.status == 200 and r.body == b"ok\n"
    r = admin.admin("/readyz")
    assert r.status == 200
    assert admin.admin("/no-such-page").status == 404


def test_metrics_count_requests_by_ingress_service_status(admin):
    for _ in range(3):
        assert admin.request("adm.test", "/").status == 200
    assert admin.request("adm.test", "/?status=503").status == 503
    assert admin.request("nowhere.test", "/").status == 404
    text = admin.metrics()
    assert "# TYPE kedge_requests_total counter" in text
    ok = admin.metric("kedge_requests_total",
                      'ingress="ops/adm",service="ops/adm:80",status="200"')
    assert ok is not None and ok >= 3, text
    assert admin.metric("kedge_requests_total",
                        'ingress="ops/adm",service="ops/adm:80",status="503"') >= 1
    assert admin.metric("kedge_requests_total", 'ingress="",service="",status="404"') >= 1
    assert admin.metric("kedge_upstream_latency_seconds_count") >= 4
    # Every sample line parses as Prometheus text.
    for line in text.splitlines():
        if line and not line.startswith("#"):
            assert re.fullmatch(r'[a-z_]+(\{[^}]*\})? [0-9.e+\-]+|[a-z_]+(\{[^}]*\})? \+?Inf',
                                line), line


def test_debug_snapshot_lists_hosts(admin):
    snap = admin.admin_json("/debug/snapshot")
    assert "adm.test" in snap["hosts"]
    assert "*.wild.test" in snap["hosts"]
    route = snap["hosts"]["adm.test"][0]
    assert route["path"] == "/" and route["match"] == "Prefix" and route["ingress"] == "ops/adm"
    assert snap["hosts"]["*.wild.test"][0]["match"] == "Exact"
    assert snap["ingresses"] == ["ops/adm"]
    cluster = snap["clusters"]["ops/adm:80"]
    assert len(cluster["endpoints"]) == 1 and cluster["endpoints"][0]["pod"] == "adm-pod"


def test_debug_errors_empty(admin):
    assert admin.admin_json("/debug/errors") == {"issues": []}


def test_api_discovery(admin):
    api = admin.admin_json("/api")
    assert api["kind"] == "APIVersions" and "v1" in api["versions"]
    apis = admin.admin_json("/apis")
    assert apis["kind"] == "APIGroupList"
    groups = {g["name"] for g in apis["groups"]}
    assert {"networking.k8s.io", "discovery.k8s.io"} <= groups
    core = admin.admin_json("/api/v1")
    assert "services" in {r["name"] for r in core["resources"]}


def test_api_list_services(admin):
    lst = admin.admin_json("/api/v1/services")
    assert lst["kind"] == "ServiceList"
    names = [(i["metadata"]["namespace"], i["metadata"]["name"]) for i in lst["items"]]
    assert names == [("ops", "adm")]
    assert admin.admin_json("/api/v1/namespaces/ops/services")["items"][0]["metadata"]["name"] \
        == "adm"
    assert admin.admin_json("/api/v1/namespaces/other/services")["items"] == []


def test_api_list_ingresses_with_status(admin):
    lst = admin.admin_json("/apis/networking.k8s.io/v1/ingresses")
    assert lst["kind"] == "IngressList"
    assert len(lst["items"]) == 1
    ing = lst["items"][0]
    assert ing["metadata"]["name"] == "adm"
    assert ing["status"]["loadBalancer"]["ingress"] == [{"ip": "127.0.0.1"}]
    assert ing["spec"]["rules"][0]["host"] == "adm.test"


def test_api_list_endpointslices(admin):
    lst = admin.admin_json("/apis/discovery.k8s.io/v1/endpointslices")
    assert lst["kind"] == "EndpointSliceList"
    assert [i["metadata"]["name"] for i in lst["items"]] == ["adm-slice"]
    assert lst["items"][0]["endpoints"][0]["targetRef"]["name"] == "adm-pod"


def test_api_get_one_object(admin):
    svc = admin.admin_json("/api/v1/namespaces/ops/services/adm")
    assert svc["kind"] == "Service" and svc["apiVersion"] == "v1"
    assert svc["metadata"]["name"] == "adm" and svc["metadata"]["namespace"] == "ops"
    ing = admin.admin_json("/apis/networking.k8s.io/v1/namespaces/ops/ingresses/adm")
    assert ing["kind"] == "Ingress"
    assert ing["status"]["loadBalancer"]["ingress"][0]["ip"] == "127.0.0.1"


def test_api_missing_object_is_404_status(admin):
    r = admin.admin("/api/v1/namespaces/ops/services/nope")
    assert r.status == 404
    body = json.loads(r.body)
    assert body["kind"] == "Status" and body["status"] == "Failure"
    assert body["reason"] == "NotFound" and body["code"] == 404
    assert "nope" in body["message"]
    r = admin.admin("/apis/networking.k8s.io/v1/namespaces/ops/ingresses/nope")
    assert r.status == 404 and json.loads(r.body)["reason"] == "NotFound"
    r = admin.admin("/apis/example.com/v1/widgets")
    assert r.status == 404 and json.loads(r.body)["kind"] == "Status"


def test_api_is_read_only(admin):
    r = admin.admin("/api/v1/namespaces/ops/services/adm", method="DELETE")
    assert r.status in (405, 403)


def test_kubectl_get(admin, tmp_path):
    kubectl = shutil.which("kubectl")
    if not kubectl:
        pytest.skip("kubectl not installed: the read-only API is covered by the raw HTTP tests")
    env = {"KUBECONFIG": str(tmp_path / "none"), "HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    r = subprocess.run([kubectl, "--server", f"http://127.0.0.1:{admin.admin_port}", "get",
                        "ingress,services,endpointslices", "-A"],
                       capture_output=True, text=True, timeout=timeout(60), env=env)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    for name in ("ingress.networking.k8s.io/adm", "service/adm",
                 "endpointslice.discovery.k8s.io/adm-slice"):
        assert re.search(rf"^ops\s+{re.escape(name)}\s", out, re.M), out
    # kubectl decodes the objects too: the Ingress status carries the published address.
    r = subprocess.run([kubectl, "--server", f"http://127.0.0.1:{admin.admin_port}", "get",
                        "ingress", "-n", "ops", "adm", "-o",
                        "jsonpath={.status.loadBalancer.ingress[0].ip}"],
                       capture_output=True, text=True, timeout=timeout(60), env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "127.0.0.1"
