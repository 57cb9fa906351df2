"""Run inside a private network namespace (`unshare -n python -m tests.support.stranger
WORKDIR DATA`): give its loopback interface a second, non-loopback address
(192.0.2.1, TEST-NET-1), start the real server bound to every address of this
namespace — which has no interface but lo, so nothing outside can reach it — and ask
for an admin action from 192.0.2.1, a client the server must treat as a stranger, and
from 127.0.0.1. Prints one JSON object with what happened; tests/api/test_admin.py judges.
"""

from __future__ import annotations

import fcntl
import http.client
import json
import os
import socket
import struct
import sys
from pathlib import Path

from tests.support.live import start_server

STRANGER = "192.0.2.1"
SIOCGIFFLAGS, SIOCSIFFLAGS, SIOCSIFADDR = 0x8913, 0x8914, 0x8916
IFF_UP = 0x1


def configure_loopback() -> None:
    """`ip link set lo up; ip addr add 192.0.2.1 dev lo:1` without needing iproute2."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH22x", b"lo", 0)
        flags = struct.unpack("16sH", fcntl.ioctl(sock, SIOCGIFFLAGS, request)[:18])[1]
        fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sH22x", b"lo", flags | IFF_UP))
        address = struct.pack(
            "16sH2s4s16x", b"lo:1", socket.AF_INET, b"\0\0", socket.inet_aton(STRANGER)
        )
        fcntl.ioctl(sock, SIOCSIFADDR, address)


def interfaces() -> list[str]:
    return sorted(name for _, name in socket.if_nameindex())


def ask(
    port: int, source: str, token: str | None = None, headers: dict | None = None
) -> tuple[int, dict]:
    connection = http.client.HTTPConnection(source, port, timeout=10, source_address=(source, 0))
    headers = dict(headers or {})
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        connection.request("GET", "/api/graceful_shutdown", headers=headers)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def main(workdir: str, data: str) -> None:
    configure_loopback()
    report = {"interfaces": interfaces()}
    open_server = start_server(Path(workdir) / "open", data=Path(data), host="0.0.0.0", workers=1)
    try:
        report["stranger"] = ask(open_server.port, STRANGER)
        report["stranger_with_a_made_up_token"] = ask(open_server.port, STRANGER, "guess")
        report["stranger_posing_as_local"] = ask(
            open_server.port,
            STRANGER,
            headers={
                "X-Forwarded-For": "127.0.0.1",
                "X-Real-IP": "127.0.0.1",
                "Forwarded": "for=127.0.0.1",
                "Host": "localhost",
            },
        )
        report["after_refusals_still_accepting"] = open_server.get("/readyz")[1] == {
            "status": "ready"
        }
        report["loopback"] = ask(open_server.port, "127.0.0.1")
        report["open_exit"] = open_server.process.wait(30)
    finally:
        open_server.stop()
    report["open_log"] = open_server.log_file.read_text()

    token_server = start_server(
        Path(workdir) / "token",
        data=Path(data),
        host="0.0.0.0",
        workers=1,
        env={"LESTATS_ADMIN_TOKEN": "s3cret"},
    )
    try:
        report["token_missing"] = ask(token_server.port, STRANGER)
        report["token_wrong"] = ask(token_server.port, STRANGER, "s3cre")
        report["token_missing_from_loopback"] = ask(token_server.port, "127.0.0.1")
        report["token_right"] = ask(token_server.port, STRANGER, "s3cret")
        report["token_exit"] = token_server.process.wait(30)
    finally:
        token_server.stop()
    report["token_log"] = token_server.log_file.read_text()
    print(json.dumps(report))


if __name__ == "__main__":
    for sub in ("open", "token"):
        os.makedirs(Path(sys.argv[1]) / sub, exist_ok=True)
    main(sys.argv[1], sys.argv[2])
