#!/usr/bin/env python3
"""A small Kubernetes API server for tests: the real wire protocol, in memory, stdlib only.

It speaks what a client of the real API server relies on (see README.md): discovery, paginated
lists with `limit`/`continue`, watch streams (chunked, one JSON event per line, ADDED/MODIFIED/
DELETED/BOOKMARK/ERROR) resumable from a resourceVersion, the in-stream `ERROR` with a 410
`Expired` Status for a compacted resourceVersion, bearer-token auth over TLS, optimistic
concurrency (409 Conflict on a stale resourceVersion, 409 AlreadyExists on create), the status
subresource, Leases with MicroTime validation, Events, JSON merge patch.

Tests drive it through the Python API (FakeApiServer) or, from the command line, through the
`/_control/` HTTP endpoints. Run `python3 fake_apiserver.py --help`.
"""

from __future__ import annotations

import argparse
import base64
import copy
import datetime
import itertools
import json
import os
import re
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Iterable


class Resource:
    def __init__(self, group: str, version: str, plural: str, kind: str, namespaced: bool,
                 status: bool = False, short: tuple = ()):
        self.group, self.version, self.plural, self.kind = group, version, plural, kind
        self.namespaced, self.has_status, self.short = namespaced, status, short

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


RESOURCES = [
    Resource("", "v1", "services", "Service", True, status=True, short=("svc",)),
    Resource("", "v1", "endpoints", "Endpoints", True, short=("ep",)),
    Resource("", "v1", "secrets", "Secret", True),
    Resource("", "v1", "configmaps", "ConfigMap", True, short=("cm",)),
    Resource("", "v1", "events", "Event", True, short=("ev",)),
    Resource("", "v1", "nodes", "Node", False, status=True, short=("no",)),
    Resource("", "v1", "pods", "Pod", True, status=True, short=("po",)),
    Resource("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", True),
    Resource("networking.k8s.io", "v1", "ingresses", "Ingress", True, status=True, short=("ing",)),
    Resource("networking.k8s.io", "v1", "ingressclasses", "IngressClass", False),
    Resource("coordination.k8s.io", "v1", "leases", "Lease", True),
    # Kinds kedge's deploy/ manifests use, so that kubectl can map them (discovery).
    Resource("", "v1", "namespaces", "Namespace", False, status=True, short=("ns",)),
    Resource("", "v1", "serviceaccounts", "ServiceAccount", True, short=("sa",)),
    Resource("apps", "v1", "deployments", "Deployment", True, status=True, short=("deploy",)),
    Resource("apps", "v1", "daemonsets", "DaemonSet", True, status=True, short=("ds",)),
    Resource("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", True, status=True,
             short=("pdb",)),
    Resource("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", False),
    Resource("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", False),
    Resource("rbac.authorization.k8s.io", "v1", "roles", "Role", True),
    Resource("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", True),
]
BY_PATH = {(r.group, r.version, r.plural): r for r in RESOURCES}
BY_KIND = {r.kind: r for r in RESOURCES}

MICROTIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def status_obj(code: int, reason: str, message: str, details: dict | None = None) -> dict:
    s = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
         "message": message, "reason": reason, "code": code}
    if details:
        s["details"] = details
    return s


def merge_patch(target, patch):
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str, details: dict | None = None):
        super().__init__(message)
        self.status = status_obj(code, reason, message, details)


class Watch:
    """One open watch stream: events are queued here and written by its handler thread."""

    def __init__(self, res: Resource, namespace: str, selector: Callable[[dict], bool]):
        self.res, self.namespace, self.selector = res, namespace, selector
        self.queue: list[dict] = []
        self.cond = threading.Condition()
        self.closed = False  # end the stream cleanly
        self.dropped = False  # cut the connection

    def push(self, event: dict) -> None:
        with self.cond:
            self.queue.append(event)
            self.cond.notify()

    def end(self, drop: bool) -> None:
        with self.cond:
            if drop:
                self.dropped = True
            self.closed = True
            self.cond.notify()


