"""TLS termination: SNI certificate choice, HTTPS proxying, redirects, rotation, bad Secrets."""
import base64
import http.client
import socket
import ssl
import subprocess
from pathlib import Path

import pytest

from conftest import (backend, endpoint, endpoint_slice, free_port, ingress, path_rule, poll,
                      service, timeout)

HOSTS = ["shop.example.test", "*.apps.example.test"]


def make_cert(tmp: Path, name: str, sans: list[str], days: int = 30, rsa: bool = False):
    key, crt = tmp / f"{name}.key", tmp / f"{name}.crt"
    algo = ["-newkey", "rsa:2048"] if rsa else ["-newkey", "ec", "-pkeyopt",
                                                 "ec_paramgen_curve:P-256"]
    subprocess.run(["openssl", "req", "-x509", *algo, "-nodes", "-days", str(days),
                    "-subj", f"/CN={sans[0]}", "-addext",
                    "subjectAltName=" + ",".join(f"DNS:{s}" for s in sans),
                    "-keyout", str(key), "-out", str(crt)], check=True, capture_output=True)
    return crt.read_bytes(), key.read_bytes()


def tls_secret(name: str, crt: bytes, key: bytes, ns: str = "default") -> dict:
    return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"name": name, "namespace": ns},
            "data": {"tls.crt": base64.b64encode(crt).decode(),
                     "tls.key": base64.b64encode(key).decode()}}


def tls_ingress(annotations: dict | None = None) -> dict:
    ing = ingress("site", [("shop.example.test", [path_rule("/", "web")]),
                           ("a.apps.example.test", [path_rule("/", "web")]),
                           ("plain.example.test", [path_rule("/", "web")])],
                  annotations=annotations)
    ing["spec"]["tls"] = [{"hosts": ["shop.example.test"], "secretName": "shop"},
                          {"hosts": ["*.apps.example.test"], "secretName": "apps"}]
    return ing


