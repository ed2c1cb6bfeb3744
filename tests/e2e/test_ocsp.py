"""OCSP stapling: a CA made with the openssl CLI, a real `openssl ocsp` responder, and
`openssl s_client -status` as the client. The responder listens on a free port (on every
address: `openssl ocsp -port` takes no host); kedge reaches it on 127.0.0.1."""
import subprocess
from pathlib import Path

import pytest

from conftest import (Process, endpoint_slice, free_port, ingress, path_rule, poll,
                      service, timeout)
from test_tls import tls_secret

HOST = "shop.example.test"

CA_CONFIG = """\
[ ca ]
default_ca = CA_default
[ CA_default ]
dir = {dir}
database = $dir/index.txt
new_certs_dir = $dir/newcerts
certificate = $dir/ca.crt
private_key = $dir/ca.key
serial = $dir/serial
default_md = sha256
default_days = 30
policy = policy_any
unique_subject = no
x509_extensions = leaf_ext
[ policy_any ]
commonName = supplied
[ leaf_ext ]
basicConstraints = CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:{host}
authorityInfoAccess = OCSP;URI:http://127.0.0.1:{port}
"""


def openssl(*args: str, cwd: Path) -> None:
    r = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, timeout=timeout(30))
    assert r.returncode == 0, (args, r.stderr.decode(errors="replace"))


class Pki:
    """A CA (openssl ca with an index.txt), one leaf naming the responder, and the responder."""

    def __init__(self, root: Path, port: int):
        self.dir, self.port = root / "pki", port
        self.dir.mkdir()
        (self.dir / "newcerts").mkdir()
        (self.dir / "index.txt").write_text("")
        (self.dir / "serial").write_text("1000\n")
        (self.dir / "ca.cnf").write_text(CA_CONFIG.format(dir=self.dir, host=HOST, port=port))
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
        openssl("req", "-x509", *ec, "-days", "30", "-subj", "/CN=kedge e2e OCSP CA",
                "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                "-keyout", "ca.key", "-out", "ca.crt", cwd=self.dir)
        openssl("req", "-new", *ec, "-subj", f"/CN={HOST}", "-keyout", "leaf.key",
                "-out", "leaf.csr", cwd=self.dir)
        openssl("ca", "-batch", "-config", "ca.cnf", "-notext", "-in", "leaf.csr",
                "-out", "leaf.crt", cwd=self.dir)
        self.responder: Process | None = None

    def chain(self) -> bytes:
        return (self.dir / "leaf.crt").read_bytes() + (self.dir / "ca.crt").read_bytes()

    def key(self) -> bytes:
        return (self.dir / "leaf.key").read_bytes()

    def start_responder(self, env) -> None:
        # -nmin 1: every response says nextUpdate is a minute away.
        self.responder = Process(
            ["openssl", "ocsp", "-index", str(self.dir / "index.txt"), "-port", str(self.port),
             "-rsigner", str(self.dir / "ca.crt"), "-rkey", str(self.dir / "ca.key"),
             "-CA", str(self.dir / "ca.crt"), "-nmin", "1", "-req_text"],
            env.logs / f"ocsp-responder-{len(env.processes)}.log")
        env.processes.append(self.responder)
        # Not probed with a connection: one that sends nothing wedges `openssl ocsp`.
        poll(lambda: self.responder.alive() and "waiting for OCSP client connections"
             in self.responder.log_path.read_text(errors="replace"), timeout(10),
             what="openssl ocsp responder")

    def stop_responder(self) -> None:
        if self.responder:
            self.responder.stop(grace_s=timeout(5))

    def revoke(self) -> None:
        openssl("ca", "-config", "ca.cnf", "-revoke", "leaf.crt", cwd=self.dir)

    def requests_seen(self) -> int:
        if not self.responder:
            return 0
        return self.responder.log_path.read_text(errors="replace").count("OCSP Request Data")


def s_client_status(port: int) -> str:
    out = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}",
                          "-servername", HOST, "-status"],
                         input=b"", capture_output=True, timeout=timeout(10))
    return (out.stdout + out.stderr).decode(errors="replace")


@pytest.fixture
def pki(env, tmp_path):
    p = Pki(tmp_path, free_port())
    p.start_responder(env)
    yield p
    p.stop_responder()


def serve(env, pki: Pki, *flags: str):
    web = env.echo("web")
    ing = ingress("site", [(HOST, [path_rule("/", "web")])])
    ing["spec"]["tls"] = [{"hosts": [HOST], "secretName": "shop"}]
    env.write("app.yaml", service("web"), endpoint_slice("web", web.port, [web.endpoint()]),
              tls_secret("shop", pki.chain(), pki.key()), ing)
    https_port = free_port()
    k = env.kedge("--https-listen", f"127.0.0.1:{https_port}", *flags)
    k.https_port = https_port
    return k


def test_staples_good_then_revoked_after_refresh(env, pki):
    k = serve(env, pki, "--ocsp-refresh-max", "1")
    text = poll(lambda: (t := s_client_status(k.https_port)) and "Cert Status: good" in t and t,
                timeout(10), interval=0.2, what="a good staple")
    assert "OCSP Response Status: successful" in text
    assert k.metric("kedge_ocsp_staples") == 1

    pki.revoke()
    # The responder reads its index at start-up; start it again on the same port.
    pki.stop_responder()
    pki.start_responder(env)
    text = poll(lambda: (t := s_client_status(k.https_port)) and "Cert Status: revoked" in t
                and t, timeout(10), interval=0.2, what="a revoked staple")
    assert "OCSP Response Status: successful" in text
    assert "REVOKED" in k.proc.log_path.read_text()


def test_no_staple_when_stapling_is_off(env, pki):
    k = serve(env, pki, "--ocsp-stapling=false", "--ocsp-refresh-max", "1")
    for _ in range(3):
        assert "OCSP response: no response sent" in s_client_status(k.https_port)
    assert pki.requests_seen() == 0
    assert k.metric("kedge_ocsp_staples") is None


def test_no_staple_when_the_issuer_is_unknown(env, pki):
    """A leaf without its chain: kedge cannot ask about it, says so, and staples nothing."""
    web = env.echo("web")
    ing = ingress("site", [(HOST, [path_rule("/", "web")])])
    ing["spec"]["tls"] = [{"hosts": [HOST], "secretName": "shop"}]
    env.write("app.yaml", service("web"), endpoint_slice("web", web.port, [web.endpoint()]),
              tls_secret("shop", (pki.dir / "leaf.crt").read_bytes(), pki.key()), ing)
    https_port = free_port()
    k = env.kedge("--https-listen", f"127.0.0.1:{https_port}")
    poll(lambda: "holds its issuer" in k.proc.log_path.read_text(), timeout(5),
         what="the missing issuer logged")
    assert "OCSP response: no response sent" in s_client_status(https_port)
    assert pki.requests_seen() == 0
