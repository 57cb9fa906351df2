"""poll_grace: a get_results without ?wait= for a running job waits briefly for it.

Against a real server process. Nothing here measures time: whether a job is still
running is made certain by stopping the worker processes (SIGSTOP), not by racing
them.
"""

from __future__ import annotations

import contextlib
import os
import signal

from tests.support.live import start_server
from tests.support.load import QUESTIONS


@contextlib.contextmanager
def workers_paused(server):
    """Every worker process stopped: a job submitted meanwhile cannot finish."""
    workers = server.get("/api/info")[1]["pids"]["workers"]
    assert workers
    for pid in workers:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in workers:
            os.kill(pid, signal.SIGCONT)


def post_job(server, question: str) -> int:
    status, posted = server.post("/api/global_mean", {"question": question})
    assert status == 200, posted
    return posted["job_id"]


def test_the_first_poll_gets_the_answer_of_a_fast_job(tmp_path, demo_csv):
    server = start_server(tmp_path, data=demo_csv, env={"LESTATS_POLL_GRACE": "1"})
    # A job answered by polling: the workers have started and attached the data.
    server.ask("global_mean", question=QUESTIONS[0])
    for question in QUESTIONS[1:6]:  # new questions: computed, not memoised
        job_id = post_job(server, question)
        status, result = server.get(f"/api/get_results/{job_id}")  # no ?wait=
        assert status == 200 and result["status"] == "done", result
        assert set(result["data"]) == {"global_mean"}

    # The grace is a bound, not a promise: a job that cannot finish still answers
    # "running" to a poll without ?wait=, and to ?wait=0.
    with workers_paused(server):
        job_id = post_job(server, QUESTIONS[6])
        assert server.get(f"/api/get_results/{job_id}") == (200, {"status": "running"})
        assert server.get(f"/api/get_results/{job_id}?wait=0") == (200, {"status": "running"})
    status, result = server.get(f"/api/get_results/{job_id}?wait=10")
    assert status == 200 and result["status"] == "done", result
    assert server.stop() == 0


def test_poll_grace_zero_answers_running_at_once(tmp_path, demo_csv):
    server = start_server(tmp_path, data=demo_csv, env={"LESTATS_POLL_GRACE": "0"})
    server.ask("global_mean", question=QUESTIONS[0])
    with workers_paused(server):
        job_id = post_job(server, QUESTIONS[1])
        # With the workers stopped the job is certainly still running.
        assert server.get(f"/api/get_results/{job_id}") == (200, {"status": "running"})
    status, result = server.get(f"/api/get_results/{job_id}?wait=10")
    assert status == 200 and result["status"] == "done", result
    assert "global_mean" in result["data"]
    assert server.stop() == 0
