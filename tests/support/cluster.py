"""Real cluster processes for tests: a redis-server on a free loopback port with its
own directory and `appendonly yes`, front-ends (tests.support.live.start_server with
--broker) and worker nodes (`python -m server worker`), each in its own directory."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import redis

from compute.shared import SHM_DIR
from tests.support.live import ROOT, LiveServer, free_port, shm_segments, start_server

REDIS_SERVER = "/usr/bin/redis-server"
CLAIM_TIMEOUT = "1.5"   # seconds: fault tests wait for takeovers, keep them short
NODES: list[WorkerNode] = []      # every worker node a test started
REDISES: list[RedisServer] = []   # every redis-server a test started


def require_redis_server() -> str:
    """The fault tests need the real server; its absence is a failure, not a skip
    (`make test` installs it: Makefile, target system-packages)."""
    path = shutil.which("redis-server") or (REDIS_SERVER if os.path.exists(REDIS_SERVER)
                                            else None)
    if path is None:
        raise AssertionError("redis-server is not installed: the cluster tests need it "
                             "(apt-get install -y --no-install-recommends redis-server, "
                             "or `make system-packages`)")
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
                [self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
                 "--dir", str(self.dir), "--appendonly", "yes",
                 "--appendfsync", "everysec", "--save", "", "--protected-mode", "yes",
                 "--daemonize", "no"], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError("redis-server exited:\n"
                                     + (self.dir / "redis.out").read_text())
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


def start_frontend(tmp_path: Path, name: str, broker: RedisServer, data: Path,
                   workers: int = 0, env: dict | None = None, **options) -> LiveServer:
    """A front-end in its own directory; `options` go to start_server."""
    directory = tmp_path / name
    directory.mkdir(exist_ok=True)
    return start_server(directory, "--broker", broker.url, data=data, workers=workers,
                        env={"LESTATS_CLAIM_TIMEOUT": CLAIM_TIMEOUT, **(env or {})},
                        **options)


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
                raise AssertionError(f"worker node did not stop within {timeout} s:\n"
                                     + self.text()) from None
        return self.process.returncode


def start_worker_node(tmp_path: Path, name: str, broker: RedisServer, data: Path,
                      workers: int = 1, ready_timeout: float = 30.0,
                      wait_ready: bool = True) -> WorkerNode:
    directory = tmp_path / name
    directory.mkdir(exist_ok=True)
    output = directory / "node.out"
    command = [sys.executable, "-m", "server", "worker", "--broker", broker.url,
               "--data", str(data), "--workers", str(workers)]
    environment = {**os.environ, "PYTHONPATH": str(ROOT),
                   "LESTATS_LOG_FILE": str(directory / "node.log"),
                   "LESTATS_CLAIM_TIMEOUT": CLAIM_TIMEOUT}
    with open(output, "wb") as sink:
        process = subprocess.Popen(command, cwd=directory, env=environment, stdout=sink,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    node = WorkerNode(process, output)
    NODES.append(node)
    deadline = time.monotonic() + ready_timeout
    while wait_ready and "worker node ready" not in node.text():
        if process.poll() is not None:
            raise AssertionError(f"worker node exited with {process.returncode}:\n"
                                 + node.text())
        if time.monotonic() > deadline:
            raise AssertionError(f"worker node not ready within {ready_timeout} s:\n"
                                 + node.text())
        time.sleep(0.05)
    return node
