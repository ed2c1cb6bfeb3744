"""Helpers for the tests that run kedge against the fake Kubernetes API server."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

from conftest import KEDGE_BIN, KEDGE_SOURCE_DIR, Kedge, can_connect, free_port, poll, timeout

sys.path.insert(0, str(KEDGE_SOURCE_DIR / "tests" / "kubeapi"))
from fake_apiserver import FakeApiServer, make_cert, write_kubeconfig  # noqa: E402

FIXTURES = KEDGE_SOURCE_DIR / "tests" / "kubeapi" / "fixtures"


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


class Cluster:
    """A fake API server over TLS with a bearer token read from a file, and a kubeconfig."""

    def __init__(self, root: Path):
        self.root = root
        self.cert, self.key = make_cert(root / "pki")
        self.token_file = root / "token"
        self.token_file.write_text("token-one\n")
        self.api = FakeApiServer(token="token-one", cert=self.cert, key=self.key,
                                 bookmark_interval=0.5).start()
        self.kubeconfig = write_kubeconfig(root / "kubeconfig", self.api.url, ca_file=self.cert,
                                           token_file=str(self.token_file))

    def stop(self) -> None:
        self.api.stop()

    def web(self, echo, ingress_host: str = "web.example.test") -> None:
        """The fixtures' web Service, EndpointSlice, Ingress and IngressClass, pointing at
        `echo`."""
        self.api.apply(fixture("ingressclass-kedge.json"))
        svc = fixture("service-web.json")
        svc["spec"]["clusterIP"] = svc["spec"]["clusterIPs"][0] = "None"
        self.api.apply(svc)
        self.api.apply(self.slice_for("web", [echo]))
        ing = fixture("ingress-web.json")
        ing["spec"]["rules"][0]["host"] = ingress_host
        self.api.apply(ing)

    @staticmethod
    def slice_for(service: str, echoes: list, name: str | None = None) -> dict:
        es = fixture("endpointslice-web.json")
        es["metadata"]["name"] = name or f"{service}-7xk2p"
        es["metadata"]["labels"]["kubernetes.io/service-name"] = service
        template = es["endpoints"][0]
        es["endpoints"] = []
        for e in echoes:
            ep = copy.deepcopy(template)
            ep["addresses"] = [e.ip]
            ep["targetRef"]["name"] = e.pod
            es["endpoints"].append(ep)
        es["ports"][0]["port"] = echoes[0].port if echoes else 9
        return es


def start_kedge(env, cluster: Cluster, *extra: str, wait_ready: bool = True,
                label: str = "kedge") -> Kedge:
    http_port, admin_port = free_port(), free_port()
    args = [KEDGE_BIN, "serve", "--kubeconfig", cluster.kubeconfig,
            "--http-listen", f"127.0.0.1:{http_port}", "--admin-listen", f"127.0.0.1:{admin_port}",
            "--workers", "2", "--api-retry-max", "1", "--node-address", "127.0.0.1", *extra]
    p = env._spawn(args, label)
    k = Kedge(env, p, http_port, admin_port)
    env.kedges.append(k)
    if wait_ready:
        def ready():
            if not p.alive():
                raise AssertionError(f"kedge exited with {p.proc.returncode}:\n{p.log_tail()}")
            return k.admin("/readyz").status == 200 and can_connect("127.0.0.1", http_port)
        try:
            poll(ready, timeout(20), interval=0.05, what="kedge /readyz")
        except AssertionError as e:
            raise AssertionError(f"{e}\n{p.log_tail()}") from None
    return k
