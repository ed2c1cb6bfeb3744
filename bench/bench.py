#!/usr/bin/env python3
"""kedge vs nginx vs HAProxy: the same reverse-proxy job on the same pinned CPUs.

Started by bench/run.sh (which installs the tools and builds kedge). Every knob is an
environment variable (see bench/README.md); `--quick` picks short durations.
"""

import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

QUICK = "--quick" in sys.argv or os.environ.get("BENCH_QUICK") == "1"


def env(name, full, quick):
    return type(full)(os.environ.get(name, quick if QUICK else full))


DURATION = env("BENCH_DURATION", 10, 3)  # seconds per measured cell
WARMUP = env("BENCH_WARMUP", 1, 1)  # seconds of load before each cell (not measured)
REPS = env("BENCH_REPS", 3, 3)
CONNS = env("BENCH_CONNS", 64, 64)  # wrk connections
H2_CONNS = env("BENCH_H2_CONNS", 4, 4)  # h2load connections (each with H2_STREAMS streams)
H2_STREAMS = env("BENCH_H2_STREAMS", 100, 100)
WORKERS = [int(w) for w in env("BENCH_WORKERS", "1 2", "1 2").split()]
PROXIES = env("BENCH_PROXIES", "nginx haproxy kedge", "nginx haproxy kedge").split()
WORKLOADS = env("BENCH_WORKLOADS", "ka100 ka4k ka64k close tls-h2 tls-h1 upload download",
                "ka100 ka4k ka64k close tls-h2 tls-h1 upload download").split()
TRANSFER_REPS = env("BENCH_TRANSFER_REPS", 3, 3)
VHOSTS = env("BENCH_VHOSTS", 1000, 1000)
# Idle upstream connections each worker keeps per backend (nginx `keepalive`, kedge
# --upstream-keepalive-connections; HAProxy keeps all). Above the 400 streams in flight at
# TLS + HTTP/2, so that no proxy closes and reopens upstream connections under steady load.
UPSTREAM_KEEPALIVE = env("BENCH_UPSTREAM_KEEPALIVE", 1024, 1024)
CHANGE_SECONDS = env("BENCH_CHANGE_SECONDS", 20, 5)
CHANGE_REPS = env("BENCH_CHANGE_REPS", 3, 3)  # pairs of runs (steady, changing) per proxy
CHANGE_INTERVAL = env("BENCH_CHANGE_INTERVAL_MS", 100, 100) / 1000.0
SCALE_INGRESSES = env("BENCH_SCALE_INGRESSES", 10000, 10000)
SCALE_ENDPOINTS = env("BENCH_SCALE_ENDPOINTS", 5, 5)  # per Service
SCALE_CHANGES = env("BENCH_SCALE_CHANGES", 20, 8)
CALLGRIND_REQUESTS = env("BENCH_CALLGRIND_REQUESTS", 20000, 5000)
CALLGRIND_PROXIES = env("BENCH_CALLGRIND_PROXIES", "kedge nginx haproxy", "kedge nginx haproxy").split()
CALLGRIND_WORKLOADS = env("BENCH_CALLGRIND_WORKLOADS", "ka100 tls-h2", "ka100 tls-h2").split()
CALLGRIND_STREAMS = env("BENCH_CALLGRIND_STREAMS", "1x20", "1x20")  # tls-h2: connections x streams
CALLGRIND_CACHE = env("BENCH_CALLGRIND_CACHE", 0, 0)  # 1: simulate the caches, count misses
SECTIONS = env("BENCH_SECTIONS", "matrix change scale callgrind", "matrix change scale callgrind").split()
CLIENT_CPU = env("BENCH_CLIENT_CPU", "1", "1")
SERVER_CPU = env("BENCH_SERVER_CPU", "0", "0")
KEDGE = os.environ.get("KEDGE_BIN", "build-bench/src/kedge")
BUSY = 777 % max(VHOSTS, 1)  # the virtual host under load: neither the first nor the last
HOST = f"h{BUSY}.bench.test"
BODIES = {"b100": 100, "b4k": 4096, "b64k": 65536, "b100m": 100 * 1024 * 1024}
WORKLOAD_PATH = {"ka100": "/b100", "ka4k": "/b4k", "ka64k": "/b64k", "close": "/b100",
                 "tls-h2": "/b4k", "tls-h1": "/b4k"}

USER = "root" if os.geteuid() == 0 else "nobody"  # nginx workers read the private temp dir
TMP = tempfile.gettempdir()  # the run's temporary folder, set by main()
started = []  # every process this script started (Popen), stopped by pid at the end


def log(*a):
    print(*a, file=sys.stderr, flush=True)


_ports_given = set()


def free_port():
    """A listening port below the kernel's ephemeral range: a port the kernel picked (bind to 0)
    could be taken by one of the many outgoing connections of a run before the proxy binds it."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    for _ in range(1000):
        port = random.randrange(max(1024, low - 12000), low)
        if port in _ports_given:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _ports_given.add(port)
        return port
    raise RuntimeError("no free port below the ephemeral range")


def popen(cmd, cpu, **kw):
    kw.setdefault("stderr", open(os.path.join(TMP, "stderr.log"), "a"))
    kw.setdefault("stdout", kw["stderr"])
    kw.setdefault("stdin", subprocess.DEVNULL)
    p = subprocess.Popen(["taskset", "-c", cpu] + cmd, **kw)
    started.append(p)
    return p


def wait_http(port, host, path="/b100", timeout=30, tls=False, want=200, interval=0.05):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                if tls:
                    return True  # accepts connections; h2load checks the rest
                s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
                data = s.recv(64)
                if data.startswith(f"HTTP/1.1 {want}".encode()):
                    return True
        except OSError:
            pass
        time.sleep(interval)
    raise RuntimeError(f"port {port} host {host} not serving {want} within {timeout}s")


# ---------------------------------------------------------------- /proc accounting

CLK = os.sysconf("SC_CLK_TCK")


def proc_tree(root):
    """root and all its descendants (processes; threads are accounted in their process)."""
    children = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                st = f.read()
        except OSError:
            continue
        ppid = int(st[st.rindex(")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(d))
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def stat_fields(root):
    """The /proc/PID/stat fields after the command name, of each live process of the tree."""
    for p in proc_tree(root):
        try:
            with open(f"/proc/{p}/stat") as f:
                st = f.read()
        except OSError:
            continue
        yield st[st.rindex(")") + 2:].split()


def cpu_seconds(root):
    """utime+stime of the tree plus what its reaped children used (cutime+cstime)."""
    return sum(sum(int(x) for x in f[11:15]) for f in stat_fields(root)) / CLK


def cpu_split(root):
    """(user, system) CPU seconds of the tree's live processes."""
    fields = list(stat_fields(root))
    return sum(int(f[11]) for f in fields) / CLK, sum(int(f[12]) for f in fields) / CLK


