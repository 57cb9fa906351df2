"""Two front-ends on one Redis: one job space, the same answers as the embedded mode."""

from __future__ import annotations

import json
import urllib.request

from compute.endpoints import ENDPOINTS
from compute.questions import HIGHER_IS_BETTER, LOWER_IS_BETTER
from tests.cluster.conftest import wait_all_done
from tests.conftest import tricky_rows
from tests.reference import Reference, assert_close
from tests.support.cluster import start_frontend, start_worker_node
from tests.support.fixtures import write_rows
from tests.support.live import shm_segments, start_server
from tests.support.load import JobMix


def test_submit_on_a_read_everything_from_b(tmp_path, broker, demo_csv):
    a = start_frontend(tmp_path, "a", broker, demo_csv, workers=0)
    b = start_frontend(tmp_path, "b", broker, demo_csv, workers=1)  # B's workers run them
    reference = Reference(demo_csv)
    asked = {}
    for endpoint, spec in ENDPOINTS.items():
        for question in (LOWER_IS_BETTER[1], HIGHER_IS_BETTER[2]):
            for state in ["Ohio", "National"] if spec.needs_state else [None]:
                fields = {"question": question} | ({"state": state} if state else {})
                status, reply = a.post(f"/api/{endpoint}", fields)
                assert status == 200, reply
                asked[reply["job_id"]] = (endpoint, question, state)
    ids = sorted(asked)
    assert len(set(ids)) == len(ids) and ids == list(range(ids[0], ids[0] + len(ids)))
    for job_id, result in wait_all_done(b, ids).items():
        endpoint, question, state = asked[job_id]
        assert result["status"] == "done", result
        assert_close(result["data"], reference.answer(endpoint, question, state), where=endpoint)
    # the listing and the count are the cluster's, whichever front-end answers
    for server in (a, b):
        status, listing = server.get("/api/jobs")
        assert status == 200
        assert listing["data"] == [{f"job_id_{i}": "done"} for i in ids]
        assert server.get("/api/num_jobs") == (200, {"num_jobs": 0})
        assert server.get(f"/api/get_results/job_id_{ids[0]}")[1]["status"] == "done"
        assert server.get(f"/api/get_results/{ids[-1] + 1000}")[0] == 404
    # ids keep growing across front-ends
    status, reply = b.post("/api/best5", {"question": LOWER_IS_BETTER[0]})
    assert status == 200 and reply["job_id"] == ids[-1] + 1
    wait_all_done(a, [reply["job_id"]])
    for server in (a, b):
        assert server.stop() == 0, server.text()
        assert shm_segments(server.pid) == []


def test_other_data_is_refused(tmp_path, broker, demo_csv):
    """The first front-end records the data's fingerprint; a front-end or a worker
    node with other data refuses to join (exit 2) rather than answer on it."""
    first = start_frontend(tmp_path, "a", broker, demo_csv)
    other = write_rows(tmp_path / "other.csv", tricky_rows(0))
    refused = start_frontend(tmp_path, "b", broker, other, wait_ready=False)
    assert refused.process.wait(60) == 2
    assert "differs from the cluster's" in refused.text()
    node = start_worker_node(tmp_path, "node", broker, other, wait_ready=False)
    assert node.process.wait(60) == 2
    assert "differs from the cluster's" in node.text()
    assert first.stop() == 0


def test_answers_are_byte_for_byte_the_embedded_ones(tmp_path, broker, demo_csv):
    cluster = start_frontend(tmp_path, "a", broker, demo_csv, workers=1)
    (tmp_path / "embedded").mkdir()
    embedded = start_server(tmp_path / "embedded", data=demo_csv, workers=1)
    mix = JobMix(demo_csv, 8)
    for _ in range(40):
        endpoint, body = mix.pick()
        answers = []
        for server in (cluster, embedded):
            status, reply = server.post(f"/api/{endpoint}", body)
            assert status == 200, reply
            url = f"{server.url}/api/get_results/{reply['job_id']}?wait=30"
            with urllib.request.urlopen(url, timeout=40) as response:
                answers.append(response.read())
        assert answers[0] == answers[1], (endpoint, body)
        assert json.loads(answers[0])["status"] == "done"
