"""Shared fixtures and helpers for the kedge end-to-end tests.

Every test runs the real `kedge serve` binary against `kedge echo` backends on 127.0.0.x
loopback addresses, with manifests written to a temporary folder. Nothing leaves 127.0.0.0/8.
Processes are tracked by PID and stopped at teardown; every wait is a bounded poll.
"""

from __future__ import annotations

import atexit
import http.client
import json
import mmap
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Callable, Iterable

import pytest

KEDGE_SOURCE_DIR = Path(os.environ.get("KEDGE_SOURCE_DIR", Path(__file__).resolve().parents[2]))
# ctest sets KEDGE_BIN; run by hand, the tests use scripts/build.sh's build.
KEDGE_BIN = os.environ.get("KEDGE_BIN", str(KEDGE_SOURCE_DIR / "build" / "src" / "kedge"))


def _sanitized(path: str) -> bool:
    """True when the binary was built with AddressSanitizer (everything runs slower)."""
    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
            return m.find(b"__asan_init") >= 0
    except (OSError, ValueError):
        return False


SANITIZED = _sanitized(KEDGE_BIN)
# Multiplier for every timeout of the suite (not for the limits under test).
SCALE = float(os.environ.get("KEDGE_E2E_TIMEOUT_SCALE", "4" if SANITIZED else "1"))


def timeout(seconds: float) -> float:
    return seconds * SCALE


# --------------------------------------------------------------------------------------------
# Polling, ports


def poll(fn: Callable[[], object], timeout_s: float, interval: float = 0.02, what: str = ""):
    """Calls fn until it returns a truthy value or timeout_s passes; returns that value.

    Exceptions raised by fn count as "not yet". Bounded in time and in count."""
    deadline = time.monotonic() + timeout_s
    last_exc: BaseException | None = None
    max_tries = int(timeout_s / interval) + 10
    for _ in range(max_tries):
        try:
            value = fn()
            if value:
                return value
        except Exception as e:  # noqa: BLE001 - "not yet"
            last_exc = e
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    raise AssertionError(
        f"timed out after {timeout_s:.1f}s waiting for {what or fn}"
        + (f" (last error: {last_exc!r})" if last_exc else "")
    )


def free_port(*ips: str) -> int:
    """A TCP port free on every address in ips (default 127.0.0.1)."""
    ips = ips or ("127.0.0.1",)
    for _ in range(100):
        with socket.socket() as s:
            s.bind((ips[0], 0))
            port = s.getsockname()[1]
        ok = True
        for ip in ips[1:]:
            with socket.socket() as t:
                try:
                    t.bind((ip, port))
                except OSError:
                    ok = False
                    break
        if ok:
            return port
    raise RuntimeError(f"no common free port on {ips}")


def can_connect(ip: str, port: int, timeout_s: float = 0.5) -> bool:
    try:
        with socket.create_connection((ip, port), timeout=timeout_s):
            return True
    except OSError:
        return False


# --------------------------------------------------------------------------------------------
# Manifests


def _scalar(v) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    return json.dumps(str(v))  # a JSON string is a valid double-quoted YAML scalar


def to_yaml(obj, indent: int = 0) -> list[str]:
    """Block-style YAML lines for dicts, lists and scalars."""
    pad = "  " * indent
    lines: list[str] = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            key = _scalar(k) if not re.fullmatch(r"[A-Za-z0-9_.\-/]+", str(k)) else str(k)
            if isinstance(v, (dict, list)) and v:
                lines.append(f"{pad}{key}:")
                lines.extend(to_yaml(v, indent + 1))
            elif isinstance(v, dict):
                lines.append(f"{pad}{key}: {{}}")
            elif isinstance(v, list):
                lines.append(f"{pad}{key}: []")
            else:
                lines.append(f"{pad}{key}: {_scalar(v)}")
    elif isinstance(obj, list):
        for item in obj:
            if isinstance(item, (dict, list)) and item:
                sub = to_yaml(item, indent + 1)
                first = sub[0][len(pad) + 2 :]
                lines.append(f"{pad}- {first}")
                lines.extend(sub[1:])
            else:
                empty = "{}" if isinstance(item, dict) else "[]"
                text = empty if isinstance(item, (dict, list)) else _scalar(item)
                lines.append(f"{pad}- {text}")
    else:
        lines.append(pad + _scalar(obj))
    return lines


