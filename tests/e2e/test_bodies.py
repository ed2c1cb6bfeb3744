"""Request and response bodies: streaming both ways, 100-continue, body size limits."""

from __future__ import annotations

import hashlib
import json

import pytest

from conftest import (
    curl,
    endpoint_slice,
    ingress,
    is_closed,
    path_rule,
    raw_connect,
    read_response,
    service,
)

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def unlimited(module_env):
    env = module_env
    e = env.echo("body")
    env.write("apps.yaml", service("body"), endpoint_slice("body", e.port, [e.endpoint()]))
    env.write("ingress.yaml", ingress("body", [("body.test", [path_rule("/", "body")])]))
    return env.kedge("--max-body-bytes", "0")


@pytest.fixture(scope="module")
def big_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("upload") / "big.bin"
    block = hashlib.sha256(b"kedge").digest() * 2048  # 64 KiB, not all one byte
    h = hashlib.sha256()
    with open(path, "wb") as f:
        for i in range(64 * MiB // len(block)):
            chunk = i.to_bytes(4, "big") + block[4:]
            f.write(chunk)
            h.update(chunk)
    return path, 64 * MiB, h.hexdigest()


def curl_json(args: list[str]) -> dict:
    r = curl(*args)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_upload_content_length(unlimited, big_file):
    path, size, digest = big_file
    body = curl_json(["-H", "Host: body.test", "--data-binary", f"@{path}",
                      "-H", "Expect:",  # no 100-continue here: plain Content-Length streaming
                      f"http://127.0.0.1:{unlimited.http_port}/upload"])
    assert body["method"] == "POST"
    assert body["headers"]["content-length"] == str(size)
    assert body["body_bytes"] == size
    assert body["body_sha256"] == digest


def test_long_body_with_a_length_then_a_pipelined_request(unlimited):
    """A body longer than a connection's buffer, sent in one write with the next request behind
    it: the body goes upstream whole, and the request after it is read as one."""
    body = bytes(range(256)) * 1000 + b"tail"  # 256,004 bytes, past any one read
    first = (b"POST /long HTTP/1.1\r\nHost: body.test\r\nContent-Length: %d\r\n\r\n" % len(body)
             + body)
    second = b"GET /after HTTP/1.1\r\nHost: body.test\r\n\r\n"
    s = raw_connect(unlimited.http_port)
    with s:
        s.sendall(first + second)
        f = s.makefile("rb")
        a, b = read_response(f), read_response(f)
    assert a.status == 200 and b.status == 200
    assert a.json()["body_bytes"] == len(body)
    assert a.json()["body_sha256"] == hashlib.sha256(body).hexdigest()
    assert b.json()["path"] == "/after" and b.json()["body_bytes"] == 0


def test_upload_chunked(unlimited, big_file):
    path, size, digest = big_file
    body = curl_json(["-H", "Host: body.test", "-H", "Transfer-Encoding: chunked", "-H", "Expect:",
                      "--data-binary", f"@{path}", f"http://127.0.0.1:{unlimited.http_port}/up"])
    assert body["headers"]["transfer-encoding"] == "chunked"
    assert "content-length" not in body["headers"]
    assert body["body_bytes"] == size
    assert body["body_sha256"] == digest


def test_upload_chunked_http_client(unlimited):
    """Python's http.client as the chunked client, chunks of odd sizes."""
    parts = [bytes([i % 251]) * (1000 + 777 * i) for i in range(50)]
    data = b"".join(parts)
    c = unlimited.connection()
    try:
        c.request("PUT", "/chunks", body=iter(parts), encode_chunked=True,
                  headers={"Host": "body.test", "Transfer-Encoding": "chunked"})
        r = c.getresponse()
        body = json.loads(r.read())
    finally:
        c.close()
    assert r.status == 200
    assert body["method"] == "PUT"
    assert body["body_bytes"] == len(data)
    assert body["body_sha256"] == hashlib.sha256(data).hexdigest()


def test_expect_100_continue(unlimited, tmp_path):
    data = b"0123456789abcdef" * 4096
    f = tmp_path / "small.bin"
    f.write_bytes(data)
    r = curl("-v", "-H", "Host: body.test", "-H", "Expect: 100-continue", "--data-binary", f"@{f}",
             f"http://127.0.0.1:{unlimited.http_port}/continue")
    assert r.returncode == 0, r.stderr
    assert b"HTTP/1.1 100 Continue" in r.stderr, r.stderr.decode(errors="replace")
    body = json.loads(r.stdout)
    assert body["body_bytes"] == len(data)
    assert body["body_sha256"] == hashlib.sha256(data).hexdigest()
    # Expect is hop-by-hop: the backend does not see it.
    assert "expect" not in body["headers"]


def test_download_100_mb(unlimited):
    n = 100 * 1000 * 1000
    r = curl("-o", "/dev/null", "-w", "%{http_code} %{size_download}", "-H", "Host: body.test",
             f"http://127.0.0.1:{unlimited.http_port}/dl?bytes={n}")
    assert r.returncode == 0, r.stderr
    status, size = r.stdout.decode().split()
    assert status == "200"
    assert int(size) == n


def test_download_counted_by_http_client(unlimited):
    n = 10 * MiB + 3
    c = unlimited.connection()
    try:
        c.request("GET", f"/dl?bytes={n}", headers={"Host": "body.test"})
        r = c.getresponse()
        assert r.status == 200
        assert int(r.headers["Content-Length"]) == n
        total = 0
        for _ in range(10000):
            chunk = r.read(1 << 20)
            if not chunk:
                break
            assert chunk == b"k" * len(chunk)
            total += len(chunk)
        assert total == n
        # The connection stays usable after a long body.
        c.request("GET", "/after", headers={"Host": "body.test"})
        r2 = c.getresponse()
        assert r2.status == 200 and json.loads(r2.read())["path"] == "/after"
    finally:
        c.close()


@pytest.fixture(scope="module")
def limited(module_env):
    env = module_env
    e = env.echo("lim")
    env.write("lim-apps.yaml", service("lim"), endpoint_slice("lim", e.port, [e.endpoint()]))
    env.write("lim-ingress.yaml",
              ingress("small", [("small.test", [path_rule("/", "lim")])]),
              ingress("bigger", [("bigger.test", [path_rule("/", "lim")])],
                      annotations={"nginx.ingress.kubernetes.io/proxy-body-size": "8k"}),
              ingress("nolimit", [("nolimit.test", [path_rule("/", "lim")])],
                      annotations={"nginx.ingress.kubernetes.io/proxy-body-size": "0"}))
    return env.kedge("--max-body-bytes", "1024", manifests=env.manifests)


def post(k, host: str, data: bytes, chunked: bool = False):
    headers = {"Expect": ""} if not chunked else {"Transfer-Encoding": "chunked", "Expect": ""}
    return k.request(host, "/p", method="POST", body=iter([data]) if chunked else data,
                     headers={k2: v for k2, v in headers.items() if v})


def test_body_over_limit_is_413(limited):
    assert post(limited, "small.test", b"x" * 1024).status == 200
    r = post(limited, "small.test", b"x" * 2048)
    assert r.status == 413, r


def test_chunked_body_over_limit_is_413(limited):
    s = raw_connect(limited.http_port)
    with s, s.makefile("rb") as f:
        s.sendall(b"POST /c HTTP/1.1\r\nHost: small.test\r\nTransfer-Encoding: chunked\r\n\r\n"
                  + b"800\r\n" + b"y" * 0x800 + b"\r\n0\r\n\r\n")
        r = read_response(f)
        assert r.status == 413, r
        assert is_closed(s)


def test_413_with_curl(limited, tmp_path):
    f = tmp_path / "2k.bin"
    f.write_bytes(b"z" * 2048)
    r = curl("-o", "/dev/null", "-w", "%{http_code}", "-H", "Host: small.test",
             "--data-binary", f"@{f}", f"http://127.0.0.1:{limited.http_port}/")
    assert r.stdout == b"413", (r.stdout, r.stderr)


def test_proxy_body_size_annotation_overrides_flag(limited):
    r = post(limited, "bigger.test", b"x" * 4096)
    assert r.status == 200, r
    assert r.json()["body_bytes"] == 4096
    assert post(limited, "bigger.test", b"x" * (8 * 1024 + 1)).status == 413
    assert post(limited, "bigger.test", b"x" * 8192, chunked=True).status == 200
    assert post(limited, "bigger.test", b"x" * 9000, chunked=True).status == 413
    # "0" lifts the limit for that Ingress.
    r = post(limited, "nolimit.test", b"x" * (3 * MiB))
    assert r.status == 200 and r.json()["body_bytes"] == 3 * MiB


def test_head_and_body_in_one_write(unlimited):
    """The head and more body than the read buffer holds, arriving together, are one request
    (not a head over the size limit)."""
    data = bytes(range(256)) * 256  # 64 KiB
    for _ in range(5):
        s = raw_connect(unlimited.http_port)
        with s, s.makefile("rb") as f:
            s.sendall(b"POST /one HTTP/1.1\r\nHost: body.test\r\nContent-Length: %d\r\n\r\n"
                      % len(data) + data)
            r = read_response(f)
        assert r.status == 200, r
        assert r.json()["body_sha256"] == hashlib.sha256(data).hexdigest()


def test_413_reaches_client_still_sending(limited, tmp_path):
    """A body far over the limit: kedge answers 413 at once, and the client must get to read it
    although it is still sending (no reset that would destroy the answer)."""
    f = tmp_path / "5m.bin"
    f.write_bytes(b"q" * (5 * MiB))
    for expect in ("Expect:", "Expect: 100-continue"):
        for _ in range(4):
            r = curl("-o", "/dev/null", "-w", "%{http_code}", "-H", "Host: small.test",
                     "-H", expect, "--data-binary", f"@{f}",
                     f"http://127.0.0.1:{limited.http_port}/")
            assert r.stdout == b"413", (expect, r.stdout, r.stderr)
    r = curl("-o", "/dev/null", "-w", "%{http_code}", "-H", "Host: small.test", "-H", "Expect:",
             "-H", "Transfer-Encoding: chunked", "--data-binary", f"@{f}",
             f"http://127.0.0.1:{limited.http_port}/")
    assert r.stdout == b"413", (r.stdout, r.stderr)


def test_404_with_body_reaches_client(limited, tmp_path):
    f = tmp_path / "2m.bin"
    f.write_bytes(b"n" * (2 * MiB))
    for _ in range(3):
        r = curl("-o", "/dev/null", "-w", "%{http_code}", "-H", "Host: nowhere.test",
                 "-H", "Expect:", "--data-binary", f"@{f}",
                 f"http://127.0.0.1:{limited.http_port}/")
        assert r.stdout == b"404", (r.stdout, r.stderr)
