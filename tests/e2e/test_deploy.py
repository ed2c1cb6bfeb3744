"""deploy/ validated offline: kustomize builds it, kubectl maps and prints every object (a
client-side dry run against the test API server's discovery), and the fields that matter are
checked: namespaces, selectors, probes, resources, security, least-privilege RBAC, and that
every flag the manifests pass exists in `kedge serve`."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from conftest import KEDGE_BIN, KEDGE_SOURCE_DIR, timeout
from kube import Cluster

KUBECTL = shutil.which("kubectl")
pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed: deploy/ "
                                "is not validated")
DEPLOY = KEDGE_SOURCE_DIR / "deploy"


@pytest.fixture(scope="module")
def objects(tmp_path_factory):
    built = subprocess.run([KUBECTL, "kustomize", str(DEPLOY)], capture_output=True, text=True,
                           timeout=timeout(60))
    assert built.returncode == 0, built.stderr
    cluster = Cluster(tmp_path_factory.mktemp("deploy"))
    try:
        r = subprocess.run([KUBECTL, "--kubeconfig", cluster.kubeconfig, "create", "--dry-run=client",
                            "--validate=false", "-o", "json", "-k", str(DEPLOY)],
                           capture_output=True, text=True, timeout=timeout(90))
    finally:
        cluster.stop()
    assert r.returncode == 0, r.stderr
    docs, text, pos = [], r.stdout, 0
    decoder = json.JSONDecoder()
    while pos < len(text):
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            break
        doc, pos = decoder.raw_decode(text, pos)
        docs.extend(doc["items"] if doc.get("kind") == "List" else [doc])
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def one(objects, kind, name="kedge"):
    assert (kind, name) in objects, sorted(objects)
    return objects[(kind, name)]


def workloads(objects):
    return [one(objects, "Deployment"), one(objects, "DaemonSet", "kedge-node")]


def test_every_piece_is_there_in_its_namespace(objects):
    kinds = {k for k, _ in objects}
    assert kinds == {"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role",
                     "RoleBinding", "IngressClass", "Deployment", "DaemonSet", "Service",
                     "PodDisruptionBudget"}
    cluster_scoped = {"Namespace", "ClusterRole", "ClusterRoleBinding", "IngressClass"}
    for (kind, name), o in objects.items():
        if kind not in cluster_scoped:
            assert o["metadata"].get("namespace") == "kedge", (kind, name)
    assert one(objects, "IngressClass")["spec"]["controller"] == "kedge.dev/ingress-controller"


def test_workloads_probes_resources_and_security(objects):
    for w in workloads(objects):
        spec = w["spec"]["template"]["spec"]
        sel = w["spec"]["selector"]["matchLabels"]
        labels = w["spec"]["template"]["metadata"]["labels"]
        assert all(labels.get(k) == v for k, v in sel.items()), w["metadata"]["name"]
        assert spec["serviceAccountName"] == "kedge"
        assert spec["securityContext"]["runAsNonRoot"] is True
        (c,) = spec["containers"]
        assert c["image"].startswith("kedge:")
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        admin = next(a for a in c["args"] if a.startswith("--admin-listen="))
        assert admin.endswith(f":{ports['admin']}")
        assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "admin"}
        assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "admin"}
        assert c["resources"]["requests"]["cpu"] and c["resources"]["requests"]["memory"]
        assert c["resources"]["limits"]["memory"]
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
        assert sc["capabilities"]["drop"] == ["ALL"]
        env = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in c["env"]}
        assert env["POD_NAME"] == "metadata.name"
    assert one(objects, "DaemonSet", "kedge-node")["spec"]["template"]["spec"]["hostNetwork"]


def test_every_flag_exists_in_kedge_serve(objects):
    help_text = subprocess.run([KEDGE_BIN, "serve", "--help"], capture_output=True, text=True,
                               timeout=timeout(30)).stdout
    known = set(re.findall(r"(--[a-z0-9-]+)", help_text))
    for w in workloads(objects):
        args = w["spec"]["template"]["spec"]["containers"][0]["args"]
        assert args[0] == "serve"
        for a in args[1:]:
            assert a.split("=")[0] in known, (w["metadata"]["name"], a)


def test_service_and_budget_select_the_ingress_pods(objects):
    dep = one(objects, "Deployment")
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    ports = {p["name"] for p in dep["spec"]["template"]["spec"]["containers"][0]["ports"]}
    svc = one(objects, "Service")
    assert svc["spec"]["type"] == "LoadBalancer"
    assert all(pod_labels.get(k) == v for k, v in svc["spec"]["selector"].items())
    assert {p["targetPort"] for p in svc["spec"]["ports"]} <= ports
    assert "--publish-service=kedge/kedge" in dep["spec"]["template"]["spec"]["containers"][0]["args"]
    pdb = one(objects, "PodDisruptionBudget")
    assert all(pod_labels.get(k) == v for k, v in pdb["spec"]["selector"]["matchLabels"].items())
    assert pdb["spec"]["minAvailable"] < dep["spec"]["replicas"]


def test_rbac_is_least_privilege(objects):
    def grants(rules):
        out = set()
        for r in rules:
            assert "*" not in r["verbs"] and "*" not in r["resources"], r
            for g in r["apiGroups"]:
                for res in r["resources"]:
                    for v in r["verbs"]:
                        out.add((g, res, v))
        return out
    cluster = grants(one(objects, "ClusterRole")["rules"])
    # What the API source, the status writer and the event recorder do, and nothing else.
    reads = {("", "services"), ("", "secrets"), ("discovery.k8s.io", "endpointslices"),
             ("networking.k8s.io", "ingresses"), ("networking.k8s.io", "ingressclasses")}
    for g, res in reads:
        assert {(g, res, "list"), (g, res, "watch")} <= cluster, res
    writes = {(g, res, v) for g, res, v in cluster if v not in ("get", "list", "watch")}
    assert writes == {("", "services/status", "update"),
                      ("networking.k8s.io", "ingresses/status", "update"),
                      ("", "events", "create"), ("", "events", "patch"),
                      ("events.k8s.io", "events", "create"), ("events.k8s.io", "events", "patch")}
    role = one(objects, "Role", "kedge-leader-election")
    assert grants(role["rules"]) == {("coordination.k8s.io", "leases", v)
                                     for v in ("create", "get", "update")}
    for binding in (one(objects, "ClusterRoleBinding"),
                    one(objects, "RoleBinding", "kedge-leader-election")):
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "kedge",
                                        "namespace": "kedge"}]
    # The Lease names the workloads use are the ones the Role names.
    names = {n for r in role["rules"] for n in r.get("resourceNames", [])}
    for w in workloads(objects):
        args = w["spec"]["template"]["spec"]["containers"][0]["args"]
        lease = next(a.split("=", 1)[1] for a in args if a.startswith("--leader-election-id="))
        assert lease in names
