#!/usr/bin/env python3
"""Counting reverse proxy for the S3 benchmarks (benches/prune.sh).

    python3 benches/s3proxy.py LISTEN_PORT UPSTREAM_HOST:PORT

Forwards every request unchanged (the Host header included, so SigV4 signatures stay valid)
and counts, per request class, the requests and the body bytes in each direction:

    GET    object reads (ranged or not)          -> class "get"
    HEAD   object stats                          -> class "head"
    PUT/POST                                     -> class "put"
    GET with list-type / prefix / delimiter / uploads query, or on the bucket -> class "list"
    DELETE, POST ?delete                         -> class "delete"

`GET /__proxy_stats` returns the counters as JSON; `GET /__proxy_stats?reset=1` also zeroes
them. Those two requests are not forwarded and not counted.
"""
import http.client
import json
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

UP_HOST, UP_PORT = sys.argv[2].rsplit(":", 1)
LOCK = threading.Lock()
STATS = {}


def zero():
    return {"requests": {}, "bytes_down": 0, "bytes_up": 0, "requests_total": 0}


STATS = zero()


def classify(method, path, query):
    q = parse_qs(query, keep_blank_values=True)
    parts = [p for p in path.split("/") if p]
    if method == "DELETE" or (method == "POST" and "delete" in q):
        return "delete"
    if method == "GET" and (len(parts) <= 1 or "list-type" in q or "uploads" in q
                            or "prefix" in q or "delimiter" in q):
        return "list"
    if method == "GET":
        return "get"
    if method == "HEAD":
        return "head"
    if method in ("PUT", "POST"):
        return "put"
    return method.lower()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def setup(self):
        super().setup()
        # Without this, headers and body go out in two segments and Nagle plus the peer's
        # delayed ACK add ~40 ms to every request.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _stats(self, query):
        global STATS
        with LOCK:
            body = json.dumps(STATS).encode()
            if "reset=1" in query:
                STATS = zero()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _forward(self):
        u = urlsplit(self.path)
        if u.path == "/__proxy_stats":
            return self._stats(u.query)
        # Request body: Content-Length or chunked.
        body = b""
        if "Content-Length" in self.headers:
            body = self.rfile.read(int(self.headers["Content-Length"]))
        elif self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                line = self.rfile.readline()
                n = int(line.split(b";")[0].strip(), 16)
                if n == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(n))
                self.rfile.readline()
            body = b"".join(chunks)
        headers = {k: v for k, v in self.headers.items()
                   if k.lower() not in ("transfer-encoding", "connection", "keep-alive")}
        if body or self.command in ("PUT", "POST"):
            headers["Content-Length"] = str(len(body))
        conn = http.client.HTTPConnection(UP_HOST, int(UP_PORT), timeout=600)
        conn.connect()
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
        for k, v in headers.items():
            conn.putheader(k, v)
        conn.endheaders(body if body else None)
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        self.send_response_only(resp.status, resp.reason)
        for k, v in resp.getheaders():
            if k.lower() in ("transfer-encoding", "connection", "keep-alive", "content-length"):
                continue
            self.send_header(k, v)
        if self.command == "HEAD":
            cl = resp.getheader("Content-Length")
            if cl is not None:
                self.send_header("Content-Length", cl)
        else:
            self.send_header("Content-Length", str(len(data)))
        # Headers and body in one write.
        self._headers_buffer.append(b"\r\n")
        if self.command != "HEAD":
            self._headers_buffer.append(data)
        self.wfile.write(b"".join(self._headers_buffer))
        self._headers_buffer = []
        cls = classify(self.command, u.path, u.query)
        with LOCK:
            STATS["requests"][cls] = STATS["requests"].get(cls, 0) + 1
            STATS["requests_total"] += 1
            STATS["bytes_up"] += len(body)
            STATS["bytes_down"] += 0 if self.command == "HEAD" else len(data)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward


if __name__ == "__main__":
    srv = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    srv.daemon_threads = True
    srv.serve_forever()