def preemptions(root):
    """How often the tree's threads lost the CPU while they could still run."""
    n = 0
    for p in proc_tree(root):
        try:
            tids = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for t in tids:
            n += status_field(f"/proc/{p}/task/{t}/status", "nonvoluntary_ctxt_switches")
    return n


def ip_packets_sent():
    """IP datagrams this machine sent (loopback included): /proc/net/snmp Ip OutRequests."""
    with open("/proc/net/snmp") as f:
        rows = [line.split() for line in f if line.startswith("Ip:")]
    return int(rows[1][rows[0].index("OutRequests")])


def status_kb(pid, key):
    return status_field(f"/proc/{pid}/status", key)


def status_field(path, key):
    """The number after `key:` in a /proc status file (kB for the memory fields), or 0."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def peak_rss_mb(root):
    return sum(status_kb(p, "VmHWM") for p in proc_tree(root)) / 1024


def rss_mb(root):
    return sum(status_kb(p, "VmRSS") for p in proc_tree(root)) / 1024


def reset_peak(root):
    for p in proc_tree(root):
        try:
            with open(f"/proc/{p}/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            pass


# ---------------------------------------------------------------- clients

WRK_LUA = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRKJSON {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,' ..
    '"write":%d,"status":%d,"timeout":%d,"p50":%d,"p99":%d,"p999":%d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9)))
end
"""


def run_wrk(tmp, port, path, seconds, close=False, host=HOST, conns=CONNS):
    script = os.path.join(tmp, "report.lua")
    if not os.path.exists(script):
        with open(script, "w") as f:
            f.write(WRK_LUA)
    cmd = ["taskset", "-c", CLIENT_CPU, "wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--latency",
           "-s", script, "-H", f"Host: {host}", f"http://127.0.0.1:{port}{path}"]
    if close:
        cmd[-1:-1] = ["-H", "Connection: close"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30).stdout
    m = re.search(r"WRKJSON (\{.*\})", out)
    if not m:
        raise RuntimeError("wrk: no result\n" + out)
    r = json.loads(m.group(1))
    secs = r["duration_us"] / 1e6
    return {"rps": r["requests"] / secs, "requests": r["requests"],
            "p50": r["p50"] / 1000, "p99": r["p99"] / 1000, "p999": r["p999"] / 1000,
            "errors": r["connect"] + r["read"] + r["write"] + r["timeout"], "non2xx": r["status"]}


def percentile(sorted_values, p):
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, int(round(p / 100 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[k]


def run_h2load(tmp, port, path, seconds, h1=False):
    logf = os.path.join(tmp, "h2load.log")
    if os.path.exists(logf):
        os.unlink(logf)
    conns, streams = (CONNS, 1) if h1 else (H2_CONNS, H2_STREAMS)
    cmd = ["taskset", "-c", CLIENT_CPU, "h2load", "-t1", f"-c{conns}", f"-m{streams}",
           f"-D{seconds}", f"--connect-to=127.0.0.1:{port}", f"--log-file={logf}",
           f"https://{HOST}:{port}{path}"]
    if h1:
        cmd.insert(4, "--h1")
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60).stdout
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                  r"(\d+) errored", out)
    st = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    if not m or not st:
        raise RuntimeError("h2load: no result\n" + out)
    lat = []
    with open(logf) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3:
                lat.append(int(parts[2]) / 1000)
    lat.sort()
    ok = int(st.group(1))
    return {"rps": ok / seconds, "requests": ok, "p50": percentile(lat, 50),
            "p99": percentile(lat, 99), "p999": percentile(lat, 99.9),
            "errors": int(m.group(5)) + int(m.group(6)), "non2xx": sum(int(x) for x in st.groups()[1:])}


def run_curl(port, kind, tmp, n):
    if kind == "download":
        cmd = ["curl", "-s", "-o", "/dev/null", "-H", f"Host: {HOST}",
               f"http://127.0.0.1:{port}/b100m"]
    else:
        cmd = ["curl", "-s", "-o", "/dev/null", "-T", os.path.join(tmp, "docroot", "b100m"),
               "-H", f"Host: {HOST}", "-H", "Expect:", f"http://127.0.0.1:{port}/up/f{n}"]
    cmd = ["taskset", "-c", CLIENT_CPU] + cmd + ["-w", "%{http_code} %{time_total}"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout.split()
    code, secs = int(out[0]), float(out[1])
    return {"code": code, "seconds": secs}


# ---------------------------------------------------------------- configurations

def make_cert(tmp):
    key, crt = os.path.join(tmp, "tls.key"), os.path.join(tmp, "tls.crt")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-keyout", key, "-out", crt, "-days", "30", "-subj", "/CN=*.bench.test",
                    "-addext", "subjectAltName=DNS:*.bench.test"], check=True, capture_output=True)
    pem = os.path.join(tmp, "tls.pem")
    with open(pem, "w") as f:
        f.write(open(crt).read() + open(key).read())
    return crt, key, pem


def backend_conf(tmp, ports, crt, key):
    return f"""
user {USER};
worker_processes 1;
daemon off;
pid {tmp}/backend.pid;
error_log {tmp}/backend-error.log error;
events {{ worker_connections 8192; }}
http {{
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 100000000;
  keepalive_timeout 300s;
  open_file_cache max=64 inactive=600s;
  open_file_cache_valid 600s;
  client_max_body_size 0;
  client_body_temp_path {tmp}/backend-body;
  etag off;
  default_type application/octet-stream;
  server {{
    listen 127.0.0.1:{ports['backend']} backlog=4096;
    listen 127.0.0.1:{ports['backend2']} backlog=4096;
    listen 127.0.0.1:{ports['backend_tls']} ssl http2 backlog=4096;
    ssl_certificate {crt};
    ssl_certificate_key {key};
    ssl_protocols TLSv1.3;
    root {tmp}/docroot;
    location /up/ {{ dav_methods PUT; create_full_put_path on; }}
  }}
}}
"""


