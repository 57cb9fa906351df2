"""deploy/haproxy.cfg in front of two real front-ends, as an operator runs it.

One deployment for the module, all real processes on loopback: redis-server from
deploy/redis.conf (appendonly yes, its own directory, a free port), front-ends A and
B (`lestats serve --broker … --workers 0`), a worker node (`lestats worker`) and
HAProxy from deploy/haproxy.cfg with only its addresses replaced. The client suite
runs through the balancer: every statistic via client.Client against
compute.stats.answer on the same file, jobs POSTed through it read from each
front-end, a long poll of the full 30 s, the admin route refused, and a front-end
drained behind the balancer without one client noticing. The drain test stops
front-end B, so it comes last.
"""

from __future__ import annotations

import asyncio
import json
import signal
import threading
import time

import pytest

from client import Client
from compute import stats
from compute.dataset import load_csv
from compute.endpoints import ENDPOINTS
from tests.support.cluster import (
    start_frontend,
    start_haproxy,
    start_redis,
    start_worker_node,
)
from tests.support.load import ClientLoad, JobMix, http, wait_until

STATES = ("Ohio", "Guam", "National", "Wyoming")


@pytest.fixture(scope="module")
def deployment(tmp_path_factory, demo_csv):
    root = tmp_path_factory.mktemp("haproxy")
    redis = start_redis(root / "redis")
    started = []
    try:
        # The default linger (5 s) stays: a front-end that was told to stop keeps
        # answering until the balancer's health checks (1 s apart, 2 failures) have
        # taken it out of rotation (deploy/README.md "Draining").
        fronts = [
            start_frontend(root, name, redis, demo_csv, env={"LESTATS_SHUTDOWN_LINGER": "5"})
            for name in "ab"
        ]
        started += fronts
        node = start_worker_node(root, "worker", redis, demo_csv, workers=2)
        started.append(node)
        balancer = start_haproxy(root / "haproxy", [f.port for f in fronts])
        started.append(balancer)
        assert wait_until(lambda: servers_up(balancer) == {"fe1", "fe2"}, 20), balancer.command(
            "show servers state lestats"
        )
        yield balancer, *fronts, node, load_csv(demo_csv), demo_csv
    finally:
        for process in reversed(started):  # the balancer first
            process.stop()
        redis.kill()


def servers_up(balancer) -> set[str]:
    """Names of the backend servers HAProxy's health checks have as UP (state 2)."""
    lines = balancer.command("show servers state lestats").splitlines()
    rows = [line.split() for line in lines if line and not line.startswith("#")][1:]
    return {row[3] for row in rows if len(row) > 5 and row[5] == "2"}


def requests_per_server(balancer) -> dict[str, int]:
    """Requests HAProxy has sent to each front-end (the `stot` column of show stat)."""
    lines = balancer.command("show stat").splitlines()
    header = lines[0].lstrip("# ").split(",")
    rows = [dict(zip(header, line.split(","))) for line in lines[1:] if line]
    return {
        r["svname"]: int(r["stot"])
        for r in rows
        if r["pxname"] == "lestats" and r["svname"] not in ("BACKEND", "FRONTEND")
    }


def reference(dataset, endpoint: str, question: str, state: str | None):
    return json.loads(stats.answer(dataset, endpoint, question, state))


def questions_for(dataset, endpoint: str) -> list[str]:
    if endpoint in ("best5", "worst5"):
        return [q for q in dataset.questions if dataset.direction(q) is not None]
    return list(dataset.questions)


async def test_every_statistic_through_the_balancer_is_the_reference_answer(deployment):
    balancer, *_, dataset, _ = deployment
    calls = [
        (endpoint, question, state)
        for endpoint, spec in ENDPOINTS.items()
        for question in questions_for(dataset, endpoint)[:4]
        for state in (STATES if spec.needs_state else (None,))
    ]
    async with Client(balancer.url, timeout=60) as client:
        answers = await asyncio.gather(*(client.ask(*call) for call in calls))
    for call, got in zip(calls, answers):
        want = reference(dataset, *call)
        # Equal values, keys in the same order: the same JSON text.
        assert json.dumps(got) == json.dumps(want), call