class Store:
    """Objects by (plural, namespace, name), one global resourceVersion, an event history."""

    def __init__(self):
        self.lock = threading.RLock()
        self.objects: dict[tuple[str, str, str], dict] = {}
        self.rv = 100
        self.history: list[tuple[int, str, str, dict]] = []  # (rv, plural, type, object)
        self.compacted = 0  # watches from a resourceVersion below this get 410 Expired
        self.watches: list[Watch] = []
        self.continues: dict[str, tuple[int, list[dict]]] = {}
        self.next_cluster_ip = itertools.count(10)
        self.next_node_port = itertools.count(30000)

    # -- writes -------------------------------------------------------------------------
    def _bump(self) -> str:
        self.rv += 1
        return str(self.rv)

    def _emit(self, res: Resource, etype: str, obj: dict) -> None:
        self.history.append((self.rv, res.plural, etype, copy.deepcopy(obj)))
        if len(self.history) > 10000:
            del self.history[:5000]
        ns = obj["metadata"].get("namespace", "")
        for w in list(self.watches):
            if w.res is res and (not w.namespace or w.namespace == ns) and w.selector(obj):
                w.push({"type": etype, "object": copy.deepcopy(obj)})

    def _defaults(self, res: Resource, obj: dict) -> None:
        """The API server's allocations: ClusterIP and NodePorts of Services."""
        if res.kind != "Service":
            return
        spec = obj.setdefault("spec", {})
        spec.setdefault("type", "ClusterIP")
        if spec["type"] != "ExternalName" and not spec.get("clusterIP"):
            n = next(self.next_cluster_ip)
            spec["clusterIP"] = f"10.96.{n // 250}.{n % 250 + 1}"
            spec["clusterIPs"] = [spec["clusterIP"]]
        for p in spec.get("ports", []):
            p.setdefault("protocol", "TCP")
            p.setdefault("targetPort", p.get("port"))
            if spec["type"] in ("NodePort", "LoadBalancer") and not p.get("nodePort"):
                p["nodePort"] = next(self.next_node_port)
        spec.setdefault("sessionAffinity", "None")
        obj.setdefault("status", {"loadBalancer": {}})

    def _validate(self, res: Resource, obj: dict) -> None:
        if res.kind == "Lease":
            spec = obj.get("spec", {})
            for f in ("acquireTime", "renewTime"):
                v = spec.get(f)
                if v is not None and not (isinstance(v, str) and MICROTIME.match(v)):
                    raise ApiError(400, "BadRequest",
                                   f"Lease in version \"v1\" cannot be handled as a Lease: "
                                   f"spec.{f}: parsing time \"{v}\" as MicroTime: "
                                   f"six fractional digits required")
            for f in ("leaseDurationSeconds", "leaseTransitions"):
                v = spec.get(f)
                if v is not None and (not isinstance(v, int) or isinstance(v, bool)):
                    raise ApiError(400, "BadRequest",
                                   f"Lease in version \"v1\" cannot be handled as a Lease: "
                                   f"json: cannot unmarshal {type(v).__name__} into Go struct "
                                   f"field LeaseSpec.spec.{f} of type int32")
        name = obj.get("metadata", {}).get("name", "")
        if not name:
            raise ApiError(422, "Invalid", f"{res.kind} \"\" is invalid: metadata.name: "
                           "Required value: name or generateName is required",
                           {"kind": res.plural, "causes": [{"reason": "FieldValueRequired",
                                                           "message": "Required value",
                                                           "field": "metadata.name"}]})

    def create(self, res: Resource, namespace: str, obj: dict) -> dict:
        with self.lock:
            obj = copy.deepcopy(obj)
            md = obj.setdefault("metadata", {})
            if not md.get("name") and md.get("generateName"):
                md["name"] = md["generateName"] + uuid.uuid4().hex[:5]
            if res.namespaced:
                md["namespace"] = namespace or md.get("namespace") or "default"
            else:
                md.pop("namespace", None)
            self._validate(res, obj)
            key = (res.plural, md.get("namespace", ""), md["name"])
            if key in self.objects:
                raise ApiError(409, "AlreadyExists",
                               f"{res.plural}.{res.group or 'core'} \"{md['name']}\" already exists",
                               {"name": md["name"], "group": res.group, "kind": res.plural})
            obj["apiVersion"], obj["kind"] = res.api_version, res.kind
            md.pop("resourceVersion", None)
            md["uid"] = str(uuid.uuid4())
            md["creationTimestamp"] = now_rfc3339()
            md.setdefault("generation", 1)
            self._defaults(res, obj)
            md["resourceVersion"] = self._bump()
            self.objects[key] = obj
            self._emit(res, "ADDED", obj)
            return copy.deepcopy(obj)

    def update(self, res: Resource, namespace: str, name: str, obj: dict,
               subresource: str = "") -> dict:
        with self.lock:
            key = (res.plural, namespace if res.namespaced else "", name)
            cur = self.objects.get(key)
            if cur is None:
                raise ApiError(404, "NotFound", f"{res.plural} \"{name}\" not found",
                               {"name": name, "kind": res.plural})
            md = obj.get("metadata", {})
            rv = md.get("resourceVersion")
            if rv and rv != cur["metadata"]["resourceVersion"]:
                raise ApiError(409, "Conflict",
                               f"Operation cannot be fulfilled on {res.plural} \"{name}\": the "
                               "object has been modified; please apply your changes to the "
                               "latest version and try again",
                               {"name": name, "kind": res.plural})
            if subresource == "status":
                new = copy.deepcopy(cur)
                new["status"] = copy.deepcopy(obj.get("status", {}))
            else:
                new = copy.deepcopy(obj)
                new["apiVersion"], new["kind"] = res.api_version, res.kind
                nmd = new.setdefault("metadata", {})
                for f in ("uid", "creationTimestamp", "namespace", "name"):
                    if f in cur["metadata"]:
                        nmd[f] = cur["metadata"][f]
                if res.has_status:
                    new["status"] = copy.deepcopy(cur.get("status", {}))
                if new.get("spec") != cur.get("spec"):
                    nmd["generation"] = cur["metadata"].get("generation", 1) + 1
                else:
                    nmd["generation"] = cur["metadata"].get("generation", 1)
                self._validate(res, new)
                self._defaults(res, new)
            new["metadata"]["resourceVersion"] = cur["metadata"]["resourceVersion"]
            if new == cur:
                return copy.deepcopy(cur)  # a write that changes nothing: same version, no event
            new["metadata"]["resourceVersion"] = self._bump()
            self.objects[key] = new
            self._emit(res, "MODIFIED", new)
            return copy.deepcopy(new)

    def delete(self, res: Resource, namespace: str, name: str) -> dict:
        with self.lock:
            key = (res.plural, namespace if res.namespaced else "", name)
            cur = self.objects.pop(key, None)
            if cur is None:
                raise ApiError(404, "NotFound", f"{res.plural} \"{name}\" not found",
                               {"name": name, "kind": res.plural})
            cur["metadata"]["resourceVersion"] = self._bump()
            self._emit(res, "DELETED", cur)
            return copy.deepcopy(cur)

    # -- reads --------------------------------------------------------------------------
    def get(self, res: Resource, namespace: str, name: str) -> dict:
        with self.lock:
            obj = self.objects.get((res.plural, namespace if res.namespaced else "", name))
            if obj is None:
                raise ApiError(404, "NotFound",
                               f"{res.plural}{'.' + res.group if res.group else ''} \"{name}\" "
                               "not found", {"name": name, "kind": res.plural})
            return copy.deepcopy(obj)

    def select(self, res: Resource, namespace: str, selector) -> list[dict]:
        with self.lock:
            out = [copy.deepcopy(o) for (p, ns, _), o in sorted(self.objects.items())
                   if p == res.plural and (not namespace or ns == namespace) and selector(o)]
            return out


