"""Hostile HTTP/1.1 inputs for test_smuggling.py: requests a client sends, and responses an
upstream sends. Each case says what a strict proxy must answer (RFC 9110/9112) and why.

Every request names its case in its path (/cNN...), smuggled inner requests included, so the
recording upstream can tell which case a forwarded request came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field

HOST = "s.test"


@dataclass
class Case:
    id: str
    data: bytes  # what the client sends, in one write
    status: tuple[int, ...]  # acceptable statuses of the first answer (0: no answer, closed)
    forwarded: int  # requests of this case that must reach the upstream, each canonical
    reason: str
    closes: bool | None = None  # True: kedge must close after answering; None: not checked
    answers: int = 1  # answers expected on the connection (pipelining)
    extra: dict = field(default_factory=dict)


def req(cid: str, *fields: str, method: str = "GET", version: str = "HTTP/1.1", body: bytes = b"",
        target: str | None = None, host: bool = True) -> bytes:
    lines = [f"{method} {target or '/' + cid} {version}"]
    if host:
        lines.append(f"Host: {HOST}")
    lines += list(fields)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def raw(text: str) -> bytes:
    return text.encode("latin-1")


SMUGGLED = b"GET /c64-smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
CHUNKED_HELLO = b"5\r\nhello\r\n0\r\n\r\n"
REJECT = (400,)
REJECT_TE = (400, 501)  # a transfer coding that cannot be used: 400, or 501 when unknown

REQUEST_CASES: list[Case] = [
    # --- Content-Length and Transfer-Encoding together ---------------------------------------
    Case("c01", req("c01", "Content-Length: 6", "Transfer-Encoding: chunked", method="POST",
                    body=b"0\r\n\r\nG"), REJECT, 0,
         "CL.TE: both framings; a proxy forwarding one and an upstream reading the other desync "
         "(RFC 9112 §6.1: MAY reject, MUST close; rejecting is the only safe answer)", True),
    Case("c02", req("c02", "Transfer-Encoding: chunked", "Content-Length: 3", method="POST",
                    body=b"8\r\nSMUGGLED\r\n0\r\n\r\n"), REJECT, 0,
         "TE.CL: same, Transfer-Encoding first", True),
    Case("c03", req("c03", "Content-Length: 5", "Content-Length: 5", method="POST",
                    body=b"hello"), REJECT, 0,
         "two identical Content-Length fields: RFC 9110 §8.6 allows merging them; kedge refuses "
         "any repetition so no hop can read a different one", True),
    Case("c04", req("c04", "Content-Length: 5", "Content-Length: 6", method="POST",
                    body=b"hello!"), REJECT, 0,
         "conflicting Content-Length values: MUST be treated as unrecoverable (RFC 9112 §6.3)",
         True),
    Case("c05", req("c05", "Content-Length: 5, 5", method="POST", body=b"hello"), REJECT, 0,
         "a Content-Length list: not a valid length (RFC 9112 §6.3)", True),
    Case("c06", req("c06", "Content-Length: -1", method="POST"), REJECT, 0,
         "negative length", True),
    Case("c07", req("c07", "Content-Length: +5", method="POST", body=b"hello"), REJECT, 0,
         "a sign is not part of 1*DIGIT", True),
    Case("c08", req("c08", "Content-Length: 0x5", method="POST", body=b"hello"), REJECT, 0,
         "hexadecimal length", True),
    Case("c09", req("c09", "Content-Length: 99999999999999999999", method="POST"), REJECT, 0,
         "a length that overflows 64 bits", True),
    Case("c10", req("c10", "Content-Length : 5", method="POST", body=b"hello"), REJECT, 0,
         "whitespace between field name and colon MUST be rejected with 400 (RFC 9112 §5.1)",
         True),
    # --- Obfuscated Transfer-Encoding ---------------------------------------------------------
    Case("c11", req("c11", "Transfer-Encoding: CHUNKED", method="POST", body=CHUNKED_HELLO),
         (200,), 1, "coding names are case-insensitive (RFC 9112 §7): a valid chunked body,"
         " forwarded re-framed"),
    Case("c12", req("c12", "Transfer-Encoding:\tchunked", method="POST", body=CHUNKED_HELLO),
         (200,), 1, "a tab is optional whitespace (OWS) before the value: valid"),
    Case("c13", req("c13", "Transfer-Encoding: chunked, identity", method="POST",
                    body=CHUNKED_HELLO), REJECT_TE, 0,
         "chunked not the final coding of a request: MUST answer 400 and close (RFC 9112 §6.3); "
         "kedge rejects and closes, with 501 (llhttp reports an invalid coding)", True),
    Case("c14", req("c14", "Transfer-Encoding: identity, chunked", method="POST",
                    body=CHUNKED_HELLO), (200, 400, 501), None,
         "'identity' is no longer a registered coding (RFC 9112 §6.1: 501 if not understood); "
         "kedge takes the final 'chunked' and forwards the body re-framed, so no hop can read "
         "it differently"),
    Case("c15", req("c15", "Transfer-Encoding:\x0bchunked", method="POST", body=CHUNKED_HELLO),
         REJECT_TE, 0, "vertical tab is not whitespace: the coding is '\\vchunked', unknown",
         True),
    Case("c16", req("c16", "Transfer-Encoding: chunked", "Transfer-Encoding: chunked",
                    method="POST", body=CHUNKED_HELLO), REJECT_TE, 0,
         "two fields combine to 'chunked, chunked': chunked applied twice (RFC 9112 §6.1)",
         True),
    Case("c17", req("c17", "Transfer-Encoding: xchunked", method="POST", body=CHUNKED_HELLO),
         REJECT_TE, 0, "an unknown coding: 501 (RFC 9112 §6.1)", True),
    Case("c18", req("c18", "Transfer-Encoding:\r\n chunked", method="POST", body=CHUNKED_HELLO),
         (200, 400), None, "obs-fold in Transfer-Encoding: reject, or replace it by SP before "
         "interpreting and forwarding (RFC 9112 §5.2); kedge replaces, and forwards canonically"),
    Case("c19", req("c19", "Transfer-Encoding: chunked", method="POST", version="HTTP/1.0",
                    body=CHUNKED_HELLO), (200, 400), None,
         "Transfer-Encoding in HTTP/1.0: framing faulty, connection closed after the message "
         "(RFC 9112 §6.1); kedge answers it and closes", True),
    Case("c20", req("c20", "Transfer-Encoding: chunked ", method="POST", body=CHUNKED_HELLO),
         (200,), 1, "trailing whitespace is OWS, not part of the value: valid"),
    # --- Chunk framing -------------------------------------------------------------------------
    Case("c21", req("c21", "Transfer-Encoding: chunked", method="POST",
                    body=b"FFFFFFFFFFFFFFFFF\r\nx\r\n0\r\n\r\n"), REJECT, 0,
         "chunk size overflowing 64 bits", True),
    Case("c22", req("c22", "Transfer-Encoding: chunked", method="POST",
                    body=b"5g\r\nhello\r\n0\r\n\r\n"), REJECT, 0, "garbage after the chunk size",
         True),
    Case("c23", req("c23", "Transfer-Encoding: chunked", method="POST",
                    body=b"-5\r\nhello\r\n0\r\n\r\n"), REJECT, 0, "negative chunk size", True),
    Case("c24", req("c24", "Transfer-Encoding: chunked", method="POST",
                    body=b"3\r\nhello\r\n0\r\n\r\n"), REJECT, 0,
         "chunk data longer than its size (no CRLF where it must be)", True),
    Case("c25", req("c25", "Transfer-Encoding: chunked", method="POST",
                    body=b"5\nhello\n0\n\n"), REJECT, 0,
         "bare LF ending chunk lines", True),
    Case("c26", req("c26", "Transfer-Encoding: chunked", method="POST",
                    body=b" 5\r\nhello\r\n0\r\n\r\n"), REJECT, 0,
         "whitespace before the chunk size", True),
    Case("c27", req("c27", "Transfer-Encoding: chunked", method="POST",
                    body=b"5;a=b\r\nhello\r\n0\r\nX-T: 1\r\n\r\n"), (200,), 1,
         "a chunk extension and a trailer are valid; neither is forwarded as such"),
    # --- Line endings, folding, control bytes -------------------------------------------------
    Case("c28", raw(f"GET /c28 HTTP/1.1\nHost: {HOST}\n\n"), REJECT, 0,
         "bare LF line endings: a recipient MAY accept them (RFC 9112 §2.2); kedge does not, "
         "because a hop that does not would frame differently", True),
    Case("c29", req("c29", "X-A: a\rb"), REJECT, 0,
         "bare CR in a field value MUST be rejected or replaced (RFC 9112 §2.2)", True),
    Case("c30", req("c30", "X-A: a", " folded"), (200, 400), None,
         "obs-fold: reject, or replace it by SP before forwarding (RFC 9112 §5.2); kedge "
         "replaces"),
    Case("c31", req("c31", "X-A: a\x00b"), REJECT, 0, "NUL in a field value (RFC 9110 §5.5)",
         True),
    Case("c32", req("c32", "X-A: a\x01b"), REJECT, 0, "a control byte in a field value", True),
    Case("c33", req("c33", "X-A: a\x7fb"), REJECT, 0, "DEL in a field value", True),
    Case("c34", req("c34", "X\x00A: a"), REJECT, 0, "NUL in a field name", True),
    Case("c35", req("c35", "X A: a"), REJECT, 0, "a space in a field name is not a token",
         True),
    Case("c36", req("c36", "NoColonHere"), REJECT, 0, "a field line without a colon", True),
    Case("c37", raw(f"GET /c37 HTTP/1.1\r\nHost: {HOST}\r\n\r"), (0, 400, 408), 0,
         "bare CR where the head should end: never a complete request"),
    # --- Host and the request target ----------------------------------------------------------
    Case("c38", req("c38", target="http://other.test/c38"), (404,), 0,
         "absolute-form target: its authority wins over Host (RFC 9112 §3.2.2); other.test has "
         "no rule"),
    Case("c39", raw(f"GET http://{HOST}/c39 HTTP/1.1\r\nHost: evil.test\r\n\r\n"), (200,), 1,
         "absolute-form target naming a routed host: routed by it; the upstream sees origin "
         "form and Host: s.test only", extra={"host": HOST, "target": "/c39"}),
    Case("c40", req("c40", f"Host: {HOST}"), REJECT, 0,
         "two identical Host fields: MUST be 400 (RFC 9112 §3.2)", True),
    Case("c41", req("c41", "Host: evil.test"), REJECT, 0, "two different Host fields", True),
    Case("c42", req("c42", host=False), REJECT, 0, "HTTP/1.1 without Host: MUST be 400", True),
    Case("c43", raw(f"GET /c43 HTTP/1.1\r\nHost: user@{HOST}\r\n\r\n"), REJECT, 0,
         "userinfo in Host is not uri-host", True),
    Case("c44", raw(f"GET /c44 HTTP/1.1\r\nHost: {HOST}, evil.test\r\n\r\n"), REJECT, 0,
         "a list in Host is not uri-host [':' port] (RFC 9110 §7.2)", True),
    Case("c45", raw(f"GET /c45 HTTP/1.1\r\nHost: {HOST}:80:80\r\n\r\n"), REJECT, 0,
         "a Host with two ports", True),
    Case("c46", req("c46", target="/c46" + "a" * 70000), (414,), 0,
         "request target longer than --max-header-bytes: 414", True),
    Case("c47", req("c47", "X-Big: " + "a" * 70000), (431,), 0,
         "one field longer than --max-header-bytes: 431", True),
    Case("c48", req("c48", *[f"X-{i}: {i}" for i in range(4000)]), (431,), 0,
         "many small fields adding up past --max-header-bytes: 431", True),
    # --- Methods and versions -----------------------------------------------------------------
    Case("c49", req("c49", method="get"), (400, 501), 0,
         "methods are case-sensitive: 'get' is an unknown method", True),
    Case("c50", req("c50", method="G(T"), REJECT, 0, "'(' is not a token character", True),
    Case("c51", req("c51", version="HTTP/2.0"), (400, 505), 0,
         "HTTP/2.0 in an HTTP/1 request line", True),
    Case("c52", req("c52", version="HTTP/1.10"), REJECT, 0, "a version with two minor digits",
         True),
    Case("c53", req("c53", version="http/1.1"), REJECT, 0, "the HTTP-name is case-sensitive",
         True),
    Case("c54", raw(f"GET  /c54 HTTP/1.1\r\nHost: {HOST}\r\n\r\n"), (200, 400), None,
         "two spaces in the request line: a recipient MAY parse on whitespace (RFC 9112 §3); "
         "the request line kedge forwards is rebuilt with single spaces"),
    Case("c55", raw(f"GET /c55\tHTTP/1.1\r\nHost: {HOST}\r\n\r\n"), REJECT, 0,
         "a tab as request-line separator", True),
    Case("c56", raw(f"GET /c56 x HTTP/1.1\r\nHost: {HOST}\r\n\r\n"), REJECT, 0,
         "a space inside the request target", True),
    # --- Expect -------------------------------------------------------------------------------
    Case("c57", req("c57", "Expect: 100-continue", "Content-Length: 5", method="POST",
                    body=b"hello"), (200,), 1,
         "100-continue with the body sent at once: one request, body intact"),
    Case("c58", req("c58", "Expect: 100-continue"), (200,), 1,
         "100-continue without a body: nothing to wait for"),
    Case("c59", req("c59", "Expect: 100-continue", "Content-Length: 5", method="POST",
                    version="HTTP/1.0", body=b"hello"), (200,), 1,
         "Expect from an HTTP/1.0 client MUST be ignored (RFC 9110 §10.1.1)"),
    Case("c60", req("c60", "Expect: bogus-expectation"), (200, 417), None,
         "an unknown expectation MAY be answered 417 (RFC 9110 §10.1.1)"),
    # --- Connection reuse ---------------------------------------------------------------------
    Case("c61", req("c61", "Connection: keep-alive", version="HTTP/1.0")
         + req("c61b", "Connection: keep-alive", version="HTTP/1.0"), (200,), 2,
         "HTTP/1.0 keep-alive: both answered on the connection, forwarded as two HTTP/1.1 "
         "requests", answers=2),
    Case("c62", req("c62", "Content-Length: 5", method="POST", body=b"hello")
         + req("c62b"), (200,), 2, "a request pipelined after a Content-Length body", answers=2),
    Case("c63", req("c63", "Transfer-Encoding: chunked", method="POST", body=CHUNKED_HELLO)
         + req("c63b"), (200,), 2, "a request pipelined after a chunked body", answers=2),
    Case("c64", req("c64", f"Content-Length: {len(SMUGGLED)}", method="POST", body=SMUGGLED),
         (200,), 1,
         "a request hidden in a body stays body: one request reaches the upstream"),
    Case("c65", req("c65", "Connection: Content-Length", "Content-Length: 5", method="POST",
                    body=b"hello"), (200, 400), None,
         "Connection naming Content-Length: dropping it as hop-by-hop would unframe the body; "
         "the upstream must still get exactly one framed request"),
    Case("c66", req("c66", "Connection: Transfer-Encoding", "Transfer-Encoding: chunked",
                    method="POST", body=CHUNKED_HELLO), (200, 400), None,
         "Connection naming Transfer-Encoding: same"),
    Case("c67", req("c67", "Connection: Host"), (200, 400), None,
         "Connection naming Host: the upstream must still get exactly one Host"),
    Case("c68", req("c68", "Transfer-Encoding: chunked", method="POST",
                    body=b"5\r\nhello\r\n0\r\nContent-Length: 50\r\n\r\n") + req("c68b"), (200,),
         2, "a Content-Length in the trailer section never frames anything", answers=2),
    Case("c69", req("c69", "Transfer-Encoding: chunked", method="POST",
                    body=b"5;a=b;c=d\r\nhello\r\n0\r\n\r\n"), (200, 400), None,
         "two chunk extensions are valid (RFC 9112 §7.1.1); llhttp 8 refuses them (400), "
         "stricter than needed but safe"),
    Case("c70", req("c70", "Transfer-Encoding: chunked", method="POST",
                    body=b"5\r\nhello\r\n0\r\n\r\n") + req("c70b", "Content-Length: 3",
                                                            method="POST", body=b"abc")
         + req("c70c"), (200,), 3,
         "three pipelined requests after bodies of both framings", answers=3),
]

# Responses the upstream sends for GET /r/<id>; a second request follows on the same client
# connection and must get an honest answer (or a closed connection), never the leftovers.
RESPONSE_CASES: list[tuple[str, bytes, tuple[int, ...], str]] = [
    ("r01", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"2\r\nok\r\n0\r\n\r\n", (502,),
     "CL and TE in a response: framing cannot be trusted"),
    ("r02", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok!", (502,),
     "conflicting Content-Length"),
    ("r03", b"HTTP/1.1 200 OK\r\nContent-Length: -2\r\n\r\nok", (502,), "negative length"),
    ("r04", b"HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nok", (502,),
     "whitespace before the colon"),
    ("r05", b"HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 2\r\n\r\nok", (200, 502),
     "obs-fold in a response: 502, or replaced by SP (RFC 9112 §5.2); kedge replaces"),
    ("r06", b"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 2\r\n\r\nok", (502,),
     "NUL in a response field"),
    ("r07", b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok", (502,), "bare LF line endings"),
    ("r08", b"HTTP/1.1 2000 OK\r\nContent-Length: 2\r\n\r\nok", (502,), "a four-digit status"),
    ("r09", b"hello, this is not HTTP\r\n\r\n", (502,), "no status line (HTTP/0.9 style)"),
    ("r10", b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 70000 + b"\r\nContent-Length: 2\r\n\r\nok",
     (502,), "a response head larger than the limit"),
    ("r11", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n"
            b"Content-Length: 8\r\n\r\nSMUGGLED", (200,),
     "bytes after a complete response: the connection is not reused"),
    ("r12", b"HTTP/1.1 204 No Content\r\nContent-Length: 8\r\n\r\nSMUGGLED", (204,),
     "204 has no body whatever Content-Length says (RFC 9112 §6.3)"),
    ("r13", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFF\r\nx", (200, 502),
     "chunk size overflow: the client sees the stream cut, never a valid end"),
    ("r14", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, identity\r\n\r\nok", (502, 200),
     "chunked not final in a response: the body runs until close (RFC 9112 §6.3); never a "
     "desync of the next request"),
    ("r15", b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\nok", (502,),
     "a length overflowing 64 bits"),
]
