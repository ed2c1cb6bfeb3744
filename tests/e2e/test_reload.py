"""Manifest changes while serving: hot changes under load, and invalid manifests."""

from __future__ import annotations

import os
import threading
import time
from collections import Counter

from conftest import (
    SANITIZED,
    endpoint_slice,
    free_port,
    ingress,
    path_rule,
    poll,
    service,
    timeout,
)

# How soon a written manifest must be in effect.
RELOAD_BOUND_S = 1.0 * (3 if SANITIZED else 1)


class LoadClient(threading.Thread):
    """Requests in a loop on keep-alive connections until stopped (bounded in time and count);
    records every failure."""

    def __init__(self, kedge, host: str, path: str, max_seconds: float):
        super().__init__(daemon=True)
        self.kedge, self.host, self.path = kedge, host, path
        self.deadline = time.monotonic() + max_seconds
        self.stop_flag = threading.Event()
        self.ok = 0
        self.failures: list[str] = []
        self.pods: Counter = Counter()
        self.connections = 0

    def run(self) -> None:
        conn = None
        for i in range(200000):
            if self.stop_flag.is_set() or time.monotonic() > self.deadline:
                break
            if conn is None or i % 100 == 0:  # a new connection now and then (other worker)
                if conn is not None:
                    conn.close()
                conn = self.kedge.connection(timeout_s=5)
                self.connections += 1
            try:
                r = self.kedge.request(self.host, self.path, conn=conn)
                if r.status == 200:
                    self.ok += 1
                    self.pods[r.json()["pod"]] += 1
                else:
                    self.failures.append(f"status {r.status}: {r.body[:100]!r}")
            except Exception as e:  # noqa: BLE001 - every failure counts
                self.failures.append(repr(e))
                conn.close()
                conn = None
        if conn is not None:
            conn.close()


def test_hot_changes_under_load(env):
    port = free_port("127.0.0.2", "127.0.0.3")
    a = env.echo("stable", pod="stable-a", ip="127.0.0.2", port=port)
    b = env.echo("stable", pod="stable-b", ip="127.0.0.3", port=port)
    extra = env.echo("extra")

    def write_apps(*echos):
        env.write("apps.yaml",
                  service("stable"), endpoint_slice("stable", port, [e.endpoint() for e in echos]),
                  service("extra"), endpoint_slice("extra", extra.port, [extra.endpoint()]))

    def write_ingress(new_host: bool, other_path: bool):
        paths = [path_rule("/", "stable")]
        if other_path:
            paths.append(path_rule("/other", "extra"))
        docs = [ingress("main", [("stable.test", paths)])]
        if new_host:
            docs.append(ingress("added", [("new.test", [path_rule("/", "extra")])]))
        env.write("ingress.yaml", *docs)

    write_apps(a)
    write_ingress(new_host=False, other_path=True)
    k = env.kedge()
    assert k.service_of("new.test") == 404

    client = LoadClient(k, "stable.test", "/load", max_seconds=timeout(8))
    client.start()
    try:
        poll(lambda: client.ok >= 20, timeout(5), what="the load client to get going")

        # 1. A new host, reachable within the bound.
        write_ingress(new_host=True, other_path=True)
        written = time.monotonic()
        poll(lambda: k.service_of("new.test") == "extra", RELOAD_BOUND_S, interval=0.01,
             what="new.test to be served")
        assert time.monotonic() - written < RELOAD_BOUND_S

        # 2. Endpoints move between the two running backends.
        def only(pod):
            return lambda: all(k.get_json("stable.test", "/probe")["pod"] == pod for _ in range(4))
        write_apps(b)
        poll(only("stable-b"), RELOAD_BOUND_S, interval=0.01, what="traffic to move to b")
        write_apps(a, b)
        poll(lambda: {k.get_json("stable.test")["pod"] for _ in range(6)} == {"stable-a", "stable-b"},
             RELOAD_BOUND_S, interval=0.01, what="traffic to spread over a and b")
        write_apps(a)
        poll(only("stable-a"), RELOAD_BOUND_S, interval=0.01, what="traffic to move back to a")

        # 3. A path the client does not use goes away and comes back.
        assert k.service_of("stable.test", "/other") == "extra"
        write_ingress(new_host=True, other_path=False)
        poll(lambda: k.service_of("stable.test", "/other") == "stable", RELOAD_BOUND_S,
             interval=0.01, what="/other to be removed")
        write_ingress(new_host=True, other_path=True)
        poll(lambda: k.service_of("stable.test", "/other") == "extra", RELOAD_BOUND_S,
             interval=0.01, what="/other to come back")

        # Keep the client going a little after the last change.
        seen = client.ok
        poll(lambda: client.ok >= seen + 20, timeout(5), what="more load after the changes")
    finally:
        client.stop_flag.set()
        client.join(timeout(15))
    assert not client.is_alive()
    assert client.failures == [], client.failures[:10]
    assert client.ok >= 40  # the load really ran (sanitizer builds are several times slower)
    assert set(client.pods) == {"stable-a", "stable-b"}, client.pods
    # The first load and six changes. The admin state is set just after the workers have the
    # snapshot (so that /readyz never runs ahead of them): the counter may lag the routes a moment.
    poll(lambda: k.metric("kedge_config_reloads_total") >= 7, timeout(2), what="seven reloads")


