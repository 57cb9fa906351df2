"""Real cluster processes for tests: a redis-server on a free loopback port with its
own directory and `appendonly yes`, front-ends (tests.support.live.start_server with
--broker) and worker nodes (`python -m server worker`), each in its own directory;
HAProxy started from deploy/haproxy.cfg with only its addresses replaced."""

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

import redis

from compute.shared import SHM_DIR
from tests.support.live import ROOT, LiveServer, free_port, shm_segments, start_server

REDIS_SERVER = "/usr/bin/redis-server"
HAPROXY = "/usr/sbin/haproxy"
DEPLOY = ROOT / "deploy"
CLAIM_TIMEOUT = "1.5"  # seconds: fault tests wait for takeovers, keep them short
NODES: list[WorkerNode] = []  # every worker node a test started
REDISES: list[RedisServer] = []  # every redis-server a test started


def require_redis_server() -> str:
    """The fault tests need the real server; its absence is a failure, not a skip
    (`make test` installs it: Makefile, target system-packages)."""
    path = shutil.which("redis-server") or (REDIS_SERVER if os.path.exists(REDIS_SERVER) else None)
    if path is None:
        raise AssertionError(
            "redis-server is not installed: the cluster tests need it "
            "(apt-get install -y --no-install-recommends redis-server, "
            "or `make system-packages`)"
        )
    return path


