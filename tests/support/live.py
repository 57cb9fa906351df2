"""A real server process for end-to-end tests: started with `python -m server serve`
on a free loopback port, driven over HTTP exactly as an existing client does."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from compute.shared import segments_of as shm_segments  # noqa: F401 (for the tests)

ROOT = Path(__file__).resolve().parents[2]
STARTED: list[LiveServer] = []  # every server process a test started (see conftest)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http(
    url: str,
    method: str = "GET",
    body=None,
    timeout: float = 10.0,
    headers: dict | None = None,
    raw: bytes | None = None,
) -> tuple[int, Any, dict]:
    """(status, parsed JSON, headers) of one request, error statuses included; raises
    OSError when the server cannot be reached (refused, reset, killed mid-answer).
    `body` is sent as JSON, `raw` as it is. The one HTTP helper of the tests."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    request = urllib.request.Request(
        url,
        data=data,
        method=method,
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read()), dict(response.headers)
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read()), dict(error.headers)


@dataclass
class LiveServer:
    url: str
    process: subprocess.Popen
    state_dir: Path
    log_file: Path
    output: Path
    port: int
    args: list = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.process.pid

    def request(
        self,
        method: str,
        path: str,
        body=None,
        headers: dict | None = None,
        timeout: float = 10.0,
        raw: bytes | None = None,
    ) -> tuple[int, dict]:
        status, answer, _ = http(self.url + path, method, body, timeout, headers, raw)
        return status, answer

    def get(self, path: str, **kw) -> tuple[int, dict]:
        return self.request("GET", path, **kw)

    def post(self, path: str, body=None, **kw) -> tuple[int, dict]:
        return self.request("POST", path, body, **kw)

    def ask(self, endpoint: str, poll: float = 0.2, timeout: float = 30.0, **fields):
        """POST, then poll get_results every `poll` s until done, like existing clients."""
        status, answer = self.post(f"/api/{endpoint}", fields)
        assert status == 200, answer
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status, result = self.get(f"/api/get_results/{answer['job_id']}")
            assert status == 200, result
            if result["status"] != "running":
                return result
            time.sleep(poll)
        raise AssertionError(f"job {answer['job_id']} still running after {timeout} s")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
                raise AssertionError(
                    f"server did not stop within {timeout} s:\n" + self.output.read_text()
                ) from None
        return self.process.returncode

    def text(self) -> str:
        """What the server printed on stdout and stderr."""
        return self.output.read_text()


def assert_clean_stop(server: LiveServer, sig: int = signal.SIGTERM) -> None:
    """Stop `server` and check what every stop must leave: exit code 0 and none of
    its shared memory segments."""
    assert server.stop(sig) == 0, server.text()
    assert shm_segments(server.pid) == [], server.text()


def serve_command(
    port: int,
    workers: int,
    state_dir: Path,
    data: Path | None = None,
    host: str = "127.0.0.1",
    program: list[str] | None = None,
) -> list[str]:
    """`lestats serve` as the tests and the benchmark run it (`program` replaces
    `python -m server`)."""
    command = [
        *(program or [sys.executable, "-m", "server"]),
        "serve",
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--state-dir",
        str(state_dir),
    ]
    return command + (["--data", str(data)] if data is not None else [])


def serve_environment(log_file: Path, env: dict | None = None) -> dict[str, str]:
    """Its environment: our log file, and no linger (a test or a run stops at once)."""
    return {
        **os.environ,
        "LESTATS_LOG_FILE": str(log_file),
        "LESTATS_SHUTDOWN_LINGER": "0",
        **(env or {}),
    }


def start_server(
    tmp_path: Path,
    *args: str,
    data: Path | None = None,
    workers: int = 2,
    env: dict | None = None,
    state_dir: Path | None = None,
    port: int | None = None,
    host: str = "127.0.0.1",
    ready_timeout: float = 30.0,
    wait_ready: bool = True,
    preexec_fn=None,
    console: int | None = None,
    program: list[str] | None = None,
    cwd: Path | None = None,
) -> LiveServer:
    """`console`: where stdout and stderr go instead of `LiveServer.output` (e.g.
    subprocess.PIPE, for a test that stalls or closes the server's stderr).
    `program` replaces `python -m server` (e.g. an installed `lestats` script,
    which then runs with no PYTHONPATH: the installed copy, not this checkout)."""
    port = port or free_port()
    state_dir = state_dir or tmp_path / "state"
    log_file = tmp_path / "webserver.log"
    output = tmp_path / f"server-{port}-{time.monotonic_ns()}.out"
    command = serve_command(port, workers, state_dir, data, host, program) + list(args)
    environment = serve_environment(log_file, env)
    environment.pop("PYTHONPATH", None)
    if program is None:
        environment["PYTHONPATH"] = str(ROOT)
    with open(output, "wb") as sink:
        process = subprocess.Popen(
            command,
            cwd=cwd or tmp_path,
            env=environment,
            stdout=sink if console is None else console,
            stderr=subprocess.STDOUT,
            preexec_fn=preexec_fn,
        )
    server = LiveServer(
        f"http://127.0.0.1:{port}", process, state_dir, log_file, output, port, command
    )
    STARTED.append(server)
    if wait_ready:
        _wait_ready(server, ready_timeout)
    return server


def _wait_ready(server: LiveServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise AssertionError(
                f"server exited with {server.process.returncode}:\n" + server.text()
            )
        try:
            if server.get("/api/info", timeout=1.0)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    server.stop(signal.SIGKILL)
    raise AssertionError(f"server not ready within {timeout} s:\n" + server.text())