def dump_yaml(*docs) -> str:
    return "---\n".join("\n".join(to_yaml(d)) + "\n" for d in docs)


def service(name: str, ns: str = "default", port: int = 80, port_name: str = "http") -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "selector": {"app": name},
            "ports": [{"name": port_name, "port": port, "targetPort": port_name}],
        },
    }


def endpoint(ip: str, pod: str, ready: bool | None = True, serving: bool | None = None,
             terminating: bool | None = None) -> dict:
    conditions = {}
    if ready is not None:
        conditions["ready"] = ready
    if serving is not None:
        conditions["serving"] = serving
    if terminating is not None:
        conditions["terminating"] = terminating
    e = {"addresses": [ip], "targetRef": {"kind": "Pod", "name": pod}}
    if conditions:
        e["conditions"] = conditions
    return e


def endpoint_slice(svc: str, port: int, endpoints: list[dict], ns: str = "default",
                   name: str | None = None, port_name: str = "http") -> dict:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": name or f"{svc}-slice",
            "namespace": ns,
            "labels": {"kubernetes.io/service-name": svc},
        },
        "addressType": "IPv4",
        "ports": [{"name": port_name, "port": port, "protocol": "TCP"}],
        "endpoints": endpoints,
    }


def backend(svc: str, port: int = 80) -> dict:
    return {"service": {"name": svc, "port": {"number": port}}}


def path_rule(path: str, svc: str, path_type: str = "Prefix", port: int = 80) -> dict:
    return {"path": path, "pathType": path_type, "backend": backend(svc, port)}


def ingress(name: str, rules: list[tuple[str, list[dict]]] | None = None, ns: str = "default",
            class_name: str | None = None, annotations: dict | None = None,
            default_backend: str | None = None) -> dict:
    """rules: [(host or "", [path_rule(...), ...])]."""
    meta: dict = {"name": name, "namespace": ns}
    if annotations:
        meta["annotations"] = annotations
    spec: dict = {}
    if class_name is not None:
        spec["ingressClassName"] = class_name
    if default_backend:
        spec["defaultBackend"] = backend(default_backend)
    if rules:
        spec["rules"] = []
        for host, paths in rules:
            rule: dict = {}
            if host:
                rule["host"] = host
            rule["http"] = {"paths": paths}
            spec["rules"].append(rule)
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": meta,
            "spec": spec}


def ingress_class(name: str, controller: str = "kedge.dev/ingress-controller",
                  default: bool = False) -> dict:
    meta: dict = {"name": name}
    if default:
        meta["annotations"] = {"ingressclass.kubernetes.io/is-default-class": "true"}
    return {"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass", "metadata": meta,
            "spec": {"controller": controller}}


# --------------------------------------------------------------------------------------------
# Processes


_STARTED: list["Process"] = []


@atexit.register
def _kill_leftovers() -> None:
    """Should pytest end without running the fixtures' teardown, no child outlives it."""
    for p in _STARTED:
        if p.proc.poll() is None:
            os.kill(p.pid, signal.SIGKILL)


class Process:
    """A child process whose output goes to a log file."""

    def __init__(self, args: list[str], log_path: Path):
        self.args = args
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT)
        self.pid = self.proc.pid
        _STARTED.append(self)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, n: int = 40) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])

    def stop(self, grace_s: float) -> int | None:
        """SIGTERM, then SIGKILL after grace_s. Returns the exit code of a graceful stop, or
        None when the process had to be killed."""
        code: int | None = None
        if self.alive():
            os.kill(self.pid, signal.SIGTERM)
            try:
                code = self.proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
                code = None
        else:
            code = self.proc.returncode
        self._log.close()
        return code


class Echo:
    def __init__(self, proc: Process, ip: str, port: int, name: str, pod: str):
        self.proc, self.ip, self.port, self.name, self.pod = proc, ip, port, name, pod

    def endpoint(self, **conditions) -> dict:
        return endpoint(self.ip, self.pod, **conditions)


class Response:
    def __init__(self, status: int, headers: http.client.HTTPMessage, body: bytes):
        self.status, self.headers, self.body = status, headers, body

    def json(self):
        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.body[:200]!r}>"


