"""HTTP/2 downstream: h2 by ALPN over TLS, h2c with prior knowledge, multiplexing, bodies,
local answers and the rapid-reset guard."""
from __future__ import annotations

import hashlib
import json
import re
import socket
import ssl
import struct
import subprocess
import time

import pytest

from conftest import endpoint_slice, free_port, ingress, path_rule, service, timeout
from test_tls import make_cert, tls_secret

HOST = "shop.example.test"
MiB = 1024 * 1024


@pytest.fixture(scope="module")
def h2(module_env, tmp_path_factory):
    env = module_env
    web = env.echo("web")
    cert = make_cert(tmp_path_factory.mktemp("certs"), "shop", [HOST])
    ing = ingress("site", [(HOST, [path_rule("/", "web")]), ("plain.test", [path_rule("/", "web")])],
                  annotations={"nginx.ingress.kubernetes.io/ssl-redirect": "false"})
    ing["spec"]["tls"] = [{"hosts": [HOST], "secretName": "shop"}]
    env.write("app.yaml", service("web"), endpoint_slice("web", web.port, [web.endpoint()]),
              tls_secret("shop", *cert), ing)
    port = free_port()
    k = env.kedge("--https-listen", f"127.0.0.1:{port}", "--max-body-bytes", "0")
    k.https_port = port
    return k


def curl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["curl", "-sS", "--max-time", str(timeout(20)), *args],
                          capture_output=True, text=True)


def https_url(k, path: str = "/") -> list[str]:
    return ["-k", "--resolve", f"{HOST}:{k.https_port}:127.0.0.1",
            f"https://{HOST}:{k.https_port}{path}"]


def split(out: str) -> tuple[str, dict]:
    head, _, body = out.partition("\n\n")
    return head, json.loads(body)


def test_h2_over_tls_proxies_the_request(h2):
    r = curl("--http2", "-i", "-H", "X-Test: yes", *https_url(h2, "/hello?x=1"))
    assert r.returncode == 0, r.stderr
    head, info = split(r.stdout)
    assert head.startswith("HTTP/2 200"), head
    assert info["path"] == "/hello?x=1"
    assert info["method"] == "GET"
    assert info["headers"]["x-test"] == "yes"
    assert info["headers"]["host"] == f"{HOST}:{h2.https_port}"
    assert info["headers"]["x-forwarded-proto"] == "https"
    assert info["headers"]["x-forwarded-host"] == f"{HOST}:{h2.https_port}"
    assert len(info["headers"]["x-request-id"]) == 32


def test_h2c_prior_knowledge(h2):
    r = curl("--http2-prior-knowledge", "-i", "-H", "Host: plain.test",
             f"http://127.0.0.1:{h2.http_port}/p")
    assert r.returncode == 0, r.stderr
    head, info = split(r.stdout)
    assert head.startswith("HTTP/2 200"), head
    assert info["path"] == "/p"
    assert info["headers"]["x-forwarded-proto"] == "http"
    # HTTP/1.1 still works on the same listener.
    assert h2.request("plain.test", "/").status == 200


def test_unknown_host_is_404(h2):
    r = curl("--http2-prior-knowledge", "-i", "-H", "Host: nowhere.test",
             f"http://127.0.0.1:{h2.http_port}/")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("HTTP/2 404"), r.stdout
    assert "404 Not Found" in r.stdout


def test_post_body_of_several_mib(h2, tmp_path):
    data = hashlib.sha256(b"h2").digest() * (6 * MiB // 32 + 7)
    path = tmp_path / "body.bin"
    path.write_bytes(data)
    for extra in ([], ["-H", "Content-Length:"]):
        r = curl("--http2", "--data-binary", f"@{path}", *extra, *https_url(h2, "/up"))
        assert r.returncode == 0, r.stderr
        info = json.loads(r.stdout)
        assert info["method"] == "POST"
        assert info["body_bytes"] == len(data)
        assert info["body_sha256"] == hashlib.sha256(data).hexdigest()


def h2load(*args: str) -> str:
    r = subprocess.run(["h2load", *args], capture_output=True, text=True, timeout=timeout(60))
    m = re.search(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                  r"(\d+) errored", r.stdout)
    assert m, r.stdout + r.stderr
    total, done, ok, failed, errored = map(int, m.groups())
    assert (done, ok, failed, errored) == (total, total, 0, 0), r.stdout
    assert "status codes: 2000 2xx" in r.stdout, r.stdout
    return r.stdout


def test_multiplexing_h2load_tls_and_h2c(h2):
    h2load("-n", "2000", "-c", "4", "-m", "50", "-H", f":authority: {HOST}",
           f"https://127.0.0.1:{h2.https_port}/load")
    h2load("-n", "2000", "-c", "4", "-m", "50", "-H", ":authority: plain.test",
           f"http://127.0.0.1:{h2.http_port}/load")


def frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) \
        + payload