def make_selector(query: dict) -> Callable[[dict], bool]:
    fields = [f.split("=", 1) for f in query.get("fieldSelector", "").split(",") if "=" in f]
    labels = [f.split("=", 1) for f in query.get("labelSelector", "").split(",") if "=" in f]

    def field_value(obj: dict, path: str):
        cur = obj
        for part in path.split("."):
            cur = cur.get(part) if isinstance(cur, dict) else None
        return cur

    def match(obj: dict) -> bool:
        for k, v in fields:
            k = k.rstrip("=")
            if k.endswith("!"):
                if str(field_value(obj, k[:-1]) or "") == v:
                    return False
            elif str(field_value(obj, k) or "") != v:
                return False
        lab = obj.get("metadata", {}).get("labels", {}) or {}
        return all(lab.get(k.strip()) == v.strip() for k, v in labels)

    return match


class FakeApiServer:
    """The server. Python API for tests; see README.md for the protocol it speaks."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, token: str | None = None,
                 token_file: str | None = None, cert: str | None = None, key: str | None = None,
                 bookmark_interval: float = 1.0, log: Callable[[str], None] | None = None):
        self.host, self.port = host, port
        self.token_file = token_file
        self._token = token
        if token_file and not token:
            self._token = Path(token_file).read_text().strip()
        self.cert, self.key = cert, key
        self.bookmark_interval = bookmark_interval
        self.store = Store()
        self.requests: list[tuple[str, str, dict]] = []  # (method, path, query)
        self.fail_with: int | None = None  # answer every API request with this status
        self.forbidden: set[str] = set()  # resources (plurals) answered with 403 Forbidden
        self.status_conflicts = 0  # this many /status writes get 409, as if someone wrote first
        self._log = log or (lambda m: None)
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        self._up = threading.Event()
        self._down_timer: threading.Timer | None = None

    # -- life cycle ---------------------------------------------------------------------
    @property
    def scheme(self) -> str:
        return "https" if self.cert else "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    def start(self) -> "FakeApiServer":
        ctx = None
        if self.cert:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(self.cert, self.key)
        server = self

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            allow_reuse_address = True
            request_queue_size = 128

            def get_request(self):
                conn, addr = self.socket.accept()
                if ctx is not None:
                    conn = ctx.wrap_socket(conn, server_side=True, do_handshake_on_connect=False)
                return conn, addr

            def finish_request(self, request, client_address):
                with server._conns_lock:
                    server._conns.add(request)
                try:
                    if ctx is not None:
                        request.settimeout(10)
                        request.do_handshake()
                        request.settimeout(None)
                    super().finish_request(request, client_address)
                except (OSError, ssl.SSLError):
                    pass
                finally:
                    with server._conns_lock:
                        server._conns.discard(request)

            def handle_error(self, request, client_address):
                pass

        self._httpd = Server((self.host, self.port), _handler_for(self))
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True,
                                        kwargs={"poll_interval": 0.05})
        self._thread.start()
        self._up.set()
        return self

    def stop(self) -> None:
        if self._down_timer:
            self._down_timer.cancel()
        self._close()

    def _close(self) -> None:
        self._up.clear()
        httpd, self._httpd = self._httpd, None
        if httpd:
            httpd.shutdown()
            httpd.server_close()
        self.drop_watches()
        with self._conns_lock:
            conns = list(self._conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def go_down(self, seconds: float | None = None) -> None:
        """Closes the listener and every connection (as a crashed API server would); comes back
        on the same port after `seconds` (never, when None, until up())."""
        self._close()
        if seconds is not None:
            self._down_timer = threading.Timer(seconds, self.up)
            self._down_timer.daemon = True
            self._down_timer.start()

    def up(self) -> None:
        if self._httpd is None:
            self.start()

    @property
    def is_up(self) -> bool:
        return self._up.is_set()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- auth ---------------------------------------------------------------------------
    @property
    def token(self) -> str | None:
        return self._token

    def rotate_token(self, new_token: str, token_file: str | None = None) -> None:
        """From now on only `new_token` is accepted; writes it to `token_file` (the client's
        projected token file) first when given."""
        if token_file:
            tmp = token_file + ".tmp"
            Path(tmp).write_text(new_token + "\n")
            os.replace(tmp, token_file)
        self._token = new_token

    # -- objects ------------------------------------------------------------------------
    @staticmethod
    def resource(kind_or_plural: str) -> Resource:
        if kind_or_plural in BY_KIND:
            return BY_KIND[kind_or_plural]
        for r in RESOURCES:
            if r.plural == kind_or_plural:
                return r
        raise KeyError(kind_or_plural)

    def add(self, obj: dict) -> dict:
        res = self.resource(obj["kind"])
        return self.store.create(res, obj.get("metadata", {}).get("namespace", ""), obj)

    def apply(self, obj: dict) -> dict:
        """Creates the object, or replaces it (whatever resourceVersion it carries)."""
        res = self.resource(obj["kind"])
        md = obj.get("metadata", {})
        ns = md.get("namespace", "default") if res.namespaced else ""
        try:
            cur = self.store.get(res, ns, md["name"])
        except ApiError:
            return self.add(obj)
        new = copy.deepcopy(obj)
        new["metadata"]["resourceVersion"] = cur["metadata"]["resourceVersion"]
        out = self.store.update(res, ns, md["name"], new)
        if res.has_status and "status" in obj:
            new = copy.deepcopy(out)
            new["status"] = obj["status"]
            out = self.store.update(res, ns, md["name"], new, "status")
        return out

    def delete(self, kind: str, namespace: str, name: str) -> dict:
        return self.store.delete(self.resource(kind), namespace, name)

    def get(self, kind: str, namespace: str, name: str) -> dict | None:
        try:
            return self.store.get(self.resource(kind), namespace, name)
        except ApiError:
            return None

    def list(self, kind: str, namespace: str = "") -> list[dict]:
        return self.store.select(self.resource(kind), namespace, lambda o: True)

    def load_fixtures(self, folder: str | Path) -> int:
        """Adds every object of every *.json file in `folder` (objects or kind: List)."""
        n = 0
        for path in sorted(Path(folder).glob("*.json")):
            doc = json.loads(path.read_text())
            for obj in doc.get("items", []) if doc.get("kind", "").endswith("List") else [doc]:
                if obj.get("kind") in BY_KIND:
                    self.apply(obj)
                    n += 1
        return n

    # -- faults -------------------------------------------------------------------------
    def drop_watches(self) -> None:
        """Cuts every open watch connection without a final chunk (a broken stream)."""
        with self.store.lock:
            watches = list(self.store.watches)
        for w in watches:
            w.end(drop=True)

    def expire(self) -> None:
        """Compacts history: every open watch gets an in-stream ERROR 410 Expired event and
        ends; watches and continue tokens from older resourceVersions are refused with 410."""
        with self.store.lock:
            self.store.compacted = self.store.rv
            self.store.history.clear()
            self.store.continues.clear()
            watches = list(self.store.watches)
        for w in watches:
            w.push({"type": "ERROR", "object": status_obj(
                410, "Expired", f"too old resource version: {w.start_rv} ({self.store.rv})")})
            w.end(drop=False)

    def watch_count(self, kind: str | None = None) -> int:
        with self.store.lock:
            return sum(1 for w in self.store.watches
                       if kind is None or w.res is self.resource(kind))

    def count_requests(self, method: str = "GET", path_part: str = "",
                       watch: bool | None = None) -> int:
        n = 0
        for m, p, q in list(self.requests):
            if m != method or path_part not in p:
                continue
            is_watch = q.get("watch") in ("1", "true")
            if watch is None or watch == is_watch:
                n += 1
        return n

    def events(self, namespace: str = "") -> list[dict]:
        return self.list("Event", namespace)


def _handler_for(server: FakeApiServer):
    store = server.store

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "fake-kube-apiserver/1.32"

        def log_message(self, fmt, *args):  # noqa: A003 - quiet unless asked
            server._log(fmt % args)

        # -- plumbing -------------------------------------------------------------------
        def _send_json(self, code: int, body: dict) -> None:
            data = json.dumps(body, separators=(",", ":")).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Audit-Id", str(uuid.uuid4()))
            self.end_headers()
            self.wfile.write(data)

        def _body(self):
            n = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(n) if n else b""
            if not raw:
                return None
            try:
                return json.loads(raw)
            except ValueError as e:
                raise ApiError(400, "BadRequest", f"the body of the request was in an unknown "
                               f"format: {e}")

        def _authorized(self) -> bool:
            auth = self.headers.get("Authorization", "")
            scheme, _, tok = auth.partition(" ")
            return server.token is None or (scheme.lower() == "bearer" and tok == server.token)

        def do_GET(self):  # noqa: N802
            self._dispatch("GET")

        def do_POST(self):  # noqa: N802
            self._dispatch("POST")

        def do_PUT(self):  # noqa: N802
            self._dispatch("PUT")

        def do_PATCH(self):  # noqa: N802
            self._dispatch("PATCH")

        def do_DELETE(self):  # noqa: N802
            self._dispatch("DELETE")

        def _dispatch(self, method: str) -> None:
            url = urllib.parse.urlsplit(self.path)
            query = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
            path = url.path.rstrip("/") or "/"
            try:
                if path.startswith("/_control/"):
                    return self._control(method, path, query)
                server.requests.append((method, path, query))
                if not self._authorized():
                    return self._send_json(401, status_obj(401, "Unauthorized", "Unauthorized"))
                if server.fail_with:
                    return self._send_json(server.fail_with, status_obj(
                        server.fail_with, "InternalError", "injected failure"))
                self._api(method, path, query)
            except ApiError as e:
                self._send_json(e.status["code"], e.status)
            except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
                self.close_connection = True

        # -- discovery ------------------------------------------------------------------
        def _discovery(self, path: str) -> dict | None:
            if path == "/version":
                return {"major": "1", "minor": "32", "gitVersion": "v1.32.0-fake",
                        "platform": "linux/amd64"}
            if path == "/api":
                return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs":
                        [{"clientCIDR": "0.0.0.0/0", "serverAddress": f"{server.host}:{server.port}"}]}
            if path == "/apis":
                groups = sorted({r.group for r in RESOURCES if r.group})
                return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
                    {"name": g, "versions": [{"groupVersion": f"{g}/v1", "version": "v1"}],
                     "preferredVersion": {"groupVersion": f"{g}/v1", "version": "v1"}}
                    for g in groups]}
            m = re.fullmatch(r"/api/(v1)|/apis/([^/]+)/([^/]+)", path)
            if not m:
                return None
            group, version = (m.group(2) or ""), (m.group(1) or m.group(3))
            items = []
            for r in RESOURCES:
                if (r.group, r.version) != (group, version):
                    continue
                verbs = ["create", "delete", "get", "list", "patch", "update", "watch"]
                items.append({"name": r.plural, "singularName": r.kind.lower(),
                              "namespaced": r.namespaced, "kind": r.kind, "verbs": verbs,
                              "shortNames": list(r.short)})
                if r.has_status:
                    items.append({"name": f"{r.plural}/status", "singularName": "",
                                  "namespaced": r.namespaced, "kind": r.kind,
                                  "verbs": ["get", "patch", "update"]})
            if not items:
                return None
            return {"kind": "APIResourceList", "apiVersion": "v1",
                    "groupVersion": f"{group}/{version}" if group else version,
                    "resources": items}

        # -- the API --------------------------------------------------------------------
        def _api(self, method: str, path: str, query: dict) -> None:
            if method == "GET":
                doc = self._discovery(path)
                if doc is not None:
                    return self._send_json(200, doc)
            m = re.fullmatch(r"/api/(v1)/(.+)|/apis/([^/]+)/([^/]+)/(.+)", path)
            if not m:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            group = m.group(3) or ""
            version = m.group(1) or m.group(4)
            segs = (m.group(2) or m.group(5)).split("/")
            namespace = ""
            if segs[0] == "namespaces" and len(segs) >= 3:
                namespace, segs = segs[1], segs[2:]
            res = BY_PATH.get((group, version, segs[0]))
            if res is None or len(segs) > 3 or (namespace and not res.namespaced):
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            if res.plural in server.forbidden:
                verb = {"GET": "watch" if query.get("watch") in ("1", "true") else "list"
                        if len(segs) == 1 else "get", "POST": "create", "PUT": "update",
                        "PATCH": "patch", "DELETE": "delete"}[method]
                raise ApiError(403, "Forbidden",
                               f"{res.plural}{'.' + res.group if res.group else ''} is forbidden: "
                               f"User \"system:serviceaccount:kedge:kedge\" cannot {verb} "
                               f"resource \"{res.plural}\" in API group \"{res.group}\"",
                               {"kind": res.plural, "group": res.group})
            name = segs[1] if len(segs) > 1 else ""
            sub = segs[2] if len(segs) > 2 else ""
            if sub and (sub != "status" or not res.has_status):
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            if not name:
                if method == "GET":
                    if query.get("watch") in ("1", "true"):
                        return self._watch(res, namespace, query)
                    return self._list(res, namespace, query)
                if method == "POST":
                    body = self._body() or {}
                    return self._send_json(201, store.create(res, namespace, body))
                raise ApiError(405, "MethodNotAllowed", f"{method} is not allowed here")
            if method == "GET":
                return self._send_json(200, store.get(res, namespace, name))
            if method == "PUT":
                body = self._body() or {}
                with store.lock:
                    if sub == "status" and server.status_conflicts > 0:
                        server.status_conflicts -= 1
                        cur = store.get(res, namespace, name)
                        cur.setdefault("metadata", {}).setdefault("annotations", {})[
                            "fake-apiserver/concurrent-write"] = str(time.time())
                        store.update(res, namespace, name, cur)
                bmd = body.get("metadata", {})
                if bmd.get("name") not in (None, name):
                    raise ApiError(400, "BadRequest", "the name of the object does not match")
                return self._send_json(200, store.update(res, namespace, name, body, sub))
            if method == "PATCH":
                ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
                if ctype not in ("application/merge-patch+json",
                                 "application/strategic-merge-patch+json"):
                    raise ApiError(415, "UnsupportedMediaType",
                                   f"the body of the request was in an unknown format - "
                                   f"accepted media types include: application/json-patch+json, "
                                   f"application/merge-patch+json, application/apply-patch+yaml")
                patch = self._body() or {}
                with store.lock:
                    cur = store.get(res, namespace, name)
                    new = merge_patch(cur, patch)
                    if "resourceVersion" not in patch.get("metadata", {}):
                        new["metadata"]["resourceVersion"] = cur["metadata"]["resourceVersion"]
                    return self._send_json(200, store.update(res, namespace, name, new, sub))
            if method == "DELETE":
                return self._send_json(200, store.delete(res, namespace, name))
            raise ApiError(405, "MethodNotAllowed", f"{method} is not allowed here")

        def _list(self, res: Resource, namespace: str, query: dict) -> None:
            selector = make_selector(query)
            limit = int(query.get("limit") or 0)
            if query.get("resourceVersion") == "0":
                limit = 0  # served from the watch cache: the whole list, no continue
            cont = query.get("continue", "")
            with store.lock:
                if cont:
                    entry = store.continues.pop(cont, None)
                    if entry is None:
                        raise ApiError(410, "Expired", "The provided continue parameter is too "
                                       "old to display a consistent list result. You can start "
                                       "a new list without the continue parameter.")
                    rv, items = entry
                else:
                    rv, items = store.rv, store.select(res, namespace, selector)
                meta: dict = {"resourceVersion": str(rv)}
                if limit and len(items) > limit:
                    token = base64.urlsafe_b64encode(
                        json.dumps({"rv": rv, "id": uuid.uuid4().hex}).encode()).decode()
                    store.continues[token] = (rv, items[limit:])
                    items = items[:limit]
                    meta["continue"] = token
                    meta["remainingItemCount"] = len(store.continues[token][1])
            for it in items:  # list items carry no kind or apiVersion
                it.pop("kind", None)
                it.pop("apiVersion", None)
            self._send_json(200, {"kind": f"{res.kind}List", "apiVersion": res.api_version,
                                  "metadata": meta, "items": items})

        def _watch(self, res: Resource, namespace: str, query: dict) -> None:
            selector = make_selector(query)
            timeout = float(query.get("timeoutSeconds") or 1800)
            bookmarks = query.get("allowWatchBookmarks") in ("1", "true")
            start = query.get("resourceVersion", "")
            w = Watch(res, namespace, selector)
            w.start_rv = start
            with store.lock:
                if start in ("", "0"):
                    for o in store.select(res, namespace, selector):
                        w.queue.append({"type": "ADDED", "object": o})
                elif not start.isdigit():
                    raise ApiError(400, "BadRequest", f"invalid resource version \"{start}\"")
                elif int(start) < store.compacted or (
                        store.history and int(start) < store.history[0][0] - 1):
                    w.queue.append({"type": "ERROR", "object": status_obj(
                        410, "Expired", f"too old resource version: {start} ({store.rv})")})
                    w.closed = True
                else:
                    for rv, plural, etype, obj in store.history:
                        ns = obj["metadata"].get("namespace", "")
                        if rv > int(start) and plural == res.plural and selector(obj) and \
                                (not namespace or ns == namespace):
                            w.queue.append({"type": etype, "object": copy.deepcopy(obj)})
                if not w.closed:
                    store.watches.append(w)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            deadline = time.monotonic() + timeout
            next_bookmark = time.monotonic() + server.bookmark_interval
            try:
                while True:
                    with w.cond:
                        if not w.queue and not w.closed:
                            wait = min(deadline, next_bookmark) - time.monotonic()
                            if wait > 0:
                                w.cond.wait(wait)
                        events, w.queue = w.queue, []
                        closed, dropped = w.closed, w.dropped
                    if dropped:
                        self.close_connection = True
                        try:
                            self.connection.shutdown(socket.SHUT_RDWR)
                        except OSError:
                            pass
                        return
                    now = time.monotonic()
                    if bookmarks and not events and not closed and now >= next_bookmark:
                        # Under the store lock no event can be emitted in between: every event
                        # up to this resourceVersion has been written already.
                        with store.lock, w.cond:
                            if w.queue:
                                events, w.queue = w.queue, []
                            else:
                                events = [{"type": "BOOKMARK", "object": {
                                    "kind": res.kind, "apiVersion": res.api_version,
                                    "metadata": {"resourceVersion": str(store.rv)}}}]
                    if now >= next_bookmark:
                        next_bookmark = now + server.bookmark_interval
                    if events:
                        data = b"".join(json.dumps(e, separators=(",", ":")).encode() + b"\n"
                                        for e in events)
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                        self.wfile.flush()
                    if closed or now >= deadline:
                        self.wfile.write(b"0\r\n\r\n")
                        self.wfile.flush()
                        return
            finally:
                with store.lock:
                    if w in store.watches:
                        store.watches.remove(w)

        # -- test control ---------------------------------------------------------------
        def _control(self, method: str, path: str, query: dict) -> None:
            what = path[len("/_control/"):]
            if method == "POST" and what == "objects":
                return self._send_json(200, server.apply(self._body() or {}))
            if method == "DELETE" and what.startswith("objects/"):
                parts = what.split("/")[1:]
                kind, ns, name = (parts[0], "", parts[1]) if len(parts) == 2 else parts[:3]
                return self._send_json(200, server.delete(kind, ns, name))
            if method == "POST" and what == "drop-watches":
                server.drop_watches()
                return self._send_json(200, {"ok": True})
            if method == "POST" and what == "expire":
                server.expire()
                return self._send_json(200, {"ok": True})
            if method == "POST" and what == "down":
                seconds = float(query.get("seconds", "5"))
                self._send_json(200, {"ok": True, "seconds": seconds})
                self.wfile.flush()
                threading.Thread(target=server.go_down, args=(seconds,), daemon=True).start()
                return
            if method == "POST" and what == "token":
                body = self._body() or {}
                server.rotate_token(body["token"], body.get("tokenFile"))
                return self._send_json(200, {"ok": True})
            if method == "POST" and what == "fail":
                code = int(query.get("code", "0"))
                server.fail_with = code or None
                return self._send_json(200, {"ok": True})
            if method == "GET" and what == "requests":
                return self._send_json(200, {"requests": [
                    {"method": m, "path": p, "query": q} for m, p, q in server.requests]})
            raise ApiError(404, "NotFound", f"no control endpoint {method} {what}")

    return Handler


# ---------------------------------------------------------------------------------------------
# Helpers for tests: certificates and kubeconfigs


def make_cert(folder: str | Path, names: Iterable[str] = ("127.0.0.1", "localhost")) -> tuple[str, str]:
    """A self-signed server certificate (EC P-256, one day) for `names`; returns (cert, key).
    The certificate is its own CA: give the cert file as the client's CA bundle."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cert, key = folder / "apiserver.crt", folder / "apiserver.key"
    sans = ",".join(("IP:" if re.fullmatch(r"[0-9.]+|[0-9a-fA-F:]+:[0-9a-fA-F:]*", n)
                     else "DNS:") + n for n in names)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-keyout", str(key),
                    "-out", str(cert), "-subj", "/CN=kube-apiserver",
                    "-addext", f"subjectAltName={sans}",
                    "-addext", "basicConstraints=critical,CA:TRUE"],
                   check=True, capture_output=True)
    return str(cert), str(key)