def test_jobs_posted_through_the_balancer_are_read_from_either_front_end(deployment):
    balancer, front_a, front_b, _, dataset, _ = deployment
    before = requests_per_server(balancer)
    posted = []
    for index in range(40):
        endpoint = list(ENDPOINTS)[index % len(ENDPOINTS)]
        question = questions_for(dataset, endpoint)[index % 4]
        body = {"question": question}
        if ENDPOINTS[endpoint].needs_state:
            body["state"] = STATES[index % len(STATES)]
        status, answer, _ = http(f"{balancer.url}/api/{endpoint}", "POST", body)
        assert status == 200, answer
        posted.append((answer["job_id"], endpoint, body))
    ids = [job_id for job_id, *_ in posted]
    assert ids == sorted(set(ids)), "ids through the balancer repeat or go down"
    for job_id, endpoint, body in posted:
        want = stats.answer(dataset, endpoint, body["question"], body.get("state"))
        bodies = []
        for front in (front_a, front_b):
            status, result, _ = http(f"{front.url}/api/get_results/{job_id}?wait=20", timeout=30)
            assert status == 200 and result["status"] == "done", (front.url, result)
            bodies.append(json.dumps(result))
        assert bodies[0] == bodies[1], job_id
        assert json.dumps(json.loads(bodies[0])["data"]) == json.dumps(json.loads(want))
    sent = {
        name: count - before.get(name, 0) for name, count in requests_per_server(balancer).items()
    }
    assert sent["fe1"] > 0 and sent["fe2"] > 0, f"one front-end took every request: {sent}"


def test_a_long_poll_of_the_full_30_seconds_passes_through(deployment):
    """The worker node is paused, so the job stays running: the balancer must hold a
    ?wait=30 request the whole 30 s and pass on the front-end's answer (not a 504),
    and the next long poll gets the answer once the node runs again."""
    balancer, _, _, node, dataset, _ = deployment
    question = dataset.questions[0]
    node.signal_all(signal.SIGSTOP)
    try:
        status, answer, _ = http(f"{balancer.url}/api/global_mean", "POST", {"question": question})
        assert status == 200, answer
        started = time.monotonic()
        status, result, _ = http(
            f"{balancer.url}/api/get_results/{answer['job_id']}?wait=30", timeout=60
        )
        waited = time.monotonic() - started
        assert (status, result) == (200, {"status": "running"}), (status, result)
        # Not a speed check: it shows the request really waited behind the balancer.
        assert waited >= 29, f"the long poll came back after {waited:.1f} s"
    finally:
        node.signal_all(signal.SIGCONT)
    status, result, _ = http(
        f"{balancer.url}/api/get_results/{answer['job_id']}?wait=30", timeout=60
    )
    assert status == 200 and result["status"] == "done", result
    assert result["data"] == reference(dataset, "global_mean", question, None)


def test_admin_actions_are_refused_at_the_balancer(deployment):
    balancer, front_a, front_b, *_ = deployment
    status, body, headers = http(f"{balancer.url}/api/graceful_shutdown")
    assert status == 403 and body["status"] == "error", body
    assert {k.lower(): v for k, v in headers.items()}["content-type"] == "application/json"
    for front in (front_a, front_b):
        assert front.get("/readyz")[0] == 200
    assert servers_up(balancer) == {"fe1", "fe2"}


def test_a_front_end_drained_behind_the_balancer_loses_no_request(deployment):
    """SIGTERM on front-end B while clients POST and poll through the balancer: no
    client sees an error (B's 503s and refused connections are retried on A by the
    balancer), B exits 0, and every acknowledged job ends done and right."""
    balancer, front_a, front_b, _, _, csv = deployment
    mix = JobMix(csv, seed=5)
    # Bounded, but with room for jobs after B stops however fast the first ones went.
    load = ClientLoad(balancer.url, mix, clients=4, max_jobs=12000).start()
    try:
        assert wait_until(lambda: len(load.acknowledged) >= 50, 30)
        front_b.process.send_signal(signal.SIGTERM)
        assert wait_until(lambda: servers_up(balancer) == {"fe1"}, 20)
        exited = threading.Event()
        threading.Thread(target=lambda: (front_b.process.wait(), exited.set()), daemon=True).start()
        assert exited.wait(30), "front-end B did not stop"
        count = len(load.acknowledged)
        assert wait_until(lambda: len(load.acknowledged) >= count + 50, 30), (
            "no job was acknowledged after B stopped"
        )
    finally:
        load.stop()
    assert front_b.process.returncode == 0, front_b.text()
    assert (load.refused, load.unreachable) == (0, 0), (
        f"{load.refused} POSTs refused, {load.unreachable} requests failed"
    )
    for job_id, (endpoint, body) in sorted(load.acknowledged.items()):
        status, result, _ = http(f"{front_a.url}/api/get_results/{job_id}?wait=20", timeout=30)
        assert status == 200, (job_id, result)
        mix.check(endpoint, body, result)
