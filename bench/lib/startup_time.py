#!/usr/bin/env python3
"""Start-up time: from starting a server process to its first 200 answer, in ms.

usage: startup_time.py PORT SAMPLES LOGFILE -- COMMAND [ARGS...]

For each sample: start COMMAND, then try "GET /" on 127.0.0.1:PORT every 0.5 ms
(connection refused = not up yet) until one answers 200, within 10 s. Then the
process is stopped by its pid (SIGTERM, SIGKILL after 10 s) before the next
sample. Prints the samples in ms, space separated. A raw socket is used rather
than curl because spawning curl itself costs a few ms, as much as is measured.
"""
import signal
import socket
import subprocess
import sys
import time


def first_200(port, deadline):
    request = f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode()
    while time.perf_counter() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                s.sendall(request)
                head = s.recv(64)
                if head.startswith(b"HTTP/1.1 200"):
                    return True
        except OSError:
            pass
        time.sleep(0.0005)
    return False


def main():
    sep = sys.argv.index("--")
    port, samples, logfile = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    command = sys.argv[sep + 1:]
    results = []
    with open(logfile, "ab") as log:
        for _ in range(samples):
            t0 = time.perf_counter()
            proc = subprocess.Popen(command, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
            ok = first_200(port, t0 + 10)
            t1 = time.perf_counter()
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if not ok:
                print(f"startup_time: no 200 from {command[0]} within 10 s", file=sys.stderr)
                sys.exit(1)
            results.append((t1 - t0) * 1000)
            time.sleep(0.2)
    print(" ".join(f"{r:.2f}" for r in results))


if __name__ == "__main__":
    main()
