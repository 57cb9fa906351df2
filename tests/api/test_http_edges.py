"""HTTP edge cases against the real server process: a non-UTF-8 Authorization header,
`Expect: 100-continue` with a body we would refuse, and `--host ::` dual-stack.
(SIGHUP/SIGQUIT draining is in tests/test_e2e.py with SIGTERM and SIGINT.)"""

from __future__ import annotations

import http.client
import json
import re
import socket

import pytest

from tests.support.live import shm_segments, start_server
from tests.support.load import QUESTIONS, log_text

TOKEN = "s3cret-token"
BODY = json.dumps({"question": QUESTIONS[0]}).encode()


@pytest.fixture(scope="module")
def server(tmp_path_factory, demo_csv):
    live = start_server(
        tmp_path_factory.mktemp("edges"),
        data=demo_csv,
        workers=1,
        env={"LESTATS_ADMIN_TOKEN": TOKEN},
    )
    try:
        yield live
    finally:
        code = live.stop()
    assert code == 0, live.text()
    assert shm_segments(live.pid) == []
    assert "Traceback" not in live.text() + log_text(live.log_file)


@pytest.mark.parametrize(
    "value",
    [
        "Bearer \xff\xfe",
        "Bearer s3cret-tokén",
        "\xe9",
        "Bearer " + TOKEN + "\xa0",
        "Bearer \x80" + TOKEN,
    ],
)
def test_non_ascii_authorization_is_a_401(server, value):
    # http.client sends str header values as Latin-1: \xff is the raw byte 0xFF,
    # which is not UTF-8 (aiohttp keeps it as a surrogate escape).
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        connection.request("GET", "/api/graceful_shutdown", headers={"Authorization": value})
        response = connection.getresponse()
        status, answer = response.status, json.loads(response.read())
    finally:
        connection.close()
    assert status == 401, answer
    assert answer["status"] == "error" and "Bearer" in answer["reason"]
    assert server.get("/readyz")[0] == 200


def _expect(port: int, headers: str, body: bytes | None = None) -> bytes:
    """Send a POST's headers with Expect: 100-continue; send `body` only after a 100
    Continue (as curl does); return what the server answered, up to the end of its
    final answer. (The server does not close at once: like any unread body, aiohttp
    gives the client a few seconds to stop sending.)"""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            f"POST /api/best5 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Expect: 100-continue\r\n{headers}\r\n".encode()
        )
        answer = b""
        while _final(answer) is None:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
            if body is not None and answer == b"HTTP/1.1 100 Continue\r\n\r\n":
                sock.sendall(body)
        return answer


def _final(answer: bytes) -> tuple[int, dict] | None:
    """The status and JSON body of the final (non-1xx) answer, once complete."""
    final = re.sub(rb"^HTTP/1.1 100 Continue\r\n\r\n", b"", answer)
    head, _, body = final.partition(b"\r\n\r\n")
    length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
    if length is None or len(body) < int(length.group(1)):
        return None
    return int(head.split(b" ")[1]), json.loads(body)


@pytest.mark.parametrize(
    "headers, status",
    [
        ("Content-Type: application/json\r\nContent-Length: 10000000000\r\n", 413),
        ("Content-Type: application/json\r\nContent-Length: 65537\r\n", 413),
        ("Content-Type: text/plain\r\nContent-Length: 100\r\n", 415),
        (
            "Content-Type: application/json\r\nContent-Length: 100\r\n"
            "Sec-Fetch-Site: cross-site\r\n",
            403,
        ),
    ],
)
def test_expect_continue_refused_without_100(server, headers, status):
    answer = _expect(server.port, headers)
    assert not answer.startswith(b"HTTP/1.1 100"), answer[:200]
    code, body = _final(answer)
    assert code == status and body["status"] == "error" and body["reason"], answer[:300]


def test_expect_continue_accepted_body_is_a_job(server):
    answer = _expect(
        server.port, f"Content-Type: application/json\r\nContent-Length: {len(BODY)}\r\n", BODY
    )
    assert answer.startswith(b"HTTP/1.1 100 Continue\r\n\r\n"), answer[:200]
    code, body = _final(answer)
    assert code == 200 and body["job_id"] >= 1, answer[:300]


def test_unknown_expectation_is_417(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(
            b"POST /api/best5 HTTP/1.1\r\nHost: x\r\nExpect: teapot\r\n"
            b"Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
        )
        answer = b""
        while _final(answer) is None:
            chunk = sock.recv(65536)
            assert chunk, answer
            answer += chunk
    code, body = _final(answer)
    assert code == 417 and body["status"] == "error", answer[:300]


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
        return True
    except OSError:
        return False


def test_host_ipv6_any_is_dual_stack(tmp_path, demo_csv):
    """`--host ::` answers on IPv4 and IPv6 loopback (asyncio alone made it IPv6-only).
    Traffic goes to 127.0.0.1 and ::1 only."""
    assert _ipv6_loopback(), "this test needs IPv6 on lo (::1)"
    # start_server's readiness check connects to 127.0.0.1: it fails if IPv6-only.
    live = start_server(tmp_path, data=demo_csv, workers=1, host="::")
    try:
        for address in ("127.0.0.1", "::1"):
            connection = http.client.HTTPConnection(address, live.port, timeout=10)
            try:
                connection.request(
                    "POST", "/api/best5", body=BODY, headers={"Content-Type": "application/json"}
                )
                response = connection.getresponse()
                assert response.status == 200, response.read()
                assert json.loads(response.read())["job_id"] >= 1
            finally:
                connection.close()
        assert f"serving on http://[::]:{live.port}" in live.text()
    finally:
        assert live.stop() == 0, live.text()
