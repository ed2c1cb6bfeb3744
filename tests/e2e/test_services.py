"""Services: ClusterIP, NodePort and LoadBalancer through the userspace L4 data plane, the
health check NodePort of externalTrafficPolicy Local, allocations kept across restarts, and the
API server's service proxy paths.

Every kedge gets its own ranges (--service-cidr, --service-node-port-range, --lb-pool), derived
from the test's block number and the pid, so two runs of this file at once do not clash. Echo
backends run `kedge echo --udp` on 127.0.0.x; all traffic stays on 127.0.0.0/8.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import KEDGE_BIN, Echo, can_connect, poll, timeout

SERVICE_PORT = 8080  # Service ports >= 1024: binding below needs root
# Blocks of address space per test; the pid spreads concurrent runs of this file apart.
_BASE = (os.getpid() % 19) * 12


class Ranges:
    """The address space of one test: Service CIDR, NodePort range and LoadBalancer pool."""

    def __init__(self, n: int):
        x = _BASE + n
        assert 0 < x < 240
        self.x = x
        self.service_cidr = f"127.21.{x}.0/24"
        self.node_port_min = 30000 + 10 * x
        self.node_port_max = self.node_port_min + 9
        self.lb_pool = f"127.20.{x}.0/24"
        self.first_cluster_ip = f"127.21.{x}.17"  # the upper band of a /24 starts at .17
        self.first_lb_ip = f"127.20.{x}.1"

    def flags(self, state_dir: Path, *extra: str) -> list[str]:
        return ["--node-address", "127.0.0.1", "--state-dir", str(state_dir),
                "--service-cidr", self.service_cidr,
                "--service-node-port-range", f"{self.node_port_min}-{self.node_port_max}",
                "--lb-pool", f"default={self.lb_pool}", *extra]


# --------------------------------------------------------------------------------------------
# Helpers


def free_tcp_udp_port(*ips: str) -> int:
    """A port free for TCP and UDP on every address in ips."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind((ips[0], 0))
            port = s.getsockname()[1]
        ok = True
        for ip in ips:
            for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
                with socket.socket(socket.AF_INET, kind) as t:
                    try:
                        t.bind((ip, port))
                    except OSError:
                        ok = False
            if not ok:
                break
        if ok:
            return port
    raise RuntimeError(f"no port free for TCP and UDP on {ips}")


def udp_echo(env, name: str, pod: str, ip: str, port: int, ns: str = "default") -> Echo:
    """`kedge echo --udp`: HTTP on TCP and a JSON reply per datagram on UDP, same address."""
    p = env._spawn([KEDGE_BIN, "echo", "--udp", "--listen", f"{ip}:{port}", "--name", name,
                    "--pod", pod, "--namespace", ns], f"echo-{pod}")

    def up():
        if not p.alive():
            raise AssertionError(f"echo {pod} exited:\n{p.log_tail()}")
        return can_connect(ip, port)
    poll(up, timeout(10), what=f"echo {pod} on {ip}:{port}")
    return Echo(p, ip, port, name, pod)


def echoes(env, name: str, count: int, ns: str = "default", first_host: int = 11) -> list[Echo]:
    """`count` echo pods of one Service on 127.0.0.N, one port for all (a slice has one port
    list)."""
    ips = [f"127.0.0.{first_host + i}" for i in range(count)]
    port = free_tcp_udp_port(*ips)
    return [udp_echo(env, name, f"{name}-{i}", ip, port, ns) for i, ip in enumerate(ips)]


def svc(name: str, ns: str = "default", type_: str = "LoadBalancer", port: int = SERVICE_PORT,
        udp: bool = True, annotations: dict | None = None, spec: dict | None = None,
        meta: dict | None = None) -> dict:
    ports = [{"name": "tcp", "port": port, "protocol": "TCP", "targetPort": "tcp"}]
    if udp:
        ports.append({"name": "udp", "port": port, "protocol": "UDP", "targetPort": "udp"})
    metadata = {"name": name, "namespace": ns, **(meta or {})}
    if annotations:
        metadata["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "Service", "metadata": metadata,
            "spec": {"type": type_, "selector": {"app": name}, "ports": ports, **(spec or {})}}