def nginx_conf(tmp, name, ports, workers, crt, key, extra_host=False, second_endpoint=False):
    servers = [f"server 127.0.0.1:{ports['backend']};"]
    lines = [f"""
user {USER};
worker_processes {workers};
daemon off;
pid {tmp}/{name}.pid;
error_log {tmp}/{name}-error.log error;
worker_rlimit_nofile 16384;
events {{ worker_connections 8192; }}
http {{
  access_log off;
  keepalive_requests 100000000;
  keepalive_timeout 75s;
  server_names_hash_max_size 16384;
  server_names_hash_bucket_size 128;
  client_max_body_size 0;
  client_body_temp_path {tmp}/{name}-body;
  proxy_temp_path {tmp}/{name}-proxy;
  proxy_http_version 1.1;
  proxy_request_buffering off;
  proxy_max_temp_file_size 0;
  proxy_set_header Connection "";
  proxy_set_header Host $host;
  proxy_set_header X-Request-ID $request_id;
  proxy_set_header X-Real-IP $remote_addr;
  proxy_set_header X-Forwarded-For $remote_addr;
  proxy_set_header X-Forwarded-Host $host;
  proxy_set_header X-Forwarded-Port $server_port;
  proxy_set_header X-Forwarded-Proto $scheme;
  proxy_set_header X-Scheme $scheme;
  ssl_certificate {crt};
  ssl_certificate_key {key};
  ssl_protocols TLSv1.3;
  server {{
    listen 127.0.0.1:{ports['http']} default_server reuseport backlog=4096;
    listen 127.0.0.1:{ports['https']} ssl http2 default_server reuseport backlog=4096;
    return 404;
  }}
"""]
    hosts = list(range(VHOSTS)) + (["extra"] if extra_host else [])
    for i in hosts:
        srv = servers + ([f"server 127.0.0.1:{ports['backend2']};"] if second_endpoint and i == BUSY else [])
        lines.append(f"  upstream u{i} {{ {' '.join(srv)} keepalive {UPSTREAM_KEEPALIVE}; keepalive_requests 100000000; }}\n"
                     f"  server {{ listen 127.0.0.1:{ports['http']}; listen 127.0.0.1:{ports['https']} ssl http2;"
                     f" server_name h{i}.bench.test; location / {{ proxy_pass http://u{i}; }} }}\n")
    lines.append("}\n")
    return "".join(lines)


def haproxy_conf(tmp, ports, workers, pem, extra_host=False, second_endpoint=False):
    hosts = list(range(VHOSTS)) + (["extra"] if extra_host else [])
    with open(os.path.join(tmp, "haproxy-hosts.map.new"), "w") as f:
        for i in hosts:
            f.write(f"h{i}.bench.test b{i}\n")
    os.replace(os.path.join(tmp, "haproxy-hosts.map.new"), os.path.join(tmp, "haproxy-hosts.map"))
    out = [f"""
global
  nbthread {workers}
  maxconn 8000
  stats socket {tmp}/haproxy-admin.sock mode 600 level admin expose-fd listeners
  ssl-default-bind-options ssl-min-ver TLSv1.3
  tune.ssl.default-dh-param 2048
defaults
  mode http
  option http-keep-alive
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  timeout http-keep-alive 75s
  timeout http-request 60s
frontend fe
  bind 127.0.0.1:{ports['http']}
  bind 127.0.0.1:{ports['https']} ssl crt {pem} alpn h2,http/1.1
  option forwardfor
  http-request set-header X-Request-ID %[uuid]
  http-request set-header X-Real-IP %[src]
  http-request set-header X-Forwarded-Host %[req.hdr(host)]
  http-request set-header X-Forwarded-Port %[dst_port]
  http-request set-header X-Forwarded-Proto https if {{ ssl_fc }}
  http-request set-header X-Forwarded-Proto http if !{{ ssl_fc }}
  http-request set-header X-Scheme https if {{ ssl_fc }}
  http-request set-header X-Scheme http if !{{ ssl_fc }}
  use_backend %[req.hdr(host),field(1,:),lower,map_str({tmp}/haproxy-hosts.map)]
  default_backend b_none
backend b_none
  http-request deny deny_status 404
"""]
    for i in hosts:
        srv = f"  server s1 127.0.0.1:{ports['backend']}\n"
        if second_endpoint and i == BUSY:
            srv += f"  server s2 127.0.0.1:{ports['backend2']}\n"
        out.append(f"backend b{i}\n{srv}")
    return "".join(out)


