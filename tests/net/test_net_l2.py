"""LoadBalancer IPs across three nodes: one owner per IP chosen from the live nodes (Leases in the
test API server), announced by gratuitous ARP, moved when the owner's link is cut; and a kedge
restart that rebuilds the table under established connections."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time

from conftest import (EXT_IP, LOCAL_LB, NODES, WEB_LB, in_ns, node_ip, node_mac, poll, requests,
                      run)


def expected_owner(ip: str, nodes) -> int:
    """MetalLB's L2 ordering: the smallest SHA-256 of "node#ip"."""
    return min(nodes, key=lambda i: hashlib.sha256(f"node{i}#{ip}".encode()).digest())


def single_owner(cluster, ip: str):
    owners = cluster.lb_owners(ip)
    return owners[0] if len(owners) == 1 else None


def client_mac(ip: str) -> str:
    out = run("ext", "ip", "neigh", "show", ip)
    parts = out.split()
    return parts[parts.index("lladdr") + 1] if "lladdr" in parts else ""


def test_one_owner_per_load_balancer_ip(services):
    owner = poll(lambda: single_owner(services, WEB_LB), 30, 0.2, f"one owner of {WEB_LB}")
    assert owner == expected_owner(WEB_LB, NODES)
    # Policy Local: only nodes with a ready endpoint (node1, node2) may own it.
    local_owner = poll(lambda: single_owner(services, LOCAL_LB), 30, 0.2, f"one owner of {LOCAL_LB}")
    assert local_owner == expected_owner(LOCAL_LB, (1, 2))
    # It stays that way.
    time.sleep(1.0)
    assert services.lb_owners(WEB_LB) == [owner]
    assert services.lb_owners(LOCAL_LB) == [local_owner]


def test_load_balancer_ip_from_the_client(services):
    owner = poll(lambda: single_owner(services, WEB_LB), 30, 0.2, f"one owner of {WEB_LB}")
    got = requests("ext", WEB_LB, 80, count=12)
    assert all(r["ok"] for r in got), got
    assert {r["name"] for r in got} <= {"node1-pod1", "node2-pod1"}
    assert client_mac(WEB_LB) == node_mac(owner)
    local_owner = poll(lambda: single_owner(services, LOCAL_LB), 30, 0.2, "LB owner")
    got = requests("ext", LOCAL_LB, 80, count=6)
    assert all(r["ok"] for r in got), got
    assert {r["name"] for r in got} == {f"node{local_owner}-pod1"}, got
    assert {r["peer"] for r in got} == {EXT_IP}, got  # Local: the client's address kept


PROBE = r'''
import json, socket, sys, time
ip, seconds = sys.argv[1], float(sys.argv[2])
t_end = time.monotonic() + seconds
log = []
while time.monotonic() < t_end:
    t = time.time()
    ok = False
    try:
        s = socket.create_connection((ip, 80), timeout=0.25)
        s.settimeout(0.25)
        s.sendall(b"GET / HTTP/1.1\r\nHost: p\r\n\r\n")
        data = b""
        while True:
            c = s.recv(4096)
            if not c:
                break
            data += c
        s.close()
        ok = b" 200 " in data
    except OSError:
        pass
    log.append([t, ok])
    time.sleep(max(0, 0.05 - (time.time() - t)))
print(json.dumps(log))
'''


def test_failover_when_the_owner_link_is_cut(services):
    owner = poll(lambda: single_owner(services, WEB_LB), 30, 0.2, f"one owner of {WEB_LB}")
    requests("ext", WEB_LB, 80, count=2)  # the client has a REACHABLE entry for the owner
    probe = subprocess.Popen(in_ns("ext", sys.executable, "-c", PROBE, WEB_LB, "9"),
                             stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(1.5)
        run("br", "ip", "link", "set", f"n{owner}", "down")
        cut = time.time()  # the link is down from here on
        out, _ = probe.communicate(timeout=60)
    finally:
        if probe.poll() is None:
            probe.kill()
            probe.wait()
        run("br", "ip", "link", "set", f"n{owner}", "up")
    log = json.loads(out)
    before = [ok for t, ok in log if t < cut - 0.3]
    assert before and all(before[-5:]), "the LB IP did not answer before the cut"
    after = [(t, ok) for t, ok in log if t >= cut]
    assert after and not after[0][1], "the first request after the cut was answered"
    first_ok = next((t for t, ok in after if ok), None)
    assert first_ok is not None, "no answer after the owner's link was cut"
    blocked = first_ok - cut  # from the link going down to the first answered request
    print(f"failover: client blocked {blocked:.2f} s")
    (services.dir / "failover.txt").write_text(f"{blocked:.3f}\n")
    # The failover time itself (goal < 3 s, measured in docs/nftables.md) is a figure to report,
    # not a pass mark; the test asserts that another node takes over at all, well within the
    # lease expiry plus a generous margin for a loaded or sanitized run.
    assert blocked < 20.0, blocked
    new_owner = [i for i in services.lb_owners(WEB_LB) if i != owner]
    assert new_owner == [expected_owner(WEB_LB, set(NODES) - {owner})], services.lb_owners(WEB_LB)
    assert client_mac(WEB_LB) == node_mac(new_owner[0])
    # Once the old owner is back, one owner again, and the client is served.
    poll(lambda: single_owner(services, WEB_LB), 30, 0.2, "one owner after the link is back")
    poll(lambda: all(r["ok"] for r in requests("ext", WEB_LB, 80, count=3)), 20, 0.5,
         "the LB IP answering again")


LINE_CLIENT = r'''
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=20)
f = s.makefile("rwb")
for cmd in sys.stdin:
    f.write(cmd.encode())
    f.flush()
    sys.stdout.write(f.readline().decode())
    sys.stdout.flush()
'''


def test_restart_rebuilds_the_table_and_keeps_established_flows(services):
    """An established TCP connection through node1's NodePort keeps working across a kedge
    restart (clean stop removes the table, the start loads it again)."""
    client = subprocess.Popen(in_ns("ext", sys.executable, "-c", LINE_CLIENT, node_ip(1), "30080"),
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        client.stdin.write("one\n")
        client.stdin.flush()
        first = client.stdout.readline()
        assert first.endswith(" one\n"), first
        pod = first.split()[0]
        k = services.kedges[1]
        assert k.stop() == 0, k.tail()
        assert "table ip kedge" not in run("node1", "nft", "list", "tables")
        services.start_kedge(1)
        services.wait_programmed(1, "30080")
        client.stdin.write("two\n")
        client.stdin.flush()
        second = client.stdout.readline()
        assert second == f"{pod} two\n", second
    finally:
        client.kill()
        client.wait()
    got = requests("ext", node_ip(1), 30080, count=4)
    assert all(x["ok"] for x in got), got