def peer_cert(port: int, server_name: str | None) -> dict:
    """The certificate kedge presents for an SNI name (None: no SNI)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=timeout(5)) as raw:
        with ctx.wrap_socket(raw, server_hostname=server_name) as s:
            der = s.getpeercert(binary_form=True)
    out = subprocess.run(["openssl", "x509", "-inform", "DER", "-noout", "-subject", "-serial"],
                         input=der, capture_output=True, check=True)
    text = out.stdout.decode()
    return {"subject": text.split("\n")[0], "serial": text.split("serial=")[1].strip()}


def s_client_subject(port: int, server_name: str | None) -> str:
    args = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-brief"]
    args += ["-servername", server_name] if server_name else ["-noservername"]
    out = subprocess.run(args, input=b"", capture_output=True, timeout=timeout(10))
    text = (out.stdout + out.stderr).decode(errors="replace")
    for line in text.splitlines():
        if line.startswith("Peer certificate:"):
            return line
    raise AssertionError(f"no peer certificate in s_client output:\n{text}")


@pytest.fixture
def site(env, tmp_path):
    web = env.echo("web")
    shop = make_cert(tmp_path, "shop", ["shop.example.test"])
    apps = make_cert(tmp_path, "apps", ["*.apps.example.test"], rsa=True)
    env.write("app.yaml", service("web"), endpoint_slice("web", web.port, [web.endpoint()]),
              tls_secret("shop", *shop), tls_secret("apps", *apps), tls_ingress())
    https_port = free_port()
    k = env.kedge("--https-listen", f"127.0.0.1:{https_port}")
    k.https_port = https_port
    return k


def curl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["curl", "-sS", "--max-time", str(timeout(10)), *args],
                          capture_output=True, text=True)


def test_sni_selects_exact_wildcard_default_and_no_sni(site):
    port = site.https_port
    assert "CN = shop.example.test" in s_client_subject(port, "shop.example.test")
    assert "CN = *.apps.example.test" in s_client_subject(port, "x.apps.example.test")
    default = s_client_subject(port, "unknown.example.test")
    assert "Kubernetes Ingress Controller Fake Certificate" in default
    assert "Kubernetes Ingress Controller Fake Certificate" in s_client_subject(port, None)
    # A wildcard covers exactly one label.
    assert "Fake Certificate" in s_client_subject(port, "a.b.apps.example.test")


def test_https_http11_proxies_with_forwarded_proto_and_hsts(site, tmp_path):
    r = curl("--http1.1", "-k", "-i", "--resolve", f"shop.example.test:{site.https_port}:127.0.0.1",
             f"https://shop.example.test:{site.https_port}/hello?x=1")
    assert r.returncode == 0, r.stderr
    head, _, body = r.stdout.partition("\n\n")
    assert head.startswith("HTTP/1.1 200")
    assert "strict-transport-security: max-age=31536000; includesubdomains" in head.lower()
    import json
    info = json.loads(body)
    assert info["headers"]["x-forwarded-proto"] == "https"
    assert info["headers"]["x-forwarded-port"] == str(site.https_port)
    assert info["path"] == "/hello?x=1"


def test_tls_versions_are_12_and_13_only(site):
    for flag, ok in (("-tls1_1", False), ("-tls1_2", True), ("-tls1_3", True)):
        out = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{site.https_port}",
                              "-servername", "shop.example.test", flag, "-brief"],
                             input=b"", capture_output=True, timeout=timeout(10))
        text = (out.stdout + out.stderr).decode(errors="replace")
        assert ("Protocol version" in text) == ok, (flag, text)


def test_plain_http_redirects_tls_hosts_with_308(site):
    r = site.request("shop.example.test", "/cart?id=3")
    assert r.status == 308
    assert r.headers["Location"] == f"https://shop.example.test:{site.https_port}/cart?id=3"
    # A host without TLS is served over plain HTTP.
    assert site.request("plain.example.test", "/").status == 200


def test_ssl_redirect_annotation_false_keeps_http(env, tmp_path):
    web = env.echo("web")
    shop = make_cert(tmp_path, "shop", ["shop.example.test"])
    apps = make_cert(tmp_path, "apps", ["*.apps.example.test"])
    env.write("app.yaml", service("web"), endpoint_slice("web", web.port, [web.endpoint()]),
              tls_secret("shop", *shop), tls_secret("apps", *apps),
              tls_ingress({"nginx.ingress.kubernetes.io/ssl-redirect": "false"}))
    k = env.kedge("--https-listen", f"127.0.0.1:{free_port()}")
    assert k.request("shop.example.test", "/").status == 200


def test_host_not_covered_by_sni_certificate_is_421(site):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    conn = http.client.HTTPSConnection("127.0.0.1", site.https_port, context=ctx,
                                       timeout=timeout(5))
    # http.client sends SNI from the host it connects to; use a raw socket for a chosen SNI.
    raw = socket.create_connection(("127.0.0.1", site.https_port), timeout=timeout(5))
    s = ctx.wrap_socket(raw, server_hostname="shop.example.test")
    s.sendall(b"GET / HTTP/1.1\r\nHost: plain.example.test\r\nConnection: close\r\n\r\n")
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    assert data.startswith(b"HTTP/1.1 421"), data[:200]
    s.close()
    # A Host the SNI certificate covers is routed by Host.
    raw = socket.create_connection(("127.0.0.1", site.https_port), timeout=timeout(5))
    s = ctx.wrap_socket(raw, server_hostname="x.apps.example.test")
    s.sendall(b"GET / HTTP/1.1\r\nHost: a.apps.example.test\r\nConnection: close\r\n\r\n")
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    assert data.startswith(b"HTTP/1.1 200"), data[:200]
    s.close()
    conn.close()


def test_certificate_rotation_keeps_established_connections(env, site, tmp_path):
    before = peer_cert(site.https_port, "shop.example.test")
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    held = http.client.HTTPSConnection("127.0.0.1", site.https_port, context=ctx,
                                       timeout=timeout(5))
    held.request("GET", "/", headers={"Host": "a.apps.example.test"})
    assert held.getresponse().read() and True
    gen = site.generation()
    shop2 = make_cert(tmp_path, "shop2", ["shop.example.test"])
    apps = make_cert(tmp_path, "apps-again", ["*.apps.example.test"])
    web_port = int(next(p for p in env.processes if "echo" in p.args[1]).args[3].split(":")[1])
    env.write("app.yaml", service("web"),
              endpoint_slice("web", web_port, [endpoint("127.0.0.1", "web-pod")]),
              tls_secret("shop", *shop2), tls_secret("apps", *apps), tls_ingress())
    site.wait_reload(gen)
    after = poll(lambda: (c := peer_cert(site.https_port, "shop.example.test"))["serial"] !=
                 before["serial"] and c, timeout(5), what="new certificate served")
    assert after["serial"] != before["serial"]
    # The connection opened before the change still works.
    held.request("GET", "/", headers={"Host": "a.apps.example.test"})
    resp = held.getresponse()
    assert resp.status == 200
    resp.read()
    held.close()


def test_bad_secret_is_refused_and_old_certificate_keeps_serving(env, site, tmp_path):
    before = peer_cert(site.https_port, "shop.example.test")
    gen = site.generation()
    good_crt, _ = make_cert(tmp_path, "shop-x", ["shop.example.test"])
    _, other_key = make_cert(tmp_path, "other", ["other.example.test"])
    apps = make_cert(tmp_path, "apps2", ["*.apps.example.test"])
    web_port = int(next(p for p in env.processes if "echo" in p.args[1]).args[3].split(":")[1])
    env.write("app.yaml", service("web"),
              endpoint_slice("web", web_port, [endpoint("127.0.0.1", "web-pod")]),
              tls_secret("shop", good_crt, other_key), tls_secret("apps", *apps), tls_ingress())
    site.wait_reload(gen)
    issues = site.admin_json("/debug/errors")["issues"]
    assert any(i["kind"] == "Secret" and i["name"] == "shop" and "does not match" in i["message"]
               and "Ingress default/site" in i["message"] for i in issues), issues
    assert peer_cert(site.https_port, "shop.example.test")["serial"] == before["serial"]


def test_websocket_over_tls(site):
    import os
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    raw = socket.create_connection(("127.0.0.1", site.https_port), timeout=timeout(5))
    s = ctx.wrap_socket(raw, server_hostname="shop.example.test")
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET /ws HTTP/1.1\r\nHost: shop.example.test\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
               f"Sec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(4096)
    assert head.startswith(b"HTTP/1.1 101"), head
    payload = b"hello over tls"
    mask = os.urandom(4)
    frame = bytes([0x81, 0x80 | len(payload)]) + mask + bytes(
        b ^ mask[i % 4] for i, b in enumerate(payload))
    s.sendall(frame)
    data = head.split(b"\r\n\r\n", 1)[1]
    while len(data) < 2 + len(payload):
        data += s.recv(4096)
    assert data[0] == 0x81 and data[2:2 + len(payload)] == payload
    s.close()
