"""Request smuggling and request validation: hostile HTTP/1.1 requests (and upstream responses)
on raw sockets. For each, kedge's answer is the strict one (RFC 9110/9112) and what reaches the
upstream is a single canonical request: a recording upstream parses every byte it receives
strictly and keeps them.

The same inputs go through nginx and HAProxy when they are installed; their answers are
collected into a comparison table (docs/security.md), not asserted. Set KEDGE_SMUGGLING_TABLE to a
file path to get that table written.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import (
    Process,
    can_connect,
    endpoint_slice,
    free_port,
    ingress,
    path_rule,
    poll,
    service,
    timeout,
)
from smuggling_cases import HOST, REQUEST_CASES, RESPONSE_CASES, Case

MAX_HEADER_BYTES = 16384
HEADER_TIMEOUT_MS = 1500
TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
FIELD_LINE = re.compile(rb"(" + TOKEN + rb"): ?([\x21-\x7e\x80-\xff]([\x20-\x7e\t\x80-\xff]*"
                        rb"[\x21-\x7e\x80-\xff])?)?")
REQUEST_LINE = re.compile(rb"(" + TOKEN + rb") (/[\x21-\x7e]*) HTTP/1\.1")


# --------------------------------------------------------------------------------------------
# A recording upstream that accepts only canonical HTTP/1.1


class Recorded:
    def __init__(self, line: bytes, fields: list[tuple[bytes, bytes]], body: bytes):
        self.line, self.fields, self.body = line, fields, body
        m = REQUEST_LINE.fullmatch(line)
        self.target = m.group(2).decode() if m else ""
        self.case = (re.match(r"/(?:r/)?([cr]\d\d)", self.target) or [None, "?"])[1]

    def get_all(self, name: bytes) -> list[bytes]:
        return [v for k, v in self.fields if k.lower() == name.lower()]


class RecordingUpstream:
    """Parses what the proxy sends strictly. A request that is not canonical (bad line, bad
    field, obs-fold, several Host or Content-Length fields, both framings, a coding other than
    chunked) is kept in `violations` and the connection closed. Canonical requests are answered
    200 "ok", except GET /r/<id>, which gets that response case's bytes."""

    def __init__(self):
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(128)
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.requests: list[Recorded] = []
        self.violations: list[str] = []
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._conns: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._responses = {cid: data for cid, data, _, _ in RESPONSE_CASES}
        self._accept = threading.Thread(target=self._run, daemon=True)
        self._accept.start()

    def of(self, cid: str) -> list[Recorded]:
        with self.lock:
            return [r for r in self.requests if r.case == cid]

    def _run(self) -> None:
        for _ in range(1_000_000):
            if self._stop.is_set():
                return
            try:
                conn, _ = self.listener.accept()
            except (socket.timeout, OSError):
                continue
            self._conns.append(conn)
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            t.start()
            self._threads.append(t)

    def _violation(self, what: str, data: bytes) -> None:
        with self.lock:
            self.violations.append(f"{what}: {data[:300]!r}")

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(10)
        buf = bytearray()

        def need(n: int) -> bool:
            for _ in range(10_000):
                if len(buf) >= n:
                    return True
                chunk = conn.recv(65536)
                if not chunk:
                    return False
                buf.extend(chunk)
            return False

        def line() -> bytes | None:
            for _ in range(10_000):
                i = buf.find(b"\r\n")
                if i >= 0:
                    out = bytes(buf[:i])
                    del buf[:i + 2]
                    return out
                if len(buf) > 1 << 20 or not need(len(buf) + 1):
                    return None
            return None

        try:
            for _ in range(10_000):  # requests on this connection
                first = line()
                if first is None:
                    return
                fields = []
                for _ in range(1000):
                    f = line()
                    if f is None:
                        return
                    if f == b"":
                        break
                    m = FIELD_LINE.fullmatch(f)
                    if not m or b"\r" in f or b"\n" in f:
                        return self._violation("bad field line", f)
                    fields.append((m.group(1), m.group(2) or b""))
                rec = Recorded(first, fields, b"")
                if not REQUEST_LINE.fullmatch(first):
                    return self._violation("bad request line", first)
                hosts, cls = rec.get_all(b"host"), rec.get_all(b"content-length")
                tes = rec.get_all(b"transfer-encoding")
                if len(hosts) != 1:
                    return self._violation(f"{len(hosts)} Host fields", first)
                if len(cls) > 1 or (cls and tes):
                    return self._violation("ambiguous framing", first)
                if tes and tes != [b"chunked"]:
                    return self._violation("transfer coding other than chunked", tes[0])
                if cls and not re.fullmatch(rb"\d+", cls[0]):
                    return self._violation("bad Content-Length", cls[0])
                if tes:
                    body = bytearray()
                    for _ in range(100_000):
                        size_line = line()
                        if size_line is None:
                            return  # the proxy gave up on this request (its client did)
                        if not re.fullmatch(rb"[0-9a-fA-F]{1,15}(;" + TOKEN + rb"(=" + TOKEN
                                            + rb")?)*", size_line):
                            return self._violation("bad chunk size", size_line)
                        size = int(size_line.split(b";")[0], 16)
                        if size == 0:
                            for _ in range(100):  # trailers
                                t = line()
                                if t is None:
                                    return
                                if t == b"":
                                    break
                            break
                        if not need(size + 2) or buf[size:size + 2] != b"\r\n":
                            return self._violation("bad chunk data", bytes(buf[:size + 2]))
                        body += buf[:size]
                        del buf[:size + 2]
                    rec.body = bytes(body)
                elif cls:
                    n = int(cls[0])
                    if not need(n):
                        return
                    rec.body = bytes(buf[:n])
                    del buf[:n]
                with self.lock:
                    self.requests.append(rec)
                answer = self._responses.get(rec.target.removeprefix("/r/"))
                conn.sendall(answer if rec.target.startswith("/r/") and answer else
                             b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        except OSError:
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._accept.join(5)
        self.listener.close()
        for c in self._conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for t in self._threads:
            t.join(5)


# --------------------------------------------------------------------------------------------
# The client side


class Answers:
    def __init__(self, statuses: list[int], closed: bool, truncated: bool, raw: bytes):
        self.statuses, self.closed, self.truncated, self.raw = statuses, closed, truncated, raw

    @property
    def first(self) -> int:
        return self.statuses[0] if self.statuses else 0

    def __repr__(self) -> str:
        return f"<Answers {self.statuses} closed={self.closed} {self.raw[:300]!r}>"


def parse_answers(data: bytes, head_only: bool = False) -> tuple[list[int], bool, list[bytes]]:
    """Final statuses of the responses in data, whether the last one was cut short, bodies."""
    statuses, bodies = [], []
    rest = data
    for _ in range(100):
        if not rest:
            return statuses, False, bodies
        end = rest.find(b"\r\n\r\n")
        m = re.match(rb"HTTP/1\.[01] (\d{3})", rest)
        if end < 0 or not m:
            return statuses, True, bodies
        head, rest = rest[:end], rest[end + 4:]
        status = int(m.group(1))
        if 100 <= status < 200 and status != 101:
            continue
        statuses.append(status)
        cl = re.search(rb"\r\ncontent-length: *(\d+)", head, re.I)
        if head_only or status in (204, 304):
            bodies.append(b"")
        elif re.search(rb"\r\ntransfer-encoding: *chunked", head, re.I):
            body = bytearray()
            for _ in range(100_000):
                i = rest.find(b"\r\n")
                if i < 0:
                    return statuses, True, bodies
                try:
                    size = int(rest[:i].split(b";")[0], 16)
                except ValueError:
                    return statuses, True, bodies
                if size == 0:
                    j = rest.find(b"\r\n\r\n", i)
                    if j < 0:
                        return statuses, True, bodies
                    rest = rest[j + 4:]
                    break
                if len(rest) < i + 2 + size + 2:
                    return statuses, True, bodies
                body += rest[i + 2:i + 2 + size]
                rest = rest[i + 2 + size + 2:]
            bodies.append(bytes(body))
        elif cl:
            n = int(cl.group(1))
            if len(rest) < n:
                return statuses, True, bodies
            bodies.append(rest[:n])
            rest = rest[n:]
        else:
            bodies.append(rest)
            rest = b""
    return statuses, False, bodies


def exchange(port: int, data: bytes, idle_s: float = 0.6, then: bytes | None = None) -> Answers:
    """Sends data; reads until the proxy closes or stays silent for idle_s. With `then`, sends it
    after the first answer when the connection is still open."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout(5))
    out = bytearray()
    closed = False
    sent_then = then is None
    with s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            s.sendall(data)
        except OSError:
            pass
        deadline = time.monotonic() + timeout(10)
        s.settimeout(timeout(idle_s))
        for _ in range(10_000):
            if time.monotonic() > deadline:
                break
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                statuses, cut, _ = parse_answers(bytes(out))
                if not sent_then and statuses and not cut:
                    sent_then = True
                    s.sendall(then)
                    continue
                break
            except OSError:
                closed = True
                break
            if not chunk:
                closed = True
                break
            out += chunk
    statuses, cut, _ = parse_answers(bytes(out))
    return Answers(statuses, closed, cut, bytes(out))


# --------------------------------------------------------------------------------------------
# The proxies


class Target:
    def __init__(self, name: str, port: int, upstream: RecordingUpstream):
        self.name, self.port, self.upstream = name, port, upstream


def start_nginx(root: Path, upstream: RecordingUpstream) -> tuple[Target, Process] | None:
    binary = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx")
                                       else None)
    if not binary:
        return None
    d = root / "nginx"
    d.mkdir()
    port = free_port()
    (d / "nginx.conf").write_text(f"""
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 512; }}
http {{
  access_log off;
  client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fcgi;
  uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
  client_header_timeout 2s; large_client_header_buffers 4 {MAX_HEADER_BYTES};
  upstream up {{ server 127.0.0.1:{upstream.port}; keepalive 8; }}
  server {{ listen 127.0.0.1:{port} default_server; return 404; }}
  server {{
    listen 127.0.0.1:{port}; server_name {HOST};
    location / {{ proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection "";
                  proxy_set_header Host $host; }}
  }}
}}
""")
    p = Process([binary, "-p", str(d), "-c", str(d / "nginx.conf"), "-g",
                 "daemon off; master_process off;"], d / "stdout.log")
    return Target("nginx", port, upstream), p


def start_haproxy(root: Path, upstream: RecordingUpstream) -> tuple[Target, Process] | None:
    binary = shutil.which("haproxy") or ("/usr/sbin/haproxy"
                                         if os.path.exists("/usr/sbin/haproxy") else None)
    if not binary:
        return None
    d = root / "haproxy"
    d.mkdir()
    port = free_port()
    (d / "haproxy.cfg").write_text(f"""