def test_rapid_reset_gets_goaway_and_close(h2):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"])
    authority = HOST.encode()
    # HPACK: :method GET, :scheme https, :path / (static), :authority as a literal.
    block = b"\x82\x87\x84\x01" + bytes([len(authority)]) + authority
    out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(4, 0, 0)
    for i in range(500):
        sid = 1 + 2 * i
        out += frame(1, 0x5, sid, block) + frame(3, 0, sid, struct.pack(">I", 8))  # CANCEL
    with socket.create_connection(("127.0.0.1", h2.https_port), timeout=timeout(10)) as raw:
        with ctx.wrap_socket(raw, server_hostname=HOST) as s:
            assert s.selected_alpn_protocol() == "h2"
            try:
                s.sendall(out)
            except OSError:
                pass  # the server may already have closed
            data = b""
            closed = False
            try:
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        closed = True
                        break
                    data += chunk
            except (ConnectionResetError, ssl.SSLError):
                closed = True
    assert closed
    goaways = []
    pos = 0
    while pos + 9 <= len(data):
        length = int.from_bytes(data[pos:pos + 3], "big")
        kind = data[pos + 3]
        if kind == 7:
            goaways.append(struct.unpack(">I", data[pos + 13:pos + 17])[0])
        pos += 9 + length
    assert 11 in goaways, goaways  # ENHANCE_YOUR_CALM


