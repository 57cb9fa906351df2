"""The real server process, driven exactly as an existing client drives it."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading

import pytest

from compute.endpoints import ENDPOINTS
from compute.questions import HIGHER_IS_BETTER, LOWER_IS_BETTER
from tests.reference import Reference, assert_close
from tests.support.live import ROOT, shm_segments, start_server

QUESTIONS = [LOWER_IS_BETTER[1], HIGHER_IS_BETTER[2]]


def test_all_nine_endpoints_polling_every_200ms(live, demo_csv):
    reference = Reference(demo_csv)
    for endpoint, spec in ENDPOINTS.items():
        for question in QUESTIONS:
            for state in ["Ohio", "National", "Virgin Islands"] if spec.needs_state else [None]:
                fields = {"question": question} | ({"state": state} if state else {})
                result = live.ask(endpoint, **fields)
                assert result["status"] == "done", result
                assert_close(
                    result["data"], reference.answer(endpoint, question, state), where=endpoint
                )


@pytest.mark.parametrize(
    "method, path, body, status",
    [
        ("POST", "/api/best5", b"{", 400),
        ("POST", "/api/best5", b'"text"', 400),
        ("POST", "/api/best5", b"x" * 100_000, 413),
        ("POST", "/api/state_mean", json.dumps({"question": QUESTIONS[0]}).encode(), 400),
        ("POST", "/api/best5", b'{"question": 1}', 400),
        ("POST", "/api/best5", b'{"question": "What?"}', 400),
        (
            "POST",
            "/api/state_mean",
            json.dumps({"question": QUESTIONS[0], "state": "Atlantis"}).encode(),
            400,
        ),
        ("GET", "/api/unknown", None, 404),
        ("DELETE", "/api/jobs", None, 405),
        ("GET", "/api/get_results/0", None, 404),
        ("GET", "/api/get_results/job_id_12345", None, 404),
    ],
)
def test_error_rows_are_json(live, method, path, body, status):
    code, answer = live.request(method, path, raw=body)
    assert code == status and answer["status"] == "error" and answer["reason"]


def test_graceful_shutdown_with_jobs_in_flight(tmp_path, demo_csv):
    server = start_server(tmp_path, data=demo_csv, env={"LESTATS_SHUTDOWN_LINGER": "3"})
    ids = [
        server.post("/api/mean_by_category", {"question": q})[1]["job_id"] for q in QUESTIONS * 40
    ]
    code, answer = server.get("/api/graceful_shutdown")
    assert code == 200 and answer["status"] in ("running", "done")
    code, answer = server.post("/api/best5", {"question": QUESTIONS[0]})
    assert (code, answer) == (503, {"status": "error", "reason": "shutting down"})
    for job_id in ids:  # GETs keep working while draining and lingering
        code, result = server.get(f"/api/get_results/{job_id}?wait=10")
        assert code == 200 and result["status"] == "done"
    assert server.get("/api/graceful_shutdown")[1] == {"status": "done"}
    assert server.process.wait(30) == 0
    assert shm_segments(server.pid) == []
    assert "stopped cleanly" in server.text()


# SIGHUP (a closed terminal or SSH session) and SIGQUIT (Ctrl-\) used to kill the
# server outright, dropping the jobs in flight.
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT])
def test_signal_drains_and_exits_zero(tmp_path, demo_csv, sig):
    server = start_server(tmp_path, data=demo_csv)
    ids = [
        server.post("/api/states_mean", {"question": QUESTIONS[0]})[1]["job_id"] for _ in range(30)
    ]
    assert server.stop(sig) == 0, server.text()
    assert f"received {sig.name}" in server.text()
    assert shm_segments(server.pid) == []
    done = list((server.state_dir / "jobs").glob("*.json"))
    assert sorted(int(p.name.split(".")[0]) for p in done) == ids


def test_restart_keeps_results_and_ids(tmp_path, demo_csv):
    first = start_server(tmp_path, data=demo_csv)
    answers = {}
    for question in QUESTIONS:
        job_id = first.post("/api/best5", {"question": question})[1]["job_id"]
        answers[job_id] = first.get(f"/api/get_results/{job_id}?wait=10")[1]
    assert first.stop() == 0
    second = start_server(tmp_path, data=demo_csv, state_dir=first.state_dir)
    try:
        for job_id, answer in answers.items():
            assert second.get(f"/api/get_results/{job_id}") == (200, answer)
        new_id = second.post("/api/best5", {"question": QUESTIONS[0]})[1]["job_id"]
        assert new_id > max(answers)
        listed = second.get("/api/jobs")[1]["data"]
        for job_id in answers:
            assert {f"job_id_{job_id}": "done"} in listed
    finally:
        assert second.stop() == 0


def test_failed_start_is_one_line_and_leaves_no_shared_memory(tmp_path):
    server = start_server(tmp_path, data=tmp_path / "missing.csv", wait_ready=False)
    assert server.process.wait(30) == 2
    text = server.text()
    assert "no such file" in text and "Traceback" not in text
    assert len(text.strip().splitlines()) == 1
    assert shm_segments(server.pid) == []


def test_port_in_use_releases_shared_memory(tmp_path, demo_csv, live):
    # its own state dir: on the same one the state-dir lock would refuse it first
    server = start_server(
        tmp_path,
        data=demo_csv,
        port=live.port,
        wait_ready=False,
        state_dir=tmp_path / "other-state",
    )
    assert server.process.wait(30) == 2
    assert "cannot listen" in server.text() and "Traceback" not in server.text()
    assert "make run PORT=N" in server.text()  # the hint for a newcomer
    assert shm_segments(server.pid) == []


def test_idle_server_skips_the_linger(tmp_path, demo_csv):
    """With nothing in flight a stop does not wait: the linger here is longer than
    stop()'s own 30 s limit, so a server that waited for it would fail the test."""
    server = start_server(tmp_path, data=demo_csv, env={"LESTATS_SHUTDOWN_LINGER": "600"})
    assert server.stop(signal.SIGINT) == 0, server.text()
    assert "no job was in flight; stopping without the linger" in server.text()


def test_cli_demo_generator(tmp_path):
    out = tmp_path / "d.csv"
    done = subprocess.run(
        [sys.executable, "-m", "server", "data", "demo", str(out), "--rows", "500", "--seed", "4"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert len(out.read_text().splitlines()) == 501


def test_concurrent_clients_get_distinct_ids(live):
    ids, lock = [], threading.Lock()

    def client():
        for _ in range(20):
            job_id = live.post("/api/global_mean", {"question": QUESTIONS[1]})[1]["job_id"]
            with lock:
                ids.append(job_id)

    threads = [threading.Thread(target=client) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(ids) == 160 and len(set(ids)) == 160
    for job_id in ids:
        assert live.get(f"/api/get_results/{job_id}?wait=10")[1]["status"] == "done"
