#!/usr/bin/env python3
"""Forwarding probe: a UDP datagram every INTERVAL to HOST:PORT for SECONDS; prints the longest
time without an answer (after the first one) and every gap above --report-ms, as JSON.

    udp_probe.py --host 10.79.0.11 --port 30099 [--interval 0.001] [--seconds 20]
"""
import argparse
import json
import socket
import threading
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--interval", type=float, default=0.001)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--report-ms", type=float, default=20)
    a = ap.parse_args()
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect((a.host, a.port))
    s.settimeout(0.2)
    arrivals = []
    stop = threading.Event()
    sent = [0]

    def sender():
        end = time.monotonic() + a.seconds
        while time.monotonic() < end:
            try:
                s.send(b"x")
                sent[0] += 1
            except OSError:
                pass
            time.sleep(a.interval)
        stop.set()

    t = threading.Thread(target=sender)
    t.start()
    while not stop.is_set():
        try:
            s.recv(2048)
            arrivals.append(time.time())
        except (socket.timeout, OSError):
            pass
    t.join()
    gaps = [(arrivals[i] - arrivals[i - 1], arrivals[i - 1]) for i in range(1, len(arrivals))]
    worst = max(gaps, default=(0, 0))
    print(json.dumps({"sent": sent[0], "answered": len(arrivals),
                      "first": arrivals[0] if arrivals else None,
                      "max_gap_ms": round(worst[0] * 1000, 1), "max_gap_at": worst[1],
                      "gaps_over_report_ms": [[round(g * 1000, 1), round(at, 3)]
                                              for g, at in gaps if g * 1000 > a.report_ms]}))


if __name__ == "__main__":
    main()
