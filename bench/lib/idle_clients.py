#!/usr/bin/env python3
"""Open N keep-alive connections, send one GET on each, read the answer, then hold them.

usage: idle_clients.py HOST PORT N READY_FILE MAX_HOLD_SECONDS [h2]

With `h2` the connections are TLS with ALPN h2 (the certificate is not checked), and
the GET is an HTTP/2 stream.

Writes "<connections held> <seconds to open them>" to READY_FILE once every
connection has had its answer, then holds them until it is killed (SIGTERM) or
MAX_HOLD_SECONDS have passed, whichever comes first.
"""
import os
import resource
import signal
import socket
import ssl
import struct
import sys
import time

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def frame(kind, flags, stream, payload):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def h2_get(sock):
    """An HTTP/2 GET / on stream 1; True once its answer has ended."""
    # HPACK: :method GET, :scheme https, :path /, :authority "h" (indexed name 1)
    block = bytes([0x82, 0x87, 0x84, 0x41, 1, ord("h")])
    sock.sendall(PREFACE + frame(4, 0, 0, b"") + frame(1, 0x5, 1, block))
    buf = b""
    while True:
        while len(buf) >= 9:
            length = int.from_bytes(buf[:3], "big")
            if len(buf) < 9 + length:
                break
            kind, flags, stream = buf[3], buf[4], int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF
            buf = buf[9 + length:]
            if stream == 1 and kind in (0, 1) and flags & 1:
                return True
            if kind == 7:
                return False
        chunk = sock.recv(65536)
        if not chunk:
            return False
        buf += chunk


def read_answer(sock):
    """Read one HTTP/1.1 response with a Content-Length body; True on 200."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            return False
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            return False
        body += chunk
    return head.startswith(b"HTTP/1.1 200")


def main():
    host, port, count, ready_file, max_hold = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], float(sys.argv[5])
    h2 = len(sys.argv) > 6 and sys.argv[6] == "h2"
    tls = ssl.create_default_context()
    tls.check_hostname = False
    tls.verify_mode = ssl.CERT_NONE
    tls.set_alpn_protocols(["h2"])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))  # the kernel closes the sockets at once
    request = f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: idle-holder\r\n\r\n".encode()
    held = []
    start = time.monotonic()
    deadline = start + 60
    for _ in range(count):
        if time.monotonic() > deadline:
            break
        try:
            sock = socket.create_connection((host, port), timeout=10)
            if h2:
                sock = tls.wrap_socket(sock, server_hostname="localhost")
                answered = h2_get(sock)
            else:
                sock.sendall(request)
                answered = read_answer(sock)
            if answered:
                held.append(sock)
            else:
                sock.close()
        except OSError as err:
            print(f"idle_clients: {err}", file=sys.stderr)
            break
    elapsed = time.monotonic() - start
    with open(ready_file + ".tmp", "w") as f:
        f.write(f"{len(held)} {elapsed:.3f}\n")
    os.replace(ready_file + ".tmp", ready_file)
    end = time.monotonic() + max_hold
    while time.monotonic() < end:
        time.sleep(0.5)


if __name__ == "__main__":
    main()