def slice_for(name: str, pods: list[Echo], ns: str = "default", node: str | None = None,
              nodes: dict[str, str] | None = None, port: int | None = None) -> dict:
    """An EndpointSlice whose port names match the Service's ("tcp", "udp")."""
    port = port or (pods[0].port if pods else 9)
    eps = []
    for e in pods:
        ep = {"addresses": [e.ip], "conditions": {"ready": True},
              "targetRef": {"kind": "Pod", "name": e.pod}}
        n = (nodes or {}).get(e.pod, node)
        if n:
            ep["nodeName"] = n
        eps.append(ep)
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"{name}-slice", "namespace": ns,
                         "labels": {"kubernetes.io/service-name": name}},
            "addressType": "IPv4",
            "ports": [{"name": "tcp", "port": port, "protocol": "TCP"},
                      {"name": "udp", "port": port, "protocol": "UDP"}],
            "endpoints": eps}


class Alloc:
    """A Service's allocations as the read API shows them."""

    def __init__(self, obj: dict):
        spec = obj["spec"]
        self.cluster_ip = spec.get("clusterIP")
        self.node_ports = {p["name"]: p.get("nodePort") for p in spec.get("ports", [])}
        self.health_check_node_port = spec.get("healthCheckNodePort")
        ingress = obj.get("status", {}).get("loadBalancer", {}).get("ingress") or [{}]
        self.lb_ip = ingress[0].get("ip")
        self.raw = obj

    def key(self):
        return (self.cluster_ip, tuple(sorted(self.node_ports.items())),
                self.health_check_node_port, self.lb_ip)

    def __repr__(self) -> str:
        return f"<Alloc {self.key()}>"


def allocation(k, name: str, ns: str = "default", lb: bool = True) -> Alloc:
    """Waits until the Service has its addresses (and LB IP when `lb`)."""
    def get():
        r = k.admin(f"/api/v1/namespaces/{ns}/services/{name}")
        if r.status != 200:
            return None
        a = Alloc(r.json())
        return a if a.cluster_ip and (a.lb_ip or not lb) else None
    return poll(get, timeout(10), what=f"allocations of {ns}/{name}")


def http_get(ip: str, port: int, path: str = "/", conn: http.client.HTTPConnection | None = None,
             timeout_s: float = 5) -> dict:
    own = conn is None
    c = conn or http.client.HTTPConnection(ip, port, timeout=timeout(timeout_s))
    try:
        c.request("GET", path, headers={"Host": "svc.test"})
        r = c.getresponse()
        body = r.read()
        assert r.status == 200, (r.status, body[:200])
        return json.loads(body)
    finally:
        if own:
            c.close()


def tcp_pods(ip: str, port: int, n: int = 6) -> list[str]:
    """The pod answering each of n requests, each on a new connection."""
    return [http_get(ip, port)["pod"] for _ in range(n)]


def udp_ask(ip: str, port: int, data: bytes, sock: socket.socket | None = None,
            tries: int = 5) -> dict:
    """Sends a datagram and returns the echo's JSON reply; the reply must come from ip:port."""
    own = sock is None
    s = sock or socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.settimeout(timeout(1))
        last: Exception | None = None
        for _ in range(tries):
            s.sendto(data, (ip, port))
            try:
                reply, source = s.recvfrom(65536)
            except socket.timeout as e:
                last = e
                continue
            assert source == (ip, port), f"reply from {source}, not {ip}:{port}"
            j = json.loads(reply)
            assert j["data"] == data.decode(), j
            return j
        raise AssertionError(f"no UDP reply from {ip}:{port}: {last!r}")
    finally:
        if own:
            s.close()


def udp_pods(ip: str, port: int, n: int = 6) -> list[str]:
    """The pod answering one datagram from each of n new sockets (n flows)."""
    return [udp_ask(ip, port, f"ping-{i}".encode())["pod"] for i in range(n)]


def wait_listening(ip: str, port: int) -> None:
    poll(lambda: can_connect(ip, port), timeout(10), what=f"a listener on {ip}:{port}")


def refused_or_reset(ip: str, port: int) -> bool:
    """True when a TCP connection gets no data: refused, reset, or closed without a byte."""
    try:
        s = socket.create_connection((ip, port), timeout=timeout(5))
    except (ConnectionRefusedError, ConnectionResetError):
        return True
    with s:
        s.settimeout(timeout(10))
        try:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            data = s.recv(1024)
        except (ConnectionResetError, BrokenPipeError):
            return True
        return data == b""


def start(env, ranges: Ranges, *extra: str, state_dir: Path | None = None):
    state_dir = state_dir or env.root / "state"
    return env.kedge(*ranges.flags(state_dir, *extra))


# --------------------------------------------------------------------------------------------
# Tests


