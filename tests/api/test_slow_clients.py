"""Slow and broken clients (docs/guarantees.md).

Hundreds of connections that stall mid-headers or mid-body, or vanish mid-request,
must not keep a normal client from its answers, and must not hold the server's
descriptors for ever: after client_timeout (here 3 s) a stalled request line/headers
is closed and a stalled body answered 408 JSON.
"""

from __future__ import annotations

import json
import os
import re
import socket
import time

from compute.questions import LOWER_IS_BETTER
from tests.support.load import wait_until

CLIENT_TIMEOUT = 3.0
STALLED_HEADERS = 200
STALLED_BODIES = 50
VANISHING = 50


def _connect(port: int, data: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(data)
    return sock


def _descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _read_answer(sock: socket.socket, deadline: float) -> bytes | None:
    """What the server sends until it closes or a whole response has arrived; None if
    it neither answers nor closes by the deadline."""
    answer = b""
    while True:
        sock.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            return None
        except ConnectionResetError:
            break
        if not chunk:
            break
        answer += chunk
        head, _, body = answer.partition(b"\r\n\r\n")
        length = re.search(rb"(?i)content-length: *(\d+)", head)
        if length and len(body) >= int(length.group(1)):
            break
    return answer


def test_stalled_and_vanishing_clients_do_not_starve_others(live_on, demo_csv):
    server = live_on(demo_csv, workers=1, env={"LESTATS_CLIENT_TIMEOUT": str(CLIENT_TIMEOUT)})
    opened: list[socket.socket] = []
    try:
        limits = open(f"/proc/{server.pid}/limits").read()
        soft, hard = re.search(r"Max open files\s+(\S+)\s+(\S+)", limits).groups()
        assert soft == hard, "the descriptor limit was not raised to the hard limit"
        baseline = _descriptors(server.pid)

        request = b"POST /api/best5 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        stalled_headers = [
            _connect(server.port, request[: 10 + i % 40]) for i in range(STALLED_HEADERS)
        ]
        stalled_bodies = [
            _connect(server.port, request + b"Content-Length: 100\r\n\r\n" + b'{"question": ')
            for _ in range(STALLED_BODIES)
        ]
        opened += stalled_headers + stalled_bodies
        for i in range(VANISHING):  # gone mid-headers, mid-body, and before the answer
            sock = _connect(
                server.port,
                [
                    request[:30],
                    request + b"Content-Length: 50\r\n\r\n{",
                    b"GET /api/jobs HTTP/1.1\r\n\r\n",
                ][i % 3],
            )
            if i % 2:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
            sock.close()  # odd ones with an RST, even ones with a FIN
        held = STALLED_HEADERS + STALLED_BODIES  # (the baseline may hold a few transients)
        assert wait_until(lambda: _descriptors(server.pid) >= baseline + held * 0.9, 10), (
            baseline,
            _descriptors(server.pid),
            os.listdir(f"/proc/{server.pid}/fd"),
        )

        # A normal client is served meanwhile, well within its own timeout.
        started = time.monotonic()
        for state in ("Ohio", "Guam", "National"):
            result = server.ask("state_mean", question=LOWER_IS_BETTER[1], state=state, timeout=20)
            assert result["status"] == "done"
        assert server.get("/api/num_jobs")[0] == 200
        print(
            f"\nnormal client served in {time.monotonic() - started:.2f} s while "
            f"{len(opened)} connections stalled"
        )

        # After client_timeout: stalled headers closed, stalled bodies answered 408.
        deadline = time.monotonic() + CLIENT_TIMEOUT + 10
        for sock in stalled_headers:
            assert _read_answer(sock, deadline) == b"", "a stalled connection stays open"
        for sock in stalled_bodies:
            answer = _read_answer(sock, deadline) or b""
            head, _, body = answer.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 408"), answer[:200]
            assert json.loads(body)["status"] == "error"
        for sock in opened:
            sock.close()
        assert wait_until(lambda: _descriptors(server.pid) <= baseline + 5, 20), (
            baseline,
            _descriptors(server.pid),
        )
    finally:
        for sock in opened:
            sock.close()
