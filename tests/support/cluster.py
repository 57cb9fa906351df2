"""Real processes of a cluster deployment on loopback: redis-server started from
deploy/redis.conf, a worker node (`python -m server worker`), and HAProxy started
from deploy/haproxy.cfg. Each binds 127.0.0.1 on a free port, keeps its files in the
caller's directory and is stopped by its stop(); a missing binary fails loudly.
The front-ends themselves are tests.support.live.start_server with `--broker`."""
from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tests.support.live import ROOT, free_port

DEPLOY = ROOT / "deploy"


def require(binary: str) -> str:
    """The path of a system binary the test needs; a clear failure if it is absent
    (`make test` installs it: the `system-packages` target)."""
    path = shutil.which(binary) or shutil.which(binary, path="/usr/sbin:/usr/bin")
    if path is None:
        raise AssertionError(f"{binary} is not installed; `make system-packages` (or "
                             f"apt-get install {binary}) installs it")
    return path


@dataclass
class Process:
    """A started process, its output file, and a stop that always reaps it."""
    name: str
    process: subprocess.Popen
    output: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def text(self) -> str:
        return self.output.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
                raise AssertionError(f"{self.name} did not stop within {timeout:g} s:\n"
                                     + self.text()) from None
        return self.process.returncode


def _spawn(name: str, command: list[str], directory: Path, env: dict | None = None) -> Process:
    output = directory / f"{name}.out"
    with open(output, "wb") as sink:
        # Its own session: a stop of the whole tree (os.killpg) reaches its children.
        process = subprocess.Popen(command, cwd=directory, env=env, stdout=sink,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
    return Process(name, process, output)


def _wait_port(started: Process, port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if started.process.poll() is not None:
            raise AssertionError(f"{started.name} exited with {started.process.returncode}:"
                                 f"\n{started.text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    started.stop(signal.SIGKILL)
    raise AssertionError(f"{started.name} not listening within {timeout:g} s:\n"
                         + started.text())


@dataclass
class Redis(Process):
    port: int = 0
    directory: Path = Path()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


def start_redis(directory: Path, port: int | None = None, timeout: float = 15.0) -> Redis:
    """redis-server with deploy/redis.conf (appendonly yes), its data in `directory`;
    started again on the same directory and port, it replays what it had."""
    binary = require("redis-server")
    directory.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    started = _spawn(f"redis-{port}", [
        binary, str(DEPLOY / "redis.conf"), "--port", str(port), "--bind", "127.0.0.1",
        "--dir", str(directory), "--supervised", "no"], directory)
    _wait_port(started, port, timeout)
    return Redis(started.name, started.process, started.output, port, directory)


def start_worker_node(directory: Path, broker: str, data: Path, workers: int = 2,
                      env: dict | None = None) -> Process:
    """`python -m server worker`: a worker node of the cluster (no HTTP)."""
    directory.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "server", "worker", "--broker", broker,
               "--data", str(data), "--workers", str(workers)]
    environment = {**os.environ, "PYTHONPATH": str(ROOT),
                   "LESTATS_LOG_FILE": str(directory / "worker.log"), **(env or {})}
    return _spawn(f"worker-{time.monotonic_ns()}", command, directory, environment)


# The lines of deploy/haproxy.cfg that name addresses: the test replaces exactly these.
_BIND = re.compile(r"^(\s*bind )127\.0\.0\.1:8080$", re.MULTILINE)
_SERVER = re.compile(r"^(\s*server fe\d )127\.0\.0\.1:500\d$", re.MULTILINE)
_SOCKET = re.compile(r"^(\s*stats socket )/run/haproxy/lestats\.sock", re.MULTILINE)


def haproxy_config(port: int, backends: list[int], socket_path: Path) -> str:
    """deploy/haproxy.cfg with only its addresses changed: the balancer on `port`,
    its servers on `backends`, the runtime socket at `socket_path`."""
    text = (DEPLOY / "haproxy.cfg").read_text()
    servers = _SERVER.findall(text)
    if len(_BIND.findall(text)) != 1 or len(servers) != len(backends) \
            or len(_SOCKET.findall(text)) != 1:
        raise AssertionError("deploy/haproxy.cfg no longer has the bind, server and "
                             "stats socket lines this test replaces")
    ports = iter(backends)
    text = _SERVER.sub(lambda m: f"{m.group(1)}127.0.0.1:{next(ports)}", text)
    text = _BIND.sub(lambda m: f"{m.group(1)}127.0.0.1:{port}", text)
    return _SOCKET.sub(lambda m: f"{m.group(1)}{socket_path}", text)


@dataclass
class HAProxy(Process):
    port: int = 0
    socket_path: Path = Path()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self, line: str) -> str:
        """One command on HAProxy's runtime API (the stats socket)."""
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(5)
            sock.connect(str(self.socket_path))
            sock.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()


def start_haproxy(directory: Path, backends: list[int], timeout: float = 15.0) -> HAProxy:
    binary = require("haproxy")
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    socket_path = directory / "haproxy.sock"
    config = directory / "haproxy.cfg"
    config.write_text(haproxy_config(port, backends, socket_path))
    checked = subprocess.run([binary, "-c", "-f", str(config)], capture_output=True, check=False,
                             text=True, timeout=30)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # -db: stay in the foreground, logs on stdout (as under systemd).
    started = _spawn(f"haproxy-{port}", [binary, "-db", "-f", str(config)], directory)
    _wait_port(started, port, timeout)
    deadline = time.monotonic() + timeout
    while not socket_path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)  # the runtime API socket may come up just after the port
    return HAProxy(started.name, started.process, started.output, port, socket_path)