@dataclass
class RedisServer:
    binary: str
    dir: Path
    port: int
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 20.0) -> None:
        with open(self.dir / "redis.out", "ab") as log:
            self.process = subprocess.Popen(
                # deploy/redis.conf, the operator's file, with these flags over it.
                [
                    self.binary,
                    str(DEPLOY / "redis.conf"),
                    "--supervised",
                    "no",
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--dir",
                    str(self.dir),
                    "--appendonly",
                    "yes",
                    "--appendfsync",
                    "everysec",
                    "--save",
                    "",
                    "--protected-mode",
                    "yes",
                    "--daemonize",
                    "no",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(
                    "redis-server exited:\n" + (self.dir / "redis.out").read_text()
                )
            try:
                if self.client().ping():
                    return
            except redis.exceptions.RedisError:  # BusyLoadingError while reading the AOF
                time.sleep(0.05)
        raise AssertionError(f"redis-server not ready within {timeout} s")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)

    def used_memory(self) -> int:
        return int(self.client().info("memory")["used_memory"])


def start_redis(directory: Path) -> RedisServer:
    directory.mkdir(parents=True, exist_ok=True)
    server = RedisServer(require_redis_server(), directory, free_port())
    REDISES.append(server)
    server.start()
    return server


def start_frontend(
    tmp_path: Path,
    name: str,
    broker: RedisServer,
    data: Path,
    workers: int = 0,
    env: dict | None = None,
    **options,
) -> LiveServer:
    """A front-end in its own directory; `options` go to start_server."""
    directory = tmp_path / name
    directory.mkdir(exist_ok=True)
    return start_server(
        directory,
        "--broker",
        broker.url,
        data=data,
        workers=workers,
        env={"LESTATS_CLAIM_TIMEOUT": CLAIM_TIMEOUT, **(env or {})},
        **options,
    )


@dataclass
class WorkerNode:
    process: subprocess.Popen
    output: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def text(self) -> str:
        return self.output.read_text()

    def signal_all(self, sig: int) -> None:
        """The node and its worker processes (it leads its own process group)."""
        os.killpg(self.pid, sig)

    def kill_all(self) -> None:
        """kill -9 of the whole node; its shared memory then has no owner left (the next
        start reclaims such segments; the test removes them at once)."""
        if self.process.poll() is None:
            self.signal_all(signal.SIGKILL)
            self.process.wait(10)
        for segment in shm_segments(self.pid):
            os.unlink(os.path.join(SHM_DIR, segment))

    def stop(self, timeout: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill_all()
                raise AssertionError(
                    f"worker node did not stop within {timeout} s:\n" + self.text()
                ) from None
        return self.process.returncode


def start_worker_node(
    tmp_path: Path,
    name: str,
    broker: RedisServer,
    data: Path,
    workers: int = 1,
    ready_timeout: float = 30.0,
    wait_ready: bool = True,
) -> WorkerNode:
    directory = tmp_path / name
    directory.mkdir(exist_ok=True)
    output = directory / "node.out"
    command = [
        sys.executable,
        "-m",
        "server",
        "worker",
        "--broker",
        broker.url,
        "--data",
        str(data),
        "--workers",
        str(workers),
    ]
    environment = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "LESTATS_LOG_FILE": str(directory / "node.log"),
        "LESTATS_CLAIM_TIMEOUT": CLAIM_TIMEOUT,
    }
    with open(output, "wb") as sink:
        process = subprocess.Popen(
            command,
            cwd=directory,
            env=environment,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    node = WorkerNode(process, output)
    NODES.append(node)
    deadline = time.monotonic() + ready_timeout
    while wait_ready and "worker node ready" not in node.text():
        if process.poll() is not None:
            raise AssertionError(f"worker node exited with {process.returncode}:\n" + node.text())
        if time.monotonic() > deadline:
            raise AssertionError(f"worker node not ready within {ready_timeout} s:\n" + node.text())
        time.sleep(0.05)
    return node


def require_haproxy() -> str:
    """The balancer test needs the real HAProxy; its absence is a failure, not a skip
    (`make test` installs it: Makefile, target system-packages)."""
    path = shutil.which("haproxy") or (HAPROXY if os.path.exists(HAPROXY) else None)
    if path is None:
        raise AssertionError(
            "haproxy is not installed: tests/cluster/test_haproxy.py "
            "needs it (apt-get install -y --no-install-recommends "
            "haproxy, or `make system-packages`)"
        )
    return path


# The lines of deploy/haproxy.cfg that name addresses: the test replaces exactly these.
_BIND = re.compile(r"^(\s*bind )127\.0\.0\.1:8080$", re.MULTILINE)
_SERVER = re.compile(r"^(\s*server fe\d )127\.0\.0\.1:500\d$", re.MULTILINE)
_SOCKET = re.compile(r"^(\s*stats socket )/run/haproxy/lestats\.sock", re.MULTILINE)


def haproxy_config(port: int, backends: list[int], socket_path: Path) -> str:
    """deploy/haproxy.cfg with only its addresses changed: the balancer on `port`,
    its servers on `backends`, the runtime socket at `socket_path`."""
    text = (DEPLOY / "haproxy.cfg").read_text()
    servers = _SERVER.findall(text)
    if (
        len(_BIND.findall(text)) != 1
        or len(servers) != len(backends)
        or len(_SOCKET.findall(text)) != 1
    ):
        raise AssertionError(
            "deploy/haproxy.cfg no longer has the bind, server and "
            "stats socket lines this test replaces"
        )
    ports = iter(backends)
    text = _SERVER.sub(lambda m: f"{m.group(1)}127.0.0.1:{next(ports)}", text)
    text = _BIND.sub(lambda m: f"{m.group(1)}127.0.0.1:{port}", text)
    return _SOCKET.sub(lambda m: f"{m.group(1)}{socket_path}", text)


@dataclass
class HAProxy:
    process: subprocess.Popen
    output: Path
    port: int
    socket_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def text(self) -> str:
        return self.output.read_text(errors="replace")

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

    def stop(self, timeout: float = 30.0) -> None:
        """SIGUSR1: HAProxy's soft stop (finish the requests it has, then exit)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGUSR1)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def start_haproxy(directory: Path, backends: list[int], timeout: float = 15.0) -> HAProxy:
    """HAProxy in the foreground (-db, logs on stdout as under systemd) from
    deploy/haproxy.cfg, checked with `haproxy -c` first; ready once it listens and its
    runtime API socket exists."""
    binary = require_haproxy()
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    socket_path = directory / "haproxy.sock"
    config = directory / "haproxy.cfg"
    config.write_text(haproxy_config(port, backends, socket_path))
    checked = subprocess.run(
        [binary, "-c", "-f", str(config)], capture_output=True, check=False, text=True, timeout=30
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    output = directory / "haproxy.out"
    with open(output, "wb") as sink:
        process = subprocess.Popen(
            [binary, "-db", "-f", str(config)], cwd=directory, stdout=sink, stderr=subprocess.STDOUT
        )
    balancer = HAProxy(process, output, port, socket_path)
    deadline = time.monotonic() + timeout
    while not socket_path.exists() or not _listening(port):
        if process.poll() is not None:
            raise AssertionError(f"haproxy exited with {process.returncode}:\n" + balancer.text())
        if time.monotonic() > deadline:
            balancer.stop()
            raise AssertionError(f"haproxy not ready within {timeout} s:\n" + balancer.text())
        time.sleep(0.05)
    return balancer


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False