class Kedge:
    def __init__(self, env: "Env", proc: Process, http_port: int, admin_port: int):
        self.env, self.proc, self.http_port, self.admin_port = env, proc, http_port, admin_port
        self.ip = "127.0.0.1"

    # HTTP through the proxy -------------------------------------------------------------
    def connection(self, timeout_s: float = 10) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.ip, self.http_port, timeout=timeout(timeout_s))

    def request(self, host: str, path: str = "/", method: str = "GET", headers: dict | None = None,
                body=None, timeout_s: float = 10, conn: http.client.HTTPConnection | None = None
                ) -> Response:
        own = conn is None
        c = conn or self.connection(timeout_s)
        try:
            h = {"Host": host}
            h.update(headers or {})
            chunked = any(k.lower() == "transfer-encoding" for k in h) and body is not None \
                and not isinstance(body, (bytes, str))
            c.request(method, path, body=body, headers=h, encode_chunked=chunked)
            r = c.getresponse()
            return Response(r.status, r.headers, r.read())
        finally:
            if own:
                c.close()

    def get_json(self, host: str, path: str = "/", **kw) -> dict:
        r = self.request(host, path, **kw)
        assert r.status == 200, f"{host}{path}: {r!r}\n{self.proc.log_tail()}"
        return r.json()

    def service_of(self, host: str, path: str = "/") -> str | int:
        """The echo service that answered, or the status when it was not 200."""
        r = self.request(host, path)
        return r.json()["service"] if r.status == 200 else r.status

    # Admin --------------------------------------------------------------------------------
    def admin(self, path: str, method: str = "GET") -> Response:
        c = http.client.HTTPConnection("127.0.0.1", self.admin_port, timeout=timeout(10))
        try:
            c.request(method, path)
            r = c.getresponse()
            return Response(r.status, r.headers, r.read())
        finally:
            c.close()

    def admin_json(self, path: str):
        r = self.admin(path)
        assert r.status == 200, f"{path}: {r!r}"
        return r.json()

    def metrics(self) -> str:
        r = self.admin("/metrics")
        assert r.status == 200
        return r.body.decode()

    def metric(self, name: str, labels: str = "") -> float | None:
        """The value of one sample, e.g. metric("kedge_config_errors")."""
        pattern = re.escape(name) + (r"\{" + re.escape(labels) + r"\}" if labels else r"(?:\{\})?")
        m = re.search(r"^" + pattern + r" ([0-9.e+\-]+)$", self.metrics(), re.M)
        return float(m.group(1)) if m else None

    def generation(self) -> int:
        return int(self.admin_json("/debug/snapshot")["generation"])

    def wait_reload(self, before: int, timeout_s: float = 5) -> int:
        """Waits until a snapshot newer than `before` is published and every worker has it."""
        def newer():
            g = self.generation()
            w = self.metric("kedge_worker_snapshot_generation")
            return g if g > before and w is not None and w >= g else None
        return poll(newer, timeout(timeout_s), what="a new snapshot")


