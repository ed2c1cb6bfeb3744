"""gRPC and other non-HTTP/1.1 backends (nginx.ingress.kubernetes.io/backend-protocol).

A real gRPC server (Python grpcio, Debian's python3-grpcio) behind kedge; real gRPC clients in
front, over h2c and over TLS with ALPN h2. Methods use raw bytes, so no generated code is needed.
"""
import http.server
import ssl
import threading
from concurrent import futures

import pytest

from conftest import endpoint, endpoint_slice, free_port, ingress, path_rule, service, timeout
from test_tls import make_cert, tls_secret

grpc = pytest.importorskip("grpc", reason="python3-grpcio is not installed")

HOST = "grpc.example.test"
UNARY = "/kedge.test.Echo/Unary"
STREAM = "/kedge.test.Echo/Stream"
COLLECT = "/kedge.test.Echo/Collect"
FAIL = "/kedge.test.Echo/Fail"


def _handlers():
    def unary(request: bytes, context):
        meta = dict(context.invocation_metadata())
        context.set_trailing_metadata((("echo-trailer", "t-" + meta.get("x-test", "")),))
        return b"unary:" + request[::-1] + b":" + meta.get("x-forwarded-proto", "").encode()

    def stream(request: bytes, context):
        count = int(request.decode())
        for i in range(count):
            yield f"item-{i}:".encode() + b"x" * 1000
        context.set_trailing_metadata((("stream-count", str(count)),))

    def collect(requests, context):
        total = b""
        for r in requests:
            total += r
        return b"collected:" + total

    def fail(request: bytes, context):
        context.abort(grpc.StatusCode.NOT_FOUND, "no such thing: " + request.decode())

    ident = None
    return grpc.method_handlers_generic_handler("kedge.test.Echo", {
        "Unary": grpc.unary_unary_rpc_method_handler(unary, ident, ident),
        "Stream": grpc.unary_stream_rpc_method_handler(stream, ident, ident),
        "Collect": grpc.stream_unary_rpc_method_handler(collect, ident, ident),
        "Fail": grpc.unary_unary_rpc_method_handler(fail, ident, ident),
    })


def grpc_server(credentials=None):
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers((_handlers(),))
    port = free_port()
    if credentials:
        server.add_secure_port(f"127.0.0.1:{port}", credentials)
    else:
        server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    return server, port


def manifests(env, backend_port: int, protocol: str, tls: bool = False, cert=None):
    ing = ingress("grpc", [(HOST, [path_rule("/", "grpc-svc")])],
                  annotations={"nginx.ingress.kubernetes.io/backend-protocol": protocol})
    docs = [service("grpc-svc"), endpoint_slice("grpc-svc", backend_port,
                                                [endpoint("127.0.0.1", "grpc-pod")]), ing]
    if tls:
        ing["spec"]["tls"] = [{"hosts": [HOST], "secretName": "grpc-tls"}]
        docs.append(tls_secret("grpc-tls", *cert))
    env.write("grpc.yaml", *docs)


def call_all(channel):
    unary = channel.unary_unary(UNARY)
    reply, call = unary.with_call(b"hello", metadata=(("x-test", "42"),), timeout=timeout(10))
    trailers = dict(call.trailing_metadata())
    items = list(channel.unary_stream(STREAM)(b"50", timeout=timeout(10)))
    collected = channel.stream_unary(COLLECT)(iter([b"a", b"bb", b"ccc"] * 100),
                                              timeout=timeout(10))
    return reply, trailers, items, collected


@pytest.fixture
def h2c_backend():
    server, port = grpc_server()
    yield port
    server.stop(0)


