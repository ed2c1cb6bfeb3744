"""Services across three nodes with the nftables data plane (see conftest.py for the lab and
the `services` fixture for the Services)."""

from __future__ import annotations

import json
import sys
import threading
import time

import pytest

from conftest import (EXT_IP, HEALTH_PORT, NODES, WEB_VIP, endpoint_slice, node_ip, pod_ip,
                      poll, requests, run)

def wait_web(cluster, pods: list[tuple[int, int]]) -> None:
    want = {f"{pod_ip(i, j)} . 8080" for i, j in pods}
    for n in NODES:
        poll(lambda: cluster.service_endpoints(n, f"{WEB_VIP} . tcp . 80") == want, 20, 0.1,
             f"node{n} to give web the endpoints {sorted(want)}")


def names(results: list[dict]) -> set[str]:
    return {r["name"] for r in results if r["ok"]}


def failures(results: list[dict]) -> list[dict]:
    return [r for r in results if not r["ok"]]


def test_table_holds_shared_maps_only(services):
    table = services.table(1)
    for m in ("map service-ips", "map service-nodeports", "map backends", "map endpoints"):
        assert m in table
    # Chains do not grow with Services: one pick chain per endpoint count, no per-Service chain.
    assert "chain pick-2" in table and "chain pick-1" in table
    assert "web" not in table


def test_cluster_ip_from_pods_on_every_node(services):
    for i in NODES:
        got = requests(f"node{i}-pod2", WEB_VIP, 80, count=16)
        assert not failures(got), got
        assert names(got) == {"node1-pod1", "node2-pod1"}, got
        # No SNAT between pods: the endpoint sees the calling pod.
        assert {r["peer"] for r in got} == {pod_ip(i, 2)}, got


def test_cluster_ip_from_a_node_itself(services):
    got = requests("node3", WEB_VIP, 80, count=8)
    assert not failures(got), got
    assert names(got) <= {"node1-pod1", "node2-pod1"}


def test_hairpin_an_endpoint_reaches_its_own_service(services):
    got = requests("node1-pod1", WEB_VIP, 80, count=16)
    assert not failures(got), got
    assert "node1-pod1" in names(got), got
    for r in got:
        if r["name"] == "node1-pod1":
            assert r["peer"] != pod_ip(1, 1), r  # masqueraded, or the pod drops its own reply


def test_udp_cluster_ip(services):
    got = requests("node3-pod1", WEB_VIP, 53, count=8, udp=True)
    assert not failures(got), got
    assert names(got) <= {"node1-pod1", "node2-pod1"}


def test_node_port_policy_cluster_on_every_node(services):
    seen = set()
    for i in NODES:
        got = requests("ext", node_ip(i), 30080, count=10)
        assert not failures(got), (i, got)
        seen |= names(got)
        # Masqueraded: the endpoint sees a node, never the client.
        assert EXT_IP not in {r["peer"] for r in got}, got
    assert seen == {"node1-pod1", "node2-pod1"}


def test_node_port_policy_local_keeps_the_client_address(services):
    for i in (1, 2):
        got = requests("ext", node_ip(i), 30081, count=6)
        assert not failures(got), got
        assert names(got) == {f"node{i}-pod1"}, got
        assert {r["peer"] for r in got} == {EXT_IP}, got
    # node3 has no local endpoint: refused.
    got = requests("ext", node_ip(3), 30081, count=2)
    assert [r.get("error") for r in got] == ["refused", "refused"], got


def test_health_check_node_port_counts_local_endpoints(services):
    code = r'''
import sys, urllib.request, urllib.error
try:
    r = urllib.request.urlopen(sys.argv[1], timeout=3)
    print(r.status, r.read().decode())
except urllib.error.HTTPError as e:
    print(e.code, e.read().decode())
'''
    def health(i):
        out = run("ext", sys.executable, "-c", code, f"http://{node_ip(i)}:{HEALTH_PORT}/healthz")
        status, body = out.split(" ", 1)
        return int(status), json.loads(body)
    status, body = poll(lambda: health(1), 10, 0.2, "health check on node1")
    assert status == 200 and body["localEndpoints"] == 1, body
    status, body = health(3)
    assert status == 503 and body["localEndpoints"] == 0, body


def test_endpoints_changed_under_load(services):
    """Endpoints are replaced while a client keeps connecting through every node; the pods that
    stay (and the one removed, still running) never fail a connection."""
    results: list[dict] = []
    stop = threading.Event()

    def client():
        n = 0
        while not stop.is_set() and n < 400:
            for i in NODES:
                results.extend(requests("ext", node_ip(i), 30080, count=3, timeout=2))
            n += 1

    t = threading.Thread(target=client)
    t.start()
    try:
        time.sleep(1.0)
        services.write(web_slice=endpoint_slice("web", [(1, 1), (2, 1), (3, 1)]))
        wait_web(services, [(1, 1), (2, 1), (3, 1)])
        time.sleep(1.0)
        services.write(web_slice=endpoint_slice("web", [(1, 1), (3, 1)]))
        wait_web(services, [(1, 1), (3, 1)])
        time.sleep(1.0)
    finally:
        stop.set()
        t.join(timeout=120)
    assert len(results) > 30, len(results)
    assert not failures(results), failures(results)[:5]
    after = requests("ext", node_ip(3), 30080, count=16)
    assert not failures(after)
    assert names(after) == {"node1-pod1", "node3-pod1"}, after
    # back to the original set for the next tests
    services.write(web_slice=endpoint_slice("web", [(1, 1), (2, 1)]))
    wait_web(services, [(1, 1), (2, 1)])


def test_one_change_is_an_element_update_not_a_reload(services):
    log = services.dir / "kedge-node1.log"
    before = log.read_text(errors="replace").count("reloading the table")
    services.write(web_slice=endpoint_slice("web", [(1, 1), (2, 2)]))
    wait_web(services, [(1, 1), (2, 2)])
    got = requests("node3-pod1", WEB_VIP, 80, count=12)
    assert not failures(got) and names(got) == {"node1-pod1", "node2-pod2"}, got
    text = log.read_text(errors="replace")
    assert text.count("reloading the table") == before
    services.write(web_slice=endpoint_slice("web", [(1, 1), (2, 1)]))
    wait_web(services, [(1, 1), (2, 1)])