def write_kubeconfig(path: str | Path, server_url: str, ca_file: str | None = None,
                     token: str | None = None, token_file: str | None = None,
                     namespace: str | None = None, inline_ca: bool = True) -> str:
    """A kubeconfig (JSON is valid YAML) with one cluster, user and context."""
    cluster: dict = {"server": server_url}
    if ca_file and inline_ca:
        cluster["certificate-authority-data"] = base64.b64encode(Path(ca_file).read_bytes()).decode()
    elif ca_file:
        cluster["certificate-authority"] = str(ca_file)
    user: dict = {}
    if token:
        user["token"] = token
    if token_file:
        user["tokenFile"] = str(token_file)
    context: dict = {"cluster": "test", "user": "test"}
    if namespace:
        context["namespace"] = namespace
    doc = {"apiVersion": "v1", "kind": "Config", "current-context": "test",
           "clusters": [{"name": "test", "cluster": cluster}],
           "users": [{"name": "test", "user": user}],
           "contexts": [{"name": "test", "context": context}]}
    Path(path).write_text(json.dumps(doc, indent=2) + "\n")
    return str(path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="A fake Kubernetes API server for tests.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=6443, help="0 picks a free port (printed)")
    p.add_argument("--token-file", help="file holding the bearer token clients must send")
    p.add_argument("--token", help="the bearer token clients must send")
    p.add_argument("--cert", help="TLS certificate (PEM); without it: plain HTTP")
    p.add_argument("--key", help="TLS private key (PEM)")
    p.add_argument("--make-cert", metavar="DIR",
                   help="generate a self-signed certificate in DIR and use it")
    p.add_argument("--fixtures", action="append", default=[],
                   help="folder of *.json objects to load at start (repeatable)")
    p.add_argument("--bookmark-interval", type=float, default=1.0,
                   help="seconds between BOOKMARK events on quiet watches")
    p.add_argument("-v", "--verbose", action="store_true", help="log every request")
    a = p.parse_args(argv)
    cert, key = a.cert, a.key
    if a.make_cert:
        cert, key = make_cert(a.make_cert)
    srv = FakeApiServer(a.host, a.port, token=a.token, token_file=a.token_file, cert=cert,
                        key=key, bookmark_interval=a.bookmark_interval,
                        log=(lambda m: print(m, file=sys.stderr, flush=True)) if a.verbose else None)
    for f in a.fixtures:
        srv.load_fixtures(f)
    srv.start()
    print(f"fake API server on {srv.url}" + (f" (CA: {cert})" if cert else ""), flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        srv.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
