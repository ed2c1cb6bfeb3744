"""Where a proxy's time goes, per request: its user and system CPU, its system calls by kind
(perf stat on the syscall tracepoints), its context switches and the backend's, under one
workload at 1 worker. Several kedge binaries can be compared in one run.

  python3 bench/probe.py            (needs perf: Debian's linux-perf)

Environment: PROBE_WORKLOAD (ka100; any of bench.py's but upload/download), PROBE_PROXIES
("nginx haproxy kedge"; `label:/path/to/kedge` runs that binary as `label`), PROBE_REPS (1),
PROBE_SECS (4), PROBE_BACKEND_BATCH=1 (the backend runs SCHED_BATCH: it no longer preempts the
proxy when woken, which shows what those context switches cost), KEDGE_BIN as for bench.py.
"""
import os
import re
import subprocess
import sys
import tempfile
import time

sys.argv.append("--quick")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench as b  # noqa: E402

SYSCALLS = ["epoll_wait", "recvfrom", "sendto", "read", "write", "readv", "writev", "sendmsg",
            "recvmsg", "epoll_ctl", "setsockopt", "sendfile64", "connect", "accept4", "close",
            "timerfd_settime", "futex", "io_uring_enter"]


def switches(root):
    """Voluntary and involuntary context switches of every thread of the tree."""
    v = n = 0
    for pid in b.proc_tree(root):
        for t in os.listdir(f"/proc/{pid}/task"):
            try:
                s = open(f"/proc/{pid}/task/{t}/status").read()
            except OSError:
                continue
            v += int(re.search(r"^voluntary_ctxt_switches:\s+(\d+)", s, re.M).group(1))
            n += int(re.search(r"^nonvoluntary_ctxt_switches:\s+(\d+)", s, re.M).group(1))
    return v, n


def perf_stat(root, events, out):
    pids = ",".join(str(p) for p in b.proc_tree(root))
    return subprocess.Popen(["perf", "stat", "-x,", "-e", ",".join(events), "-p", pids, "-o", out])


def perf_counts(out):
    counts = {}
    for line in open(out):
        parts = line.strip().split(",")
        if len(parts) > 2 and parts[0].isdigit():
            name = parts[2].split(":")[-1]
            counts["all" if name == "sys_enter" else name.replace("sys_enter_", "")] = int(parts[0])
    return counts


def probe(proxy, backend, workload, seconds):
    path = b.WORKLOAD_PATH[workload]
    if workload.startswith("tls"):
        port = proxy.ports["https"]
        def run(s): return b.run_h2load(b.TMP, port, path, s, h1=workload == "tls-h1")
    else:
        port = proxy.ports["http"]
        def run(s): return b.run_wrk(b.TMP, port, path, s, close=workload == "close")
    run(1)  # warm-up
    events = ["raw_syscalls:sys_enter"] + [f"syscalls:sys_enter_{s}" for s in SYSCALLS]
    out, bout = f"{b.TMP}/perf-{proxy.name}", f"{b.TMP}/perf-backend"
    perf = perf_stat(proxy.root, events, out)
    bperf = perf_stat(backend.root, ["raw_syscalls:sys_enter"], bout)
    time.sleep(0.3)
    (u0, s0), x0, bx0 = b.cpu_split(proxy.root), switches(proxy.root), switches(backend.root)
    bc0 = b.cpu_seconds(backend.root)
    r = run(seconds)
    (u1, s1), x1, bx1 = b.cpu_split(proxy.root), switches(proxy.root), switches(backend.root)
    bc1 = b.cpu_seconds(backend.root)
    for p in (perf, bperf):
        p.send_signal(2)
        p.wait()
    per = 1e6 / max(r["requests"], 1)  # µs (or events × 1e6) per request
    row = {"req/s": r["rps"], "user µs": (u1 - u0) * per, "sys µs": (s1 - s0) * per,
           "backend µs": (bc1 - bc0) * per,
           "switches vol": (x1[0] - x0[0]) * per / 1e6, "switches invol": (x1[1] - x0[1]) * per / 1e6,
           "backend switches": (bx1[0] + bx1[1] - bx0[0] - bx0[1]) * per / 1e6}
    row.update({f"{k} calls": v * per / 1e6 for k, v in perf_counts(out).items() if v})
    row["backend calls"] = perf_counts(bout).get("all", 0) * per / 1e6
    return row


def main():
    tmp = b.TMP = tempfile.mkdtemp(prefix="kedge-probe-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    workload = os.environ.get("PROBE_WORKLOAD", "ka100")
    crt, key, pem = b.make_cert(tmp)
    ports = {"backend": b.free_port(), "backend2": b.free_port(), "backend_tls": b.free_port()}
    backend = b.start_backend(tmp, ports, crt, key)
    try:
        if os.environ.get("PROBE_BACKEND_BATCH") == "1":
            for pid in b.proc_tree(backend.root):
                for t in os.listdir(f"/proc/{pid}/task"):
                    subprocess.run(["chrt", "--batch", "-p", "0", t], check=True)
        proxies = []
        for name in os.environ.get("PROBE_PROXIES", "nginx haproxy kedge").split():
            pp = dict(backend.ports, **b.proxy_ports())
            if name == "nginx":
                proxies.append(b.start_nginx(tmp, pp, 1, crt, key))
            elif name == "haproxy":
                proxies.append(b.start_haproxy(tmp, pp, 1, pem))
            else:
                label, _, path = name.partition(":")
                b.KEDGE = path or b.KEDGE
                mdir = os.path.join(tmp, f"manifests-{label}")
                b.kedge_manifests(tmp, mdir, pp, b.VHOSTS, crt, key)
                proxies.append(b.start_kedge(tmp, pp, 1, mdir))
                proxies[-1].name = label
        for rep in range(int(os.environ.get("PROBE_REPS", "1"))):
            k = rep % len(proxies)
            for p in proxies[k:] + proxies[:k]:
                row = probe(p, backend, workload, int(os.environ.get("PROBE_SECS", "4")))
                print(f"{workload} rep{rep} {p.name}: " + " ".join(f"{k_}={v:.3g}" for k_, v in row.items()), flush=True)
    finally:
        for p in b.started:
            if p.poll() is None:
                p.terminate()
        for p in b.started:
            p.wait(10)
        subprocess.run(["rm", "-rf", tmp])


if __name__ == "__main__":
    main()