global
  maxconn 512
  tune.bufsize {MAX_HEADER_BYTES * 2}
defaults
  mode http
  timeout connect 2s
  timeout client 3s
  timeout server 3s
  timeout http-request 2s
frontend f
  bind 127.0.0.1:{port}
  http-request deny deny_status 404 unless {{ req.hdr(host),field(1,:) -i {HOST} }}
  default_backend b
backend b
  server s1 127.0.0.1:{upstream.port}
""")
    p = Process([binary, "-db", "-f", str(d / "haproxy.cfg")], d / "stdout.log")
    return Target("haproxy", port, upstream), p


@pytest.fixture(scope="module")
def targets(module_env, tmp_path_factory):
    env = module_env
    ups = {name: RecordingUpstream() for name in ("kedge", "nginx", "haproxy")}
    env.write("apps.yaml", service("smug"),
              endpoint_slice("smug", ups["kedge"].port, [
                  {"addresses": ["127.0.0.1"], "conditions": {"ready": True}}]))
    env.write("ingress.yaml", ingress("smug", [(HOST, [path_rule("/", "smug")])]))
    k = env.kedge("--max-header-bytes", str(MAX_HEADER_BYTES),
                  "--client-header-timeout", str(HEADER_TIMEOUT_MS))
    result = {"kedge": Target("kedge", k.http_port, ups["kedge"])}
    others: list[Process] = []
    root = tmp_path_factory.mktemp("others")
    for start in (start_nginx, start_haproxy):
        name = "nginx" if start is start_nginx else "haproxy"
        started = start(root, ups[name])
        if not started:
            continue
        target, proc = started
        others.append(proc)
        try:
            poll(lambda: proc.alive() and can_connect("127.0.0.1", target.port), timeout(10),
                 what=f"{name} listening")
            result[name] = target
        except AssertionError:
            pass  # recorded as absent in the comparison
    yield result
    for p in others:
        p.stop(grace_s=5)
    for u in ups.values():
        u.close()


def run_requests(target: Target) -> dict[str, Answers]:
    with ThreadPoolExecutor(max_workers=12) as pool:
        futures = {c.id: pool.submit(exchange, target.port, c.data) for c in REQUEST_CASES}
        return {cid: f.result() for cid, f in futures.items()}


def after_request(cid: str) -> bytes:
    return f"GET /{cid}-after HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode()


def run_responses(target: Target) -> dict[str, tuple[Answers, int]]:
    """Each response case, then a request on the same connection, then one on a new one."""
    out = {}
    for cid, _, _, _ in RESPONSE_CASES:
        first = exchange(target.port, f"GET /r/{cid} HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode(),
                         then=after_request(cid))
        fresh = exchange(target.port, after_request(cid))
        out[cid] = (first, fresh.first)
    return out


@pytest.fixture(scope="module")
def kedge_requests(targets):
    return run_requests(targets["kedge"])


@pytest.fixture(scope="module")
def kedge_responses(targets):
    return run_responses(targets["kedge"])


# --------------------------------------------------------------------------------------------
# kedge: requests


@pytest.mark.parametrize("case", REQUEST_CASES, ids=[c.id for c in REQUEST_CASES])
def test_hostile_request(targets, kedge_requests, case: Case):
    got = kedge_requests[case.id]
    upstream = targets["kedge"].upstream
    assert got.first in case.status, f"{case.reason}: {got!r}"
    if case.closes:
        assert got.closed, f"{case.reason}: kedge kept the connection open: {got!r}"
    if got.first == 200:
        assert len(got.statuses) == case.answers, got
        assert all(s == 200 for s in got.statuses), got
    forwarded = upstream.of(case.id)
    expect = (1 if case.forwarded is None else case.forwarded) if got.first == 200 else 0
    assert len(forwarded) == expect, f"{case.reason}: {[r.line for r in forwarded]}"
    for r in forwarded:
        assert len(r.get_all(b"host")) == 1
        if case.extra.get("host"):
            assert r.get_all(b"host") == [case.extra["host"].encode()], r.fields
            assert r.target == case.extra["target"]
    assert not upstream.violations, upstream.violations


def test_request_bodies_arrive_intact(targets, kedge_requests):
    """Where a body was accepted, the upstream got exactly its bytes, once."""
    upstream = targets["kedge"].upstream
    bodies = {r.target: r.body for r in upstream.requests}
    assert bodies.get("/c11") == b"hello"
    assert bodies.get("/c27") == b"hello"
    assert bodies.get("/c57") == b"hello"
    assert bodies.get("/c62") == b"hello" and bodies.get("/c62b") == b""
    assert bodies.get("/c63") == b"hello"
    assert bodies.get("/c64", b"").startswith(b"GET /c64-smuggled")
    assert "/c64-smuggled" not in bodies


def test_at_least_forty_request_cases():
    assert len(REQUEST_CASES) >= 40
    assert len({c.id for c in REQUEST_CASES}) == len(REQUEST_CASES)


# --------------------------------------------------------------------------------------------
# kedge: responses


@pytest.mark.parametrize("cid,expected,reason", [(c, s, r) for c, _, s, r in RESPONSE_CASES],
                         ids=[c for c, _, _, _ in RESPONSE_CASES])
def test_hostile_response(targets, kedge_responses, cid, expected, reason):
    first, fresh = kedge_responses[cid]
    assert first.first in expected, f"{reason}: {first!r}"
    assert b"SMUGGLED" not in first.raw, f"{reason}: leftovers reached the client: {first!r}"
    if first.first == 200 and cid == "r13":
        assert first.truncated or first.closed, f"{reason}: {first!r}"
    # What follows on the same connection is an honest answer or nothing, and a new connection
    # is served normally: the upstream connection was not reused with bytes left in it.
    assert first.statuses[1:] in ([], [200]), first
    assert fresh == 200, f"{reason}: a new request after it got {fresh}"


# --------------------------------------------------------------------------------------------
# nginx and HAProxy, for comparison


def describe(a: Answers) -> str:
    if not a.statuses:
        return "closed" if a.closed else "no answer"
    s = "+".join(str(x) for x in a.statuses)
    return s + (" cut" if a.truncated else "") + (" close" if a.closed else "")


def test_compare_with_nginx_and_haproxy(targets, kedge_requests, kedge_responses):
    others = [n for n in ("nginx", "haproxy") if n in targets]
    if not others:
        pytest.skip("neither nginx nor haproxy is installed")
    requests = {"kedge": kedge_requests}
    responses = {"kedge": kedge_responses}
    for n in others:
        requests[n] = run_requests(targets[n])
        responses[n] = run_responses(targets[n])
    names = ["kedge", *others]
    rows = ["| case | input | " + " | ".join(names) + " |",
            "|---|---|" + "---|" * len(names)]
    for c in REQUEST_CASES:
        cells = []
        for n in names:
            fw = len(targets[n].upstream.of(c.id))
            cells.append(f"{describe(requests[n][c.id])}, {fw} up")
        rows.append(f"| {c.id} | {c.reason.split(':')[0]} | " + " | ".join(cells) + " |")
    for cid, _, _, reason in RESPONSE_CASES:
        cells = []
        for n in names:
            first, fresh = responses[n][cid]
            cells.append(f"{describe(first)}, next {fresh}")
        rows.append(f"| {cid} | upstream: {reason.split(':')[0]} | " + " | ".join(cells) + " |")
    table = "\n".join(rows) + "\n"
    out = os.environ.get("KEDGE_SMUGGLING_TABLE")
    if out:
        Path(out).write_text(table)
    # Every proxy answered every case in some way, and kedge's upstream saw nothing
    # non-canonical; the others' upstreams may have (that is what the table is for).
    for n in names:
        assert len(requests[n]) == len(REQUEST_CASES)
    assert not targets["kedge"].upstream.violations
