"""A three-node cluster made of network namespaces, with kedge's nftables data plane on each node.

`lab.sh` builds the topology (prefix kn-, range 10.78.0.0/16, see `lab.sh plan`): a bridge, three
nodes with two routed pods each, and an external client. Every pod runs tools/pod_server.py on
:8080; every node runs its own `kedge serve --dataplane nftables --node-name nodeN` on its own
copy of the manifests. The lab is removed at the end even when a test fails, and every process
started here is stopped by PID. Without root or network namespaces the tests are skipped.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
LAB = HERE / "lab.sh"
POD_SERVER = HERE / "tools" / "pod_server.py"
FAKE_API = HERE.parent / "kubeapi" / "fake_apiserver.py"
KEDGE_BIN = os.environ.get("KEDGE_BIN", str(HERE.parents[1] / "build" / "src" / "kedge"))
LAB_ENV = {**os.environ, "KLAB_PREFIX": "kn", "KLAB_NET": "10.78", "KLAB_NODES": "3",
           "KLAB_PODS": "2", "KLAB_VERIFY": "0"}
NET = "10.78"
NODES = (1, 2, 3)
EXT_IP = f"{NET}.0.200"
API_IP = f"{NET}.0.2"  # on the bridge, in netns kn-br
SERVICE_CIDR = f"{NET}.96.0/24"
LB_POOL = f"{NET}.100.0/24"


def node_ip(i: int) -> str:
    return f"{NET}.0.{10 + i}"


def pod_ip(i: int, j: int) -> str:
    return f"{NET}.{10 + i}.{9 + j}"


def node_mac(i: int) -> str:
    return "02:78:00:00:00:%02d" % (10 + i)


def ns(host: str) -> str:
    return "kn-" + host


def in_ns(host: str, *cmd: str) -> list[str]:
    return ["ip", "netns", "exec", ns(host), *cmd]


def run(host: str, *cmd: str, check: bool = True, timeout: float = 30) -> str:
    r = subprocess.run(in_ns(host, *cmd), capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"{host}: {' '.join(cmd)} -> {r.returncode}: {r.stdout}{r.stderr}")
    return r.stdout


def succeeds(host: str, *cmd: str, timeout: float = 30) -> bool:
    return subprocess.run(in_ns(host, *cmd), capture_output=True, timeout=timeout).returncode == 0


def lab(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(LAB), *args], env=LAB_ENV, capture_output=True, text=True,
                          check=check, timeout=300)


def poll(fn, timeout_s: float, interval: float = 0.05, what: str = ""):
    deadline = time.monotonic() + timeout_s
    last = None
    for _ in range(int(timeout_s / interval) + 10):
        try:
            v = fn()
            if v:
                return v
        except Exception as e:  # noqa: BLE001 - "not yet"
            last = e
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what or fn} (last: {last!r})")


# ------------------------------------------------------------------------------ clients
# Client code runs inside a namespace: a short Python program per call, fed on stdin.

CLIENT = r'''
import json, socket, sys, time
a = json.loads(sys.argv[1])
out = []
for i in range(a["count"]):
    r = {"ok": False}
    try:
        if a.get("udp"):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.settimeout(a["timeout"])
            s.sendto(b"hi", (a["ip"], a["port"]))
            data = s.recv(2048)
            s.close()
            body = data.decode()
        else:
            s = socket.create_connection((a["ip"], a["port"]), timeout=a["timeout"])
            s.settimeout(a["timeout"])
            s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            data = b""
            while True:
                c = s.recv(4096)
                if not c:
                    break
                data += c
            s.close()
            body = data.split(b"\r\n\r\n", 1)[-1].decode()
        fields = dict(f.split("=", 1) for f in body.split() if "=" in f)
        r = {"ok": True, "name": fields.get("name"), "peer": fields.get("peer", "").rsplit(":", 1)[0]}
    except ConnectionRefusedError:
        r["error"] = "refused"
    except Exception as e:
        r["error"] = type(e).__name__
    out.append(r)
print(json.dumps(out))
'''


def requests(host: str, ip: str, port: int, count: int = 10, timeout: float = 2.0,
             udp: bool = False) -> list[dict]:
    """`count` new connections (or datagrams) from `host` to ip:port, one after the other."""
    args = json.dumps({"ip": ip, "port": port, "count": count, "timeout": timeout, "udp": udp})
    out = run(host, sys.executable, "-c", CLIENT, args, timeout=count * (timeout + 1) + 10)
    return json.loads(out)


# ------------------------------------------------------------------------------ manifests

def service(name: str, cluster_ip: str, node_port: int, lb_ip: str | None = None,
            local: bool = False, health_port: int | None = None) -> dict:
    spec = {"type": "LoadBalancer" if lb_ip else "NodePort", "clusterIP": cluster_ip,
            "selector": {"app": name},
            "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP",
                       "nodePort": node_port},
                      {"name": "dns", "port": 53, "targetPort": 8080, "protocol": "UDP",
                       "nodePort": node_port + 100}]}
    if lb_ip:
        spec["loadBalancerIP"] = lb_ip
    if local:
        spec["externalTrafficPolicy"] = "Local"
        if health_port:
            spec["healthCheckNodePort"] = health_port
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default"},
            "spec": spec}


def endpoint_slice(name: str, pods: list[tuple[int, int]]) -> dict:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": name + "-a", "namespace": "default",
                         "labels": {"kubernetes.io/service-name": name}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"},
                      {"name": "dns", "port": 8080, "protocol": "UDP"}],
            "endpoints": [{"addresses": [pod_ip(i, j)], "conditions": {"ready": True},
                           "nodeName": f"node{i}",
                           "targetRef": {"kind": "Pod", "name": f"node{i}-pod{j}"}}
                          for i, j in pods]}


# ------------------------------------------------------------------------------ processes

class Proc:
    def __init__(self, args: list[str], log: Path):
        self.args, self.log = args, log
        self._f = open(log, "ab")
        self.p = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=self._f,
                                  stderr=subprocess.STDOUT)

    def alive(self) -> bool:
        return self.p.poll() is None

    def stop(self, grace: float = 10) -> int | None:
        if self.alive():
            os.kill(self.p.pid, signal.SIGTERM)
            try:
                self.p.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                os.kill(self.p.pid, signal.SIGKILL)
                self.p.wait(timeout=10)
        self._f.close()
        return self.p.returncode

    def tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


class Cluster:
    """The lab with pod servers and one kedge per node."""

    def __init__(self, workdir: Path):
        self.dir = workdir
        self.pods: list[Proc] = []
        self.kedges: dict[int, Proc] = {}
        self.extra: list[Proc] = []
        self.objects: dict[str, dict] = {}
        self.api: Proc | None = None

    # manifests: every node has its own folder, written the same way
    def write(self, **objects: dict | None) -> None:
        for k, v in objects.items():
            if v is None:
                self.objects.pop(k, None)
            else:
                self.objects[k] = v
        for i in NODES:
            d = self.dir / f"node{i}" / "manifests"
            d.mkdir(parents=True, exist_ok=True)
            for old in d.glob("*.json"):
                if old.stem not in self.objects:
                    old.unlink()
            for k, v in self.objects.items():
                tmp = d / f".{k}.tmp"
                tmp.write_text(json.dumps(v))
                tmp.rename(d / f"{k}.json")

    def kedge_args(self, i: int) -> list[str]:
        return [KEDGE_BIN, "serve", "--manifests", str(self.dir / f"node{i}" / "manifests"),
                "--dataplane", "nftables", "--node-name", f"node{i}",
                "--node-address", node_ip(i), "--service-cidr", SERVICE_CIDR,
                "--lb-pool", LB_POOL, "--http-listen", "127.0.0.1:18080",
                "--admin-listen", "127.0.0.1:10254", "--workers", "1",
                "--l2-interface", "eth0", *self.membership_args(i)]

    def membership_args(self, i: int) -> list[str]:
        return ["--membership-api", f"http://{API_IP}:6443", "--member-lease-duration", "2"]

    def start_api(self) -> None:
        """The test API server on the bridge; the kedges keep their Leases there."""
        self.api = Proc(in_ns("br", sys.executable, str(FAKE_API), "--host", API_IP, "--port",
                              "6443"), self.dir / "api.log")
        self.extra.append(self.api)
        # the API server is only reachable from inside the lab: probe from node1
        probe = f"import socket; socket.create_connection(('{API_IP}', 6443), 1)"
        poll(lambda: self.api.alive() and succeeds("node1", sys.executable, "-c", probe), 20, 0.2,
             "the API server")

    def start_kedge(self, i: int) -> Proc:
        p = Proc(in_ns(f"node{i}", *self.kedge_args(i)), self.dir / f"kedge-node{i}.log")
        self.kedges[i] = p
        return p

    def table(self, i: int) -> str:
        return run(f"node{i}", "nft", "list", "table", "ip", "kedge", check=False)

    def wait_programmed(self, i: int, needle: str, timeout_s: float = 30) -> None:
        def ready():
            assert self.kedges[i].alive(), self.kedges[i].tail()
            return needle in self.table(i)
        poll(ready, timeout_s, 0.1, f"node{i} table to hold {needle}")

    def endpoints(self, i: int) -> str:
        return run(f"node{i}", "nft", "list", "map", "ip", "kedge", "endpoints", check=False)

    def service_endpoints(self, i: int, key: str) -> set[str]:
        """The endpoints ("ip . port") node i's table gives the Service address key
        ("10.78.96.10 . tcp . 80")."""
        ids = re.findall(re.escape(key) + r" : (0x[0-9a-f]+)",
                         run(f"node{i}", "nft", "list", "map", "ip", "kedge", "service-ips"))
        if not ids:
            return set()
        return set(re.findall(re.escape(ids[0]) + r" \. \d+ : ([0-9.]+ \. \d+)", self.endpoints(i)))

    def lb_owners(self, ip: str) -> list[int]:
        return [i for i in NODES
                if f"inet {ip}/32" in run(f"node{i}", "ip", "-4", "addr", "show", "dev", "eth0")]


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("network tests need root (network namespaces, nftables)")
    for tool in ("ip", "nft", "conntrack"):
        if not shutil.which(tool):
            pytest.skip(f"network tests need the {tool} tool (scripts/setup.sh installs it)")
    pre = lab("preflight", check=False)
    if pre.returncode != 0:
        pytest.skip(pre.stdout.strip() or pre.stderr.strip() or "lab preflight failed")
    if not Path(KEDGE_BIN).exists():
        pytest.skip(f"no kedge binary at {KEDGE_BIN}")
    up = lab("up", check=False)
    if up.returncode != 0:
        lab("down", check=False)
        raise AssertionError(f"lab up failed: {up.stdout}{up.stderr}")
    c = Cluster(tmp_path_factory.mktemp("net"))
    try:
        for i in NODES:
            for j in (1, 2):
                c.pods.append(Proc(in_ns(f"node{i}-pod{j}", sys.executable, str(POD_SERVER),
                                         "--name", f"node{i}-pod{j}"),
                                   c.dir / f"pod-{i}-{j}.log"))
        c.start_api()
        yield c
    finally:
        for p in list(c.kedges.values()) + c.extra + c.pods:
            p.stop(grace=10)
        lab("down", check=False)


WEB_VIP = f"{NET}.96.10"
LOCAL_VIP = f"{NET}.96.11"
WEB_LB = f"{NET}.100.1"
LOCAL_LB = f"{NET}.100.2"
HEALTH_PORT = 32001


@pytest.fixture(scope="session")
def services(cluster):
    """Service `web`: ClusterIP 10.78.96.10, NodePort 30080 (externalTrafficPolicy Cluster), LB
    IP 10.78.100.1, endpoints node1-pod1 and node2-pod1. Service `web-local`: ClusterIP
    10.78.96.11, NodePort 30081 (externalTrafficPolicy Local, health check NodePort 32001), LB IP
    10.78.100.2, the same endpoints. node3 has no endpoint of either. One kedge per node."""
    cluster.write(
        web=service("web", WEB_VIP, 30080, WEB_LB),
        web_slice=endpoint_slice("web", [(1, 1), (2, 1)]),
        web_local=service("web-local", LOCAL_VIP, 30081, LOCAL_LB, local=True,
                          health_port=HEALTH_PORT),
        web_local_slice=endpoint_slice("web-local", [(1, 1), (2, 1)]))
    for i in NODES:
        if i not in cluster.kedges or not cluster.kedges[i].alive():
            cluster.start_kedge(i)
    for i in NODES:
        cluster.wait_programmed(i, f"{pod_ip(2, 1)} . 8080")
        cluster.wait_programmed(i, f"{LOCAL_VIP} . tcp . 80")
    return cluster