def test_grpc_unary_streaming_and_status_over_h2c(env, h2c_backend):
    manifests(env, h2c_backend, "GRPC")
    k = env.kedge()
    with grpc.insecure_channel(f"127.0.0.1:{k.http_port}",
                               options=(("grpc.default_authority", HOST),)) as channel:
        reply, trailers, items, collected = call_all(channel)
        assert reply == b"unary:olleh:http"
        assert trailers.get("echo-trailer") == "t-42"  # trailers pass through intact
        assert len(items) == 50
        assert items[0].startswith(b"item-0:") and items[49].startswith(b"item-49:")
        assert all(len(i) == len(f"item-{n}:") + 1000 for n, i in enumerate(items))
        assert collected == b"collected:" + b"abbccc" * 100  # client streaming
        with pytest.raises(grpc.RpcError) as failure:
            channel.unary_unary(FAIL)(b"thing", timeout=timeout(10))
        assert failure.value.code() == grpc.StatusCode.NOT_FOUND
        assert failure.value.details() == "no such thing: thing"
        # Many calls share kedge's connections; each keeps its own answer.
        unary = channel.unary_unary(UNARY)
        answers = [unary.future(str(i).encode(), timeout=timeout(10)) for i in range(40)]
        assert [a.result() for a in answers] == [
            b"unary:" + str(i).encode()[::-1] + b":http" for i in range(40)]


def test_grpc_over_tls_with_alpn_to_tls_backend(env, tmp_path):
    crt, key = make_cert(tmp_path, "grpc", [HOST])
    backend_crt, backend_key = make_cert(tmp_path, "backend", ["backend.internal"])
    server, port = grpc_server(grpc.ssl_server_credentials(((backend_key, backend_crt),)))
    try:
        manifests(env, port, "GRPCS", tls=True, cert=(crt, key))
        https_port = free_port()
        k = env.kedge("--https-listen", f"127.0.0.1:{https_port}")
        creds = grpc.ssl_channel_credentials(root_certificates=crt)
        with grpc.secure_channel(f"127.0.0.1:{https_port}", creds,
                                 options=(("grpc.ssl_target_name_override", HOST),)) as channel:
            reply, trailers, items, collected = call_all(channel)
        assert reply == b"unary:olleh:https"
        assert trailers.get("echo-trailer") == "t-42"
        assert len(items) == 50
        assert collected.startswith(b"collected:abbccc")
    finally:
        server.stop(0)


def test_grpc_backend_gone_is_unavailable(env):
    port = free_port()  # nothing listens there
    manifests(env, port, "GRPC")
    k = env.kedge()
    with grpc.insecure_channel(f"127.0.0.1:{k.http_port}",
                               options=(("grpc.default_authority", HOST),)) as channel:
        with pytest.raises(grpc.RpcError) as failure:
            channel.unary_unary(UNARY)(b"x", timeout=timeout(10))
    # A 502 from the proxy reads as UNAVAILABLE to a gRPC client.
    assert failure.value.code() == grpc.StatusCode.UNAVAILABLE


class _TlsHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):  # noqa: N802 - http.server's naming
        body = f"tls-backend {self.path} {self.headers.get('X-Forwarded-Proto')}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_https_backend_protocol_speaks_tls_to_the_endpoint(env, tmp_path):
    crt, key = make_cert(tmp_path, "web", ["web.internal"])
    (tmp_path / "web.pem").write_bytes(crt + key)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _TlsHandler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tmp_path / "web.pem")
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        ing = ingress("web", [("secure.example.test", [path_rule("/", "web")])],
                      annotations={"nginx.ingress.kubernetes.io/backend-protocol": "HTTPS"})
        env.write("web.yaml", service("web"),
                  endpoint_slice("web", server.server_address[1], [endpoint("127.0.0.1", "w")]),
                  ing)
        k = env.kedge()
        for i in range(3):  # the second and third reuse the pooled TLS connection
            r = k.request("secure.example.test", f"/p{i}")
            assert r.status == 200, r
            assert r.body == f"tls-backend /p{i} http".encode()
    finally:
        server.shutdown()
        server.server_close()


def test_grpc_route_refuses_http11_clients_and_unknown_protocols_are_reported(env, h2c_backend):
    manifests(env, h2c_backend, "GRPC")
    env.write("other.yaml", ingress("fcgi", [("fcgi.example.test", [path_rule("/", "grpc-svc")])],
                                    annotations={
                                        "nginx.ingress.kubernetes.io/backend-protocol": "FCGI"}))
    k = env.kedge()
    assert k.request(HOST, "/kedge.test.Echo/Unary").status == 502
    errors = k.admin_json("/debug/errors")
    text = str(errors)
    assert "backend-protocol" in text and "FCGI" in text
