"""A tiny web app for the shim's tests, started through --command.

Every HTTP request is answered with JSON describing it (method, path, headers, body).
Special paths (matched on their end):
  .../stream       a chunked answer: "first", then "second" two seconds later
  .../set-cookie   sets cookies the shim owns and one it does not
Websocket handshakes (any path) get an echo server: text and binary messages come back
prefixed with "echo:".

Options: --port N | --socket PATH, --token T (require `Authorization: token T`),
--exit-after SECONDS --exit-code N (leave by itself).
Python standard library only.
"""

import argparse
import base64
import hashlib
import json
import os
import socketserver
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TOKEN = None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        sys.stderr.write("echo_app: " + (fmt % args) + "\n")

    def _headers(self):
        out = {}
        for k, v in self.headers.items():
            out.setdefault(k.lower(), []).append(v)
        return out

    def _authorized(self):
        if TOKEN is None:
            return True
        if self.headers.get("Authorization") == "token " + TOKEN:
            return True
        body = b'{"error": "app token required"}'
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        return False

    def _handle(self):
        if not self._authorized():
            return
        if self.headers.get("Upgrade", "").lower() == "websocket":
            return self._websocket()
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.path.split("?")[0].endswith("/stream"):
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i, chunk in enumerate([b"first\n", b"second\n"]):
                if i:
                    time.sleep(2)
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            return
        answer = json.dumps(
            {
                "method": self.command,
                "path": self.path,
                "headers": self._headers(),
                "body": body.decode("utf-8", "replace"),
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        if self.path.split("?")[0].endswith("/set-cookie"):
            self.send_header("Set-Cookie", "_xsrf=from-app; Path=/")
            self.send_header("Set-Cookie", "jupyterhub-user-alice=from-app; Path=/")
            self.send_header("Set-Cookie", "appcookie=1; Path=/")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(answer)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _handle

    def _websocket(self):
        key = self.headers.get("Sec-WebSocket-Key", "")
        accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True
        while True:
            frame = read_frame(self.rfile)
            if frame is None:
                return
            opcode, payload = frame
            if opcode == 8:
                write_frame(self.wfile, 8, payload[:2])
                return
            if opcode == 9:
                write_frame(self.wfile, 10, payload)
            elif opcode in (1, 2):
                write_frame(self.wfile, opcode, b"echo:" + payload)


def read_exact(f, n):
    data = b""
    while len(data) < n:
        chunk = f.read(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def read_frame(f):
    head = read_exact(f, 2)
    if head is None:
        return None
    opcode = head[0] & 0x0F
    masked = head[1] & 0x80
    length = head[1] & 0x7F
    if length == 126:
        length = struct.unpack("!H", read_exact(f, 2))[0]
    elif length == 127:
        length = struct.unpack("!Q", read_exact(f, 8))[0]
    mask = read_exact(f, 4) if masked else b"\0\0\0\0"
    payload = read_exact(f, length) if length else b""
    if payload is None or mask is None:
        return None
    return opcode, bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def write_frame(f, opcode, payload):
    head = bytes([0x80 | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([n])
    elif n < 65536:
        head += bytes([126]) + struct.pack("!H", n)
    else:
        head += bytes([127]) + struct.pack("!Q", n)
    f.write(head + payload)
    f.flush()


class UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def get_request(self):
        conn, _ = self.socket.accept()
        # BaseHTTPRequestHandler expects (host, port).
        return conn, ("unix", 0)


def main():
    global TOKEN
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int)
    parser.add_argument("--socket")
    parser.add_argument("--token")
    parser.add_argument("--exit-after", type=float)
    parser.add_argument("--exit-code", type=int, default=0)
    args = parser.parse_args()
    TOKEN = args.token
    if args.exit_after is not None:
        timer = threading.Timer(args.exit_after, lambda: os._exit(args.exit_code))
        timer.daemon = True
        timer.start()
    if args.socket:
        server = UnixServer(args.socket, Handler)
    else:
        ThreadingHTTPServer.daemon_threads = True
        server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    sys.stderr.write("echo_app: listening\n")
    server.serve_forever()


if __name__ == "__main__":
    main()
