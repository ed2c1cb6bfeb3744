#!/usr/bin/env python3
"""A pod's server for the network tests: says who answered and whom it saw.

    pod_server.py --name node1-pod1 [--port 8080]

TCP: a request starting with "GET " gets one HTTP answer whose body is
    name=<name> peer=<client address>:<port>
and the connection closes. Anything else is a long-lived line echo: each line comes back as
"<name> <line>", for as long as the client keeps the connection open.
UDP on the same port: each datagram is answered with "name=<name> peer=<addr>:<port>".
"""
import argparse
import socket
import socketserver
import sys
import threading


class Tcp(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        name = self.server.name
        peer = "%s:%d" % self.client_address
        first = self.rfile.readline(8192)
        if first.startswith(b"GET "):
            while True:  # the rest of the head
                line = self.rfile.readline(8192)
                if not line or line in (b"\r\n", b"\n"):
                    break
            body = ("name=%s peer=%s\n" % (name, peer)).encode()
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
                             b"Connection: close\r\n\r\n" % len(body) + body)
            return
        line = first
        while line:
            self.wfile.write(name.encode() + b" " + line)
            self.wfile.flush()
            line = self.rfile.readline(8192)


def serve_udp(name, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))
    while True:
        _, addr = s.recvfrom(2048)
        s.sendto(("name=%s peer=%s:%d\n" % (name, addr[0], addr[1])).encode(), addr)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--name", required=True)
    ap.add_argument("--port", type=int, default=8080)
    a = ap.parse_args()
    server = Tcp(("0.0.0.0", a.port), Handler)
    server.name = a.name
    threading.Thread(target=serve_udp, args=(a.name, a.port), daemon=True).start()
    print("listening on %d as %s" % (a.port, a.name), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