class Env:
    """Processes and manifests of one test (or one module)."""

    def __init__(self, root: Path):
        self.root = root
        self.manifests = root / "manifests"
        self.manifests.mkdir(parents=True, exist_ok=True)
        self.logs = root / "logs"
        self.logs.mkdir(exist_ok=True)
        self.processes: list[Process] = []
        self.kedges: list[Kedge] = []
        self._n = 0

    def _spawn(self, args: list[str], label: str) -> Process:
        self._n += 1
        p = Process(args, self.logs / f"{self._n:02d}-{label}.log")
        self.processes.append(p)
        return p

    # Manifests ----------------------------------------------------------------------------
    def write(self, filename: str, *docs) -> Path:
        return self.write_text(filename, dump_yaml(*docs))

    def write_text(self, filename: str, text: str) -> Path:
        """Replaces a manifest atomically (a hidden temporary file, then rename)."""
        path = self.manifests / filename
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / f".{path.name}.tmp"
        tmp.write_text(text)
        os.replace(tmp, path)
        return path

    def remove(self, filename: str) -> None:
        (self.manifests / filename).unlink()

    # Processes ----------------------------------------------------------------------------
    def echo(self, name: str, pod: str | None = None, ip: str = "127.0.0.1", port: int | None = None,
             namespace: str = "default") -> Echo:
        pod = pod or f"{name}-pod"
        port = port or free_port(ip)
        p = self._spawn([KEDGE_BIN, "echo", "--listen", f"{ip}:{port}", "--name", name, "--pod", pod,
                         "--namespace", namespace], f"echo-{pod}")

        def up():
            if not p.alive():
                raise AssertionError(f"echo {pod} exited:\n{p.log_tail()}")
            return can_connect(ip, port)
        poll(up, timeout(10), what=f"echo {pod} on {ip}:{port}")
        return Echo(p, ip, port, name, pod)

    def kedge(self, *extra: str, workers: int = 2, manifests: Path | None = None,
              wait_ready: bool = True) -> Kedge:
        http_port, admin_port = free_port(), free_port()
        args = [KEDGE_BIN, "serve", "--manifests", str(manifests or self.manifests),
                "--http-listen", f"127.0.0.1:{http_port}",
                "--admin-listen", f"127.0.0.1:{admin_port}",
                "--workers", str(workers), *extra]
        p = self._spawn(args, "kedge")
        k = Kedge(self, p, http_port, admin_port)
        self.kedges.append(k)
        if wait_ready:
            def ready():
                if not p.alive():
                    raise AssertionError(f"kedge exited with {p.proc.returncode}:\n{p.log_tail()}")
                return k.admin("/readyz").status == 200 and can_connect("127.0.0.1", http_port)
            try:
                poll(ready, timeout(15), interval=0.02, what="kedge /readyz")
            except AssertionError as e:
                raise AssertionError(f"{e}\n{p.log_tail()}") from None
        return k

    def run_kedge(self, *args: str, timeout_s: float = 30) -> subprocess.CompletedProcess:
        return subprocess.run([KEDGE_BIN, *args], capture_output=True, text=True,
                              timeout=timeout(timeout_s))

    def close(self) -> list[str]:
        """Stops every process (kedge first). Returns problems found: a kedge that did not exit
        0 on SIGTERM, or that reported a sanitizer error."""
        problems = []
        ordered = [k.proc for k in self.kedges] + [p for p in self.processes
                                                   if all(p is not k.proc for k in self.kedges)]
        for p in ordered:
            was_alive = p.alive()
            code = p.stop(grace_s=timeout(10))
            is_kedge = any(p is k.proc for k in self.kedges)
            log = p.log_tail(60)
            if "ERROR: AddressSanitizer" in log or "runtime error:" in log or "LeakSanitizer" in log:
                problems.append(f"{p.args[1]} pid {p.pid}: sanitizer report:\n{log}")
            elif is_kedge and was_alive and code != 0:
                problems.append(f"kedge pid {p.pid} exited with {code} on SIGTERM:\n{log}")
        return problems


@pytest.fixture
def env(tmp_path):
    e = Env(tmp_path)
    yield e
    problems = e.close()
    assert not problems, "\n\n".join(problems)


@pytest.fixture(scope="module")
def module_env(tmp_path_factory, request):
    e = Env(tmp_path_factory.mktemp(request.module.__name__.split(".")[-1]))
    yield e
    problems = e.close()
    assert not problems, "\n\n".join(problems)


# --------------------------------------------------------------------------------------------
# Raw HTTP/1.1 over sockets


def raw_connect(port: int, ip: str = "127.0.0.1", timeout_s: float = 10) -> socket.socket:
    s = socket.create_connection((ip, port), timeout=timeout(timeout_s))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


class RawResponse:
    def __init__(self, status: int, reason: str, headers: list[tuple[str, str]], body: bytes):
        self.status, self.reason, self.headers, self.body = status, reason, headers, body

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def json(self):
        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"<RawResponse {self.status} {self.headers} {self.body[:200]!r}>"


