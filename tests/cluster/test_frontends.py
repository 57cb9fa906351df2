"""`lestats serve --broker … --frontends N`: N front-end processes on one port under
one supervising parent, all real processes (redis-server from deploy/redis.conf,
`python -m server serve`) on loopback; `broker` is tests/cluster/conftest.py's."""

from __future__ import annotations

import json
import os
import signal
import socket

import pytest

from compute import stats
from compute.dataset import load_csv
from server.cli import main
from tests.support.live import free_port, shm_segments, start_server
from tests.support.load import alive, children, wait_until


def front_end_pids(server, tries: int = 400) -> dict[int, dict]:
    """/api/info of every front-end answering on the port, by pid. The kernel picks
    the listening socket per connection, so ask (on a new connection each time) until
    every running front-end has answered or `tries` requests have gone out."""
    expected = {p for p in children(server.pid) if _is_front_end(p)}
    seen: dict[int, dict] = {}
    for _ in range(tries):
        try:
            status, info = server.get("/api/info")
        except OSError:  # queued on the socket of a front-end just killed: reset
            continue
        if status == 200:
            seen[info["pids"]["parent"]] = info
        if expected <= set(seen):
            break
    return seen


def all_front_ends(server, count: int, timeout: float = 60.0) -> dict[int, dict]:
    """front_end_pids once `count` front-ends answer: each answers only once it has
    loaded the data and joined the cluster, the first one ready alone at first."""
    assert wait_until(lambda: len(front_end_pids(server, tries=50)) == count, timeout), (
        server.text()
    )
    return front_end_pids(server)


def _is_front_end(pid: int) -> bool:
    """The supervisor's children are its front-ends and multiprocessing's resource
    tracker, whose command line names it."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return b"resource_tracker" not in handle.read()
    except OSError:
        return False


def test_n_front_ends_share_the_port_and_a_dead_one_is_replaced(tmp_path, broker, demo_csv):
    server = start_server(
        tmp_path, "--broker", broker.url, "--frontends", "2", data=demo_csv, workers=1
    )
    infos = all_front_ends(server, 2)
    assert len(infos) == 2, infos
    # The machine's local workers run once, under front-end 1; the other is pure.
    assert sorted(len(i["pids"]["workers"]) for i in infos.values()) == [0, 1], infos
    dataset = load_csv(demo_csv)
    question = dataset.questions[2]
    status, posted = server.post("/api/best5", {"question": question})
    assert status == 200, posted

    pure = next(pid for pid, info in infos.items() if not info["pids"]["workers"])
    os.kill(pure, signal.SIGKILL)
    assert wait_until(lambda: not alive(pure), 10)
    replaced = all_front_ends(server, 2)
    assert len(replaced) == 2 and pure not in replaced, replaced
    assert "ended with signal SIGKILL; restarting it" in server.text()
    # The job space is Redis's: the job posted before the death is still there.
    status, result = server.get(f"/api/get_results/{posted['job_id']}?wait=20", timeout=30)
    assert status == 200 and result["status"] == "done", result
    assert json.dumps(result["data"]) == json.dumps(
        json.loads(stats.answer(dataset, "best5", question))
    )

    assert server.stop(signal.SIGTERM) == 0, server.text()
    for pid in replaced:
        assert not alive(pid)
        assert shm_segments(pid) == []
    assert "all front-ends stopped; exit 0" in server.text()


def test_graceful_shutdown_of_one_front_end_stops_them_all(tmp_path, broker, demo_csv):
    server = start_server(
        tmp_path, "--broker", broker.url, "--frontends", "2", data=demo_csv, workers=0
    )
    infos = all_front_ends(server, 2)
    assert len(infos) == 2, infos
    status, body = server.get("/api/graceful_shutdown")
    assert status == 200, body
    server.process.wait(60)
    assert server.process.returncode == 0, server.text()
    assert "shut down gracefully; stopping the others" in server.text()
    assert not any(alive(pid) for pid in infos)


def test_a_front_end_that_cannot_start_stops_the_supervisor(tmp_path, broker, demo_csv):
    """The port is taken by a socket without SO_REUSEPORT: each front-end refuses to
    start (exit 2); restarting would refuse again, so the parent exits 2, no loop."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = start_server(
            tmp_path,
            "--broker",
            broker.url,
            "--frontends",
            "2",
            data=demo_csv,
            workers=0,
            port=port,
            wait_ready=False,
        )
        server.process.wait(60)
    assert server.process.returncode == 2, server.text()
    assert "could not start" in server.text()
    assert "restarting" not in server.text()


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--frontends", "2"], "frontends > 1 needs the cluster mode (broker)"),
        (["--frontends", "0", "--broker", "redis://127.0.0.1:1/0"], "frontends must be at least 1"),
        (
            ["--frontends", "2", "--port", "0", "--broker", "redis://127.0.0.1:1/0"],
            "frontends > 1 needs a fixed port",
        ),
    ],
)
def test_frontends_settings_are_checked_before_anything_starts(tmp_path, capsys, argv, words):
    (tmp_path / "none.toml").write_text("")  # no settings but these flags
    assert main(["serve", "--config", str(tmp_path / "none.toml"), *argv]) == 2
    assert words in capsys.readouterr().err


def test_frontends_come_from_the_environment_too(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LESTATS_FRONTENDS", "3")
    monkeypatch.setenv("LESTATS_PORT", str(free_port()))
    (tmp_path / "none.toml").write_text("")
    assert main(["serve", "--config", str(tmp_path / "none.toml")]) == 2
    assert "frontends > 1 needs the cluster mode (broker)" in capsys.readouterr().err
