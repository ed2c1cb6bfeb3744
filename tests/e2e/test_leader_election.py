"""Two kedge replicas elect a leader through a coordination.k8s.io/v1 Lease on the fake API
server; only the leader writes status; the lease is handed over on a clean shutdown and taken
over after the leader dies."""

from __future__ import annotations

import re
import time

import pytest

from conftest import poll, timeout
from kube import Cluster, start_kedge

# Short leases, longer in a slow (sanitizer) build, which may miss a 1.5 s renew deadline.
LEASE_S = max(2, round(timeout(2)))
FAST = ("--leader-election-lease-duration", str(LEASE_S),
        "--leader-election-renew-deadline", str(LEASE_S * 0.75),
        "--leader-election-retry-period", "0.25", "--leader-election-namespace", "kedge")
MICRO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


@pytest.fixture
def cluster(tmp_path):
    c = Cluster(tmp_path)
    yield c
    c.stop()


def holder(cluster) -> str | None:
    lease = cluster.api.get("Lease", "kedge", "kedge-leader")
    return lease["spec"].get("holderIdentity") if lease else None


def test_hand_over_on_shutdown_and_take_over_after_a_crash(env, cluster):
    web = env.echo("web")
    cluster.web(web)
    a = start_kedge(env, cluster, *FAST, "--leader-election-identity", "replica-a",
                    "--publish-status-address", "192.0.2.1", label="kedge-a")
    poll(lambda: holder(cluster) == "replica-a", timeout(10), what="a leads")
    b = start_kedge(env, cluster, *FAST, "--leader-election-identity", "replica-b",
                    "--publish-status-address", "192.0.2.2", label="kedge-b")
    lease = cluster.api.get("Lease", "kedge", "kedge-leader")
    assert MICRO.match(lease["spec"]["renewTime"]) and MICRO.match(lease["spec"]["acquireTime"])
    assert lease["spec"]["leaseDurationSeconds"] == LEASE_S

    def ingress_ip():
        ing = cluster.api.get("Ingress", "default", "web")
        entries = ing.get("status", {}).get("loadBalancer", {}).get("ingress", [])
        return entries[0]["ip"] if entries else None
    poll(lambda: ingress_ip() == "192.0.2.1", timeout(10), what="status from the leader")
    time.sleep(1.0)  # b follows for a while and writes nothing
    assert holder(cluster) == "replica-a" and ingress_ip() == "192.0.2.1"
    assert b.service_of("web.example.test") == "web"  # followers serve traffic all the same

    # A clean shutdown releases the lease: b takes over well before the lease would expire.
    transitions = cluster.api.get("Lease", "kedge", "kedge-leader")["spec"]["leaseTransitions"]
    assert a.proc.stop(grace_s=timeout(10)) == 0
    released_at = time.monotonic()
    poll(lambda: holder(cluster) == "replica-b", timeout(5), what="b leads")
    assert time.monotonic() - released_at < LEASE_S * 0.9
    assert "released lease" in a.proc.log_tail(50)
    lease = cluster.api.get("Lease", "kedge", "kedge-leader")
    assert lease["spec"]["leaseTransitions"] == transitions + 1
    poll(lambda: ingress_ip() == "192.0.2.2", timeout(10), what="status from the new leader")

    # A replica that dies without releasing: the other takes over once the lease expires.
    c = start_kedge(env, cluster, *FAST, "--leader-election-identity", "replica-c",
                    label="kedge-c")
    b.proc.proc.kill()
    b.proc.proc.wait(timeout=10)
    poll(lambda: holder(cluster) == "replica-c", timeout(10), what="c takes the expired lease")
    assert c.proc.alive()