def test_tcp_and_udp_through_cluster_ip_node_port_and_load_balancer(env):
    ranges = Ranges(1)
    pods = echoes(env, "web", 3)
    env.write("web.yaml", svc("web"), slice_for("web", pods))
    k = start(env, ranges)
    a = allocation(k, "web")
    # Addresses from the flags' ranges: the upper band of the CIDR and of the NodePort range
    # first, the pool's first address.
    assert a.cluster_ip == ranges.first_cluster_ip, a
    assert a.lb_ip == ranges.first_lb_ip, a
    assert a.raw["spec"]["clusterIPs"] == [a.cluster_ip]
    tcp_np, udp_np = a.node_ports["tcp"], a.node_ports["udp"]
    for np in (tcp_np, udp_np):
        assert ranges.node_port_min <= np <= ranges.node_port_max, a
    assert tcp_np != udp_np
    assert a.health_check_node_port is None  # externalTrafficPolicy Cluster

    want = {e.pod for e in pods}
    targets = {"ClusterIP": (a.cluster_ip, SERVICE_PORT), "NodePort": ("127.0.0.1", tcp_np),
               "LoadBalancer": (a.lb_ip, SERVICE_PORT)}
    for role, (ip, port) in targets.items():
        wait_listening(ip, port)
        seen = tcp_pods(ip, port)
        assert set(seen) == want, f"{role} {ip}:{port}: {seen}"
    # The NodePort opens on the node address only.
    assert not can_connect("127.0.0.2", tcp_np)

    udp_targets = {"ClusterIP": (a.cluster_ip, SERVICE_PORT), "NodePort": ("127.0.0.1", udp_np),
                   "LoadBalancer": (a.lb_ip, SERVICE_PORT)}
    for role, (ip, port) in udp_targets.items():
        seen = udp_pods(ip, port)
        assert set(seen) == want, f"{role} udp {ip}:{port}: {seen}"
    # One client socket is one flow: it stays on its pod.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        first = udp_ask(a.lb_ip, SERVICE_PORT, b"one", sock=s)["pod"]
        for i in range(5):
            assert udp_ask(a.lb_ip, SERVICE_PORT, f"again-{i}".encode(), sock=s)["pod"] == first

    # A large datagram both ways.
    big = os.urandom(10000).hex().encode()  # 20000 bytes
    assert udp_ask(a.cluster_ip, SERVICE_PORT, big)["data"] == big.decode()

    # Many clients at once.
    errors: list[str] = []
    def one(i: int) -> None:
        try:
            ip, port = list(targets.values())[i % 3]
            http_get(ip, port, timeout_s=10)
        except Exception as e:  # noqa: BLE001 - every failure counts
            errors.append(repr(e))
    threads = [threading.Thread(target=one, args=(i,)) for i in range(30)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout(20))
    assert not errors, errors

    # A client that half-closes after its request still gets the whole response, then EOF.
    with socket.create_connection((a.lb_ip, SERVICE_PORT), timeout=timeout(5)) as s:
        s.sendall(b"GET /half HTTP/1.1\r\nHost: svc.test\r\n\r\n")
        s.shutdown(socket.SHUT_WR)
        data = b""
        for _ in range(1000):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), data[:200]
    assert json.loads(body)["path"] == "/half"

    # Large bodies go through intact both ways (the splice path).
    c = http.client.HTTPConnection(a.lb_ip, SERVICE_PORT, timeout=timeout(10))
    try:
        body = os.urandom(3 << 20)
        c.request("POST", "/upload", body=body, headers={"Host": "svc.test"})
        resp = c.getresponse()
        j = json.loads(resp.read())
        assert resp.status == 200 and j["body_bytes"] == len(body)
        assert j["body_sha256"] == hashlib.sha256(body).hexdigest()
        c.request("GET", f"/?bytes={2 << 20}", headers={"Host": "svc.test"})
        resp = c.getresponse()
        assert resp.status == 200 and len(resp.read()) == 2 << 20
    finally:
        c.close()


