"""The HTTP API through aiohttp_client: every route and every error row of docs/api.md, "Errors"."""

from __future__ import annotations

import pytest

from compute.endpoints import ENDPOINTS
from compute.questions import LOWER_IS_BETTER
from tests.reference import Reference, assert_close
from tests.support.inprocess import running_app

OBESITY = LOWER_IS_BETTER[1]
JSON = {"Content-Type": "application/json"}


@pytest.fixture
async def api(tmp_path, demo_csv, aiohttp_client):
    async with running_app(demo_csv, tmp_path / "state", max_queue=50) as running:
        client = await aiohttp_client(running.app)
        client.running = running
        yield client


async def _result(client, job_id, wait=10):
    response = await client.get(f"/api/get_results/{job_id}?wait={wait}")
    assert response.status == 200
    return await response.json()


@pytest.mark.parametrize("endpoint", sorted(ENDPOINTS))
async def test_every_statistic_end_to_end(api, demo_csv, endpoint):
    body = {"question": OBESITY}
    if ENDPOINTS[endpoint].needs_state:
        body["state"] = "Ohio"
    response = await api.post(f"/api/{endpoint}", json=body)
    assert response.status == 200
    job_id = (await response.json())["job_id"]
    result = await _result(api, job_id)
    assert result["status"] == "done"
    assert_close(result["data"], Reference(demo_csv).answer(endpoint, OBESITY, body.get("state")))
    alias = await api.get(f"/api/get_results/job_id_{job_id}")
    assert (await alias.json()) == result


async def test_ids_increase_and_jobs_lists_them(api):
    ids = []
    for _ in range(3):
        response = await api.post("/api/global_mean", json={"question": OBESITY})
        ids.append((await response.json())["job_id"])
    assert ids == sorted(ids) and len(set(ids)) == 3 and ids[0] >= 1
    for job_id in ids:
        await _result(api, job_id)
    listing = await (await api.get("/api/jobs")).json()
    assert listing["status"] == "done"
    assert listing["data"] == [{f"job_id_{i}": "done"} for i in ids]
    assert (await (await api.get("/api/num_jobs")).json()) == {"num_jobs": 0}


async def _error(response, status, *fragments):
    assert response.status == status
    assert response.content_type == "application/json"
    body = await response.json()
    assert body["status"] == "error"
    for fragment in fragments:
        assert fragment in body["reason"], body
    return body


@pytest.mark.parametrize(
    "raw, fragment",
    [
        (b"not json", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (b"\xff\xfe", "not valid JSON"),
        (b"[" * 100_00 + b"]" * 100_00, ""),
    ],
)
async def test_body_not_json_or_not_object(api, raw, fragment):
    await _error(await api.post("/api/states_mean", data=raw, headers=JSON), 400, fragment)


async def test_body_too_large(api):
    await _error(await api.post("/api/states_mean", data=b"x" * 200_000), 413, "too large")


@pytest.mark.parametrize(
    "body, field",
    [
        ({}, "'question'"),
        ({"question": 5}, "'question'"),
        ({"question": OBESITY}, "'state'"),
        ({"question": OBESITY, "state": None}, "'state'"),
    ],
)
async def test_missing_or_non_string_field(api, body, field):
    await _error(await api.post("/api/state_mean", json=body), 400, field)


async def test_unknown_question_and_state_suggest(api):
    await _error(
        await api.post("/api/states_mean", json={"question": OBESITY + "x"}),
        400,
        "unknown question",
        "did you mean",
    )
    await _error(
        await api.post("/api/state_mean", json={"question": OBESITY, "state": "Ohoi"}),
        400,
        "unknown state",
        "'Ohio'",
    )


async def test_unknown_route_and_wrong_method(api):
    await _error(await api.get("/api/nothing"), 404)
    await _error(await api.get("/nothing"), 404)
    await _error(await api.post("/api/jobs"), 405)
    await _error(await api.get("/api/best5"), 405)


@pytest.mark.parametrize(
    "text", ["0", "-1", "abc", "job_id_", "1.5", "99999999", "job_id_-3", "1e3", "0x10", "%20%31"]
)
async def test_invalid_job_ids(api, text):
    await _error(await api.get(f"/api/get_results/{text}"), 404, "Invalid job_id")


async def test_path_fragments_are_json_404(api):
    for text in ("%2e%2e", "..%2Fjournal.jsonl", "1/2"):
        await _error(await api.get(f"/api/get_results/{text}"), 404)


async def test_bad_wait_parameter(api):
    await _error(await api.get("/api/get_results/1?wait=31"), 400, "wait")
    await _error(await api.get("/api/get_results/1?wait=nan"), 400, "wait")


async def test_queue_full_answers_503_with_retry_after(api):
    service = api.running.service
    service.max_queue = 0
    response = await api.post("/api/states_mean", json={"question": OBESITY})
    await _error(response, 503, "full")
    assert response.headers["Retry-After"].isdigit()


async def test_unexpected_failure_is_a_json_500(api, monkeypatch):
    def explode(*args):
        raise RuntimeError("boom")

    monkeypatch.setattr(api.running.service.status, "entries", explode)
    body = await _error(await api.get("/api/jobs"), 500)
    assert "boom" not in body["reason"] and "Traceback" not in body["reason"]
    assert (await api.get("/api/num_jobs")).status == 200


async def test_graceful_shutdown_refuses_new_jobs(api):
    response = await api.get("/api/graceful_shutdown")
    assert (await response.json())["status"] in ("running", "done")
    await _error(
        await api.post("/api/states_mean", json={"question": OBESITY}), 503, "shutting down"
    )
    assert (await api.get("/readyz")).status == 503
    assert (await api.get("/api/num_jobs")).status == 200


async def test_admin_token_required_when_set(tmp_path, demo_csv, aiohttp_client):
    async with running_app(demo_csv, tmp_path / "s", admin_token="s3cret") as running:
        client = await aiohttp_client(running.app)
        await _error(await client.get("/api/graceful_shutdown"), 401, "Bearer")
        await _error(
            await client.get("/api/graceful_shutdown", headers={"Authorization": "Bearer wrong"}),
            401,
        )
        ok = await client.get("/api/graceful_shutdown", headers={"Authorization": "Bearer s3cret"})
        assert ok.status == 200


async def test_discovery_endpoints(api):
    questions = (await (await api.get("/api/questions")).json())["questions"]
    assert {q["direction"] for q in questions} == {"lower", "higher"}
    states = (await (await api.get("/api/states")).json())["states"]
    assert len(states) == 55 and states == sorted(states)
    assert (await (await api.get("/healthz")).json()) == {"status": "alive"}
    assert (await (await api.get("/readyz")).json()) == {"status": "ready"}


async def test_long_poll_returns_when_done(api):
    response = await api.post("/api/mean_by_category", json={"question": OBESITY})
    job_id = (await response.json())["job_id"]
    assert (await _result(api, job_id, wait=30))["status"] == "done"
