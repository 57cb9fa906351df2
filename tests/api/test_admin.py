"""Admin safety (docs/api.md, "Security"): graceful_shutdown is not for anyone who can
reach the port.

How a stranger is simulated, honestly and in CI: every address in 127.0.0.0/8 is
loopback, so no client on this machine's loopback can be a stranger, and tests must
not listen on a real network interface. So:

1. End to end, the real server process runs in a private network namespace
   (`unshare -n`, root or user namespaces) whose only interface is `lo`, given a
   second, non-loopback address 192.0.2.1 (TEST-NET-1). A client bound to 192.0.2.1
   is a genuine non-loopback peer to the server, yet nothing outside the namespace can
   reach it. Skipped (with the reason) where namespaces are not allowed.
2. Always: the same app in-process through aiohttp_client, with a test middleware
   that forges request.remote (request.clone(remote=...)) before the real handler.
3. Always: the token mode on the real process over loopback.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys

import pytest
from aiohttp import web

from tests.support.inprocess import running_app
from tests.support.live import ROOT, start_server

REFUSED_LOOPBACK = "refused admin request /api/graceful_shutdown from non-loopback client"


def _namespace_command() -> list[str] | None:
    unshare = shutil.which("unshare")
    if unshare is None:
        return None
    for flags in (["-n"], ["-r", "-n"]):  # as root; else in a user namespace
        try:
            if (
                subprocess.run(
                    [unshare, *flags, "true"], capture_output=True, timeout=10
                ).returncode
                == 0
            ):
                return [unshare, *flags]
        except (OSError, subprocess.SubprocessError):
            pass
    return None


def test_stranger_is_refused_end_to_end_in_a_network_namespace(tmp_path, demo_csv):
    command = _namespace_command()
    if command is None:
        pytest.skip("no network namespace can be made here (unshare -n is refused)")
    run = subprocess.run(
        [*command, sys.executable, "-m", "tests.support.stranger", str(tmp_path), str(demo_csv)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["interfaces"] == ["lo"]  # nothing outside could reach the server
    for case in ("stranger", "stranger_with_a_made_up_token", "stranger_posing_as_local"):
        code, body = report[case]
        assert code == 403 and body["status"] == "error", (case, body)
    assert report["after_refusals_still_accepting"]
    assert report["loopback"] == [200, {"status": "done"}] and report["open_exit"] == 0
    assert report["open_log"].count(f"{REFUSED_LOOPBACK} 192.0.2.1") == 3

    for case in ("token_missing", "token_wrong", "token_missing_from_loopback"):
        code, body = report[case]
        assert code == 401 and body["status"] == "error", (case, body)
    assert report["token_right"] == [200, {"status": "done"}] and report["token_exit"] == 0
    assert report["token_log"].count("missing or wrong token") == 3
    assert "s3cret" not in report["token_log"]  # the token itself is never logged


@web.middleware
async def _from_a_stranger(request, handler):
    address = request.headers.get("X-Test-Peer")
    return await handler(request if address is None else request.clone(remote=address))


@pytest.mark.parametrize(
    "peer, code",
    [
        ("203.0.113.7", 403),
        ("10.0.0.1", 403),
        ("::ffff:8.8.8.8", 403),
        ("2001:db8::1", 403),
        ("", 403),
        ("not an address", 403),
        ("127.0.0.2", 200),
        ("::1", 200),
    ],
)
async def test_forged_remote_in_process(tmp_path, demo_csv, aiohttp_client, caplog, peer, code):
    async with running_app(demo_csv, tmp_path / "state") as running:
        running.app.middlewares.insert(0, _from_a_stranger)
        client = await aiohttp_client(running.app)
        with caplog.at_level(logging.WARNING, logger="lestats.http"):
            response = await client.get(
                "/api/graceful_shutdown",
                headers={"X-Test-Peer": peer, "X-Forwarded-For": "127.0.0.1"},
            )
        body = await response.json()
        assert response.status == code, body
        if code == 403:
            assert body["status"] == "error" and running.service.accepting
            assert f"{REFUSED_LOOPBACK} {peer}" in caplog.text
        else:
            assert body["status"] in ("running", "done") and not running.service.accepting


def test_token_end_to_end(tmp_path, demo_csv):
    server = start_server(
        tmp_path, data=demo_csv, workers=1, env={"LESTATS_ADMIN_TOKEN": "correct horse"}
    )
    try:
        for headers in (
            {},
            {"Authorization": "Bearer wrong"},
            {"Authorization": "Bearer correct horse!"},
            {"Authorization": "correct horse"},
            {"Authorization": "Basic Y29ycmVjdDpob3JzZQ=="},
        ):
            code, body = server.get("/api/graceful_shutdown", headers=headers)
            assert code == 401 and body["status"] == "error", (headers, body)
        assert server.get("/readyz")[1] == {"status": "ready"}
        code, body = server.get(
            "/api/graceful_shutdown", headers={"Authorization": "Bearer correct horse"}
        )
        assert code == 200 and body["status"] in ("running", "done")
        assert server.process.wait(30) == 0
    finally:
        server.stop()
    log = server.log_file.read_text()
    assert (
        log.count(
            "refused admin request /api/graceful_shutdown from 127.0.0.1: missing or wrong token"
        )
        == 5
    )
    assert "correct horse" not in log