def kedge_objects(i, ports, endpoint_ports=None, host=None, fake_endpoints=0):
    """Service (headless: no L4 listener), EndpointSlice and Ingress for virtual host i."""
    host = host or f"h{i}.bench.test"
    eps = [{"addresses": ["127.0.0.1"], "conditions": {"ready": True}}]
    slice_ports = [{"name": "http", "port": p, "protocol": "TCP"} for p in (endpoint_ports or [ports["backend"]])]
    slices = [{"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
               "metadata": {"name": f"s{i}-{j}", "namespace": "bench",
                            "labels": {"kubernetes.io/service-name": f"s{i}"}},
               "addressType": "IPv4", "ports": [sp], "endpoints": eps}
              for j, sp in enumerate(slice_ports)]
    if fake_endpoints:
        # Addresses nobody connects to (only the busy host takes traffic): endpoint count at scale.
        slices[0]["endpoints"] = [{"addresses": [f"10.{(i >> 8) & 255}.{i & 255}.{k + 1}"],
                                   "conditions": {"ready": True}} for k in range(fake_endpoints)]
    return [
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": f"s{i}", "namespace": "bench"},
         "spec": {"clusterIP": "None", "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}},
        *slices,
        {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
         "metadata": {"name": f"i{i}", "namespace": "bench",
                      "annotations": {"nginx.ingress.kubernetes.io/ssl-redirect": "false"}},
         "spec": {"ingressClassName": "kedge", "tls": [{"hosts": [host], "secretName": "bench-tls"}],
                  "rules": [{"host": host, "http": {"paths": [{"path": "/", "pathType": "Prefix",
                             "backend": {"service": {"name": f"s{i}", "port": {"number": 80}}}}]}}]}},
    ]


def write_json(path, objects):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump({"apiVersion": "v1", "kind": "List", "items": objects}, f)
    os.replace(tmp, path)


def kedge_manifests(tmp, mdir, ports, count, crt, key, fake_endpoints=0):
    import base64
    os.makedirs(mdir, exist_ok=True)
    b64 = lambda p: base64.b64encode(open(p, "rb").read()).decode()
    base = [{"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
             "metadata": {"name": "kedge", "annotations": {"ingressclass.kubernetes.io/is-default-class": "true"}},
             "spec": {"controller": "kedge.dev/ingress-controller"}},
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bench"}},
            {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
             "metadata": {"name": "bench-tls", "namespace": "bench"},
             "data": {"tls.crt": b64(crt), "tls.key": b64(key)}}]
    write_json(os.path.join(mdir, "base.json"), base)
    chunk = 500
    for start in range(0, count, chunk):
        objs = []
        for i in range(start, min(count, start + chunk)):
            if i == BUSY:
                continue
            # The last host is real too: serving it means the whole configuration is loaded.
            objs += kedge_objects(i, ports, fake_endpoints=fake_endpoints if i != count - 1 else 0)
        write_json(os.path.join(mdir, f"hosts-{start:05d}.json"), objs)
    write_json(os.path.join(mdir, "busy.json"), kedge_objects(BUSY, ports))


# ---------------------------------------------------------------- proxies

class Proxy:
    def __init__(self, name, proc, ports, root_pid=None):
        self.name, self.proc, self.ports = name, proc, ports
        self.root = root_pid or proc.pid

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_backend(tmp, ports, crt, key):
    conf = os.path.join(tmp, "backend.conf")
    with open(conf, "w") as f:
        f.write(backend_conf(tmp, ports, crt, key))
    os.makedirs(os.path.join(tmp, "docroot", "up"), exist_ok=True)
    for name, size in BODIES.items():
        with open(os.path.join(tmp, "docroot", name), "wb") as f:
            block = (b"0123456789abcdef" * 4096)
            left = size
            while left > 0:
                f.write(block[:min(left, len(block))])
                left -= min(left, len(block))
    p = popen(["nginx", "-c", conf, "-p", tmp], SERVER_CPU)
    wait_http(ports["backend"], HOST)
    return Proxy("backend", p, ports)


def start_nginx(tmp, ports, workers, crt, key, **kw):
    name = f"nginx{workers}"
    conf = os.path.join(tmp, f"{name}.conf")
    with open(conf, "w") as f:
        f.write(nginx_conf(tmp, name, ports, workers, crt, key, **kw))
    p = popen(["nginx", "-c", conf, "-p", tmp], SERVER_CPU)
    wait_http(ports["http"], HOST)
    return Proxy("nginx", p, ports)


def start_haproxy(tmp, ports, workers, pem, **kw):
    conf = os.path.join(tmp, f"haproxy{workers}.cfg")
    with open(conf, "w") as f:
        f.write(haproxy_conf(tmp, ports, workers, pem, **kw))
    # Master-worker mode: SIGUSR2 reloads, passing the listening sockets on (no refused connects).
    p = popen(["haproxy", "-W", "-q", "-f", conf], SERVER_CPU)
    wait_http(ports["http"], HOST)
    return Proxy("haproxy", p, ports)


def start_kedge(tmp, ports, workers, mdir, ready_timeout=60, prefix=()):
    cmd = list(prefix) + [KEDGE, "--log-level", os.environ.get("BENCH_KEDGE_LOG", "error"), "serve", "--manifests", mdir,
                          "--http-listen", f"127.0.0.1:{ports['http']}",
                          "--https-listen", f"127.0.0.1:{ports['https']}",
                          "--admin-listen", f"127.0.0.1:{ports['admin']}", "--workers", str(workers),
                          "--max-body-bytes", "0", "--hsts-max-age", "0",
                          "--upstream-keepalive-connections", str(UPSTREAM_KEEPALIVE)]
    cmd += os.environ.get("BENCH_KEDGE_ARGS", "").split()
    p = popen(cmd, SERVER_CPU, stderr=open(os.path.join(tmp, "kedge.log"), "a"))
    wait_http(ports["http"], HOST, timeout=ready_timeout)
    return Proxy("kedge", p, ports)


def proxy_ports():
    return {"http": free_port(), "https": free_port(), "admin": free_port()}


# ---------------------------------------------------------------- the matrix

def measure(tmp, proxy, workload, seconds, backend=None):
    """One cell: load for `seconds` after a warm-up; CPU and peak RSS of the proxy tree, and
    where the proxy's and the backend's CPU went (per request: user and system time, the
    times the proxy was preempted, IP packets sent on the machine)."""
    tls_port = "backend_tls" if proxy.name == "direct" else "https"
    port = proxy.ports[tls_port if workload.startswith("tls") else "http"]
    path = WORKLOAD_PATH[workload]
    run = (lambda s: run_h2load(tmp, port, path, s, h1=workload == "tls-h1")) if workload.startswith("tls") \
        else (lambda s: run_wrk(tmp, port, path, s, close=workload == "close"))
    if WARMUP > 0:
        run(WARMUP)
    reset_peak(proxy.root)
    c0 = cpu_seconds(proxy.root)
    (u0, s0), x0, k0 = cpu_split(proxy.root), preemptions(proxy.root), ip_packets_sent()
    b0 = cpu_seconds(backend.root) if backend else 0
    r = run(seconds)
    per = 1 / max(r["requests"], 1)
    r["cpu_us"] = (cpu_seconds(proxy.root) - c0) * per * 1e6
    (u1, s1), x1, k1 = cpu_split(proxy.root), preemptions(proxy.root), ip_packets_sent()
    r["user_us"], r["sys_us"] = (u1 - u0) * per * 1e6, (s1 - s0) * per * 1e6
    r["preempted"], r["packets"] = (x1 - x0) * per, (k1 - k0) * per
    if backend and proxy.root != backend.root:
        r["backend_us"] = (cpu_seconds(backend.root) - b0) * per * 1e6
    r["rss_mb"] = peak_rss_mb(proxy.root)
    return r


def measure_transfer(tmp, proxy, kind, n):
    port = proxy.ports["http"]
    reset_peak(proxy.root)
    c0 = cpu_seconds(proxy.root)
    r = run_curl(port, kind, tmp, n)
    if r["code"] not in (200, 201, 204):
        raise RuntimeError(f"{proxy.name} {kind}: HTTP {r['code']}")
    return {"mbps": 100 / r["seconds"], "cpu_ms": (cpu_seconds(proxy.root) - c0) * 1000,
            "rss_mb": peak_rss_mb(proxy.root), "seconds": r["seconds"]}


PAIRED = ("rps", "cpu_us", "p99")  # figures compared repetition by repetition


def median_cell(runs):
    keys = runs[0].keys()
    return {k: statistics.median(r[k] for r in runs) for k in keys}


def run_matrix(tmp, backend, crt, key, pem, results):
    direct = Proxy("direct", backend.proc, {"http": backend.ports["backend"],
                                            "backend_tls": backend.ports["backend_tls"]})
    n_transfer = 0
    for workers in WORKERS:
        proxies = []
        for name in PROXIES:
            ports = dict(backend.ports, **proxy_ports())
            if name == "nginx":
                proxies.append(start_nginx(tmp, ports, workers, crt, key))
            elif name == "haproxy":
                proxies.append(start_haproxy(tmp, ports, workers, pem))
            elif name == "kedge":
                mdir = os.path.join(tmp, f"manifests-w{workers}")
                kedge_manifests(tmp, mdir, ports, VHOSTS, crt, key)
                proxies.append(start_kedge(tmp, ports, workers, mdir))
        targets = ([direct] if workers == WORKERS[0] else []) + proxies
        for workload in WORKLOADS:
            runs = {p.name: [] for p in targets}
            for rep in range(REPS if workload not in ("upload", "download") else TRANSFER_REPS):
                # Interleaved, so drifting background load hits all alike, and in an order that
                # rotates, so that no proxy always runs first or last.
                k = rep % len(targets)
                for p in targets[k:] + targets[:k]:
                    if workload in ("upload", "download"):
                        n_transfer += 1
                        r = measure_transfer(tmp, p, workload, n_transfer)
                    else:
                        r = measure(tmp, p, workload, DURATION, backend)
                    runs[p.name].append(r)
                    log(f"  w{workers} {workload:8} {p.name:8} rep{rep}: " +
                        " ".join(f"{k}={v:.4g}" for k, v in r.items()))
            for name, rs in runs.items():
                key_ = f"{name}|{workers if name != 'direct' else '-'}|{workload}"
                results["matrix"][key_] = dict(median_cell(rs), reps=len(rs),
                                               per_rep={f: [r[f] for r in rs] for f in PAIRED if f in rs[0]})
            save(tmp, results)
        for p in proxies:
            p.stop()
        shutil.rmtree(os.path.join(tmp, "docroot", "up"), ignore_errors=True)
        os.makedirs(os.path.join(tmp, "docroot", "up"), exist_ok=True)


# ---------------------------------------------------------------- change under load

def run_change(tmp, backend, crt, key, pem, results):
    """wrk for CHANGE_SECONDS while the configuration changes every CHANGE_INTERVAL, against a
    run without changes: CHANGE_REPS pairs per proxy, each pair's runs back to back (in an order
    that alternates), so that a drifting machine moves both sides of a pair's p99 ratio alike."""
    import threading
    for name in PROXIES:
        runs = {False: [], True: []}
        for rep, changing in ((rep, changing) for rep in range(CHANGE_REPS)
                              for changing in ((False, True) if rep % 2 == 0 else (True, False))):
            ports = dict(backend.ports, **proxy_ports())
            mdir = os.path.join(tmp, "manifests-change")
            shutil.rmtree(mdir, ignore_errors=True)
            if name == "nginx":
                p = start_nginx(tmp, ports, 1, crt, key)
            elif name == "haproxy":
                p = start_haproxy(tmp, ports, 1, pem)
            else:
                kedge_manifests(tmp, mdir, ports, VHOSTS, crt, key)
                p = start_kedge(tmp, ports, 1, mdir)
            run_wrk(tmp, ports["http"], "/b100", WARMUP)
            stop = threading.Event()
            changes = [0]

            def changer():
                k = 0
                while not stop.is_set():
                    time.sleep(CHANGE_INTERVAL)
                    k += 1
                    extra, second = k % 4 in (1, 2), k % 4 in (2, 3)  # add host, more endpoints, ...
                    if name == "nginx":
                        with open(os.path.join(tmp, "nginx1.conf"), "w") as f:
                            f.write(nginx_conf(tmp, "nginx1", ports, 1, crt, key, extra, second))
                        os.kill(p.proc.pid, signal.SIGHUP)
                    elif name == "haproxy":
                        with open(os.path.join(tmp, "haproxy1.cfg"), "w") as f:
                            f.write(haproxy_conf(tmp, ports, 1, pem, extra, second))
                        os.kill(p.proc.pid, signal.SIGUSR2)
                    else:
                        extra_file = os.path.join(mdir, "extra.json")
                        if extra:
                            write_json(extra_file, kedge_objects(100000, ports, host="extra.bench.test"))
                        elif os.path.exists(extra_file):
                            os.unlink(extra_file)
                        eps = [ports["backend"], ports["backend2"]] if second else [ports["backend"]]
                        write_json(os.path.join(mdir, "busy.json"), kedge_objects(BUSY, ports, eps))
                    changes[0] += 1

            t = threading.Thread(target=changer)
            if changing:
                t.start()
            c0 = cpu_seconds(p.root)
            r = run_wrk(tmp, ports["http"], "/b100", CHANGE_SECONDS)
            stop.set()
            if changing:
                t.join()
            r["cpu_us"] = (cpu_seconds(p.root) - c0) / max(r["requests"], 1) * 1e6
            r["changes"] = changes[0]
            runs[changing].append(r)
            log(f"  change {name:8} rep{rep} {'changes' if changing else 'steady '}: " +
                " ".join(f"{k}={v:.4g}" for k, v in r.items()))
            time.sleep(0.3)
            p.stop()
        for changing, rs in runs.items():
            cell = dict(median_cell(rs), reps=len(rs), non2xx=sum(r["non2xx"] for r in rs),
                        errors=sum(r["errors"] for r in rs))
            if changing:
                cell["p99_ratios"] = [c["p99"] / s_["p99"] for c, s_ in zip(rs, runs[False])]
            results["change"][f"{name}|{'changes' if changing else 'steady'}"] = cell
        save(tmp, results)


# ---------------------------------------------------------------- scale

def run_scale(tmp, backend, crt, key, results):
    import threading
    ports = dict(backend.ports, **proxy_ports())
    mdir = os.path.join(tmp, "manifests-scale")
    shutil.rmtree(mdir, ignore_errors=True)
    kedge_manifests(tmp, mdir, ports, SCALE_INGRESSES, crt, key, fake_endpoints=SCALE_ENDPOINTS)
    t0 = time.monotonic()
    p = start_kedge(tmp, ports, 1, mdir, ready_timeout=120)
    # The last file in load order serves too (ready means the whole configuration).
    wait_http(ports["http"], f"h{SCALE_INGRESSES - 1}.bench.test", timeout=120)
    ready = time.monotonic() - t0
    r = {"ingresses": SCALE_INGRESSES, "endpoints": SCALE_INGRESSES * SCALE_ENDPOINTS,
         "ready_s": ready, "rss_mb": rss_mb(p.root), "peak_rss_mb": peak_rss_mb(p.root)}
    steady = run_wrk(tmp, ports["http"], "/b100", 3)
    lat = []
    stop = threading.Event()
    load = {}

    def loader():
        load.update(run_wrk(tmp, ports["http"], "/b100", max(3, SCALE_CHANGES // 2 + 2)))
        stop.set()

    t = threading.Thread(target=loader)
    t.start()
    time.sleep(0.5)
    for k in range(SCALE_CHANGES):
        host = f"new{k}.bench.test"
        path = os.path.join(mdir, f"new-{k}.json")
        t1 = time.monotonic()
        write_json(path, kedge_objects(200000 + k, ports, host=host))
        # Polled every 2 ms: the 50 ms of the other waits would be most of what is measured.
        wait_http(ports["http"], host, timeout=30, interval=0.002)
        lat.append((time.monotonic() - t1) * 1000)
        time.sleep(0.2)
    t.join()
    lat.sort()
    r.update({"change_p50_ms": percentile(lat, 50), "change_p99_ms": percentile(lat, 99),
              "change_max_ms": lat[-1], "changes": len(lat),
              "p99_steady_ms": steady["p99"], "p99_during_changes_ms": load.get("p99", float("nan")),
              "errors_during_changes": load.get("errors", 0) + load.get("non2xx", 0),
              "rss_after_mb": rss_mb(p.root)})
    results["scale"] = r
    log("  scale: " + " ".join(f"{k}={v:.4g}" for k, v in r.items()))
    p.stop()
    save(tmp, results)


# ---------------------------------------------------------------- callgrind

def callgrind_totals(path):
    """{event: total} of a callgrind output file (Ir, and with the cache simulated D1mr...)."""
    events = None
    with open(path) as f:
        for line in f:
            if line.startswith("events:"):
                events = line.split()[1:]
            if line.startswith("summary:") or line.startswith("totals:"):
                return dict(zip(events or ["Ir"], (int(v) for v in line.split()[1:])))
    raise RuntimeError("no totals in " + path)


def callgrind_client(workload, ports, n):
    """h2load for a callgrind run: HTTP/1.1 keep-alive 100 B, or TLS 1.3 + HTTP/2 4 KiB (20 streams)."""
    if workload == "tls-h2":
        conns, streams = CALLGRIND_STREAMS.split("x")
        return ["taskset", "-c", CLIENT_CPU, "h2load", f"-c{conns}", f"-m{streams}", f"-n{n}",
                f"--connect-to=127.0.0.1:{ports['https']}", f"https://{HOST}:{ports['https']}/b4k"]
    return ["taskset", "-c", CLIENT_CPU, "h2load", "--h1", "-c1", "-m1", f"-n{n}",
            f"--connect-to=127.0.0.1:{ports['http']}", f"http://{HOST}:{ports['http']}/b100"]


def run_callgrind(tmp, backend, crt, key, pem, results):
    """Instructions per proxied request: the stable figure across commits. Keep-alive 100 B over
    HTTP/1.1 ("ka100"), and 4 KiB over TLS 1.3 + HTTP/2 ("tls-h2"); CALLGRIND_WORKLOADS picks."""
    for workload in CALLGRIND_WORKLOADS:
        for name in CALLGRIND_PROXIES:
            callgrind_one(tmp, backend, crt, key, pem, results, name, workload)


def callgrind_one(tmp, backend, crt, key, pem, results, name, workload):
    ports = dict(backend.ports, **proxy_ports())
    out = os.path.join(tmp, f"callgrind.{name}.out")
    for f in os.listdir(tmp):
        if f.startswith(f"callgrind.{name}.out"):
            os.unlink(os.path.join(tmp, f))
    vg = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}"]
    if CALLGRIND_CACHE:
        vg.append("--cache-sim=yes")
    if name == "kedge":
        mdir = os.path.join(tmp, "manifests-cg")
        shutil.rmtree(mdir, ignore_errors=True)
        kedge_manifests(tmp, mdir, ports, VHOSTS, crt, key)
        p = start_kedge(tmp, ports, 1, mdir, ready_timeout=300,
                        prefix=vg)
    elif name == "nginx":
        conf = os.path.join(tmp, "nginx-cg.conf")
        with open(conf, "w") as f:
            f.write(nginx_conf(tmp, "nginx-cg", ports, 1, crt, key).replace(
                "daemon off;", "daemon off;\nmaster_process off;"))
        p = Proxy(name, popen(vg + ["nginx", "-c", conf, "-p", tmp], SERVER_CPU), ports)
        wait_http(ports["http"], HOST, timeout=300)
    else:
        conf = os.path.join(tmp, "haproxy-cg.cfg")
        with open(conf, "w") as f:
            f.write(haproxy_conf(tmp, ports, 1, pem))
        p = Proxy(name, popen(vg + ["haproxy", "-q", "-f", conf], SERVER_CPU), ports)
        wait_http(ports["http"], HOST, timeout=300)
    subprocess.run(callgrind_client(workload, ports, 200), capture_output=True, timeout=300)  # warm
    subprocess.run(["callgrind_control", "-i", "on", str(p.proc.pid)], capture_output=True, timeout=60)
    res = subprocess.run(callgrind_client(workload, ports, CALLGRIND_REQUESTS), capture_output=True,
                         text=True, timeout=1200).stdout
    subprocess.run(["callgrind_control", "-d", str(p.proc.pid)], capture_output=True, timeout=120)
    subprocess.run(["callgrind_control", "-i", "off", str(p.proc.pid)], capture_output=True, timeout=60)
    ok = re.search(r"(\d+) succeeded", res)
    # The dump taken right after the requests (".out.1"), not the one written at exit.
    dumps = [f for f in os.listdir(tmp) if re.fullmatch(rf"callgrind\.{name}\.out\.\d+", f)]
    totals = {}
    for f in dumps:
        for event, v in callgrind_totals(os.path.join(tmp, f)).items():
            totals[event] = totals.get(event, 0) + v
    total = totals.get("Ir", 0)
    p.stop()
    n = int(ok.group(1)) if ok else 0
    if n == 0:
        log(f"  callgrind {name} {workload}: the client failed:\n{res}")
    key = name if workload == "ka100" else f"{name} ({workload})"
    results["callgrind"][key] = {"requests": n, "instructions": total,
                                 "per_request": total / max(n, 1)}
    misses = ""
    if "D1mr" in totals:  # first-level data misses, and those that missed the last level too
        d1 = (totals["D1mr"] + totals["D1mw"]) / max(n, 1)
        ll = (totals["DLmr"] + totals["DLmw"]) / max(n, 1)
        results["callgrind"][key].update(d1_misses=d1, ll_misses=ll)
        misses = f", {d1:.0f} D1 and {ll:.0f} LL data misses/request"
    log(f"  callgrind {key}: {n} requests, {total / max(n, 1):.0f} instructions/request{misses}")
    save(tmp, results)


# ---------------------------------------------------------------- report

def save(tmp, results):
    with open(os.path.join(tmp, "results.json"), "w") as f:
        json.dump(results, f, indent=1)


def fmt(v, digits=3):
    if isinstance(v, float):
        if v != v:
            return "-"
        return f"{v:.{digits}g}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def where_time_goes(m):
    """Per request, medians: the proxy's user and system CPU, the backend's CPU, how often the
    proxy was preempted, and the IP packets sent. The proxy and the backend share the server
    CPU, which the load keeps busy, so requests/s follows 1 / (proxy CPU + backend CPU). The
    last columns bound kedge's requests/s ratio from above: the ratio it would reach if its
    user time fell to nothing and its system time stayed as measured."""
    cells = [(k, r) for k, r in m.items() if "user_us" in r and "backend_us" in r]
    if not cells:
        return []
    shared = len(SERVER_CPU.replace(" ", "").split(",")) == 1 and "-" not in SERVER_CPU
    lines = ["", "Where the time goes (medians per request; µs of CPU, preemptions, packets):", "",
             "| workload | workers | proxy | user | system | backend | preempted | packets |"
             + (" req/s bound k/n | req/s bound k/h |" if shared else ""),
             "|---|---|---|---|---|---|---|---|" + ("---|---|" if shared else "")]
    for k, r in cells:
        name, workers, workload = k.split("|")
        row = (f"| {workload} | {workers} | {name} | {fmt(r['user_us'])} | {fmt(r['sys_us'])} | "
               f"{fmt(r['backend_us'])} | {r['preempted']:.2f} | {r['packets']:.2f} |")
        if shared:
            def bound(other):
                o = m.get(f"{other}|{workers}|{workload}")
                if name != "kedge" or not o or "backend_us" not in o:
                    return " |"
                return f" {(o['cpu_us'] + o['backend_us']) / (r['sys_us'] + r['backend_us']):.2f} |"
            row += bound("nginx") + bound("haproxy")
        lines.append(row)
    return lines


def report(results):
    lines = []
    m = results["matrix"]
    if m:
        lines += ["| workload | proxy | workers | req/s | p50 ms | p99 ms | p99.9 ms | CPU µs/req | peak RSS MB | errors |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for k, r in m.items():
            name, workers, workload = k.split("|")
            if workload in ("upload", "download"):
                continue
            lines.append(f"| {workload} | {name} | {workers} | {r['rps']:.0f} | {fmt(r['p50'])} | {fmt(r['p99'])} | "
                         f"{fmt(r['p999'])} | {fmt(r['cpu_us'])} | {r['rss_mb']:.1f} | {r['errors'] + r['non2xx']:.0f} |")
        tr = [(k, r) for k, r in m.items() if k.split("|")[2] in ("upload", "download")]
        if tr:
            lines += ["", "| transfer (100 MB) | proxy | workers | MB/s | CPU ms | peak RSS MB |", "|---|---|---|---|---|---|"]
            for k, r in tr:
                name, workers, workload = k.split("|")
                lines.append(f"| {workload} | {name} | {workers} | {r['mbps']:.0f} | {r['cpu_ms']:.0f} | {r['rss_mb']:.1f} |")
        lines += ["", "Ratios (medians): kedge/nginx, kedge/HAProxy, kedge/direct. "
                  "req/s higher is better; CPU and p99 lower is better.", "",
                  "| workload | workers | req/s k/n | req/s k/h | req/s k/d | CPU k/n | CPU k/h | p99 k/n | p99 k/h |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for k, r in m.items():
            name, workers, workload = k.split("|")
            if name != "kedge" or workload in ("upload", "download"):
                continue
            n = m.get(f"nginx|{workers}|{workload}")
            h = m.get(f"haproxy|{workers}|{workload}")
            d = m.get(f"direct|-|{workload}")
            q = lambda a, b, f: f"{r[f] / b[f]:.2f}" if b and b[f] else "-"
            lines.append(f"| {workload} | {workers} | {q(r, n, 'rps')} | {q(r, h, 'rps')} | {q(r, d, 'rps')} | "
                         f"{q(r, n, 'cpu_us')} | {q(r, h, 'cpu_us')} | {q(r, n, 'p99')} | {q(r, h, 'p99')} |")
        lines += ["", "Paired ratios: the median, over repetitions, of kedge's figure divided by the other "
                  "proxy's in the same repetition. The cells of one repetition run seconds apart, so a "
                  "machine whose speed drifts between repetitions moves both sides of each ratio alike.", "",
                  "| workload | workers | req/s k/n | req/s k/h | CPU k/n | CPU k/h | p99 k/n | p99 k/h |",
                  "|---|---|---|---|---|---|---|---|"]
        for k, r in m.items():
            name, workers, workload = k.split("|")
            if name != "kedge" or "per_rep" not in r or workload in ("upload", "download"):
                continue
            n = m.get(f"nginx|{workers}|{workload}")
            h = m.get(f"haproxy|{workers}|{workload}")

            def paired(other, f):
                if not other or f not in other.get("per_rep", {}):
                    return "-"
                pairs = [a / b for a, b in zip(r["per_rep"][f], other["per_rep"][f]) if b]
                return f"{statistics.median(pairs):.2f}" if pairs else "-"
            lines.append(f"| {workload} | {workers} | {paired(n, 'rps')} | {paired(h, 'rps')} | "
                         f"{paired(n, 'cpu_us')} | {paired(h, 'cpu_us')} | {paired(n, 'p99')} | {paired(h, 'p99')} |")
        lines += where_time_goes(m)
    c = results["change"]
    if c:
        lines += ["", f"Change under load ({CHANGE_SECONDS} s wrk, one change every {CHANGE_INTERVAL * 1000:.0f} ms; "
                  "medians of the pairs of runs; non-2xx and socket errors summed over them; p99 vs steady: "
                  "the median of the pairs' ratios, then each pair's):", "",
                  "| proxy | run | pairs | changes | req/s | p99 ms | non-2xx | socket errors | p99 vs steady |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for k, r in c.items():
            name, kind = k.split("|")
            ratios = r.get("p99_ratios", [1.0])
            each = ", ".join(f"{x:.2f}" for x in ratios) if len(ratios) > 1 else ""
            lines.append(f"| {name} | {kind} | {r.get('reps', 1)} | {r['changes']:.0f} | {r['rps']:.0f} | {fmt(r['p99'])} | "
                         f"{r['non2xx']} | {r['errors']} | {statistics.median(ratios):.2f}" + (f" ({each})" if each else "") + " |")
    s = results.get("scale")
    if s:
        lines += ["", "Scale (kedge): " + ", ".join(f"{k}={fmt(v)}" for k, v in s.items())]
    cg = results["callgrind"]
    if cg:
        lines += ["", "Callgrind, instructions per proxied request (keep-alive 100 B; tls-h2: 4 KiB, 20 streams): " +
                  ", ".join(f"{k} {v['per_request']:.0f} instructions/request ({v['requests']} requests"
                            + (f"; {v['d1_misses']:.0f} D1, {v['ll_misses']:.0f} LL data misses" if "d1_misses" in v else "")
                            + ")" for k, v in cg.items())]
    return "\n".join(lines)


def main():
    # The harness (configuration writers, /proc readers) runs beside the client, never on the
    # server CPU it measures: rewriting nginx's or HAProxy's configuration for 1,000 hosts ten
    # times a second would otherwise take the measured proxy's CPU.
    try:
        os.sched_setaffinity(0, {int(c) for c in CLIENT_CPU.split(",")})
    except (OSError, ValueError):
        log(f"bench: cannot pin the harness to CPU {CLIENT_CPU}; it runs anywhere")
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    global TMP
    tmp = TMP = tempfile.mkdtemp(prefix="kedge-bench-", dir=base)
    log(f"bench: temp dir {tmp}; quick={QUICK} duration={DURATION}s reps={REPS} workers={WORKERS}")
    results = {"config": {"quick": QUICK, "duration": DURATION, "reps": REPS, "conns": CONNS,
                          "h2": [H2_CONNS, H2_STREAMS], "vhosts": VHOSTS, "kedge": KEDGE},
               "matrix": {}, "change": {}, "scale": {}, "callgrind": {}}
    crt, key, pem = make_cert(tmp)
    ports = {"backend": free_port(), "backend2": free_port(), "backend_tls": free_port()}
    backend = start_backend(tmp, ports, crt, key)
    t0 = time.time()
    try:
        if "matrix" in SECTIONS:
            run_matrix(tmp, backend, crt, key, pem, results)
        if "change" in SECTIONS:
            run_change(tmp, backend, crt, key, pem, results)
        if "scale" in SECTIONS:
            run_scale(tmp, backend, crt, key, results)
        if "callgrind" in SECTIONS:
            run_callgrind(tmp, backend, crt, key, pem, results)
    finally:
        backend.stop()
        for p in started:  # SIGTERM first: a master killed outright would orphan its workers
            if p.poll() is None:
                p.terminate()
        for p in started:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        text = report(results)
        print(text)
        with open(os.path.join(tmp, "results.md"), "w") as f:
            f.write(text + "\n")
        log(f"bench: {time.time() - t0:.0f} s; results in {tmp}/results.json and results.md")
        if os.environ.get("BENCH_KEEP") != "1":
            for f in os.listdir(tmp):
                if f not in ("results.json", "results.md"):
                    p = os.path.join(tmp, f)
                    shutil.rmtree(p, ignore_errors=True) if os.path.isdir(p) else os.unlink(p)


if __name__ == "__main__":
    main()