def read_response(f, head_request: bool = False) -> RawResponse:
    """Reads one response from a buffered socket file (sock.makefile("rb")); interim 1xx
    responses are skipped. Raises EOFError when the connection closed first."""
    for _ in range(100):  # interim responses, then the final one
        line = f.readline(65536)
        if not line:
            raise EOFError("connection closed before a response")
        m = re.match(rb"HTTP/1\.[01] (\d{3}) ?(.*)\r\n", line)
        assert m, f"bad status line {line!r}"
        status, reason = int(m.group(1)), m.group(2).decode()
        headers = []
        for _ in range(200):
            h = f.readline(65536)
            if h in (b"\r\n", b"\n", b""):
                break
            k, _, v = h.decode("latin-1").partition(":")
            headers.append((k.strip(), v.strip()))
        if 100 <= status < 200 and status != 101:
            continue
        break
    else:
        raise AssertionError("no final response after 100 interim ones")
    resp = RawResponse(status, reason, headers, b"")
    if head_request or status in (101, 204, 304):
        return resp
    te = (resp.header("transfer-encoding") or "").lower()
    cl = resp.header("content-length")
    if "chunked" in te:
        body = bytearray()
        for _ in range(1_000_000):
            size_line = f.readline(1024)
            size = int(size_line.split(b";")[0].strip(), 16)
            if size == 0:
                for _ in range(200):  # trailer fields, then the empty line
                    if f.readline(65536) in (b"\r\n", b""):
                        break
                break
            body += f.read(size)
            f.readline(16)
        resp.body = bytes(body)
    elif cl is not None:
        resp.body = f.read(int(cl))
    else:
        resp.body = f.read()
    return resp


def read_until_closed(s: socket.socket, limit: int = 1 << 20) -> bytes:
    """Reads until EOF (the peer closed); raises on timeout. A reset counts as closed."""
    data = bytearray()
    for _ in range(10000):
        try:
            chunk = s.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
        if len(data) > limit:
            raise AssertionError("peer kept sending")
    return bytes(data)


def is_closed(s: socket.socket, timeout_s: float = 5) -> bool:
    """True when the peer closes the connection (EOF or reset) within timeout_s."""
    s.settimeout(timeout(timeout_s))
    try:
        rest = read_until_closed(s)
    except socket.timeout:
        return False
    return rest == b""


def parse_status(raw: bytes) -> int:
    m = re.match(rb"HTTP/1\.[01] (\d{3})", raw)
    assert m, f"not an HTTP response: {raw[:200]!r}"
    return int(m.group(1))


def curl(*args: str, timeout_s: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(["curl", "-sS", "--noproxy", "*", *args], capture_output=True,
                          timeout=timeout(timeout_s))


def unique(items: Iterable) -> set:
    return set(items)


# --------------------------------------------------------------------------------------------
# A scripted upstream for responses kedge echo does not produce


class RawBackend:
    """A TCP server on 127.0.0.x that runs `handler(sock, head_bytes)` for every request head it
    reads (one thread per connection). For upstream behaviour kedge echo does not have."""

    def __init__(self, handler, ip: str = "127.0.0.1", port: int = 0):
        import threading
        self.handler, self.ip = handler, ip
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((ip, port))
        self.listener.listen(64)
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.requests: list[bytes] = []  # request heads, in arrival order
        self._stop = threading.Event()
        self._threads: list = []
        self._conns: list[socket.socket] = []
        self._accept = threading.Thread(target=self._run, daemon=True)
        self._accept.start()

    def _run(self) -> None:
        import threading
        for _ in range(100_000):  # 0.2 s accept timeouts: bounded by the test's lifetime
            if self._stop.is_set():
                break
            try:
                conn, _ = self.listener.accept()
            except (socket.timeout, OSError):
                continue
            self._conns.append(conn)
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            t.start()
            self._threads.append(t)

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(10)
        buf = b""
        try:
            for _ in range(10_000):  # requests on this connection
                if self._stop.is_set():
                    return
                for _ in range(1000):  # reads of one head (10 s timeout each)
                    if b"\r\n\r\n" in buf:
                        break
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                else:
                    return
                head, _, buf = buf.partition(b"\r\n\r\n")
                self.requests.append(head)
                if self.handler(conn, head) is False:
                    return
        except OSError:
            pass
        finally:
            conn.close()

    @property
    def connections(self) -> int:
        return len(self._conns)

    def close(self) -> None:
        self._stop.set()
        self._accept.join(5)
        self.listener.close()
        for c in self._conns:  # wakes the threads blocked in recv on kept-alive connections
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for t in self._threads:
            t.join(5)