def test_endpoints_replaced_under_a_running_client(env):
    ranges = Ranges(2)
    pods = echoes(env, "live", 4)
    old, new = pods[:3], pods[1:]  # live-0 leaves, live-3 joins
    env.write("live.yaml", svc("live"), slice_for("live", old))
    k = start(env, ranges)
    before = allocation(k, "live")
    targets = [(before.cluster_ip, SERVICE_PORT), ("127.0.0.1", before.node_ports["tcp"]),
               (before.lb_ip, SERVICE_PORT)]
    for ip, port in targets:
        wait_listening(ip, port)

    # Long-lived connections, one per old pod.
    held: dict[str, http.client.HTTPConnection] = {}
    for _ in range(12):
        c = http.client.HTTPConnection(before.lb_ip, SERVICE_PORT, timeout=timeout(5))
        pod = http_get("", 0, conn=c)["pod"]
        if pod in held:
            c.close()
        else:
            held[pod] = c
        if len(held) == 3:
            break
    assert set(held) == {e.pod for e in old}
    # UDP flows too: one client socket per old pod.
    flows: dict[str, socket.socket] = {}
    for i in range(12):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        pod = udp_ask(before.cluster_ip, SERVICE_PORT, f"hello-{i}".encode(), sock=sock)["pod"]
        if pod in flows:
            sock.close()
        else:
            flows[pod] = sock
        if len(flows) == 3:
            break
    assert set(flows) == {e.pod for e in old}

    results: list[tuple[str | None, str | None]] = []  # (pod of the connection, error)
    stop = threading.Event()

    def client():
        deadline = time.monotonic() + timeout(10)
        for i in range(20000):
            if stop.is_set() or time.monotonic() > deadline:
                break
            ip, port = targets[i % len(targets)]
            c = http.client.HTTPConnection(ip, port, timeout=timeout(5))
            pod = None
            try:
                pod = http_get(ip, port, conn=c)["pod"]
                again = http_get(ip, port, conn=c)["pod"]
                results.append((pod, None if again == pod else f"switched to {again}"))
            except Exception as e:  # noqa: BLE001 - every failure counts
                results.append((pod, repr(e)))
            finally:
                c.close()

    t = threading.Thread(target=client, daemon=True)
    t.start()
    try:
        time.sleep(0.5)
        generation = k.generation()
        env.write("live.yaml", svc("live"), slice_for("live", new))
        k.wait_reload(generation)
        # The new pod takes traffic soon; then no new connection reaches the one that left.
        poll(lambda: http_get(before.lb_ip, SERVICE_PORT)["pod"] == "live-3", timeout(5),
             what="the new endpoint")
        after_change = {p for ip, port in targets for p in tcp_pods(ip, port, 6)}
        assert after_change == {e.pod for e in new}, after_change
        time.sleep(0.5)
    finally:
        stop.set()
        t.join(timeout(15))
    assert not t.is_alive()

    stayed = {e.pod for e in new if e in old}
    assert len(results) > 20, results
    bad = [(pod, err) for pod, err in results if err and pod in stayed]
    assert not bad, f"requests failed on endpoints that stayed: {bad}"
    # A connection may only fail when it was on the endpoint that left; the client has one
    # connection at a time, so at most one fails before its pod is known.
    unknown = [err for pod, err in results if err and pod is None]
    assert len(unknown) <= 1, unknown
    assert {pod for pod, err in results if not err} >= {"live-1", "live-2", "live-3"}

    # Connections to endpoints that stayed are untouched; the one to the endpoint that left is
    # closed.
    for pod in ("live-1", "live-2"):
        assert http_get("", 0, conn=held[pod])["pod"] == pod
    with pytest.raises((OSError, http.client.HTTPException)):
        http_get("", 0, conn=held["live-0"])
    for c in held.values():
        c.close()
    # The UDP flows of pods that stayed keep their pod; the one whose pod left moves on.
    for pod in ("live-1", "live-2"):
        assert udp_ask(before.cluster_ip, SERVICE_PORT, b"still", sock=flows[pod])["pod"] == pod
    moved = udp_ask(before.cluster_ip, SERVICE_PORT, b"moved", sock=flows["live-0"])["pod"]
    assert moved in {e.pod for e in new}, moved
    for sock in flows.values():
        sock.close()

    after = allocation(k, "live")
    assert after.key() == before.key()


