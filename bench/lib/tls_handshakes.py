#!/usr/bin/env python3
"""Full TLS handshakes per second: each request on a new connection, no session resumption.

usage: tls_handshakes.py HOST PORT SECONDS PROCESSES

Each of PROCESSES forked clients loops for SECONDS: connect, full TLS handshake
(a fresh session every time, certificate not verified), "GET /" with
"Connection: close", read to EOF. Prints "ok=N reused=N errors=N seconds=S slowest_ms=MS" (slowest: one request's time).
wrk is not used here because it resumes TLS sessions, and rustls (hawkey) keeps
a session cache that nginx with "ssl_session_cache off" does not: the handshakes
would not be the same work.
"""
import os
import socket
import ssl
import sys
import time


def client(host, port, seconds):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    request = f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode()
    ok = reused = errors = 0
    slowest = 0.0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t0 = time.monotonic()
        try:
            with socket.create_connection((host, port), timeout=5) as raw:
                with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
                    tls.sendall(request)
                    answer = b""
                    while True:
                        chunk = tls.recv(65536)
                        if not chunk:
                            break
                        answer += chunk
                    reused += tls.session_reused
                    if answer.startswith(b"HTTP/1.1 200"):
                        ok += 1
                    else:
                        errors += 1
        except (OSError, ssl.SSLError):
            errors += 1
        slowest = max(slowest, time.monotonic() - t0)
    return ok, reused, errors, slowest


def main():
    host, port, seconds, procs = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
    rfd, wfd = os.pipe()
    start = time.monotonic()
    kids = []
    for _ in range(procs):
        pid = os.fork()
        if pid == 0:
            os.close(rfd)
            ok, reused, errors, slowest = client(host, port, seconds)
            os.write(wfd, f"{ok} {reused} {errors} {slowest * 1000:.1f}\n".encode())
            os._exit(0)
        kids.append(pid)
    os.close(wfd)
    for pid in kids:
        os.waitpid(pid, 0)
    elapsed = time.monotonic() - start
    totals = [0, 0, 0]
    slowest = 0.0
    with os.fdopen(rfd) as f:
        for line in f:
            fields = line.split()
            for i in range(3):
                totals[i] += int(fields[i])
            slowest = max(slowest, float(fields[3]))
    print(f"ok={totals[0]} reused={totals[1]} errors={totals[2]} seconds={elapsed:.3f} slowest_ms={slowest:.1f}")


if __name__ == "__main__":
    main()