def test_removed_file_removes_routes(env):
    e = env.echo("gone")
    env.write("apps.yaml", service("gone"), endpoint_slice("gone", e.port, [e.endpoint()]))
    env.write("ingress.yaml", ingress("gone", [("gone.test", [path_rule("/", "gone")])]))
    k = env.kedge()
    assert k.service_of("gone.test") == "gone"
    env.remove("ingress.yaml")
    poll(lambda: k.service_of("gone.test") == 404, RELOAD_BOUND_S, interval=0.01,
         what="the route to go away")


def test_new_subfolder_is_watched(env):
    e = env.echo("sub")
    env.write("apps.yaml", service("sub"), endpoint_slice("sub", e.port, [e.endpoint()]))
    k = env.kedge()
    env.write("team-a/nested/ingress.yaml",
              ingress("sub", [("sub.test", [path_rule("/", "sub")])]))
    poll(lambda: k.service_of("sub.test") == "sub", timeout(3), interval=0.01,
         what="an Ingress in a new subfolder")


def test_a_keep_alive_connection_follows_each_change(env):
    """A connection routes each request on the configuration current when its head arrives,
    however often it asked the same before: after a change, the next request on a connection
    that stayed open takes the new route."""
    one, two = env.echo("one"), env.echo("two")
    env.write("apps.yaml", service("one"), endpoint_slice("one", one.port, [one.endpoint()]),
              service("two"), endpoint_slice("two", two.port, [two.endpoint()]))
    env.write("ingress.yaml", ingress("site", [("first.test", [path_rule("/", "one")]),
                                               ("second.test", [path_rule("/", "two")])]))
    k = env.kedge()
    conn = k.connection(timeout_s=5)
    try:
        def served(host: str, path: str = "/") -> str:
            r = k.request(host, path, conn=conn)
            assert r.status == 200, (host, path, r.status)
            return r.json()["service"]

        hosts = ["first.test", "first.test", "second.test", "first.test", "FIRST.test:80"]
        assert [served(h) for h in hosts] == ["one", "one", "two", "one", "one"]
        assert served("first.test", "/a") == "one"
        env.write("ingress.yaml", ingress("site", [("first.test", [path_rule("/", "two")]),
                                                   ("second.test", [path_rule("/", "one")])]))
        poll(lambda: served("first.test", "/a") == "two", RELOAD_BOUND_S, interval=0.01,
             what="the open connection to take the new route")
        assert served("second.test") == "one"
        assert served("first.test", "/a") == "two"
    finally:
        conn.close()


def _threads(pid: int) -> dict[str, list[int]]:
    """The nice values of a process's threads, by thread name."""
    out: dict[str, list[int]] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                name = f.read().strip()
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                stat = f.read()
        except FileNotFoundError:  # the thread ended meanwhile
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) "
        out.setdefault(name, []).append(int(fields[16]))  # field 19 of stat: nice
    return out


def test_changes_are_made_at_a_lower_priority_than_requests_are_served(env):
    # On a busy core a change waits for the workers, not they for it: the control thread runs
    # 5 nice steps below the process's own value, the workers at it; all are named for top -H.
    e = env.echo("app")
    env.write("apps.yaml", service("app"), endpoint_slice("app", e.port, [e.endpoint()]),
              ingress("app", [("app.test", [path_rule("/", "app")])]))
    k = env.kedge(workers=2)
    own = os.getpriority(os.PRIO_PROCESS, k.proc.pid)
    threads = poll(lambda: (t := _threads(k.proc.pid)) and "kedge-control" in t and t,
                   timeout(5), what="the control thread")
    assert threads["kedge-control"] == [min(own + 5, 19)]
    assert threads["kedge-worker0"] == [own] and threads["kedge-worker1"] == [own]
    # And a change still lands while the workers serve.
    env.write("more.yaml", ingress("more", [("more.test", [path_rule("/", "app")])]))
    poll(lambda: k.service_of("more.test") == "app", RELOAD_BOUND_S, what="the new host")