def test_download_and_head_over_h2(h2):
    n = 30 * 1000 * 1000
    r = subprocess.run(["curl", "-sS", "--max-time", str(timeout(30)), "--http2", "-o", "/dev/null",
                        "-w", "%{http_version} %{http_code} %{size_download}",
                        *https_url(h2, f"/dl?bytes={n}")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["2", "200", str(n)]
    r = curl("--http2", "-I", *https_url(h2, "/"))
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("HTTP/2 200"), r.stdout


def test_continuation_flood_gets_goaway(h2):
    # A header block spread over endless CONTINUATION frames (CVE-2024-28182 style).
    field = b"\x40\x01a\x01b"  # literal with incremental indexing: a: b
    out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(4, 0, 0)
    out += frame(1, 0, 1, b"\x82\x86\x84\x01\x0aplain.test")  # no END_HEADERS
    out += b"".join(frame(9, 0, 1, field * 10) for _ in range(200))
    with socket.create_connection(("127.0.0.1", h2.http_port), timeout=timeout(10)) as s:
        try:
            s.sendall(out)
        except OSError:
            pass
        data = b""
        try:
            while chunk := s.recv(65536):
                data += chunk
        except ConnectionResetError:
            pass
    goaways = []
    pos = 0
    while pos + 9 <= len(data):
        length = int.from_bytes(data[pos:pos + 3], "big")
        if data[pos + 3] == 7:
            goaways.append(struct.unpack(">I", data[pos + 13:pos + 17])[0])
        pos += 9 + length
    assert 11 in goaways, goaways  # ENHANCE_YOUR_CALM


def test_h2c_preface_and_http1_methods_split_across_reads(h2):
    """The plain port tells h2c from HTTP/1.1 by the first bytes, however they arrive: "PR" then
    the rest of the preface is HTTP/2; "P" then "UT" or "OST" is HTTP/1.1."""
    block = b"\x82\x86\x84\x01\x0aplain.test"  # GET, http, /, :authority plain.test
    with socket.create_connection(("127.0.0.1", h2.http_port), timeout=timeout(10)) as s:
        preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
        for part in (preface[:2], preface[2:3], preface[3:]):
            s.sendall(part)
            time.sleep(0.05)  # separate reads on the server
        s.sendall(frame(4, 0, 0) + frame(1, 0x5, 1, block))
        data = b""
        deadline = time.monotonic() + timeout(5)
        statuses = []
        while time.monotonic() < deadline and not statuses:
            data += s.recv(65536)
            pos = 0
            while pos + 9 <= len(data):
                length = int.from_bytes(data[pos:pos + 3], "big")
                if data[pos + 3] == 1 and pos + 9 + length <= len(data):
                    statuses.append(data[pos + 9])  # first byte of the HPACK block
                pos += 9 + length
        assert data[3] == 4, "the server's first frame is SETTINGS"
        assert statuses == [0x88], statuses  # indexed :status 200
    for method, pieces in (("PUT", [b"P", b"UT"]), ("POST", [b"P", b"O", b"ST"])):
        with socket.create_connection(("127.0.0.1", h2.http_port), timeout=timeout(10)) as s:
            for piece in pieces:
                s.sendall(piece)
                time.sleep(0.05)
            s.sendall(b" / HTTP/1.1\r\nHost: plain.test\r\nContent-Length: 2\r\n"
                      b"Connection: close\r\n\r\nhi")
            reply = b""
            while chunk := s.recv(65536):
                reply += chunk
        assert reply.startswith(b"HTTP/1.1 200"), (method, reply[:200])
        assert json.loads(reply.split(b"\r\n\r\n", 1)[1])["method"] == method


def h2c_get(s: socket.socket, stream: int, authority: str, path: str) -> dict:
    """Sends GET on `stream` of an open h2c connection and returns the echo's JSON answer."""
    def literal(index: int, value: str) -> bytes:  # literal field without indexing, name indexed
        return bytes([index, len(value)]) + value.encode()

    block = b"\x82\x86" + literal(4, path) + literal(1, authority)  # GET, http, :path, :authority
    s.sendall(frame(1, 0x5, stream, block))
    data, body, deadline = b"", b"", time.monotonic() + timeout(5)
    while time.monotonic() < deadline:
        pos = 0
        while pos + 9 <= len(data):
            length = int.from_bytes(data[pos:pos + 3], "big")
            kind, flags, sid = data[pos + 3], data[pos + 4], int.from_bytes(data[pos + 5:pos + 9], "big")
            if pos + 9 + length > len(data):
                break
            if kind == 0 and sid == stream:
                body += data[pos + 9:pos + 9 + length]
                if flags & 0x1:
                    return json.loads(body)
            pos += 9 + length
        data = data[pos:]
        data += s.recv(65536)
    raise AssertionError(f"no answer on stream {stream}")


def test_an_h2_connection_follows_each_change(env):
    """The streams of one HTTP/2 connection route on the configuration current when each
    starts, however often the ones before asked the same."""
    one, two = env.echo("h2one"), env.echo("h2two")
    env.write("follow.yaml", service("h2one"), endpoint_slice("h2one", one.port, [one.endpoint()]),
              service("h2two"), endpoint_slice("h2two", two.port, [two.endpoint()]),
              ingress("follow", [("follow.test", [path_rule("/", "h2one")])]))
    k = env.kedge()
    with socket.create_connection(("127.0.0.1", k.http_port), timeout=timeout(10)) as s:
        s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(4, 0, 0))
        assert [h2c_get(s, n, "follow.test", "/x")["service"] for n in (1, 3)] == ["h2one"] * 2
        env.write("follow.yaml", service("h2one"),
                  endpoint_slice("h2one", one.port, [one.endpoint()]), service("h2two"),
                  endpoint_slice("h2two", two.port, [two.endpoint()]),
                  ingress("follow", [("follow.test", [path_rule("/", "h2two")])]))
        stream, deadline = 5, time.monotonic() + timeout(5)
        while h2c_get(s, stream, "follow.test", "/x")["service"] != "h2two":
            assert time.monotonic() < deadline, "the open connection kept the old route"
            stream += 2
            time.sleep(0.02)
        assert h2c_get(s, stream + 2, "follow.test", "/x")["service"] == "h2two"