def test_session_affinity_client_ip(env):
    ranges = Ranges(3)
    pods = echoes(env, "sticky", 3)
    env.write("sticky.yaml",
              svc("sticky", spec={"sessionAffinity": "ClientIP",
                                  "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}}}),
              slice_for("sticky", pods))
    k = start(env, ranges)
    a = allocation(k, "sticky")
    wait_listening(a.lb_ip, SERVICE_PORT)
    seen = tcp_pods(a.lb_ip, SERVICE_PORT, 8)
    assert len(set(seen)) == 1, seen
    seen_c = tcp_pods(a.cluster_ip, SERVICE_PORT, 4) + tcp_pods("127.0.0.1", a.node_ports["tcp"], 4)
    assert set(seen_c) == set(seen), (seen, seen_c)
    udp_seen = udp_pods(a.cluster_ip, SERVICE_PORT, 6)
    assert len(set(udp_seen)) == 1, udp_seen

    # Affinity ends after timeoutSeconds without traffic.
    generation = k.generation()
    env.write("brief.yaml",
              svc("brief", port=SERVICE_PORT + 1,
                  spec={"sessionAffinity": "ClientIP",
                        "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 1}}}),
              slice_for("brief", pods))
    k.wait_reload(generation)
    b = allocation(k, "brief")
    wait_listening(b.cluster_ip, SERVICE_PORT + 1)
    pinned = tcp_pods(b.cluster_ip, SERVICE_PORT + 1, 4)
    assert len(set(pinned)) == 1, pinned
    time.sleep(1.5)
    later = tcp_pods(b.cluster_ip, SERVICE_PORT + 1, 4)
    assert len(set(later)) == 1 and later[0] != pinned[0], (pinned, later)

    # Without affinity the same client spreads over every pod.
    generation = k.generation()
    env.write("sticky.yaml", svc("sticky"), slice_for("sticky", pods))
    k.wait_reload(generation)
    poll(lambda: len(set(tcp_pods(a.lb_ip, SERVICE_PORT, 6))) == 3, timeout(5),
         what="round robin without affinity")


def test_shared_load_balancer_ip(env):
    ranges = Ranges(4)
    pa = echoes(env, "share-a", 1, first_host=11)
    pb = echoes(env, "share-b", 1, first_host=12)
    pc = echoes(env, "share-c", 1, first_host=13)
    key = {"metallb.universe.tf/allow-shared-ip": "team"}
    env.write("share.yaml",
              svc("share-a", port=SERVICE_PORT, annotations=key,
                  meta={"creationTimestamp": "2024-01-01T00:00:01Z"}),
              slice_for("share-a", pa),
              svc("share-b", port=SERVICE_PORT + 1, annotations=key,
                  meta={"creationTimestamp": "2024-01-01T00:00:02Z"}),
              slice_for("share-b", pb),
              # Same key, clashing port: an address of its own.
              svc("share-c", port=SERVICE_PORT, annotations=key,
                  meta={"creationTimestamp": "2024-01-01T00:00:03Z"}),
              slice_for("share-c", pc))
    k = start(env, ranges)
    a, b, c = allocation(k, "share-a"), allocation(k, "share-b"), allocation(k, "share-c")
    assert a.lb_ip == b.lb_ip == ranges.first_lb_ip, (a, b)
    assert c.lb_ip not in (None, a.lb_ip), c
    for ip, port, name in ((a.lb_ip, SERVICE_PORT, "share-a"),
                           (a.lb_ip, SERVICE_PORT + 1, "share-b"),
                           (c.lb_ip, SERVICE_PORT, "share-c")):
        wait_listening(ip, port)
        assert {http_get(ip, port)["service"] for _ in range(3)} == {name}
        assert udp_ask(ip, port, b"x")["service"] == name
    # A different key on an address already shared is refused.
    generation = k.generation()
    env.write("other.yaml",
              svc("share-d", port=SERVICE_PORT + 2,
                  annotations={"metallb.universe.tf/allow-shared-ip": "other",
                               "metallb.universe.tf/loadBalancerIPs": a.lb_ip}))
    k.wait_reload(generation)
    errors = k.admin_json("/debug/errors")["issues"]
    assert any("share-d" in json.dumps(i) and "allow-shared-ip" in json.dumps(i)
               for i in errors), errors
    r = k.admin_json("/api/v1/namespaces/default/services/share-d")
    assert not r.get("status", {}).get("loadBalancer", {}).get("ingress"), r
    assert not r["spec"].get("clusterIP"), r  # refused: holds nothing
    assert not can_connect(a.lb_ip, SERVICE_PORT + 2)

    # A pool without a free address is no conflict: the Service waits for an address and is
    # reachable on its ClusterIP and NodePorts meanwhile.
    generation = k.generation()
    env.write("waiting.yaml",
              svc("waiting", port=SERVICE_PORT + 3,
                  annotations={"metallb.universe.tf/address-pool": "nowhere"}),
              slice_for("waiting", pa))
    k.wait_reload(generation)
    w = allocation(k, "waiting", lb=False)
    assert w.lb_ip is None and w.node_ports["tcp"], w
    errors = k.admin_json("/debug/errors")["issues"]
    assert any("waiting" in json.dumps(i) and "nowhere" in json.dumps(i) for i in errors), errors
    wait_listening(w.cluster_ip, SERVICE_PORT + 3)
    assert http_get(w.cluster_ip, SERVICE_PORT + 3)["service"] == "share-a"
    assert http_get("127.0.0.1", w.node_ports["tcp"])["service"] == "share-a"


def test_allocations_survive_a_restart(env):
    ranges = Ranges(5)
    pods = echoes(env, "keep", 2)
    state = env.root / "state"
    env.write("keep.yaml",
              svc("keep", meta={"creationTimestamp": "2024-01-01T00:00:05Z"}),
              slice_for("keep", pods))
    k = start(env, ranges, state_dir=state)
    before = allocation(k, "keep")
    assert before.cluster_ip == ranges.first_cluster_ip and before.lb_ip == ranges.first_lb_ip
    saved = json.loads((state / "allocations.json").read_text())
    assert saved["services"]["default/keep"]["loadBalancerIP"] == before.lb_ip
    assert k.proc.stop(timeout(10)) == 0

    # An older Service appears while kedge is down. Without the saved state it would be
    # allocated first and take the first addresses.
    env.write("older.yaml",
              svc("older", meta={"creationTimestamp": "2024-01-01T00:00:01Z"}),
              slice_for("older", pods))
    k2 = start(env, ranges, state_dir=state)
    after = allocation(k2, "keep")
    assert after.key() == before.key(), (before, after)
    older = allocation(k2, "older")
    assert older.cluster_ip != before.cluster_ip and older.lb_ip != before.lb_ip
    assert set(older.node_ports.values()).isdisjoint(before.node_ports.values())
    wait_listening(after.lb_ip, SERVICE_PORT)
    assert http_get(after.lb_ip, SERVICE_PORT)["service"] == "keep"
    assert http_get("127.0.0.1", after.node_ports["tcp"])["service"] == "keep"
    assert udp_ask("127.0.0.1", after.node_ports["udp"], b"x")["service"] == "keep"


def test_service_without_endpoints_refuses_connections(env):
    ranges = Ranges(6)
    dead_port = free_tcp_udp_port("127.0.0.11")
    dead = Echo(None, "127.0.0.11", dead_port, "dead", "dead-0")  # nothing listens there
    env.write("empty.yaml", svc("empty"),
              svc("dead", port=SERVICE_PORT + 1), slice_for("dead", [dead]))
    k = start(env, ranges)
    a = allocation(k, "empty")
    d = allocation(k, "dead")
    for ip, port in ((a.cluster_ip, SERVICE_PORT), ("127.0.0.1", a.node_ports["tcp"]),
                     (a.lb_ip, SERVICE_PORT)):
        wait_listening(ip, port)
        assert refused_or_reset(ip, port), f"{ip}:{port} answered without endpoints"
    # An endpoint that does not accept: the same.
    wait_listening(d.lb_ip, SERVICE_PORT + 1)
    assert refused_or_reset(d.lb_ip, SERVICE_PORT + 1)
    # UDP without endpoints: dropped.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.5)
        s.sendto(b"anyone?", (a.cluster_ip, SERVICE_PORT))
        with pytest.raises((socket.timeout, ConnectionRefusedError)):
            s.recvfrom(1024)
    assert k.proc.alive()


def test_external_traffic_policy_local_health_check(env):
    ranges = Ranges(7)
    pods = echoes(env, "loc", 2)
    local_spec = {"externalTrafficPolicy": "Local"}
    env.write("loc.yaml", svc("loc", spec=local_spec),
              slice_for("loc", pods, nodes={"loc-0": "node-x", "loc-1": "node-y"}))
    k = start(env, ranges, "--node-name", "node-x")
    a = allocation(k, "loc")
    hc = a.health_check_node_port
    assert hc and ranges.node_port_min <= hc <= ranges.node_port_max, a
    assert hc not in a.node_ports.values()

    def health():
        c = http.client.HTTPConnection("127.0.0.1", hc, timeout=timeout(5))
        try:
            c.request("GET", "/healthz")
            r = c.getresponse()
            return r.status, json.loads(r.read())
        finally:
            c.close()

    wait_listening("127.0.0.1", hc)
    status, body = health()
    # One local pod, serving two ports: one endpoint.
    assert status == 200 and body["localEndpoints"] == 1, body
    assert body["service"] == {"namespace": "default", "name": "loc"}
    # A client that connects and sends nothing does not hold up the others.
    with socket.create_connection(("127.0.0.1", hc), timeout=timeout(5)) as idle:
        idle.sendall(b"GET / HTTP/1.1\r\n")  # an unfinished request
        t0 = time.monotonic()
        assert health()[0] == 200
        assert time.monotonic() - t0 < timeout(2)
    # External traffic stays on this node's pods; ClusterIP traffic uses all.
    wait_listening(a.lb_ip, SERVICE_PORT)
    assert set(tcp_pods(a.lb_ip, SERVICE_PORT, 4)) == {"loc-0"}
    assert set(tcp_pods("127.0.0.1", a.node_ports["tcp"], 4)) == {"loc-0"}
    assert set(udp_pods(a.lb_ip, SERVICE_PORT, 4)) == {"loc-0"}
    assert set(tcp_pods(a.cluster_ip, SERVICE_PORT, 4)) == {"loc-0", "loc-1"}

    # No pod on this node: 503, and external traffic is refused rather than sent elsewhere.
    generation = k.generation()
    env.write("loc.yaml", svc("loc", spec=local_spec),
              slice_for("loc", pods, node="node-y"))
    k.wait_reload(generation)

    def unhealthy():
        s, b = health()
        return (s, b) if s == 503 else None
    status, body = poll(unhealthy, timeout(5), what="503 from the health check")
    assert body["localEndpoints"] == 0, body
    assert refused_or_reset(a.lb_ip, SERVICE_PORT)
    assert set(tcp_pods(a.cluster_ip, SERVICE_PORT, 4)) == {"loc-0", "loc-1"}
    assert allocation(k, "loc").key() == a.key()


def test_service_edits_move_listeners_and_keep_addresses(env):
    ranges = Ranges(10)
    pods = echoes(env, "edit", 2)
    env.write("edit.yaml", svc("edit"), slice_for("edit", pods))
    k = start(env, ranges, "--udp-idle-timeout", "300")
    a = allocation(k, "edit")
    wait_listening(a.lb_ip, SERVICE_PORT)

    # A UDP flow stays on its pod while active, and is forgotten after --udp-idle-timeout: the
    # same client socket then starts a new flow (the next pod, round robin).
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        first = udp_ask(a.lb_ip, SERVICE_PORT, b"a", sock=s)["pod"]
        for i in range(3):
            time.sleep(0.1)
            assert udp_ask(a.lb_ip, SERVICE_PORT, b"b", sock=s)["pod"] == first
        time.sleep(1.0)
        assert udp_ask(a.lb_ip, SERVICE_PORT, b"c", sock=s)["pod"] != first

    # A new port number: the addresses and NodePorts stay (NodePorts are kept by port name),
    # the listeners move.
    generation = k.generation()
    env.write("edit.yaml", svc("edit", port=SERVICE_PORT + 10), slice_for("edit", pods))
    k.wait_reload(generation)
    b = allocation(k, "edit")
    assert b.key() == a.key(), (a, b)
    for ip in (b.cluster_ip, b.lb_ip):
        wait_listening(ip, SERVICE_PORT + 10)
        assert set(tcp_pods(ip, SERVICE_PORT + 10, 4)) == {"edit-0", "edit-1"}
        assert udp_ask(ip, SERVICE_PORT + 10, b"moved")["service"] == "edit"
        poll(lambda: not can_connect(ip, SERVICE_PORT), timeout(5), what="the old port closed")
    assert http_get("127.0.0.1", b.node_ports["tcp"])["service"] == "edit"

    # LoadBalancer → ClusterIP: the NodePorts and the LoadBalancer IP are given up.
    generation = k.generation()
    env.write("edit.yaml", svc("edit", type_="ClusterIP", port=SERVICE_PORT + 10),
              slice_for("edit", pods))
    k.wait_reload(generation)
    c = allocation(k, "edit", lb=False)
    assert c.cluster_ip == a.cluster_ip and c.lb_ip is None, c
    assert set(c.node_ports.values()) == {None}, c
    poll(lambda: not can_connect(a.lb_ip, SERVICE_PORT + 10), timeout(5),
         what="the LoadBalancer listener closed")
    assert not can_connect("127.0.0.1", a.node_ports["tcp"])
    assert http_get(c.cluster_ip, SERVICE_PORT + 10)["service"] == "edit"
    saved = json.loads((env.root / "state" / "allocations.json").read_text())
    assert saved["services"]["default/edit"]["loadBalancerIP"] == ""
    assert saved["services"]["default/edit"]["nodePorts"] == {}


def test_api_proxy(env):
    ranges = Ranges(8)
    pods = echoes(env, "api", 1, ns="tools")
    env.write("api.yaml", svc("api", ns="tools", type_="ClusterIP"),
              slice_for("api", pods, ns="tools"),
              svc("idle", ns="tools", type_="ClusterIP", port=SERVICE_PORT + 1))
    token = "s3cr3t-token-" + os.urandom(6).hex()
    token_file = env.root / "token"
    token_file.write_text(token + "\n")
    port = _free_local_port()
    k = start(env, ranges, "--api-proxy-listen", f"127.0.0.1:{port}",
              "--api-proxy-token-file", str(token_file))
    wait_listening("127.0.0.1", port)

    def get(path: str, headers: dict | None = None, method: str = "GET", body=None):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout(5))
        try:
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            return r.status, dict(r.getheaders()), r.read()
        finally:
            c.close()

    auth = {"Authorization": f"Bearer {token}"}
    base = "/api/v1/namespaces/tools/services"
    for name in ("api:tcp", f"api:{SERVICE_PORT}", "http:api:tcp", "api"):
        status, _, body = get(f"{base}/{name}/proxy/some/path?q=1", auth)
        assert status == 200, (name, status, body)
        j = json.loads(body)
        assert j["pod"] == "api-0" and j["path"] == "/some/path?q=1", j
        # The token is for kedge, not for the pod.
        assert "authorization" not in j["headers"], j["headers"]

    payload = os.urandom(100000)
    status, _, body = get(f"{base}/api:tcp/proxy/upload", auth, "POST", payload)
    assert status == 200, body
    j = json.loads(body)
    assert j["method"] == "POST" and j["body_sha256"] == hashlib.sha256(payload).hexdigest()
    # A Service without endpoints: 503.
    assert get(f"{base}/idle:tcp/proxy/", auth)[0] == 503

    # The scheme is case-insensitive, as the API server reads it.
    assert get(f"{base}/api:tcp/proxy/x", {"Authorization": f"bearer {token}"})[0] == 200

    assert get(f"{base}/api:tcp/proxy/x")[0] == 401
    assert get(f"{base}/api:tcp/proxy/x", {"Authorization": "Bearer wrong"})[0] == 401
    assert get(f"{base}/api:tcp/proxy/x", {"Authorization": f"Basic {token}"})[0] == 401
    assert get(f"{base}/api:tcp/proxy/x", {"Authorization": f"Bearer {token}x"})[0] == 401
    assert get(f"{base}/api:tcp/proxy/x", {"Authorization": f"Bearer {token[:-1]}"})[0] == 401
    assert get(f"{base}/api:tcp/proxy/x", {"Authorization": "Bearer "})[0] == 401
    status, headers, _ = get(f"{base}/api:tcp/proxy", auth)
    assert status == 301 and headers.get("Location") == f"{base}/api:tcp/proxy/", headers
    assert get(f"{base}/nope:tcp/proxy/", auth)[0] == 404
    assert get(f"{base}/api:nope/proxy/", auth)[0] == 404
    assert get("/api/v1/namespaces/other/services/api:tcp/proxy/", auth)[0] == 404
    # The proxy answers only on its own listener.
    c = http.client.HTTPConnection("127.0.0.1", k.http_port, timeout=timeout(5))
    try:
        c.request("GET", f"{base}/api:tcp/proxy/", headers=auth)
        assert c.getresponse().status == 404
    finally:
        c.close()


def _free_local_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_kubectl_get_services(env, tmp_path):
    kubectl = shutil.which("kubectl")
    if not kubectl:
        pytest.skip("kubectl not installed: the read API is checked over raw HTTP above")
    ranges = Ranges(9)
    pods = echoes(env, "kc", 1, ns="apps")
    env.write("kc.yaml", svc("kc", ns="apps"), slice_for("kc", pods, ns="apps"))
    k = start(env, ranges)
    a = allocation(k, "kc", ns="apps")
    kenv = {"KUBECONFIG": str(tmp_path / "none"), "HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    server = f"http://127.0.0.1:{k.admin_port}"

    def kubectl_run(*args: str) -> str:
        r = subprocess.run([kubectl, "--server", server, *args], capture_output=True, text=True,
                           timeout=timeout(60), env=kenv)
        assert r.returncode == 0, r.stderr
        return r.stdout

    out = kubectl_run("get", "svc", "-A")
    assert re.search(r"^apps\s+kc\s", out, re.M), out
    # The read API serves objects, not server-side tables, so kubectl prints NAME and AGE only;
    # the allocations are in the objects it decodes.
    jsonpath = ("{.spec.type} {.spec.clusterIP} {.status.loadBalancer.ingress[0].ip} "
                "{.spec.ports[0].nodePort} {.spec.ports[1].nodePort}")
    out = kubectl_run("get", "svc", "-n", "apps", "kc", "-o", f"jsonpath={jsonpath}")
    assert out.split() == ["LoadBalancer", a.cluster_ip, a.lb_ip, str(a.node_ports["tcp"]),
                           str(a.node_ports["udp"])], out
